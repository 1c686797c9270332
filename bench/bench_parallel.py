"""Reliability and throughput of the stage runner's parallel map; prints its figures.

1. Reliability: N synthetic samples through a stage on a local 2-worker Dask
   cluster (worker processes under nannies, loopback), with a fraction of
   injected failures and two worker processes killed during the run, one at a
   time: the second only once the nanny has restarted the first, so the
   cluster always keeps a worker.  Checks that every sample without a fault
   is kept, that the failure list holds exactly the faulty samples with their
   reason, and that a re-run without the faults computes exactly those.  The
   stall guard (``--stall-timeout``) ends the run, rather than waiting for
   ever, if the cluster still loses every worker.
2. Throughput: the same stage with 1, 2 and 4 loky workers and on local Dask
   clusters of 2 and 4 workers, and the overhead per sample of the runner
   (staging, assembly) against a plain loop over the compute function.

    python bench/bench_parallel.py                 # 1000 samples, 5% faults
    python bench/bench_parallel.py --n 200 --skip-dask

The figures depend on the machine and its load: report them with both.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mexkit.errors import ParameterError
from mexkit.io.store import open_store
from mexkit.pipeline.parallel import configure
from mexkit.pipeline.runner import Task, run_stage


def compute(task: Task) -> tuple[dict, dict]:
    """About ``work_ms`` of numpy work on a 64x64 frame stack; fails if told to."""
    p = task.payload
    if p.get("fault"):
        raise ParameterError(f"sample {task.sample_id!r}: injected fault")
    rng = np.random.default_rng(p["seed"])
    x = rng.random((8, 64, 64), dtype=np.float32)
    deadline = time.perf_counter() + p["work_ms"] / 1000
    while time.perf_counter() < deadline:
        x = np.sqrt(x * x + 1e-3).astype(np.float32)
    return {"frames": (x * 255).astype(np.uint8)}, {"seed": p["seed"]}


def make_tasks(n: int, work_ms: float, faults: set[int]) -> list[Task]:
    return [Task(f"bench/s{i // 50:02d}/c{i:05d}", f"{i:032x}", {"subject": f"s{i // 50:02d}"},
                 {"seed": i, "work_ms": work_ms, "fault": i in faults}) for i in range(n)]


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:  # "pid (name) state ppid ..."
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _dask_cluster(workers: int) -> contextlib.AbstractContextManager:
    import distributed

    # a generous start-up time: on a loaded machine a nanny gives up restarting
    # a worker that takes longer than this to start (its death_timeout)
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None,
                                    death_timeout=300)


def _wait_workers(client, count: int, timeout: float, exclude: set[int] = frozenset()) -> bool:
    """Wait until ``count`` workers run, none of them a process in ``exclude``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            pids = client.run(os.getpid)
            if len(pids) >= count and not set(pids.values()) & exclude:
                return True
        time.sleep(0.2)
    return False


def reliability(n: int, fault_rate: float, work_ms: float, folder: Path, kills: int,
                stall: float, restart_s: float) -> bool:
    """Print the reliability figures; True if every check held."""
    import distributed

    rng = np.random.default_rng(19)
    faults = set(rng.choice(n, size=int(round(n * fault_rate)), replace=False).tolist())
    out = folder / "dask.h5"
    killed: list[int] = []
    notes: list[str] = []
    restarts: list[float] = []
    me = os.getpid()
    with _dask_cluster(2) as cluster, distributed.Client(cluster) as client:
        staging = Path(str(out) + ".staging")
        done = threading.Event()

        def staged() -> int:
            return sum(1 for p in staging.glob("*.h5") if not p.name.startswith(".")) \
                if staging.exists() else 0

        def killer() -> None:
            # evenly spread over the run: kills=2 -> after a third and two thirds
            for k in range(kills):
                while staged() < (k + 1) / (kills + 1) * n:
                    if done.wait(0.05):
                        notes.append(f"the run ended before kill {k + 1}")
                        return
                # one worker process at a time, and only a worker: a child of
                # this process (the nannies run here), never a nanny or this process
                pid = min(client.run(os.getpid).values())
                if pid == me or _parent_of(pid) != me:
                    notes.append(f"pid {pid} is not a worker process of this run; not killed")
                    return
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                t = time.monotonic()
                if not _wait_workers(client, 2, restart_s, exclude={pid}):
                    notes.append(f"worker {pid} not restarted within {restart_s:g} s; no "
                                 "further kill")
                    return
                restarts.append(time.monotonic() - t)

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        t0 = time.perf_counter()
        with configure(stall_timeout=stall):
            r = run_stage(make_tasks(n, work_ms, faults), compute, output=out, stage="bench",
                          params={}, jobs=2, backend="dask",
                          scheduler=cluster.scheduler_address, group=10, progress=False)
        run_s = time.perf_counter() - t0
        done.set()
        th.join(timeout=restart_s + 5)
    fault_ids = {f"bench/s{i // 50:02d}/c{i:05d}" for i in faults}
    with open_store(out) as s:
        kept = set(s.sample_ids)
        failures = s.failures
    print(f"reliability: {n} samples, {len(faults)} injected faults, {len(killed)} worker "
          f"processes killed (SIGKILL, one at a time), 2-worker local Dask cluster, "
          f"{run_s:.1f} s")
    if restarts:
        print(f"  nanny restarted each killed worker in {', '.join(f'{x:.1f}' for x in restarts)}"
              " s")
    for note in notes:
        print(f"  note: {note}")
    print(f"  kept {len(kept)} (expected {n - len(faults)}); failure list "
          f"{len(failures)} (exactly the faulty ones: {set(failures) == fault_ids}; "
          f"all with the injected reason: "
          f"{all('injected fault' in m for m in failures.values())})")
    lost = {sid: m for sid, m in r.failures.items() if "injected fault" not in m}
    print(f"  computed in the run: {r.computed}; failed for another reason (lost workers, "
          f"stall guard at {stall:g} s): {len(lost)}")
    for sid, m in list(lost.items())[:3]:
        print(f"    {sid}: {m}")
    r2 = run_stage(make_tasks(n, work_ms, set()), compute, output=out, stage="bench",
                   params={}, progress=False)
    print(f"  re-run without the faults: {r2.computed} computed "
          f"(exactly the failed ones: {r2.computed == len(r.failures)}), {r2.skipped} "
          f"skipped, {len(r2.failures)} failed")
    return (len(kept) == n - len(faults) and set(failures) == fault_ids
            and all("injected fault" in m for m in failures.values())
            and r2.computed == len(r.failures) and not r2.failures)


def throughput(n: int, work_ms: float, folder: Path, backends: tuple[str, ...]) -> None:
    tasks = make_tasks(n, work_ms, set())
    t0 = time.perf_counter()
    for t in tasks:
        compute(t)
    loop_s = time.perf_counter() - t0
    print(f"throughput: {n} samples of {work_ms:g} ms work each")
    print(f"  plain loop over compute (no store): {loop_s:.2f} s, "
          f"{n / loop_s:.0f} samples/s, {1000 * loop_s / n:.1f} ms/sample")

    def timed(label: str, out: Path, jobs: int, **kw) -> None:
        t0 = time.perf_counter()
        r = run_stage(tasks, compute, output=out, stage="bench", params={}, jobs=jobs,
                      progress=False, **kw)
        s = time.perf_counter() - t0
        assert r.computed == n and not r.failures
        cores = min(jobs, os.cpu_count() or 1)
        print(f"  {label}: {s:.2f} s, {n / s:.0f} samples/s; overhead against the plain "
              f"loop {1000 * (s * cores - loop_s) / n:.1f} ms of core time per sample")

    if "loky" in backends:
        for jobs in (1, 2, 4):
            label = "run_stage -j 1 (plain loop in the process)" if jobs == 1 else \
                f"run_stage -j {jobs} (loky)"
            timed(label, folder / f"loky{jobs}.h5", jobs)
    if "dask" in backends:
        import distributed

        for jobs in (2, 4):
            t0 = time.perf_counter()
            with _dask_cluster(jobs) as cluster, distributed.Client(cluster):
                start = time.perf_counter() - t0
                timed(f"run_stage -j {jobs} --backend dask (local cluster, started in "
                      f"{start:.1f} s, not counted)", folder / f"dask{jobs}.h5", jobs,
                      backend="dask", scheduler=cluster.scheduler_address, group=10)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if a reliability check failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--work-ms", type=float, default=5.0)
    ap.add_argument("--kills", type=int, default=2, help="Worker processes to kill (2).")
    ap.add_argument("--stall-timeout", type=float, default=120.0,
                    help="Stall guard of the reliability run, seconds (120).")
    ap.add_argument("--restart-timeout", type=float, default=180.0,
                    help="Longest wait for a nanny to restart a killed worker (180 s).")
    ap.add_argument("--throughput-backends", default="loky,dask",
                    help="Comma-separated: loky, dask (default both).")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="Show mexkit's and Dask's logs.")
    args = ap.parse_args(argv)
    if not args.verbose:  # the injected faults and killed workers are expected
        import logging

        with contextlib.suppress(ImportError):
            import distributed  # noqa: F401 - its import sets its loggers' levels
        logging.getLogger("mexkit").setLevel(logging.CRITICAL)
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    backends = tuple(b.strip() for b in args.throughput_backends.split(",") if b.strip())
    if args.skip_dask:
        backends = tuple(b for b in backends if b != "dask")
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"(1, 5, 15 min) on {os.cpu_count()} cores", flush=True)
    ok = True
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_dask:
            ok = reliability(args.n, args.fault_rate, args.work_ms, Path(d), args.kills,
                        args.stall_timeout, args.restart_timeout)
            print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
                  flush=True)
        if not args.skip_throughput:
            throughput(args.n, args.work_ms, Path(d), backends)
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not ok:
        print("reliability: a check FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
