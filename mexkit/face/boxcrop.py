"""Crops by the face detector's box on the first frame, without alignment.

Some published pipelines do not align the face: they run dlib's frontal face
detector on the first frame of a clip, cut every frame with that box (no
rotation, no margin), resize the cut to a square and store the frames as JPEG
files, which their training code reads back as grey images. Networks trained
on such frames see the detector's framing and the JPEG's loss; to give them
the same input from a video, :func:`detector_box` and :func:`box_crop` do
the same steps:

1. ``detector(frame, upsample)`` on the first frame as the program read it
   (OpenCV's BGR order; dlib's HOG features take the largest gradient over
   the colour channels, so the order does not change the boxes); the box of
   the *last* detection of dlib's list is kept, as a loop that assigns each
   detection in turn keeps it;
2. every frame is sliced ``frame[top:bottom, left:right]`` (dlib's
   ``top()``, ``bottom()``, ``left()``, ``right()``, so the cut is one pixel
   narrower than dlib's inclusive box) and resized to ``size x size`` with
   ``cv2.resize``'s default bilinear interpolation;
3. with ``jpeg_quality`` set, each resized colour crop is encoded as JPEG with
   ``cv2.imencode`` at that quality (OpenCV's default 95 is what
   ``cv2.imwrite`` uses) and decoded with ``cv2.imdecode``: grey crops with
   ``IMREAD_GRAYSCALE`` (libjpeg's luma, as ``cv2.imread(path, 0)`` reads a
   colour JPEG), colour crops with ``IMREAD_COLOR``. The encoder and decoder
   are the ones ``imwrite`` and ``imread`` call, so the frames equal those
   of a written and re-read file byte for byte. Without it, grey crops are
   ``cv2.cvtColor(BGR2GRAY)`` of the resized crop.

A box that reaches past the frame is cut at the frame's border (a program
that slices with negative numbers would wrap around instead, and fail).

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023); its public code
   (``face_crop.py``: dlib's detector with one upsampling on the first frame,
   the same box for every frame, 128 x 128, JPEG files read back as grey).
.. [2] D. E. King, "Dlib-ml: A Machine Learning Toolkit", JMLR 10 (2009)
   (the HOG frontal face detector).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .._validate import check_int, check_range
from ..errors import NoFaceError, ParameterError
from .align import AlignedClip, ChunkKeeper, _kept, transform_points
from .landmarks import _dlib_shape, check_frames

__all__ = ["DetectorBox", "detector_box", "box_crop", "box_transform", "jpeg_round_trip",
           "crop_clip_by_box"]


@dataclass(frozen=True)
class DetectorBox:
    """The detector's box on a clip's first frame.

    Attributes
    ----------
    left, top, right, bottom : int
        dlib's rectangle (``right`` and ``bottom`` are the slice ends used).
    score : float
        dlib's detection score of that box.
    n_faces : int
        How many faces dlib found; with several, the last one is kept.
    clipped : bool
        The box's left or top lay before the frame's and was cut at 0.
    """

    left: int
    top: int
    right: int
    bottom: int
    score: float
    n_faces: int
    clipped: bool = False

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _bgr(frame: np.ndarray, rgb: bool) -> np.ndarray:
    """A frame in OpenCV's order: RGB input is swapped (exactly), grey made 3-channel."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(frame[..., ::-1]) if rgb else np.ascontiguousarray(frame)


def detector_box(first_frame: np.ndarray, *, upsample: int = 1, rgb: bool = True,
                 where: str = "") -> DetectorBox:
    """dlib's frontal face box on a clip's first frame (see the module docstring).

    Parameters
    ----------
    first_frame : ndarray, shape (H, W, 3) or (H, W), uint8
        The frame as decoded (RGB, as mexkit's readers give it, unless
        ``rgb=False``: BGR).
    upsample : int
        dlib's upsampling of the image before detection (1, as in [1]_).
    rgb : bool
        Whether ``first_frame`` is in RGB order.
    where : str
        The clip, for messages.

    Returns
    -------
    DetectorBox

    Raises
    ------
    NoFaceError
        When dlib finds no face.
    """
    from .landmarks import dlib_detector_run  # loaded once per process, lazily

    frame = check_frames(first_frame[None], "first_frame")[0]
    check_int("upsample", upsample, 0)
    rects, scores = dlib_detector_run(_bgr(frame, rgb), int(upsample))
    if not len(rects):
        raise NoFaceError(f"{where or 'clip'}: dlib's face detector finds no face in the "
                          f"first frame (upsample {upsample}).")
    r = rects[-1]
    h, w = frame.shape[:2]
    left, top, right, bottom = int(r.left()), int(r.top()), int(r.right()), int(r.bottom())
    # slicing past the right or bottom edge stops at the edge, as numpy's slices do;
    # a negative left or top is cut at 0 (a slice would wrap around)
    box = (max(left, 0), max(top, 0), min(right, w), min(bottom, h))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise NoFaceError(f"{where or 'clip'}: dlib's face box {left, top, right, bottom} "
                          f"lies outside the {w}x{h} frame.")
    return DetectorBox(*box, score=float(scores[-1]), n_faces=len(rects),
                       clipped=left < 0 or top < 0)


def jpeg_round_trip(crop_bgr: np.ndarray, quality: int, *, grey: bool) -> np.ndarray:
    """A BGR crop encoded as JPEG and decoded, as grey or as RGB.

    Parameters
    ----------
    crop_bgr : ndarray, shape (H, W, 3), uint8
    quality : int
        JPEG quality, 1-100 (95: ``cv2.imwrite``'s default).
    grey : bool
        Decode as grey (``IMREAD_GRAYSCALE``) or as colour (returned RGB).
    """
    check_range("quality", quality, 1, 100)
    ok, buf = cv2.imencode(".jpg", crop_bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise ParameterError("OpenCV could not encode a crop as JPEG.")
    if grey:
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def box_crop(frames: np.ndarray, box: DetectorBox, *, size: int = 128, grey: bool = True,
             jpeg_quality: int = 0, rgb: bool = True) -> np.ndarray:
    """Cut ``box`` out of every frame, resize to ``size x size``, optionally JPEG round trip.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W, 3) or (T, H, W), uint8
    box : DetectorBox
    size : int
        Side of the square crops (128 in [1]_).
    grey : bool
        Grey crops (T, size, size), else RGB (T, size, size, 3).
    jpeg_quality : int
        0: no JPEG; otherwise the quality of the round trip (95 in [1]_).
    rgb : bool
        Whether colour ``frames`` are RGB (mexkit's readers) or BGR.

    Returns
    -------
    ndarray of uint8
    """
    frames = check_frames(frames)
    check_int("size", size, 1)
    check_int("jpeg_quality", jpeg_quality, 0)
    out = []
    for f in frames:
        cut = _bgr(f, rgb)[box.top:box.bottom, box.left:box.right]
        face = cv2.resize(cut, (size, size))
        if jpeg_quality:
            out.append(jpeg_round_trip(face, jpeg_quality, grey=grey))
        elif grey:
            out.append(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
        else:
            out.append(cv2.cvtColor(face, cv2.COLOR_BGR2RGB))
    return np.stack(out)


def box_transform(box: DetectorBox, size: int) -> np.ndarray:
    """The ``(2, 3)`` map from frame pixels to crop pixels of :func:`box_crop`.

    ``cv2.resize`` puts crop pixel ``q`` at cut pixel ``(q + 0.5) / s - 0.5``
    (``s`` = size / box side), so ``q = s (x - left + 0.5) - 0.5``.
    """
    sx, sy = size / box.width, size / box.height
    return np.array([[sx, 0.0, sx * (0.5 - box.left) - 0.5],
                     [0.0, sy, sy * (0.5 - box.top) - 0.5]])


def crop_clip_by_box(read_range: Callable[[int, int], np.ndarray], n_frames: int, *,
                     size: int = 128, grey: bool = True, jpeg_quality: int = 0,
                     upsample: int = 1, chunk: int = 256, where: str = "",
                     keep: ChunkKeeper | None = None) -> tuple[AlignedClip, DetectorBox]:
    """A whole clip cropped by the detector's box on its first frame, read in chunks.

    Parameters
    ----------
    read_range : callable
        ``read_range(a, b)``: frames ``a..b-1`` as RGB uint8 ``(n, H, W, 3)``.
    n_frames : int
    size, grey, jpeg_quality
        As in :func:`box_crop`.
    upsample : int
        As in :func:`detector_box`.
    chunk : int
        Frames read and cropped at a time.
    where : str
        The clip, for messages.
    keep : callable, optional
        ``keep(a, b, M, make)`` returns the crops of frames ``a..b-1`` by the
        map ``M`` (:func:`box_transform`): ``make()`` reads and crops them; a
        caller that kept them from an earlier run may return those instead
        (see :func:`~mexkit.face.align.crop_with_landmarks`).
        With it, the box is found on frame 0 read alone.

    Returns
    -------
    clip : AlignedClip
        The crops; the landmarks are dlib's 68 points on the first frame
        inside the box, mapped into the crop and repeated for every frame;
        the transforms :func:`box_transform`; the score the box's.
    box : DetectorBox
    """
    check_int("n_frames", n_frames, 1)
    check_int("chunk", chunk, 1)
    first = check_frames(read_range(0, 1 if keep is not None else min(n_frames, chunk)))
    box = detector_box(first[0], upsample=upsample, where=where)

    def make(a: int, b: int) -> np.ndarray:
        frames = first if (a, b) == (0, len(first)) else read_range(a, b)
        return box_crop(frames, box, size=size, grey=grey, jpeg_quality=jpeg_quality)

    M = box_transform(box, size)
    crops = [_kept(keep, a, min(n_frames, a + chunk), M, make)
             for a in range(0, n_frames, chunk)]
    frames = np.concatenate(crops)
    T = len(frames)
    grey0 = cv2.cvtColor(np.ascontiguousarray(first[0]), cv2.COLOR_RGB2GRAY) \
        if first.ndim == 4 else first[0]
    points = transform_points(_dlib_shape(grey0, np.array(
        [box.left, box.top, box.right, box.bottom], np.float64)).astype(np.float64), M)
    return AlignedClip(frames, np.repeat(points.astype(np.float32)[None], T, axis=0),
                       np.repeat(M[None], T, axis=0), np.full(T, box.score, np.float32),
                       np.zeros(T, dtype=bool)), box
