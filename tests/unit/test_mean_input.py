"""MEAN's input as the authors build it: strain, normalisation, boxes, layout; and (with
MEXKIT_MEAN_REPO and MEXKIT_PYFEAT_REPO) equality with their own feature code on real frames."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.models.mean.authors_input import (
    authors_boxes,
    authors_mean_input,
    authors_regions,
    backward_strain,
    minmax_unit,
    polar_round_trip,
)


def test_backward_strain_by_hand():
    u = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]], np.float32)
    v = np.array([[1.0, 1.0, 0.0], [0.0, 4.0, 1.0]], np.float32)
    # u_x = u[i,j]-u[i,j-1] (0 in column 0), v_y = v[i,j]-v[i-1,j] (0 in row 0), likewise
    ux = np.array([[0, 1, 2], [0, 0, 0]], np.float32)
    vy = np.array([[0, 0, 0], [-1, 3, 1]], np.float32)
    uy = np.array([[0, 0, 0], [2, 1, -1]], np.float32)
    vx = np.array([[0, 0, -1], [0, 4, -3]], np.float32)
    expected = np.sqrt(ux ** 2 + vy ** 2 + 0.5 * (uy + vx) ** 2)
    np.testing.assert_allclose(backward_strain(u, v), expected, rtol=1e-6)
    # a pure horizontal shear u = y: strain sqrt(1/2) away from the first row
    yy = np.tile(np.arange(5, dtype=np.float32)[:, None], (1, 4))
    s = backward_strain(yy, np.zeros_like(yy))
    np.testing.assert_allclose(s[1:], np.sqrt(0.5), rtol=1e-6)
    assert (s[0] == 0).all()


def test_minmax_to_unit_and_constant_map():
    a = np.array([[2.0, 4.0], [6.0, 3.0]])
    np.testing.assert_allclose(minmax_unit(a), (a - 2) / 4)
    assert (minmax_unit(np.full((3, 3), 7.0)) == 0).all()


def test_polar_round_trip_keeps_the_flow_up_to_the_angle_approximation(rng):
    f = rng.normal(0, 2, (2, 16, 16)).astype(np.float32)
    u, v = polar_round_trip(f)
    mag = np.hypot(f[0], f[1])
    # OpenCV's angle is accurate to about 0.3 degrees
    assert np.all(np.hypot(u - f[0], v - f[1]) <= mag * np.deg2rad(0.35) + 1e-5)


def _landmarks():
    L = np.zeros((68, 2))
    L[:, 0], L[:, 1] = 64, 64
    L[17] = (20, 40)
    L[26] = (110, 40)
    L[19] = (35, 30)
    L[24] = (90, 26)
    L[41] = (40, 55)
    L[46] = (85, 58)
    L[60] = (45, 96)
    L[64] = (83, 96)
    L[50] = (60, 88)
    L[57] = (64, 120)
    return L


def test_boxes_by_hand_with_clipping():
    b = authors_boxes(_landmarks(), shape=(128, 128))
    # eyebrows: x 20-12 .. 110+12; y min(30, 26)-12 .. max(55, 58)+12
    assert b["eyes"] == (8, 14, 122, 70)
    # mouth: x 45-12 .. 83+12; y 88-12 .. min(120+12, 128)
    assert b["mouth"] == (33, 76, 95, 128)
    L = _landmarks()
    L[17] = (5, 40)
    assert authors_boxes(L)["eyes"][0] == 0
    L[26] = (-30, 40)
    with pytest.raises(ParameterError, match="empty"):
        authors_boxes(L)


def test_regions_put_the_eyebrow_band_on_top_at_42_by_21():
    maps = np.zeros((128, 128, 3))
    maps[:70, :, 0] = 1.0          # channel 0 is 1 above row 70 (the band), 0 below
    out = authors_regions(maps, authors_boxes(_landmarks()))
    assert out.shape == (42, 42, 3)
    assert (out[:21, :, 0] == 1).all() and (out[21:, :, 0] == 0).all()


def test_input_is_normalised_per_channel(rng):
    flow = rng.normal(0, 1, (2, 2, 128, 128)).astype(np.float32)
    x = authors_mean_input(flow, _landmarks())
    assert x.shape == (2, 3, 42, 42) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1


def _real_frames():
    repo = os.environ.get("MEXKIT_MEAN_REPO")
    pyfeat = os.environ.get("MEXKIT_PYFEAT_REPO")
    if not repo or not pyfeat:
        pytest.skip("MEXKIT_MEAN_REPO and MEXKIT_PYFEAT_REPO are not both set")
    pytest.importorskip("pandas", reason="the authors' feature code needs pandas")
    from mexkit.face.align import align_clip
    from mexkit.io.video import open_clip

    video = Path(pyfeat, "feat", "tests", "data", "single_face.mp4")
    with open_clip(video) as clip:
        frames = clip.read_range(0, 24)
    return repo, align_clip(frames, mode="first", size=128, grey=True).frames


def test_equals_the_authors_feature_code_on_real_frames():
    repo, frames = _real_frames()
    import dlib

    from mexkit.face.landmarks import dlib_predictor_path
    from mexkit.models.mean.authors_input import authors_landmarks, opencv_tvl1_uint8

    sys.path.insert(0, repo)
    try:
        import feature_extraction as authors
    finally:
        sys.path.remove(repo)
    shape = dlib.shape_predictor(str(dlib_predictor_path()))(frames[0],
                                                              dlib.rectangle(0, 0, 128, 128))
    lm = authors_landmarks(frames[0])
    for a, b in ((0, 3), (0, 12), (7, 10), (15, 23)):
        theirs = authors.preProcess(frames[a], frames[b], shape)
        ours = authors_mean_input(opencv_tvl1_uint8(frames[a], frames[b]), lm)
        np.testing.assert_array_equal(ours.transpose(1, 2, 0), theirs.astype(np.float32))
