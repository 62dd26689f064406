"""Schema validation of a study config: every problem in one message, naming the dotted key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key or file and the fix."""


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> None:
    """Validate ``config`` against the JSON schema; raise ConfigError listing every problem.

    Per-subject training overrides are merged into the method's settings and the result is
    validated against the method's schema too.
    """
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    lines = schema_errors(schema, config, "")
    if not lines:
        for name, subject in config["subjects"].items():
            for method, override in subject.get("train", {}).items():
                if method in config["methods"]:
                    merged = {**config["methods"][method], **override}
                    sub = {"$ref": f"#/$defs/{method}_settings", "$defs": schema["$defs"]}
                    lines += schema_errors(sub, merged, f"subjects.{name}.train.{method} (merged)")
    if lines:
        raise ConfigError(f"invalid configuration (see {schema_path}):\n" + "\n".join(lines))


def schema_errors(schema: dict[str, Any], instance: Any, prefix: str) -> list[str]:
    """One line per JSON-schema violation of ``instance``, naming the dotted key."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [
        f"  config key {'.'.join(filter(None, [prefix, *map(str, e.absolute_path)])) or '(top level)'}: "
        + _short_message(e)
        for e in errors
    ]


def _short_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and error.context:
        best = min(error.context, key=lambda e: len(e.message))
        return best.message
    return error.message
