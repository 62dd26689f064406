"""Training the toy world's models from scratch, with entmap's own training loop.

Three models, each from a settings block of ``configs/toyworld-train.yaml``, each written in
its standard layout so the workflow loads it like any other model:

* the scorer (:func:`train_scorer`): an open_clip CLIP (custom config, the real 49,408-token
  BPE) trained with InfoNCE on (scene, caption) pairs, with soft targets: every caption in the
  batch that an image fits is a positive, not a negative (images of the same caption, and
  partial captions: a share ``partial_captions`` of captions name only some attributes, "a
  red shape", "a circle on the left", so that the text tower learns each attribute on its own
  and composes unseen colour-shape pairs); target_ij = m_ij / sum_k m_ik with m_ij = [image i
  fits caption j], loss = (CE(logits, target) + CE(logits^T, target^T-normalized)) / 2.
  Written as ``open_clip_config.json`` + ``open_clip_model.safetensors`` (load with
  ``local-dir:FOLDER``).
* the VAE (:func:`train_vae`): AutoencoderKL with a 2x downsampling, loss MSE(x, D(z)) +
  ``kl_weight`` x KL(q(z|x) || N(0, I)) / (3 x 32 x 32) (the KL per pixel value), z drawn from
  the posterior with the seeded generator, on scenes and on random colourful textures (so a new
  style can be drawn), then a decoder-only fine-tune on the posterior means. Finally
  :func:`centre_latents` moves the latents' mean into the conv layers around them (SD's
  pipeline only scales latents, and sampling starts from N(0, I)) and sets the scaling factor
  to 1 / std of the centred latents.
* the text-to-image model (:func:`train_text_to_image`): UNet2DConditionModel and a
  CLIPTextModel trained jointly from scratch with the epsilon denoising loss under SD v1.5's
  scaled-linear betas, ``caption_dropout`` empty captions (for classifier-free guidance), and
  an EMA of the weights (what is saved). Written as a diffusers StableDiffusionPipeline folder
  with the frozen VAE and a DDIM scheduler.

Held-out colour-shape pairs (``world.HELD_OUT_PAIRS``) are never shown to the scorer or the
text-to-image model.
"""

from __future__ import annotations

import json
import os
import time
from itertools import combinations
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from entmap.core.atomic import atomic_dir, write_text
from entmap.core.provenance import git_commit, git_tree_dirty
from entmap.core.runtime import seeded
from entmap.personalize.training_loop import optimize
from entmap.toyworld.world import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    SIZE,
    Scene,
    all_scenes,
    colour_texture,
    render,
    training_scenes,
)

SCORER_CONTEXT = 16  # tokens; every toy caption fits


def scene_pool(scenes: list[Scene], count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` rendered scenes (N, 32, 32, 3) uint8 cycling through ``scenes``, and their scene indices."""
    index = np.arange(count) % len(scenes)
    images = np.stack([render(scenes[i], seed * 1_000_003 + n) for n, i in enumerate(index)])
    return images, index


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1] (the diffusers VAE's range)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# --- scorer -------------------------------------------------------------------------------


def partial_subsets() -> list[frozenset[str]]:
    """The 15 non-empty sets of attributes a caption can name, the full set last."""
    return [frozenset(c) for r in range(1, len(ATTRIBUTES) + 1) for c in combinations(ATTRIBUTES, r)]


def scorer_config(settings: dict[str, Any]) -> dict[str, Any]:
    """The open_clip model config of the scorer (``settings['model']``), context length fixed."""
    config = json.loads(json.dumps(settings["model"]))
    config["text_cfg"].update(context_length=SCORER_CONTEXT, vocab_size=49408)
    config["vision_cfg"]["image_size"] = SIZE
    return config


def soft_infonce(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor, match: torch.Tensor):
    """Symmetric InfoNCE where every caption an image fits is a positive (see the module docstring).

    ``match[i, j]`` is true when image i fits caption j (its own caption always does); the
    image-to-text target of row i is match[i] / sum(match[i]), the text-to-image target of
    caption j is match[:, j] / sum(match[:, j]).
    """
    logits = scale * image_features @ text_features.T
    match = match.to(logits.dtype)
    loss_i = -(match / match.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(match.T / match.T.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def caption_match(attributes: torch.Tensor, named: torch.Tensor) -> torch.Tensor:
    """match[i, j]: scene i (attribute indices, row i of ``attributes``) fits caption j, which
    names the attributes ``named[j]`` (bool, per attribute) of scene j."""
    same = attributes[:, None, :] == attributes[None, :, :]
    return (same | ~named[None, :, :]).all(dim=-1)


def attribute_indices(scenes: list[Scene]) -> torch.Tensor:
    """(N, 4) indices of each scene's colour, shape, position and background."""
    return torch.tensor([[ATTRIBUTE_VALUES[a].index(getattr(s, a)) for a in ATTRIBUTES] for s in scenes])


def train_scorer(settings: dict[str, Any], out_dir: str | os.PathLike[str], device: torch.device):
    """Train the scorer and save it in open_clip's HF layout; returns the training log."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from entmap.models.tiny import save_open_clip

    seed = settings["seed"]
    config = scorer_config(settings)
    scenes = training_scenes()
    with seeded(seed):
        model = open_clip.CLIP(**config).to(device)
    subsets = partial_subsets()
    named = torch.tensor([[a in subset for a in ATTRIBUTES] for subset in subsets], device=device)
    captions = [scene.partial_caption(subset) for scene in scenes for subset in subsets]
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=SCORER_CONTEXT)(captions)
    attributes = attribute_indices(scenes).to(device)
    partial_share = settings["partial_captions"]
    images, labels = scene_pool(scenes, settings["pool"], seed)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(OPENAI_DATASET_MEAN)[:, None, None]
    std = torch.tensor(OPENAI_DATASET_STD)[:, None, None]
    pixels = ((pixels - mean) / std).to(device)  # the whole pool lives on the device
    tokens = tokens.to(device)
    generator = torch.Generator().manual_seed(seed)
    model.train()

    def compute_loss() -> torch.Tensor:
        pick = torch.randint(0, len(pixels), (settings["batch_size"],), generator=generator)
        label = torch.from_numpy(labels[pick.numpy()])
        subset = torch.full_like(label, len(subsets) - 1)  # the full caption
        if partial_share > 0:
            partial = torch.rand(len(label), generator=generator) < partial_share
            subset = torch.where(partial, torch.randint(0, len(subsets) - 1, label.shape, generator=generator), subset)
        label, subset = label.to(device), subset.to(device)
        caption = tokens[label * len(subsets) + subset]
        image_features, text_features, scale = model(pixels[pick.to(device)], caption)[:3]
        match = caption_match(attributes[label], named[subset])
        return soft_infonce(image_features, text_features, scale, match)

    log = optimize([{"params": list(model.parameters())}], settings, device, compute_loss, None, "toy scorer")
    model.eval()
    save_open_clip(model.cpu(), config, out_dir, half=settings["save_fp16"])
    return log


# --- VAE ----------------------------------------------------------------------------------


def vae_batch(rng: np.random.Generator, scenes: list[Scene], count: int, texture_share: float) -> np.ndarray:
    """A training batch of the VAE: scenes (held-out pairs too: the VAE sees no text) and textures."""
    out = []
    for _ in range(count):
        if rng.random() < texture_share:
            out.append(colour_texture(rng))
        else:
            out.append(render(scenes[rng.integers(len(scenes))], int(rng.integers(1 << 30))))
    return np.stack(out)


def build_vae(settings: dict[str, Any]):
    from diffusers import AutoencoderKL

    channels = tuple(settings["channels"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels,
        layers_per_block=settings["layers_per_block"],
        latent_channels=4,
        norm_num_groups=settings["norm_groups"],
        sample_size=SIZE,
    )


def train_vae(settings: dict[str, Any], out_dir: str | os.PathLike[str], device: torch.device):
    """Train the VAE (both phases), set its scaling factor, save it; returns (log, decoder log)."""

    seed = settings["seed"]
    with seeded(seed):
        vae = build_vae(settings).to(device)
    scenes = all_scenes()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    share = settings["texture_share"]
    vae.train()

    def compute_loss() -> torch.Tensor:
        x = to_unit_range(vae_batch(rng, scenes, settings["batch_size"], share)).to(device)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        return F.mse_loss(recon, x) + settings["kl_weight"] * posterior.kl().mean() / x[0].numel()

    log = optimize([{"params": list(vae.parameters())}], settings, device, compute_loss, None, "toy vae")
    decoder_settings = dict(settings, steps=settings["decoder_steps"])
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)

    def decoder_loss() -> torch.Tensor:
        x = to_unit_range(vae_batch(rng, scenes, settings["batch_size"], share)).to(device)
        with torch.no_grad():
            mode = vae.encode(x).latent_dist.mode()
        return F.mse_loss(vae.decode(mode).sample, x)

    decoder_params = [p for p in vae.parameters() if p.requires_grad]
    decoder_log = optimize([{"params": decoder_params}], decoder_settings, device, decoder_loss, None, "toy decoder")
    vae.requires_grad_(False).eval()
    with torch.no_grad():
        x = to_unit_range(vae_batch(np.random.default_rng(seed + 1), scenes, 512, share)).to(device)
        centre_latents(vae, x)
    with atomic_dir(out_dir) as tmp:
        (vae.half() if settings["save_fp16"] else vae).cpu().save_pretrained(tmp, safe_serialization=True)
    return log, decoder_log


@torch.no_grad()
def centre_latents(vae, pixels: torch.Tensor) -> None:
    """Fold the latents' per-channel mean m into the VAE's 1x1 convolutions and set the scaling.

    A small VAE's latents are far from centred (channel means of -2.5 against spreads of 0.5
    here), and SD's pipeline neither shifts them nor lets the sampler find the mean: sampling
    starts from N(0, I), so generated latents stay near 0, off the data, and decode to colour
    noise. quant_conv's mean bias becomes b - m, and post_quant_conv's bias b' = b + W m, so
    decode(z - m) = old decode(z): the autoencoder is unchanged, its latents are centred, and
    scaling_factor = 1 / std of the centred latents of ``pixels``.
    """
    channels = vae.config.latent_channels
    latents = vae.encode(pixels).latent_dist.mode()
    mean = latents.mean(dim=(0, 2, 3))
    vae.quant_conv.bias[:channels] -= mean
    post = vae.post_quant_conv
    post.bias += post.weight[:, :, 0, 0] @ mean
    vae.register_to_config(scaling_factor=float(1.0 / (latents - mean[:, None, None]).std()))


# --- text-to-image ------------------------------------------------------------------------


def build_text_to_image(settings: dict[str, Any]):
    """(UNet2DConditionModel, CLIPTextModel) of the toy pipeline, random weights."""
    from diffusers import UNet2DConditionModel

    from entmap.models.tiny import clip_text_encoder

    width = settings["text_width"]
    attention = settings["cross_attention"]
    if len(attention) != len(settings["channels"]):
        raise ValueError(
            f"text_to_image: cross_attention {attention} must name one entry per block of channels "
            f"{settings['channels']}"
        )
    text_encoder = clip_text_encoder(width, intermediate=4 * width, layers=settings["text_layers"])
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(settings["channels"]),
        layers_per_block=settings["layers_per_block"],
        down_block_types=tuple("CrossAttnDownBlock2D" if a == "cross" else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a == "cross" else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=width,
        # diffusers' legacy name: for this UNet ``attention_head_dim`` is the number of heads
        attention_head_dim=settings["attention_heads"],
        norm_num_groups=settings["norm_groups"],
    )
    return unet, text_encoder


def training_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    """The DDPM training schedule: SD v1.5's scaled-linear betas with ``schedule``'s changes.

    ``zero_terminal_snr`` rescales the betas so that alpha_bar at the last step is exactly 0
    (Lin et al. 2024: sqrt(alpha_bar) is shifted so its last value is 0 and scaled so its first
    is unchanged): the noisiest training input x_T = sqrt(alpha_bar_T) x_0 + sqrt(1 - alpha_bar_T) eps
    then holds nothing of the image, as at sampling time. ``prediction_type`` is what the UNet
    predicts: epsilon, or v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (needed at zero
    SNR, where an epsilon prediction carries no information about x_0).
    """
    from entmap.models.tiny import SD15_SCHEDULE

    config = {k: v for k, v in SD15_SCHEDULE.items() if k != "set_alpha_to_one"}
    config.update(prediction_type=schedule["prediction_type"], rescale_betas_zero_snr=schedule["zero_terminal_snr"])
    return config


def sampling_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    """The saved DDIM scheduler config matching :func:`training_schedule`.

    With zero terminal SNR the sampler must start at the last training step (t = 999, pure noise):
    ``timestep_spacing="trailing"`` and ``set_alpha_to_one=True`` end the chain at alpha_bar = 1.
    """
    from entmap.models.tiny import SD15_SCHEDULE

    config = dict(SD15_SCHEDULE, prediction_type=schedule["prediction_type"])
    if schedule["zero_terminal_snr"]:
        config.update(rescale_betas_zero_snr=True, timestep_spacing="trailing", set_alpha_to_one=True)
    return config


def denoising_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The UNet's regression target: ``noise`` (epsilon) or the velocity v (v_prediction)."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    return scheduler.get_velocity(latents, noise, t)


def train_text_to_image(
    settings: dict[str, Any], vae_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], device: torch.device
):
    """Train UNet + text encoder on the trained VAE's latents; save the pipeline (EMA weights)."""
    from diffusers import AutoencoderKL, DDPMScheduler
    from diffusers.training_utils import EMAModel

    from entmap.models.tiny import clip_tokenizer, sd_pipeline

    seed = settings["seed"]
    vae = AutoencoderKL.from_pretrained(str(vae_dir), torch_dtype=torch.float32).to(device).eval()
    with seeded(seed):
        unet, text_encoder = build_text_to_image(settings)
    unet.to(device).train()
    text_encoder.to(device).train()
    scenes = training_scenes()
    images, labels = scene_pool(scenes, settings["pool"], seed)
    with torch.no_grad():
        moments = []
        for start in range(0, len(images), 256):
            dist = vae.encode(to_unit_range(images[start : start + 256]).to(device)).latent_dist
            moments.append(torch.stack([dist.mean, dist.std]).cpu())
        moments = torch.cat(moments, dim=1).to(device)
    tokenizer = clip_tokenizer()
    captions = [s.caption for s in scenes] + [""]
    ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    ids = ids.to(device)
    scheduler = DDPMScheduler(**training_schedule(settings["schedule"]))
    scaling = vae.config.scaling_factor
    generator = torch.Generator().manual_seed(seed)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = EMAModel(params, decay=settings["ema"], foreach=True)
    dropout = settings["caption_dropout"]

    def compute_loss() -> torch.Tensor:
        pick = torch.randint(0, moments.shape[1], (settings["batch_size"],), generator=generator)
        mean, std = moments[:, pick.to(device)]
        latents = (mean + std * torch.randn(mean.shape, generator=generator).to(device)) * scaling
        label = torch.from_numpy(labels[pick.numpy()])
        drop = torch.rand(len(label), generator=generator) < dropout
        label = torch.where(drop, torch.full_like(label, len(captions) - 1), label)
        hidden = text_encoder(ids[label.to(device)])[0]
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(label),), generator=generator).to(device)
        prediction = unet(scheduler.add_noise(latents, noise, t), t, hidden).sample
        return F.mse_loss(prediction, denoising_target(scheduler, latents, noise, t))

    log = optimize([{"params": params}], settings, device, compute_loss, lambda step: ema.step(params), "toy t2i")
    ema.copy_to(params)
    unet.eval()
    text_encoder.eval()
    pipe = sd_pipeline(vae, text_encoder, unet, sampling_schedule(settings["schedule"]))
    if settings["save_fp16"]:
        pipe.to(torch.float16)
    with atomic_dir(out_dir) as tmp:
        pipe.to("cpu").save_pretrained(tmp, safe_serialization=True)
    return log


def run_training(
    kind: str,
    settings: dict[str, Any],
    out_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    vae_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    threads: int = 2,
) -> None:
    """One workflow target: train ``kind`` (scorer | vae | text_to_image), save it and its log.

    Beside the per-step log (CSV) goes its record (same name, ``.json``): the settings used,
    the hardware, torch's version, the wall time and the git commit of the code (with whether
    tracked files had uncommitted changes), which the model card quotes.
    """

    import pandas as pd

    from entmap.core.runtime import configure_torch, hardware, resolve_device

    configure_torch(threads)
    torch_device = resolve_device(device)
    commit, dirty = git_commit(), git_tree_dirty()  # the code that trains, before it runs
    start = time.perf_counter()
    if kind == "scorer":
        frame = train_scorer(settings, out_dir, torch_device).frame()
    elif kind == "vae":
        log, decoder_log = train_vae(settings, out_dir, torch_device)
        frame = pd.concat([log.frame().assign(phase="vae"), decoder_log.frame().assign(phase="decoder")])
    elif kind == "text_to_image":
        frame = train_text_to_image(settings, vae_dir, out_dir, torch_device).frame()
    else:
        raise ValueError(f"unknown toy-world model {kind!r}; use scorer, vae or text_to_image")
    record = {
        "kind": kind,
        "hardware": hardware(),
        "device": str(torch_device),
        "threads": threads,
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - start, 1),
        "commit": commit,
        "uncommitted_changes": dirty,
        "settings": settings,
    }
    write_text(training_record_path(log_path), json.dumps(record, indent=1) + "\n")
    write_text(log_path, frame.to_csv(index=False))


def training_record_path(log_path: str | os.PathLike[str]) -> str:
    """The JSON record beside a training log: ``scorer.csv`` -> ``scorer.json``."""
    return os.path.splitext(os.fspath(log_path))[0] + ".json"
