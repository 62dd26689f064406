"""Bad inputs as a user meets them: the real `snakemake -n` (or the CLI, or the loader a job calls) in
a fresh copy of the workflow. Each case asserts a non-zero exit, a message naming the file or key
(and line, where there is one) with the fix, no traceback, and nothing written under results/."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, make_workdir, snakemake
from PIL import Image
from safetensors.torch import save_file

from entmap.models.adapter_formats import ExternalAdapterError, read_tensors


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return make_workdir(tmp_path_factory.mktemp("reliability"), config)


def refused(workdir: Path, config_text: str, *expected: str) -> str:
    """Write ``config_text`` as a --configfile, dry-run, and check the refusal; returns the message."""
    path = workdir / "case.yaml"
    path.write_text(config_text)
    result = snakemake(workdir, "-n", "--configfile", "case.yaml", check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    for text in expected:
        assert text in message, message
    assert "Traceback" not in message
    assert not (workdir / "results").exists()
    return message


def base_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_a_float_where_an_integer_belongs_is_refused_by_key(workdir):
    config = base_config()
    config["generation"]["seeds"] = 4.0
    refused(workdir, yaml.safe_dump(config), "generation.seeds: 4.0 is not an integer", "(4)")


def test_a_subject_given_twice_is_refused_with_both_lines(workdir):
    text = (REPO / "config.yaml").read_text()
    block = text[text.index("subjects:") :]
    first = block.splitlines()[1]  # "  <name>:"
    duplicated = text.replace("subjects:\n", f"subjects:\n{first}\n    category: face\n", 1)
    message = refused(workdir, duplicated, "case.yaml:", f"key {first.strip().rstrip(':')!r} is given twice")
    assert "merge the two or rename one" in message


def test_a_misspelt_prompt_category_is_refused_with_its_line(workdir):
    suite = (REPO / "resources/prompts/entanglement-200.tsv").read_text().splitlines()
    row = next(i for i, line in enumerate(suite) if i > 0 and "\tobjects\t" in line)  # not the header's column
    suite[row] = suite[row].replace("\tobjects\t", "\tobjetcs\t")
    (workdir / "misspelt.tsv").write_text("\n".join(suite) + "\n")
    config = base_config()
    config["prompts"]["suite"] = "misspelt.tsv"
    refused(workdir, yaml.safe_dump(config), f"misspelt.tsv:{row + 1}: category 'objetcs'", "misspelling of 'objects'")


def test_references_pointing_at_a_file_say_it_is_a_file(workdir):
    (workdir / "one.png").write_bytes(b"")
    config = base_config()
    name = next(iter(config["subjects"]))
    config["subjects"][name]["references"] = "one.png"
    refused(workdir, yaml.safe_dump(config), "one.png is a file; point it at a folder")


def test_a_decompression_bomb_reference_is_refused_by_name(workdir):
    folder = workdir / "bomb_refs"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (64, 64)).save(folder / f"{index}.png")
    Image.new("1", (20_000, 20_000)).save(folder / "huge.png")  # 400 megapixels, a few kB on disk
    config = base_config()
    name = next(iter(config["subjects"]))
    config["subjects"][name]["references"] = "bomb_refs"
    refused(workdir, yaml.safe_dump(config), "huge.png", "downscale it")


def test_a_suite_saved_with_a_byte_order_mark_is_read(workdir, tmp_path):
    """Excel's "CSV UTF-8" writes a BOM before the header; the suite is read as if it had none."""
    from entmap.inputs.prompt_suites import load_prompts

    source = REPO / "resources/prompts/entanglement-200.tsv"
    bom = tmp_path / "excel.tsv"
    bom.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert load_prompts(bom).equals(load_prompts(source))


def test_a_yaml_syntax_error_names_the_file_and_line():
    broken = "generation:\n  seeds: [4\n"
    result = subprocess.run(
        [sys.executable, "-m", "entmap", "check-config", "/dev/stdin"], input=broken, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "/dev/stdin:3:1: YAML syntax error" in result.stderr and "Traceback" not in result.stderr


def test_check_config_accepts_the_shipped_configs():
    result = subprocess.run(
        [sys.executable, "-m", "entmap", "check-config", "config.yaml"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0 and "valid; 15 models" in result.stdout


# adapter files are untrusted input: each refused with the file named, none loading code


def test_a_pickle_that_is_more_than_tensors_is_refused_even_with_allow_pickle(tmp_path):
    path = tmp_path / "embedding.pt"
    torch.save({"string_to_param": {"*": torch.zeros(1, 4)}, "hook": copy.copy}, path)  # a function: not weights
    with pytest.raises(ExternalAdapterError, match=r"embedding\.pt: the pickle holds more than tensors"):
        read_tensors(path, allow_pickle=True)


def test_a_safetensors_header_claiming_huge_tensors_is_refused(tmp_path):
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 40_000_000_000]}})
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 16)
    with pytest.raises(ExternalAdapterError, match=r"liar\.safetensors: not a readable safetensors file"):
        read_tensors(path, allow_pickle=False)


def test_weights_with_nan_or_inf_are_refused(tmp_path):
    path = tmp_path / "diverged.safetensors"
    save_file({"a.lora_A.weight": torch.tensor([[1.0, float("nan")]]), "b": torch.tensor([float("inf")])}, str(path))
    with pytest.raises(ExternalAdapterError, match=r"diverged\.safetensors: 2 tensors hold NaN or infinite"):
        read_tensors(path, allow_pickle=False)


def test_a_base_model_folder_without_a_pipeline_is_refused(workdir):
    (workdir / "not_a_model").mkdir(exist_ok=True)
    (workdir / "not_a_model/unet").mkdir(exist_ok=True)
    config = base_config()
    config["base"] = {"kind": "pretrained", "model": "not_a_model"}
    refused(workdir, yaml.safe_dump(config), "base.model: not_a_model: not a diffusers pipeline folder")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["verify-archive", "no/such/folder"], "no/such/folder/MANIFEST.sha256: missing"),
        (["toyworld-eval", "--model", "no/such/model"], "--model no/such/model: no diffusers pipeline there"),
        (["check-config", "no/such/config.yaml"], "no/such/config.yaml: cannot be read"),
    ],
)
def test_cli_arguments_that_name_nothing_are_refused(arguments, expected, tmp_path):
    result = subprocess.run([sys.executable, "-m", "entmap", *arguments], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
