"""Outputs appear whole or not at all."""

import pandas as pd
import pytest

from entmap.core.atomic import atomic_dir, atomic_path
from entmap.core.parquet_schemas import NOISE_PAIRS, TableError, read_table, write_table


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_dir_keeps_old_folder(tmp_path):
    target = tmp_path / "models"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new").write_text("new")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_truncated_parquet_is_refused_with_its_name(tmp_path):
    path = tmp_path / "000.parquet"
    frame = pd.DataFrame(
        {"prompt_id": ["p1"], "seed_a": [0], "seed_b": [1], "d_sem": [0.1], "lpips": [0.2], "d_struct": [float("nan")]}
    )
    write_table(frame, path, NOISE_PAIRS)
    assert read_table(path, NOISE_PAIRS).equals(frame)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(TableError, match="000.parquet"):
        read_table(path, NOISE_PAIRS)


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "000.parquet"
    (tmp_path / ".000.parquet.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".001.parquet.abc123.tmp").write_bytes(b"other output")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".001.parquet.abc123.tmp", "000.parquet"]
