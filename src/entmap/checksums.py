"""SHA-256 of files, read in 1 MiB blocks (adapters and archives can be gigabytes)."""

from __future__ import annotations

import hashlib
import os


def update_with_file(digest: hashlib._Hash, path: str | os.PathLike[str]) -> None:
    """Feed the bytes of ``path`` into ``digest``."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of one file (as ``sha256sum`` prints it)."""
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()
