"""A writer killed with SIGKILL at random moments loses nothing it finished."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mexkit.io.store import open_store, remove_store

HERE = Path(__file__).parent
N = 24


def _start(out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(HERE / "_store_writer.py"), str(out), str(N)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finished_ids(out: Path) -> set[str]:
    """Samples that survive on disk: in the store or staged (and readable)."""
    import h5py

    ids: set[str] = set()
    if out.exists():
        with open_store(out) as s:  # must never be unreadable
            ids |= set(s.sample_ids)
    staging = out.with_name(out.name + ".staging")
    if staging.exists():
        for p in staging.glob("*.h5"):
            if p.name.startswith("."):  # a temporary: not finished
                continue
            with h5py.File(p, "r") as fh:
                ids.add(str(fh.attrs["sample_id"]))
    return ids


def _content(path: Path) -> dict:
    with open_store(path) as s:
        return {sid: ({k: v for k, v in s[sid].attrs.items()}, s[sid].arrays())
                for sid in s.sample_ids}


#: SIGKILLs per run of the test (each at a random moment of a writer's run); bench/chaos.py
#: runs many more
KILLS = 6


def test_sigkill_at_random_moments_then_resume(tmp_path, rng):
    reference = tmp_path / "reference.h5"
    proc = _start(reference)
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    t0 = time.perf_counter()
    proc = _start(tmp_path / "timing.h5")
    proc.communicate(timeout=120)
    full_run = time.perf_counter() - t0

    out = tmp_path / "killed.h5"
    kills = rounds = 0
    finished_before: set[str] = set()
    while kills < KILLS:
        rounds += 1
        assert rounds < 6 * KILLS, "the writer kept finishing before it could be killed"
        proc = _start(out)
        time.sleep(float(rng.uniform(0.05, full_run * 0.9)))
        proc.send_signal(signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=60)
        computed = {ln.split(" ", 1)[1] for ln in stdout.splitlines() if ln.startswith("computed")}
        staged = {ln.split(" ", 1)[1] for ln in stdout.splitlines() if ln.startswith("staged")}
        # a resumed run never recomputes a sample finished before it started
        assert not (computed & finished_before)
        on_disk = _finished_ids(out)
        # nothing reported staged is lost, nothing finished earlier is lost
        assert staged <= on_disk
        assert finished_before <= on_disk
        finished_before = on_disk
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        if len(on_disk) == N and out.exists() and kills < KILLS:
            # the run completed: start a new cycle from nothing
            remove_store(out)
            finished_before = set()
        elif proc.returncode != -signal.SIGKILL:
            assert proc.returncode == 0
    if len(finished_before) == N:  # make the last resume do some work
        remove_store(out)
        finished_before = set()
        proc = _start(out)
        time.sleep(full_run * 0.4)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        finished_before = _finished_ids(out)

    proc = _start(out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    computed = {ln.split(" ", 1)[1] for ln in stdout.splitlines() if ln.startswith("computed")}
    all_ids = {f"crash/s{i % 4}/c{i:03d}" for i in range(N)}
    assert computed == all_ids - finished_before
    # no temporary files or staging left behind
    assert not out.with_name(out.name + ".staging").exists()
    assert not list(tmp_path.glob(".*.tmp-*"))
    # same content as an uninterrupted run
    got, want = _content(out), _content(reference)
    assert got.keys() == want.keys()
    for sid in want:
        assert got[sid][0] == want[sid][0]
        for name in want[sid][1]:
            np.testing.assert_array_equal(got[sid][1][name], want[sid][1][name])
