"""Schema validation of a study config: every problem in one message, naming the dotted key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from entmap.core.vocabulary import split_method


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key or file and the fix."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{self.name}:{line}: key {key!r} is given twice (first on line {seen[key]}); YAML would keep "
                    "only the last block silently: merge the two or rename one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config_file(path: str | os.PathLike[str]) -> Any:
    """Parse a YAML config file strictly: syntax errors and duplicate keys name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context
        raise ConfigError(f"{where}: YAML syntax error: {problem}; check the indentation and brackets there") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {exc}") from None
    finally:
        loader.dispose()


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> None:
    """Validate ``config`` against the JSON schema; raise ConfigError listing every problem.

    Per-subject training overrides and variants (``lora+sage``: ``variants.sage`` over
    ``methods.lora``) are merged into the method's settings and the result is validated against the
    method's schema too.
    """
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    lines = schema_errors(schema, config, "")
    if not lines:

        def check_merged(method: str, merged: dict[str, Any], where: str) -> None:
            sub = {"$ref": f"#/$defs/{method}_settings", "$defs": schema["$defs"]}
            lines.extend(schema_errors(sub, merged, f"{where} (merged)"))

        for name, subject in config["subjects"].items():
            for method, override in subject.get("train", {}).items():
                if method in config["methods"]:
                    check_merged(method, {**config["methods"][method], **override}, f"subjects.{name}.train.{method}")
        used = {split_method(m) for subject in config["subjects"].values() for m in subject["methods"]}
        for base, variant in sorted(used, key=str):
            if variant in config.get("variants", {}) and base in config["methods"]:
                merged = {**config["methods"][base], **config["variants"][variant]}
                check_merged(base, merged, f"variants.{variant} over methods.{base}")
    if lines:
        raise ConfigError(f"invalid configuration (see {schema_path}):\n" + "\n".join(lines))


def _strict_integer(checker, instance) -> bool:
    """JSON Schema counts 4.0 as an integer; Python's range() does not: only real ints are."""
    return isinstance(instance, int) and not isinstance(instance, bool)


#: Draft 2020-12 whose "integer" excludes floats such as 4.0 (which would crash range() later)
StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def schema_errors(schema: dict[str, Any], instance: Any, prefix: str) -> list[str]:
    """One line per JSON-schema violation of ``instance``, naming the dotted key."""
    validator = StrictValidator(schema)
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
    if error.validator == "type" and isinstance(error.instance, float) and "integer" in str(error.validator_value):
        return f"{error.instance!r} is not an integer; write it without a decimal point ({int(error.instance)})"
    return error.message
