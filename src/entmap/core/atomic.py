"""Atomic file and folder writes.

Every output of the workflow is written to a hidden temporary sibling in the
same folder and then renamed into place with :func:`os.replace`, which is
atomic on POSIX file systems. A job killed at any moment therefore leaves
either the old state or the complete new file, never a truncated file under
the final name. A disk that fills up mid-write leaves the same, and raises
:class:`DiskFullError` naming the file, the space it needed and the space free.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: errno values of a full disk or an exhausted quota
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """No space was left while an output was written; the message names it and the space needed."""


def disk_full(target: Path, tmp: Path, needed: int | None) -> DiskFullError:
    """The error for ``target`` whose temporary ``tmp`` could not be written completely."""
    written = tmp.stat().st_size if tmp.exists() else 0
    free = shutil.disk_usage(target.parent).free
    need = f"{needed:,} bytes needed" if needed else f"more than the {written:,} bytes written before it filled"
    return DiskFullError(
        errno.ENOSPC,
        f"{target}: no space left on the device ({need}, {free:,} bytes free in {target.parent}); the file was "
        "not written and nothing partial is left: free space or move results/ to a larger disk, then rerun",
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The caller writes the complete file to the yielded path. If the block
    raises, the temporary file is removed and ``path`` is left untouched; a full
    disk becomes a :class:`DiskFullError` (``needed``: the file's size, when known).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in NO_SPACE and not isinstance(exc, DiskFullError):
            raise disk_full(target, tmp, needed) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (its size is known, so a full disk reports it)."""
    with atomic_path(path, needed=len(data)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; move it onto ``path`` on success.

    An existing folder at ``path`` is replaced only after the new one is
    complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes(path, text.encode("utf-8"))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale(target: Path) -> None:
    """Remove temporaries a killed writer of ``target`` left behind (one writer per output)."""
    for stale in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
