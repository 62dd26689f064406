"""Command line (``entmap ...`` or ``python -m entmap ...``).

* ``entmap verify-archive FOLDER``: recompute the checksums of an unpacked run archive.
* ``entmap check-config CONFIG...``: check study config files as the workflow would, naming the
  file and line of a YAML syntax error or a key given twice (Snakemake's own message names neither).
* ``entmap toyworld-eval``: the toy world's quality table (generated images and scorer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from entmap.config.validation import ConfigError, load_config_file
from entmap.core.atomic import write_text
from entmap.present.archive import verify_archive

TOYWORLD = "resources/models/toyworld"


def verify_archive_command(args: argparse.Namespace) -> int:

    problems = verify_archive(args.folder)
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    if problems:
        print(f"{args.folder}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.folder}: every checksum matches")
    return 0


def check_config_command(args: argparse.Namespace) -> int:
    """Merge the files in order (as ``--configfile`` does), validate, plan; print the problems or the plan."""
    from entmap.config.plan import load_plan

    config: dict = {}
    try:
        for path in args.configs:
            loaded = load_config_file(path)
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(loaded).__name__}")
            config = _merged(config, loaded)
        plan = load_plan(config, args.schema)
    except ValueError as error:
        print(f"entmap check-config: {error}", file=sys.stderr)
        return 1
    print(f"{', '.join(args.configs)}: valid; {len(plan.models)} models, {len(plan.shard_names)} prompt shards")
    return 0


def _merged(base: dict, update: dict) -> dict:
    """Snakemake's config merge: nested mappings merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def toyworld_eval_command(args: argparse.Namespace) -> int:

    from entmap.toymodels.evaluate import evaluate, evaluation_scenes

    problems = []
    if not (Path(args.model) / "model_index.json").is_file():
        problems.append(f"--model {args.model}: no diffusers pipeline there (model_index.json)")
    if not (Path(args.scorer) / "open_clip_config.json").is_file():
        problems.append(f"--scorer {args.scorer}: no open_clip folder there (open_clip_config.json)")
    if problems:
        problems.append(f"run from the repository root (the defaults are under {TOYWORLD}/) or pass the folders")
    try:
        evaluation_scenes(args.prompts)
    except ValueError as error:
        problems.append(f"--prompts: {error}")
    if problems:
        print("entmap toyworld-eval: " + "\n  ".join(problems), file=sys.stderr)
        return 2
    table = evaluate(
        args.model, args.scorer, args.prompts, args.seeds, args.steps, args.guidance, args.threads, args.device
    )
    print(table.to_markdown(index=False, floatfmt=".3f"))
    if args.csv:
        write_text(args.csv, table.to_csv(index=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="entmap", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify-archive", help="recompute the checksums of an unpacked run archive")
    verify.add_argument("folder", help="the unpacked archive's top folder (holds MANIFEST.sha256)")
    verify.set_defaults(run=verify_archive_command)
    check = commands.add_parser("check-config", help="check study config files (run from the repository root)")
    check.add_argument("configs", nargs="+", help="config files, merged in order as --configfile does")
    check.add_argument("--schema", default="schemas/config.schema.yaml", help="the config schema")
    check.set_defaults(run=check_config_command)
    from entmap.toymodels.evaluate import DDIM_STEPS, GUIDANCE, PER_SPLIT, SEEDS

    toy = commands.add_parser("toyworld-eval", help="quality table of the toy world's text-to-image model and scorer")
    toy.add_argument("--model", default=f"{TOYWORLD}/sd", help="diffusers folder of the text-to-image model")
    toy.add_argument("--scorer", default=f"{TOYWORLD}/clip", help="open_clip folder of the scorer")
    toy.add_argument("--prompts", type=int, default=PER_SPLIT, help="captions per split (seen, held-out)")
    toy.add_argument("--seeds", type=int, default=SEEDS, help="images per caption")
    toy.add_argument("--steps", type=int, default=DDIM_STEPS, help="DDIM steps")
    toy.add_argument("--guidance", type=float, default=GUIDANCE, help="classifier-free guidance scale")
    toy.add_argument("--threads", type=int, default=2, help="torch threads")
    toy.add_argument("--device", default="auto", help="auto | cpu | cuda")
    toy.add_argument("--csv", help="also write the table to this CSV file")
    toy.set_defaults(run=toyworld_eval_command)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
