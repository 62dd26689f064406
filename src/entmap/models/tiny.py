"""Tiny random-weight models in the standard on-disk layouts.

``build_tiny_base`` writes a Stable-Diffusion-1.5-shaped diffusers pipeline
(UNet2DConditionModel with cross-attention, AutoencoderKL with the /8 latent
factor, CLIPTextModel, the real 49,408-token CLIP BPE tokenizer, DDIM with
SD's scaled-linear betas) and ``build_tiny_scorer`` a tiny open_clip model in
the Hugging Face layout (``open_clip_config.json`` plus
``open_clip_model.safetensors``). Both are loaded back by the same code paths a
real run uses: ``StableDiffusionPipeline.from_pretrained(folder)`` and
``open_clip.create_model_and_transforms("local-dir:folder")``. Weights are
random but fixed by a seed, so a rebuilt model is bit-identical.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from entmap.core.atomic import atomic_dir
from entmap.core.runtime import seeded

#: SD v1.5's noise schedule (scheduler_config.json of the released model).
SD15_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

TINY_TEXT_WIDTH = 32
TINY_RESOLUTION = 64  # pixels; latents are 8x8


def write_clip_tokenizer(folder: str | os.PathLike[str]) -> None:
    """Write the CLIP BPE tokenizer (vocab.json, merges.txt) from open_clip's shipped vocabulary.

    The files are what ``openai/clip-vit-large-patch14`` ships, so
    ``CLIPTokenizer.from_pretrained(folder)`` gives the SD v1.5 tokenizer.
    """
    from open_clip.tokenizer import SimpleTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    simple = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(tok, tok): idx for tok, idx in simple.encoder.items()}
    merges = sorted(simple.bpe_ranks.items(), key=lambda item: item[1])
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for (a, b), _ in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def load_clip_tokenizer(folder: str | os.PathLike[str]):
    """Load a CLIP tokenizer folder with the SD context length of 77."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def build_tiny_base(out_dir: str | os.PathLike[str], seed: int = 0) -> None:
    """Build and save a tiny SD-1.5-shaped pipeline with random weights fixed by ``seed``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with seeded(seed), atomic_dir(out_dir) as tmp:
        unet = UNet2DConditionModel(
            sample_size=TINY_RESOLUTION // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TINY_TEXT_WIDTH,
            attention_head_dim=8,
            norm_num_groups=16,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(16, 32, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=16,
            sample_size=TINY_RESOLUTION,
        )
        text_encoder = clip_text_encoder(TINY_TEXT_WIDTH, intermediate=64, layers=2)
        sd_pipeline(vae, text_encoder, unet).save_pretrained(tmp, safe_serialization=True)


def clip_text_encoder(width: int, intermediate: int, layers: int, heads: int = 4):
    """A random-weight CLIPTextModel over the real 49,408-token CLIP BPE, SD's 77-token context."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=width,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            projection_dim=width,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )


def sd_pipeline(vae, text_encoder, unet):
    """A StableDiffusionPipeline of these parts with the CLIP BPE tokenizer and SD v1.5's DDIM schedule."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=DDIMScheduler(**SD15_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


#: open_clip model config of the tiny scorer (a ViT image tower, the real BPE text tower).
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def build_tiny_scorer(out_dir: str | os.PathLike[str], seed: int = 0) -> None:
    """Build and save a tiny open_clip model (random weights fixed by ``seed``) in the HF layout."""
    import open_clip

    with seeded(seed):
        model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    save_open_clip(model, TINY_CLIP_CONFIG, out_dir)


def save_open_clip(model, model_cfg: dict, out_dir: str | os.PathLike[str], half: bool = False) -> None:
    """Write an open_clip model in the HF layout (``open_clip_config.json``, ``open_clip_model.safetensors``).

    ``create_model_and_transforms("local-dir:" + out_dir)`` loads it back (float32 either way).
    """
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    with atomic_dir(out_dir) as tmp:
        state = {
            k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()
        }
        save_file(state, str(tmp / "open_clip_model.safetensors"))
        hf_config = {
            "model_cfg": model_cfg,
            "preprocess_cfg": {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)},
        }
        (tmp / "open_clip_config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")


def clip_tokenizer():
    """The SD v1.5 CLIP tokenizer, built offline from open_clip's vocabulary (context 77)."""

    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(folder)
        return load_clip_tokenizer(folder)
