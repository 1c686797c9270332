"""Apex frames for clips whose annotation has none (SMIC), and for unannotated clips.

One rule, used by every stage that needs an apex (``mexkit flow`` for
onset-apex and apex-window pairs and ``--with-apex``, ``mexkit keyframes``),
so that a clip gets the same apex everywhere (:func:`apex_method`):

* an annotated apex is used as it is;
* a clip with onset and offset but no apex (SMIC) takes the middle frame
  ``(onset + offset) // 2``, as ATNet does [1]_;
* a clip with no annotation at all (one's own footage given to ``mexkit
  crop`` as files) takes the frame most different from its first frame [2]_:
  there the middle frame is no better than any other.

Each stage records in the store which one a sample got (its ``apex_source``
attribute: ``"annotation"``, ``"middle"`` or ``"max-diff"``).

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

__all__ = ["APEX_RULES", "apex_method", "estimate_apex", "resolve_apex"]

#: What a stage may be told to do with a clip that has no apex: ``"auto"`` is
#: the shared rule (:func:`apex_method`), the others force one method.
APEX_RULES = ("auto", "middle", "max-diff")


def apex_method(annotated: bool, rule: str = "auto") -> str:
    """The method that estimates the apex of a clip without one.

    Parameters
    ----------
    annotated : bool
        Whether the clip's onset (and offset) are annotated.
    rule : {"auto", "middle", "max-diff"}
        ``"auto"``: ``"middle"`` for an annotated clip (SMIC, ATNet [1]_),
        ``"max-diff"`` for an unannotated one (MEAN's rule [2]_); another
        value is returned as it is.

    Returns
    -------
    str
        ``"middle"`` or ``"max-diff"``.
    """
    check_option("rule", rule, APEX_RULES)
    if rule != "auto":
        return rule
    return "middle" if annotated else "max-diff"


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
                 method: str = "auto", annotated: bool = True) -> tuple[int, str]:
    """The annotated apex if there is one, else an estimate; says which.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, C)
        The clip.
    onset, offset : int
        0-based positions, ``onset <= offset < T``.
    apex : int or None
        The annotated apex position; ``None`` or negative means not annotated.
    method : {"auto", "middle", "max-diff"}
        How to estimate a missing apex (:func:`estimate_apex`); ``"auto"``
        follows the shared rule (:func:`apex_method`).
    annotated : bool
        Whether onset and offset are annotated (for ``method="auto"``).

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
    how = apex_method(annotated, method)
    return estimate_apex(frames, onset, offset, method=how), how
