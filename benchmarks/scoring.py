"""Images/s of entmap's score and disrupt stages against bare open_clip and lpips forward passes.

    python benchmarks/scoring.py                 # the toy world's scorer and LPIPS on CPU
    python benchmarks/scoring.py --device cuda --scorer ViT-L-14 --pretrained openai --lpips-backbone imagenet

Both sides get the same stored PNGs in the same batches (32). Score: entmap's
:func:`entmap.measure.score.score_frame` against decode + preprocess + ``encode_image`` +
``encode_text`` + cosine written out by hand. Disrupt: :func:`entmap.measure.disrupt.compute_disruption`
(alignment checks, E_sem shift, LPIPS) against decode + ``lpips.LPIPS`` forward on the pairs.
Writes ``benchmarks/results/scoring-<device>.json``.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import pandas as pd
import torch
from common import interleaved, median, save
from PIL import Image

from entmap.core.image_codec import decode_png
from entmap.core.runtime import configure_torch, resolve_device
from entmap.measure.disrupt import compute_disruption
from entmap.measure.generate import generate_shard
from entmap.measure.metrics import Lpips
from entmap.measure.score import ClipScorer, score_frame
from entmap.models.loading import load_pipeline

TOY = "resources/models/toyworld/sd"
TOY_SCORER = "local-dir:resources/models/toyworld/clip"
BATCH = 32


def bare_score(scorer: ClipScorer, images: pd.DataFrame, texts: dict[str, str]) -> np.ndarray:
    """cos(f_T(p), f_I(x)) per image, by open_clip's forward passes alone."""
    out = []
    for start in range(0, len(images), BATCH):
        chunk = images.iloc[start : start + BATCH]
        pixels = torch.stack([scorer.preprocess(Image.open(io.BytesIO(png)).convert("RGB")) for png in chunk["png"]])
        tokens = scorer.tokenizer([texts[pid] for pid in chunk["prompt_id"]])
        with torch.inference_mode():
            image = torch.nn.functional.normalize(scorer.model.encode_image(pixels.to(scorer.device)).float(), dim=-1)
            text = torch.nn.functional.normalize(scorer.model.encode_text(tokens.to(scorer.device)).float(), dim=-1)
        out.append((image * text).sum(-1).cpu().numpy())
    return np.concatenate(out)


def bare_lpips(lpips: Lpips, base: pd.DataFrame, pers: pd.DataFrame) -> np.ndarray:
    """LPIPS of each seed-matched pair, by the lpips package's forward pass alone."""
    a = np.stack([decode_png(png) for png in base["png"]])
    b = np.stack([decode_png(png) for png in pers["png"]])
    return lpips.distance(a, b, BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scorer", default=TOY_SCORER)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--lpips-backbone", default="random", choices=["random", "imagenet"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_torch(args.threads)
    device = resolve_device(args.device)
    pipe = load_pipeline(TOY, torch.device("cpu"), torch.float32)
    pipe.set_progress_bar_config(disable=True)
    texts = {f"p{i}": f"a blue square number {i} on a dotted background" for i in range(args.prompts)}
    prompts = pd.DataFrame({"id": list(texts), "category": "x", "text": list(texts.values())})
    seeds = list(range(args.seeds))
    settings = {"steps": 4, "guidance_scale": 5.0, "resolution": 32, "batch_size": 16, "negative_prompt": ""}
    key = ["prompt_id", "seed"]  # the order compute_disruption aligns pairs in
    base = generate_shard(pipe, prompts, seeds, settings, "base", "h").sort_values(key, ignore_index=True)
    pers = generate_shard(pipe, prompts, seeds, settings | {"guidance_scale": 2.0}, "pers", "h")
    pers = pers.sort_values(key, ignore_index=True)
    scorer = ClipScorer(args.scorer, args.pretrained, device)
    lpips = Lpips(backbone=args.lpips_backbone, device=device)
    base_scores, pers_scores = score_frame(scorer, base, texts), score_frame(scorer, pers, texts)
    assert np.allclose(base_scores["clip_cos"], bare_score(scorer, base, texts), atol=1e-5)
    disruption = compute_disruption(base, pers, base_scores, pers_scores, lpips, "pers")
    assert np.allclose(disruption["lpips"], bare_lpips(lpips, base, pers), atol=1e-6)
    times = interleaved(
        {
            "entmap score": lambda: score_frame(scorer, base, texts),
            "bare open_clip": lambda: bare_score(scorer, base, texts),
            "entmap disrupt": lambda: compute_disruption(base, pers, base_scores, pers_scores, lpips, "pers"),
            "bare lpips": lambda: bare_lpips(lpips, base, pers),
        },
        args.repeats,
    )
    images = len(base)
    rate = {name: images / median(values) for name, values in times.items()}
    ratios = {
        "score": rate["entmap score"] / rate["bare open_clip"],
        "disrupt": rate["entmap disrupt"] / rate["bare lpips"],
    }
    print(f"{args.scorer} and LPIPS ({args.lpips_backbone} AlexNet) on {device}, {images} images, batches of {BATCH}")
    for name, value in rate.items():
        print(f"{name:>15}: {value:8.1f} images/s")
    print(f"ratios (entmap / bare): score {ratios['score']:.3f}, disrupt {ratios['disrupt']:.3f}")
    path = save(
        f"scoring-{device.type}",
        {"settings": vars(args), "seconds": times, "images_per_s": rate, "ratios": ratios},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
