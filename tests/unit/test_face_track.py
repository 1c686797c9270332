"""`crop --mode first` on clips where one detection on frame 0 is not enough (issue 20,
point 2): a face that appears late is found and recorded, a face that leaves is
reported, and landmarks that drift on a moving head are measured and warned about."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from mexkit.errors import NoFaceError
from mexkit.face.track import track_first_face
from mexkit.synth.face import make_subject


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return make_subject(0).image  # the bundled real face, 240 x 240 RGB


def shifted(img: np.ndarray, dx: float) -> np.ndarray:
    M = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(img, M, img.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def track(frames, **kw):
    return track_first_face(lambda t: frames[t], len(frames), upsample=0, every=10, **kw)


def test_a_still_face_has_no_problems(face):
    det, tr = track([face] * 30)
    assert tr.first_face == 0 and tr.problems() == []
    assert list(tr.checked) == [10, 20, 29] and tr.max_drift < 0.01


def test_a_face_that_comes_late_and_leaves_is_found_and_reported(face):
    blank = np.full_like(face, 120)
    frames = [blank] * 13 + [face] * 20 + [blank] * 10
    det, tr = track(frames)
    assert tr.first_face == 13  # between probes 10 and 20, found by bisection
    assert list(tr.lost) == [33, 42]
    problems = " ".join(tr.problems())
    assert "no face before frame 13" in problems and "lost at frame(s) 33, 42" in problems
    assert tr.as_attrs()["first_face_frame"] == 13 and tr.as_attrs()["face_lost_checks"] == 2


def test_a_moving_head_drifts_past_the_limit(face):
    frames = [shifted(face, 30 * t / 29) for t in range(30)]  # 30 px to the right
    _, tr = track(frames)
    assert tr.drift[0] < tr.drift[-1] and tr.max_drift > 0.3
    assert any("--mode every" in p for p in tr.problems())
    _, lenient = track(frames, limit=1.0)
    assert lenient.problems() == []


def test_no_face_at_all_names_the_frames_tried(face):
    with pytest.raises(NoFaceError, match=r"clip x.*0, 10-11"):
        track([np.full_like(face, 90)] * 12, where="clip x")


def test_crop_records_the_first_face_and_warns_naming_the_sample(face, tmp_path, caplog):
    from mexkit.io.store import open_store
    from mexkit.pipeline.crop import clips_from_paths, run_crop

    folder = tmp_path / "s01" / "late"
    folder.mkdir(parents=True)
    frames = [np.full_like(face, 120)] * 5 + [face] * 20
    for t, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"img{t + 1}.png"), f[..., ::-1])
    out = tmp_path / "late.crop.h5"
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        run_crop(clips_from_paths([folder], fps=30.0), out, mode="first", upsample=0,
                 progress=False)
    warned = [r.getMessage() for r in caplog.records if "no face before" in r.getMessage()]
    assert len(warned) == 1 and "s01/late" in warned[0]
    with open_store(out) as s:
        sample = s["s01/late"]
        assert sample.attrs["first_face_frame"] == 5
        assert sample.read("frames").shape[0] == 25
