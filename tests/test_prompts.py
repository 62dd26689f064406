"""The shipped prompt suite and the loader's validation."""

import pytest
from conftest import REPO

from entmap.inputs.prompt_suites import (
    PROMPT_CATEGORIES,
    PromptSuiteError,
    load_prompts,
    make_shards,
    prompts_by_id,
    select_prompts,
)

SUITE = REPO / "resources" / "prompts" / "entanglement-200.tsv"
PAPER_TABLE2 = {
    "a set of watercolor paints",
    "a portrait of a young woman smiling",
    "time frozen in mid-motion",
    "a landscape made of food",
    "a pop art comic panel",
    "a chef cooking in a kitchen",
    "a surfer riding a wave",
    "a koala in a eucalyptus tree",
    "a crystal chandelier",
    "a cup of coffee with latte art",
}


def test_shipped_suite_has_the_papers_shape():
    prompts = load_prompts(SUITE)
    assert len(prompts) == 200
    counts = prompts["category"].value_counts().to_dict()
    assert counts == {"people": 33, "animals": 33, "objects": 34, "scenes": 34, "styles": 33, "abstract": 33}
    assert set(prompts["text"]) >= PAPER_TABLE2
    assert prompts["id"].is_unique
    assert prompts["text"].str.casefold().is_unique


def write(tmp_path, body: bytes):
    path = tmp_path / "suite.tsv"
    path.write_bytes(b"id\tcategory\ttext\n" + body)
    return path


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"a\tpeople\tx one\na\tanimals\tx two\n", "id 'a' already used on line 2"),
        (b"a\tPlants!\ta fern\n", "category 'Plants!' is not a lowercase name"),
        (b"a\tpeople\t \n", "empty prompt text"),
        (b"a\tpeople\ta dog\nb\tanimals\tA Dog\n", "duplicates line 2"),
        (b"a\tpeople\tcaf\xe9\n", "not UTF-8"),
        (b"a\tpeople\n", "expected 3 tab-separated fields"),
    ],
)
def test_loader_names_file_line_and_problem(tmp_path, body, fragment):
    path = write(tmp_path, body)
    with pytest.raises(PromptSuiteError) as info:
        load_prompts(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_header_and_missing_file(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("a\tpeople\tx\n")
    with pytest.raises(PromptSuiteError, match="header"):
        load_prompts(path)
    with pytest.raises(PromptSuiteError, match="not found"):
        load_prompts(tmp_path / "nope.tsv")


def test_selection_and_shards():
    prompts = select_prompts(load_prompts(SUITE), 2)
    assert len(prompts) == 12
    assert prompts.groupby("category").size().eq(2).all()
    shards = make_shards(list(prompts["id"]), 5)
    assert [s.name for s in shards] == ["000", "001", "002"]
    assert [len(s.prompt_ids) for s in shards] == [5, 5, 2]
    assert sum((list(s.prompt_ids) for s in shards), []) == list(prompts["id"])
    picked = prompts_by_id(SUITE, ["p005", "p001"])
    assert list(picked["id"]) == ["p005", "p001"]
    with pytest.raises(PromptSuiteError, match="p999"):
        prompts_by_id(SUITE, ["p999"])


def test_categories_can_be_restricted(tmp_path):
    path = write(tmp_path, b"a\tplants\ta fern\n")
    assert list(load_prompts(path)["category"]) == ["plants"]  # a suite defines its categories
    with pytest.raises(PromptSuiteError, match="unknown category 'plants'"):
        load_prompts(path, categories=PROMPT_CATEGORIES)
