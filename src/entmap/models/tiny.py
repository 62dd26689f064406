"""Tiny random-weight models in the standard on-disk layouts.

``build_tiny_base`` writes a diffusers pipeline of one family: Stable-Diffusion-1.5-shaped
(UNet2DConditionModel with cross-attention, AutoencoderKL with the /8 latent factor,
CLIPTextModel, the real 49,408-token CLIP BPE tokenizer, DDIM with SD's scaled-linear betas),
SDXL-shaped (two CLIP encoders, the second with a projection, a text-time UNet), SD3-shaped (an
MMDiT with two CLIP encoders and a T5 encoder, 16 latent channels, flow matching) or Flux-shaped
(double- and single-stream blocks, CLIP and T5, packed latents). The T5 tokenizer is a real
sentencepiece-style unigram model trained offline on the shipped prompt suites
(:func:`build_t5_tokenizer`). ``build_tiny_scorer`` writes a tiny open_clip model in
the Hugging Face layout (``open_clip_config.json`` plus
``open_clip_model.safetensors``). Both are loaded back by the same code paths a
real run uses: ``StableDiffusionPipeline.from_pretrained(folder)`` and
``open_clip.create_model_and_transforms("local-dir:folder")``. Weights are
random but fixed by a seed, so a rebuilt model is bit-identical.
"""

from __future__ import annotations

import csv
import functools
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


def build_tiny_base(out_dir: str | os.PathLike[str], seed: int = 0, family: str = "sd1") -> None:
    """Build and save a tiny pipeline of ``family`` (sd1, sdxl, sd3, flux), random weights fixed by ``seed``."""
    builders = {"sd1": _build_sd1, "sdxl": _build_sdxl, "sd3": _build_sd3, "flux": _build_flux}
    if family not in builders:
        raise ValueError(f"unknown model family {family!r}; use one of {sorted(builders)}")
    with seeded(seed), atomic_dir(out_dir) as tmp:
        builders[family]().save_pretrained(tmp, safe_serialization=True)


def _build_sd1():
    from diffusers import UNet2DConditionModel

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
    vae = tiny_vae(latent_channels=4)
    text_encoder = clip_text_encoder(TINY_TEXT_WIDTH, intermediate=64, layers=2)
    return sd_pipeline(vae, text_encoder, unet)


def _build_sdxl():
    """SDXL's layout: CLIP-L-like and CLIP-G-like encoders (the second with a projection) whose
    hidden states are concatenated for cross-attention, a UNet with text-time conditioning."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    width = TINY_TEXT_WIDTH
    unet = UNet2DConditionModel(
        sample_size=TINY_RESOLUTION // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * width,
        attention_head_dim=(2, 4),
        norm_num_groups=16,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + width,
        transformer_layers_per_block=(1, 1),
        use_linear_projection=True,
    )
    return StableDiffusionXLPipeline(
        vae=tiny_vae(latent_channels=4),
        text_encoder=clip_text_encoder(width, intermediate=64, layers=2),
        text_encoder_2=clip_text_encoder(width, intermediate=64, layers=2, projection=True),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=sdxl_scheduler(),
    )


def sdxl_scheduler():
    """SDXL's Euler scheduler over SD's scaled-linear betas (leading spacing, offset 1)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        **{k: SD15_SCHEDULE[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")},
        timestep_spacing="leading",
        steps_offset=1,
    )


def _build_sd3():
    """SD3's layout: an MMDiT (joint attention over text and image tokens), two CLIP encoders with
    projections and a T5 encoder, 16-channel latents, flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    width = TINY_TEXT_WIDTH
    transformer = SD3Transformer2DModel(
        sample_size=TINY_RESOLUTION // 8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=width,
        caption_projection_dim=width,
        pooled_projection_dim=2 * width,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(latent_channels=16),
        text_encoder=clip_text_encoder(width, intermediate=64, layers=2, projection=True),
        tokenizer=clip_tokenizer(),
        text_encoder_2=clip_text_encoder(width, intermediate=64, layers=2, projection=True),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(width),
        tokenizer_3=build_t5_tokenizer(),
    )


def _build_flux():
    """Flux's layout: double-stream (separate text and image projections) and single-stream blocks,
    a CLIP encoder for the pooled vector and a T5 encoder for the sequence, packed 16-channel latents."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    width = TINY_TEXT_WIDTH
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=width,
        pooled_projection_dim=width,
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(latent_channels=16),
        text_encoder=clip_text_encoder(width, intermediate=64, layers=2),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5_encoder(width),
        tokenizer_2=build_t5_tokenizer(),
        transformer=transformer,
    )


def tiny_vae(latent_channels: int):
    """A 4-block AutoencoderKL (/8 latents); 16 channels get SD3/Flux's shift and no quant convs."""
    from diffusers import AutoencoderKL

    flow = (
        {"use_quant_conv": False, "use_post_quant_conv": False, "shift_factor": 0.0609, "scaling_factor": 1.5035}
        if latent_channels == 16
        else {}
    )
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=16,
        sample_size=TINY_RESOLUTION,
        **flow,
    )


def t5_encoder(width: int):
    """A random-weight T5EncoderModel over :func:`build_t5_tokenizer`'s vocabulary."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(build_t5_tokenizer()),
            d_model=width,
            d_kv=8,
            d_ff=2 * width,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )


#: the prompt suites the tiny T5 tokenizer is trained on
T5_CORPUS = ("entanglement-200.tsv", "context-24.tsv", "toyworld-60.tsv", "toyworld-context.tsv")
#: the columns of those suites it reads (a suite's structured columns, such as objects, are not read)
T5_CORPUS_COLUMNS = frozenset({"id", "category", "text", "prompt", "concept", "context"})
T5_VOCAB = 600


@functools.cache
def build_t5_tokenizer():
    """A real T5 tokenizer trained offline: a unigram model (``tokenizers``) on the shipped prompt suites.

    Special tokens as T5's: ``<pad>`` 0, ``</s>`` 1 (appended to every sequence), ``<unk>`` 2; no
    extra ids. Saved by ``save_pretrained`` it is tokenizer.json + tokenizer_config.json, which load
    back without sentencepiece. Deterministic: the same corpus gives the same vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    folder = Path(__file__).resolve().parents[3] / "resources" / "prompts"
    texts = []
    for name in T5_CORPUS:
        with open(folder / name, encoding="utf-8", newline="") as handle:
            rows = csv.DictReader(handle, delimiter="\t")
            texts += [" ".join(v for k, v in row.items() if k in T5_CORPUS_COLUMNS) for row in rows]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=T5_VOCAB, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return T5TokenizerFast(
        tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )


def clip_text_config(width: int, intermediate: int, layers: int, heads: int, activation: str = "quick_gelu"):
    """A CLIP text tower's config over the real 49,408-token CLIP BPE with SD's 77-token context."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=width,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=activation,
        projection_dim=width,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def clip_text_encoder(width: int, intermediate: int, layers: int, heads: int = 4, projection: bool = False):
    """A random-weight CLIPTextModel of :func:`clip_text_config` (quick GELU, as CLIP ViT-L/14).

    ``projection``: CLIPTextModelWithProjection (SDXL's second encoder, SD3's CLIP encoders).
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(
        clip_text_config(width, intermediate, layers, heads)
    )


def sd_pipeline(vae, text_encoder, unet, schedule: dict | None = None):
    """A StableDiffusionPipeline of these parts with the CLIP BPE tokenizer and a DDIM scheduler
    (``schedule``: its config; default SD v1.5's)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=DDIMScheduler(**(schedule or SD15_SCHEDULE)),
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
