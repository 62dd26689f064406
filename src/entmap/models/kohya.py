"""kohya/A1111 LoRA and LyCORIS key names, for the families diffusers cannot convert itself.

A kohya file names each adapted layer by its module path with dots turned into underscores and a
component prefix: ``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k`` (or
``lora_transformer_...``, ``lora_te1_text_model_encoder_layers_0_self_attn_q_proj``), holding
``.lora_down.weight`` (A, r x in), ``.lora_up.weight`` (B, out x r) and optionally ``.alpha``;
the layer's update is (alpha / r) B A, alpha = r when absent.

diffusers converts these names itself for SD 1.x, SDXL (both the diffusers-derived names and the
original ``lora_unet_input_blocks_...`` ones, given the UNet's config) and Flux
(``lora_transformer_...`` and BFL's ``lora_unet_double_blocks_...``), but for SD 1.x and SDXL it
hands the alphas back separately and, when they differ between layers, applies them under names
peft does not match, so those layers silently get alpha = r. entmap therefore folds each layer's
alpha / r into its two factors itself (:func:`fold_network_alphas`) and loads the result with
alpha = r. For SD3 diffusers has no converter, so :func:`kohya_to_diffusers` maps each name back to
the module whose flattened path it is and folds the alphas the same way. The fold is split between
the factors in powers of two (:func:`power_of_two_split`), as diffusers does for Flux, so the
product is exact for power-of-two ratios.

LyCORIS files (LoHa ``hada_w1_a``..., LoKr ``lokr_w1``..., and others) are recognised
(:func:`lycoris_algorithm`) so that they are refused with their format named rather than loaded
wrongly.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_KOHYA_KEY = re.compile(r"^lora_(unet|transformer|te1|te2|te3|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$")
#: kohya component prefix -> pipeline attribute ("denoiser" is the family's UNet or transformer)
KOHYA_COMPONENTS = {
    "unet": "denoiser",
    "transformer": "denoiser",
    "te": "text_encoder",
    "te1": "text_encoder",
    "te2": "text_encoder_2",
    "te3": "text_encoder_3",
}
#: LyCORIS algorithms by a parameter name only they use
_LYCORIS_MARKERS = (
    ("LoHa", ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")),
    ("LoKr", ("lokr_w1", "lokr_w2", "lokr_w1_a", "lokr_w2_a")),
    ("DyLoRA", ("dyn_up", "dyn_down")),
    ("GLoRA", ("a1.weight", "b1.weight")),
    ("OFT/BOFT", ("oft_blocks", "oft_diag")),
    ("IA3", ("on_input",)),
    ("full diff", (".diff", ".diff_b")),
)


class KohyaKeyError(ValueError):
    """kohya keys that name no layer of the base model, or a layer without both factors."""


def is_kohya(state_dict: dict) -> bool:
    """Whether the keys are kohya-style (``lora_unet_...lora_down.weight``)."""
    return any(_KOHYA_KEY.match(key) for key in state_dict)


def lycoris_algorithm(state_dict: dict) -> str | None:
    """The LyCORIS algorithm a state dict's keys belong to (LoHa, LoKr, ...), or None for plain LoRA."""
    for name, markers in _LYCORIS_MARKERS:
        if any(key.endswith(marker) or f".{marker}" in key for key in state_dict for marker in markers):
            return name
    return None


def power_of_two_split(scale: float) -> tuple[float, float]:
    """(down factor, up factor) whose product is ``scale``, balanced in powers of two.

    scale >= 1 stays on the down factor; a smaller scale is moved towards the up factor by halving
    and doubling, which keeps both factors' magnitudes comparable without rounding.
    """
    down, up = scale, 1.0
    while down * 2 < up:
        down *= 2
        up /= 2
    return down, up


_LEGACY_FACTOR = re.compile(r"(\.processor\.(to_[qkv]|to_out)_lora|\.lora_linear_layer|\.lora)\.(down|up)\.weight$")


def _modern(key: str) -> tuple[str, str]:
    """(module path, "A" or "B") of a diffusers LoRA key in any of its namings."""
    match = _LEGACY_FACTOR.search(key)
    if match is None:
        if ".lora_" not in key:
            raise KohyaKeyError(f"{key} is not a LoRA factor")
        module, factor = key.rsplit(".lora_", 1)
        return module, factor.split(".")[0]
    module = key[: match.start()]
    if match.group(2):  # attention-processor names: attn1.processor.to_k_lora -> attn1.to_k
        module += "." + ("to_out.0" if match.group(2) == "to_out" else match.group(2))
    return module, "A" if match.group(3) == "down" else "B"


def fold_network_alphas(state_dict: dict[str, torch.Tensor], network_alphas: dict | None) -> dict:
    """diffusers' (state dict, per-layer alphas) as one state dict in ``lora_A``/``lora_B`` names, alpha / r
    folded into the factors, to be loaded with alpha = r.

    ``network_alphas`` keys are a layer's down-factor key plus ``.alpha`` (how diffusers'
    ``lora_state_dict`` returns kohya files).
    """
    alphas = {}
    for key, alpha in (network_alphas or {}).items():
        alphas[_modern(key.removesuffix(".alpha"))[0]] = float(alpha)
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        module, factor = _modern(key)
        factors.setdefault(module, {})[factor] = value
    folded = {}
    for module, pair in factors.items():
        down, up = pair["A"], pair["B"]
        scale_down, scale_up = power_of_two_split(alphas.get(module, down.shape[0]) / down.shape[0])
        folded[f"{module}.lora_A.weight"] = down * scale_down
        folded[f"{module}.lora_B.weight"] = up * scale_up
    return folded


def _flat_index(pipe, denoiser: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(kohya prefix, flattened module path) -> (pipeline attribute, module path) for every Linear/Conv."""
    import torch

    index = {}
    for prefix, attribute in KOHYA_COMPONENTS.items():
        attribute = denoiser if attribute == "denoiser" else attribute
        model = getattr(pipe, attribute, None)
        if model is None:
            continue
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                index[(prefix, name.replace(".", "_"))] = (attribute, name)
    return index


def kohya_to_diffusers(state_dict: dict[str, torch.Tensor], pipe, denoiser: str, source: str) -> dict:
    """A kohya LoRA state dict in diffusers' names: ``{attribute}.{module}.lora_A.weight`` / ``lora_B``.

    Each layer's alpha / r is folded into its factors (:func:`power_of_two_split`), so the result
    loads with alpha = r. Keys that name no layer of ``pipe`` are refused with ``source`` named.
    """
    index = _flat_index(pipe, denoiser)
    layers: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state_dict.items():
        match = _KOHYA_KEY.match(key)
        if match is None or (match.group(1), match.group(2)) not in index:
            unknown.append(key)
            continue
        layers.setdefault((match.group(1), match.group(2)), {})[match.group(3)] = value
    incomplete = [f"lora_{p}_{n}" for (p, n), parts in layers.items() if len(set(parts) - {"alpha"}) != 2]
    if unknown or incomplete:
        problems = []
        if unknown:
            more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
            problems.append(f"keys matching no layer of the base model {unknown[:5]}{more}")
        if incomplete:
            problems.append(f"layers without both lora_down and lora_up {incomplete[:5]}")
        raise KohyaKeyError(f"{source}: " + "; ".join(problems))
    converted = {}
    for layer, parts in layers.items():
        attribute, module = index[layer]
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        rank = down.shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
        scale_down, scale_up = power_of_two_split(alpha / rank)
        converted[f"{attribute}.{module}.lora_A.weight"] = down * scale_down
        converted[f"{attribute}.{module}.lora_B.weight"] = up * scale_up
    return converted
