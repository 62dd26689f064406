"""Synthetic references are deterministic; real folders are checked file by file."""

import numpy as np
import pytest
from PIL import Image

from entmap.inputs.references import (
    ReferenceError,
    check_reference_folder,
    draw_synthetic,
    make_synthetic_references,
)


@pytest.mark.parametrize("kind", ["face", "object", "style"])
def test_synthetic_references_are_deterministic_and_distinct(tmp_path, kind):
    first = make_synthetic_references(tmp_path / "a", kind, count=3, seed=1)
    second = make_synthetic_references(tmp_path / "b", kind, count=3, seed=1)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    arrays = [np.asarray(Image.open(p)) for p in first]
    assert not np.array_equal(arrays[0], arrays[1])  # the images vary
    assert check_reference_folder(tmp_path / "a") == first


def test_kinds_differ():
    a, b = (np.asarray(draw_synthetic(k, 0), dtype=float) for k in ("face", "style"))
    assert np.abs(a - b).mean() > 20


def test_non_image_file_is_named(tmp_path):
    make_synthetic_references(tmp_path, "face", count=3)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ReferenceError, match="notes.txt"):
        check_reference_folder(tmp_path)
