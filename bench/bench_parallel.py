"""Reliability and throughput of the stage runner's parallel map; prints its figures.

1. Reliability: N synthetic samples through a stage on a local 2-worker Dask
   cluster (processes, loopback), with a fraction of injected failures and two
   workers killed during the run.  Checks that every sample without a fault is
   kept, that the failure list holds exactly the faulty samples with their
   reason, and that a re-run without the faults computes exactly those.
2. Throughput: the same stage with 1, 2 and 4 loky workers, and the overhead
   per sample of the runner (staging, assembly) against a plain loop over the
   compute function.

    python bench/bench_parallel.py                 # 1000 samples, 5% faults
    python bench/bench_parallel.py --n 200 --skip-dask

The figures depend on the machine and its load: report them with both.
"""
from __future__ import annotations

import argparse
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


def reliability(n: int, fault_rate: float, work_ms: float, folder: Path) -> None:
    import distributed

    rng = np.random.default_rng(19)
    faults = set(rng.choice(n, size=int(round(n * fault_rate)), replace=False).tolist())
    out = folder / "dask.h5"
    killed: list[int] = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        staging = Path(str(out) + ".staging")

        def staged() -> int:
            return sum(1 for p in staging.glob("*.h5") if not p.name.startswith(".")) \
                if staging.exists() else 0

        def killer() -> None:
            for when in (0.25, 0.6):  # after a quarter and 60% of the samples
                while staged() < when * n:
                    time.sleep(0.05)
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        t0 = time.perf_counter()
        r = run_stage(make_tasks(n, work_ms, faults), compute, output=out, stage="bench",
                      params={}, jobs=2, backend="dask", scheduler=cluster.scheduler_address,
                      group=10, progress=False)
        run_s = time.perf_counter() - t0
        th.join(timeout=5)
    fault_ids = {f"bench/s{i // 50:02d}/c{i:05d}" for i in faults}
    with open_store(out) as s:
        kept = set(s.sample_ids)
        failures = s.failures
    print(f"reliability: {n} samples, {len(faults)} injected faults, {len(killed)} workers "
          f"killed, 2-worker local Dask cluster, {run_s:.1f} s")
    print(f"  kept {len(kept)} (expected {n - len(faults)}); failure list "
          f"{len(failures)} (exactly the faulty ones: {set(failures) == fault_ids}; "
          f"all with the injected reason: "
          f"{all('injected fault' in m for m in failures.values())})")
    print(f"  computed in the run: {r.computed}; lost with a worker after the retries: "
          f"{sum('lost with a worker' in m for m in r.failures.values())}")
    r2 = run_stage(make_tasks(n, work_ms, set()), compute, output=out, stage="bench",
                   params={}, progress=False)
    print(f"  re-run without the faults: {r2.computed} computed, {r2.skipped} skipped, "
          f"{len(r2.failures)} failed")


def throughput(n: int, work_ms: float, folder: Path) -> None:
    tasks = make_tasks(n, work_ms, set())
    t0 = time.perf_counter()
    for t in tasks:
        compute(t)
    loop_s = time.perf_counter() - t0
    print(f"throughput: {n} samples of {work_ms:g} ms work each")
    print(f"  plain loop over compute (no store): {loop_s:.2f} s, "
          f"{n / loop_s:.0f} samples/s")
    for jobs in (1, 2, 4):
        out = folder / f"loky{jobs}.h5"
        t0 = time.perf_counter()
        r = run_stage(tasks, compute, output=out, stage="bench", params={}, jobs=jobs,
                      progress=False)
        s = time.perf_counter() - t0
        assert r.computed == n and not r.failures
        extra = f", overhead {1000 * (s - loop_s) / n:.1f} ms/sample" if jobs == 1 else ""
        print(f"  run_stage -j {jobs} (loky): {s:.2f} s, {n / s:.0f} samples/s{extra}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--work-ms", type=float, default=5.0)
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="Show mexkit's and Dask's logs.")
    args = ap.parse_args(argv)
    if not args.verbose:  # the injected faults and killed workers are expected
        import logging

        logging.getLogger("mexkit").setLevel(logging.CRITICAL)
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
          flush=True)
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_dask:
            reliability(args.n, args.fault_rate, args.work_ms, Path(d))
        if not args.skip_throughput:
            throughput(args.n, args.work_ms, Path(d))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
