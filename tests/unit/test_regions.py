"""MEAN's regions, SOFTNet's eye mask and head-motion removal on constructed landmarks.

Every expected box below is worked out by hand from the rule in the MEAN
paper (12 px margins, inclusive, clamped) and the landmark coordinates set in
``constructed_landmarks``.
"""
from __future__ import annotations

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.face import eye_mask, mean_region_boxes, mean_regions, remove_head_motion


def constructed_landmarks() -> np.ndarray:
    L = np.full((68, 2), 64.0)
    L[17] = (30.4, 40.0)     # band x0: round(30.4) - 12 = 18
    L[26] = (97.6, 41.0)     # band x1: round(97.6) + 12 = 110 (inclusive)
    L[19] = (40.0, 35.2)     # min(35, 34) - 12 = 22
    L[24] = (88.0, 33.7)
    L[36:42] = [(38, 48), (42, 45), (48, 45), (52, 48), (48, 51), (42, 52.4)]
    L[42:48] = [(76, 48), (80, 45), (86, 45), (90, 48), (86, 53.6), (80, 51)]
    #            band y1: max(52, 54) + 12 = 66 (inclusive)
    L[28] = (64.0, 60.0)     # nose
    L[50] = (60.0, 84.6)     # mouth y0: 85 - 12 = 73
    L[57] = (64.0, 101.2)    # mouth y1: 101 + 12 = 113 (inclusive)
    L[60] = (50.2, 90.0)     # mouth x0: 50 - 12 = 38
    L[64] = (78.3, 91.0)     # mouth x1: 78 + 12 = 90 (inclusive)
    return L


def ramps(height: int = 128, width: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([x, y])


def resampled(start: int, length: int, n: int, interpolation: str) -> np.ndarray:
    """What resizing the pixels start, start+1, ..., start+length-1 to n samples gives.

    Bilinear: the value at the position each output pixel centre maps to.
    Area: the mean of the pixels (constant on each pixel) under each output
    pixel's footprint, integrated exactly.
    """
    step = length / n
    if interpolation == "linear":
        return start + (np.arange(n) + 0.5) * step - 0.5

    def integral(x):                     # of the step function start + floor(t), 0..x
        k = np.floor(x)
        return start * x + k * (k - 1) / 2 + (x - k) * k

    edges = np.arange(n + 1) * step
    return (integral(edges[1:]) - integral(edges[:-1])) / step


def test_boxes_follow_the_mean_rule():
    boxes = mean_region_boxes(constructed_landmarks())
    # band: x 18..110, y 22..66 inclusive -> 93 x 45 pixels, cut after 47 columns
    assert boxes["eyes"] == (18, 22, 111, 67)
    assert boxes["left_eye"] == (18, 22, 65, 67)
    assert boxes["right_eye"] == (65, 22, 111, 67)
    assert boxes["mouth"] == (38, 73, 91, 114)


def test_boxes_are_clamped_to_the_map():
    L = constructed_landmarks() + (-20.0, 20.0)      # p17.x 10.4, p57.y 121.2
    boxes = mean_region_boxes(L)
    assert boxes["eyes"] == (0, 42, 91, 87)           # x0 = 10 - 12 -> 0
    assert boxes["mouth"] == (18, 93, 71, 128)        # y1 = 121 + 12 -> 127 (last row)
    narrow = mean_region_boxes(constructed_landmarks(), shape=(100, 100))
    assert narrow["eyes"][2] == 100 and narrow["mouth"][3] == 100


@pytest.mark.parametrize("interpolation", ["linear", "area"])
def test_regions_assemble_into_42x42(interpolation):
    out = mean_regions(ramps(), constructed_landmarks(), interpolation=interpolation)
    assert out.shape == (2, 42, 42) and out.dtype == np.float32
    u, v = out
    def row(start, length, n):
        return np.tile(resampled(start, length, n, interpolation), (21, 1))

    def col(start, length):
        return np.tile(resampled(start, length, 21, interpolation)[:, None], (1, 42))

    # x: left eye part = band columns 18..64, right = 65..110, mouth = 38..90
    np.testing.assert_allclose(u[:21, :21], row(18, 47, 21), atol=1e-3)
    np.testing.assert_allclose(u[:21, 21:], row(65, 46, 21), atol=1e-3)
    np.testing.assert_allclose(u[21:, :], row(38, 53, 42), atol=1e-3)
    # y: band rows 22..66, mouth rows 73..113
    np.testing.assert_allclose(v[:21, :], col(22, 45), atol=1e-3)
    np.testing.assert_allclose(v[21:, :], col(73, 41), atol=1e-3)


def test_regions_of_a_stack_are_cut_channel_by_channel():
    base = mean_regions(ramps(), constructed_landmarks())
    scale = np.arange(1, 4, dtype=np.float32)[:, None, None, None]
    stack = (scale * ramps()).astype(np.float64)          # (3, 2, 128, 128): P flows
    out = mean_regions(stack, constructed_landmarks())
    assert out.shape == (3, 2, 42, 42)
    np.testing.assert_allclose(out, scale * base, rtol=1e-5)
    frames = np.repeat(ramps()[:1].astype(np.uint8), 4, axis=0)   # (T, H, W) uint8
    assert mean_regions(frames, constructed_landmarks()).shape == (4, 42, 42)


def test_eye_mask_covers_the_enlarged_eye_polygons():
    mask = eye_mask(constructed_landmarks(), margin=15)
    # left eye: p36 (38, 48) -> (23, 48); p37 (42, 45) -> (42, 30); p39 (52, 48) -> (67, 48)
    for x, y in [(45, 48), (23, 48), (42, 30), (67, 48), (42, 67)]:
        assert mask[y, x], (x, y)
    for x, y in [(21, 48), (42, 28), (45, 70)]:
        assert not mask[y, x], (x, y)
    # right eye: p45 (90, 48) -> (105, 48); p46 (86, 54) -> (86, 69)
    for x, y in [(83, 48), (105, 48), (86, 69)]:
        assert mask[y, x], (x, y)
    assert not mask[48, 107] and not mask[10, 64] and not mask[100, 64]


def test_masked_regions_equal_regions_of_the_masked_maps():
    L = constructed_landmarks()
    maps = ramps() + 1.0
    masked = mean_regions(maps, L, mask_eyes=True)
    expected = mean_regions(maps * ~eye_mask(L), L)
    np.testing.assert_array_equal(masked, expected)
    assert (masked[:, :21] < mean_regions(maps, L)[:, :21]).any()   # the eyes went dark
    np.testing.assert_array_equal(masked[:, 21:], mean_regions(maps, L)[:, 21:])


def test_head_motion_removal_zeroes_a_uniform_flow():
    flow = np.empty((2, 2, 128, 128), dtype=np.float32)
    flow[0, 0], flow[0, 1] = 3.0, -2.0
    flow[1] = 1.5
    # The 11x11 box at p28 = (64, 60) spans x 59..69, y 55..65.
    flow[1, 0, 60, 69] += 121.0          # inside (last column): box mean of u += 1
    flow[1, 0, 60, 70] += 50.0           # just outside: no effect on the mean
    out = remove_head_motion(flow, constructed_landmarks(), box=11)
    np.testing.assert_array_equal(out[0], 0.0)
    assert out[1, 0, 0, 0] == pytest.approx(1.5 - 2.5)
    assert out[1, 0, 60, 69] == pytest.approx(122.5 - 2.5)
    assert out[1, 0, 60, 70] == pytest.approx(51.5 - 2.5)
    np.testing.assert_array_equal(out[1, 1], 0.0)
    assert out.dtype == np.float32 and flow[0, 0, 0, 0] == 3.0      # input untouched


def test_head_motion_box_is_clamped_at_the_border():
    L = constructed_landmarks()
    L[28] = (1.0, 2.0)                   # box x -4..6 -> 0..6, y -3..7 -> 0..7
    flow = np.zeros((2, 20, 20), dtype=np.float32)
    flow[0, :8, :7] = 4.0                # exactly the clamped box
    out = remove_head_motion(flow, L)
    assert out[0, 0, 0] == pytest.approx(0.0) and out[0, 15, 15] == pytest.approx(-4.0)


def test_missing_or_bad_landmarks_are_refused():
    L = np.full((68, 2), np.nan)
    with pytest.raises(ParameterError, match="no landmarks"):
        mean_regions(ramps(), L)
    with pytest.raises(ParameterError, match="no landmarks"):
        remove_head_motion(np.zeros((2, 128, 128)), L)
    with pytest.raises(ParameterError, match="68, 2"):
        mean_regions(ramps(), np.zeros((5, 2)))
    with pytest.raises(ParameterError, match="odd"):
        remove_head_motion(np.zeros((2, 128, 128)), constructed_landmarks(), box=10)
    with pytest.raises(ParameterError, match="'interpolation'"):
        mean_regions(ramps(), constructed_landmarks(), interpolation="cubic")
