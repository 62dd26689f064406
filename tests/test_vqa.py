"""The VQA structured score on a tiny random ViLT built offline and loaded by from_pretrained: f against
the share computed straight from the model's logits, determinism, answer normalization end to end,
prompts without questions, refusals, and the disrupt stage with ``structure: vqa``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from entmap.inputs.prompt_structure import PromptElements, Relation
from entmap.measure.questions import Question, questions_for
from entmap.measure.vqa import VqaError, VqaModel, VqaSettings, answerable_questions, vqa_faithfulness
from entmap.models.tiny_vqa import build_tiny_vqa

#: the tiny model's labels, and how each reads after normalization (written out by hand)
LABELS = ["yes", "no", "2", "Two", "Gray", "red", "Blue."]
NORMALIZED = {"yes": "yes", "no": "no", "2": "2", "Two": "2", "Gray": "gray", "red": "red", "Blue.": "blue"}
ELEMENTS = {
    "p1": PromptElements(
        objects=("a dog", "an owl"),
        counts=(("dogs", 2),),
        colours=(("dog", "grey"),),
        attributes=(("owl", "sleeping"),),
        relations=(Relation("dog", "to the left of", "cat"),),
    ),
    "p2": PromptElements(),
    "p3": PromptElements(
        objects=("smoke",), colours=(("sky", "blue"),), relations=(Relation("surfer", "riding", "wave"),)
    ),
}
QUESTIONS = {pid: questions_for(elements) for pid, elements in ELEMENTS.items()}
SUITE_ROWS = (
    "id\tcategory\ttext\tobjects\tcounts\tcolours\tattributes\trelations\n"
    "p1\tanimals\ttwo dogs and an owl\ta dog; an owl\tdogs=2\tdog=grey\towl=sleeping\tdog / to the left of / cat\n"
    "p2\tabstract\ttime frozen in mid-motion\t\t\t\t\t\n"
    "p3\tscenes\ta surfer under a blue sky in smoke\tsmoke\t\tsky=blue\t\tsurfer / riding / wave\n"
)


@pytest.fixture(scope="module")
def tiny_vqa(tmp_path_factory):
    texts = [q.text for found in QUESTIONS.values() for q in found]
    return build_tiny_vqa(tmp_path_factory.mktemp("vqa") / "tiny-vilt", texts, LABELS, seed=5)


def images(count: int, seed: int = 0) -> np.ndarray:
    """Small test images: noise, and flat colours."""
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(count - count // 2)]
    flat = [np.full((32, 32, 3), rng.integers(0, 256, 3), dtype=np.uint8) for _ in range(count // 2)]
    return np.stack(noise + flat)


def raw_answers(folder, image: np.ndarray, questions: list[str]) -> list[str]:
    """The label of the largest logit, one (image, question) pair at a time, straight from transformers."""
    from PIL import Image
    from transformers import ViltForQuestionAnswering, ViltProcessor

    processor = ViltProcessor.from_pretrained(folder)
    model = ViltForQuestionAnswering.from_pretrained(folder).eval()
    labels = []
    for text in questions:
        inputs = processor(images=Image.fromarray(image), text=text, return_tensors="pt")
        with torch.inference_mode():
            labels.append(model.config.id2label[int(model(**inputs).logits[0].argmax())])
    return labels


def independent_f(folder, image: np.ndarray, questions: tuple[Question, ...]) -> float:
    if not questions:
        return float("nan")
    given = raw_answers(folder, image, [q.text for q in questions])
    return float(np.mean([NORMALIZED[label] == q.answer for label, q in zip(given, questions, strict=True)]))


def test_the_tiny_model_has_the_hub_layout_and_loads_by_from_pretrained(tiny_vqa):
    names = {p.name for p in tiny_vqa.iterdir()}
    assert names >= {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json"}
    assert "preprocessor_config.json" in names
    model = VqaModel(VqaSettings(str(tiny_vqa)), torch.device("cpu"))
    assert model.labels == tuple(LABELS) and not model.model.training
    assert model.normalized_labels == set(NORMALIZED.values())
    tokens = model.processor.tokenizer.tokenize("Is the dog to the left of the cat?")
    assert tokens == ["is", "the", "dog", "to", "the", "left", "of", "the", "cat", "?"]  # every word in the vocabulary


def test_f_is_the_share_of_questions_the_models_argmax_answers_as_expected(tiny_vqa):
    model = VqaModel(VqaSettings(str(tiny_vqa), batch_size=5), torch.device("cpu"))
    stack = images(6)
    prompts = ["p1", "p2", "p3", "p1", "p3", "p1"]
    f = vqa_faithfulness(model, stack, [QUESTIONS[pid] for pid in prompts])
    expected = [independent_f(tiny_vqa, image, QUESTIONS[pid]) for image, pid in zip(stack, prompts, strict=True)]
    np.testing.assert_allclose(f, expected, equal_nan=True)
    assert np.isnan(f[1]) and np.isfinite(np.delete(f, 1)).all()  # p2 states nothing: not scored
    assert len(set(np.delete(f, 1).tolist())) > 1  # the random model answers differently per image


def test_answers_do_not_depend_on_the_batch_and_repeat_byte_for_byte(tiny_vqa):
    stack = images(5, seed=3)
    sets = [QUESTIONS["p1"], QUESTIONS["p3"], QUESTIONS["p1"], (), QUESTIONS["p3"]]
    runs = [
        vqa_faithfulness(VqaModel(VqaSettings(str(tiny_vqa), batch_size=size), torch.device("cpu")), stack, sets)
        for size in (1, 64, 64)
    ]
    assert runs[1].tobytes() == runs[2].tobytes()
    assert runs[0].tobytes() == runs[1].tobytes()


def test_a_label_is_normalized_before_it_is_compared(tiny_vqa, tmp_path):
    """A copy of the tiny model whose classifier always says "Two": counts of 2 are right, nothing else."""
    from transformers import ViltForQuestionAnswering

    folder = tmp_path / "always-two"
    shutil.copytree(tiny_vqa, folder)
    model = ViltForQuestionAnswering.from_pretrained(folder)
    with torch.no_grad():
        model.classifier[-1].bias[LABELS.index("Two")] = 1e4
    model.save_pretrained(folder)
    vqa = VqaModel(VqaSettings(str(folder)), torch.device("cpu"))
    assert set(vqa.answer(list(images(3)), ["How many dogs are there?"] * 3)) == {"Two"}
    f = vqa_faithfulness(vqa, images(2), [QUESTIONS["p1"], QUESTIONS["p3"]])
    assert f.tolist() == [1 / 6, 0.0]  # p1: "How many dogs are there?" (2) of six questions; p3 has no count


def test_questions_no_label_can_answer_are_left_out_with_a_warning(tiny_vqa):
    model = VqaModel(VqaSettings(str(tiny_vqa)), torch.device("cpu"))
    purple = questions_for(PromptElements(objects=("a dog",), colours=(("dog", "purple"),)))
    with pytest.warns(UserWarning, match=r"no answer for 1 question\(s\).*p9: What color is the dog\? \(purple\)"):
        kept = answerable_questions(model, {"p9": purple, "p1": QUESTIONS["p1"]})
    assert kept == {"p9": purple[:1], "p1": QUESTIONS["p1"]}


def test_refusals_name_the_model_and_the_fix(tiny_vqa, tmp_path):
    from transformers import BertConfig

    with pytest.raises(VqaError, match="cannot be loaded"):
        VqaModel(VqaSettings(str(tmp_path / "missing")), torch.device("cpu"))
    BertConfig(num_hidden_layers=1).save_pretrained(tmp_path / "bert")
    with pytest.raises(VqaError, match="is a bert model.*ViLT VQA classifiers"):
        VqaModel(VqaSettings(str(tmp_path / "bert")), torch.device("cpu"))
    model = VqaModel(VqaSettings(str(tiny_vqa)), torch.device("cpu"))
    long = "Is the dog " + "very " * 40 + "old?"
    with pytest.raises(VqaError, match="tokens long.*reads at most 40"):
        model.answer([images(1)[0]], [long])


def test_the_disrupt_stage_fills_f_base_and_f_pers_from_the_vqa_model(tiny_vqa, tmp_path):
    """disrupt_shard with structure: vqa on two seed-matched shards of small images: each f equals
    the share computed from the model's raw logits for that image; the prompt without questions is NaN."""
    import pandas as pd
    from PIL import Image

    from entmap.core.image_codec import png_bytes
    from entmap.core.parquet_schemas import DISRUPTION, IMAGES, SCORES, read_table, write_table
    from entmap.measure.disrupt import disrupt_shard

    suite = tmp_path / "suite.tsv"
    suite.write_text(SUITE_ROWS, encoding="utf-8")
    drawn = {"base": images(6, seed=10), "pers": images(6, seed=11)}
    keys = [(pid, seed) for pid in ("p1", "p2", "p3") for seed in (0, 1)]
    paths = {}
    for model, stack in drawn.items():
        rows = [
            {"prompt_id": pid, "seed": seed, "model": model, "settings_hash": "h", "width": 32, "height": 32,
             "png": png_bytes(Image.fromarray(image)), "reused": False}
            for (pid, seed), image in zip(keys, stack, strict=True)
        ]  # fmt: skip
        frame = pd.DataFrame(rows)
        scores = frame[["prompt_id", "seed", "model", "settings_hash"]].assign(
            clip_cos=0.3, image_embedding=[[0.0, 1.0]] * len(frame)
        )
        paths[model] = (tmp_path / f"{model}_images.parquet", tmp_path / f"{model}_scores.parquet")
        write_table(frame, paths[model][0], IMAGES)
        write_table(scores, paths[model][1], SCORES)
    out = tmp_path / "disruption.parquet"
    lpips = {"net": "alex", "backbone": "random", "seed": 0}
    vqa = {"model": str(tiny_vqa), "batch_size": 4}
    disrupt_shard(paths["base"][0], paths["pers"][0], paths["base"][1], paths["pers"][1], "s/lora", lpips, out,
                  device="cpu", structure="vqa", suite=suite, vqa=vqa)  # fmt: skip
    rows = read_table(out, DISRUPTION).set_index(["prompt_id", "seed"])
    for column, model in (("f_base", "base"), ("f_pers", "pers")):
        for (pid, seed), image in zip(keys, drawn[model], strict=True):
            expected = independent_f(tiny_vqa, image, QUESTIONS[pid])
            assert rows.loc[(pid, seed), column] == pytest.approx(expected, nan_ok=True), (column, pid, seed)
    assert rows.loc["p2", ["f_base", "f_pers"]].isna().all().all()
    scored = rows.drop(index="p2")
    assert scored[["f_base", "f_pers"]].notna().all().all()
    assert (scored["f_base"] != scored["f_pers"]).any()  # the two shards' images are answered differently
