"""A planted effect: Gaussian noise of a known relative scale on the weights where text meets image.

No training. For every text key/value weight W of the family's denoiser (UNet ``attn2.to_k`` /
``attn2.to_v`` for SD 1.x and SDXL; the joint attention's ``add_k_proj`` / ``add_v_proj`` for SD3
and Flux):

    W' = W + scale * rms(W) * Z,   rms(W) = ||W||_F / sqrt(numel(W)),   Z ~ N(0, I) from ``seed``.

At scale 0, W' = W bit for bit, so every disruption of that model must be exactly 0; as the
scale grows, disruption must grow. This checks the whole measurement chain end to end. The
result is saved in the Custom Diffusion file format (``{unet|transformer}.<name>`` k/v weights,
no token) and loaded by the same code.

Explained in docs/methods.md.
"""

from __future__ import annotations

import os

import torch

from entmap.core.atomic import atomic_path
from entmap.models.adapter_formats import text_kv_parameters


def perturbed_kv(pipe, scale: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """The perturbed text k/v weights of ``pipe``'s denoiser by state-dict name (nothing is modified).

    The weights are where text meets image in the family (UNet ``attn2.to_k/to_v``; SD3/Flux joint
    attention ``add_k_proj/add_v_proj``), in sorted name order, one noise draw each from ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    _, parameters = text_kv_parameters(pipe)
    for name, weight in sorted(parameters.items()):
        w = weight.detach().float().cpu()
        noise = torch.randn(w.shape, generator=generator)
        out[name] = w + (scale * w.pow(2).mean().sqrt()) * noise
    return out


def save_perturbation(pipe, scale: float, seed: int, path: str | os.PathLike[str]) -> None:
    """Write the perturbed weights as ``{unet|transformer}.<name>`` safetensors, atomically."""
    from safetensors.torch import save_file

    denoiser, _ = text_kv_parameters(pipe)
    tensors = {f"{denoiser}.{name}": value.contiguous() for name, value in perturbed_kv(pipe, scale, seed).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
