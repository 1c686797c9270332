"""`--mode every` of a long video from detections made in pieces (issue 28, item 3):
:func:`align_detected` reads and warps the video a chunk at a time and gives what
:func:`align_clip` gives on the whole clip held in memory."""
from __future__ import annotations

import numpy as np
import pytest

from mexkit.errors import MediaError, NoFaceError
from mexkit.face.align import align_detected, apply_transform, stable_transforms
from mexkit.face.landmarks import DetectionBatch


def base_landmarks() -> np.ndarray:
    """The project's bundled 68-point face, scaled to a 150 px face."""
    import json
    from pathlib import Path

    from mexkit import data

    path = Path(data.__file__).with_name("base_face.json")
    pts = np.asarray(json.loads(path.read_text())["landmarks"], np.float64)
    return (pts - pts.mean(axis=0)) / np.ptp(pts, axis=0).max() * 150 + 200


def _detections(T: int, missing=()) -> DetectionBatch:
    rng = np.random.default_rng(3)
    L = (base_landmarks() + rng.normal(0, 0.5, (T, 68, 2))).astype(np.float32)
    found = np.ones(T, bool)
    found[list(missing)] = False
    L[~found] = np.nan
    scores = np.where(found, 1.5, np.nan).astype(np.float32)
    return DetectionBatch(L, np.full((T, 4), np.nan, np.float32), scores, found)


@pytest.mark.parametrize("grey", [True, False])
def test_chunked_reading_gives_the_whole_clips_crops(grey):
    T = 11
    frames = np.random.default_rng(0).integers(0, 256, (T, 400, 400, 3), dtype=np.uint8)
    batch = _detections(T, missing=(4, 5))      # a gap across the chunks 3-6 and 6-9
    reads = []

    def read(a, b):
        reads.append((a, b))
        return frames[a:b]

    res = align_detected(read, T, batch, grey=grey, chunk=3)
    assert reads == [(0, 3), (3, 6), (6, 9), (9, 11)]
    # independently: the gap filled by linear interpolation, the whole clip warped at once
    filled = batch.landmarks.astype(np.float64)
    for t, w in ((4, 1 / 3), (5, 2 / 3)):
        filled[t] = (1 - w) * filled[3] + w * filled[6]
    M = stable_transforms(filled)
    np.testing.assert_array_equal(res.transforms, M)
    crops = apply_transform(frames, M)
    if grey:
        import cv2

        crops = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops])
    np.testing.assert_array_equal(res.frames, crops)
    np.testing.assert_array_equal(res.interpolated, ~batch.found)


def test_a_gap_longer_than_max_gap_and_a_short_read_are_refused():
    T = 8
    frames = np.zeros((T, 300, 300), np.uint8)
    with pytest.raises(NoFaceError, match="frame"):
        align_detected(lambda a, b: frames[a:b], T, _detections(T, missing=range(1, 8)),
                       max_gap=2)
    with pytest.raises(MediaError, match="second reading"):
        align_detected(lambda a, b: frames[a:b - 1], T, _detections(T), chunk=4)
