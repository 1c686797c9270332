"""MEAN's spotting pre- and post-processing: pseudo-labels, smoothing, peaks, intervals.

Frame positions are 0-based and intervals are inclusive ``[onset, offset]``,
as everywhere in mexkit.  A spotting score ``s[j]`` belongs to the flow pair
``(j, j + k)`` of a video, i.e. to frame ``j``; a video of ``n`` frames has
``n - k`` scores.

Steps (MEAN, section 3.4):

1. :func:`pseudo_labels`: frame ``j`` gets 1 when its window
   ``[j, j + k' - 1]`` overlaps an expression interval (IoU > 0, eqs. 5-6),
   else 0; ``k' = (N + 1) / 2`` with ``N`` the mean expression length
   (:func:`kprime_from_length`).
2. :func:`smooth_scores`: the moving average over ``[i - k', i + k']``
   (eq. 11); the paper discards the ``k'`` boundary frames on each side,
   :func:`smooth_scores` returns them as the mean of the part of the window
   inside the video and :func:`spot_peaks` never picks them (unless a short
   video has no other frame, see there).
3. :func:`spot_peaks`: long videos: every local maximum of the smoothed
   score above ``T = mean + p (max - mean)`` (eq. 12, ``p = 0.55``) at least
   ``k'`` frames from a higher one (:func:`scipy.signal.find_peaks` with
   ``height=T, distance=k'``); short videos: the single highest frame.
4. :func:`peak_interval`: ``[peak - k', peak + k' - 1]`` clipped to the video;
   the interval's confidence is the peak's smoothed score.
5. :func:`interval_emotion`: the most frequent per-frame class over
   ``[peak - k', peak - 1]`` (the paper's case 1).

References
----------
.. [1] G.-B. Liong, J. See, L.-K. Wong, "Shallow Optical Flow Three-Stream CNN
   for Macro- and Micro-Expression Spotting from Long Videos", ICIP 2021.
.. [2] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos",
   Signal Processing: Image Communication 2023, eqs. 5-6, 11-12, section 3.4.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .._validate import check_int, check_ndim, check_range
from ..errors import ParameterError

__all__ = [
    "KPRIME",
    "Spot",
    "kprime_from_length",
    "pseudo_labels",
    "smooth_scores",
    "threshold",
    "spot_peaks",
    "peak_interval",
    "interval_emotion",
    "spot_video",
]

#: k' per dataset as MEAN's Table 1 gives it ("Parameter k'").
KPRIME: dict[str, int] = {
    "casme2": 34,
    "smic-hs": 17,
    "smic-vis": 4,
    "smic-nir": 4,
    "casme_sq": 6,
    "samm-lv": 37,
}


@dataclass(frozen=True)
class Spot:
    """One spotted interval of one video.

    Attributes
    ----------
    onset, offset : int
        Inclusive 0-based frame positions, clipped to the video.
    peak : int
        The spotted peak (apex) frame.
    confidence : float
        The smoothed spotting score at the peak (the value the peak was
        selected by; used to rank intervals for AP).
    emotion : int or None
        The interval's class index (:func:`interval_emotion`), when per-frame
        class predictions were given.
    """

    onset: int
    offset: int
    peak: int
    confidence: float
    emotion: int | None = None


def kprime_from_length(mean_length: float) -> int:
    """``k' = (N + 1) / 2`` rounded down, for a mean expression length ``N`` in frames.

    Parameters
    ----------
    mean_length : float
        Mean inclusive length ``offset - onset + 1`` of the expressions, in frames
        (``>= 1``).

    Returns
    -------
    int
        ``k' >= 1``.

    References
    ----------
    .. [1] MEAN, section 3.3: "k' = (N + 1)/2 is half of the average length of
       the ME".
    """
    check_range("mean_length", float(mean_length), 1.0)
    return max(1, int((float(mean_length) + 1.0) // 2))


def _intervals(intervals: Iterable[Sequence[int]]) -> np.ndarray:
    arr = np.asarray([tuple(iv)[:2] for iv in intervals], dtype=np.int64).reshape(-1, 2)
    bad = arr[:, 1] < arr[:, 0]
    if bad.any():
        on, off = arr[np.argmax(bad)]
        raise ParameterError(
            f"Invalid value for the 'intervals' parameter: interval [{on}, {off}] has its "
            "offset before its onset.")
    return arr


def pseudo_labels(n: int, intervals: Iterable[Sequence[int]], kprime: int) -> np.ndarray:
    """Binary pseudo-labels of the ``n`` score positions of a video (eqs. 5-6).

    Position ``j`` is 1 when its window ``[j, j + k' - 1]`` shares at least one
    frame with an interval ``[onset, offset]`` (IoU > 0), else 0.  Windows that
    run past the end are not shortened: only the overlap matters.

    Parameters
    ----------
    n : int
        Number of score positions (flow pairs) of the video.
    intervals : iterable of (onset, offset)
        Inclusive 0-based expression intervals.
    kprime : int
        Window length ``k'``.

    Returns
    -------
    np.ndarray, shape (n,), float32
        0.0 or 1.0 per position.

    References
    ----------
    .. [1] MEAN, eqs. 5-6; SOFTNet (Liong et al., ICIP 2021), section 2.2.
    """
    n = check_int("n", n, 0)
    kprime = check_int("kprime", kprime, 1)
    labels = np.zeros(n, dtype=np.float32)
    for on, off in _intervals(intervals):
        # [j, j+k'-1] meets [on, off]  <=>  j <= off and j + k' - 1 >= on
        lo = max(0, int(on) - kprime + 1)
        hi = min(n - 1, int(off))
        if hi >= lo:
            labels[lo:hi + 1] = 1.0
    return labels


def smooth_scores(scores: np.ndarray, kprime: int) -> np.ndarray:
    """Moving average over ``[i - k', i + k']`` (eq. 11).

    Parameters
    ----------
    scores : array_like, shape (n,)
        Per-frame spotting scores.
    kprime : int
        Half-width ``k'`` of the window (``2 k' + 1`` frames).

    Returns
    -------
    np.ndarray, shape (n,), float64
        ``mean(scores[i - k' : i + k' + 1])`` for ``k' <= i < n - k'`` (the
        frames the paper keeps); the boundary frames hold the mean of the part
        of their window inside the video (the paper discards them; see
        :func:`spot_peaks`).

    References
    ----------
    .. [1] MEAN, eq. 11.
    """
    s = np.asarray(scores, dtype=np.float64)
    check_ndim("scores", s, 1, "(n,)")
    kprime = check_int("kprime", kprime, 1)
    if s.size == 0:
        return s.copy()
    if not np.isfinite(s).all():
        raise ParameterError("Invalid value for the 'scores' parameter: it holds NaN or inf.")
    c = np.concatenate([[0.0], np.cumsum(s)])
    i = np.arange(s.size)
    lo = np.clip(i - kprime, 0, s.size)
    hi = np.clip(i + kprime + 1, 0, s.size)
    return (c[hi] - c[lo]) / (hi - lo)


def _valid(n: int, kprime: int) -> slice:
    return slice(kprime, max(kprime, n - kprime))


def threshold(smoothed: np.ndarray, p: float = 0.55) -> float:
    """``T = mean + p (max - mean)`` of a video's smoothed scores (eq. 12)."""
    s = np.asarray(smoothed, dtype=np.float64)
    if s.size == 0:
        raise ParameterError("Invalid value for the 'smoothed' parameter: it is empty.")
    m = float(s.mean())
    return m + float(p) * (float(s.max()) - m)


def spot_peaks(smoothed: np.ndarray, kprime: int, *, p: float = 0.55, long: bool = True
               ) -> tuple[np.ndarray, float | None]:
    """Peak frames of a smoothed score curve.

    Only frames ``k' <= i < n - k'`` (where eq. 11 is defined) are candidates,
    and the mean and maximum of eq. 12 are taken over them.

    Parameters
    ----------
    smoothed : array_like, shape (n,)
        Output of :func:`smooth_scores`.
    kprime : int
        ``k'``: the minimum distance between peaks.
    p : float
        Threshold fraction of eq. 12, in [0, 1] (0.55 in the paper).
    long : bool
        True: all peaks above the threshold (long videos); False: the single
        highest frame (short videos, no threshold).  A short video with no
        frame ``>= k'`` from both ends (``n <= 2 k'``) takes its highest frame
        over the whole curve.  Ties go to the earliest frame.

    Returns
    -------
    peaks : np.ndarray of int, shape (m,)
        Sorted 0-based peak frames (``m = 0`` when nothing rises above ``T``
        or the video is too short).
    threshold : float or None
        ``T`` for long videos, None for short ones.

    References
    ----------
    .. [1] MEAN, eq. 12 and section 4.3; scipy.signal.find_peaks.
    """
    s = np.asarray(smoothed, dtype=np.float64)
    check_ndim("smoothed", s, 1, "(n,)")
    kprime = check_int("kprime", kprime, 1)
    check_range("p", float(p), 0.0, 1.0)
    sl = _valid(s.size, kprime)
    inner = s[sl]
    if not long:
        if inner.size:
            return np.array([sl.start + int(np.argmax(inner))]), None
        if s.size:
            return np.array([int(np.argmax(s))]), None
        return np.zeros(0, dtype=np.int64), None
    if inner.size == 0:
        return np.zeros(0, dtype=np.int64), None
    t = threshold(inner, p)
    from scipy.signal import find_peaks  # 1-2 s to import: only when spotting

    peaks, _ = find_peaks(inner, height=t, distance=kprime)
    return (peaks + sl.start).astype(np.int64), t


def peak_interval(peak: int, kprime: int, n_frames: int) -> tuple[int, int]:
    """``[peak - k', peak + k' - 1]`` clipped to ``[0, n_frames - 1]`` (MEAN, case 3)."""
    peak = check_int("peak", peak, 0)
    kprime = check_int("kprime", kprime, 1)
    n_frames = check_int("n_frames", n_frames, 1)
    if peak >= n_frames:
        raise ParameterError(
            f"Invalid value for the 'peak' parameter: frame {peak} is past the end of a "
            f"video of {n_frames} frames.")
    return max(0, peak - kprime), min(n_frames - 1, peak + kprime - 1)


def interval_emotion(frame_classes: np.ndarray, peak: int, kprime: int) -> int:
    """The most frequent class over ``[peak - k', peak - 1]`` (MEAN, case 1).

    Parameters
    ----------
    frame_classes : array_like of int, shape (n,)
        Per-frame predicted class indices.
    peak, kprime : int
        The peak frame and ``k'``.

    Returns
    -------
    int
        The mode; ties go to the smallest class index.  When the window is
        empty (peak at frame 0) the peak frame's class is used.
    """
    c = np.asarray(frame_classes)
    check_ndim("frame_classes", c, 1, "(n,)")
    peak = check_int("peak", peak, 0)
    kprime = check_int("kprime", kprime, 1)
    if peak >= c.size:
        raise ParameterError(
            f"Invalid value for the 'peak' parameter: frame {peak} is past the end of "
            f"{c.size} per-frame predictions.")
    window = c[max(0, peak - kprime):peak]
    if window.size == 0:
        window = c[peak:peak + 1]
    window = window.astype(np.int64)
    if (window < 0).any():
        raise ParameterError("Invalid value for the 'frame_classes' parameter: negative class.")
    return int(np.argmax(np.bincount(window)))


def spot_video(scores: np.ndarray, kprime: int, *, n_frames: int | None = None,
               p: float = 0.55, long: bool = True,
               frame_classes: np.ndarray | None = None) -> tuple[list[Spot], np.ndarray,
                                                                  float | None]:
    """Smoothing, peaks, intervals and emotions of one video.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Raw per-frame spotting scores (``n = n_frames - k`` for flow gap ``k``).
    kprime : int
        ``k'``.
    n_frames : int, optional
        Frames in the video (intervals are clipped to it); default ``n``.
    p, long
        As in :func:`spot_peaks`.
    frame_classes : array_like of int, shape (n,), optional
        Per-frame predicted classes; gives each spot its emotion.

    Returns
    -------
    spots : list of Spot
        In frame order.
    smoothed : np.ndarray, shape (n,)
        The smoothed scores.
    threshold : float or None
        ``T`` (long videos) or None.
    """
    s = np.asarray(scores, dtype=np.float64)
    check_ndim("scores", s, 1, "(n,)")
    n_frames = s.size if n_frames is None else check_int("n_frames", n_frames, 1)
    if s.size > n_frames:
        raise ParameterError(
            f"Invalid value for the 'n_frames' parameter: {n_frames} frames cannot hold "
            f"{s.size} scores.")
    if frame_classes is not None and len(frame_classes) != s.size:
        raise ParameterError(
            f"Invalid value for the 'frame_classes' parameter: {len(frame_classes)} "
            f"predictions for {s.size} scores.")
    sm = smooth_scores(s, kprime)
    peaks, t = spot_peaks(sm, kprime, p=p, long=long)
    spots = []
    for pk in peaks:
        on, off = peak_interval(int(pk), kprime, n_frames)
        emo = None if frame_classes is None else interval_emotion(frame_classes, int(pk),
                                                                  kprime)
        spots.append(Spot(on, off, int(pk), float(sm[pk]), emo))
    return spots, sm, t
