"""What every side-by-side benchmark shares: interleaved timing, the machine's description, results files.

Each benchmark runs its contenders in one process, alternating them (A, B, A, B, ...) after a
warm-up, so that a slow moment of the machine hits both; it reports the median of each and the
ratio of medians, and keeps the record in ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each contender over ``repeats`` alternating rounds (one untimed warm-up each first)."""
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """CPU model and count, the torch build, and the GPU when one is used."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def save(name: str, record: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` (with the machine and the date) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), **record}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
