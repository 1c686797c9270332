"""Throughput and accuracy of optical flow: mexkit's TV-L1 against OpenCV.

Run from the repository root:

    python bench/bench_flow.py [--pairs 64] [--threads 2] [--repeats 3] [--sizes 128 224]
                               [--load N] [--e2e] [--cold]

All methods see the same pairs: a crop of scikit-image's astronaut photograph
(grey) and the same photograph resampled at ``x + flow(x)`` (cubic splines,
with real image content beyond the crop), for a smooth known flow: a
translation of 0.3-1.5 px, a rotation and expansion of up to 1.5 %, and a
local Gaussian bump. Reported per method: pairs per second (median and best of
``--repeats`` timed runs, run in turn method after method so that changes in
the machine's load hit every method alike), the CPU time per pair (this
process and its worker processes), the mean endpoint error against the known
flow, the peak extra resident memory during a run (sampled every 2 ms; the
worker processes of mexkit's CPU engine are counted whole, from the second
run on, their start being in the first call) or the peak CUDA memory, and the
time of the first call in this process. mexkit's CPU engine is measured with
``--threads`` workers (processes) and with one, so that the two can be
compared.

``--load N`` starts N busy processes (one spinning Python loop each) before
measuring and stops them at the end: the figures then show what competing
jobs do to each method. ``--cold`` times the first pair in a fresh Python
process (imports included), as a user's first call sees it, and the first 8
pairs on ``--threads`` workers (their start included). ``--e2e`` times
``mexkit flow`` through the command line on a crop store of 64 clips of
128 x 128 (``mexkit synth`` + ``mexkit crop``, built once into ``--workdir``),
onset-apex pairs, wall time including start-up, for ``--method tvl1``
against ``--method tvl1-opencv``. The load average (``/proc/loadavg``) is
printed beside every section: the machine may be shared with other jobs.
"""
from __future__ import annotations

import argparse
import os
import platform
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
import numpy as np
import psutil
import torch
from scipy import ndimage
from skimage import color, data, transform

from mexkit.motion import farneback, flow_endpoint_error, tvl1_flow, tvl1_opencv

MARGIN = 16


def make_pairs(n: int, size: int, seed: int = 0):
    """(reference, moving, true flow) with reference(x) = moving(x + flow(x))."""
    rng = np.random.default_rng(seed)
    grey = color.rgb2gray(data.astronaut())[20:340, 90:410]
    full = size + 2 * MARGIN
    photo = transform.resize(grey, (full, full), anti_aliasing=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2.0
    scale = size / 128.0
    refs, flows = [], []
    for _ in range(n):
        tx, ty = rng.uniform(0.3, 1.5, 2) * rng.choice([-1.0, 1.0], 2)
        rot, grow = rng.uniform(-0.015, 0.015, 2)
        u = tx + grow * (xx - c) - rot * (yy - c)
        v = ty + rot * (xx - c) + grow * (yy - c)
        bump = np.exp(-((xx - c - 10 * scale) ** 2 + (yy - c + 5 * scale) ** 2)
                      / (450.0 * scale ** 2))
        u += rng.uniform(-0.4, 0.4) * bump
        ref = ndimage.map_coordinates(photo, [yy + v + MARGIN, xx + u + MARGIN], order=3,
                                      mode="reflect")
        refs.append(np.clip(ref, 0.0, 1.0))
        flows.append(np.stack([u, v]))
    moving = np.repeat(photo[None, MARGIN:MARGIN + size, MARGIN:MARGIN + size], n, axis=0)
    return (np.asarray(refs, np.float32), moving.astype(np.float32),
            np.asarray(flows, np.float32))


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


COLD = """
import sys, time
t0 = time.perf_counter()
import numpy as np
from mexkit.motion import tvl1_flow
a = np.load(sys.argv[1])
n, threads = int(sys.argv[2]), int(sys.argv[3])
f = tvl1_flow(a[0][:n], a[1][:n], device="cpu", threads=threads)
print(f"{time.perf_counter() - t0:.2f} {'torch' in sys.modules}")
"""


def cold_start(ref: np.ndarray, mov: np.ndarray, repeats: int, pairs: int = 1,
               threads: int = 1) -> list[tuple[float, float]]:
    """(seconds in the child, wall seconds incl. interpreter start), fresh process.

    The child computes the flow of the first ``pairs`` pairs with ``threads``
    workers: with more than one of each, the worker processes' start is in
    the figure.
    """
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "pairs.npy"
        np.save(frames, np.stack([ref[:pairs], mov[:pairs]]))
        env = dict(os.environ, HOME=tmp, TORCHINDUCTOR_CACHE_DIR=str(Path(tmp) / "inductor"),
                   XDG_CACHE_HOME=str(Path(tmp) / "cache"))
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", COLD, str(frames), str(pairs),
                                  str(threads)], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
            results.append((float(out[0]), time.perf_counter() - t0))
    return results


def build_crop_store(workdir: Path) -> Path:
    """64 clips of 128 x 128 (synthetic motion of a real face photograph), built once."""
    store = workdir / "bench.crop.h5"
    if store.exists():
        return store
    workdir.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("mexkit") or str(Path(sys.executable).with_name("mexkit"))
    sheet = subprocess.run([exe, "-q", "synth", str(workdir / "data"), "--subjects", "8",
                            "--classes", "negative,positive", "--clips-per-class", "4",
                            "--overwrite"], capture_output=True, text=True, check=True,
                           cwd=workdir).stdout.strip()
    subprocess.run([exe, "-q", "crop", "--annotations", sheet, "-o", str(store), "-j", "2"],
                   capture_output=True, text=True, check=True, cwd=workdir)
    return store


def end_to_end(store: Path, threads: int, repeats: int) -> dict[str, list[float]]:
    """Wall seconds of `mexkit flow STORE --pairs onset-apex` per method, start-up included."""
    exe = shutil.which("mexkit") or str(Path(sys.executable).with_name("mexkit"))
    walls: dict[str, list[float]] = {"tvl1": [], "tvl1-opencv": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for method in walls:
                out = Path(tmp) / f"{method}-{r}.h5"
                cmd = [exe, "-q", "flow", str(store), "--pairs", "onset-apex", "--method",
                       method, "-o", str(out)]
                if method == "tvl1":
                    cmd += ["--threads", str(threads), "--device", "cpu"]
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                walls[method].append(time.perf_counter() - t0)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64, help="pairs per run (default 64)")
    parser.add_argument("--threads", type=int, default=2,
                        help="mexkit worker threads and OpenCV threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128],
                        help="frame sizes (default 128; e.g. 128 224)")
    parser.add_argument("--no-compile", action="store_true",
                        help="CUDA: run mexkit's batched TV-L1 without torch.compile")
    parser.add_argument("--load", type=int, default=0,
                        help="busy processes competing for the cores while measuring")
    parser.add_argument("--cold", action="store_true",
                        help="time the first pair in fresh processes (3 runs)")
    parser.add_argument("--e2e", action="store_true",
                        help="time `mexkit flow` end to end on a 64-clip crop store")
    parser.add_argument("--e2e-repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mexkit-bench-flow",
                        help="where --e2e keeps its crop store (default: a folder in the "
                             "temporary directory, reused by later runs)")
    parser.add_argument("--skip-pairs", action="store_true",
                        help="skip the in-process table (with --cold or --e2e)")
    args = parser.parse_args()

    cv2.setNumThreads(args.threads)
    compile_flag = not args.no_compile
    methods: list[tuple[str, str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = [
        (f"mexkit tvl1 x{args.threads}", "cpu",
         lambda r, m: tvl1_flow(r, m, device="cpu", threads=args.threads)),
    ]
    if args.threads > 1:
        methods.append(("mexkit tvl1 x1", "cpu",
                        lambda r, m: tvl1_flow(r, m, device="cpu", threads=1)))
    methods += [
        ("opencv tvl1", "cpu", tvl1_opencv),
        ("opencv farneback", "cpu", farneback),
    ]
    if torch.cuda.is_available():
        methods.insert(1, ("mexkit tvl1", "cuda",
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
        if args.cold:
            ref, mov, _ = make_pairs(8, 128)
            for pairs, threads in ((1, 1), (8, args.threads)):
                runs = cold_start(ref, mov, 3, pairs, threads)
                print(f"\ncold start, {pairs} pair(s) of 128 x 128 on {threads} worker(s) in a "
                      f"fresh process (imports and worker start included; HOME and caches "
                      f"empty): " + ", ".join(
                          f"{a:.2f} s ({b:.2f} s with the interpreter)" for a, b in runs)
                      + f"; {loadavg()}")
        if args.e2e:
            store = build_crop_store(args.workdir)
            walls = end_to_end(store, args.threads, args.e2e_repeats)
            ours, theirs = statistics.median(walls["tvl1"]), statistics.median(
                walls["tvl1-opencv"])
            print(f"\nend to end: mexkit flow {store.name} --pairs onset-apex (64 pairs of "
                  f"128 x 128), wall time incl. start-up, median of {args.e2e_repeats}:")
            print(f"  --method tvl1 --threads {args.threads}: {ours:.2f} s "
                  f"({', '.join(f'{w:.2f}' for w in walls['tvl1'])})")
            print(f"  --method tvl1-opencv (OpenCV threads {args.threads}): {theirs:.2f} s "
                  f"({', '.join(f'{w:.2f}' for w in walls['tvl1-opencv'])})")
            print(f"  mexkit {theirs / ours:.2f}x faster; {loadavg()}")


def run_pairs(args: argparse.Namespace, methods: list, size: int) -> None:
    """The in-process table for frames of ``size`` x ``size``."""
    ref, mov, truth = make_pairs(args.pairs, size)
    print(f"\n{args.pairs} pairs of {size} x {size}, true flow |mean| "
          f"{np.hypot(truth[:, 0], truth[:, 1]).mean():.2f} px")
    first: dict[int, float] = {}
    flows: dict[int, np.ndarray] = {}
    for i, (_, _, fn) in enumerate(methods):
        t0 = time.perf_counter()
        flows[i] = fn(ref, mov)
        first[i] = time.perf_counter() - t0
    walls: dict[int, list[float]] = {i: [] for i in range(len(methods))}
    cpus: dict[int, list[float]] = {i: [] for i in range(len(methods))}
    peaks: dict[int, int] = dict.fromkeys(range(len(methods)), 0)
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
    ours = [i for i, m in enumerate(methods) if m[0].startswith("mexkit tvl1")]
    ref_i = next(i for i, m in enumerate(methods) if m[0] == "opencv tvl1")
    print(loadavg())
    for i in ours:
        ratios = [w_ref / w for w, w_ref in zip(walls[i], walls[ref_i], strict=True)]
        print(f"{methods[i][0]} ({methods[i][1]}) vs opencv tvl1: "
              f"{rate[i] / rate[ref_i]:.2f}x the throughput (per-round ratios "
              f"{', '.join(f'{r:.2f}' for r in ratios)}), EPE ratio "
              f"{epe[i] / epe[ref_i]:.3f}, mean distance between the two flows "
              f"{flow_endpoint_error(flows[i], flows[ref_i]):.4f} px")


if __name__ == "__main__":
    main()
