"""Rerun triggers from the real import graph: the hash of the entmap code a rule's script runs.

Snakemake's code trigger sees a rule's script, never the package modules it calls, so every rule
passes ``code_hash(script)`` as a parameter. The hash covers exactly the entmap modules the script
imports, followed transitively through every ``import`` statement of those modules (function-level
imports included: they run too), plus the ``__init__`` of every package on the way (Python runs
them) and any data file a module names beside itself (a string constant equal to a sibling file's
name, such as the report's HTML template). Editing a module therefore reruns the rules whose
scripts reach it, and no others.

Parsing is static (``ast``): nothing is imported, so computing the hashes at DAG build costs a few
milliseconds and never loads torch.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
from pathlib import Path

PACKAGE = "entmap"
_FILE_NAME = re.compile(r"[\w-]+(\.[\w-]+)+")


def _module_file(src: Path, name: str) -> Path | None:
    """The file of module ``name`` (dotted) under ``src``, or None if it is not an entmap module."""
    path = src.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _module_name(src: Path, file: Path) -> str:
    parts = file.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _scan(file: str, mtime_ns: int, size: int) -> tuple[tuple[int, str | None, tuple[str, ...]], ...]:
    """One AST walk of ``file``: its imports as (level, module, names), then its string constants
    as (-1, value, ()). Cached per file version, since every rule's hash walks the same modules."""
    tree = ast.parse(Path(file).read_text(encoding="utf-8"), filename=file)
    found: list[tuple[int, str | None, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.append((0, None, tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module, tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((-1, node.value, ()))
    return tuple(found)


def _scanned(file: Path) -> tuple[tuple[int, str | None, tuple[str, ...]], ...]:
    stat = file.stat()
    return _scan(str(file), stat.st_mtime_ns, stat.st_size)


def imported_modules(file: Path, src: Path) -> set[str]:
    """Dotted names of the entmap modules ``file`` imports anywhere in its body (not transitively).

    ``from entmap.a import b`` counts ``entmap.a`` and, when ``b`` is a module, ``entmap.a.b``;
    relative imports are resolved against ``file``'s package.
    """
    own = _module_name(src, file) if file.is_relative_to(src) else ""
    package = own if file.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for level, module, names in _scanned(file):
        if level < 0:
            continue
        if module is None and level == 0:
            candidates = list(names)
        else:
            if level:
                base = ".".join(package.split(".")[: len(package.split(".")) - level + 1])
                module = f"{base}.{module}" if module else base
            module = module or ""
            candidates = [module] + [f"{module}.{name}" for name in names]
        found.update(name for name in candidates if name.split(".")[0] == PACKAGE and _module_file(src, name))
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(script: str | os.PathLike[str], src: str | os.PathLike[str]) -> list[Path]:
    """Every entmap module file ``script`` reaches through imports, with their packages' ``__init__``.

    ``src`` is the folder that holds the ``entmap`` package. Sorted, for a stable hash.
    """
    src = Path(src).resolve()
    todo = sorted(imported_modules(Path(script).resolve(), src))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        for module in _with_parents(name):
            if module in seen:
                continue
            seen.add(module)
            file = _module_file(src, module)
            if file is not None:
                todo.extend(imported_modules(file, src) - seen)
    return sorted(path for path in (_module_file(src, name) for name in seen) if path is not None)


def data_files(module: Path) -> list[Path]:
    """Files beside ``module`` that it names in a string constant (templates it reads)."""
    names = {value for level, value, _ in _scanned(module) if level < 0}
    candidates = (name for name in names if _FILE_NAME.fullmatch(name) and not name.endswith(".py"))
    return sorted(module.parent / name for name in candidates if (module.parent / name).is_file())


@functools.cache
def code_hash(script: str | os.PathLike[str], src: str | os.PathLike[str]) -> str:
    """Short SHA-256 over the relative path and bytes of every file :func:`import_closure` finds.

    Scripts that reach no entmap module get the hash of nothing, a fixed value.
    """
    src = Path(src).resolve()
    digest = hashlib.sha256()
    for module in import_closure(script, src):
        for file in (module, *data_files(module)):
            digest.update(str(file.relative_to(src)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]
