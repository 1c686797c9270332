"""Timing helper shared by the benchmark scripts (run as ``python bench/NAME.py``)."""
from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], repeat: int,
                 sync: Callable[[], object] = lambda: None) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` after one warm-up call.

    ``sync`` is called after each call before the clock stops (e.g.
    ``torch.cuda.synchronize`` on a GPU). On a shared machine the best run is
    the least disturbed one.
    """
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best
