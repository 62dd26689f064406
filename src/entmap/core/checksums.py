"""SHA-256 of files (read in 1 MiB blocks: adapters and archives can be gigabytes) and of settings."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


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


def settings_hash(settings: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serializable settings dict."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
