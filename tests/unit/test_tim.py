from __future__ import annotations

import logging

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.temporal.tim import linear_matrix, tim, tim_matrix


def literal_tim(frames: np.ndarray, n_out: int, grid: str) -> np.ndarray:
    """TIM exactly as Zhou et al. describe it: SVD, Laplacian embedding, linear map.

    Written independently of mexkit's closed form, following the steps of the
    reference code (TrainPGM / synPGM): centre the frames, keep n-1 SVD
    components, take the path graph's Laplacian eigenvectors (sorted, the
    constant one dropped), fit W = (Q Q^T)^-1 Q V0, rescale each eigenvector to
    the analytic curve, and synthesise U (W^T)^-1 (v .* m) + mu.
    """
    n = frames.shape[0]
    data = frames.reshape(n, -1).T.astype(np.float64)           # d x n
    mu = data.mean(axis=1, keepdims=True)
    u, s, vt = np.linalg.svd(data - mu, full_matrices=False)
    u = u[:, : n - 1]
    q = np.diag(s[: n - 1]) @ vt[: n - 1]
    adjacency = np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    laplacian = np.diag(adjacency.sum(axis=1)) - adjacency
    _, v0 = np.linalg.eigh(laplacian)                           # ascending eigenvalues
    v0 = v0[:, 1:]
    w = np.linalg.solve(q @ q.T, q @ v0)
    k = np.arange(1, n)
    m = (q[:, 0] @ w) / np.sin(k * np.pi / n + np.pi * (n - k) / (2 * n))
    t = np.arange(1, n_out + 1)
    pos = (t - 1) / (n_out - 1) if grid == "exact" else t / n_out
    pos = pos * (1 - 1 / n) + 1 / n
    out = []
    for p in pos:
        v = np.sin(p * k * np.pi + np.pi * (n - k) / (2 * n))
        out.append(u @ np.linalg.solve(w.T, v * m) + mu[:, 0])
    return np.stack(out).reshape((n_out,) + frames.shape[1:])


@pytest.mark.parametrize("grid", ["exact", "demo"])
@pytest.mark.parametrize("n_in,n_out", [(2, 5), (6, 3), (7, 7), (9, 16), (12, 10)])
def test_matches_literal_algorithm(rng, grid, n_in, n_out):
    frames = rng.standard_normal((n_in, 6, 5)) * 40 + 100
    expected = literal_tim(frames, n_out, grid)
    got = tim(frames, n_out, grid=grid, dtype=np.float64)
    assert got.shape == (n_out, 6, 5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_float32_default_close_to_literal(rng):
    frames = rng.integers(0, 256, (8, 9, 7), dtype=np.uint8)
    got = tim(frames, 20)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, literal_tim(frames, 20, "exact"), atol=2e-3)


def test_same_length_exact_grid_reproduces_input(rng):
    frames = rng.integers(0, 256, (11, 16, 12), dtype=np.uint8)
    out = tim(frames, 11)
    np.testing.assert_allclose(out, frames.astype(np.float32), atol=1e-3)
    assert np.array_equal(tim(frames, 11, dtype=None), frames)
    np.testing.assert_allclose(tim_matrix(11, 11), np.eye(11), atol=1e-12)


def test_exact_grid_keeps_end_frames_demo_grid_does_not(rng):
    frames = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8).astype(np.float64)
    exact = tim(frames, 32, dtype=np.float64)
    np.testing.assert_allclose(exact[0], frames[0], atol=1e-9)
    np.testing.assert_allclose(exact[-1], frames[-1], atol=1e-9)
    demo = tim(frames, 32, grid="demo", dtype=np.float64)
    np.testing.assert_allclose(demo[-1], frames[-1], atol=1e-9)
    assert np.abs(demo[0] - frames[0]).max() > 1.0   # p = 1/T is not the first frame


@pytest.mark.parametrize("n_out", [4, 9, 40])
def test_band_limited_time_course_is_interpolated_exactly(n_out):
    # A pixel whose time course is a cosine of the DCT-II basis lies on TIM's
    # curve: resampling must return the same cosine at the new positions.
    n = 9
    t = np.arange(1, n + 1)
    courses = np.stack([np.cos(np.pi * k * (t - 0.5) / n) for k in (1, 3, 8)], axis=1)
    frames = 50.0 + 20.0 * courses[:, None, :]                   # (n, 1, 3)
    out = tim(frames, n_out, dtype=np.float64)
    q = (np.arange(n_out) / (n_out - 1)) * (1 - 1 / n) + 1 / n
    for col, k in enumerate((1, 3, 8)):
        expected = 50.0 + 20.0 * np.cos(np.pi * k * (n * q - 0.5) / n)
        np.testing.assert_allclose(out[:, 0, col], expected, atol=1e-9)


def test_time_reversal_symmetry_on_exact_grid(rng):
    frames = rng.standard_normal((13, 4, 4))
    fwd = tim(frames, 30, dtype=np.float64)
    back = tim(frames[::-1], 30, dtype=np.float64)
    np.testing.assert_allclose(back[::-1], fwd, atol=1e-10)


def test_matrix_columns_sum_to_one_and_matrix_is_cached():
    for grid in ("exact", "demo"):
        k = tim_matrix(23, 150, grid=grid)
        assert k.shape == (23, 150) and k.dtype == np.float64
        np.testing.assert_allclose(k.sum(axis=0), 1.0, atol=1e-12)
        assert tim_matrix(23, 150, grid=grid) is k
        assert not k.flags.writeable


def test_rgb_equals_per_channel(rng):
    frames = rng.integers(0, 256, (7, 6, 5, 3), dtype=np.uint8)
    out = tim(frames, 12)
    assert out.shape == (12, 6, 5, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], tim(frames[..., c], 12), atol=1e-4)


def test_constant_clip_stays_constant_and_warns(caplog):
    frames = np.full((6, 5, 5), 77, dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        out = tim(frames, 16)
    assert np.all(out == 77.0)
    assert "not linearly independent" in caplog.text


def test_repeated_frames_give_limit_of_perturbed_frames(rng, caplog):
    base = rng.standard_normal((5, 8, 8)) * 30 + 100
    frames = base[[0, 1, 1, 2, 3, 3, 4]]                    # exact repeats: rank 4 < 6
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        out = tim(frames, 20, dtype=np.float64)
    assert np.all(np.isfinite(out))
    assert "rank of the centred frames 4 < 6" in caplog.text
    eps = 1e-6
    perturbed = frames + eps * rng.standard_normal(frames.shape)
    ref = literal_tim(perturbed, 20, "exact")               # the original algorithm works here
    assert np.abs(out - ref).max() < 1e-3
    np.testing.assert_allclose(out[::19], frames[[0, -1]], atol=1e-9)


def test_linear_fallback_and_raise(caplog):
    a = np.zeros((4, 4))
    b = np.full((4, 4), 8.0)
    frames = np.stack([a, a, b])
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        out = tim(frames, 5, rank_deficient="linear", dtype=np.float64)
    assert "linear interpolation" in caplog.text
    # positions 1/3 .. 1 on 5 points -> fractional frames 0, 0.5, 1, 1.5, 2
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 0, 4, 8], atol=1e-12)
    np.testing.assert_allclose(linear_matrix(3, 5).sum(axis=0), 1.0)
    with pytest.raises(ParameterError, match="not linearly independent"):
        tim(frames, 5, rank_deficient="raise")


def test_uint8_output_is_rounded_and_clipped(rng):
    # A step in time overshoots under trigonometric interpolation: uint8 output clips.
    frames = np.zeros((6, 3, 3), dtype=np.uint8)
    frames[3:] = 255
    frames[0, 0, 0] = 1
    out = tim(frames, 23, dtype=None)
    assert out.dtype == np.uint8
    ref = tim(frames, 23, dtype=np.float64)
    assert ref.max() > 255.5 and ref.min() < -0.5
    expected = np.clip(np.rint(ref), 0, 255)
    assert np.abs(out - expected).max() <= 1          # float32 vs float64 ties
    assert np.mean(out == expected) > 0.95


@pytest.mark.parametrize(
    "frames,n_out,kwargs",
    [
        (np.zeros((1, 4, 4)), 5, {}),
        (np.zeros((5, 4)), 5, {}),
        (np.zeros((5, 4, 4)), 1, {}),
        (np.zeros((5, 4, 4)), 2.5, {}),
        (np.zeros((5, 4, 4)), 8, {"grid": "middle"}),
        (np.zeros((5, 4, 4)), 8, {"rank_deficient": "ignore"}),
        (np.full((5, 4, 4), np.nan), 8, {}),
    ],
)
def test_bad_input_raises(frames, n_out, kwargs):
    with pytest.raises(ParameterError):
        tim(frames, n_out, **kwargs)
