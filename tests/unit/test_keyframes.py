from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import color, data

from mexkit.errors import ParameterError
from mexkit.temporal.interpolate import interpolate, interpolate_midpoint
from mexkit.temporal.keyframes import (
    KeyFrame,
    adaptive_keyframes,
    adaptive_plan,
    apex_window,
    build_keyframes,
    tas_indices,
    uniform_indices,
)

# ----------------------------------------------------------------------------- Algorithm 1 plans
# Worked by hand from Algorithm 1 (floor division, ordered merge by time):
# (onset, apex, offset) -> indices, exact times, parents (positions in the plan).
HAND_WORKED = {
    # The paper's example clip (CASME II Happiness EP05-02: 25, 91, 121). N = 97,
    # N_sp = floor(67 * 8 / 97) = 5, N_pe = 3. Onset side halves 91 -> 58, 41, 33,
    # 29, 27; offset side 106, 113, 117.
    (25, 91, 121): (
        [25, 27, 29, 33, 41, 58, 91, 106, 113, 117, 121],
        [25, 27.0625, 29.125, 33.25, 41.5, 58, 91, 106, 113.5, 117.25, 121],
        [None, (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), None, (6, 10), (7, 10), (8, 10), None],
    ),
    # N = 43, N_sp = floor(41 * 8 / 43) = 7, N_pe = 1. Halving gives 20, 10, 5, 2 and
    # stops (m = 1 is within a frame of the onset); the second stage fills the gaps
    # 5-10 (m = 7) and 10-20 (m = 15) but not 2-5 (m = 3). The offset side cannot
    # fit a frame between 40 and 42; 2 offset frames pad to 11.
    (0, 40, 42): (
        [0, 2, 5, 7, 10, 15, 20, 40, 42, 42, 42],
        [0, 2.5, 5, 7.5, 10, 15, 20, 40, 42, 42, 42],
        [None, (0, 2), (0, 4), (2, 4), (0, 6), (4, 6), (0, 7), None, None, None, None],
    ),
    # apex == onset: N_sp = floor(8 / 21) = 0, N_pe = 8. The offset side halves
    # 20, 25, 27, 28, then fills 20-25 (m = 22) only; onset and apex are one frame.
    (10, 10, 30): (
        [10, 20, 22, 25, 27, 28, 30, 30, 30, 30, 30],
        [10, 20, 22.5, 25, 27.5, 28.75, 30, 30, 30, 30, 30],
        [None, (0, 6), (1, 3), (1, 6), (3, 6), (4, 6), None, None, None, None, None],
    ),
    # apex == offset: N_sp = 8. Halving 50, 25, 12, 6, 3; the second stage adds 9,
    # 18, 37 (6-12, 12-25, 25-50; 3-6 is too short) and reaches the quota.
    (0, 100, 100): (
        [0, 3, 6, 9, 12, 18, 25, 37, 50, 100, 100],
        [0, 3.125, 6.25, 9.375, 12.5, 18.75, 25, 37.5, 50, 100, 100],
        [None, (0, 2), (0, 4), (2, 4), (0, 6), (4, 6), (0, 8), (6, 8), (0, 9), None, None],
    ),
    # N = 29: N_sp = floor(64 / 29) = 2 but only 5 fits; N_pe = 6 but only 5 fit.
    (2, 9, 30): (
        [2, 5, 9, 19, 21, 24, 27, 28, 30, 30, 30],
        [2, 5.5, 9, 19.5, 22.125, 24.75, 27.375, 28.6875, 30, 30, 30],
        [None, (0, 2), None, (2, 8), (3, 5), (3, 8), (5, 8), (6, 8), None, None, None],
    ),
    # Too short for any intermediate frame.
    (0, 1, 2): ([0, 1, 2] + [2] * 8, [0, 1, 2] + [2] * 8, [None] * 11),
    (5, 5, 5): ([5] * 11, [5] * 11, [None] * 11),
}


@pytest.mark.parametrize("key", list(HAND_WORKED))
def test_adaptive_plan_hand_worked(key):
    indices, times, parents = HAND_WORKED[key]
    plan = adaptive_plan(*key)
    assert len(plan) == 11
    assert [kf.index for kf in plan] == indices
    assert [kf.time for kf in plan] == pytest.approx(times)
    assert [kf.parents for kf in plan] == parents
    for kf in plan:                          # a synthesised frame is its parents' midpoint
        if kf.parents is not None:
            a, b = (plan[p] for p in kf.parents)
            assert kf.time == pytest.approx(0.5 * (a.time + b.time))
            assert abs(kf.time - kf.index) < 2     # floors accumulate along a chain


def test_plan_quota_split_and_apex_position():
    plan = adaptive_plan(25, 91, 121)
    apex_pos = [kf.index for kf in plan].index(91)
    assert apex_pos == 1 + 5                 # N_sp = 5 frames between onset and apex
    assert sum(kf.parents is not None for kf in plan[apex_pos:]) == 3
    gaps = np.diff([kf.index for kf in plan])
    assert gaps[apex_pos - 1] == gaps[:apex_pos].max()   # sparsest next to the apex
    assert gaps[apex_pos] == gaps[apex_pos:].max()


def test_plan_middle_apex_and_length():
    assert adaptive_plan(10, None, 31) == adaptive_plan(10, 20, 31)
    plan = adaptive_plan(0, 60, 100, n_frames=6)   # N_sp = floor(61 * 3 / 101) = 1, N_pe = 2
    assert len(plan) == 6
    assert [kf.index for kf in plan] == [0, 30, 60, 80, 90, 100]


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((5, 3, 10), {}),
        ((0, 11, 10), {}),
        ((-1, 3, 10), {}),
        ((0.5, 3, 10), {}),
        ((0, 3, 10), {"n_frames": 2}),
    ],
)
def test_plan_rejects_bad_key_frames(args, kwargs):
    with pytest.raises(ParameterError):
        adaptive_plan(*args, **kwargs)


def test_tas_indices_follow_plan():
    assert tas_indices(25, 91, 121).tolist() == HAND_WORKED[(25, 91, 121)][0]
    assert tas_indices(10, 10, 30).tolist() == HAND_WORKED[(10, 10, 30)][0]


def test_build_keyframes_executes_recipes_once():
    # Frames whose value is their time and a linear-blend interpolator: every
    # synthesised frame must carry exactly its plan time.
    frames = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None], (40, 3, 2)).copy()
    calls = []

    def blend(a, b):
        calls.append(1)
        return 0.5 * (a + b)

    for key in [(2, 9, 30), (0, 30, 39), (10, 10, 30)]:
        calls.clear()
        plan = adaptive_plan(*key)
        out = build_keyframes(frames, plan, interpolator=blend)
        assert out.shape == (11, 3, 2) and out.dtype == np.float32
        np.testing.assert_allclose(out[:, 0, 0], [kf.time for kf in plan], atol=1e-5)
        assert len(calls) == sum(kf.parents is not None for kf in plan)


def test_build_keyframes_rejects_bad_plans():
    frames = np.zeros((10, 4, 4), np.uint8)
    with pytest.raises(ParameterError):
        build_keyframes(frames, [KeyFrame(index=12, time=12.0)])
    with pytest.raises(ParameterError):
        build_keyframes(frames, [KeyFrame(index=1, time=1.0, parents=(0, 5))])
    cycle = [KeyFrame(1, 1.0, (1, 2)), KeyFrame(2, 2.0, (0, 2)), KeyFrame(3, 3.0)]
    with pytest.raises(ParameterError):
        build_keyframes(frames, cycle, interpolator=lambda a, b: a)


# ----------------------------------------------------------------------------- other samplers
def test_apex_window():
    assert apex_window(100, 300).tolist() == list(range(68, 133))
    near_start = apex_window(10, 300)
    assert near_start.tolist() == list(range(65))
    repeat = apex_window(10, 300, edge="repeat")
    assert repeat[32] == 10 and repeat[:23].tolist() == [0] * 23 and repeat[-1] == 42
    near_end = apex_window(290, 300)
    assert near_end.tolist() == list(range(235, 300))
    short = apex_window(20, 40)
    assert len(short) == 65 and short[32] == 20 and short.min() == 0 and short.max() == 39
    assert len(apex_window(5, 9, length=5)) == 5
    with pytest.raises(ParameterError):
        apex_window(300, 300)
    with pytest.raises(ParameterError):
        apex_window(3, 10, edge="wrap")


def test_uniform_indices():
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_indices(11, 6).tolist() == [0, 2, 4, 6, 8, 10]
    assert uniform_indices(5, 1).tolist() == [0]
    assert uniform_indices(3, 5).tolist() == [0, 0, 1, 2, 2]   # more than n: repeats
    with pytest.raises(ParameterError):
        uniform_indices(0, 3)


# ----------------------------------------------------------------------------- interpolation
def face(size=128):
    img = color.rgb2gray(data.astronaut()) * 255.0
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.0), (size, size)


def translated(img, shape, dx, dy, x0=180, y0=40):
    """Crop of ``img`` whose content is moved by (dx, dy) pixels."""
    m = np.float32([[1, 0, x0 - dx], [0, 1, y0 - dy]])
    return cv2.warpAffine(img, m, shape, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def deformed(img, size, s, amp, x0=180, y0=40):
    """Crop whose points move linearly in s along a smooth bump-shaped field."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def disp(px, py):
        bump = np.exp(-((px - 64) ** 2 + (py - 80) ** 2) / (2 * 18.0 ** 2))
        return amp * bump, -0.6 * amp * bump

    px, py = xx.copy(), yy.copy()
    for _ in range(30):                      # invert x = p + s D(p)
        dx, dy = disp(px, py)
        px, py = xx - s * dx, yy - s * dy
    frame = cv2.remap(img, (px + x0).astype(np.float32), (py + y0).astype(np.float32),
                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return frame, np.hypot(*disp(px, py))


def test_midpoint_of_translation_is_reproduced():
    img, shape = face()
    a, mid, b = (translated(img, shape, 3.0 * s, -2.0 * s) for s in (0.0, 0.5, 1.0))
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(interpolate_midpoint(a, b) - mid)[inner].mean()
    blend = np.abs(0.5 * (a + b) - mid)[inner].mean()
    assert blend > 2.0
    assert err < 0.05 * blend


def test_midpoint_of_deformation_is_reproduced():
    img, _ = face()
    (a, _), (mid, mag), (b, _) = (deformed(img, 128, s, 5.0) for s in (0.0, 0.5, 1.0))
    moving = mag > 1.5
    err = np.abs(interpolate_midpoint(a, b) - mid)[moving].mean()
    blend = np.abs(0.5 * (a + b) - mid)[moving].mean()
    assert err < 0.2 * blend


def test_occlusion_weights_take_covered_and_uncovered_pixels_from_the_right_frame():
    # A 40 x 40 patch moves 2 px right per half-step over a static background:
    # the background strip it is about to cover exists only in the first
    # frame, the strip it uncovers only in the second.
    img = color.rgb2gray(data.astronaut()).astype(np.float32) * 255.0
    background = cv2.GaussianBlur(img[200:296, 200:296], (0, 0), 1.0)
    patch = cv2.GaussianBlur(img[20:60, 150:190], (0, 0), 1.0) * 0.5 + 100.0

    def scene(x):
        frame = background.copy()
        frame[28:68, x:x + 40] = patch
        return frame

    a, mid, b = scene(26), scene(28), scene(30)
    strips = np.zeros(a.shape, bool)
    strips[28:68, 26:28] = True                # uncovered at mid: only in b
    strips[28:68, 68:70] = True                # about to be covered: only in a
    aware = np.abs(interpolate_midpoint(a, b) - mid)
    plain = np.abs(interpolate_midpoint(a, b, occlusion=False) - mid)
    assert aware[strips].mean() < 0.6 * plain[strips].mean()
    assert aware[8:-8, 8:-8].mean() < plain[8:-8, 8:-8].mean()


def test_interpolate_other_times_rgb_and_dtype():
    rgb = cv2.GaussianBlur(data.astronaut()[40:136, 180:276].astype(np.float32), (0, 0), 1.0)

    def move(s):
        m = np.float32([[1, 0, -2.0 * s], [0, 1, 1.0 * s]])
        return cv2.warpAffine(rgb, m, (96, 96), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)

    a, b, quarter = move(0.0), move(1.0), move(0.25)
    out = interpolate(a, b, 0.25)
    inner = (slice(8, -8), slice(8, -8))
    assert out.shape == a.shape and out.dtype == np.float32
    assert np.abs(out - quarter)[inner].mean() < 0.1 * np.abs(0.75 * a + 0.25 * b - quarter)[
        inner].mean()
    np.testing.assert_allclose(interpolate(a, b, 0.0), a, atol=1e-3)
    u8 = interpolate_midpoint(a.astype(np.uint8), b.astype(np.uint8))
    assert u8.dtype == np.uint8 and u8.shape == a.shape


def test_interpolate_rejects_bad_input():
    a = np.zeros((8, 8), np.float32)
    with pytest.raises(ParameterError):
        interpolate(a, np.zeros((8, 9), np.float32))
    with pytest.raises(ParameterError):
        interpolate(a, a, 1.5)
    with pytest.raises(ParameterError):
        interpolate(np.zeros(8), np.zeros(8))


def test_adaptive_keyframes_with_flow_interpolator_beat_tas():
    # A clip translating by 0.3 px per frame: synthesised key-frames must match
    # the true frame at their exact time better than TAS's original frames.
    img, _ = face()
    clip = np.stack([translated(img, (64, 64), 0.3 * t, 0.0, x0=220, y0=80)
                     for t in range(32)])
    plan = adaptive_plan(2, 9, 30)
    keys = adaptive_keyframes(clip, 2, 9, 30)
    tas = clip[tas_indices(2, 9, 30)]
    inner = (slice(6, -6), slice(6, -6))
    synth_err, tas_err = [], []
    for kf, k, t in zip(plan, keys, tas, strict=True):
        if kf.parents is None or kf.time == kf.index:
            continue
        truth = translated(img, (64, 64), 0.3 * kf.time, 0.0, x0=220, y0=80)
        synth_err.append(np.abs(k - truth)[inner].mean())
        tas_err.append(np.abs(t - truth)[inner].mean())
    assert len(synth_err) == 6
    assert np.mean(synth_err) < 0.3 * np.mean(tas_err)
