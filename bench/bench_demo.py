"""Where the time of ``bin/demo`` goes: each stage of its pipeline, timed through the CLI.

Run from the repository root (after ``bin/setup``):

    python bench/bench_demo.py [--workdir DIR] [--epochs 150] [--subjects 5]
                               [--clips-per-class 2] [--jobs 2] [--stage-jobs 1]
                               [--fold-jobs 1]

The stages are ``bin/demo``'s commands, run one after the other as separate
``mexkit`` processes (so each figure includes that command's start-up), on a
fresh synthetic dataset: synth (without the per-frame true flow, as bin/demo), crop,
onset-apex TV-L1 flow with strain and MEAN's region input, MEAN under LOSO, TIM, RPCA,
adaptive key frames, Farneback flow between key frames, magnification, validation, with
bin/demo's options by default (``-j 2`` for synth, crop in one process with two threads
(``--backend threading``), the temporal stages one clip at a time, MEAN's folds one
after the other on one thread). ``--subjects 28
--clips-per-class 3`` makes a CASME II-sized run (252 clips with synth's three default
classes); for it, ``--stage-jobs 2 --fold-jobs auto`` use both cores in each stage.
Printed: a table of wall seconds per stage and its share of the total, the
CPU seconds the stage's processes used (user + system, the command and every
process it started), and the load average of the machine before and after
each stage (other jobs on a shared machine move the wall figures; the CPU
figures move less), and the share of CPU time the hypervisor stole from this
virtual machine over the whole run.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import cpu_ticks, stolen_share


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mexkit-bench-demo")
    parser.add_argument("--subjects", type=int, default=5)
    parser.add_argument("--clips-per-class", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=150, help="MEAN epochs (bin/demo: 150)")
    parser.add_argument("--jobs", type=int, default=2, help="-j of synth (bin/demo: 2)")
    parser.add_argument("--stage-jobs", type=int, default=1,
                        help="-j of tim, rpca, keyframes and magnify (bin/demo: 1)")
    parser.add_argument("--fold-jobs", default="1",
                        help="mexkit train's --fold-jobs (bin/demo: 1, with OMP_NUM_THREADS=1)")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()

    exe = shutil.which("mexkit") or str(Path(sys.executable).with_name("mexkit"))
    out = args.workdir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = dict(os.environ, MPLBACKEND="Agg")
    j, sj = str(args.jobs), str(args.stage_jobs)
    train_env = dict(env, OMP_NUM_THREADS="1") if args.fold_jobs == "1" else env
    stages: list[tuple[str, list[str]]] = [
        ("synth", ["synth", str(out / "data"), "--subjects", str(args.subjects),
                   "--clips-per-class", str(args.clips_per_class), "--no-dense-flow",
                   "--overwrite", "-j", j]),
        ("crop", ["crop", "--annotations", str(out / "data" / "samples.csv"), "-j", "2",
                  "--backend", "threading", "-o", str(out / "demo.crop.h5")]),
        ("flow tvl1 + strain", ["flow", str(out / "demo.crop.h5"), "--pairs", "onset-apex",
                                "--method", "tvl1", "--strain", "--features", "mean", "-o",
                                str(out / "demo.flow.h5")]),
        ("train mean loso", ["-q", "train", str(out / "demo.flow.h5"), "--model", "mean",
                             "--protocol", "loso", "--epochs", str(args.epochs),
                             "--fold-jobs", args.fold_jobs, "-o", str(out / "mean-loso")]),
        ("tim", ["tim", str(out / "demo.crop.h5"), "-n", "32", "-j", sj, "-o",
                 str(out / "demo.tim.h5")]),
        ("rpca", ["rpca", str(out / "demo.tim.h5"), "-j", sj, "-o",
                  str(out / "demo.rpca.h5")]),
        ("keyframes adaptive", ["keyframes", str(out / "demo.crop.h5"), "--method", "adaptive",
                                "-j", sj, "-o", str(out / "demo.keyframes.h5")]),
        ("flow farneback", ["flow", str(out / "demo.keyframes.h5"), "--pairs", "keyframes",
                            "--method", "farneback", "-o", str(out / "demo.keyflow.h5")]),
        ("magnify", ["magnify", str(out / "demo.crop.h5"), "--alpha", "15", "-j", sj, "-o",
                     str(out / "demo.magnify.h5")]),
        ("validate", ["validate", str(out / "demo.keyflow.h5")]),
    ]
    if args.skip_train:
        stages = [s for s in stages if not s[0].startswith("train")]
    print(f"bench_demo: bin/demo's stages through the CLI, {args.subjects} subjects x "
          f"{args.clips_per_class} clips per class, MEAN {args.epochs} epochs (--fold-jobs "
          f"{args.fold_jobs}), -j {j} for synth, crop in one process with 2 threads, -j {sj} "
          f"for the "
          f"temporal stages, "
          f"{os.cpu_count()} logical CPUs")
    rows = []
    ticks = cpu_ticks()
    for name, cmd in stages:
        before = loadavg()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        result = subprocess.run([exe, *cmd], capture_output=True, text=True,
                                env=train_env if "train" in cmd else env)
        wall = time.perf_counter() - t0
        after_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after_usage.ru_utime - usage.ru_utime) + (after_usage.ru_stime - usage.ru_stime)
        if result.returncode != 0:
            print(f"{name} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
        rows.append((name, wall, cpu, before, loadavg()))
        print(f"  {name}: {wall:.1f} s, CPU {cpu:.1f} s (load average {before} -> "
              f"{rows[-1][4]})", flush=True)
    total = sum(r[1] for r in rows)
    total_cpu = sum(r[2] for r in rows)
    header = (f"{'stage':22s} {'wall s':>8s} {'share':>7s} {'CPU s':>7s}  load average "
              f"before -> after")
    print(header)
    print("-" * len(header))
    for name, wall, cpu, before, after in sorted(rows, key=lambda r: -r[1]):
        print(f"{name:22s} {wall:8.1f} {100 * wall / total:6.1f}% {cpu:7.1f}  {before} -> "
              f"{after}")
    print(f"{'total':22s} {total:8.1f} {'':7s} {total_cpu:7.1f}")
    print(stolen_share(ticks, cpu_ticks()))


if __name__ == "__main__":
    main()
