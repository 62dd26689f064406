"""Archival: one tar.gz of a finished run with everything a paper's numbers came from.

The archive holds the run's results (maps, tables, statistics, figures, report, noise floor,
the per-seed tables behind every stage's numbers, adapter metadata and training logs; generated
images, attention maps and adapter weights optionally), the exact configuration, the prompt
suite, the SHA-256 of every adapter, the package versions and the git commit
(``PROVENANCE.json``), and ``MANIFEST.sha256`` listing the checksum of every other file in
``sha256sum`` format. ``verify_archive`` recomputes them.

Explained in docs/outputs.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import yaml

from entmap.core.atomic import atomic_path
from entmap.core.checksums import file_sha256
from entmap.core.provenance import git_commit, package_versions

MANIFEST = "MANIFEST.sha256"
PROVENANCE = "PROVENANCE.json"
#: folders packed whole: the merged outputs and every stage's per-seed (or per-step) tables
ALWAYS = (
    "maps",
    "tables",
    "stats",
    "figures",
    "noise_floor",
    "disruption",
    "scores",
    "blocks",
    "geometry",
    "collapse",
    "audit",
)
#: per-model tables of stages whose folders also hold image-sized data (packed with the images)
TABLES = ("attention/**/stats.parquet", "tea/**/scores.parquet")
IMAGE_LIKE = ("images/**/*", "attention/**/maps.parquet", "tea/**/images.parquet")
ADAPTER_FILES = ("meta.json", "train_log.parquet", "trajectory.safetensors")


def run_files(results: Path, include_images: bool, include_weights: bool) -> list[Path]:
    """The files of a run that go into its archive, sorted."""
    files: list[Path] = []
    for name in ALWAYS:
        files += [p for p in (results / name).rglob("*") if p.is_file()]
    for pattern in TABLES + (IMAGE_LIKE if include_images else ()):
        files += [p for p in results.glob(pattern) if p.is_file()]
    files += [p for p in results.glob("*.json") if p.is_file()]
    files += [p for p in results.glob("*.html") if p.is_file()]
    adapters = results / "adapters"
    files += [p for p in adapters.rglob("*") if p.is_file() and (p.name in ADAPTER_FILES or include_weights)]
    return sorted(f for f in set(files) if not f.name.startswith("."))


def adapter_hashes(results: Path) -> dict[str, str]:
    """SHA-256 of every adapter: trained weights, or an external source as audited."""
    hashes = {}
    for meta_path in sorted((results / "adapters").glob("*/*/meta.json")):
        model = f"{meta_path.parent.parent.name}/{meta_path.parent.name}"
        weights = meta_path.parent / "adapter.safetensors"
        if weights.is_file():
            hashes[model] = file_sha256(weights)
        else:
            hashes[model] = json.loads(meta_path.read_text(encoding="utf-8")).get("sha256", "unknown")
    return hashes


def write_archive(
    results_dir: str | os.PathLike[str],
    config: dict[str, Any],
    suite_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    include_images: bool = False,
    include_weights: bool = False,
) -> Path:
    """Write the run's archive (tar.gz) atomically; returns its path."""

    results = Path(results_dir)
    out_path = Path(out_path)
    root = out_path.name.removesuffix(".tar.gz")
    members: dict[str, bytes | Path] = {
        f"results/{p.relative_to(results)}": p for p in run_files(results, include_images, include_weights)
    }
    members["config.yaml"] = yaml.safe_dump(config, sort_keys=False).encode()
    members[f"prompts/{Path(suite_path).name}"] = Path(suite_path)
    members[PROVENANCE] = json.dumps(
        {
            "git_commit": git_commit(),
            "packages": package_versions(),
            "adapters_sha256": adapter_hashes(results),
            "include_images": include_images,
            "include_weights": include_weights,
        },
        indent=2,
    ).encode()
    lines = []
    for name in sorted(members):
        data = members[name]
        digest = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else file_sha256(data)
        lines.append(f"{digest}  {name}\n")
    members[MANIFEST] = "".join(lines).encode()
    with atomic_path(out_path) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for name in sorted(members):
            _add(tar, f"{root}/{name}", members[name])
    return out_path


def _add(tar: tarfile.TarFile, name: str, data: bytes | Path) -> None:
    if isinstance(data, Path):
        tar.add(data, arcname=name, recursive=False)
        return
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def verify_archive(folder: str | os.PathLike[str]) -> list[str]:
    """Recompute every checksum of an unpacked archive; return the problems (empty: intact).

    Reports files whose content changed, files listed but missing, files not listed, and MANIFEST
    lines that are malformed or name a path outside the folder (absolute, ``..``, or through a
    symbolic link): such a member is refused unread, so verifying never opens a file outside
    ``folder``.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        return [f"{manifest}: missing (or a link); is {folder} an unpacked entmap archive?"]
    problems, listed = [], set()
    for number, line in enumerate(manifest.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        digest, separator, name = line.partition("  ")
        if not separator or not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            problems.append(f"{manifest}:{number}: malformed line {line[:80]!r} (expected '<sha256>  <path>')")
            continue
        listed.add(name)
        unsafe = unsafe_member(folder, name)
        if unsafe:
            problems.append(f"{manifest}:{number}: {name}: refused, {unsafe}")
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif file_sha256(path) != digest:
            problems.append(f"{name}: checksum mismatch (modified after archiving)")
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            if name not in listed:
                problems.append(f"{name}: a symbolic link, not in the manifest (archives hold no links)")
        elif path.is_file() and path.name != MANIFEST and name not in listed:
            problems.append(f"{name}: not in the manifest (added after archiving)")
    return problems


def unsafe_member(folder: Path, name: str) -> str | None:
    """Why a MANIFEST member name is unsafe to open (absolute, escaping, or through a link), else None."""
    relative = Path(name)
    if relative.is_absolute() or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in relative.parts:
        return "a path that leaves the archive folder ('..')"
    current = folder
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            return f"{current.relative_to(folder)} is a symbolic link (archives hold no links)"
    return None
