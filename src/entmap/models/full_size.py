"""Full-size model architectures with random weights, for throughput benchmarks on a GPU.

A benchmark of a real model's speed needs the real model's shapes, not its weights: the
denoiser's FLOPs and memory traffic depend only on the architecture. These builders give
SD-1.5-, SDXL- and Flux.1-shaped pipelines with the released models' configurations (layer
counts, widths, heads, text encoders) and seeded random weights, built offline in the given
dtype on the given device; nothing is downloaded. The tokenizers are the offline ones of
:mod:`entmap.models.tiny` (the real CLIP BPE; a small trained T5 vocabulary for Flux, whose ids
fit the full T5 embedding table).

The parameter counts of the denoisers equal the released ones (tests/test_full_size.py counts
them on the meta device): SD 1.5 UNet 859,520,964; SDXL UNet 2,567,463,684; Flux.1 transformer
11,901,408,320.
"""

from __future__ import annotations

from typing import Any

import torch

from entmap.models.tiny import SD15_SCHEDULE, build_t5_tokenizer, clip_text_config, clip_tokenizer, sdxl_scheduler

SHAPES = ("sd15", "sdxl", "flux")


def sd15_unet_config() -> dict[str, Any]:
    """SD v1.5's UNet2DConditionModel (unet/config.json of the released model)."""
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
    }


def sdxl_unet_config() -> dict[str, Any]:
    """SDXL base 1.0's UNet2DConditionModel: three levels, 1/2/10 transformer layers, text-time embedding."""
    return {
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (320, 640, 1280),
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": (1, 2, 10),
        "attention_head_dim": (5, 10, 20),
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    }


def flux_transformer_config() -> dict[str, Any]:
    """FLUX.1-dev's FluxTransformer2DModel: 19 double-stream and 38 single-stream blocks, 24 heads of 128."""
    return {
        "patch_size": 1,
        "in_channels": 64,
        "num_layers": 19,
        "num_single_layers": 38,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": True,
        "axes_dims_rope": (16, 56, 56),
    }


def vae_config(latent_channels: int) -> dict[str, Any]:
    """The 83.7M-parameter AutoencoderKL shared by the families (16 latent channels for Flux)."""
    config: dict[str, Any] = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "latent_channels": latent_channels,
    }
    if latent_channels == 16:
        config.update(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)
    return config


def clip_l_config():
    """CLIP ViT-L/14's text tower (SD 1.5, SDXL's first encoder, Flux's pooled encoder)."""
    return clip_text_config(768, 3072, 12, 12, "quick_gelu")


def clip_bigg_config():
    """OpenCLIP ViT-bigG/14's text tower with its projection (SDXL's second encoder)."""
    return clip_text_config(1280, 5120, 32, 20, "gelu")


def t5_xxl_config():
    """T5 v1.1 XXL's encoder (Flux's sequence encoder)."""
    from transformers import T5Config

    return T5Config(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
    )


def denoiser(shape: str) -> torch.nn.Module:
    """The denoiser of ``shape`` (random weights from the global RNG, on the default device)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    if shape == "sd15":
        return UNet2DConditionModel(**sd15_unet_config())
    if shape == "sdxl":
        return UNet2DConditionModel(**sdxl_unet_config())
    if shape == "flux":
        return FluxTransformer2DModel(**flux_transformer_config())
    raise ValueError(f"unknown model shape {shape!r}; use one of {', '.join(SHAPES)}")


def build_full_size_pipeline(shape: str, device: torch.device | str, dtype: torch.dtype, seed: int = 0):
    """A pipeline of ``shape`` (sd15, sdxl, flux), random weights from ``seed``, on ``device`` in ``dtype``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

    torch.manual_seed(seed)
    with torch.device(device):
        unet = denoiser(shape)
        if shape == "sd15":
            pipe = StableDiffusionPipeline(
                vae=AutoencoderKL(**vae_config(4)),
                text_encoder=CLIPTextModel(clip_l_config()),
                tokenizer=clip_tokenizer(),
                unet=unet,
                scheduler=DDIMScheduler(**SD15_SCHEDULE),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        elif shape == "sdxl":
            pipe = StableDiffusionXLPipeline(
                vae=AutoencoderKL(**vae_config(4), force_upcast=False),
                text_encoder=CLIPTextModel(clip_l_config()),
                text_encoder_2=CLIPTextModelWithProjection(clip_bigg_config()),
                tokenizer=clip_tokenizer(),
                tokenizer_2=clip_tokenizer(),
                unet=unet,
                scheduler=sdxl_scheduler(),
            )
        else:
            pipe = FluxPipeline(
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                vae=AutoencoderKL(**vae_config(16)),
                text_encoder=CLIPTextModel(clip_l_config()),
                tokenizer=clip_tokenizer(),
                text_encoder_2=T5EncoderModel(t5_xxl_config()),
                tokenizer_2=build_t5_tokenizer(),
                transformer=unet,
            )
    return pipe.to(dtype=dtype)
