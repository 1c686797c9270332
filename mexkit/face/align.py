"""Face alignment and square face crops for micro-expression clips.

A crop is a similarity transform (rotation, uniform scale, translation) from
the video frame to a ``size x size`` image, stored as a ``(2, 3)`` affine
matrix ``M`` that maps frame pixel coordinates to crop pixel coordinates
(``crop = M[:, :2] @ p + M[:, 2]``, the convention of ``cv2.warpAffine``;
pixel centres at integer coordinates, ``(0, 0)`` the centre of the top-left
pixel). It is built from 68 landmarks as follows:

1. rotation: the eye line, from the centre of the image-left eye (landmarks
   36-41) to the centre of the image-right eye (42-47), becomes horizontal;
2. the landmarks' bounding box is taken in the rotated frame; the crop is the
   square centred on that box whose side is the box's longer side times
   ``1 + 2 * margin``;
3. that square is scaled to ``size x size`` pixels.

The default ``margin=0.125`` leaves a border of about 12.8 px around the
landmarks in a 128 px crop, so that MEAN's 12 px region margins above the
eyebrows and below the mouth (:mod:`mexkit.face.regions`) stay inside the
crop. Sizes used by the papers: 128 (MEAN, AKMNet), 112 (MERSiamC3D, PSN),
224 (ATNet).

Two modes (:func:`align_clip`):

``"first"`` (default, MEAN's way)
    Landmarks are found on the first frame only and the same crop is applied
    to every frame, so the crop itself adds no motion: what moves in the
    crops is the face (including any head motion). The landmarks reported for
    later frames are the first frame's, mapped into the crop; with
    ``refit=True`` they are re-estimated on every frame by the shape
    predictor inside the first frame's face box (about 2 ms per frame with
    dlib), which follows the face but does not change the crop.
``"every"``
    Landmarks are found on every frame and each frame gets its own crop,
    which removes head motion (:func:`stable_transforms`). The crop of the
    whole clip is framed once, on the clip's median landmarks; each frame's
    head pose relative to that median is the similarity (translation,
    rotation, scale) that best maps the frame's rigid landmarks (nose 27-35,
    eye corners 36, 39, 42, 45: points that expressions hardly move) onto
    the median's, by least squares.  Those four parameters are then smoothed
    over time by a Whittaker-Henderson smoother (penalised second
    differences, lambda = ``smooth`` ** 4): head motion slower than about
    2 pi ``smooth`` frames is followed, faster changes (landmark jitter:
    dlib's points are whole pixels and move with sensor noise) are averaged
    out, and the ends of the clip are smoothed as well as its middle.  On a
    still face (a photograph filmed with sensor noise) the crop then stays
    put: less than 0.5 px of mean onset-apex flow, where the per-frame box
    of all 68 landmarks moved the crop by about a pixel (issue 28).  Frames
    without a face are filled by linear interpolation of the landmarks of
    the nearest frames with a face (held constant at the ends of the clip)
    and flagged, when the gap is at most ``max_gap`` frames; longer gaps
    raise :class:`~mexkit.errors.NoFaceError`.

:func:`precropped` handles datasets that ship cropped faces (CASME II's
``Cropped`` folders): frames are kept, optionally resized, and landmarks are
estimated when a face is found.

Downscaling uses area averaging (``cv2.INTER_AREA`` on the region of the frame
that the crop covers) before a bilinear warp, so large faces are not aliased;
the border is replicated where a crop reaches past the frame.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos"
   (MEAN), section 3.1: dlib landmarks on the first frame, the same 128x128
   crop for all frames.
.. [2] MERSiamC3D and PSN (112x112 aligned crops), AKMNet (128x128), ATNet
   (224x224): see ``paper-facts.md``, "Face crop and regions".
.. [3] S. Umeyama, "Least-squares estimation of transformation parameters
   between two point patterns", IEEE TPAMI 13(4), 1991 (the similarity fit).
.. [4] P. H. C. Eilers, "A perfect smoother", Analytical Chemistry 75(14),
   2003 (the Whittaker-Henderson smoother).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .._validate import check_option, check_range
from ..errors import MediaError, NoFaceError, ParameterError
from .landmarks import (
    DETECTORS,
    N_LANDMARKS,
    DetectionBatch,
    check_frames,
    detect_landmarks,
    detect_landmarks_batch,
    fit_landmarks,
    frame_names,
    frame_ranges,
)

__all__ = [
    "MODES",
    "AlignedClip",
    "alignment_transform",
    "apply_transform",
    "invert_transform",
    "transform_points",
    "align_clip",
    "align_detected",
    "crop_with_landmarks",
    "precropped",
    "stable_transforms",
    "RIGID_LANDMARKS",
]

logger = logging.getLogger("mexkit")

#: ``keep(a, b, M, make)``: the crops of frames ``a..b-1`` by the map ``M``, made by
#: ``make()`` or kept from an earlier run (see :func:`crop_with_landmarks`).
ChunkKeeper = Callable[[int, int, np.ndarray, Callable[[], np.ndarray]], np.ndarray]

#: Alignment modes of :func:`align_clip`.
MODES = ("first", "every")

_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
#: Landmarks that expressions hardly move (iBUG-68, 0-based): the nose (27-35)
#: and the four eye corners; the head's pose in ``"every"`` mode is fitted on them.
RIGID_LANDMARKS = np.r_[27:36, 36, 39, 42, 45]


@dataclass(frozen=True)
class AlignedClip:
    """An aligned, cropped clip and where its crop came from.

    Attributes
    ----------
    frames : ndarray, shape (T, S, S) or (T, S, S, 3), uint8
        The crops (grey or RGB).
    landmarks : ndarray, shape (T, 68, 2), float32
        iBUG-68 landmarks ``(x, y)`` in crop pixels. All ``nan`` when no
        landmarks could be estimated (:func:`precropped` on a face the
        detector misses); stages that need them (MEAN regions, head-motion
        removal) then refuse the clip with a clear message.
    transforms : ndarray, shape (T, 2, 3), float64
        Per frame, the affine map from frame pixels to crop pixels
        (:func:`transform_points`; :func:`invert_transform` maps back).
    scores : ndarray, shape (T,), float32
        Detector score of the detection each frame's crop comes from: in
        ``"first"`` mode the first frame's score for every frame; ``nan`` for
        interpolated frames and where nothing was detected.
    interpolated : ndarray, shape (T,), bool
        Frames whose landmarks (and crop) were interpolated over a gap in
        detection (``"every"`` mode only).
    """

    frames: np.ndarray
    landmarks: np.ndarray
    transforms: np.ndarray
    scores: np.ndarray
    interpolated: np.ndarray

    @property
    def has_landmarks(self) -> bool:
        """True when every landmark is a finite number."""
        return bool(np.isfinite(self.landmarks).all())


# --------------------------------------------------------------------------- checks

def _clip(where: str) -> str:
    return where if where else "the clip"


def _check_landmarks(landmarks: np.ndarray, name: str = "landmarks") -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.shape[-2:] != (N_LANDMARKS, 2):
        raise ParameterError(
            f"Invalid shape for the {name!r} parameter: expected (..., 68, 2) iBUG-68 "
            f"landmarks, but got shape {arr.shape!r}.")
    if not np.isfinite(arr).all():
        raise ParameterError(f"The {name!r} parameter holds non-finite values (nan or inf).")
    return arr


def _check_size(size: int, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ParameterError(
            f"Invalid value for the {name!r} parameter: expected an integer, but got {size!r}.")
    check_range(name, int(size), 8, 4096)
    return int(size)


def _check_matrices(M: np.ndarray, n: int | None = None) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    ok = M.shape == (2, 3) or (M.ndim == 3 and M.shape[1:] == (2, 3)
                               and (n is None or M.shape[0] == n))
    if not ok:
        want = "(2, 3)" if n is None else f"(2, 3) or ({n}, 2, 3)"
        raise ParameterError(
            f"Invalid shape for the 'M' parameter: expected {want}, but got {M.shape!r}.")
    if not np.isfinite(M).all():
        raise ParameterError("The 'M' parameter holds non-finite values (nan or inf).")
    return M


# --------------------------------------------------------------------------- transforms

def _similarity_params(landmarks: np.ndarray, margin: float) -> np.ndarray:
    """(..., 68, 2) landmarks -> (..., 4) crop parameters (cx, cy, angle, side).

    ``(cx, cy)`` is the crop centre in frame pixels, ``angle`` the eye line's
    angle in radians (y down, so positive is clockwise on screen) and ``side``
    the square's side in frame pixels.
    """
    eye_l = landmarks[..., _LEFT_EYE, :].mean(axis=-2)
    eye_r = landmarks[..., _RIGHT_EYE, :].mean(axis=-2)
    d = eye_r - eye_l
    if np.any(np.hypot(d[..., 0], d[..., 1]) < 1e-3):
        raise ParameterError("Invalid landmarks: the two eye centres coincide, so the eye line "
                             "has no direction.")
    angle = np.arctan2(d[..., 1], d[..., 0])
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    x, y = landmarks[..., 0], landmarks[..., 1]
    qx, qy = c * x + s * y, -s * x + c * y              # landmarks rotated by -angle
    lo_x, hi_x = qx.min(axis=-1), qx.max(axis=-1)
    lo_y, hi_y = qy.min(axis=-1), qy.max(axis=-1)
    side = np.maximum(hi_x - lo_x, hi_y - lo_y) * (1.0 + 2.0 * margin)
    if np.any(side < 1e-3):
        raise ParameterError("Invalid landmarks: all 68 points coincide.")
    mx, my = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2       # box centre, rotated frame
    c, s = c[..., 0], s[..., 0]
    return np.stack([c * mx - s * my, s * mx + c * my, angle, side], axis=-1)


def _params_to_matrix(params: np.ndarray, size: int) -> np.ndarray:
    cx, cy, angle, side = np.moveaxis(params, -1, 0)
    k = size / side
    c, s = k * np.cos(angle), k * np.sin(angle)
    half = (size - 1) / 2.0
    M = np.empty(params.shape[:-1] + (2, 3))
    M[..., 0, 0], M[..., 0, 1] = c, s
    M[..., 1, 0], M[..., 1, 1] = -s, c
    M[..., 0, 2] = half - (c * cx + s * cy)
    M[..., 1, 2] = half - (-s * cx + c * cy)
    return M


def alignment_transform(landmarks: np.ndarray, *, size: int = 128,
                        margin: float = 0.125) -> np.ndarray:
    """The affine map from frame pixels to an aligned square face crop.

    Parameters
    ----------
    landmarks : ndarray, shape (68, 2)
        iBUG-68 landmarks ``(x, y)`` in frame pixels.
    size : int
        Side of the crop in pixels (128 MEAN/AKMNet, 112 MERSiamC3D/PSN,
        224 ATNet).
    margin : float
        Border added on each side of the landmarks' box, as a fraction of the
        box's longer side (the crop's side is ``(1 + 2 * margin)`` times it).

    Returns
    -------
    M : ndarray, shape (2, 3), float64
        ``crop = M[:, :2] @ p + M[:, 2]``; the eye line is horizontal in the
        crop and the landmarks' box is centred in it.

    References
    ----------
    .. [1] MEAN (Liong, See, Chan), section 3.1; see the module docstring.
    """
    L = _check_landmarks(landmarks)
    if L.shape != (N_LANDMARKS, 2):
        raise ParameterError(f"Invalid shape for the 'landmarks' parameter: expected (68, 2), "
                             f"but got shape {L.shape!r}.")
    size = _check_size(size)
    check_range("margin", float(margin), 0.0, 2.0)
    return _params_to_matrix(_similarity_params(L, float(margin)), size)


def invert_transform(M: np.ndarray) -> np.ndarray:
    """Inverse of an affine map (or of a stack of them).

    Parameters
    ----------
    M : ndarray, shape (2, 3) or (T, 2, 3)

    Returns
    -------
    Minv : ndarray, same shape, float64
        Maps crop pixels back to frame pixels.
    """
    M = _check_matrices(M)
    A = M[..., :2]
    if np.any(np.abs(np.linalg.det(A)) < 1e-12):
        raise ParameterError("The 'M' parameter is singular and cannot be inverted.")
    Ainv = np.linalg.inv(A)
    out = np.empty_like(M)
    out[..., :2] = Ainv
    out[..., 2] = -np.einsum("...ij,...j->...i", Ainv, M[..., 2])
    return out


def transform_points(points: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply an affine map to points.

    Parameters
    ----------
    points : ndarray, shape (..., N, 2)
        ``(x, y)`` pixel coordinates, e.g. landmarks ``(68, 2)`` or
        ``(T, 68, 2)``.
    M : ndarray, shape (2, 3) or (T, 2, 3)
        One map for all points, or one per leading index ``T`` of
        ``points`` (``points`` then has shape ``(T, N, 2)``).

    Returns
    -------
    ndarray, same shape as ``points``
        float64 when ``points`` or ``M`` is float64, else float32.
    """
    pts = np.asarray(points)
    if pts.ndim < 2 or pts.shape[-1] != 2:
        raise ParameterError(f"Invalid shape for the 'points' parameter: expected (..., N, 2), "
                             f"but got shape {pts.shape!r}.")
    M_arr = np.asarray(M)
    dtype = np.float64 if np.float64 in (pts.dtype, M_arr.dtype) else np.float32
    M64 = _check_matrices(M_arr)
    if M64.ndim == 3 and (pts.ndim != 3 or pts.shape[0] != M64.shape[0]):
        raise ParameterError(
            f"Invalid shape for the 'points' parameter: with {M64.shape[0]} matrices expected "
            f"({M64.shape[0]}, N, 2), but got shape {pts.shape!r}.")
    p = pts.astype(np.float64)
    out = np.matmul(p, np.swapaxes(M64[..., :2], -1, -2)) + M64[..., None, :, 2]
    return out.astype(dtype)


def _warp_plan(M: np.ndarray, size: int, height: int, width: int):
    """Region of the frame a crop reads, an optional area pre-shrink, and the residual map."""
    A = M[:, :2]
    k = float(np.sqrt(abs(np.linalg.det(A))))
    e = size - 0.5
    corners = np.array([[-0.5, -0.5], [e, -0.5], [-0.5, e], [e, e]])
    src = transform_points(corners, invert_transform(M))
    pad = 2 + int(np.ceil(1.0 / k))
    x0 = int(np.clip(np.floor(src[:, 0].min()) - pad, 0, width))
    x1 = int(np.clip(np.ceil(src[:, 0].max()) + pad + 1, 0, width))
    y0 = int(np.clip(np.floor(src[:, 1].min()) - pad, 0, height))
    y1 = int(np.clip(np.ceil(src[:, 1].max()) + pad + 1, 0, height))
    if x1 - x0 < 1 or y1 - y0 < 1:                      # crop lies outside the frame
        x0, y0, x1, y1 = 0, 0, width, height
    local = M.copy()
    local[:, 2] = M[:, 2] + A @ np.array([x0, y0], dtype=np.float64)
    dsize = None
    if k < 1.0:
        w, h = x1 - x0, y1 - y0
        dsize = (max(1, int(round(w * k))), max(1, int(round(h * k))))
        sx, sy = dsize[0] / w, dsize[1] / h
        # region pixel p = (q + 0.5) / s - 0.5 for a pixel q of the shrunk region
        shrunk = np.empty_like(local)
        shrunk[:, :2] = A @ np.diag([1.0 / sx, 1.0 / sy])
        shrunk[:, 2] = local[:, 2] + A @ np.array([0.5 / sx - 0.5, 0.5 / sy - 0.5])
        local = shrunk
    return (x0, y0, x1, y1), dsize, local


def _warp(frame: np.ndarray, plan, size: int) -> np.ndarray:
    (x0, y0, x1, y1), dsize, local = plan
    region = frame[y0:y1, x0:x1]
    if dsize is not None:
        region = cv2.resize(region, dsize, interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(region, local, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def apply_transform(frames: np.ndarray, M: np.ndarray, *, size: int = 128) -> np.ndarray:
    """Warp frames into square crops.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, 3), uint8
        Grey or RGB frames.
    M : ndarray, shape (2, 3) or (T, 2, 3)
        Frame-to-crop map for all frames, or one per frame.
    size : int
        Side of the crops in pixels.

    Returns
    -------
    crops : ndarray, shape (T, size, size) or (T, size, size, 3), uint8
        ``crops[t][q] = frames[t][M_t^-1 q]``: bilinear, after area averaging
        of the covered region when the map shrinks the frame; replicated
        border.
    """
    frames = check_frames(frames)
    size = _check_size(size)
    T, H, W = frames.shape[:3]
    M = _check_matrices(M, T)
    out = np.empty((T, size, size) + frames.shape[3:], dtype=np.uint8)
    if M.ndim == 2:
        plan = _warp_plan(M, size, H, W)
        for t in range(T):
            out[t] = _warp(frames[t], plan, size)
    else:
        for t in range(T):
            out[t] = _warp(frames[t], _warp_plan(M[t], size, H, W), size)
    return out


# --------------------------------------------------------------------------- clips

def _colour(frames: np.ndarray, grey: bool) -> np.ndarray:
    if grey and frames.ndim == 4:
        T, H, W = frames.shape[:3]
        return cv2.cvtColor(frames.reshape(T * H, W, 3), cv2.COLOR_RGB2GRAY).reshape(T, H, W)
    if not grey and frames.ndim == 3:
        return np.repeat(frames[..., None], 3, axis=-1)
    return frames


def _fill_gaps(landmarks: np.ndarray, found: np.ndarray, max_gap: int, where: str,
               detector: str) -> np.ndarray:
    """Interpolate landmarks over short runs of frames without a face."""
    T = len(found)
    if not found.any():
        raise NoFaceError(f"No face found in any of the {T} frames of {_clip(where)} "
                          f"({detector} detector).")
    missing = np.flatnonzero(~found)
    if missing.size == 0:
        return landmarks.astype(np.float64)
    breaks = np.flatnonzero(np.diff(missing) > 1)
    starts = np.concatenate([[missing[0]], missing[breaks + 1]])
    ends = np.concatenate([missing[breaks], [missing[-1]]])
    long = [(s, e) for s, e in zip(starts, ends, strict=True) if e - s + 1 > max_gap]
    if long:
        frames = np.concatenate([np.arange(s, e + 1) for s, e in long])
        raise NoFaceError(
            f"No face found in {_clip(where)} at frame(s) {frame_ranges(frames)} "
            f"({detector} detector): gaps longer than max_gap={max_gap} frames are not "
            "interpolated.")
    ok = np.flatnonzero(found)
    filled = landmarks.astype(np.float64)
    pos = np.searchsorted(ok, missing)
    prev = ok[np.clip(pos - 1, 0, len(ok) - 1)]
    nxt = ok[np.clip(pos, 0, len(ok) - 1)]
    span = np.where(nxt != prev, nxt - prev, 1)
    w = np.clip((missing - prev) / span, 0.0, 1.0)[:, None, None]
    filled[missing] = (1 - w) * filled[prev] + w * filled[nxt]
    return filled


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarities (Umeyama [3]_) mapping ``src`` onto ``dst``.

    ``src`` (T, N, 2), ``dst`` (N, 2); returns (T, 4): ``tx, ty`` (pixels),
    log scale, angle (radians), such that ``dst ~ s R(angle) src + t``.
    """
    ms, md = src.mean(axis=1, keepdims=True), dst.mean(axis=0)
    a, b = src - ms, dst - md
    dot = (a * b).sum(axis=(1, 2))
    cross = (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]).sum(axis=1)
    norm = (a ** 2).sum(axis=(1, 2))
    if np.any(norm < 1e-9):
        raise ParameterError("Invalid landmarks: the rigid landmarks of a frame coincide.")
    c, s = dot / norm, cross / norm
    scale, angle = np.hypot(c, s), np.arctan2(s, c)
    t = md - np.stack([c * ms[:, 0, 0] - s * ms[:, 0, 1], s * ms[:, 0, 0] + c * ms[:, 0, 1]],
                      axis=-1)
    return np.column_stack([t, np.log(scale), angle])


def _whittaker(z: np.ndarray, lam: float) -> np.ndarray:
    """Whittaker-Henderson smoothing of the columns of ``z`` (T, K) [4]_:
    ``argmin_x |x - z|^2 + lam |D2 x|^2``, D2 the second difference (a banded solve)."""
    from scipy.linalg import solveh_banded  # start-up: scipy.linalg, only --mode every

    T = len(z)
    if T < 3 or lam <= 0:
        return z.copy()
    # lam * D2' D2 + I, symmetric pentadiagonal: upper bands for solveh_banded
    main = np.full(T, 6.0)
    main[[0, -1]] = 1.0
    main[[1, -2]] = 5.0
    off1 = np.full(T - 1, -4.0)
    off1[[0, -1]] = -2.0
    off2 = np.ones(T - 2)
    if T == 3:
        main, off1 = np.array([1.0, 4.0, 1.0]), np.array([-2.0, -2.0])
    ab = np.zeros((3, T))
    ab[2] = 1.0 + lam * main
    ab[1, 1:] = lam * off1
    ab[0, 2:] = lam * off2
    return solveh_banded(ab, z)


def stable_transforms(landmarks: np.ndarray, *, size: int = 128, margin: float = 0.125,
                      smooth: float = 8.0) -> np.ndarray:
    """Per-frame crop transforms that follow the head but not landmark jitter.

    Parameters
    ----------
    landmarks : ndarray, shape (T, 68, 2)
        Each frame's landmarks in frame pixels (gaps already filled).
    size, margin
        As in :func:`alignment_transform`: the crop's framing, taken on the
        clip's median landmarks.
    smooth : float
        Time scale in frames of the Whittaker-Henderson smoother of the head
        pose (lambda = ``smooth ** 4``; motion slower than about
        ``2 pi smooth`` frames is followed); 0: each frame's own pose.

    Returns
    -------
    ndarray, shape (T, 2, 3), float64
        ``M_t = C @ P_t``: the median's crop ``C`` after the frame's head pose
        ``P_t`` (the least-squares similarity of its rigid landmarks
        :data:`RIGID_LANDMARKS` onto the median's [3]_), smoothed over time [4]_.

    References
    ----------
    .. [3] Umeyama 1991; .. [4] Eilers 2003 (see the module's references).
    """
    L = _check_landmarks(landmarks)
    if L.ndim != 3:
        raise ParameterError(f"Invalid shape for the 'landmarks' parameter: expected "
                             f"(T, 68, 2), but got shape {L.shape!r}.")
    size = _check_size(size)
    check_range("smooth", float(smooth), 0.0)
    reference = np.median(L, axis=0)
    crop = alignment_transform(reference, size=size, margin=margin)
    pose = _fit_similarity(L[:, RIGID_LANDMARKS], reference[RIGID_LANDMARKS])
    pose[:, 3] = np.unwrap(pose[:, 3])
    if smooth > 0:
        pose = _whittaker(pose, float(smooth) ** 4)
    k = np.exp(pose[:, 2])
    c, s = k * np.cos(pose[:, 3]), k * np.sin(pose[:, 3])
    P = np.zeros((len(L), 3, 3))
    P[:, 0, 0], P[:, 0, 1], P[:, 0, 2] = c, -s, pose[:, 0]
    P[:, 1, 0], P[:, 1, 1], P[:, 1, 2] = s, c, pose[:, 1]
    P[:, 2, 2] = 1.0
    C = np.vstack([crop, [0.0, 0.0, 1.0]])
    return (C @ P)[:, :2, :]


def align_clip(frames: np.ndarray, *, mode: str = "first", detector: str = "dlib",
               size: int = 128, margin: float = 0.125, grey: bool = True,
               smooth: float = 8.0, max_gap: int = 5, refit: bool = False,
               upsample: int | None = None, device: str | None = None,
               where: str = "") -> AlignedClip:
    """Detect, align and crop the face of a clip.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, 3), uint8
        The clip, grey or RGB.
    mode : {"first", "every"}
        ``"first"`` (default, MEAN): landmarks on the first frame, the same
        crop for all frames. ``"every"``: landmarks and crop per frame,
        smoothed over time. See the module docstring.
    detector : {"dlib", "fan"}
        Landmark backend (:mod:`mexkit.face.landmarks`).
    size : int
        Side of the crops in pixels (default 128).
    margin : float
        Border around the landmarks' box as a fraction of its longer side
        (default 0.125; see :func:`alignment_transform`).
    grey : bool
        Return grey crops ``(T, S, S)`` (default) or RGB ``(T, S, S, 3)``
        (grey input is then repeated over the 3 channels).
    smooth : float
        ``"every"`` mode: time scale in frames of the smoother of the head
        pose (:func:`stable_transforms`; Whittaker-Henderson, lambda =
        ``smooth ** 4``); 0 turns it off.
    max_gap : int
        ``"every"`` mode: longest run of frames without a face that is
        interpolated (and flagged); longer runs raise NoFaceError.
    refit : bool
        ``"first"`` mode: re-estimate the landmarks of every frame inside the
        first frame's face box (the crop does not change). Default False: all
        frames report the first frame's landmarks.
    upsample : int or None
        dlib detector upsampling (see :func:`~mexkit.face.landmarks.detect_landmarks`).
    device : str or None
        ``"fan"`` only: torch device.
    where : str
        The clip, for messages (e.g. ``"clip 'sub01/EP02_01f'"``).

    Returns
    -------
    AlignedClip
        ``frames`` (T, S, S[, 3]) uint8, ``landmarks`` (T, 68, 2) float32 in
        crop pixels, ``transforms`` (T, 2, 3), ``scores`` (T,),
        ``interpolated`` (T,) bool.

    Raises
    ------
    NoFaceError
        No face on the first frame (``"first"``), or on more than ``max_gap``
        consecutive frames or on all frames (``"every"``); the message names
        the clip and the frames.

    References
    ----------
    .. [1] MEAN (Liong, See, Chan), section 3.1: dlib, first frame, one crop
       of 128x128 for all frames.
    """
    frames = check_frames(frames)
    check_option("mode", mode, MODES)
    check_option("detector", detector, DETECTORS)
    size = _check_size(size)
    check_range("margin", float(margin), 0.0, 2.0)
    check_range("smooth", float(smooth), 0.0)
    if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)) or max_gap < 0:
        raise ParameterError(f"Invalid value for the 'max_gap' parameter: expected an integer "
                             f">= 0, but got {max_gap!r}.")
    T = len(frames)
    interpolated = np.zeros(T, dtype=bool)
    if mode == "first":
        det = detect_landmarks(frames[0], detector=detector, upsample=upsample, device=device,
                               where=frame_names(where, 1)[0])
        if not refit:
            return crop_with_landmarks(lambda a, b: frames[a:b], T, det.landmarks, det.score,
                                       size=size, margin=margin, grey=grey)
        M = alignment_transform(det.landmarks, size=size, margin=margin)
        transforms = np.repeat(M[None], T, axis=0)
        lm_frame = np.repeat(det.landmarks[None].astype(np.float64), T, axis=0)
        if refit:
            for t in range(1, T):
                lm_frame[t] = fit_landmarks(frames[t], det.box, detector=detector,
                                            device=device)
        scores = np.full(T, det.score, dtype=np.float32)
        crops = apply_transform(frames, M, size=size)
    else:
        batch = detect_landmarks_batch(frames, detector=detector, upsample=upsample,
                                       device=device, allow_missing=True, where=where)
        return align_detected(lambda a, b: frames[a:b], T, batch, detector=detector,
                              size=size, margin=margin, grey=grey, smooth=smooth,
                              max_gap=max_gap, chunk=max(T, 1), where=where)
    landmarks = transform_points(lm_frame, transforms).astype(np.float32)
    return AlignedClip(_colour(crops, grey), landmarks, transforms, scores, interpolated)


def align_detected(read_range: Callable[[int, int], np.ndarray], n_frames: int,
                   batch: DetectionBatch, *, detector: str = "dlib", size: int = 128,
                   margin: float = 0.125, grey: bool = True, smooth: float = 8.0,
                   max_gap: int = 5, chunk: int = 256, where: str = "") -> AlignedClip:
    """``"every"`` mode of :func:`align_clip` from the detections of every frame.

    For a long video detected in pieces (each piece's
    :func:`~mexkit.face.landmarks.detect_landmarks_batch` joined into one
    batch): the gaps are filled and the head pose smoothed over the whole
    clip at once, as :func:`align_clip` does, and the frames are read and
    warped ``chunk`` at a time, so that the clip is never held whole in
    memory.  The result equals :func:`align_clip`'s on the same detections.

    Parameters
    ----------
    read_range : callable
        ``read_range(a, b) -> frames[a:b]``, uint8 ``(b - a, H, W[, 3])``, the
        frames the detections were made on.
    n_frames : int
        Frames of the clip (the length of ``batch``).
    batch : DetectionBatch
        Each frame's face (``found`` False where none was found).
    detector : str
        The detector that made ``batch``, for messages.
    size, margin, grey, smooth, max_gap, where
        As in :func:`align_clip`.
    chunk : int
        Frames read and warped at a time.

    Returns
    -------
    AlignedClip

    Raises
    ------
    NoFaceError
        No face in any frame, or in more than ``max_gap`` consecutive frames.

    References
    ----------
    .. [3] Umeyama 1991; .. [4] Eilers 2003 (see the module's references).
    """
    size = _check_size(size)
    check_range("margin", float(margin), 0.0, 2.0)
    check_range("chunk", chunk, 1)
    if len(batch.found) != n_frames:
        raise ParameterError(f"Invalid value for the 'batch' parameter: {len(batch.found)} "
                             f"frames of detections for the {n_frames} frames of "
                             f"{_clip(where)}.")
    lm_frame = _fill_gaps(batch.landmarks, batch.found, max_gap, where, detector)
    interpolated = ~np.asarray(batch.found, dtype=bool)
    if interpolated.any():
        logger.info("Interpolated the face in %s at frame(s) %s.", _clip(where),
                    frame_ranges(np.flatnonzero(interpolated)))
    transforms = stable_transforms(lm_frame, size=size, margin=float(margin),
                                   smooth=float(smooth))
    crops = []
    for a in range(0, n_frames, chunk):
        b = min(n_frames, a + chunk)
        frames = check_frames(read_range(a, b))
        if len(frames) != b - a:
            raise MediaError(f"{_clip(where)}: frames {a}..{b - 1} gave {len(frames)} "
                             "frames on a second reading.")
        crops.append(_colour(apply_transform(frames, transforms[a:b], size=size), grey))
    landmarks = transform_points(lm_frame, transforms).astype(np.float32)
    return AlignedClip(np.concatenate(crops), landmarks, transforms, batch.scores.copy(),
                       interpolated)


def crop_with_landmarks(read_range: Callable[[int, int], np.ndarray], n_frames: int,
                        landmarks: np.ndarray, score: float, *, size: int = 128,
                        margin: float = 0.125, grey: bool = True, chunk: int = 256,
                        keep: ChunkKeeper | None = None) -> AlignedClip:
    """Crop every frame of a clip with the one transform that ``landmarks`` give.

    ``"first"`` mode of :func:`align_clip` (MEAN's one crop for all frames)
    for clips read in chunks, so that a long video is never held whole in
    memory before it is cropped.

    Parameters
    ----------
    read_range : callable
        ``read_range(a, b) -> frames[a:b]``, uint8 ``(b - a, H, W[, 3])``.
    n_frames : int
        Frames of the clip.
    landmarks : ndarray, shape (68, 2)
        The face's landmarks in frame pixels (e.g. of the first frame with a
        face, :func:`~mexkit.face.track.track_first_face`).
    score : float
        Their detection score, reported for every frame.
    size, margin, grey
        As in :func:`align_clip`.
    chunk : int
        Frames read and cropped at a time.
    keep : callable, optional
        ``keep(a, b, M, make)`` returns the crops of frames ``a..b-1`` by the
        map ``M`` (2, 3): ``make()`` reads and crops them; a caller that kept
        them from an earlier run (a long video's staged pieces) may return
        those instead.

    Returns
    -------
    AlignedClip
    """
    size = _check_size(size)
    check_range("margin", float(margin), 0.0, 2.0)
    check_range("chunk", chunk, 1)
    M = alignment_transform(landmarks, size=size, margin=margin)

    def make(a: int, b: int) -> np.ndarray:
        return _colour(apply_transform(check_frames(read_range(a, b)), M, size=size), grey)

    crops = [_kept(keep, a, min(n_frames, a + chunk), M, make)
             for a in range(0, n_frames, chunk)]
    T = int(sum(len(c) for c in crops))
    transforms = np.repeat(M[None], T, axis=0)
    points = transform_points(np.asarray(landmarks, np.float64), M).astype(np.float32)
    return AlignedClip(np.concatenate(crops), np.repeat(points[None], T, axis=0), transforms,
                       np.full(T, score, dtype=np.float32), np.zeros(T, dtype=bool))


def _kept(keep: ChunkKeeper | None, a: int, b: int, M: np.ndarray,
          make: Callable[[int, int], np.ndarray]) -> np.ndarray:
    return make(a, b) if keep is None else keep(a, b, M, lambda: make(a, b))


def precropped(frames: np.ndarray, *, size: int | None = None, grey: bool = True,
               estimate_landmarks: bool = True, detector: str = "dlib",
               upsample: int | None = None, device: str | None = None,
               where: str = "") -> AlignedClip:
    """Wrap frames that are already face crops (``--detector none``).

    CASME II ships cropped faces; their frames are kept as they are, or
    resized to ``size x size`` (aspect ratio not kept) when ``size`` is given.

    Landmarks are estimated on the first frame (the detector runs on the
    frame, then, if it finds nothing, on the frame with a replicated border
    of a quarter of its longer side, which gives the HOG detector the context
    a tight crop lacks) and reported for every frame, as in ``"first"`` mode
    of :func:`align_clip`. When no face is found, the landmarks and scores
    are ``nan`` and a warning is logged: flow and strain on the whole crop
    still work, while the stages that need landmarks (MEAN regions, eye
    masking, head-motion removal) refuse the clip.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, 3), uint8
        Cropped faces.
    size : int or None
        Resize to ``size x size`` (area averaging when shrinking, bilinear
        otherwise); None (default) keeps the frames' size.
    grey : bool
        Grey output (default) or RGB.
    estimate_landmarks : bool
        Run the detector (default True); False gives ``nan`` landmarks.
    detector, upsample, device
        As in :func:`align_clip`.
    where : str
        The clip, for messages.

    Returns
    -------
    AlignedClip
        ``transforms`` is the identity, or the scaling
        ``x' = (x + 0.5) * size / W - 0.5`` (and likewise for y);
        ``interpolated`` is all False.
    """
    frames = check_frames(frames)
    check_option("detector", detector, DETECTORS)
    T, H, W = frames.shape[:3]
    M = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = frames
    if size is not None:
        size = _check_size(size)
        sx, sy = size / W, size / H
        M = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
        interp = cv2.INTER_AREA if sx <= 1 and sy <= 1 else cv2.INTER_LINEAR
        out = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
    landmarks = np.full((T, N_LANDMARKS, 2), np.nan, dtype=np.float32)
    scores = np.full(T, np.nan, dtype=np.float32)
    if estimate_landmarks:
        found = _find_in_crop(frames[0], detector, upsample, device,
                              frame_names(where, 1)[0])
        if found is None:
            logger.warning("No face found in the cropped frame 0 of %s; its landmarks are "
                           "unknown (nan).", _clip(where))
        else:
            pts, score = found
            landmarks[:] = transform_points(pts.astype(np.float64), M).astype(np.float32)
            scores[:] = score
    transforms = np.repeat(M[None], T, axis=0)
    return AlignedClip(_colour(out, grey), landmarks, transforms, scores,
                       np.zeros(T, dtype=bool))


def _find_in_crop(image: np.ndarray, detector: str, upsample: int | None,
                  device: str | None, where: str) -> tuple[np.ndarray, float] | None:
    try:
        det = detect_landmarks(image, detector=detector, upsample=upsample, device=device,
                               where=where)
        return det.landmarks, det.score
    except NoFaceError:
        pass
    pad = int(round(0.25 * max(image.shape[:2])))
    padded = cv2.copyMakeBorder(np.ascontiguousarray(image), pad, pad, pad, pad,
                                cv2.BORDER_REPLICATE)
    try:
        det = detect_landmarks(padded, detector=detector, upsample=upsample, device=device,
                               where=where)
    except NoFaceError:
        return None
    return det.landmarks - np.float32(pad), det.score
