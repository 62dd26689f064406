"""The model card shipped with the toy world's weights (resources/models/toyworld/MODEL_CARD.md)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from entmap.core.atomic import atomic_dir
from entmap.toyworld.world import BACKGROUNDS, COLOURS, HELD_OUT_PAIRS, POSITIONS, SHAPES


def folder_size_mb(folder: str | os.PathLike[str]) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


def _phases(log: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The log's training phases in order (label, rows); one unlabelled phase without a ``phase`` column."""
    if not len(log):
        return [("", pd.DataFrame({"step": [0], "loss": [float("nan")]}))]
    if "phase" not in log.columns:
        return [("", log)]
    return [(f" ({name})", group) for name, group in log.groupby("phase", sort=False)]


def _commit(record: dict[str, Any]) -> str:
    commit = record.get("commit")
    if not commit:
        return "not recorded"
    return f"`{commit[:10]}`" + (" (uncommitted changes)" if record.get("uncommitted_changes") else "")


def model_card(
    records: dict[str, dict[str, Any]],
    quality: pd.DataFrame,
    train_logs: dict[str, pd.DataFrame],
    sizes: dict[str, float],
    commit: str,
    notes: str = "",
) -> str:
    """The card's Markdown: data, training settings and steps, hardware, commit, quality table.

    ``records`` are the training records (``entmap.toyworld.train.run_training``) per model:
    settings, hardware, device, torch version and wall time. ``notes`` (Markdown, its own ``##``
    sections: the recipe's history, ``resources/toyworld/diagnosis.md``) go after the quality table.
    """
    from entmap.toymodels.evaluate import DDIM_STEPS, GUIDANCE

    phases = {kind: _phases(log) for kind, log in train_logs.items()}
    steps = {kind: " + ".join(f"{int(g['step'].max())}{label}" for label, g in p) for kind, p in phases.items()}
    final = {kind: " / ".join(f"{g['loss'].tail(50).mean():.4g}" for _, g in p) for kind, p in phases.items()}
    held_out = ", ".join(f"{c} {s}" for c, s in sorted(HELD_OUT_PAIRS))
    lines = [
        "# The toy world's models",
        "",
        "A tiny Stable-Diffusion-shaped text-to-image pipeline (`sd/`, diffusers layout) and a tiny CLIP-style",
        "scorer (`clip/`, open_clip layout, load with `local-dir:`), trained from scratch by",
        "`entmap.toymodels.train` on synthetic captioned scenes. They make entmap's default run offline and",
        "meaningful in a small world; they know nothing outside it.",
        "",
        "## Data",
        "",
        f"32x32 scenes of one shape ({', '.join(SHAPES)}) in one of {len(COLOURS)} colours "
        f"({', '.join(COLOURS)}) at one of {len(POSITIONS)} positions ({', '.join(POSITIONS)}) on one of "
        f'{len(BACKGROUNDS)} grey textured backgrounds ({", ".join(BACKGROUNDS)}); captions like "a red circle '
        'on the left on a striped background" (`entmap.toyworld.world`; shape size and a +-1 pixel jitter '
        f"vary with the seed). Held out of training (composition test): {held_out}. The VAE also saw random "
        "colourful textures, so it can draw styles the scenes never show.",
        "",
        "## Training",
        "",
        f"Released from entmap commit `{commit}`. Steps, mean loss of the last 50 steps (per phase), "
        "the commit of the code that trained each model, and where it was trained:",
        "",
        "| model | steps | final loss | size (MB) | commit | trained on | device | torch | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in train_logs:
        record = records.get(kind, {})
        minutes = record.get("seconds", float("nan")) / 60
        lines.append(
            f"| {kind} | {steps[kind]} | {final[kind]} | {sizes.get(kind, float('nan')):.1f} "
            f"| {_commit(record)} | {record.get('hardware', '?')} | {record.get('device', '?')} "
            f"| {record.get('torch', '?')} | {minutes:.1f} |"
        )
    settings = {kind: record.get("settings", {}) for kind, record in records.items()}
    half = [kind for kind, block in settings.items() if block.get("save_fp16")]
    stored = "in float16" if len(half) == len(settings) else f"in float16 ({', '.join(half) or 'none'}), else float32"
    lines += [
        "",
        f"Weights are stored {stored} (safetensors) and load as float32. Settings (the `toyworld:` blocks "
        "of `configs/toyworld-train.yaml`):",
        "",
        "```yaml",
        yaml.safe_dump(settings, sort_keys=False).rstrip(),
        "```",
        "",
        "## Quality (`entmap toyworld-eval`)",
        "",
        f"Generated images ({DDIM_STEPS} DDIM steps, guidance {GUIDANCE:g}): every attribute read by the pixel "
        "checks that also score E_struct, the shape also by the scorer zero-shot. The instruments alone, on real "
        "rendered scenes of held-out pairs: the pixel checks after the VAE's round trip, the scorer zero-shot.",
        "",
        quality.to_markdown(index=False, floatfmt=".3f"),
        "",
        *([notes.strip(), ""] if notes.strip() else []),
        "## Reproduce",
        "",
        "```bash",
        "snakemake toyworld_release --cores 2   # trains, evaluates, writes results/toyworld/release/",
        "rm -rf resources/models/toyworld && cp -r results/toyworld/release resources/models/toyworld",
        "```",
        "",
    ]
    return "\n".join(lines)


def release(
    model_dir: str | os.PathLike[str],
    scorer_dir: str | os.PathLike[str],
    quality_csv: str | os.PathLike[str],
    train_log_csvs: dict[str, str],
    out_dir: str | os.PathLike[str],
    commit: str,
    notes_path: str | os.PathLike[str] | None = None,
) -> None:
    """Assemble the shippable folder: sd/, clip/ and MODEL_CARD.md (logs and records beside them);
    ``notes_path``: Markdown copied into the card after the quality table (:func:`model_card`)."""

    from entmap.toymodels.train import training_record_path

    logs = {kind: pd.read_csv(path) for kind, path in train_log_csvs.items()}
    records = {
        kind: json.loads(Path(training_record_path(path)).read_text(encoding="utf-8"))
        for kind, path in train_log_csvs.items()
    }
    sizes = {
        "text_to_image": folder_size_mb(model_dir),
        "vae": folder_size_mb(Path(model_dir) / "vae"),
        "scorer": folder_size_mb(scorer_dir),
    }
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(model_dir, tmp / "sd")
        shutil.copytree(scorer_dir, tmp / "clip")
        notes = Path(notes_path).read_text(encoding="utf-8") if notes_path else ""
        card = model_card(records, pd.read_csv(quality_csv), logs, sizes, commit, notes)
        (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        (tmp / "training").mkdir()
        for kind, path in train_log_csvs.items():
            shutil.copy2(path, tmp / "training" / f"{kind}.csv")
            shutil.copy2(training_record_path(path), tmp / "training" / f"{kind}.json")
        shutil.copy2(quality_csv, tmp / "quality.csv")
