"""A planted effect: Gaussian noise of a known relative scale on the cross-attention k/v weights.

No training. For every UNet ``attn2.to_k`` / ``attn2.to_v`` weight W:

    W' = W + scale * rms(W) * Z,   rms(W) = ||W||_F / sqrt(numel(W)),   Z ~ N(0, I) from ``seed``.

At scale 0, W' = W bit for bit, so every disruption of that model must be exactly 0; as the
scale grows, disruption must grow. This checks the whole measurement chain end to end. The
result is saved in the Custom Diffusion file format (k/v weights, no token) and loaded by the
same code.

Explained in docs/methods.md.
"""

from __future__ import annotations

import os

import torch

from entmap.core.atomic import atomic_path
from entmap.models.adapter_formats import kv_parameters


def perturbed_kv(unet, scale: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """The perturbed k/v weights of ``unet`` by state-dict name (the UNet is not modified)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, weight in sorted(kv_parameters(unet).items()):
        w = weight.detach().float().cpu()
        noise = torch.randn(w.shape, generator=generator)
        out[name] = w + (scale * w.pow(2).mean().sqrt()) * noise
    return out


def save_perturbation(unet, scale: float, seed: int, path: str | os.PathLike[str]) -> None:
    """Write the perturbed weights as ``unet.<name>.weight`` safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {f"unet.{name}": value.contiguous() for name, value in perturbed_kv(unet, scale, seed).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
