"""ATNet's direction-magnitude feature and HOOF on constructed flows."""
from __future__ import annotations

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.motion import direction_magnitude, hoof


def _uniform(u, v, shape=(16, 16)):
    return np.stack([np.full(shape, u, np.float32), np.full(shape, v, np.float32)])


def test_uniform_flow_gives_its_magnitude_and_direction_in_every_block():
    feature = direction_magnitude(_uniform(3.0, 4.0, (128, 128)))
    assert feature.shape == (128,) and feature.dtype == np.float32
    np.testing.assert_allclose(feature[0::2], 5.0, rtol=1e-6)
    np.testing.assert_allclose(feature[1::2], np.arctan2(4.0, 3.0), rtol=1e-6)


@pytest.mark.parametrize("u, v, angle", [
    (1.0, 0.0, 0.0),              # right
    (0.0, 1.0, np.pi / 2),        # down (image rows grow downwards)
    (-1.0, 0.0, np.pi),           # left
    (0.0, -2.0, 3 * np.pi / 2),   # up: directions are in [0, 2 pi)
])
def test_directions_are_in_zero_to_two_pi(u, v, angle):
    feature = direction_magnitude(_uniform(u, v), blocks=2)
    np.testing.assert_allclose(feature[1::2], angle, atol=1e-6)
    np.testing.assert_allclose(feature[0::2], np.hypot(u, v), rtol=1e-6)


def test_blocks_are_row_major_with_magnitude_then_direction():
    flow = np.zeros((2, 2, 64, 64), np.float32)
    flow[0, 0, 0:8, 56:64] = 2.0      # top-right block (row 0, col 7) moves right
    flow[1, 1, 56:64, 0:8] = -1.0     # bottom-left block (row 7, col 0) moves up
    feature = direction_magnitude(flow)
    assert feature.shape == (2, 128)
    expected0 = np.zeros(128, np.float32)
    expected0[2 * 7] = 2.0            # block 7: magnitude 2, direction 0
    np.testing.assert_allclose(feature[0], expected0, atol=1e-6)
    expected1 = np.zeros(128, np.float32)
    expected1[2 * 56] = 1.0
    expected1[2 * 56 + 1] = 3 * np.pi / 2
    np.testing.assert_allclose(feature[1], expected1, atol=1e-6)


def test_block_means_by_hand():
    # 4 x 4 field in 2 x 2 blocks; the top-left block holds magnitudes 1, 1, 3, 3
    flow = np.zeros((2, 4, 4), np.float32)
    flow[0, 0, 0:2] = 1.0
    flow[0, 1, 0:2] = 3.0
    feature = direction_magnitude(flow, blocks=2)
    assert feature[0] == pytest.approx(2.0)
    assert feature[1] == pytest.approx(0.0)
    np.testing.assert_allclose(feature[2:], 0.0)


def test_hoof_is_magnitude_weighted_and_normalised():
    flow = np.zeros((2, 1, 4), np.float32)
    flow[0, 0, :2] = 1.0   # two vectors of length 1 to the right
    flow[1, 0, 2:] = 3.0   # two vectors of length 3 downwards
    hist = hoof(flow, bins=4, symmetric=False)
    # plain bins of [0, 2 pi): right -> bin 0, down (pi / 2) -> bin 1
    np.testing.assert_allclose(hist, [0.25, 0.75, 0.0, 0.0])
    raw = hoof(flow, bins=4, symmetric=False, normalize=False)
    np.testing.assert_allclose(raw, [2.0, 6.0, 0.0, 0.0])


def test_hoof_symmetric_bins_ignore_left_right():
    right_down = hoof(_uniform(1.0, 1.0), bins=8)
    left_down = hoof(_uniform(-1.0, 1.0), bins=8)
    np.testing.assert_array_equal(right_down, left_down)
    # atan2(1, 1) = pi / 4 lies in [-pi/2 + 6 pi / 8, -pi/2 + 7 pi / 8): bin 6
    np.testing.assert_allclose(right_down, np.eye(8)[6])
    # straight up (-pi/2) is bin 0, straight down (pi/2) the last bin
    np.testing.assert_allclose(hoof(_uniform(0.0, -1.0), bins=8), np.eye(8)[0])
    np.testing.assert_allclose(hoof(_uniform(0.0, 1.0), bins=8), np.eye(8)[7])
    # the plain binning does tell left from right
    assert not np.array_equal(hoof(_uniform(1.0, 1.0), bins=8, symmetric=False),
                              hoof(_uniform(-1.0, 1.0), bins=8, symmetric=False))


def test_hoof_blocks_and_still_regions():
    flow = np.zeros((2, 8, 8), np.float32)
    flow[0, :4, 4:] = 1.0   # only the top-right block moves
    hist = hoof(flow, bins=4, blocks=(2, 2), symmetric=False)
    assert hist.shape == (16,)
    expected = np.zeros((4, 4))
    expected[1, 0] = 1.0    # block 1 (row 0, col 1), bin 0; still blocks stay zero
    np.testing.assert_allclose(hist, expected.ravel())
    assert np.all(np.isfinite(hist))


@pytest.mark.parametrize("call", [
    lambda: direction_magnitude(np.zeros((3, 8, 8), np.float32)),
    lambda: direction_magnitude(np.zeros((2, 8, 8), np.int64)),
    lambda: direction_magnitude(np.zeros((2, 4, 4), np.float32), blocks=8),
    lambda: direction_magnitude(np.zeros((2, 8, 8), np.float32), blocks=0),
    lambda: hoof(np.zeros((2, 8, 8), np.float32), bins=0),
    lambda: hoof(np.zeros((2, 8, 8), np.float32), blocks=(1, 2, 3)),
])
def test_bad_input_raises(call):
    with pytest.raises(ParameterError):
        call()
