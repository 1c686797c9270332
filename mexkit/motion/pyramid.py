"""Image pyramids for coarse-to-fine optical flow.

Both TV-L1 engines (:mod:`mexkit.motion.tvl1` on the CPU,
:mod:`mexkit.motion.tvl1_torch` batched in torch) solve on the same pyramid
of plain bilinear resizes, as OpenCV's ``DualTVL1OpticalFlow`` builds it.

References
----------
.. [1] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
   flow estimation", Image Processing On Line 3 (2013), pp. 137-150.
.. [2] OpenCV contrib, module ``optflow``, ``DualTVL1OpticalFlow``.
"""
from __future__ import annotations

__all__ = ["pyramid_sizes"]


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
