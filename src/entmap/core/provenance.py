"""Provenance of a run: entmap's version, the git commit of the checkout, package versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess

#: entmap's version (the package face re-exports it as ``entmap.__version__``).
__version__ = "0.1.0"

PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "open_clip_torch",
    "lpips",
    "snakemake",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "matplotlib",
    "pyarrow",
)


def git_commit(cwd: str | os.PathLike[str] = ".") -> str:
    """The commit checked out in ``cwd``, or a note that it is not a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def git_tree_dirty(cwd: str | os.PathLike[str] = ".") -> bool | None:
    """Whether tracked files differ from HEAD (None outside a git checkout)."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(status.stdout.strip())


def package_versions() -> dict[str, str]:
    """Python's and each key package's installed version ("not installed" where missing)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
