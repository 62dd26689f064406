"""Textual Inversion trains exactly one embedding row and round-trips through diffusers' loader."""

import pytest
import torch

from entmap.inputs.references import draw_synthetic
from entmap.models.embeddings import TokenError
from entmap.models.loading import load_pipeline
from entmap.personalize.captions import OBJECT_TEMPLATES
from entmap.personalize.textual_inversion import save_textual_inversion, train_textual_inversion

SETTINGS = {"steps": 4, "learning_rate": 5e-2, "batch_size": 2, "resolution": 64, "save_every": 2, "seed": 0}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tiny_dir):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    images = [draw_synthetic("object", i) for i in range(3)]
    result = train_textual_inversion(pipe, images, "<tp>", "teapot", OBJECT_TEMPLATES, SETTINGS, CPU)
    return pipe, result, before, unet_before


def test_only_the_new_row_changes(trained):
    pipe, result, before, unet_before = trained
    key = next(k for k in before if k.endswith("token_embedding.weight"))
    after = pipe.text_encoder.state_dict()
    old, new = before[key], after[key]
    assert new.shape[0] == old.shape[0] + 1
    assert torch.equal(new[: old.shape[0]], old)  # every original row untouched
    assert not torch.equal(new[result.token_id], old[result.init_token_id])  # the new row trained
    for name, value in before.items():
        if name != key:
            assert torch.equal(after[name], value), name
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(value, unet_before[name]), name
    assert result.trajectory_steps == [0, 2, 4]
    assert torch.equal(result.trajectory[0], old[result.init_token_id])
    assert torch.equal(result.trajectory[-1], result.embedding)
    assert len(result.log.rows) == 4


def test_saved_embedding_round_trips_through_load_textual_inversion(trained, tiny_dir, tmp_path):
    pipe, result, _, _ = trained
    save_textual_inversion(result, tmp_path)
    fresh = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    fresh.load_textual_inversion(str(tmp_path / "adapter.safetensors"), token="<tp>")

    def render(p):
        g = torch.Generator().manual_seed(0)
        return p(
            "a photo of <tp> on a table",
            num_inference_steps=3,
            height=64,
            width=64,
            generator=g,
            output_type="np",
        ).images

    assert (render(pipe) == render(fresh)).all()


def test_multi_token_class_word_is_refused(tiny_dir):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    with pytest.raises(TokenError, match="single token"):
        train_textual_inversion(
            pipe, [draw_synthetic("face", 0)] * 3, "<x>", "zxqvw blorpt", OBJECT_TEMPLATES, SETTINGS, CPU
        )
