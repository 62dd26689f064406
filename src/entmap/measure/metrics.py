"""The numbers of a Concept Entanglement Map (docs/map.md).

* alignment a = cos(f_T(p), f_I(x)): the raw cosine of L2-normalized CLIP
  embeddings (not x100, not clamped);
* E_sem(p, s) = mean_k |a_pers(p, s, k) - a_base(p, k)| and its signed mean;
* E_per(p, s) = mean_k LPIPS(x_base(p, k), x_pers(p, s, k));
* noise floor tau = the q-th percentile of the base model's seed-pair shifts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from entmap.core.runtime import seeded


def clip_cosine(text_embeddings: torch.Tensor, image_embeddings: torch.Tensor) -> torch.Tensor:
    """Row-wise cos(t_i, x_i) = <t_i/||t_i||, x_i/||x_i||>, in [-1, 1]."""
    t = torch.nn.functional.normalize(text_embeddings.float(), dim=-1)
    x = torch.nn.functional.normalize(image_embeddings.float(), dim=-1)
    return (t * x).sum(dim=-1)


def semantic_shift(a_pers: Sequence[float], a_base: Sequence[float]) -> np.ndarray:
    """Per-seed absolute shift d_k = |a_pers,k - a_base,k|."""
    return np.abs(np.asarray(a_pers, dtype=float) - np.asarray(a_base, dtype=float))


def e_sem(a_pers: Sequence[float], a_base: Sequence[float]) -> float:
    """E_sem = mean_k |a_pers,k - a_base,k| (disruption, >= 0)."""
    return float(np.mean(semantic_shift(a_pers, a_base)))


def e_sem_signed(a_pers: Sequence[float], a_base: Sequence[float]) -> float:
    """Signed mean_k (a_pers,k - a_base,k): negative means degradation."""
    return float(np.mean(np.asarray(a_pers, dtype=float) - np.asarray(a_base, dtype=float)))


def e_per(lpips_values: Sequence[float]) -> float:
    """E_per = mean_k LPIPS(x_base,k, x_pers,k)."""
    return float(np.mean(np.asarray(lpips_values, dtype=float)))


def percentile_threshold(values: Sequence[float], percentile: float) -> float:
    """The noise-floor threshold: numpy's (linear) ``percentile`` of ``values``."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("no noise-floor measurements")
    return float(np.percentile(values, percentile))


class Lpips:
    """LPIPS distance (Zhang et al. 2018) between uint8 RGB images.

    ``backbone='imagenet'`` uses torchvision's pretrained backbone (the
    standard LPIPS, downloads weights once); ``'random'`` a backbone with
    random weights drawn from ``seed`` (offline), with the calibrated linear
    heads that ship in the ``lpips`` package either way.
    """

    def __init__(
        self,
        net: str = "alex",
        backbone: str = "imagenet",
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        import lpips

        if backbone not in ("imagenet", "random"):
            raise ValueError(f"lpips backbone must be 'imagenet' or 'random', not {backbone!r}")
        with seeded(seed):
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=backbone == "random", verbose=False)
        self.device = torch.device(device)
        self.model = self.model.to(self.device).eval()

    @classmethod
    def from_settings(cls, settings: dict, device: torch.device | str = "cpu") -> Lpips:
        """Build from the config's ``lpips`` block (net, backbone, seed)."""
        return cls(settings["net"], settings["backbone"], settings.get("seed", 0), device)

    @staticmethod
    def to_tensor(images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], the range LPIPS expects."""
        array = np.asarray(images, dtype=np.float32)
        return torch.from_numpy(array / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()

    def distance(self, images_a: np.ndarray, images_b: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """LPIPS(a_i, b_i) for each pair; inputs are uint8 arrays (N, H, W, 3)."""
        if len(images_a) != len(images_b):
            raise ValueError(f"LPIPS needs pairs: {len(images_a)} vs {len(images_b)} images")
        out = []
        with torch.inference_mode():
            for start in range(0, len(images_a), batch_size):
                a = self.to_tensor(images_a[start : start + batch_size]).to(self.device)
                b = self.to_tensor(images_b[start : start + batch_size]).to(self.device)
                out.append(self.model(a, b).flatten().double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)
