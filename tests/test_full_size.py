"""The benchmark models have the released models' architectures: parameter counts equal the
published ones (counted on the meta device, so nothing is allocated)."""

from __future__ import annotations

import pytest
import torch

from entmap.models.full_size import clip_bigg_config, clip_l_config, denoiser, t5_xxl_config, vae_config


def parameters(build) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


@pytest.mark.parametrize(
    ("shape", "published"),
    [("sd15", 859_520_964), ("sdxl", 2_567_463_684), ("flux", 11_901_408_320)],
)
def test_each_denoiser_has_the_released_parameter_count(shape, published):
    assert parameters(lambda: denoiser(shape)) == published


def test_the_text_encoders_and_vaes_have_the_released_parameter_counts():
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

    assert parameters(lambda: CLIPTextModel(clip_l_config())) == 123_060_480  # CLIP ViT-L/14 text
    assert parameters(lambda: CLIPTextModelWithProjection(clip_bigg_config())) == 694_659_840  # bigG text
    assert parameters(lambda: T5EncoderModel(t5_xxl_config())) == 4_762_310_656  # T5 v1.1 XXL encoder
    assert parameters(lambda: AutoencoderKL(**vae_config(4))) == 83_653_863  # SD 1.5 / SDXL VAE
    assert parameters(lambda: AutoencoderKL(**vae_config(16))) == 83_819_683  # Flux VAE


def test_an_unknown_shape_is_refused_by_name():
    with pytest.raises(ValueError, match="'sd2'"):
        denoiser("sd2")
