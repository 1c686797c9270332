"""Time `mexkit spot-eval` on N true and N predicted intervals of one video, start-up included.

Run from the repository root:

    python bench/bench_spot_eval.py [--n 30000] [--repeats 3] [--json]

The truth is N intervals of one long video (onsets spread over 40 N frames,
lengths 5-60 frames, micro- and macro-expressions, three emotions); the
predictions are N intervals too: about 70% are a truth shifted and stretched by
a few frames (most of them true positives), the rest are placed at random, and
every one has a random confidence.  Each run is a fresh process
(`python -m mexkit spot-eval --truth T --pred P`), so the figure includes
Python's and mexkit's start-up, reading both files, the matching at IoU 0.5,
AP over ten IoU thresholds, the per-type rows and the table.  The same command
on files of one interval each is timed too (start-up and imports).  spot-eval
runs in one thread.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_files(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    emotions = np.array(["negative", "positive", "surprise"])
    on = np.sort(rng.choice(40 * n, n, replace=False))
    length = rng.integers(5, 61, n)
    kind = np.where(length > 30, "macro", "micro")
    emo = emotions[rng.integers(0, 3, n)]
    truth = ["subject,video,onset,offset,type,emotion"]
    truth += [f"s01,long,{a},{a + b - 1},{k},{e}"
              for a, b, k, e in zip(on.tolist(), length.tolist(), kind, emo, strict=True)]
    pred = ["subject,video,onset,offset,type,emotion,confidence"]
    copy = rng.random(n) < 0.7
    for i in range(n):
        if copy[i]:
            a = int(on[i] + rng.integers(-4, 5))
            b = max(1, int(length[i] + rng.integers(-6, 7)))
            k = kind[i]
        else:
            a = int(rng.integers(0, 40 * n))
            b = int(rng.integers(5, 61))
            k = "macro" if b > 30 else "micro"
        e = emo[i] if rng.random() < 0.6 else emotions[rng.integers(0, 3)]
        pred.append(f"s01,long,{a},{a + b - 1},{k},{e},{rng.random():.6f}")
    t, p = folder / "truth.csv", folder / "pred.csv"
    t.write_text("\n".join(truth) + "\n")
    p.write_text("\n".join(pred) + "\n")
    return t, p


def run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30000, help="intervals in each file")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="time `--json` output instead")
    args = ap.parse_args()
    mexkit = [sys.executable, "-m", "mexkit"]
    with tempfile.TemporaryDirectory(prefix="bench-spot-eval-") as tmp:
        truth, pred = write_files(Path(tmp), args.n)
        (Path(tmp) / "one").mkdir()
        one_t, one_p = write_files(Path(tmp) / "one", 1)
        cmd = mexkit + ["spot-eval", "--truth", str(truth), "--pred", str(pred)]
        if args.json:
            cmd.append("--json")
        load0 = os.getloadavg()
        startup = min(run(mexkit + ["spot-eval", "--truth", str(one_t), "--pred", str(one_p)]
                          )[0] for _ in range(args.repeats))
        times, out = [], ""
        for _ in range(args.repeats):
            seconds, out = run(cmd)
            times.append(seconds)
        load1 = os.getloadavg()
    print(f"mexkit spot-eval, {args.n} x {args.n} intervals of one video "
          f"({'--json' if args.json else 'table'}), {args.repeats} runs, each a fresh process:")
    print(f"  best {min(times):.2f} s, median {statistics.median(times):.2f} s "
          f"(the same command on 1 x 1 intervals: {startup:.2f} s)")
    print(f"  load average {load0[0]:.2f} before, {load1[0]:.2f} after; "
          f"{os.cpu_count()} CPUs, spot-eval runs in 1 thread; "
          f"Python {platform.python_version()} on {platform.machine()}")
    if not args.json:
        print("  " + "\n  ".join(out.splitlines()[:5]))


if __name__ == "__main__":
    main()
