"""Temporal interpolation model (TIM): resample a clip to any number of frames.

TIM (Zhou, Zhao and Pietikainen 2011), as Pfister et al. (2011) use it to
normalise micro-expression clips, maps the frames of a clip onto a curve
embedded in a path graph and samples new frames along that curve. This module
implements it in closed form: TIM is a fixed linear filter along time,

    output = X @ K,

with ``X`` the frames as columns and ``K`` an ``(n_in, n_out)`` matrix that
depends only on the number of input and output frames and on the output grid
(:func:`tim_matrix`). The derivation is in the notes of :func:`tim`.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from .._validate import check_ndim, check_option, check_range
from ..errors import ParameterError

__all__ = ["tim", "tim_matrix", "linear_matrix", "GRIDS"]

logger = logging.getLogger("mexkit")

#: Output grids: ``"exact"`` samples ``p = (t - 1) / (T - 1)`` (first and last
#: output frames are the first and last input frames; ``T == n`` reproduces the
#: input), ``"demo"`` samples ``p = t / T`` as the reference demo does.
GRIDS = ("exact", "demo")

_RANK_TOL = 1e-10  # eigenvalue ratio of the centred Gram matrix (singular value ratio 1e-5)


def _check_sizes(n_in: Any, n_out: Any) -> tuple[int, int]:
    for name, value in (("n_in", n_in), ("n_out", n_out)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ParameterError(
                f"Invalid value for the {name!r} parameter. It must be an integer, "
                f"but got {value!r} instead."
            )
        check_range(name, int(value), 2)
    return int(n_in), int(n_out)


def _curve_positions(n_in: int, n_out: int, grid: str) -> np.ndarray:
    """Positions on the curve, already rescaled to ``[1/n_in, 1]`` (float64)."""
    t = np.arange(1, n_out + 1, dtype=np.float64)
    if grid == "exact":
        p = (t - 1.0) / (n_out - 1.0)
    else:  # "demo"
        p = t / n_out
    return p * (1.0 - 1.0 / n_in) + 1.0 / n_in


@functools.lru_cache(maxsize=128)
def _tim_matrix_cached(n_in: int, n_out: int, grid: str) -> np.ndarray:
    q = _curve_positions(n_in, n_out, grid)                      # (T,)
    k = np.arange(1, n_in, dtype=np.float64)[:, None]            # (n-1, 1)
    t = np.arange(1, n_in + 1, dtype=np.float64)[None, :]        # (1, n)
    # Curve coordinates of the input frames, F[k, t] = f_k(t / n), and of the
    # output positions, G[k, j] = f_k(q_j), with
    # f_k(p) = sin(pi k p + pi (n - k) / (2 n)) = cos(pi k (n p - 1/2) / n).
    f_in = np.sin(np.pi * k * t / n_in + np.pi * (n_in - k) / (2.0 * n_in))
    f_out = np.sin(np.pi * k * q[None, :] + np.pi * (n_in - k) / (2.0 * n_in))
    # F F^T = (n / 2) I, so the map from curve to centred frames is (2 / n) X_c F^T.
    kmat = np.full((n_in, n_out), 1.0 / n_in) + (2.0 / n_in) * (f_in.T @ f_out)
    kmat.flags.writeable = False
    return kmat


def tim_matrix(n_in: int, n_out: int, *, grid: str = "exact") -> np.ndarray:
    """Return the TIM resampling matrix ``K`` with ``output = frames^T @ K``.

    Parameters
    ----------
    n_in : int
        Number of input frames ``n`` (at least 2).
    n_out : int
        Number of output frames ``T`` (at least 2).
    grid : {"exact", "demo"}
        Output positions: ``"exact"`` uses ``p = (t - 1) / (T - 1)``,
        ``"demo"`` the reference demo's ``p = t / T`` (``t = 1..T``); both are
        then rescaled to ``[1/n, 1]`` on the curve.

    Returns
    -------
    K : ndarray, shape (n_in, n_out), float64, read-only
        Column ``j`` holds the weights of the input frames in output frame
        ``j``. Every column sums to 1. Cached per ``(n_in, n_out, grid)``.

    Notes
    -----
    ``K = (1/n) 1 1^T + (2/n) F^T G`` with ``F[k, t] = f_k(t/n)`` and
    ``G[k, j] = f_k(q_j)``, ``k = 1..n-1``; see :func:`tim` for the derivation.
    With ``f_k(t/n) = cos(pi k (t - 1/2) / n)`` this is the DCT-II
    (trigonometric) interpolation of the sequence at fractional positions.

    References
    ----------
    .. [1] Z. Zhou, G. Zhao, M. Pietikainen, "Towards a practical lipreading
       system", CVPR 2011, pp. 137-144.
    """
    n_in, n_out = _check_sizes(n_in, n_out)
    check_option("grid", grid, GRIDS)
    return _tim_matrix_cached(n_in, n_out, grid)


@functools.lru_cache(maxsize=128)
def _linear_matrix_cached(n_in: int, n_out: int, grid: str) -> np.ndarray:
    s = n_in * _curve_positions(n_in, n_out, grid) - 1.0      # fractional 0-based index
    s = np.clip(s, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(s).astype(np.intp), n_in - 2)
    w = s - i0
    kmat = np.zeros((n_in, n_out))
    cols = np.arange(n_out)
    kmat[i0, cols] = 1.0 - w
    kmat[i0 + 1, cols] += w
    kmat.flags.writeable = False
    return kmat


def linear_matrix(n_in: int, n_out: int, *, grid: str = "exact") -> np.ndarray:
    """Return the matrix of linear interpolation in time on TIM's output grid.

    Input frame ``t`` (1-based) sits at curve position ``t / n`` as in TIM, and
    output frame ``j`` at the same positions as :func:`tim_matrix` uses, so the
    two matrices are interchangeable. This is the ``rank_deficient="linear"``
    fallback of :func:`tim`.

    Parameters
    ----------
    n_in, n_out : int
        Numbers of input and output frames (at least 2 each).
    grid : {"exact", "demo"}
        Output grid, as in :func:`tim_matrix`.

    Returns
    -------
    K : ndarray, shape (n_in, n_out), float64, read-only
        At most two non-zero weights per column, summing to 1.
    """
    n_in, n_out = _check_sizes(n_in, n_out)
    check_option("grid", grid, GRIDS)
    return _linear_matrix_cached(n_in, n_out, grid)


def _centred_rank(xc: np.ndarray) -> int:
    """Numerical rank of centred frames ``xc`` (n, d), from the float64 Gram matrix."""
    xc = xc.astype(np.float64, copy=False)
    gram = xc @ xc.T
    ev = np.linalg.eigvalsh(gram)
    top = ev[-1]
    if not top > 0.0:
        return 0
    return int(np.count_nonzero(ev > _RANK_TOL * top))


def _cast(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype, copy=False)


def tim(frames: np.ndarray, n_out: int, *, grid: str = "exact",
        dtype: Any = np.float32, rank_deficient: str = "extend") -> np.ndarray:
    """Resample a clip to ``n_out`` frames with the temporal interpolation model.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, C)
        Input clip of ``n = T >= 2`` frames, uint8 or float (any value range).
    n_out : int
        Number of output frames (at least 2); 10, 16, 32, 64, 128 and 150 are
        the lengths used in the literature.
    grid : {"exact", "demo"}
        Output positions on the curve. ``"exact"`` (default) samples
        ``p = (t - 1) / (n_out - 1)``: the first and last output frames are the
        first and last input frames, and ``n_out == n`` returns the input.
        ``"demo"`` samples ``p = t / n_out`` like the reference demo of Zhou et
        al., whose first output frame is not the first input frame.
    dtype : numpy dtype or None
        Output dtype, float32 by default; ``None`` keeps the input dtype
        (integers are rounded and clipped). The computation runs in float64
        when the output dtype is float64, otherwise in float32.
    rank_deficient : {"extend", "linear", "raise"}
        What to do when the centred frames have rank below ``n - 1`` (repeated
        frames, a constant clip, frames that are exact linear combinations of
        others), where the original algorithm stops with an error. ``"extend"``
        (default) returns the closed form below, which is the limit of TIM on
        any vanishing perturbation of the frames; ``"linear"`` falls back to
        linear interpolation in time on the same grid (:func:`linear_matrix`);
        ``"raise"`` raises :class:`~mexkit.errors.ParameterError`. The first two
        log a warning on the ``"mexkit"`` logger.

    Returns
    -------
    out : ndarray, shape (n_out, H, W) or (n_out, H, W, C)
        The resampled clip.

    Raises
    ------
    ParameterError
        For a bad shape, fewer than 2 input or output frames, an unknown
        option, or rank-deficient frames with ``rank_deficient="raise"``.

    Notes
    -----
    The algorithm of Zhou et al. (code of the reference implementation,
    ``TrainPGM``/``synPGM``): stack the frames as columns ``X`` (``d x n``),
    remove the mean ``mu``, take the SVD ``X_c = U S V^T`` keeping ``n - 1``
    components and set ``Y = S V^T`` (``(n-1) x n``), so ``X_c = U Y``. The
    path graph on ``n`` nodes has Laplacian eigenvectors
    ``f_k(t/n) = sin(pi k t/n + pi (n - k)/(2n))``, ``k = 1..n-1`` (the constant
    one dropped); call ``F`` the ``(n-1) x n`` matrix of them. A linear map
    ``W = (Y Y^T)^{-1} Y F^T`` is fitted, and a new frame at curve position
    ``q`` is ``x(q) = mu + U (W^T)^{-1} f(q)``, with positions rescaled to
    ``[1/n, 1]``.

    Why the SVD is not needed: the rows of ``F`` are orthogonal to the
    constant vector and to each other, ``F F^T = (n/2) I``, so they span the
    orthogonal complement of ``1``. When the frames are linearly independent,
    the rows of ``Y`` span the same space (``Y 1 = U^T X_c 1 = 0`` and ``Y``
    has rank ``n - 1``), hence ``Y = A F`` with the invertible
    ``A = Y F^T (F F^T)^{-1}``. Then ``W^T = F Y^T (Y Y^T)^{-1}`` and
    ``(W^T)^{-1} = Y Y^T (F Y^T)^{-1} = A F F^T A^T A^{-T} (F F^T)^{-1} = A``,
    so ``x(q) = mu + U A f(q) = mu + U Y F^T (F F^T)^{-1} f(q)
    = mu + (2/n) X_c F^T f(q)``. The factor ``U Y`` is ``X_c`` itself: the
    data enter only linearly, and the whole model collapses to
    ``out = X K`` with ``K = (1/n) 1 1^T + (2/n) F^T G`` (:func:`tim_matrix`),
    ``G[k, j] = f_k(q_j)``. The reference code's per-component rescaling
    ``m_k`` of the eigenvectors cancels in the same way. When the frames are
    not independent, ``(Y Y^T)^{-1}`` does not exist, but
    ``mu + (2/n) X_c F^T G`` is still defined and continuous in the data,
    which is what ``"extend"`` returns. The rank is judged from the
    eigenvalues of the centred frames' float64 Gram matrix, relative to the
    largest, with tolerance 1e-10 (singular values below 1e-5 of the largest
    count as zero).

    For ``n = 60`` frames of 128 x 128 pixels resampled to 64 this is one
    ``(64 x 60) @ (60 x 16384)`` product plus an ``n x n`` Gram matrix for
    the rank check: a few milliseconds.

    References
    ----------
    .. [1] Z. Zhou, G. Zhao, M. Pietikainen, "Towards a practical lipreading
       system", CVPR 2011, pp. 137-144.
    .. [2] T. Pfister, X. Li, G. Zhao, M. Pietikainen, "Recognising spontaneous
       facial micro-expressions", ICCV 2011, pp. 1449-1456.
    """
    check_ndim("frames", frames, (3, 4), "(T, H, W) or (T, H, W, C)")
    check_option("grid", grid, GRIDS)
    check_option("rank_deficient", rank_deficient, ("extend", "linear", "raise"))
    frames = np.asarray(frames)
    n_in = frames.shape[0]
    if n_in < 2:
        raise ParameterError(
            f"Invalid shape for the 'frames' parameter: TIM needs at least 2 frames, "
            f"but got shape {frames.shape!r}."
        )
    _, n_out = _check_sizes(n_in, n_out)
    if not (np.issubdtype(frames.dtype, np.integer) or np.issubdtype(frames.dtype, np.floating)):
        raise ParameterError(
            f"Invalid dtype for the 'frames' parameter: expected uint8 or float, "
            f"but got {frames.dtype}."
        )
    out_dtype = np.dtype(frames.dtype if dtype is None else dtype)
    work = np.float64 if out_dtype == np.float64 else np.float32

    x = frames.reshape(n_in, -1).astype(work, copy=False)
    if np.issubdtype(frames.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ParameterError("Invalid value for the 'frames' parameter: it contains NaN or inf.")

    kmat = tim_matrix(n_in, n_out, grid=grid)
    mean = x.mean(axis=0, dtype=np.float64).astype(work)
    xc = x - mean
    rank = _centred_rank(xc)
    if rank < n_in - 1:
        msg = (f"TIM: the {n_in} frames are not linearly independent (rank of the "
               f"centred frames {rank} < {n_in - 1})")
        if rank_deficient == "raise":
            raise ParameterError(f"Invalid value for the 'frames' parameter. {msg}.")
        if rank_deficient == "linear":
            logger.warning("%s; falling back to linear interpolation in time.", msg)
            kmat = linear_matrix(n_in, n_out, grid=grid)
        else:
            logger.warning("%s; using the closed form, the limit of TIM on perturbed "
                           "frames.", msg)
    # Columns of K sum to 1, so X K = mean + X_c K; the centred form keeps a
    # constant clip exactly constant and loses less precision in float32.
    out = np.ascontiguousarray(kmat.T, dtype=work) @ xc
    out += mean
    return _cast(out.reshape((n_out,) + frames.shape[1:]), out_dtype)
