"""The numpy TV-L1 engine's worker processes: same numbers, nothing lost, nothing left behind."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mexkit.motion import tvl1 as tvl1_module
from mexkit.motion import tvl1_flow
from mexkit.motion._tvl1_workers import ProcessPool, WorkerLost, get_pool


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    from scipy import ndimage

    base = ndimage.gaussian_filter(rng.uniform(0, 1, (6, 48, 48)), (0, 2, 2))
    moved = np.roll(base, 1, axis=2)
    return base.astype(np.float32), moved.astype(np.float32)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by a dead parent's init) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_processes_give_the_numbers_of_one_thread(frames, monkeypatch):
    ref, mov = frames
    one = tvl1_flow(ref, mov, threads=1, warps=2, device="cpu", engine="numpy")
    two = tvl1_flow(ref, mov, threads=2, warps=2, device="cpu", engine="numpy")
    np.testing.assert_array_equal(two, one)
    pool = get_pool(2)
    assert len(pool._workers) == 2 and all(w.proc.poll() is None for w in pool._workers)
    # and the threads of this process, when processes are switched off
    monkeypatch.setenv("MEXKIT_TVL1_PROCESSES", "0")
    np.testing.assert_array_equal(
        tvl1_flow(ref, mov, threads=2, warps=2, device="cpu", engine="numpy"), one)


def test_an_error_in_a_worker_is_raised_here():
    got = {}
    with pytest.raises(ValueError, match="math domain error"):
        get_pool(2).map(math.sqrt, [(4.0,), (-1.0,), (9.0,)], got.__setitem__)
    # the pool still works afterwards
    got.clear()
    get_pool(2).map(math.sqrt, [(4.0,), (9.0,)], got.__setitem__)
    assert got == {0: 2.0, 1: 3.0}


class _KillingPool(ProcessPool):
    """A pool whose first worker is killed (SIGKILL) as soon as one result is in."""

    def map(self, func, items, on_result):
        killed = []

        def hook(i, value):
            on_result(i, value)
            if not killed:
                victim = self._workers[0].proc
                victim.kill()
                victim.wait()
                killed.append(victim.pid)

        super().map(func, items, hook)


def test_a_killed_worker_loses_only_its_item():
    pool = _KillingPool(2)
    got = {}
    try:
        with pytest.raises(WorkerLost) as info:
            pool.map(time.sleep, [(0.05,)] * 8, got.__setitem__)
    finally:
        pool.close()
    left = info.value.args[1]
    assert 1 <= len(left) <= 7
    assert sorted(list(got) + left) == list(range(8))  # each item done once or handed back


def test_flow_is_complete_when_a_worker_is_killed(frames, monkeypatch):
    ref, mov = frames
    one = tvl1_flow(ref, mov, threads=1, warps=2, device="cpu", engine="numpy")
    pool = _KillingPool(2)
    monkeypatch.setattr(tvl1_module, "get_pool", lambda n: pool)
    try:
        flow = tvl1_flow(ref, mov, threads=2, warps=2, device="cpu", engine="numpy")
    finally:
        pool.close()
    np.testing.assert_array_equal(flow, one)


def test_an_unguarded_script_runs_its_top_level_once(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from mexkit.motion import tvl1_flow
        print("TOP-LEVEL", flush=True)
        a = np.random.default_rng(0).uniform(0, 1, (4, 32, 32)).astype(np.float32)
        f = tvl1_flow(a, np.roll(a, 1, axis=2), threads=2, device="cpu", warps=1,
                      engine="numpy")
        print(f.shape, flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, check=True, cwd=tmp_path).stdout
    assert out.count("TOP-LEVEL") == 1, out
    assert "(4, 2, 32, 32)" in out


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    code = textwrap.dedent("""
        import time, numpy as np
        from mexkit.motion import tvl1_flow
        from mexkit.motion._tvl1_workers import get_pool
        a = np.random.default_rng(0).uniform(0, 1, (4, 32, 32)).astype(np.float32)
        tvl1_flow(a, np.roll(a, 1, axis=2), threads=2, device="cpu", warps=1,
                  engine="numpy")
        print(*[w.proc.pid for w in get_pool(2)._workers], flush=True)
        time.sleep(60)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          text=True) as parent:
        try:
            pids = [int(p) for p in parent.stdout.readline().split()]
            assert len(pids) == 2 and all(_alive(p) for p in pids)
        finally:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "worker processes outlived their parent"


def test_workers_can_be_started_ahead_and_not_when_switched_off(monkeypatch):
    from mexkit.motion._tvl1_workers import shutdown_pools
    from mexkit.motion.tvl1 import start_cpu_workers

    shutdown_pools()
    monkeypatch.setenv("MEXKIT_TVL1_PROCESSES", "0")
    start_cpu_workers(2, engine="numpy")
    assert get_pool(2)._workers == []
    monkeypatch.delenv("MEXKIT_TVL1_PROCESSES")
    start_cpu_workers(1, engine="numpy")  # one worker: solved in this process
    assert get_pool(1)._workers == []
    start_cpu_workers(2, engine="numpy")
    assert [w.proc.poll() for w in get_pool(2)._workers] == [None, None]


def test_workers_never_import_a_mexkit_folder_of_the_working_directory(tmp_path):
    """`python -c` put the working directory first on the workers' path: a folder named
    mexkit there was imported by the workers instead of the mexkit that started them."""
    hostile = tmp_path / "cwd" / "mexkit"
    hostile.mkdir(parents=True)
    marker = tmp_path / "hijacked"
    (hostile / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from mexkit.motion import tvl1_flow
        a = np.random.default_rng(0).uniform(0, 1, (4, 32, 32)).astype(np.float32)
        f = tvl1_flow(a, np.roll(a, 1, axis=2), threads=2, device="cpu", warps=1,
                      engine="numpy")
        print(f.shape, flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path / "cwd")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(4, 2, 32, 32)" in out.stdout
    assert not marker.exists(), "a worker imported the working directory's mexkit"
