"""Run every CUDA path of mexkit once and print a table: the GPU check.

Run from the repository root on a machine with a GPU:

    python bench/gpu_check.py                      # everything, on cuda (under 8 minutes)
    python bench/gpu_check.py --device cuda:1      # another GPU
    python bench/gpu_check.py --device cpu --quick # the same steps on the CPU, small (smoke)
    python bench/gpu_check.py --only tvl1,rpca     # some steps

Steps (each a row of the table, with its wall time, start-up included where it
is a ``mexkit`` command):

``tvl1``
    The batched TV-L1 engine (``tvl1_flow(..., engine="torch")``) on ``--pairs``
    pairs of ``--side`` x ``--side`` frames with a known smooth flow: the first
    call's time (``torch.compile`` included), the pairs per second of the next
    calls, the mean endpoint error against the known flow, and the largest
    difference from the CPU engine on 4 of the pairs.
``rpca``
    Batched RPCA (``rpca``) of 8 clips of 150 frames of 112 x 112 on the device:
    time, iterations, the residual, and the largest difference of the sparse
    part from the CPU's on one clip.
``data``
    ``mexkit synth`` and ``mexkit crop`` (CPU; the other steps' input).
``flow``, ``rpca-cli``
    ``mexkit flow --pairs onset-apex --strain --device D`` (TV-L1 through the
    command line: MEAN's input) and ``mexkit rpca --psn --device D`` (PSN's).
``inputs``
    The other models' inputs on the CPU: key frames and Farneback flow
    (MERSiamC3D), magnification (AKMNet), RGB crops, TIM and the apex window
    (ATNet).
``train:<model>``
    ``mexkit train --epochs 1 --device D`` for every registered model whose
    input was made (LOSO; ``--final`` for ``mean``).
``predict``
    ``mexkit predict --device D`` with MEAN's final model.
``spot``
    Long synthetic videos, ``mexkit flow --pairs gap --features mean --device
    D``, ``mexkit train --model mean --final`` on them (spotting: one epoch per
    stage) and ``mexkit spot --device D``.

Without a CUDA device (and without ``--device cpu``) the script says so and
exits with status 2 without running anything. A step that fails is a row
with ``FAILED`` and the last line of its error; the exit status is then 1.
The load average and torch's thread count are printed with the table.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# mexkit first, as in its commands: importing it sets OMP_WAIT_POLICY=PASSIVE, which
# torch's OpenMP runtime reads once, when torch is imported.
import mexkit

# isort: split
import torch

from mexkit.devices import check_device, resolve_device
from mexkit.errors import MexkitError


@dataclass
class Row:
    step: str
    seconds: float
    result: str
    ok: bool = True


@dataclass
class Check:
    device: str
    quick: bool
    work: Path
    rows: list[Row] = field(default_factory=list)
    made: dict[str, Path] = field(default_factory=dict)

    # -- running things ---------------------------------------------------------------
    def mexkit(self, *args: object, timeout: float = 600) -> str:
        """Run ``mexkit ARGS`` (start-up included); return stdout's last line."""
        cmd = [sys.executable, "-m", "mexkit", "-q", *map(str, args)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           cwd=self.work)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise RuntimeError(f"mexkit {args[0]} exited {r.returncode}: {last}")
        return (r.stdout.strip().splitlines() or [""])[-1]

    def step(self, name: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        try:
            result = fn()
            self.rows.append(Row(name, time.perf_counter() - t0, result))
        except (RuntimeError, MexkitError, subprocess.TimeoutExpired, OSError) as exc:
            self.rows.append(Row(name, time.perf_counter() - t0,
                                 f"FAILED: {str(exc).strip().splitlines()[-1][:150]}", False))
        except Exception as exc:  # noqa: BLE001  (a bug in a step: show it, go on)
            traceback.print_exc()
            self.rows.append(Row(name, time.perf_counter() - t0,
                                 f"FAILED: {type(exc).__name__}: {exc}"[:160], False))

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(resolve_device(self.device))

    # -- steps ------------------------------------------------------------------------
    def tvl1(self, pairs: int, side: int, compile: bool) -> str:
        from mexkit.motion import flow_endpoint_error, tvl1_flow

        ref, mov, truth = _shifted_pairs(pairs, side)
        t0 = time.perf_counter()
        flow = tvl1_flow(ref, mov, device=self.device, engine="torch", compile=compile)
        self.sync()
        first = time.perf_counter() - t0
        calls = 2 if self.quick else 5
        t0 = time.perf_counter()
        for _ in range(calls):
            flow = tvl1_flow(ref, mov, device=self.device, engine="torch", compile=compile)
        self.sync()
        rate = calls * pairs / (time.perf_counter() - t0)
        epe = float(np.mean([flow_endpoint_error(f, t) for f, t in zip(flow, truth,
                                                                         strict=True)]))
        cpu = tvl1_flow(ref[:4], mov[:4], device="cpu", engine="numpy", threads=1)
        gap = float(np.abs(cpu - flow[:4]).max())
        how = "compiled" if compile else "not compiled"
        return (f"{pairs} pairs {side}x{side} ({how}): first call {first:.1f} s, "
                f"{rate:.1f} pairs/s; "
                f"EPE {epe:.3f} px; max |GPU - CPU engine| {gap:.3f} px (4 pairs)")

    def rpca(self) -> str:
        from mexkit.temporal.rpca import rpca

        rng = np.random.default_rng(0)
        clips, frames, side = (2, 30, 32) if self.quick else (8, 150, 112)
        low = rng.random((clips, side * side, 1)) @ rng.random((clips, 1, frames))
        sparse = (rng.random((clips, side * side, frames)) < 0.02) * rng.normal(
            0, 1, (clips, side * side, frames))
        data = (low + sparse).astype(np.float32)
        t0 = time.perf_counter()
        res = rpca(data, device=self.device)
        self.sync()
        seconds = time.perf_counter() - t0
        one = rpca(data[0], device="cpu")
        gap = float(np.abs(np.asarray(res.sparse[0]) - np.asarray(one.sparse)).max())
        iters = np.atleast_1d(np.asarray(res.iterations))
        return (f"{clips} clips of {frames} frames {side}x{side}: {seconds:.1f} s, "
                f"{int(iters.max())} iterations at most; max |sparse - CPU's| {gap:.2e}")

    def data(self) -> str:
        subjects = 2 if self.quick else 3
        sheet = self.mexkit("synth", "data", "--subjects", subjects, "--clips-per-class", 1,
                            "--size", 160, "--format", "png", "--fps", 30 if self.quick
                            else 60, "--seed", 1)
        self.made["sheet"] = Path(sheet)
        self.made["crop"] = Path(self.mexkit("crop", "--annotations", sheet, "--size", 112,
                                             "-o", "c112.crop.h5"))
        return f"{subjects} subjects x 3 classes, crops 112x112 ({self.made['crop'].name})"

    def flow(self) -> str:
        self.made["mean"] = Path(self.mexkit(
            "flow", self.made["crop"], "--pairs", "onset-apex", "--strain", "--device",
            self.device, "-o", "mean.flow.h5"))
        return f"mexkit flow (tvl1) on {self.device}: {self.made['mean'].name}"

    def rpca_cli(self) -> str:
        args = ["--tim-frames", 40] if self.quick else []
        self.made["psn"] = Path(self.mexkit("rpca", self.made["crop"], "--psn", *args,
                                            "--device", self.device, "-o", "psn.rpca.h5"))
        return f"mexkit rpca --psn on {self.device}: {self.made['psn'].name}"

    def inputs(self) -> str:
        crop = self.made["crop"]
        kf = self.mexkit("keyframes", crop, "-o", "kf.h5")
        self.made["mersiamc3d"] = Path(self.mexkit(
            "flow", kf, "--pairs", "keyframes", "--method", "farneback", "-o", "kf.flow.h5"))
        self.made["akmnet"] = Path(self.mexkit("magnify", crop, "--alpha", 15, "-o",
                                               "mag.h5"))
        rgb = self.mexkit("crop", "--annotations", self.made["sheet"], "--rgb", "--size", 224,
                          "-o", "rgb.crop.h5")
        tim = self.mexkit("tim", rgb, "-n", 65, "-o", "rgb.tim.h5")
        atnet = Path(self.mexkit("flow", tim, "--pairs", "apex-window", "--method",
                                 "farneback", "--features", "dm", "--with-apex", "-o",
                                 "atnet.flow.h5"))
        for name in ("atnet", "atnet-spatial", "atnet-temporal"):
            self.made[name] = atnet
        return "key frames + Farneback, magnification, RGB crops + TIM + apex window"

    def train(self, model: str) -> str:
        extra = {"akmnet": ["--image-size", 32, "--train-resize", 128],
                 "mersiamc3d": ["--pairs-per-epoch", 16, "--copies-per-epoch", 1]
                 + (["--resolution", 16] if self.quick else []),
                 "mean": ["--final"]}.get(model, [])
        out = self.work / f"run-{model}"
        results = self.mexkit("train", self.made[model], "--model", model, "--epochs", 1,
                              "--protocol", "loso", "--device", self.device, "--fold-jobs", 1,
                              *extra, "-o", out)
        import json

        res = json.loads(Path(results).read_text())
        uf1 = res["pooled"].get("uf1")
        if model == "mean":
            self.made["mean-run"] = out
        return (f"1 epoch, {len(res.get('training', {}))} LOSO folds, "
                f"{res['n_samples']} clips; UF1 {uf1 if uf1 is None else round(uf1, 3)}")

    def predict(self) -> str:
        path = self.mexkit("predict", self.made["mean"], "--results", self.made["mean-run"],
                           "--device", self.device, "-o", "predict.csv")
        rows = sum(1 for line in Path(path).read_text().splitlines()
                   if line and not line.startswith(("#", "sample_id")))
        return f"mexkit predict on {self.device}: {rows} rows"

    def spot(self) -> str:
        sheet = self.mexkit("synth", "long", "--long", "--subjects", 2, "--seconds",
                            6 if self.quick else 10, "--fps", 25, "--size", 160, "--format",
                            "png", "--seed", 2)
        crop = self.mexkit("crop", "--annotations", sheet, "--dataset-fps", 25, "-o",
                           "long.crop.h5")
        gap = self.mexkit("flow", crop, "--pairs", "gap", "--features", "mean", "--device",
                          self.device, "-o", "long.gap.h5")
        emotions = Path(sheet).parent / "intervals.csv"
        out = self.work / "run-spot"
        self.mexkit("train", gap, "--model", "mean", "--epochs", 1, "--spot-epochs", 1,
                    "--emotions", emotions, "--final", "--device", self.device, "-o", out)
        spotted = self.mexkit("spot", gap, "--results", out, "--emotions", emotions,
                              "--device", self.device, "--no-plots", "-o", "spotted.csv")
        n = sum(1 for line in Path(spotted).read_text().splitlines()[1:] if line)
        return f"flow --pairs gap on {self.device}, LOSO spotting, mexkit spot: {n} intervals"


def _shifted_pairs(pairs: int, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth random frames and the same moved by a known sub-pixel translation."""
    import cv2

    rng = np.random.default_rng(0)
    ref, mov, truth = [], [], []
    for i in range(pairs):
        base = cv2.GaussianBlur(rng.random((side + 16, side + 16)).astype(np.float32),
                                (0, 0), 2.0)
        base = (base - base.min()) / (np.ptp(base) or 1)
        u, v = 0.5 + 0.01 * (i % 50), -0.3
        m = np.float32([[1, 0, u], [0, 1, v]])
        moved = cv2.warpAffine(base, m, base.shape[::-1], flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REFLECT)
        ref.append(base[8:-8, 8:-8])
        mov.append(moved[8:-8, 8:-8])
        # reference(x) ~ moving(x + flow(x)): moving is the frame shifted by (u, v)
        truth.append(np.stack([np.full((side, side), u), np.full((side, side), v)]))
    return (np.stack(ref), np.stack(mov), np.stack(truth).astype(np.float32))


def _models() -> list[str]:
    from mexkit.models import list_models

    return [s.name for s in list_models()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a smoke run)")
    ap.add_argument("--quick", action="store_true", help="small sizes (for the CPU)")
    ap.add_argument("--only", default="", help="comma-separated steps (default: all)")
    ap.add_argument("--pairs", type=int, default=None, help="tvl1: pairs (default 256; 8 "
                                                             "with --quick)")
    ap.add_argument("--side", type=int, default=None, help="tvl1: frame side (default 128; "
                                                            "32 with --quick)")
    ap.add_argument("--no-compile", action="store_true",
                    help="tvl1: eager kernels (default on the CPU: torch.compile takes minutes "
                         "there)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a "
                                                            "temporary one, removed)")
    args = ap.parse_args(argv)
    if not args.device.startswith("cpu"):
        try:
            check_device(args.device)
        except MexkitError as exc:
            print(f"gpu_check: no CUDA device to check: {exc} (torch {torch.__version__}, "
                  f"built for CUDA {torch.version.cuda}). Nothing was run; give --device "
                  "cpu for a CPU smoke run.", file=sys.stderr)
            return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="mexkit-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    check = Check(args.device, args.quick, work.resolve())
    pairs = args.pairs or (8 if args.quick else 256)
    side = args.side or (32 if args.quick else 128)
    steps: list[tuple[str, Callable[[], str]]] = [
        ("tvl1", lambda: check.tvl1(pairs, side, compile=not (
            args.no_compile or args.device.startswith("cpu")))),
        ("rpca", check.rpca),
        ("data", check.data),
        ("flow", check.flow),
        ("rpca-cli", check.rpca_cli),
        ("inputs", check.inputs),
        *((f"train:{m}", lambda m=m: check.train(m)) for m in _models()),
        ("predict", check.predict),
        ("spot", check.spot),
    ]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    t0 = time.perf_counter()
    for name, fn in steps:
        if only and name not in only and name.split(":")[0] not in only:
            continue
        check.step(name, fn)
        print(f"gpu_check: {name}: {check.rows[-1].result}", file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    gpu = (torch.cuda.get_device_name(resolve_device(args.device))
           if args.device.startswith("cuda") else platform.processor() or "CPU")
    print(f"mexkit {mexkit.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda}),"
          f" device {args.device}: {gpu}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch threads "
          f"{torch.get_num_threads()}")
    width = max([4] + [len(r.step) for r in check.rows])
    print(f"| {'step':<{width}} | seconds | result |")
    print(f"|{'-' * (width + 2)}|--------:|--------|")
    for r in check.rows:
        print(f"| {r.step:<{width}} | {r.seconds:7.1f} | {r.result} |")
    print(f"| {'all':<{width}} | {total:7.1f} | "
          f"{sum(r.ok for r in check.rows)} of {len(check.rows)} steps passed |")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.ok for r in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
