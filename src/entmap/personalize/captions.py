"""Training data shared by the personalization methods: prompt templates and image batches."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

#: Caption templates of the diffusers textual-inversion script (object and style variants).
OBJECT_TEMPLATES = (
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
)
STYLE_TEMPLATES = (
    "a painting in the style of {}",
    "a rendering in the style of {}",
    "a cropped painting in the style of {}",
    "the painting in the style of {}",
    "a clean painting in the style of {}",
    "a dirty painting in the style of {}",
    "a dark painting in the style of {}",
    "a picture in the style of {}",
    "a cool painting in the style of {}",
    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",
    "a cropped painting in the style of {}",
    "a good painting in the style of {}",
    "a close-up painting in the style of {}",
    "a rendition in the style of {}",
    "a nice painting in the style of {}",
    "a small painting in the style of {}",
    "a weird painting in the style of {}",
    "a large painting in the style of {}",
)


def templates_for(subject_category: str) -> tuple[str, ...]:
    """Style subjects learn with style captions; faces and objects with object captions."""
    return STYLE_TEMPLATES if subject_category == "style" else OBJECT_TEMPLATES


def image_to_tensor(image: Image.Image, resolution: int, center_crop: bool) -> torch.Tensor:
    """RGB image -> float tensor (3, resolution, resolution) in [-1, 1] (diffusers' preprocessing)."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if center_crop:
        h, w = array.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        array = array[top : top + side, left : left + side]
    resized = Image.fromarray(array).resize((resolution, resolution), Image.Resampling.BICUBIC)
    tensor = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 127.5 - 1.0)
    return tensor.permute(2, 0, 1).contiguous()


class ReferenceBatches:
    """Random training batches (image tensor, caption) from reference images, driven by a seed."""

    def __init__(
        self,
        images: list[Image.Image],
        token: str,
        templates: tuple[str, ...],
        resolution: int,
        center_crop: bool = False,
        flip_p: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.tensors = [image_to_tensor(img, resolution, center_crop) for img in images]
        self.token = token
        self.templates = templates
        self.flip_p = flip_p
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, list[str]]:
        g = self.generator
        pixels, captions = [], []
        for _ in range(batch_size):
            tensor = self.tensors[int(torch.randint(len(self.tensors), (1,), generator=g))]
            if float(torch.rand((), generator=g)) < self.flip_p:
                tensor = tensor.flip(-1)
            pixels.append(tensor)
            template = self.templates[int(torch.randint(len(self.templates), (1,), generator=g))]
            captions.append(template.format(self.token))
        return torch.stack(pixels), captions
