"""The workflow's conventions that a file scan can check: logs, glue scripts, GPU routing, no outside citations."""

import re
import subprocess

import yaml
from conftest import REPO


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, for every rule of rules/*.smk (``use rule`` inherits its parent's)."""
    blocks: dict[str, str] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:|use rule )", smk.read_text(), flags=re.MULTILINE):
            if match := re.match(r"rule (\w+):", block):
                blocks[match.group(1)] = block
            elif match := re.match(r"use rule (\w+) as (\w+)", block):
                blocks[match.group(2)] = blocks[match.group(1)] + block
    return blocks


def test_every_gpu_rule_has_its_gpu_partition_in_the_slurm_profile():
    profile = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    gpu_rules = {name for name, block in rule_blocks().items() if re.search(r"^\s+gpu=1,", block, re.M)}
    assert {"generate_base", "train_ti", "toyworld_scorer"} <= gpu_rules  # the scan sees rules and `use rule`
    routed = {name for name, keys in profile["set-resources"].items() if "gpu" in keys.get("slurm_partition", "")}
    assert gpu_rules <= routed, f"gpu=1 rules without a GPU partition in profiles/slurm: {sorted(gpu_rules - routed)}"
    unknown = sorted(routed - set(rule_blocks()))
    assert not unknown, f"profiles/slurm names rules that do not exist: {unknown}"


def test_the_slurm_profile_groups_each_models_jobs_by_wildcards_its_rules_have():
    """profiles/slurm's `groups`: RULE=model_<pattern>; each pattern resolves, from the rule's own
    output wildcards, to the same name for every job of one personalized model (subject/method)."""
    profile = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    blocks = rule_blocks()
    groups = dict(entry.split("=", 1) for entry in profile["groups"])
    assert {"train", "generate_personalized", "score", "disrupt", "geometry"} <= set(groups)
    for rule, group in groups.items():
        assert rule in blocks, f"profiles/slurm groups rule {rule!r}, which does not exist"
        assert "localrule: True" not in blocks[rule], f"{rule} runs locally; grouping it means nothing"
        output = re.search(r"^    output:\n\s+(?:\w+=)?(?:directory\()?\"([^\"]+)\"", blocks[rule], re.M).group(1)
        wildcards = set(re.findall(r"\{(\w+)\}", output))
        assert set(re.findall(r"\{(\w+)\}", group)) <= wildcards, (rule, group, output)
        # the model the job belongs to, as subject/method, must be what the pattern names
        example = {"subject": "face1", "method": "lora", "model": "face1/lora", "name": "face1", "shard": "000"}
        resolved = group.format(**example)
        assert resolved in ("model_face1/lora", "model_face1/external"), (rule, resolved)
    assert profile["set-resource-scopes"] == ["gpu=local"] and profile["resources"] == ["gpu=1"]
    # a group job runs in one partition: every grouped rule is routed to the same one
    partitions = {profile["set-resources"].get(rule, {}).get("slurm_partition") for rule in groups}
    assert len(partitions) == 1 and None not in partitions, partitions


def test_nothing_in_the_repository_cites_files_outside_it():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r"SCIENCE\.md|DESIGN\.md|\.\./shared")
    hits = [
        name
        for name in tracked
        if (REPO / name).is_file()
        and (REPO / name).suffix in {".py", ".md", ".yaml", ".smk", ".rst", ".html", ".toml", ".tsv", ""}
        and pattern.search((REPO / name).read_text(encoding="utf-8", errors="replace"))
    ]
    assert not hits, f"these files cite files outside the repository: {hits}"


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
