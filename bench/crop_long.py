"""`mexkit crop --mode every` of one long video: time, CPU and peak memory.

Run from the repository root:

    python bench/crop_long.py [--frames 1000] [--width 640] [--height 480] [--mode every]

Writes a synthetic face video (the project's synthetic face, a slow head drift and
sensor noise, MPEG-4 through OpenCV) into a temporary folder, crops it once through
the CLI (`python -m mexkit crop VIDEO --mode MODE`, start-up included) and prints the
wall seconds, the CPU seconds (user + sys) and the peak resident memory of the
command, with the load average.  A long video is cropped in staged pieces of 256
frames (issue 28); before, `--mode every` read the whole video into memory in colour
(frames x height x width x 3 bytes) before detecting a face.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_video(path: Path, frames: int, width: int, height: int) -> Path:
    import cv2

    from mexkit.synth.face import make_subject

    face = make_subject(11, size=(height, width)).image
    bgr = cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
    rng = np.random.default_rng(0)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    if not out.isOpened():
        raise SystemExit("OpenCV cannot write an MPEG-4 video here")
    for t in range(frames):
        M = np.float64([[1, 0, 2.0 * np.sin(t / 40)], [0, 1, 1.5 * np.cos(t / 55)]])
        f = cv2.warpAffine(bgr, M, (width, height), borderMode=cv2.BORDER_REFLECT)
        out.write(np.clip(f + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8))
    out.release()
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--mode", default="every", choices=("every", "first"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mexkit-crop-long-") as tmp:
        video = write_video(Path(tmp) / "long.mp4", args.frames, args.width, args.height)
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "mexkit", "-q", "crop", str(video),
                            "--mode", args.mode, "-o", str(Path(tmp) / "long.crop.h5")],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise SystemExit(f"mexkit crop failed ({r.returncode}):\n{r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    colour = args.frames * args.width * args.height * 3 / 2**20
    print(f"mexkit crop --mode {args.mode} of a {args.frames}-frame {args.width}x"
          f"{args.height} video (one process, -j 1): wall {wall:.1f} s, CPU {cpu:.1f} s "
          f"(user + sys), peak memory {after.ru_maxrss / 1024:.0f} MiB; the video in colour "
          f"is {colour:.0f} MiB; load average {load:.1f} at the start on "
          f"{os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
