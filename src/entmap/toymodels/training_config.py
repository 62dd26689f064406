"""The toy world's training config (``configs/toyworld-train.yaml``), read and checked.

Kept apart from :mod:`entmap.toymodels.train` so the workflow can check the file when it builds
the DAG without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from entmap.config.validation import ConfigError, schema_errors


def load_training_config(path: str | os.PathLike[str], schema_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``toyworld:`` block of a training config file, checked against its schema.

    Raises ConfigError naming the file, each wrong key and the schema; every setting the code
    reads is required, so what is checked is what the training record lists.
    """
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the toy-world training config {path}: {error}") from error
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    lines = schema_errors(schema, config, "")
    if lines:
        raise ConfigError(f"invalid toy-world training config {path} (see {schema_path}):\n" + "\n".join(lines))
    return config["toyworld"]
