"""Coarse-to-fine optical flow: the pyramid's sizes and the driver that walks it.

Both TV-L1 engines (:mod:`mexkit.motion.tvl1` on the CPU,
:mod:`mexkit.motion.tvl1_torch` batched in torch) hand their per-level
solver to :func:`coarse_to_fine`, on the same pyramid of plain bilinear
resizes that OpenCV's ``DualTVL1OpticalFlow`` builds.

References
----------
.. [1] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
   flow estimation", Image Processing On Line 3 (2013), pp. 137-150.
.. [2] OpenCV contrib, module ``optflow``, ``DualTVL1OpticalFlow``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["pyramid_sizes", "coarse_to_fine"]


def pyramid_sizes(height: int, width: int, *, nscales: int = 5,
                  scale_step: float = 0.8) -> list[tuple[int, int]]:
    """Return the ``(height, width)`` of each pyramid level, finest first.

    Level ``s`` has size ``round(size[s - 1] * scale_step)`` (round half to
    even, as OpenCV's ``resize`` computes it); levels stop at ``nscales`` or
    before the first level smaller than 16 pixels on a side.

    Parameters
    ----------
    height, width : int
        Size of the input frames in pixels.
    nscales : int
        Maximum number of levels.
    scale_step : float
        Zoom factor between consecutive levels, in (0, 1).

    Returns
    -------
    list of (int, int)
        Sizes from the finest (the input size) to the coarsest level.
    """
    sizes = [(int(height), int(width))]
    for _ in range(1, nscales):
        h, w = sizes[-1]
        nh, nw = int(round(h * scale_step)), int(round(w * scale_step))
        if nh < 16 or nw < 16:
            break
        sizes.append((nh, nw))
    return sizes


def coarse_to_fine(reference: Any, moving: Any, *, nscales: int, scale_step: float,
                   resize: Callable[[Any, tuple[int, int], tuple[float, float]], Any],
                   start: Callable[[tuple[int, int]], Any],
                   solve_level: Callable[[Any, Any, Any], Any],
                   upsample: Callable[[Any, tuple[int, int]], Any]) -> Any:
    """Solve a flow level by level, from the coarsest pyramid level to the input's.

    The frames are shrunk by ``scale_step`` per level (:func:`pyramid_sizes`);
    the coarsest level starts from ``start``'s flow, and each finer level from
    the coarser level's flow, upsampled. The array type is the engine's
    (numpy arrays, or lists of torch tensors): the callables do the work.

    Parameters
    ----------
    reference, moving : array, shape (..., H, W)
        The frames (one pair, or a batch).
    nscales, scale_step
        As :func:`pyramid_sizes`.
    resize : callable
        ``resize(image, (h, w), (sy, sx))``: ``image`` shrunk to ``(h, w)``,
        ``(sy, sx)`` source pixels per output pixel.
    start : callable
        ``start((h, w))``: the flow at the coarsest level (zero flow).
    solve_level : callable
        ``solve_level(reference, moving, flow)``: the flow refined at one level.
    upsample : callable
        ``upsample(flow, (h, w))``: the flow carried to the next finer level,
        resized and its displacements divided by ``scale_step``.

    Returns
    -------
    The flow at the input's size, as ``solve_level`` returns it.

    References
    ----------
    .. [1] Sanchez Perez et al., IPOL 2013, section 4 (the pyramid scheme).
    """
    height, width = reference.shape[-2:]
    sizes = pyramid_sizes(height, width, nscales=nscales, scale_step=scale_step)
    shrink = (1.0 / scale_step, 1.0 / scale_step)
    refs, movs = [reference], [moving]
    for size in sizes[1:]:
        refs.append(resize(refs[-1], size, shrink))
        movs.append(resize(movs[-1], size, shrink))
    flow = start(sizes[-1])
    for level in range(len(sizes) - 1, -1, -1):
        flow = solve_level(refs[level], movs[level], flow)
        if level:
            flow = upsample(flow, sizes[level - 1])
    return flow
