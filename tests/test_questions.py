"""TIFA-style questions from a suite's structured columns: cell syntax, templates, answer normalization,
the errors a malformed cell gives, and the shipped suite's annotations."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from entmap.inputs.prompt_structure import (
    PromptElements,
    PromptStructureError,
    Relation,
    load_structure,
    parse_elements,
)
from entmap.inputs.prompt_suites import PromptSuiteError, load_prompts, read_suite
from entmap.measure.questions import Question, normalize_answer, questions_for, suite_questions

SUITE = REPO / "resources/prompts/entanglement-200.tsv"
HEADER = "id\tcategory\ttext\tobjects\tcounts\tcolours\tattributes\trelations\n"


def test_cells_are_read_item_by_item():
    elements = parse_elements(
        {
            "objects": "a dog; an owl;smoke",
            "counts": "dogs = 2",
            "colours": "dog=grey; sky=red and white",
            "attributes": "dog=old; dog=sleeping",
            "relations": "dog / to the left of / cat",
        },
        "here",
    )
    assert elements == PromptElements(
        objects=("a dog", "an owl", "smoke"),
        counts=(("dogs", 2),),
        colours=(("dog", "grey"), ("sky", "red and white")),
        attributes=(("dog", "old"), ("dog", "sleeping")),
        relations=(Relation("dog", "to the left of", "cat"),),
    )
    assert elements and not parse_elements({}, "here") and not parse_elements({"objects": "  "}, "here")


def test_each_item_becomes_its_question_and_expected_answer():
    elements = PromptElements(
        objects=("a dog", "an owl", "smoke"),
        counts=(("dogs", 2),),
        colours=(("dog", "grey"),),
        attributes=(("man", "old"),),
        relations=(Relation("dog", "to the left of", "cat"), Relation("surfer", "riding", "wave")),
    )
    assert questions_for(elements) == (
        Question("object", "a dog", "Is there a dog?", "yes"),
        Question("object", "an owl", "Is there an owl?", "yes"),
        Question("object", "smoke", "Is there smoke?", "yes"),
        Question("count", "dogs=2", "How many dogs are there?", "2"),
        Question("colour", "dog=grey", "What color is the dog?", "gray"),  # expected answers are normalized too
        Question("attribute", "man=old", "Is the man old?", "yes"),
        Question("relation", "dog / to the left of / cat", "Is the dog to the left of the cat?", "yes"),
        Question("relation", "surfer / riding / wave", "Is the surfer riding the wave?", "yes"),
    )
    assert questions_for(PromptElements()) == ()


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("Yeah!", "yes"),
        ("nope", "no"),
        ("Two", "2"),
        ("2", "2"),
        ("twenty", "20"),
        ("none", "0"),
        ("Grey", "gray"),
        ("a red one", "red 1"),
        ("  The  Red ", "red"),
        ("red and white", "red and white"),
        ("dark-blue", "dark-blue"),
        ("it's red", "its red"),
        ("21", "21"),
    ],
)
def test_answer_normalization(raw, normalized):
    assert normalize_answer(raw) == normalized


def write_suite(tmp_path, rows: list[str], header: str = HEADER):
    path = tmp_path / "suite.tsv"
    path.write_text(header + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("column", "cell", "fragment"),
    [
        ("objects", "a Dog", "'a Dog' is not a phrase of lowercase words"),
        ("objects", "a dog;; a cat", "empty item"),
        ("objects", "a dog; a dog", "'a dog' is given twice"),
        ("objects", "the dog", "starts with 'the'"),
        ("counts", "dogs", "has no '='"),
        ("counts", "dogs=two", "not a whole number written in digits"),
        ("counts", "dogs=2; dogs=3", "'dogs' has two counts"),
        ("colours", "dog=red; dog=blue", "'dog' has two colours"),
        ("colours", "dog=", "colour '' is not a phrase"),
        ("attributes", "=old", "name '' is not a phrase"),
        ("relations", "dog / left of", "needs three parts"),
        ("relations", "dog / left  of / cat", "relation 'left  of' is not a phrase"),
    ],
)
def test_a_malformed_cell_names_file_line_prompt_and_column(tmp_path, column, cell, fragment):
    cells = {c: "" for c in ("objects", "counts", "colours", "attributes", "relations")} | {column: cell}
    rows = ["p1\tanimals\ta cat\ta cat\t\t\t\t", "p2\tanimals\ta dog\t" + "\t".join(cells.values())]
    path = write_suite(tmp_path, rows)
    with pytest.raises(PromptStructureError) as info:
        load_structure(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: prompt p2, column {column}: "), message
    assert fragment in message


def test_structured_columns_are_optional_in_any_order_and_trailing_empty_cells_may_be_left_out(tmp_path):
    path = write_suite(
        tmp_path,
        ["p1\tanimals\ttwo dogs\tdogs=2\ta dog", "p2\tanimals\ta cat"],
        header="id\tcategory\ttext\tcounts\tobjects\n",
    )
    assert load_prompts(path).columns.tolist() == ["id", "category", "text"]
    assert read_suite(path)["line"].tolist() == [2, 3]
    structure = load_structure(path)
    assert structure == {"p1": PromptElements(objects=("a dog",), counts=(("dogs", 2),)), "p2": PromptElements()}
    assert suite_questions(path)["p2"] == ()
    plain = write_suite(tmp_path, ["p1\tanimals\ta cat"], header="id\tcategory\ttext\n")
    assert load_structure(plain) == {"p1": PromptElements()}  # a suite without structured columns: no questions


@pytest.mark.parametrize(
    ("header", "row", "fragment"),
    [
        ("colors", "p1\tanimals\ta cat\t", "column 'colors' is not a structured column; did you mean 'colours'?"),
        ("objects\tobjects", "p1\tanimals\ta cat\t\t", "column 'objects' is given twice"),
        ("objects", "p1\tanimals\ta cat\ta cat\textra", "expected 3 to 4 tab-separated fields, found 5"),
    ],
)
def test_the_header_and_row_lengths_are_checked(tmp_path, header, row, fragment):
    path = write_suite(tmp_path, [row], header=f"id\tcategory\ttext\t{header}\n")
    with pytest.raises(PromptSuiteError, match=re.escape(fragment)):
        load_prompts(path)


def test_the_shipped_suite_is_annotated_with_only_what_each_text_states():
    """Every word of every item occurs in the prompt's text (up to a plural ending); every count is a
    number word of the text. 193 of the 200 prompts state something checkable."""
    texts = dict(load_prompts(SUITE)[["id", "text"]].itertuples(index=False))
    structure = load_structure(SUITE)
    numbers = {1: ("one", "single"), 2: ("two", "pair")}

    def stated(word: str, text_words: set[str]) -> bool:
        # "candle" in "candles", "leaf" in "leaves": longer words may differ in their last letter
        return word in text_words or (len(word) > 3 and any(w.startswith(word[:-1]) for w in text_words))

    unstated = []
    for pid, elements in structure.items():
        words = set(re.findall(r"[a-z0-9'-]+", texts[pid].lower()))
        phrases = [*elements.objects, *elements.colours, *elements.attributes]
        phrases = [" ".join(p) if isinstance(p, tuple) else p for p in phrases]
        phrases += [noun for noun, _ in elements.counts]
        phrases += [f"{r.subject} {r.relation} {r.object}" for r in elements.relations]
        for phrase in phrases:
            unstated += [(pid, w) for w in phrase.split() if w not in ("a", "an") and not stated(w, words)]
        for noun, count in elements.counts:
            if not set(numbers[count]) & words:
                unstated.append((pid, f"{noun}={count}"))
    assert not unstated
    assert sum(bool(elements) for elements in structure.values()) == 193
    questions = suite_questions(SUITE)
    assert questions["p029"] == (
        Question("object", "a woman", "Is there a woman?", "yes"),
        Question("object", "a raincoat", "Is there a raincoat?", "yes"),
        Question("object", "an umbrella", "Is there an umbrella?", "yes"),
        Question("colour", "raincoat=red", "What color is the raincoat?", "red"),
        Question("relation", "woman / in / raincoat", "Is the woman in the raincoat?", "yes"),
        Question("relation", "woman / holding / umbrella", "Is the woman holding the umbrella?", "yes"),
    )
    assert questions["p167"] == ()  # "time frozen in mid-motion" states nothing checkable
