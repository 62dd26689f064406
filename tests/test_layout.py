"""DESIGN.md's promises that a file scan can check."""

import re

from conftest import REPO


def test_every_rule_has_a_log():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        blocks = re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.MULTILINE)
        for block in blocks:
            match = re.match(r"rule (\w+):", block)
            if match and match.group(1) != "all":
                assert "\n    log:" in block, f"{smk.name}: rule {match.group(1)} has no log"


def test_package_never_imports_snakemake():
    for path in (REPO / "src" / "entmap").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+snakemake", path.read_text(), re.MULTILINE), path


def test_rule_scripts_are_glue():
    for path in (REPO / "workflow_scripts").glob("*.py"):
        code = [line for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]
        assert len(code) <= 30, f"{path.name}: {len(code)} lines; move logic into src/entmap"
        assert not re.search(r"^\s*(def|class|for|while) ", path.read_text(), re.MULTILINE), path.name
