"""Apex frames for clips whose annotation has none (SMIC).

References
----------
.. [1] M. Peng et al., "A Novel Apex-Time Network for Cross-Dataset
   Micro-Expression Recognition", ACII 2019 (SMIC: the middle frame).
.. [2] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize", Signal
   Process. Image Commun. 110 (2023) (SMIC: the frame most different from
   the onset).
"""
from __future__ import annotations

import numpy as np

from .._validate import check_ndim, check_option
from ..errors import ParameterError

__all__ = ["estimate_apex", "resolve_apex"]


def estimate_apex(frames: np.ndarray, onset: int, offset: int, *,
                  method: str = "middle") -> int:
    """Estimate the apex position of a clip.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, C)
        The clip (only read for ``method="max-diff"``).
    onset, offset : int
        0-based positions of onset and offset, ``onset <= offset < T``.
    method : {"middle", "max-diff"}
        ``"middle"``: ``(onset + offset) // 2`` ([1]_); ``"max-diff"``: the
        frame in ``(onset, offset]`` with the largest mean absolute
        difference from the onset frame ([2]_).

    Returns
    -------
    int
        The apex position.
    """
    check_option("method", method, ("middle", "max-diff"))
    check_ndim("frames", frames, (3, 4), "(T, H, W) or (T, H, W, C)")
    T = len(frames)
    if not 0 <= onset <= offset < T:
        raise ParameterError(
            f"Invalid onset/offset {onset}/{offset} for a clip of {T} frames.")
    if method == "middle" or offset == onset:
        return (onset + offset) // 2
    ref = frames[onset].astype(np.float32)
    diffs = [np.mean(np.abs(frames[t].astype(np.float32) - ref))
             for t in range(onset + 1, offset + 1)]
    return onset + 1 + int(np.argmax(diffs))


def resolve_apex(frames: np.ndarray, onset: int, offset: int, apex: int | None = None, *,
                 method: str = "middle") -> tuple[int, str]:
    """The annotated apex if there is one, else an estimate; says which.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, C)
        The clip.
    onset, offset : int
        0-based positions, ``onset <= offset < T``.
    apex : int or None
        The annotated apex position; ``None`` or negative means not annotated.
    method : {"middle", "max-diff"}
        How to estimate a missing apex (:func:`estimate_apex`).

    Returns
    -------
    apex : int
        The apex position.
    source : str
        ``"annotation"``, or the estimation method (``"middle"``, ``"max-diff"``),
        for the sample's record.
    """
    if apex is not None and apex >= 0:
        return int(apex), "annotation"
    return estimate_apex(frames, onset, offset, method=method), method
