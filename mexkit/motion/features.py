"""Hand-made flow descriptors: ATNet's direction-magnitude feature and HOOF.

Both are registered in the flow-feature registry
(:mod:`mexkit.motion.feature_registry`) under the names ``mexkit flow
--features`` takes: ``dm`` and ``hoof`` (MEAN's ``mean`` is registered by its model package,
:mod:`mexkit.models.mean.features`).

Angles are measured in image coordinates: ``atan2(v, u)`` with ``u`` to the
right and ``v`` downwards, so 0 is motion to the right and pi / 2 motion
downwards. Magnitudes are in pixels.

References
----------
.. [1] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A Novel Apex-Time
   Network for Cross-Dataset Micro-Expression Recognition" (ATNet), section
   III-A, eqs. 5-6.
.. [2] R. Chaudhry, A. Ravichandran, G. Hager, R. Vidal, "Histograms of
   oriented optical flow and Binet-Cauchy kernels on nonlinear dynamical
   systems for the recognition of human actions", CVPR 2009, pp. 1932-1939.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import check_range
from ..errors import ParameterError
from ._flowarray import as_flow
from .feature_registry import register_flow_feature

__all__ = ["direction_magnitude", "hoof"]


def _flow(flow: Any) -> tuple[np.ndarray, bool]:
    array = as_flow(flow)
    single = array.ndim == 3
    return (array[None] if single else array), single


def _grid(name: str, blocks: Any) -> tuple[int, int]:
    if isinstance(blocks, (int, np.integer)) and not isinstance(blocks, bool):
        rows = cols = int(blocks)
    else:
        try:
            rows, cols = (int(b) for b in blocks)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"Invalid value for the {name!r} parameter: expected an integer or a pair "
                f"(rows, cols), but got {blocks!r}."
            ) from exc
    check_range(name, min(rows, cols), 1)
    return rows, cols


def _block_edges(size: int, count: int, name: str) -> np.ndarray:
    if count > size:
        raise ParameterError(
            f"Invalid value for the {name!r} parameter: {count} blocks do not fit in "
            f"{size} pixels."
        )
    # block k covers [floor(k size / count), floor((k + 1) size / count))
    return (np.arange(count + 1) * size) // count


def _block_sums(values: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums over a rows x cols grid of blocks of (..., H, W) values, and pixel counts."""
    h, w = values.shape[-2:]
    ye = _block_edges(h, rows, "blocks")
    xe = _block_edges(w, cols, "blocks")
    sums = np.add.reduceat(np.add.reduceat(values, ye[:-1], axis=-2), xe[:-1], axis=-1)
    counts = np.outer(np.diff(ye), np.diff(xe))
    return sums, counts


@register_flow_feature(
    "dm", array="direction_magnitude",
    summary="ATNet's mean magnitude and direction of the flow in 8 x 8 blocks (Peng et al., "
            "eqs. 5-6).")
def direction_magnitude(flow: Any, *, blocks: int = 8) -> np.ndarray:
    """ATNet's average direction-magnitude feature of flow fields.

    Each flow field is cut into ``blocks`` x ``blocks`` blocks; in every block
    the flow is taken to polar coordinates and the magnitudes and the
    directions are averaged (ATNet eqs. 5 and 6: plain arithmetic means).

    Parameters
    ----------
    flow : array_like, shape (P, 2, H, W) or (2, H, W)
        Flow in pixels, channel 0 horizontal, channel 1 vertical.
    blocks : int
        Blocks per side (8 in ATNet). Block boundaries are at
        ``floor(k * H / blocks)`` (equal blocks when ``blocks`` divides the
        size, as for 224 x 224 and 128 x 128 fields).

    Returns
    -------
    numpy.ndarray, float32, shape (P, 2 * blocks**2) or (2 * blocks**2,)
        For block ``i = row * blocks + col`` (row-major from the top-left
        block), element ``2 i`` is the mean magnitude (pixels) and ``2 i + 1``
        the mean direction (radians, each pixel's direction in [0, 2 pi) as
        ``cv2.cartToPolar`` gives it; 0 = right, pi / 2 = down). 128 values
        per flow for 8 x 8 blocks; the 64 flows around an apex give ATNet's
        64 x 128 input.

    Notes
    -----
    The paper lists "the average optical magnitude plus average direction"
    of each of the 64 blocks without an explicit order; mexkit interleaves
    them per block. The arithmetic mean of directions is what eq. 6 states; it
    is not a circular mean (motion straddling the positive x axis averages to
    about pi).

    References
    ----------
    .. [1] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A Novel
       Apex-Time Network for Cross-Dataset Micro-Expression Recognition",
       section III-A, eqs. 5-6.
    """
    array, single = _flow(flow)
    rows, cols = _grid("blocks", blocks)
    u = array[:, 0]
    v = array[:, 1]
    magnitude = np.sqrt(u * u + v * v)
    direction = np.arctan2(v, u)
    direction[direction < 0] += np.float32(2.0 * np.pi)
    mag_sums, counts = _block_sums(magnitude, rows, cols)
    dir_sums, _ = _block_sums(direction, rows, cols)
    out = np.empty((array.shape[0], rows * cols, 2), dtype=np.float32)
    out[:, :, 0] = (mag_sums / counts).reshape(array.shape[0], -1)
    out[:, :, 1] = (dir_sums / counts).reshape(array.shape[0], -1)
    out = out.reshape(array.shape[0], -1)
    return out[0] if single else out


@register_flow_feature(
    "hoof", array="hoof",
    summary="Histogram of oriented optical flow, 8 bins (Chaudhry et al., CVPR 2009).")
def hoof(flow: Any, *, bins: int = 8, blocks: int | tuple[int, int] = (1, 1),
         normalize: bool = True, symmetric: bool = True) -> np.ndarray:
    """Histogram of oriented optical flow (HOOF), magnitude-weighted.

    Parameters
    ----------
    flow : array_like, shape (P, 2, H, W) or (2, H, W)
        Flow in pixels, channel 0 horizontal, channel 1 vertical.
    bins : int
        Number of orientation bins ``B``.
    blocks : int or (int, int)
        Grid of blocks (rows, cols), one histogram each, concatenated
        row-major from the top-left block. (1, 1): one histogram per flow.
    normalize : bool
        Divide each histogram by its sum (a block without motion stays all
        zeros).
    symmetric : bool
        True (Chaudhry et al.): bin ``b`` (0-based) takes the vectors whose
        angle ``theta = atan2(v, |u|)`` in [-pi/2, pi/2] lies in
        ``[-pi/2 + pi b / B, -pi/2 + pi (b + 1) / B)`` (pi/2 goes to the last
        bin), so a vector and its mirror image about the vertical axis fall in
        the same bin and the histogram does not depend on whether motion is to
        the left or to the right. False: plain bins of ``atan2(v, u)`` over
        [0, 2 pi), bin ``b`` covering ``[2 pi b / B, 2 pi (b + 1) / B)``.

    Returns
    -------
    numpy.ndarray, float32, shape (P, rows * cols * bins) or (rows * cols * bins,)
        Each vector adds its magnitude (pixels) to its bin.

    References
    ----------
    .. [1] R. Chaudhry, A. Ravichandran, G. Hager, R. Vidal, "Histograms of
       oriented optical flow and Binet-Cauchy kernels on nonlinear dynamical
       systems for the recognition of human actions", CVPR 2009.
    """
    array, single = _flow(flow)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
        raise ParameterError(
            f"Invalid value for the 'bins' parameter. It must be an integer, but got "
            f"{bins!r} instead."
        )
    check_range("bins", int(bins), 1)
    bins = int(bins)
    rows, cols = _grid("blocks", blocks)
    u = array[:, 0].astype(np.float64)
    v = array[:, 1].astype(np.float64)
    magnitude = np.sqrt(u * u + v * v)
    if symmetric:
        angle = np.arctan2(v, np.abs(u))  # [-pi/2, pi/2]
        index = np.floor((angle + np.pi / 2) / np.pi * bins).astype(np.int64)
    else:
        angle = np.mod(np.arctan2(v, u), 2.0 * np.pi)  # [0, 2 pi)
        index = np.floor(angle / (2.0 * np.pi) * bins).astype(np.int64)
    np.clip(index, 0, bins - 1, out=index)
    n, h, w = magnitude.shape
    ye = _block_edges(h, rows, "blocks")
    xe = _block_edges(w, cols, "blocks")
    block_row = np.searchsorted(ye, np.arange(h), side="right") - 1
    block_col = np.searchsorted(xe, np.arange(w), side="right") - 1
    block = (block_row[:, None] * cols + block_col[None, :])[None]
    flat = (np.arange(n)[:, None, None] * rows * cols + block) * bins + index
    hist = np.bincount(flat.ravel(), weights=magnitude.ravel(),
                       minlength=n * rows * cols * bins).reshape(n, rows * cols, bins)
    if normalize:
        total = hist.sum(axis=-1, keepdims=True)
        hist = np.divide(hist, total, out=np.zeros_like(hist), where=total > 0)
    out = hist.reshape(n, -1).astype(np.float32)
    return out[0] if single else out
