"""Compute the base face record shipped as ``mexkit/data/base_face.json``.

Run once by a maintainer (``python tools/make_base_face.py``, from the repository
root); it is not part of the installed package. The
generator only reads the JSON, so dlib is not needed at generation time.

The face is ``skimage.data.astronaut()`` (Eileen Collins, public domain, bundled
with scikit-image). dlib's HOG frontal face detector finds it, and the
68-point shape predictor from ``face_recognition_models`` places the iBUG-68
landmarks. dlib returns integer pixel positions; to get sub-pixel positions the
predictor is also run on the image enlarged 2, 3 and 4 times (bicubic, with the
detection box scaled alike) and the four results, mapped back to the original
pixel grid (pixel centres at integer coordinates), are averaged.

References
----------
.. [1] D. E. King, "Dlib-ml: A machine learning toolkit", JMLR 10, 1755-1758, 2009.
.. [2] V. Kazemi, J. Sullivan, "One millisecond face alignment with an ensemble
   of regression trees", CVPR 2014.
.. [3] C. Sagonas et al., "300 Faces in-the-wild challenge", ICCV Workshops 2013
   (the iBUG 68-point markup).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

UPSAMPLE_FACTORS = (1, 2, 3, 4)


def predictor_path() -> str:
    """Path of dlib's 68-point model inside the installed face_recognition_models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed")
    root = spec.submodule_search_locations[0]
    return str(Path(root) / "models" / "shape_predictor_68_face_landmarks.dat")


def compute_record() -> dict:
    """Detect the astronaut's face and return the JSON-ready base face record."""
    import cv2
    import dlib
    import skimage
    from skimage import data

    image = data.astronaut()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(predictor_path())
    rects, scores, _ = detector.run(image, 1, 0.0)
    if not rects:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    best = int(np.argmax(scores))
    rect = rects[best]
    runs = []
    for f in UPSAMPLE_FACTORS:
        big = image if f == 1 else cv2.resize(image, None, fx=f, fy=f,
                                              interpolation=cv2.INTER_CUBIC)

        def up(v: int, f: int = f) -> int:
            return int(round((v + 0.5) * f - 0.5))

        r = dlib.rectangle(up(rect.left()), up(rect.top()), up(rect.right()), up(rect.bottom()))
        shape = predictor(big, r)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        runs.append((pts + 0.5) / f - 0.5)
    runs_arr = np.stack(runs)
    mean = runs_arr.mean(axis=0)
    spread = float(np.sqrt(((runs_arr - mean) ** 2).sum(-1)).mean())
    return {
        "source": "skimage.data.astronaut()",
        "image_shape": list(image.shape),
        "image_sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest(),
        "detector": "dlib.get_frontal_face_detector, upsample 1",
        "detector_rect_ltrb": [rect.left(), rect.top(), rect.right(), rect.bottom()],
        "detector_score": float(scores[best]),
        "predictor": "shape_predictor_68_face_landmarks.dat (face_recognition_models)",
        "upsample_factors": list(UPSAMPLE_FACTORS),
        "mean_spread_px": round(spread, 3),
        "landmark_convention": "iBUG-68, 0-based order, (x, y) in pixels of the "
                               "512x512 image, pixel centres at integer coordinates",
        "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in mean],
        "dlib_version": dlib.__version__,
        "skimage_version": skimage.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    """Write the record to the path given (default: mexkit/data/base_face.json)."""
    argv = sys.argv[1:] if argv is None else argv
    default = Path(__file__).resolve().parents[1] / "mexkit" / "data" / "base_face.json"
    out = Path(argv[0]) if argv else default
    record = compute_record()
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
