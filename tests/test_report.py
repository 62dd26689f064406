"""The report page built from a hand-made run (tests/report_inputs.py): which cells carry images,
the A1111 parameters of the exported PNGs, the audit section, nothing loaded from a network."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_inputs import MODELS, PROMPTS, SEEDS, SIZE, image_png, report_inputs

from entmap.core.image_codec import decode_png
from entmap.core.parquet_schemas import IMAGES, read_table
from entmap.present.map_explorer import choose_image_cells
from entmap.present.report import external_references, write_report


def explorer_spec(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="map-explorer-spec">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def exported_pngs(spec: dict) -> dict[str, bytes]:
    """key ("model|prompt|seed") -> PNG bytes of the page's image table."""
    for rows in spec["datasets"].values():
        if rows and set(rows[0]) == {"key", "url"}:
            prefix = "data:image/png;base64,"
            return {row["key"]: base64.b64decode(row["url"].removeprefix(prefix)) for row in rows}
    raise AssertionError("no image table in the spec")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    kwargs = report_inputs(tmp_path_factory.mktemp("report"), audit=True)
    write_report(**kwargs)
    return kwargs, kwargs["out_path"].read_text(encoding="utf-8")


def test_choose_image_cells_takes_the_most_disrupted_and_a_seeded_sample():
    cells = pd.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(6)] * 2,
            "model": ["a"] * 6 + ["b"] * 6,
            "e_sem": [0.1, 0.5, 0.3, 0.5, 0.0, 0.2] + [0.0] * 6,
        }
    )
    chosen = choose_image_cells(cells, most_disrupted=2, sample=2, seed=0)
    top_a = chosen[(chosen["model"] == "a") & (chosen["why"] == "most disrupted")]["prompt_id"]
    assert list(top_a) == ["p1", "p3"]  # the tie at 0.5 broken by prompt id
    assert list(chosen[(chosen["model"] == "b") & (chosen["why"] == "most disrupted")]["prompt_id"]) == ["p0", "p1"]
    sample = chosen[chosen["why"] == "sample"]
    assert sample.groupby("model").size().to_dict() == {"a": 2, "b": 2}
    assert not set(sample["prompt_id"][sample["model"] == "a"]) & {"p1", "p3"}
    assert chosen.equals(choose_image_cells(cells, most_disrupted=2, sample=2, seed=0))
    assert len(choose_image_cells(cells, most_disrupted=9, sample=9)) == 12  # capped by the cells there are


def test_the_page_carries_only_the_chosen_cells_images_with_their_parameters(built):
    kwargs, page = built
    pngs = exported_pngs(explorer_spec(page))
    models = {key.split("|")[0] for key in pngs}
    assert models == {"base", *MODELS}
    # one most disrupted and one sampled prompt per model: face1/lora's top is p001, bands1/cd's p002
    for model, top in (("face1/lora", "p001"), ("bands1/cd", "p002")):
        prompts = {key.split("|")[1] for key in pngs if key.startswith(model + "|")}
        assert top in prompts and len(prompts) == 2
    assert len(pngs) == sum(1 for key in pngs if key.startswith("base|")) + 2 * 2 * len(SEEDS)
    for key, png in pngs.items():
        model, prompt_id, seed = key.split("|")
        np.testing.assert_array_equal(decode_png(png), decode_png(image_png(model, prompt_id, int(seed))))
    with Image.open(io.BytesIO(pngs["face1/lora|p001|1"])) as image:
        text = image.text["parameters"]
    lora_hash = hashlib.sha256(b"face1/lora").hexdigest()[:12]  # the adapter's tensor bytes
    assert text == (
        "a red car, at night\n"
        f"Steps: 10, Sampler: DDIM, CFG scale: 5.0, Seed: 1, Size: {SIZE}x{SIZE}, Model: sd, "
        f'Lora hashes: "face1-lora: {lora_hash}", Entmap model: face1/lora'
    )
    with Image.open(io.BytesIO(pngs["base|p001|0"])) as image:
        assert image.text["parameters"] == (
            f"a red car, at night\nSteps: 10, Sampler: DDIM, CFG scale: 5.0, Seed: 0, Size: {SIZE}x{SIZE}, Model: sd"
        )
    # the stored shards keep their bytes
    for path in kwargs["images"]:
        for row in read_table(path, IMAGES).itertuples():
            assert row.png == image_png(row.model, row.prompt_id, row.seed)


def test_the_page_says_which_cells_have_images(built):
    _, page = built
    assert "Images are in the page for 4 of 6 cells" in page
    assert "face1/lora: most disrupted: p001; sample: " in page


def test_the_audit_comes_first_with_badges_reasons_strength_checkpoints_and_card(built):
    _, page = built
    assert page.index('id="audit"') < page.index("personalized models compared") < page.index('id="explorer"')
    assert '<span class="verdict fail">fail</span> <b>mydog</b>' in page
    assert '<span class="verdict pass">pass</span> <b>mystyle</b>' in page
    assert "<li>42% of prompts disrupted (above 20%)</li>" in page
    assert "Recommended checkpoint: <b>mydog-000004.safetensors</b>" in page
    strength = json.loads(re.search(r'id="audit-strength-spec">(.*?)</script>', page, re.S).group(1))
    rows = next(iter(strength["datasets"].values()))
    assert {row["quantity"] for row in rows} == {"E_sem", "target fidelity"} and len(rows) == 12
    checkpoints = re.search(r'"data_json": "(\[\[\\"mydog.*?)",\n', page).group(1)
    assert "\\u2605 recommended" in checkpoints and checkpoints.count("recommended") == 1
    card = re.search(r'<pre id="model-card">(.*?)</pre>', page, re.S).group(1)
    assert html.unescape(card) == "# mydog\n\n| metric | value |\n|---|---|\n| mean E_sem | 0.31 |\n"


def test_the_report_says_which_elements_each_model_damaged(built):
    page = built[1]
    section = page[page.index('id="element-damage"') : page.index("Noise floor")]
    damaged = "face1/lora damaged position (0.90 → 0.15, change -0.75, 95% CI [-0.90, -0.60])"
    assert f"{damaged}; no damage detected in colour." in section
    assert "bands1/cd damaged no element (checked: position)." in section


def test_no_audit_no_audit_section(tmp_path):
    kwargs = report_inputs(tmp_path)
    write_report(**kwargs)
    page = kwargs["out_path"].read_text(encoding="utf-8")
    assert 'id="audit"' not in page and 'id="explorer"' in page


def test_a_report_without_images_has_no_explorer(tmp_path):
    kwargs = report_inputs(tmp_path)
    write_report(**{**kwargs, "images": []})
    page = kwargs["out_path"].read_text(encoding="utf-8")
    assert 'id="explorer"' not in page and "Every cell" in page


def test_nothing_is_loaded_from_a_network(built):
    _, page = built
    assert external_references(page) == []
    assert "http://" not in page.replace("http://www.w3.org", "")  # as tests/test_workflow.py checks the run's
    planted = page.replace("</head>", '<script src="https://cdn.example/vega.js"></script></head>', 1)
    planted = planted.replace("</style>", "body { background: url(http://example.org/x.png); }</style>", 1)
    assert external_references(planted) == ["https://cdn.example/vega.js", "http://example.org/x.png"]
    assert external_references('<a href="https://itables.org/">a link, not a load</a>') == []


def test_prompt_text_cannot_end_the_spec_script(built):
    _, page = built
    assert PROMPTS["p002"] == "a <b>bold</b> teapot"
    spec_text = re.search(r'id="map-explorer-spec">(.*?)</script>', page, re.S).group(1)
    assert "<" not in spec_text and "a <b>bold</b> teapot" in json.dumps(explorer_spec(page))
