"""Command line (``entmap ...`` or ``python -m entmap ...``).

* ``entmap verify-archive FOLDER``: recompute the checksums of an unpacked run archive.
* ``entmap check-config CONFIG...``: check study config files as the workflow would, naming the
  file and line of a YAML syntax error or a key given twice (Snakemake's own message names neither).
* ``entmap toyworld-eval``: the toy world's quality table (generated images and scorer).
* ``entmap audit ADAPTER...``: audit adapter files before publishing them (docs/audit.md): writes
  a study config to OUT/config.yaml and runs the workflow on it (results in OUT/results/audit/).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

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


def audit_command(args: argparse.Namespace) -> int:
    """Describe the adapters, write OUT/config.yaml, check it as the workflow would, run Snakemake on it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as the workflow: the Hub only with HF_HUB_OFFLINE=0
    from entmap.audit.describe import describe, group_checkpoints
    from entmap.audit.study_config import choose_base, repository, study_config, write_study_config
    from entmap.config.plan import load_plan
    from entmap.models.adapter_formats import hub_online

    try:
        root = repository()
        adapters = group_checkpoints(
            [describe(source, args.kind, args.allow_pickle) for source in _adapter_sources(args.adapters)]
        )
        base, template, why = choose_base(adapters, args.base, hub_online())
        config = study_config(
            adapters,
            base,
            template,
            category=args.category,
            trigger=args.trigger,
            prompts=args.prompts,
            per_category=args.per_category,
            seeds=args.seeds,
            references=args.references,
            scales=args.scales,
        )
        for assignment in args.set or []:
            _assign(config, assignment)
        if args.allow_pickle:
            for entry in config["external"].values():
                entry["allow_pickle"] = True
        load_plan(config, root / "schemas" / "config.schema.yaml")
    except ValueError as error:
        print(f"entmap audit: {error}", file=sys.stderr)
        return 2
    path = write_study_config(config, args.out)
    for adapter in adapters:
        epochs = ", ".join(c.entry for c in adapter.checkpoints)
        f = adapter.final.file
        print(
            f"{adapter.name}: {f.kind}, {len(adapter.checkpoints)} checkpoint(s) ({epochs}); trigger "
            f"{args.trigger or f.trigger!r} ({'--trigger' if args.trigger else f.trigger_source or 'none found'})"
        )
    print(f"base model {config['base']['model']} ({why}); study config {path}")
    command = [
        str(Path(sys.executable).with_name("snakemake")),
        "-s",
        str(root / "Snakefile"),
        "--directory",
        str(path.parent),
        "--configfile",
        str(path),
    ]
    command += ["--profile", str(_profile(args.profile, root))] if args.profile else []
    command += ["--cores", str(args.cores or 2)] if args.cores or not args.profile else []
    command += ["-n"] if args.dry_run else []
    print("running:", " ".join(command), flush=True)
    code = subprocess.run(command, check=False).returncode
    if code == 0 and not args.dry_run:
        results = path.parent / "results"
        print(
            f"audit: {results / 'audit/audit.json'}, {results / 'audit/model_card.md'}; map: {results / 'report.html'}"
        )
    return code


def _adapter_sources(sources: list[str]) -> list[str]:
    """The adapter arguments with folders of adapter files expanded (a pipeline folder stays one source)."""
    from entmap.audit.describe import AdapterInputError

    out = []
    for source in sources:
        folder = Path(source)
        if folder.is_dir() and not (folder / "model_index.json").is_file():
            files = sorted(str(p) for p in folder.iterdir() if p.suffix == ".safetensors")
            if not files:
                raise AdapterInputError(f"{source}: a folder without .safetensors files or model_index.json")
            out.extend(files)
        else:
            out.append(source)
    return out


def _profile(profile: str, root: Path) -> Path:
    """A profile folder as given, else one of the repository's (local, slurm, default)."""
    return Path(profile).resolve() if Path(profile).is_dir() else root / "profiles" / profile


def _assign(config: dict, assignment: str) -> None:
    """``--set generation.steps=4``: a dotted key and a YAML value, set in ``config``."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: write KEY=VALUE, e.g. generation.steps=4")
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {part} is not a block of keys")
    node[last] = yaml.safe_load(value)


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
    audit = commands.add_parser(
        "audit", help="audit adapter files before publishing them (docs/audit.md)", description=audit_command.__doc__
    )
    audit.add_argument("adapters", nargs="+", metavar="ADAPTER", help="adapter files, folders of them, or Hub ids")
    audit.add_argument(
        "--base", help="base model folder or Hub id (default: from the files' metadata, else the toy world)"
    )
    audit.add_argument("--prompts", metavar="SUITE", help="prompt suite TSV (id, category, text); default the base's")
    audit.add_argument("--per-category", type=int, help="the first N prompts of each category")
    audit.add_argument("--seeds", type=int, help="seeds per prompt (at least 2)")
    audit.add_argument("--out", default="audit", help="output folder: config.yaml and results/ (default ./audit)")
    audit.add_argument("--profile", help="a Snakemake profile folder, or local | slurm | default of the repository")
    audit.add_argument("--cores", type=int, help="cores for a local run (default 2 without --profile)")
    audit.add_argument("--dry-run", action="store_true", help="write the config and show the jobs, run nothing")
    audit.add_argument("--references", metavar="DIR", help="reference images of the adapter's concept (CLIP-I)")
    audit.add_argument("--trigger", help="the trigger phrase (default: from the files' metadata)")
    audit.add_argument(
        "--kind", choices=["lora", "ti", "cd", "checkpoint"], help="adapter kind (default: from its keys)"
    )
    audit.add_argument("--category", default="style", help="subject category of the adapters (face, object, style)")
    audit.add_argument("--scales", type=float, nargs="+", help="LoRA scales of the strength sweep (with 0 and 1)")
    audit.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config key, e.g. generation.steps=4")
    audit.add_argument("--allow-pickle", action="store_true", help="read .bin/.pt/.ckpt files (can run code)")
    audit.set_defaults(run=audit_command)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
