"""A loky map never waits for ever on a worker pool that stopped working.

The default suite hung at random (three times, always in a training test,
under load): loky warns from its pool's manager thread when a worker leaves
on its own (recycled for memory, or its idle timeout) while tasks are
queued; with warnings turned into errors (``filterwarnings = error``) the
warning ended that thread, no one completed the map's futures any more, and
joblib waited for them for ever beside a zombie worker.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from types import SimpleNamespace

import _pool_tasks
import pytest

from mexkit.pipeline import parallel
from mexkit.pipeline.parallel import is_lost_worker, loky_pool_fault, parallel_map


def _pool_workers() -> set[int]:
    """Live loky worker processes started by this process."""
    me, found = str(os.getpid()), set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        if ppid.decode() == me and state != b"Z" and b"popen_loky_posix" in cmd:
            found.add(int(d))
    return found


@pytest.fixture
def own_pool():
    """These tests' workers carry a changed recycling threshold: none is reused later."""
    from joblib.externals.loky import reusable_executor

    yield
    pool = reusable_executor._executor
    if pool is not None:
        pool.shutdown(wait=True, kill_workers=True)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_pool_whose_manager_thread_died_fails_the_map_instead_of_hanging(own_pool,
                                                                          monkeypatch):
    monkeypatch.setattr(parallel, "LOKY_GRACE", 1.0)  # the guard's wait (5 s) shortened
    box: dict = {}

    def run():
        try:
            box["result"] = list(parallel_map(_pool_tasks.recycled_after_this,
                                              [[i] for i in range(6)], jobs=2,
                                              backend="loky"))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what `filterwarnings = error` did in every test
        th = threading.Thread(target=run, daemon=True)
        th.start()
        th.join(180)
    assert not th.is_alive(), "the map waited for ever on a pool without a manager thread"
    error = box.get("error")
    assert error is not None, box
    assert is_lost_worker(error) and "manager thread has ended" in str(error), error
    deadline = time.monotonic() + 30
    while _pool_workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pool_workers(), "workers of the stopped pool were left running"
    # the next map gets a new pool and finishes
    done = sorted(x for r in parallel_map(_pool_tasks.nap, [[i] for i in range(4)], jobs=2,
                                          backend="loky") for x, _ in r)
    assert done == [0, 1, 2, 3]


def test_pool_fault_is_a_dead_manager_or_a_dead_worker_the_pool_still_counts():
    release = threading.Event()
    manager = threading.Thread(target=release.wait, daemon=True)
    manager.start()
    r, w = os.pipe()   # a process's sentinel: readable once the process has ended
    flags = SimpleNamespace(broken=None, shutdown=False)
    pool = SimpleNamespace(_flags=flags, _executor_manager_thread=manager,
                           _processes={4242: SimpleNamespace(sentinel=r)})
    try:
        assert loky_pool_fault(pool) is None
        os.close(w)
        w = None
        assert loky_pool_fault(pool) == "worker process 4242 has ended unnoticed"
        flags.broken = RuntimeError("a worker died")  # loky has reported it itself
        assert loky_pool_fault(pool) is None
        flags.broken = None
        release.set()
        manager.join(10)
        assert loky_pool_fault(pool) == "its manager thread has ended"
        flags.shutdown = True  # a pool shut down ends its manager on purpose
        assert loky_pool_fault(pool) is None
    finally:
        release.set()
        os.close(r)
        if w is not None:
            os.close(w)
