"""Optical strain on flows with known derivatives."""
from __future__ import annotations

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.motion import optical_strain


def _linear_flow(a, b, c, d, e, f, shape=(12, 17)):
    """u = a x + b y + c, v = d x + e y + f (x along columns, y along rows)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return np.stack([a * xx + b * yy + c, d * xx + e * yy + f])


def test_linear_flow_has_constant_strain_everywhere():
    a, b, c, d, e, f = 0.03, -0.02, 1.5, 0.05, -0.04, -0.7
    magnitude, exx, eyy, exy = optical_strain(_linear_flow(a, b, c, d, e, f), components=True)
    # central and one-sided differences are exact for linear fields, borders included
    np.testing.assert_allclose(exx, a, atol=1e-6)
    np.testing.assert_allclose(eyy, e, atol=1e-6)
    np.testing.assert_allclose(exy, (b + d) / 2, atol=1e-6)
    expected = np.sqrt(a ** 2 + e ** 2 + 0.5 * (b + d) ** 2)
    np.testing.assert_allclose(magnitude, expected, rtol=1e-5)
    assert magnitude.dtype == np.float32 and magnitude.shape == (12, 17)


def test_axes_are_not_swapped():
    # u grows along x only: pure normal strain along x, nothing else
    magnitude, exx, eyy, exy = optical_strain(_linear_flow(0.1, 0, 0, 0, 0, 0),
                                              components=True)
    np.testing.assert_allclose(exx, 0.1, atol=1e-7)
    np.testing.assert_allclose(eyy, 0.0, atol=1e-7)
    np.testing.assert_allclose(exy, 0.0, atol=1e-7)
    # u grows along y: pure shear, magnitude sqrt(0.1**2 / 2)
    magnitude, exx, eyy, exy = optical_strain(_linear_flow(0, 0.1, 0, 0, 0, 0),
                                              components=True)
    np.testing.assert_allclose(exx, 0.0, atol=1e-7)
    np.testing.assert_allclose(exy, 0.05, atol=1e-7)
    np.testing.assert_allclose(magnitude, np.sqrt(0.005), rtol=1e-5)


def test_translation_and_rotation_have_no_strain():
    # a small rigid rotation: du/dy = -w, dv/dx = +w cancel in the shear term
    magnitude = optical_strain(_linear_flow(0, -0.01, 2.0, 0.01, 0, -1.0))
    np.testing.assert_allclose(magnitude, 0.0, atol=1e-7)


def test_central_differences_inside_one_sided_at_the_border():
    yy, xx = np.mgrid[0:6, 0:7].astype(np.float64)
    flow = np.stack([xx ** 2, np.zeros_like(xx)])
    _, exx, _, _ = optical_strain(flow, components=True)
    # interior: (f(x + 1) - f(x - 1)) / 2 = 2 x exactly; borders: first differences
    np.testing.assert_allclose(exx[:, 1:-1], 2 * xx[:, 1:-1])
    np.testing.assert_allclose(exx[:, 0], 1.0)
    np.testing.assert_allclose(exx[:, -1], 36.0 - 25.0)
    np.testing.assert_allclose(exx, np.gradient(xx ** 2, axis=1))


def test_batch_matches_single_fields(rng):
    flows = rng.normal(size=(3, 2, 9, 11)).astype(np.float32)
    batch = optical_strain(flows)
    assert batch.shape == (3, 9, 11)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], optical_strain(flows[i]))


@pytest.mark.parametrize("flow", [
    np.zeros((3, 8, 8), np.float32),
    np.zeros((1, 1, 8, 8), np.float32),
    np.zeros((8, 8), np.float32),
    np.zeros((2, 8, 8), np.int32),
    np.zeros((2, 1, 8), np.float32),
])
def test_bad_flows_raise(flow):
    with pytest.raises(ParameterError):
        optical_strain(flow)
