"""Adapter file formats: reading them, checking their fit, and applying them to a pipeline.

The one place that knows what an adapter file looks like:

* LoRA: diffusers/peft and kohya files, through ``pipe.lora_state_dict``/``load_lora_weights``,
  after :func:`check_lora_keys` checked every key and shape against the base;
* Textual Inversion: diffusers ``{token: (n, d)}``, A1111 (``emb_params``, ``string_to_param``) and
  SDXL-style ``{clip_l, clip_g}`` embeddings (:func:`ti_embeddings`), registered in each CLIP encoder
  (:func:`entmap.models.embeddings.register_embedding`);
* Custom Diffusion: ``{unet|transformer}.<layer>.weight`` for every weight where text meets image
  (``attn2.to_k/to_v``; SD3 and Flux ``attn.add_k_proj/add_v_proj``) plus the modifier token's
  embedding, or diffusers' processor key names (``attn2.processor.to_k_custom_diffusion``),
  put in place with ``load_state_dict(strict=False)`` (diffusers' ``load_attn_procs`` silently does
  nothing for this model family), unexpected keys refused.

Only safetensors are read by default: pickle-based files (.bin, .pt, .pth, .ckpt, .pkl) can run
arbitrary code when loaded and are refused unless the caller allows them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entmap.core.checksums import update_with_file
from entmap.models.embeddings import TokenError, register_embedding
from entmap.models.families import family_of_pipeline
from entmap.models.kohya import KohyaKeyError, fold_network_alphas, is_kohya, kohya_to_diffusers, lycoris_algorithm

if TYPE_CHECKING:
    import torch

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
WEIGHT_SUFFIXES = PICKLE_SUFFIXES | {".safetensors"}
_LORA_SUFFIX = re.compile(
    r"\.(lora_A|lora_B|lora\.down|lora\.up|lora_down|lora_up|lora_linear_layer\.down|lora_linear_layer\.up)\.weight$"
    r"|\.(alpha|lora_magnitude_vector)$"
)
#: diffusers' legacy attention-processor LoRA names, as ``lora_state_dict`` returns kohya files:
#: ``attn1.processor.to_k_lora.down.weight`` is the LoRA of module ``attn1.to_k``
_PROCESSOR_LORA = re.compile(r"\.processor\.(to_[qkv]|to_out)_lora\.(down|up)\.weight$")
_PROCESSOR_KEY = re.compile(r"attn2\.processor\.to_([kv])_custom_diffusion\.weight$")


class AdapterMismatchError(ValueError):
    """An adapter's keys or shapes do not fit the base model; the message names them."""


class ExternalAdapterError(ValueError):
    """An external adapter is refused; the message names the file and the fix."""


def weight_files(path: str | os.PathLike[str]) -> list[Path]:
    """The weight files an external entry points at (the file, or all weights in a folder)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)


def check_source(name: str, spec: dict[str, Any]) -> None:
    """Cheap checks done before any job starts: the path exists and holds no refused pickle."""
    path = Path(spec["path"])
    where = f"external.{name}"
    if not path.exists():
        if is_hub_id(spec["path"]) and hub_online():
            return  # downloaded by the audit job
        hint = (
            "; as a Hub id (owner/name or owner/name/file) it is downloaded only with HF_HUB_OFFLINE=0"
            if is_hub_id(spec["path"])
            else ""
        )
        raise ExternalAdapterError(f"{where}.path: {path} does not exist{hint}")
    if spec["kind"] == "checkpoint":
        if path.is_file() and path.suffix in (".safetensors", ".ckpt"):
            raise ExternalAdapterError(
                f"{where}.path: {path} is a single-file checkpoint, which entmap does not read yet; convert it "
                "once with diffusers (`StableDiffusionPipeline.from_single_file(path).save_pretrained(folder)`) "
                "and point the path at that folder"
            )
        if not (path / "model_index.json").is_file():
            raise ExternalAdapterError(f"{where}.path: {path} is not a diffusers pipeline folder (no model_index.json)")
    elif not path.is_file():
        raise ExternalAdapterError(f"{where}.path: {path} must be a file for kind {spec['kind']!r}")
    if not spec.get("allow_pickle", False):
        for file in weight_files(path):
            if file.suffix.lower() in PICKLE_SUFFIXES and not _has_safetensors_twin(file):
                raise ExternalAdapterError(
                    f"{file}: pickle-based weights can run arbitrary code when loaded; convert them to "
                    f"safetensors, or opt in with `{where}.allow_pickle: true` if you trust the file"
                )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w./-]+)?$")


def is_hub_id(path: str) -> bool:
    """Whether ``path`` reads as a Hub id (``owner/name`` or ``owner/name/file``) rather than a local path."""
    return bool(_HUB_ID.match(path)) and not Path(path).exists() and Path(path).parts[0] not in ("results", "data")


def hub_online() -> bool:
    """Whether huggingface_hub may download (``HF_HUB_OFFLINE`` unset or 0)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("0", "false", "no", "")


def resolve_source(path: str) -> str:
    """A local path for an adapter: ``path`` itself, or the downloaded file of a Hub id.

    ``owner/name/file`` downloads that file; ``owner/name`` the repository's only .safetensors file
    (a repository with several must name one).
    """
    if Path(path).exists() or not is_hub_id(path):
        return path
    from huggingface_hub import hf_hub_download, list_repo_files  # here: building the DAG never imports it

    parts = path.split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if not filename:
        weights = [f for f in list_repo_files(repo) if f.endswith(".safetensors")]
        if len(weights) != 1:
            raise ExternalAdapterError(
                f"{path}: the Hub repository holds {len(weights)} .safetensors files {weights[:5]}; name one as "
                f"{repo}/<file>"
            )
        filename = weights[0]
    return hf_hub_download(repo, filename)


def _has_safetensors_twin(file: Path) -> bool:
    """A pipeline folder may hold both formats; diffusers then reads the safetensors one."""
    return any(p.suffix == ".safetensors" for p in file.parent.iterdir())


def sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 over the weight files of ``path`` (names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in weight_files(root):
        digest.update(str(file.relative_to(root if root.is_dir() else root.parent)).encode())
        update_with_file(digest, file)
    return digest.hexdigest()


def read_tensors(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """Read a weights file: safetensors always, pickle only when allowed (weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ExternalAdapterError(
                f"{path}: not a readable safetensors file ({exc}); was it truncated or edited? Download it again"
            ) from None
        check_finite(tensors, path)
        return tensors
    if not allow_pickle:
        raise ExternalAdapterError(f"{path}: pickle-based file refused (allow_pickle is off)")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExternalAdapterError(
            f"{path}: the pickle holds more than tensors or is damaged, so it is refused even with allow_pickle "
            f"(entmap loads pickles with weights_only=True: {first[:200]}); convert it to safetensors in a "
            "trusted environment"
        ) from None


def check_finite(tensors: dict[str, Any], path: Path) -> None:
    """Refuse weights holding NaN or infinity: they would turn every image they touch into noise."""
    import torch

    bad = [
        k for k, v in tensors.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise ExternalAdapterError(
            f"{path}: {len(bad)} tensors hold NaN or infinite values {bad[:3]}; the adapter is broken (often a "
            "training run that diverged in half precision): use an earlier checkpoint"
        )


def _module_index(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return dict(model.named_modules())


def modern_lora_name(key: str) -> str:
    """A LoRA key in diffusers' current naming: legacy processor names (``attn1.processor.to_k_lora.down
    .weight``, what ``lora_state_dict`` returns for kohya files) become ``attn1.to_k.lora.down.weight``."""
    return _PROCESSOR_LORA.sub(
        lambda m: f".{'to_out.0' if m.group(1) == 'to_out' else m.group(1)}.lora.{m.group(2)}.weight", key
    )


def check_lora_keys(pipe, state_dict: dict[str, torch.Tensor], source: str) -> int:
    """Check every LoRA tensor targets an existing Linear/Conv layer with matching sizes.

    ``state_dict`` is in diffusers form (``unet.<module>.lora_A.weight``, ``transformer.<module>...``
    for SD3 and Flux, or ``.lora.down.weight``, or
    the legacy processor names of kohya files, :func:`modern_lora_name`), as
    ``StableDiffusionPipeline.lora_state_dict`` returns it for diffusers, peft and kohya files.
    Returns the number of adapted layers.
    """
    family = family_of_pipeline(pipe)
    modules = {
        name: _module_index(getattr(pipe, name))
        for name in (family.denoiser, *family.text_encoders)
        if getattr(pipe, name, None) is not None
    }
    unknown, mismatched, layers = [], [], set()
    for key, value in state_dict.items():
        key = modern_lora_name(key)
        prefix, _, rest = key.partition(".")
        match = _LORA_SUFFIX.search(rest)
        if prefix not in modules or not match:
            unknown.append(key)
            continue
        module_name = rest[: match.start()]
        module = next(
            (
                modules[prefix][name]
                for name in (module_name, module_name.removeprefix("text_model."), f"text_model.{module_name}")
                if name in modules[prefix]
            ),
            None,
        )
        if module is None:
            unknown.append(key)
            continue
        layers.add(f"{prefix}.{module_name}")
        kind = match.group(1) or ""
        if kind in ("lora_A", "lora.down", "lora_down", "lora_linear_layer.down"):
            fan_in = getattr(module, "in_features", getattr(module, "in_channels", None))
            if value.ndim < 2 or value.shape[1] != fan_in:
                mismatched.append(f"{key} {tuple(value.shape)} (layer input {fan_in})")
        elif kind in ("lora_B", "lora.up", "lora_up", "lora_linear_layer.up"):
            fan_out = getattr(module, "out_features", getattr(module, "out_channels", None))
            if value.shape[0] != fan_out:
                mismatched.append(f"{key} {tuple(value.shape)} (layer output {fan_out})")
    if unknown or mismatched:
        parts = []
        if unknown:
            parts.append(
                f"keys matching no layer of the base model {unknown[:5]}"
                + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            )
        if mismatched:
            parts.append(f"wrong shapes {mismatched[:5]}")
        raise AdapterMismatchError(f"{source}: " + "; ".join(parts))
    if not layers:
        raise AdapterMismatchError(f"{source}: no LoRA tensors found")
    return len(layers)


def ti_embeddings(tensors: dict[str, Any], source: str, keys: tuple[str, ...]) -> tuple[str | None, dict]:
    """(token in the file or None, {encoder key: embedding (n, d)}) of a Textual Inversion file.

    ``keys`` are the family's CLIP encoder keys (``clip_l``; SDXL and SD3 ``clip_l``, ``clip_g``).
    Reads SDXL-style ``{clip_l, clip_g}`` files, diffusers ``{token: (n, d)}`` files and A1111
    embeddings (``emb_params`` safetensors, ``string_to_param`` .pt); a one-embedding file serves a
    family with one CLIP encoder only.
    """
    if set(tensors) & {"clip_l", "clip_g"}:
        extra = sorted(set(tensors) - set(keys))
        if extra:
            raise AdapterMismatchError(
                f"{source}: holds {', '.join(extra)} but the base model's CLIP encoders are {', '.join(keys)}; "
                "was it made for another model family?"
            )
        return None, {key: tensors[key] for key in keys if key in tensors}
    if "string_to_param" in tensors:  # A1111 .pt
        tensors = {"*": next(iter(tensors["string_to_param"].values()))}
    if "emb_params" in tensors:  # A1111 .safetensors
        token, value = None, tensors["emb_params"]
    elif len(tensors) != 1:
        raise AdapterMismatchError(
            f"{source}: a Textual Inversion file holds one embedding (or clip_l and clip_g); "
            f"found keys {list(tensors)[:5]}"
        )
    else:
        token, value = next(iter(tensors.items()))
        token = token if token != "*" else None
    if len(keys) != 1:
        raise AdapterMismatchError(
            f"{source}: one embedding of width {value.shape[-1]}, but the base model has {len(keys)} CLIP text "
            f"encoders and needs one embedding for each ({', '.join(keys)}), as SDXL embedding files hold them"
        )
    return token, {keys[0]: value if value.ndim == 2 else value[None]}


def ti_file_token(path: Path, allow_pickle: bool = False) -> str | None:
    """The token a diffusers-format Textual Inversion file names (``{token: (n, d)}``), else None."""
    tensors = read_tensors(path, allow_pickle)
    if len(tensors) == 1 and next(iter(tensors)) not in ("emb_params", "string_to_param", "clip_l", "clip_g", "*"):
        return next(iter(tensors))
    return None


def text_kv_parameters(pipe) -> tuple[str, dict[str, torch.nn.Parameter]]:
    """(denoiser attribute, its text key/value weights by state-dict name) where text meets image.

    UNet families: every ``attn2.to_k/to_v``; SD3 and Flux: the joint attention's context
    projections ``attn.add_k_proj/add_v_proj`` (:class:`entmap.models.families.Family`).
    """
    family = family_of_pipeline(pipe)
    return family.denoiser, family.text_kv_parameters(getattr(pipe, family.denoiser))


def split_custom_diffusion(
    tensors: dict[str, torch.Tensor], pipe, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Map a k/v state dict (Custom Diffusion, the planted control) onto the denoiser's text k/v names.

    Keys are ``{unet|transformer}.<name>`` (or diffusers' Custom Diffusion processor names); shapes
    are checked. The modifier token's embedding is ``token_embedding`` (one CLIP encoder) or
    ``token_embedding.clip_l`` and ``token_embedding.clip_g`` (SDXL, SD3). Returns (k/v weights by
    denoiser state-dict name, {encoder key: token embedding}).
    """
    denoiser, parameters = text_kv_parameters(pipe)
    expected = {name: p.shape for name, p in parameters.items()}
    first_key = family_of_pipeline(pipe).clip_encoders[0][0]
    weights: dict[str, torch.Tensor] = {}
    embeddings: dict[str, torch.Tensor] = {}
    unknown, mismatched = [], []
    for key, value in tensors.items():
        if key in ("token_embedding", "modifier_token"):
            embeddings[first_key] = value
            continue
        if key.startswith("token_embedding."):
            embeddings[key.removeprefix("token_embedding.")] = value
            continue
        name = key.removeprefix(f"{denoiser}.")
        name = _PROCESSOR_KEY.sub(lambda m: f"attn2.to_{m.group(1)}.weight", name)
        if name not in expected:
            unknown.append(key)
        elif tuple(value.shape) != tuple(expected[name]):
            mismatched.append(f"{key} {tuple(value.shape)} != {tuple(expected[name])}")
        else:
            weights[name] = value
    if unknown or mismatched:
        raise AdapterMismatchError(
            f"{source}: does not fit the base model's text key/value weights ({denoiser}): "
            + "; ".join(
                part
                for part in (
                    f"unknown keys {unknown[:5]}" + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
                    if unknown
                    else "",
                    f"wrong shapes {mismatched[:5]}" if mismatched else "",
                )
                if part
            )
        )
    if not weights:
        raise AdapterMismatchError(f"{source}: holds no text key/value weights of the base model's {denoiser}")
    return weights, embeddings


def apply_custom_diffusion(pipe, tensors: dict[str, torch.Tensor], token: str | None, source: str) -> None:
    """Apply Custom Diffusion tensors to ``pipe`` in place (k/v weights, then the modifier token)."""
    weights, embeddings = split_custom_diffusion(tensors, pipe, source)
    denoiser = getattr(pipe, family_of_pipeline(pipe).denoiser)
    result = denoiser.load_state_dict({k: v.to(denoiser.dtype) for k, v in weights.items()}, strict=False)
    if result.unexpected_keys:
        raise AdapterMismatchError(f"{source}: unexpected keys {result.unexpected_keys[:5]}")
    if embeddings:
        if token is None:
            raise AdapterMismatchError(f"{source}: has a modifier token embedding but no token string was given")
        register_embedding(pipe, token, embeddings, source)


#: substrings of safetensors metadata values (kohya ``ss_base_model_version``, ``modelspec.architecture``)
#: that name a family, most specific first
_FAMILY_WORDS = (
    ("sdxl", ("sdxl", "stable-diffusion-xl", "sd_xl")),
    ("sd3", ("sd3", "stable-diffusion-3", "stable-diffusion-v3")),
    ("flux", ("flux",)),
    ("sd1", ("sd_v1", "stable-diffusion-v1", "sd_1", "sd1", "stable-diffusion-v2", "sd_v2")),
)
_FAMILY_KEYS = ("modelspec.architecture", "ss_base_model_version", "ss_sd_model_name")


def file_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors header (kohya ``ss_*``, ``modelspec.*``); {} for other files."""
    if Path(path).suffix != ".safetensors":
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ExternalAdapterError(
            f"{path}: not a readable safetensors file ({exc}); was it truncated or edited? Download it again"
        ) from None


def declared_family(metadata: dict[str, str]) -> tuple[str, str] | None:
    """(family, the metadata key that says so) from an adapter's metadata, or None if it says nothing."""
    for key in _FAMILY_KEYS:
        value = metadata.get(key, "").lower()
        for family, words in _FAMILY_WORDS:
            if any(word in value for word in words):
                return family, f"{key}={metadata[key]!r}"
    return None


def check_family(pipe, path: Path) -> None:
    """Refuse an adapter whose metadata declares another family than the base model's, naming both."""
    declared = declared_family(file_metadata(path))
    base = family_of_pipeline(pipe).name
    if declared is not None and declared[0] != base:
        raise AdapterMismatchError(
            f"{path}: made for the {declared[0]} family ({declared[1]}) but the base model is {base}; "
            f"use a {declared[0]} base model or an adapter trained for {base}"
        )


def check_lora_has_an_effect(state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Refuse a LoRA whose every layer is zero: it loads without error and changes nothing.

    A layer's update is up @ down (B A): it is zero when either factor is all zeros.
    """
    factors: dict[str, dict[str, bool]] = {}
    for key, value in state_dict.items():
        name = modern_lora_name(key)
        match = _LORA_SUFFIX.search(name)
        if match and match.group(1):
            kind = "down" if match.group(1) in ("lora_A", "lora.down", "lora_down", "lora_linear_layer.down") else "up"
            factors.setdefault(name[: match.start()], {})[kind] = bool(value.abs().sum() > 0)
    effective = [layer for layer, f in factors.items() if f.get("down") and f.get("up")]
    if factors and not effective:
        raise AdapterMismatchError(
            f"{source}: all {len(factors)} LoRA layers are zero (up or down factor all zeros), so the adapter "
            "changes nothing; was it saved before training, or with the wrong weights?"
        )


def lora_state_dict(pipe, path: Path, allow_pickle: bool = False) -> tuple[dict, bool]:
    """(the LoRA's state dict in diffusers naming, whether entmap converted it from kohya names).

    diffusers' ``lora_state_dict`` reads diffusers, peft and (where it can convert them) kohya
    files, whose per-layer alphas entmap then folds into the factors
    (:func:`entmap.models.kohya.fold_network_alphas`); kohya files of a family diffusers cannot
    convert go through :func:`entmap.models.kohya.kohya_to_diffusers`. Converted state dicts load
    with alpha = r. LyCORIS files are refused with their algorithm named.
    """
    if path.suffix != ".safetensors" and not allow_pickle:
        raise ExternalAdapterError(f"{path}: pickle-based file refused (allow_pickle is off)")
    raw = read_tensors(path, allow_pickle)
    algorithm = lycoris_algorithm(raw)
    if algorithm is not None:
        raise ExternalAdapterError(
            f"{path}: a LyCORIS {algorithm} file; entmap loads LoRA files (diffusers, peft, kohya) but no "
            "maintained loader applies LyCORIS algorithms to a diffusers model exactly; merge it into the "
            "base model (e.g. with LyCORIS' merge script) and audit the merged checkpoint instead"
        )
    family = family_of_pipeline(pipe)
    kohya = is_kohya(raw)
    if kohya and not family.kohya_in_diffusers:
        try:
            return kohya_to_diffusers(raw, pipe, family.denoiser, str(path)), True
        except KohyaKeyError as exc:
            raise AdapterMismatchError(str(exc)) from None
    extra = {"unet_config": pipe.unet.config} if family.denoiser == "unet" else {}  # maps original block names
    try:
        loaded = pipe.lora_state_dict(str(path.parent), weight_name=path.name, **extra)
    except (ValueError, KeyError, NotImplementedError, AssertionError) as exc:
        raise AdapterMismatchError(
            f"{path}: diffusers cannot read it as a {family.name} LoRA ({type(exc).__name__}: {exc}); "
            "was it made for another model family?"
        ) from None
    state_dict, alphas = (loaded[0], loaded[1]) if isinstance(loaded, tuple) else (loaded, None)
    if not (kohya or alphas):
        return state_dict, False
    check_lora_keys(pipe, state_dict, str(path))  # before folding, so unmatched keys are named as in the file
    try:
        return fold_network_alphas(state_dict, alphas), True
    except (KeyError, ValueError) as exc:
        raise AdapterMismatchError(f"{path}: a LoRA layer without both factors ({exc})") from None


def apply_lora(pipe, path: Path, allow_pickle: bool = False) -> int:
    """Load a LoRA file into ``pipe`` after checking every key and shape; returns the adapted layers."""
    state_dict, converted = lora_state_dict(pipe, path, allow_pickle)
    layers = check_lora_keys(pipe, state_dict, str(path))
    check_lora_has_an_effect(state_dict, str(path))
    if converted:
        pipe.load_lora_weights(state_dict)
    else:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    return layers


def apply_adapter(pipe, kind: str, path: str | os.PathLike[str], token: str | None, allow_pickle: bool = False) -> None:
    """Apply an adapter file of ``kind`` to ``pipe`` in place with its public loader, checking its fit.

    ti: ``pipe.load_textual_inversion``; lora: ``pipe.load_lora_weights`` after every key and
    shape was checked against the base; cd: native attn2 k/v weights plus the modifier token.
    """
    path = Path(path)
    check_family(pipe, path)
    if kind == "ti":
        keys = tuple(key for key, _, _ in family_of_pipeline(pipe).clip_encoders)
        file_token, vectors = ti_embeddings(read_tensors(path, allow_pickle), str(path), keys)
        token = token or file_token
        if token is None:
            raise ExternalAdapterError(f"{path}: the file names no token; set `token:` in its config entry")
        try:
            register_embedding(pipe, token, vectors, str(path))
        except TokenError as exc:
            raise AdapterMismatchError(str(exc)) from None
    elif kind == "lora":
        apply_lora(pipe, path, allow_pickle)
    elif kind == "cd":
        apply_custom_diffusion(pipe, read_tensors(path, allow_pickle), token, str(path))
    else:
        raise ValueError(f"{path}: unknown adapter kind {kind!r}")


#: why an adapter kind has no strength scale (the audit's strength sweep renders only 0 and 1 for it)
SCALE_UNDEFINED = {
    "ti": (
        "a Textual Inversion file holds the learned embedding but not the one it was initialised from, so there "
        "is no path from 'no adapter' to 'the adapter' to scale along; scaling the vector's length instead "
        "changes what the token means, not how strongly it applies"
    ),
    "cd": (
        "Custom Diffusion files replace the cross-attention k/v weights and the modifier token's embedding; the "
        "token has no base value to interpolate from, so only the adapter as published (scale 1) is measured"
    ),
    "checkpoint": "a full checkpoint replaces the base model; it has no strength to scale",
}


def set_lora_scale(pipe, scale: float) -> None:
    """Scale every loaded LoRA's update by ``scale`` (the ``<lora:name:w>`` weight): W = W0 + scale (alpha/r) B A.

    Goes through diffusers' ``set_adapters`` (peft's per-adapter scaling); at 0 the update is exactly zero,
    so the images are the base model's byte for byte.
    """
    names = sorted({name for adapters in pipe.get_list_adapters().values() for name in adapters})
    if not names:
        raise ValueError("set_lora_scale: the pipeline has no LoRA adapter loaded")
    pipe.set_adapters(names, adapter_weights=[float(scale)] * len(names))
