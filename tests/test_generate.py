"""Seed matching and byte-identical regeneration."""

import pandas as pd
import pytest
import torch

from entmap.core.checksums import settings_hash
from entmap.core.parquet_schemas import IMAGES, read_table
from entmap.measure.disrupt import MismatchError, check_matched, disrupt_shard
from entmap.measure.generate import generate_model_shard
from entmap.models.sampling import initial_latents

SETTINGS = {"steps": 3, "guidance_scale": 7.5, "resolution": 64, "batch_size": 4, "negative_prompt": ""}
PROMPTS = pd.DataFrame(
    {
        "id": ["p1", "p2", "p3"],
        "category": ["people", "animals", "abstract"],
        "text": ["a chef cooking in a kitchen", "a koala in a eucalyptus tree", "time frozen in mid-motion"],
    }
)


def test_latent_depends_only_on_its_seed():
    a = initial_latents([3, 1, 7], 64, torch.float32, torch.device("cpu"))
    b = initial_latents([7, 3], 64, torch.float32, torch.device("cpu"))
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    expected = torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[1], expected)


@pytest.fixture(scope="module")
def base_shard(tiny_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "base.parquet"
    generate_model_shard(str(tiny_dir / "tiny-sd"), None, PROMPTS, [0, 1], SETTINGS, "base", path, "cpu", "float32", 1)
    return path


def test_regenerated_shard_is_byte_identical(tiny_dir, base_shard, tmp_path):
    again = tmp_path / "again.parquet"
    generate_model_shard(str(tiny_dir / "tiny-sd"), None, PROMPTS, [0, 1], SETTINGS, "base", again, "cpu", "float32", 1)
    first, second = read_table(base_shard, IMAGES), read_table(again, IMAGES)
    assert len(first) == 6
    assert list(first["png"]) == list(second["png"])
    assert first[["prompt_id", "seed"]].values.tolist() == [[p, s] for p in ("p1", "p2", "p3") for s in (0, 1)]
    assert (first["settings_hash"] == settings_hash(SETTINGS)).all()
    assert first["png"].nunique() == 6  # different prompts and seeds give different images


def test_mismatched_shards_are_refused(base_shard, tmp_path):
    base = read_table(base_shard, IMAGES)
    check_matched(base, base.copy(), "a", "b")
    with pytest.raises(MismatchError, match="only in the base"):
        check_matched(base, base.iloc[1:], "a", "b")
    shifted = base.assign(seed=base["seed"] + 1)
    with pytest.raises(MismatchError, match="not seed-matched"):
        check_matched(base, shifted, "a", "b")
    rehashed = base.assign(settings_hash="other")
    with pytest.raises(MismatchError):
        check_matched(base, rehashed, "a", "b")


def test_disrupt_names_the_mismatched_files(base_shard, tmp_path):
    from entmap.core.parquet_schemas import write_table

    other = tmp_path / "pers.parquet"
    frame = read_table(base_shard, IMAGES)
    write_table(frame[frame["seed"] == 0], other, IMAGES)
    with pytest.raises(MismatchError) as info:
        disrupt_shard(
            base_shard,
            other,
            "unused-a",
            "unused-b",
            "x/ti",
            {"net": "alex", "backbone": "random"},
            tmp_path / "d.parquet",
            "cpu",
            1,
        )
    assert str(base_shard) in str(info.value) and str(other) in str(info.value)
    assert not (tmp_path / "d.parquet").exists()


def test_disruption_aligns_tables_in_any_row_order_and_refuses_duplicates(base_shard):
    """The same four tables in their written order and shuffled give the same rows; a repeated key
    is refused even when all four tables repeat it in the same order."""
    from entmap.measure.disrupt import compute_disruption
    from entmap.measure.metrics import Lpips

    base = read_table(base_shard, IMAGES)
    pers = base.assign(model="pers", png=base["png"].iloc[::-1].to_list())  # other images, same keys
    scores = base[["prompt_id", "seed", "settings_hash"]].assign(clip_cos=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    pers_scores = scores.assign(clip_cos=scores["clip_cos"] + [0.05, -0.1, 0.0, 0.2, -0.3, 0.1])
    lpips = Lpips("alex", "random", seed=0)
    ordered = compute_disruption(base, pers, scores, pers_scores, lpips, "m")
    shuffle = [3, 0, 5, 1, 4, 2]
    shuffled = compute_disruption(
        base.iloc[shuffle],
        pers.iloc[::-1],
        scores.iloc[shuffle[::-1]],
        pers_scores.iloc[[1, 0, 2, 5, 4, 3]],
        lpips,
        "m",
    )
    pd.testing.assert_frame_equal(ordered, shuffled)
    assert ordered["d_sem"].tolist() == pytest.approx([0.05, 0.1, 0.0, 0.2, 0.3, 0.1])
    twice = pd.concat([base, base.iloc[:1]], ignore_index=True)
    twice_scores = pd.concat([scores, scores.iloc[:1]], ignore_index=True)
    with pytest.raises(MismatchError, match="duplicate row prompt_id=p1 seed=0"):
        compute_disruption(twice, twice, twice_scores, twice_scores, lpips, "m")
