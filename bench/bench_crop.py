"""Speed of face alignment and cropping (mexkit.face) on one CPU core.

Builds a 640x480 RGB clip from scikit-image's astronaut photograph (scaled
2x, so the face box is about 180 px wide, as in CASME II / SAMM recordings)
with known small head motion (rotation up to 1.5 degrees about the face,
translation up to 3 px), then times ``align_clip`` with the dlib backend:

* first-frame mode (MEAN's way: one detection, the same crop for every frame);
* first-frame mode with ``refit=True`` (the shape predictor on every frame);
* per-frame mode (detection and landmarks on every frame, smoothed crops).

Model loading (once per process) is timed separately. Also printed: the
mean landmark error of per-frame mode against the known motion.

Usage::

    python bench/bench_crop.py [--frames 100] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from skimage import data

from mexkit.face import align_clip, detect_landmarks, invert_transform, transform_points

FACE_CENTRE = (320.0, 240.0)


def make_clip(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """640x480 RGB frames and the known frame-0-to-frame-t affine maps."""
    photo = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    base = np.ascontiguousarray(photo[16:496, 124:764])      # face near the centre
    t = np.arange(n_frames)
    angle = 1.5 * np.sin(2 * np.pi * t / 50)
    dx = 3.0 * np.sin(2 * np.pi * t / 37)
    dy = 2.0 * np.sin(2 * np.pi * t / 23)
    affines = np.stack([cv2.getRotationMatrix2D(FACE_CENTRE, a, 1.0) for a in angle])
    affines[:, :, 2] += np.stack([dx, dy], axis=1)
    frames = np.stack([cv2.warpAffine(base, A, (640, 480), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT) for A in affines])
    return frames, affines


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    frames, affines = make_clip(args.frames)
    n = len(frames)
    print(f"clip: {n} frames of {frames.shape[2]}x{frames.shape[1]} RGB; one thread "
          f"(cv2.setNumThreads(1), torch.set_num_threads(1))")

    start = time.perf_counter()
    first = detect_landmarks(frames[0])
    load = time.perf_counter() - start
    width = first.box[2] - first.box[0]
    print(f"model load + first detection: {load:.2f} s (once per process); "
          f"face box {width:.0f} px")

    runs = [
        ("first-frame mode", dict(mode="first")),
        ("first-frame mode, refit", dict(mode="first", refit=True)),
        ("per-frame mode", dict(mode="every")),
    ]
    results = {}
    for name, kwargs in runs:
        repeat = args.repeat if kwargs["mode"] == "first" else 1
        seconds = best_time(lambda key=name, kw=kwargs: results.__setitem__(
            key, align_clip(frames, size=128, **kw)), repeat)
        print(f"{name:26s} {seconds:6.3f} s per {n}-frame clip = {n / seconds:7.1f} frames/s")

    # Accuracy of per-frame mode against the known motion: frame 0's
    # landmarks carried by the known affine to every frame.
    every = results["per-frame mode"]
    truth = transform_points(np.broadcast_to(first.landmarks.astype(np.float64), (n, 68, 2)),
                             affines)
    found = transform_points(every.landmarks.astype(np.float64),
                             invert_transform(every.transforms))
    err = np.hypot(*np.moveaxis(found - truth, -1, 0))
    print(f"per-frame landmark error vs known motion: mean {err.mean():.2f} px, "
          f"max {err.max():.2f} px")


if __name__ == "__main__":
    main()
