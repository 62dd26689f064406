"""Per-job logging: everything a job prints goes to its Snakemake log file (no torch import)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def job_log(path: str | os.PathLike[str] | None) -> Iterator[logging.Logger]:
    """Send this job's stdout, stderr (tqdm bars included) and logging to ``path``."""
    logger = logging.getLogger("entmap")
    if path is None:
        yield logger
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", buffering=1, encoding="utf-8") as handle:
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                yield logger
        except BaseException:
            logger.exception("job failed")
            raise
        finally:
            logger.removeHandler(handler)
            sys.stderr.flush()
