"""Which frames to compute flow between: frame pairing by index arithmetic.

Frame indices are 0-based positions in the clip. Every mode returns an
``(P, 2)`` int64 array of ``(first, second)`` indices; flow is computed from
the first frame (reference) to the second (moving).

Modes and the papers that use them:

``"consecutive"``
    ``(i, i + 1)`` for every frame: ``n - 1`` pairs.
``"gap"``
    ``(i, i + k)`` for every ``i``: MEAN's spotting input, with
    ``k = fps x 0.1`` (rounded half up, at least 1) when ``k`` is not given.
``"onset-apex"``
    One pair ``(onset, apex)``: MEAN's recognition input (onset and
    ``onset + k`` with ``k = apex - onset``).
``"onset-all"``
    ``(onset, j)`` for every later frame ``j``.
``"keyframes"``
    Adjacent frames of a key-frame clip (MERSiamC3D: 11 key-frames, 10
    flows); the same pairs as ``"consecutive"``.
``"apex-window"``
    ATNet: ``window`` (65) consecutive frames centred on the apex, 32 on each
    side, and the ``window - 1`` (64) flows between neighbours. Near either
    end of the clip the window is shifted to stay inside it (so the apex is
    then off centre); a clip shorter than the window raises
    :class:`~mexkit.errors.ParameterError` (ATNet does not say what it does
    with such clips; resample them first, e.g. with TIM).

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos"
   (MEAN), section 4.3.
.. [2] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A Novel Apex-Time
   Network for Cross-Dataset Micro-Expression Recognition" (ATNet), III-A.
.. [3] S. Zhao et al., "A two-stage 3D CNN based learning method for
   spontaneous micro-expression recognition" (MERSiamC3D), section 3.1.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validate import check_int, check_option, check_range
from ..errors import ParameterError

__all__ = ["make_pairs", "MODES"]

#: The pairing modes of :func:`make_pairs`.
MODES = ("consecutive", "gap", "onset-apex", "onset-all", "keyframes", "apex-window")


def _frame(name: str, value: Any, n_frames: int, mode: str) -> int:
    if value is None:
        raise ParameterError(f"The {mode!r} pairing needs the {name!r} frame index.")
    index = check_int(name, value)
    if not 0 <= index < n_frames:
        raise ParameterError(
            f"Invalid value for the {name!r} parameter: frame {index} is outside the clip "
            f"of {n_frames} frames (valid indices 0 to {n_frames - 1})."
        )
    return index


def _consecutive(start: int, stop: int) -> np.ndarray:
    first = np.arange(start, stop - 1, dtype=np.int64)
    return np.stack([first, first + 1], axis=1)


def make_pairs(n_frames: int, *, mode: str, k: int | None = None, fps: float | None = None,
               onset: int | None = None, apex: int | None = None,
               window: int = 65) -> np.ndarray:
    """Frame index pairs for flow computation.

    Parameters
    ----------
    n_frames : int
        Number of frames in the clip (at least 2).
    mode : str
        One of :data:`MODES` (see the module docstring).
    k : int, optional
        Frame distance for ``"gap"`` (1 to ``n_frames - 1``).
    fps : float, optional
        Frame rate; for ``"gap"`` without ``k``, ``k = round(fps * 0.1)``
        (half up, at least 1).
    onset : int, optional
        Onset frame (``"onset-apex"``, ``"onset-all"``).
    apex : int, optional
        Apex frame (``"onset-apex"``, ``"apex-window"``).
    window : int
        Frames in the apex window (65 in ATNet; at least 2).

    Returns
    -------
    numpy.ndarray, int64, shape (P, 2)
        ``(first, second)`` frame indices, in increasing order of ``first``.

    Raises
    ------
    ParameterError
        For an unknown mode, a missing or out-of-range frame index, an apex
        not after the onset, a gap that does not fit, or a clip shorter than
        the apex window.

    Examples
    --------
    >>> make_pairs(4, mode="consecutive").tolist()
    [[0, 1], [1, 2], [2, 3]]
    >>> make_pairs(6, mode="gap", fps=30).tolist()
    [[0, 3], [1, 4], [2, 5]]

    References
    ----------
    .. [1] G.-B. Liong, J. See, C.-S. Chan, MEAN, section 4.3 (k = fps x 0.1;
       onset and onset + k with k = apex - onset).
    .. [2] M. Peng et al., ATNet, section III-A (65 frames around the apex).
    """
    check_option("mode", mode, MODES)
    n_frames = check_int("n_frames", n_frames)
    check_range("n_frames", n_frames, 2)

    if mode in ("consecutive", "keyframes"):
        return _consecutive(0, n_frames)

    if mode == "gap":
        if k is None:
            if fps is None:
                raise ParameterError(
                    "The 'gap' pairing needs the frame distance 'k' or the frame rate 'fps'."
                )
            if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer,
                                                              np.floating)):
                raise ParameterError(
                    f"Invalid value for the 'fps' parameter. It must be a number, but got "
                    f"{fps!r} instead."
                )
            fps = float(fps)
            if not math.isfinite(fps):
                raise ParameterError(f"Invalid value for the 'fps' parameter: {fps!r}.")
            check_range("fps", fps, 0.0, low_open=True)
            k = max(1, int(math.floor(fps * 0.1 + 0.5)))
        k = check_int("k", k)
        if not 1 <= k < n_frames:
            raise ParameterError(
                f"Invalid value for the 'k' parameter: a gap of {k} frames needs 1 <= k < "
                f"n_frames = {n_frames}."
            )
        first = np.arange(0, n_frames - k, dtype=np.int64)
        return np.stack([first, first + k], axis=1)

    if mode == "onset-apex":
        onset = _frame("onset", onset, n_frames, mode)
        apex = _frame("apex", apex, n_frames, mode)
        if apex <= onset:
            raise ParameterError(
                f"The apex (frame {apex}) must come after the onset (frame {onset})."
            )
        return np.array([[onset, apex]], dtype=np.int64)

    if mode == "onset-all":
        onset = _frame("onset", onset, n_frames, mode)
        if onset >= n_frames - 1:
            raise ParameterError(
                f"The onset (frame {onset}) is the last frame of the {n_frames}-frame clip: "
                "no later frame to pair it with."
            )
        later = np.arange(onset + 1, n_frames, dtype=np.int64)
        return np.stack([np.full_like(later, onset), later], axis=1)

    # apex-window
    apex = _frame("apex", apex, n_frames, mode)
    window = check_int("window", window)
    check_range("window", window, 2)
    if n_frames < window:
        raise ParameterError(
            f"The apex window needs {window} frames, but the clip has {n_frames}; "
            "resample the clip (e.g. with TIM) or use a smaller window."
        )
    start = apex - window // 2
    start = min(max(start, 0), n_frames - window)
    return _consecutive(start, start + window)
