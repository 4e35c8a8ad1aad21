"""Median wall time of a call: the one timing helper of export, evaluate-real and the benches."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(run: Callable[[], object], runs: int, warmup: int = 3) -> float:
    """Median ms of ``runs`` calls after ``warmup`` untimed ones (allocator, ORT arena, oneDNN primitives)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3
