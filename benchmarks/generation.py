"""Images/s of entmap's generate stage against a bare diffusers loop with identical settings.

    python benchmarks/generation.py                      # the shipped toy model on CPU
    python benchmarks/generation.py --shape sd15 --device cuda --dtype float16 --resolution 512 --steps 50
    python benchmarks/generation.py --shape sdxl --device cuda --dtype float16 --resolution 1024 --steps 30
    python benchmarks/generation.py --shape flux --device cuda --dtype bfloat16 --resolution 1024 --steps 28

The bare loop is what a user would write: ``pipe(prompt=[...], generator=[...])`` per batch with
the same steps, guidance, resolution, negative prompt and batch size. entmap's
:func:`entmap.measure.generate.generate_shard` does the same work plus per-image seeded latents
and PNG encoding (on a worker thread). ``--shape`` builds a full-size random-weight model of that
architecture (:mod:`entmap.models.full_size`) instead of the toy model. Writes
``benchmarks/results/generation-<shape>-<device>.json``.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
from common import interleaved, median, save

from entmap.core.runtime import configure_torch, resolve_device, resolve_dtype
from entmap.measure.generate import generate_shard
from entmap.models.families import family_of_pipeline
from entmap.models.loading import load_pipeline

TOY = "resources/models/toyworld/sd"


def bare_loop(pipe, texts: list[str], seeds: list[int], settings: dict) -> list:
    """The reference: one pipeline call per batch, one seeded generator per image."""
    jobs = [(text, seed) for text in texts for seed in seeds]
    extra = {"negative_prompt": [""]} if family_of_pipeline(pipe).negative_prompt else {}
    images = []
    for start in range(0, len(jobs), settings["batch_size"]):
        batch = jobs[start : start + settings["batch_size"]]
        generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in batch]
        with torch.inference_mode():
            images += pipe(
                prompt=[text for text, _ in batch],
                generator=generators,
                height=settings["resolution"],
                width=settings["resolution"],
                num_inference_steps=settings["steps"],
                guidance_scale=settings["guidance_scale"],
                output_type="pil",
                **{k: v * len(batch) for k, v in extra.items()},
            ).images
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="toy", choices=["toy", "sd15", "sdxl", "flux"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_torch(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.shape == "toy":
        pipe = load_pipeline(TOY, device, dtype)
    else:
        from entmap.models.full_size import build_full_size_pipeline

        pipe = build_full_size_pipeline(args.shape, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    texts = [f"a red circle number {i} on a striped background" for i in range(args.prompts)]
    prompts = pd.DataFrame({"id": [f"p{i}" for i in range(args.prompts)], "category": "x", "text": texts})
    seeds = list(range(args.seeds))
    settings = {
        "steps": args.steps,
        "guidance_scale": args.guidance,
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "negative_prompt": "",
    }
    times = interleaved(
        {
            "entmap": lambda: generate_shard(pipe, prompts, seeds, settings, "bench", ""),
            "bare": lambda: bare_loop(pipe, texts, seeds, settings),
        },
        args.repeats,
    )
    images = args.prompts * args.seeds
    rate = {name: images / median(values) for name, values in times.items()}
    ratio = rate["entmap"] / rate["bare"]
    settings_text = f"{args.shape} on {device} ({dtype}), {args.resolution}px, {args.steps} steps"
    settings_text += f", batch {args.batch_size}"
    print(f"{settings_text}, {images} images per round, median of {args.repeats} alternating rounds")
    print(f"entmap {rate['entmap']:.2f} images/s, bare loop {rate['bare']:.2f} images/s: ratio {ratio:.3f}")
    path = save(
        f"generation-{args.shape}-{device.type}",
        {"settings": vars(args) | {"dtype": str(dtype)}, "seconds": times, "images_per_s": rate, "ratio": ratio},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
