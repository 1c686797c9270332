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


def cpu_ticks() -> tuple[int, int] | None:
    """(stolen, total) CPU ticks of the whole machine so far, from ``/proc/stat`` (Linux);
    None where it cannot be read.

    *Stolen* time is time a virtual machine's CPUs were ready to run but the
    hypervisor ran something else: a benchmark on a VM whose host is busy
    runs slower although the VM itself looks idle (its load average does
    not show it).
    """
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def stolen_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """The share of the machine's CPU time stolen by the hypervisor between two
    :func:`cpu_ticks` readings, as text for a benchmark's output."""
    if before is None or after is None or after[1] <= before[1]:
        return "CPU stolen by the hypervisor: unknown"
    return (f"CPU stolen by the hypervisor: "
            f"{100 * (after[0] - before[0]) / (after[1] - before[1]):.1f} %")
