"""Generation throughput by batch size, on the tiny base (CPU) or any diffusers folder / hub id.

    python benchmarks/generation_batching.py [--model results/models/tiny-sd] [--device auto]

Prints images per second for each batch size and the ratio to batch size 1. Batch size is
part of the generation settings hash (batch composition changes float rounding), so pick it
once per study; this tells you what it buys on your hardware.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from entmap.core.runtime import configure_torch, resolve_device, resolve_dtype
from entmap.measure.generate import generate_shard
from entmap.models.loading import load_pipeline
from entmap.models.tiny import build_tiny_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="diffusers folder or hub id (default: a fresh tiny base)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_torch(args.threads)
    model = args.model
    if model is None:
        model = tempfile.mkdtemp() + "/tiny-sd"
        build_tiny_base(model)
    device = resolve_device(args.device)
    pipe = load_pipeline(model, device, resolve_dtype("auto", device))
    prompts = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(args.images // 4)],
            "category": "x",
            "text": [f"a photo of object number {i}" for i in range(args.images // 4)],
        }
    )
    seeds = [0, 1, 2, 3]
    rates = {}
    for batch in (1, 4, 16):
        settings = {"steps": args.steps, "guidance_scale": 7.5, "resolution": args.resolution, "batch_size": batch}
        generate_shard(pipe, prompts.head(1), seeds[:batch], settings, "warmup", "")
        start = time.perf_counter()
        generate_shard(pipe, prompts, seeds, settings, "bench", "")
        rates[batch] = len(prompts) * len(seeds) / (time.perf_counter() - start)
    print(f"device {device}, {resolution_note(args)}")
    for batch, rate in rates.items():
        print(f"batch {batch:>2}: {rate:7.2f} images/s   ratio to batch 1: {rate / rates[1]:.2f}x")


def resolution_note(args) -> str:
    return f"{args.resolution}px, {args.steps} DDIM steps, {args.images} images per batch size"


if __name__ == "__main__":
    main()
