from __future__ import annotations

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.motion.colour import arrow_grid, colour_wheel, flow_to_colour


def _field(u, v, shape=(4, 5)):
    return np.stack([np.full(shape, u, np.float32), np.full(shape, v, np.float32)])


def test_still_field_is_white_and_directions_have_their_hues():
    assert (flow_to_colour(_field(0, 0)) == 255).all()
    right = flow_to_colour(_field(1, 0))[0, 0]
    assert right[0] == 255 and right[1] < 10 and right[2] < 10      # +u: red
    down = flow_to_colour(_field(0, 1))[0, 0]   # +v (down in the image): hue 90 deg
    assert down[0] > 100 and down[1] == 255 and down[2] < 10
    left = flow_to_colour(_field(-1, 0))[0, 0]
    assert left[0] < 10 and left[1] == 255 and left[2] == 255       # -u: cyan


def test_saturation_follows_magnitude_and_clips():
    flow = np.zeros((2, 1, 3), np.float32)
    flow[0, 0] = [0.5, 1.0, 4.0]
    rgb = flow_to_colour(flow, max_magnitude=1.0)
    # green and blue fall as the saturation grows; 4 px is clipped to full saturation
    assert rgb[0, 0, 1] > rgb[0, 1, 1] and rgb[0, 1, 1] == rgb[0, 2, 1]
    nan = flow.copy()
    nan[0, 0, 0] = np.nan
    assert (flow_to_colour(nan)[0, 0] == 0).all()
    with pytest.raises(ParameterError, match="flow"):
        flow_to_colour(np.zeros((3, 2, 2)))


def test_wheel_and_arrows():
    wheel = colour_wheel(33)
    assert wheel.shape == (33, 33, 3) and (wheel[16, 16] == 255).all()
    flow = np.zeros((2, 8, 8), np.float32)
    flow[0, :4, :4] = 2.0
    x, y, u, v = arrow_grid(flow, step=4)
    assert u.shape == (2, 2) and u[0, 0] == 2.0 and u[1, 1] == 0 and (v == 0).all()
    assert x[0, 0] == 1.5 and y[1, 0] == 5.5
