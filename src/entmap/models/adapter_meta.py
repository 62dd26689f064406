"""An adapter folder's metadata: ``meta.json`` beside ``adapter.safetensors``.

``meta.json`` says how to load the adapter (``method``, its file ``format``, its ``token``) and,
for audited adapters, the source file, its SHA-256 and whether pickle files were allowed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from entmap.core.atomic import write_text

ADAPTER_FILE = "adapter.safetensors"
META_FILE = "meta.json"


def read_meta(adapter_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The meta.json an adapter folder carries (method, token, settings, ...)."""
    path = Path(adapter_dir) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: adapter metadata missing; retrain the adapter") from exc


def write_meta(path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """Write an adapter's meta.json atomically."""
    write_text(Path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
