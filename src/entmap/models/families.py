"""Model families: what entmap needs to know about SD 1.x/2.x, SDXL, SD3 and Flux, in one place.

A family says which diffusers pipeline class loads it, which text encoders and tokenizers it has,
the shape of its latents (channels, and whether the pipeline takes them packed), the deterministic
scheduler seed-matched generation uses, where text meets image in its denoiser, its LoRA target
modules, and which personalization methods apply and what they train. Stages ask the family; none
tests a pipeline's class.

The family of a model is read from the model itself: ``_class_name`` in its ``model_index.json``
(:func:`family_of`), never from a config flag that could disagree with the weights.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


class FamilyError(ValueError):
    """A model folder or id whose family entmap cannot tell or does not support."""


@dataclass(frozen=True)
class Family:
    """Everything family-specific a stage needs; see the module docstring."""

    name: str
    pipeline_class: str
    #: ``_class_name`` values of model_index.json that belong to this family
    index_classes: tuple[str, ...]
    #: pipeline attributes of the text encoders and their tokenizers, in the pipeline's order
    text_encoders: tuple[str, ...]
    tokenizers: tuple[str, ...]
    #: the denoiser's pipeline attribute: "unet" or "transformer"
    denoiser: str
    latent_channels: int
    #: whether ``pipe(latents=...)`` takes packed 2x2 patches (B, H/16 * W/16, 4C), as Flux does
    packed_latents: bool
    #: diffusers scheduler class used for seed-matched generation (deterministic given the latents)
    scheduler: str
    #: its name in a config's ``generation.scheduler``
    scheduler_key: str
    #: whether the pipeline applies classifier-free guidance with a negative prompt
    negative_prompt: bool
    #: regex over the denoiser's parameter names: the key and value projections of the text tokens
    text_kv: str
    #: LoRA target modules of the denoiser (peft ``target_modules``)
    lora_targets: tuple[str, ...]
    #: regex over the denoiser's module names: the attention layers where image queries meet text
    #: keys (UNet cross-attention ``attn2``; the joint attention of SD3's and Flux's blocks)
    text_attention: str
    #: method -> what it trains in this family (README's table); a method absent here does not apply
    methods: dict[str, str] = field(default_factory=dict)
    #: adapter kinds an ``external`` entry may have on this family
    external_kinds: tuple[str, ...] = ("lora",)
    #: whether diffusers' own loader converts kohya LoRA files for this family (else entmap does)
    kohya_in_diffusers: bool = True
    #: the CLIP text encoders a new token can live in, as (file key, tokenizer, text encoder)
    #: attributes: the keys are those of SDXL-style embedding files (``clip_l``, ``clip_g``)
    clip_encoders: tuple[tuple[str, str, str], ...] = (("clip_l", "tokenizer", "text_encoder"),)
    #: regex over the denoiser's module names: key and value projections that text and image tokens
    #: share (Flux's single-stream blocks project the concatenated sequence with one ``to_k``/``to_v``)
    shared_kv: str | None = None

    def text_kv_parameters(self, denoiser) -> dict:
        """The denoiser's text-token key/value weights, by state-dict name."""
        pattern = re.compile(self.text_kv)
        return {name: p for name, p in denoiser.named_parameters() if pattern.search(name)}

    def text_kv_modules(self, denoiser) -> dict:
        """The denoiser's text-token key/value projections, by module name (a LoRA-wrapped one included)."""
        pattern = re.compile(self.text_kv.removesuffix(r"\.weight$") + "$")
        return {name: m for name, m in denoiser.named_modules() if pattern.search(name)}

    def joint_kv_modules(self, denoiser) -> dict:
        """Every projection whose output holds keys or values of the text tokens, in the model's order.

        The text-only projections (:meth:`text_kv_modules`) and, where text and image share one
        (``shared_kv``), that shared projection; its output holds the text tokens first.
        """
        patterns = [self.text_kv.removesuffix(r"\.weight$") + "$", *([self.shared_kv] if self.shared_kv else [])]
        pattern = re.compile("|".join(f"(?:{p})" for p in patterns))
        return {name: m for name, m in denoiser.named_modules() if pattern.search(name)}


SD1 = Family(
    name="sd1",
    pipeline_class="StableDiffusionPipeline",
    index_classes=("StableDiffusionPipeline",),
    text_encoders=("text_encoder",),
    tokenizers=("tokenizer",),
    denoiser="unet",
    latent_channels=4,
    packed_latents=False,
    scheduler="DDIMScheduler",
    scheduler_key="ddim",
    negative_prompt=True,
    text_kv=r"attn2\.to_[kv]\.weight$",
    lora_targets=("to_q", "to_k", "to_v", "to_out.0"),
    text_attention=r"\.attn2$",
    methods={
        "ti": "one embedding row of the CLIP text encoder",
        "lora": "UNet attention (to_q/k/v/out), the text encoder optionally",
        "cd": "every UNet cross-attention key/value projection (attn2.to_k/to_v) and a modifier token",
        "perturb": "noise on attn2.to_k/to_v",
        "external": "audited adapters: diffusers/peft and kohya LoRA, Textual Inversion, Custom Diffusion, checkpoints",
    },
    external_kinds=("lora", "ti", "cd", "checkpoint"),
)

SDXL = Family(
    name="sdxl",
    pipeline_class="StableDiffusionXLPipeline",
    index_classes=("StableDiffusionXLPipeline",),
    text_encoders=("text_encoder", "text_encoder_2"),
    tokenizers=("tokenizer", "tokenizer_2"),
    denoiser="unet",
    latent_channels=4,
    packed_latents=False,
    scheduler="DDIMScheduler",
    scheduler_key="ddim",
    negative_prompt=True,
    text_kv=r"attn2\.to_[kv]\.weight$",
    lora_targets=("to_q", "to_k", "to_v", "to_out.0"),
    text_attention=r"\.attn2$",
    methods={
        "ti": "one embedding row in each CLIP text encoder (clip_l and clip_g), trained together",
        "lora": "UNet attention (to_q/k/v/out), with SDXL's text-time conditioning; both CLIP encoders optionally",
        "cd": "every UNet cross-attention key/value projection (attn2.to_k/to_v) and a modifier token "
        "in both text encoders",
        "perturb": "noise on attn2.to_k/to_v",
        "external": "audited adapters: diffusers/peft and kohya LoRA, clip_l/clip_g Textual Inversion, "
        "Custom Diffusion",
    },
    external_kinds=("lora", "ti", "cd"),
    clip_encoders=(("clip_l", "tokenizer", "text_encoder"), ("clip_g", "tokenizer_2", "text_encoder_2")),
)

SD3 = Family(
    name="sd3",
    pipeline_class="StableDiffusion3Pipeline",
    index_classes=("StableDiffusion3Pipeline",),
    text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3"),
    tokenizers=("tokenizer", "tokenizer_2", "tokenizer_3"),
    denoiser="transformer",
    latent_channels=16,
    packed_latents=False,
    scheduler="FlowMatchEulerDiscreteScheduler",
    scheduler_key="flow_euler",
    negative_prompt=True,
    text_kv=r"attn\.add_[kv]_proj\.weight$",
    lora_targets=("to_q", "to_k", "to_v", "to_out.0"),
    text_attention=r"^transformer_blocks\.\d+\.attn$",
    methods={
        "ti": "one embedding row in each CLIP text encoder (clip_l and clip_g); T5 is left alone",
        "lora": "transformer attention (to_q/k/v/out), rectified-flow loss; both CLIP encoders optionally",
        "cd": "the joint attention's text key/value projections (attn.add_k_proj/add_v_proj, the analogue "
        "of attn2.to_k/to_v) and a modifier token in both CLIP encoders",
        "perturb": "noise on the joint attention's text projections (attn.add_k_proj/add_v_proj)",
        "external": "audited adapters: diffusers/peft and kohya LoRA, clip_l/clip_g Textual Inversion, "
        "Custom Diffusion",
    },
    external_kinds=("lora", "ti", "cd"),
    kohya_in_diffusers=False,
    clip_encoders=(("clip_l", "tokenizer", "text_encoder"), ("clip_g", "tokenizer_2", "text_encoder_2")),
)

FLUX = Family(
    name="flux",
    pipeline_class="FluxPipeline",
    index_classes=("FluxPipeline",),
    text_encoders=("text_encoder", "text_encoder_2"),
    tokenizers=("tokenizer", "tokenizer_2"),
    denoiser="transformer",
    latent_channels=16,
    packed_latents=True,
    scheduler="FlowMatchEulerDiscreteScheduler",
    scheduler_key="flow_euler",
    negative_prompt=False,
    text_kv=r"transformer_blocks\.\d+\.attn\.add_[kv]_proj\.weight$",
    lora_targets=("to_q", "to_k", "to_v", "to_out.0"),
    text_attention=r"^(single_)?transformer_blocks\.\d+\.attn$",
    methods={
        "ti": "one embedding row of the CLIP text encoder (it gives Flux only its pooled vector); T5 is left alone",
        "lora": "transformer attention (to_q/k/v/out), rectified-flow loss on packed latents; the CLIP "
        "encoder optionally",
        "cd": "the double-stream blocks' text key/value projections (attn.add_k_proj/add_v_proj) and a "
        "modifier token in the CLIP encoder",
        "perturb": "noise on the double-stream blocks' text projections (attn.add_k_proj/add_v_proj); "
        "single-stream blocks have no text-only projection",
        "external": "audited adapters: diffusers/peft and kohya LoRA, CLIP Textual Inversion, Custom Diffusion",
    },
    external_kinds=("lora", "ti", "cd"),
    shared_kv=r"single_transformer_blocks\.\d+\.attn\.to_[kv]$",
)

FAMILIES: dict[str, Family] = {family.name: family for family in (SD1, SDXL, SD3, FLUX)}


def family_from_index(index: dict, source: str) -> Family:
    """The family of a pipeline from its parsed ``model_index.json``."""
    name = index.get("_class_name")
    for family in FAMILIES.values():
        if name in family.index_classes:
            return family
    known = sorted(c for family in FAMILIES.values() for c in family.index_classes)
    raise FamilyError(f"{source}: pipeline class {name!r} is not a family entmap supports ({', '.join(known)})")


def model_index(model: str | os.PathLike[str]) -> tuple[dict, str]:
    """(parsed model_index.json, where it was read) of a diffusers folder or a hub id.

    A hub id is resolved through huggingface_hub, which respects ``HF_HUB_OFFLINE`` (its cache only).
    """
    path = Path(model) / "model_index.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    if Path(model).exists():
        raise FamilyError(f"{model}: not a diffusers pipeline folder (no model_index.json)")
    from huggingface_hub import hf_hub_download  # here: building the DAG of local models never imports it

    try:
        local = hf_hub_download(str(model), "model_index.json")
    except Exception as exc:  # offline, unknown id, no access: say which and how to fix
        raise FamilyError(
            f"{model}: cannot read its model_index.json ({type(exc).__name__}); download the model once "
            "with HF_HUB_OFFLINE=0, or point base.model at a local diffusers folder"
        ) from None
    return json.loads(Path(local).read_text(encoding="utf-8")), f"{model}/model_index.json"


def family_of(model: str | os.PathLike[str]) -> Family:
    """The family of a diffusers pipeline folder or hub id, read from its model_index.json."""
    index, source = model_index(model)
    return family_from_index(index, source)


def family_of_pipeline(pipe) -> Family:
    """The family of a loaded pipeline, by its class (the one place that looks at it)."""
    name = type(pipe).__name__
    for family in FAMILIES.values():
        if name in family.index_classes:
            return family
    raise FamilyError(f"{name}: not a pipeline class of a family entmap supports")
