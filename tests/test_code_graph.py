"""Rerun triggers from the import graph (entmap.core.code_graph), on a hand-made package and on entmap."""

from __future__ import annotations

from pathlib import Path

from entmap.core.code_graph import code_hash, data_files, import_closure

REPO = Path(__file__).resolve().parents[1]


def make_package(root: Path) -> tuple[Path, Path]:
    """src/entmap with a (lazy import of b), b (relative import of c), c, d (unused), a template."""
    pkg = root / "src" / "entmap"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""face"""\n')
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text(
        'TEMPLATE = "page.html"\n\n\ndef run():\n    from entmap.sub import b\n\n    return b.VALUE\n'
    )
    (pkg / "sub" / "page.html").write_text("<p>v1</p>\n")
    (pkg / "sub" / "b.py").write_text("from .c import VALUE\n")
    (pkg / "sub" / "c.py").write_text("VALUE = 1\n")
    (pkg / "sub" / "d.py").write_text("UNUSED = 1\n")
    script = root / "script.py"
    script.write_text("import os\n\nfrom entmap.sub.a import run\n\nrun()\n")
    return root / "src", script


def fresh_hash(script: Path, src: Path) -> str:
    code_hash.cache_clear()
    return code_hash(script, src)


def test_closure_follows_lazy_and_relative_imports_and_package_inits(tmp_path):
    src, script = make_package(tmp_path)
    names = {str(path.relative_to(src)) for path in import_closure(script, src)}
    assert names == {
        "entmap/__init__.py",
        "entmap/sub/__init__.py",
        "entmap/sub/a.py",
        "entmap/sub/b.py",
        "entmap/sub/c.py",
    }


def test_hash_changes_with_reached_modules_and_their_data_files_only(tmp_path):
    src, script = make_package(tmp_path)
    before = fresh_hash(script, src)
    (src / "entmap/sub/d.py").write_text("UNUSED = 2\n")
    assert fresh_hash(script, src) == before  # not imported: no rerun
    (src / "entmap/sub/c.py").write_text("VALUE = 2\n")
    after_c = fresh_hash(script, src)
    assert after_c != before  # imported two steps away
    (src / "entmap/sub/page.html").write_text("<p>v2</p>\n")
    assert fresh_hash(script, src) != after_c  # a file the module names beside itself


def closure(script: str) -> set[str]:
    src = REPO / "src"
    return {str(p.relative_to(src / "entmap")) for p in import_closure(REPO / "workflow_scripts" / script, src)}


def test_generation_reaches_the_runtime_but_no_figure_or_analysis_module():
    modules = closure("generate.py")
    assert {"measure/generate.py", "models/loading.py", "models/sampling.py", "core/runtime.py"} <= modules
    assert not any(m.startswith(("present/", "analysis/", "tea/", "personalize/")) for m in modules), modules


def test_figures_reach_no_model_code():
    modules = closure("figure_map.py")
    assert "present/figures.py" in modules
    assert not any(m.startswith(("models/", "measure/", "personalize/")) for m in modules), modules


def test_the_report_hash_covers_its_template():
    assert "present/report.py" in closure("report.py")
    report = REPO / "src/entmap/present/report.py"
    assert data_files(report) == [report.parent / "report_template.html"]
