"""Face tracking for ``--mode first``: does one detection stand for a whole clip?

MEAN crops every frame of a clip with the box of one detection on the first
frame [1]_.  :func:`track_first_face` finds the first frame that has a face
(probing every ``every`` frames, then bisecting back), detects the face again
at regular intervals after it, and measures how far the landmarks moved from
the first face's, in inter-ocular distances (:class:`FaceTrack`).  The crop
itself is made by :func:`mexkit.face.align.crop_with_landmarks`.

References
----------
.. [1] MEAN (Liong, See and Chan, "Spot-then-Recognize"), section 3.1: one
   dlib detection on the first frame gives the 128x128 crop of every frame.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._validate import check_range
from ..errors import NoFaceError, ParameterError
from .align import _LEFT_EYE, _RIGHT_EYE, _clip
from .landmarks import Detection, detect_landmarks, frame_ranges

__all__ = ["CHECK_EVERY", "DRIFT_LIMIT", "FaceTrack", "track_first_face"]

#: Default spacing, in frames, of the re-detections that measure landmark drift.
CHECK_EVERY = 25
#: Default drift (mean landmark displacement over the inter-ocular distance) past
#: which the first frame's landmarks are said not to fit any more.
DRIFT_LIMIT = 0.1


@dataclass(frozen=True)
class FaceTrack:
    """How well one detection on one frame stands for a whole clip (``--mode first``).

    Attributes
    ----------
    first_face : int
        Position of the first frame with a face (the detection used).
    checked : ndarray, shape (K,), int64
        Positions after ``first_face`` where the face was detected again.
    drift : ndarray, shape (K,), float64
        At each checked position, the mean distance between the landmarks found
        there and the first face's, over the first face's inter-ocular distance
        (``nan`` where no face was found).
    limit : float
        The drift taken as too large.
    """

    first_face: int
    checked: np.ndarray
    drift: np.ndarray
    limit: float = DRIFT_LIMIT

    @property
    def lost(self) -> np.ndarray:
        """Checked positions where no face was found."""
        return self.checked[np.isnan(self.drift)]

    @property
    def max_drift(self) -> float:
        d = self.drift[np.isfinite(self.drift)]
        return float(d.max()) if len(d) else 0.0

    def as_attrs(self) -> dict[str, float | int]:
        """The sample attributes that record the track (crop stores)."""
        return {"first_face_frame": int(self.first_face), "face_lost_checks": int(len(self.lost)),
                "face_checks": int(len(self.checked)),
                "landmark_drift_max": round(self.max_drift, 4)}

    def problems(self) -> list[str]:
        """What a user should hear about, as sentences (empty when all is well)."""
        out = []
        if self.first_face > 0:
            out.append(f"no face before frame {self.first_face}; the crop is the face "
                       f"found there")
        if len(self.lost):
            out.append(f"the face is lost at frame(s) {frame_ranges(self.lost)} of the "
                       "re-detections (it is cropped on in the same box)")
        if self.max_drift > self.limit:
            worst = int(self.checked[np.nanargmax(self.drift)])
            out.append(f"the landmarks drift from the first face's by up to "
                       f"{self.max_drift:.2f} inter-ocular distances (frame {worst}, limit "
                       f"{self.limit:g}): the head moves; --mode every follows it")
        return out


def _iod(landmarks: np.ndarray) -> float:
    left = landmarks[_LEFT_EYE].mean(axis=0)
    right = landmarks[_RIGHT_EYE].mean(axis=0)
    return max(float(np.hypot(*(right - left))), 1e-6)


def track_first_face(read: Callable[[int], np.ndarray], n_frames: int, *,
                     detector: str = "dlib", upsample: int | None = None,
                     device: str | None = None, every: int | None = None,
                     limit: float = DRIFT_LIMIT, where: str = "") -> tuple[Detection, FaceTrack]:
    """Find the first frame with a face, then check that its landmarks keep fitting.

    ``--mode first`` (MEAN) crops every frame with the box of one detection. This
    finds that detection on the first frame that has a face (not only frame 0:
    probing every ``every`` frames, then bisecting back to the last one
    without), then detects the face again every ``every`` frames after it and
    at the last frame, and measures how far the landmarks moved
    (:class:`FaceTrack`).

    Parameters
    ----------
    read : callable
        ``read(t)`` returns frame ``t`` (0-based within the clip), (H, W) or
        (H, W, 3) uint8.
    n_frames : int
        Frames in the clip.
    detector, upsample, device
        As :func:`~mexkit.face.landmarks.detect_landmarks`.
    every : int, optional
        Spacing of the probes and re-detections, in frames; default 25, or
        ``n_frames // 20`` for long clips (at most about 20 re-detections).
    limit : float
        Drift limit in inter-ocular distances (default 0.1: about 5 pixels in
        a 128-pixel crop).
    where : str
        The clip, for messages.

    Returns
    -------
    detection : Detection
        The face on the first frame that has one.
    track : FaceTrack
        Its position, and the drift at the re-detections.

    Raises
    ------
    NoFaceError
        No face on any probed frame; the message names the clip and the frames
        tried.

    References
    ----------
    .. [1] MEAN (Liong, See, Chan), section 3.1: dlib on the first frame, one
       128x128 crop for all frames.
    """
    if every is None:
        every = max(CHECK_EVERY, int(n_frames) // 20)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ParameterError(f"Invalid value for the 'every' parameter: expected an integer "
                             f">= 1, but got {every!r}.")
    check_range("limit", float(limit), 0.0, low_open=True)

    def detect(t: int):
        try:
            return detect_landmarks(read(t), detector=detector, upsample=upsample,
                                    device=device,
                                    where=f"{where}, frame {t}" if where else f"frame {t}")
        except NoFaceError:
            return None

    probes = list(range(0, n_frames, every))
    if probes and probes[-1] != n_frames - 1:
        probes.append(n_frames - 1)  # a face in the last stretch is found too
    det, first = None, -1
    for k, t in enumerate(probes):
        det = detect(t)
        if det is not None:
            first = t
            # the face appeared after the last probe without it: bisect (a face that
            # has come is taken to stay; the re-detections below check that)
            lo = probes[k - 1] if k else t
            while first - lo > 1:
                mid = (lo + first) // 2
                earlier = detect(mid)
                if earlier is None:
                    lo = mid
                else:
                    det, first = earlier, mid
            break
    if det is None:
        raise NoFaceError(f"No face found in {_clip(where)} on any of frames "
                          f"{frame_ranges(np.asarray(probes))} ({detector} detector).")
    ref = det.landmarks.astype(np.float64)
    iod = _iod(ref)
    checked = np.arange(first + every, n_frames, every, dtype=np.int64)
    if len(checked) and checked[-1] != n_frames - 1 and n_frames - 1 > first:
        checked = np.append(checked, n_frames - 1)
    elif not len(checked) and n_frames - 1 > first:
        checked = np.array([n_frames - 1], dtype=np.int64)
    drift = np.full(len(checked), np.nan)
    for i, t in enumerate(checked):
        again = detect(int(t))
        if again is not None:
            drift[i] = float(np.linalg.norm(again.landmarks - ref, axis=1).mean()) / iod
    return det, FaceTrack(first, checked, drift, float(limit))
