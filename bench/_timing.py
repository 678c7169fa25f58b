"""Timing helper shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def fastest(fn: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls: contention on a shared machine only adds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
