"""The package's architecture: one subpackage per stage family, imports that run downward only.

Walks the AST of every module (function-level imports included) and checks the layering written
down in README.md's module map, that there is no import cycle, that function-level imports are
only used to defer heavy libraries, and that the top level holds only the package face.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "entmap"

#: subpackage -> the subpackages it may import (besides itself). ``entmap`` is the package face.
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "toyworld": {"core"},
    "inputs": {"core", "toyworld"},
    "models": {"core"},
    "config": {"core", "inputs", "models"},
    "geometry": {"core", "models"},
    "attention": {"core", "models", "measure"},
    "personalize": {"core", "inputs", "models", "geometry"},
    "measure": {"core", "toyworld", "inputs", "models"},
    "analysis": {"core", "measure"},
    "tea": {"core", "inputs", "models", "measure"},
    "present": {"core", "inputs", "models"},  # models: adapter metadata for the PNG parameters
    "audit": {"core", "inputs", "config", "models", "measure"},
    "toymodels": {"core", "toyworld", "inputs", "config", "models", "personalize", "measure", "attention"},
}
FACE = {"__init__.py", "__main__.py", "cli.py"}
#: Libraries slow enough to import that a module may defer them into a function.
HEAVY = {
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "open_clip",
    "lpips",
    "peft",
    "safetensors",
    "statsmodels",
    "matplotlib",
    "scipy",
    "pandas",
    "tokenizers",
    "altair",
    "itables",
    "vl_convert",
    "huggingface_hub",  # only needed for Hub ids; the DAG is built without it
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path, top_level_only: bool = False) -> list[tuple[str, bool]]:
    """(imported dotted name, inside a function) for every import statement of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1])
                    module = f"{base}.{child.module}" if child.module else base
                else:
                    module = child.module or ""
                names = [f"{module}.{alias.name}" for alias in child.names]
                found.append((module, in_function))
                found.extend((name, in_function) for name in names if name in MODULES)
            visit(child, nested)

    visit(tree, False)
    if top_level_only:
        return [(name, lazy) for name, lazy in found if not lazy]
    return found


def entmap_imports(path: Path) -> set[str]:
    return {name for name, _ in imports(path) if name in MODULES and name != module_name(path)}


def subpackage(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "entmap"


def test_the_layers_themselves_form_no_cycle():
    order, seen = [], set()

    def visit(layer: str, path: tuple[str, ...]) -> None:
        assert layer not in path, f"layer cycle: {' -> '.join((*path, layer))}"
        if layer in seen:
            return
        for lower in LAYERS[layer]:
            visit(lower, (*path, layer))
        seen.add(layer)
        order.append(layer)

    for layer in LAYERS:
        visit(layer, ())
    assert order[0] == "core"


def test_top_level_holds_only_the_package_face_and_subpackages():
    files = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert files == FACE
    assert folders == set(LAYERS)
    assert all((PACKAGE / folder / "__init__.py").is_file() for folder in folders)


def test_every_import_runs_downward():
    problems = []
    for name, path in sorted(MODULES.items()):
        layer = subpackage(name)
        for target in sorted(entmap_imports(path)):
            target_layer = subpackage(target)
            if target_layer in (layer, "entmap") and layer != "entmap":
                continue
            if layer == "entmap":  # the face: cli may use any stage; __init__ only core
                if path.name == "__init__.py" and target_layer != "core":
                    problems.append(f"{name} -> {target}")
                continue
            if target_layer not in LAYERS[layer]:
                problems.append(f"{name} ({layer}) -> {target} ({target_layer})")
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_core_imports_nothing_of_entmap():
    for name, path in MODULES.items():
        if subpackage(name) == "core":
            outside = {t for t in entmap_imports(path) if subpackage(t) != "core"}
            assert not outside, f"{name} imports {outside}"


def test_no_import_cycle_lazy_imports_included():
    graph = {name: entmap_imports(path) - {"entmap"} for name, path in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(target) :], target]))
            if target not in state:
                visit(target, path)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def heavy_at_import(name: str, seen: set[str] | None = None) -> bool:
    """Whether importing entmap module ``name`` imports a heavy library (top-level imports only)."""
    seen = set() if seen is None else seen
    if name in seen:
        return False
    seen.add(name)
    for target, _ in imports(MODULES[name], top_level_only=True):
        if target.split(".")[0] in HEAVY or (target in MODULES and heavy_at_import(target, seen)):
            return True
    return False


def test_function_level_imports_only_defer_heavy_libraries():
    problems = []
    for name, path in sorted(MODULES.items()):
        for target, lazy in imports(path):
            if not lazy or target.split(".")[0] in HEAVY or target == "__future__":
                continue
            if target in MODULES and heavy_at_import(target):
                continue
            problems.append(f"{name}: `import {target}` inside a function (import it at the top)")
    assert not problems, "\n".join(sorted(set(problems)))


def test_readme_module_map_matches_the_tree():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Module map", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    actual = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    folders = {p.parent.name for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
    named_folders = set(re.findall(r"^([a-z_]+)/", block, re.M))
    assert named_folders == folders, f"README module map folders {sorted(named_folders)} != tree {sorted(folders)}"
    modules_in_map = set()
    current = None
    for line in block.splitlines():
        head = re.match(r"^([a-z_]+)/", line)
        if head:
            current = head.group(1)
            line = line[head.end() :]
        for module in re.findall(r"\b([a-z_]+)\.py\b", line):
            if module == "__init__":
                continue
            modules_in_map.add(f"{current}/{module}.py" if current else f"{module}.py")
    assert modules_in_map == actual, (
        f"in README but not in the tree: {sorted(modules_in_map - actual)}; "
        f"in the tree but not in README: {sorted(actual - modules_in_map)}"
    )


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_subpackage_says_what_it_holds(layer):
    doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc) > 20, f"{layer}/__init__.py needs a docstring saying what the subpackage holds"
