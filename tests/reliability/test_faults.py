"""Faults beyond bad input: a disk that fills up while an output is written, and a table whose bytes
changed after it was written. Nothing partial is left under a final name, and the message names the
file and the fix."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entmap.core import atomic
from entmap.core.atomic import DiskFullError, write_text
from entmap.core.parquet_schemas import IMAGES, TableError, read_table, write_table


def shard(rows: int, png_bytes: int, seed: int = 0) -> pd.DataFrame:
    """An image shard of ``rows`` incompressible "images" of ``png_bytes`` each."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(rows)],
            "seed": np.arange(rows, dtype="int64"),
            "model": "base",
            "settings_hash": "0" * 16,
            "width": np.full(rows, 64, dtype="int32"),
            "height": np.full(rows, 64, dtype="int32"),
            "png": [rng.integers(0, 256, png_bytes, dtype=np.uint8).tobytes() for _ in range(rows)],
            "reused": np.zeros(rows, dtype=bool),
        }
    )


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 1 MiB tmpfs where the machine allows mounting one; otherwise os.write fails with ENOSPC
    once 1 MiB has been written, as a full disk does."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    try:
        command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]
        mounted = subprocess.run(command, capture_output=True).returncode == 0
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        budget = {"left": 1 << 20}
        real_write = os.write

        def write(fd: int, data) -> int:
            if budget["left"] < len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            budget["left"] -= len(data)
            return real_write(fd, data)

        monkeypatch.setattr(atomic.os, "write", write)
    yield mount
    if mounted:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_the_old_file_and_no_temporary_and_names_the_space_needed(small_disk):
    path = small_disk / "images/base/000.parquet"
    write_table(shard(4, 1000, seed=1), path, IMAGES)
    before = path.read_bytes()
    with pytest.raises(DiskFullError) as info:
        write_table(shard(12, 200_000, seed=2), path, IMAGES)  # about 2.4 MB: more than the disk holds
    message = str(info.value)
    assert str(path) in message and "bytes needed" in message and "bytes free" in message
    assert path.read_bytes() == before  # the final name still holds the complete old file
    assert [p.name for p in path.parent.iterdir()] == ["000.parquet"]  # no temporary left behind
    with pytest.raises(DiskFullError, match="report.html: no space left"):
        write_text(small_disk / "report.html", "x" * (2 << 20))
    assert not (small_disk / "report.html").exists()
    assert not list(Path(small_disk).glob(".report.html.*"))


def test_a_table_whose_bytes_changed_after_writing_is_refused_naming_it(tmp_path):
    path = tmp_path / "scores/base/000.parquet"
    frame = shard(8, 5000)
    write_table(frame, path, IMAGES)
    assert read_table(path, IMAGES)["png"].tolist() == frame["png"].tolist()
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit inside a data page
    path.write_bytes(bytes(data))
    with pytest.raises(TableError, match=r"000\.parquet: .*bytes changed after it was written.*delete it and rerun"):
        read_table(path, IMAGES)
