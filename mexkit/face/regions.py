"""Facial regions of interest on per-pixel maps (frames, flow u and v, strain).

MEAN's region layout (section 3.1 of the paper), on a face crop with 68
landmarks (0-based iBUG indices ``p_i``, pixel coordinates rounded to the
nearest integer, margins of ``margin = 12`` px):

* eyebrow/eye band: ``x`` from ``p17.x - 12`` to ``p26.x + 12``, ``y`` from
  ``min(p19.y, p24.y) - 12`` to ``max(p41.y, p46.y) + 12``;
* mouth: ``x`` from ``p60.x - 12`` to ``p64.x + 12``, ``y`` from
  ``p50.y - 12`` to ``p57.y + 12``.

Both bounds are inclusive (a margin of 12 px on both sides) and are clamped
to the map. The paper resizes the image-left eye part (the subject's right
eye and eyebrow) and the image-right eye part to 21x21 pixels each and the
mouth to 21x42 (rows x columns), and assembles the three into one 42x42
image::

    +-----------+-----------+
    | left eye  | right eye |   rows 0-20: the band, cut at its middle column
    | 21 x 21   | 21 x 21   |
    +-----------+-----------+
    |     mouth 21 x 42     |   rows 21-41
    +-----------------------+

The two eye parts are the image-left and image-right halves of the band,
each resized on its own; this is, up to resampling at the middle seam, the
whole band resized to 21x42, which is what the public MEAN/SOFTNet code does.
The same boxes are cut from every map of a stack (u, v, strain, or frames).

SOFTNet (an earlier paper by the same authors, which MEAN builds on) adds two
steps, offered here as options: it blacks out the eyes (:func:`eye_mask`)
and subtracts the mean flow of an 11x11 box at the nose landmark p28 to
remove head motion (:func:`remove_head_motion`). Its order is: head motion,
then eye mask, then regions.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos"
   (MEAN), section 3.1 (ROI selection, 12 px margins, 42x42 assembly).
.. [2] G.-B. Liong, J. See, L.-K. Wong, "Shallow optical flow three-stream CNN
   for macro- and micro-expression spotting from long videos" (SOFTNet),
   ICIP 2021 (eye masking, nose-box head-motion removal).
"""
from __future__ import annotations

import cv2
import numpy as np

from .._validate import check_option, check_range
from ..errors import ParameterError

__all__ = ["REGION_SIZE", "mean_region_boxes", "mean_regions", "eye_mask",
           "remove_head_motion"]

#: Side of MEAN's assembled region image.
REGION_SIZE = 42
_HALF = REGION_SIZE // 2
_INTERP = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.shape != (68, 2):
        raise ParameterError(
            f"Invalid shape for the 'landmarks' parameter: expected (68, 2) iBUG-68 "
            f"landmarks, but got shape {arr.shape!r}.")
    if not np.isfinite(arr).all():
        raise ParameterError(
            "The 'landmarks' parameter holds nan or inf: this clip has no landmarks "
            "(a pre-cropped clip on which no face was found?), so its regions cannot be cut.")
    return arr


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(
            f"Invalid value for the {name!r} parameter: expected an integer, but got {value!r}.")
    check_range(name, int(value), low)
    return int(value)


def _box(x0: float, y0: float, x1: float, y1: float, height: int,
         width: int) -> tuple[int, int, int, int]:
    """Inclusive rounded bounds -> clamped half-open box (x0, y0, x1, y1)."""
    bx0 = int(np.clip(np.rint(x0), 0, width - 1))
    by0 = int(np.clip(np.rint(y0), 0, height - 1))
    bx1 = int(np.clip(np.rint(x1), bx0, width - 1)) + 1
    by1 = int(np.clip(np.rint(y1), by0, height - 1)) + 1
    return bx0, by0, bx1, by1


def mean_region_boxes(landmarks: np.ndarray, *, shape: tuple[int, int] = (128, 128),
                      margin: int = 12) -> dict[str, tuple[int, int, int, int]]:
    """MEAN's region boxes from 68 landmarks.

    Parameters
    ----------
    landmarks : ndarray, shape (68, 2)
        iBUG-68 landmarks ``(x, y)`` in pixels of the maps.
    shape : (int, int)
        ``(H, W)`` of the maps the boxes are clamped to.
    margin : int
        Margin in pixels around the landmarks (12 in MEAN).

    Returns
    -------
    boxes : dict
        ``"eyes"`` (the eyebrow/eye band), ``"left_eye"`` and ``"right_eye"``
        (its image-left and image-right halves; the left half gets the middle
        column when the width is odd) and ``"mouth"``, each a half-open box
        ``(x0, y0, x1, y1)``: the region is ``maps[..., y0:y1, x0:x1]``.

    References
    ----------
    .. [1] MEAN (Liong, See, Chan), section 3.1.
    """
    L = np.rint(_check_landmarks(landmarks))
    height, width = (int(v) for v in shape)
    if height < 1 or width < 1:
        raise ParameterError(f"Invalid value for the 'shape' parameter: {shape!r}.")
    m = _check_int("margin", margin, 0)
    eyes = _box(L[17, 0] - m, min(L[19, 1], L[24, 1]) - m,
                L[26, 0] + m, max(L[41, 1], L[46, 1]) + m, height, width)
    mouth = _box(L[60, 0] - m, L[50, 1] - m, L[64, 0] + m, L[57, 1] + m, height, width)
    x0, y0, x1, y1 = eyes
    mid = x0 + (x1 - x0 + 1) // 2
    if x1 - x0 < 2:
        raise ParameterError(
            f"Invalid landmarks: the eyebrow/eye band {eyes} is narrower than 2 pixels.")
    return {"eyes": eyes, "left_eye": (x0, y0, mid, y1), "right_eye": (mid, y0, x1, y1),
            "mouth": mouth}


def eye_mask(landmarks: np.ndarray, *, shape: tuple[int, int] = (128, 128),
             margin: int = 15) -> np.ndarray:
    """SOFTNet's eye mask: the two eye polygons enlarged by ``margin`` pixels.

    Each eye's six landmarks (p36-p41 and p42-p47) are moved outwards before
    the polygon is filled: the eye corners (p36, p39; p42, p45) by ``margin``
    along x, the upper lid points (p37, p38; p43, p44) up by ``margin`` and the
    lower lid points (p40, p41; p46, p47) down by ``margin``.

    Parameters
    ----------
    landmarks : ndarray, shape (68, 2)
        Landmarks in pixels of the maps.
    shape : (int, int)
        ``(H, W)`` of the mask.
    margin : int
        Enlargement in pixels (15 in SOFTNet).

    Returns
    -------
    mask : ndarray, shape (H, W), bool
        True on the pixels to black out.

    References
    ----------
    .. [1] SOFTNet (Liong, See, Wong, ICIP 2021), eye masking.
    """
    L = np.rint(_check_landmarks(landmarks)).astype(np.int64)
    m = _check_int("margin", margin, 0)
    height, width = (int(v) for v in shape)
    canvas = np.zeros((height, width), dtype=np.uint8)
    #                 outer/inner corner,  upper lid,   inner/outer corner, lower lid
    offsets = np.array([[-m, 0], [0, -m], [0, -m], [m, 0], [0, m], [0, m]], dtype=np.int64)
    for first in (36, 42):
        poly = L[first:first + 6] + offsets
        cv2.fillPoly(canvas, [poly.astype(np.int32).reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


def mean_regions(maps: np.ndarray, landmarks: np.ndarray, *, mask_eyes: bool = False,
                 margin: int = 12, eye_margin: int = 15,
                 interpolation: str = "linear") -> np.ndarray:
    """Cut MEAN's three regions from per-pixel maps and assemble them into 42x42.

    Parameters
    ----------
    maps : ndarray, shape (..., H, W)
        Any stack of maps on the same pixel grid as ``landmarks``: frames,
        flow ``(P, 2, H, W)``, strain, or ``(P, 3, H, W)`` u, v, strain.
    landmarks : ndarray, shape (68, 2)
        iBUG-68 landmarks in pixels of the maps (the crop's landmarks).
    mask_eyes : bool
        Black out (set to 0) the eyes first, as SOFTNet does (:func:`eye_mask`
        with ``eye_margin``). MEAN does not; default False.
    margin : int
        Region margin in pixels (12 in MEAN).
    eye_margin : int
        Enlargement of the eye mask in pixels (15 in SOFTNet).
    interpolation : {"linear", "area"}
        Resampling of the regions to 21x21 / 21x42: bilinear (``cv2.resize``'s
        default, as in the public MEAN code) or area averaging.

    Returns
    -------
    regions : ndarray, shape (..., 42, 42), float32
        Rows 0-20: image-left eye part (columns 0-20) and image-right eye part
        (columns 21-41); rows 21-41: the mouth.

    References
    ----------
    .. [1] MEAN (Liong, See, Chan), section 3.1.
    """
    maps = np.asarray(maps)
    if maps.ndim < 2 or min(maps.shape[-2:]) < 1:
        raise ParameterError(f"Invalid shape for the 'maps' parameter: expected (..., H, W), "
                             f"but got shape {maps.shape!r}.")
    check_option("interpolation", interpolation, tuple(_INTERP))
    height, width = maps.shape[-2:]
    boxes = mean_region_boxes(landmarks, shape=(height, width), margin=margin)
    flat = maps.reshape((-1, height, width)).astype(np.float32)   # a copy
    if mask_eyes:
        flat[:, eye_mask(landmarks, shape=(height, width), margin=eye_margin)] = 0.0
    flag = _INTERP[interpolation]
    out = np.empty((flat.shape[0], REGION_SIZE, REGION_SIZE), dtype=np.float32)
    ex0, ey0, ex1, ey1 = boxes["eyes"]
    mx0, my0, mx1, my1 = boxes["mouth"]
    lx1 = boxes["left_eye"][2]
    for i, m in enumerate(flat):
        out[i, :_HALF, :_HALF] = cv2.resize(m[ey0:ey1, ex0:lx1], (_HALF, _HALF),
                                            interpolation=flag)
        out[i, :_HALF, _HALF:] = cv2.resize(m[ey0:ey1, lx1:ex1], (_HALF, _HALF),
                                            interpolation=flag)
        out[i, _HALF:, :] = cv2.resize(m[my0:my1, mx0:mx1], (REGION_SIZE, _HALF),
                                       interpolation=flag)
    return out.reshape(maps.shape[:-2] + (REGION_SIZE, REGION_SIZE))


def remove_head_motion(flow: np.ndarray, landmarks: np.ndarray, *, box: int = 11) -> np.ndarray:
    """Subtract the mean flow of a box at the nose, as SOFTNet does.

    The nose bridge landmark p28 moves with the head but hardly with facial
    expressions, so the mean of u and of v over a ``box x box`` square
    centred on it (clamped to the map) estimates the head's translation.
    Unlike SOFTNet's code, no absolute value is taken afterwards: the signs of
    u and v are kept.

    Parameters
    ----------
    flow : ndarray, shape (..., 2, H, W)
        Flow fields, channel 0 = u (x), 1 = v (y), in pixels.
    landmarks : ndarray, shape (68, 2)
        Landmarks in pixels of the flow.
    box : int
        Odd side of the nose box in pixels (11 in SOFTNet).

    Returns
    -------
    flow : ndarray, same shape, float32
        Each field minus its own nose-box mean (per leading index and per
        channel).

    References
    ----------
    .. [1] SOFTNet (Liong, See, Wong, ICIP 2021), head-motion removal.
    """
    flow = np.asarray(flow)
    if flow.ndim < 3 or flow.shape[-3] != 2:
        raise ParameterError(f"Invalid shape for the 'flow' parameter: expected (..., 2, H, W), "
                             f"but got shape {flow.shape!r}.")
    L = _check_landmarks(landmarks)
    box = _check_int("box", box, 1)
    if box % 2 == 0:
        raise ParameterError(f"Invalid value for the 'box' parameter: it must be odd, but got "
                             f"{box!r}.")
    height, width = flow.shape[-2:]
    cx, cy = (int(v) for v in np.rint(L[28]))
    if not (0 <= cx < width and 0 <= cy < height):
        raise ParameterError(f"Invalid landmarks: the nose landmark p28 {L[28].tolist()} lies "
                             f"outside the {height}x{width} flow.")
    h = box // 2
    x0, x1 = max(cx - h, 0), min(cx + h + 1, width)
    y0, y1 = max(cy - h, 0), min(cy + h + 1, height)
    out = flow.astype(np.float32)
    mean = out[..., y0:y1, x0:x1].mean(axis=(-2, -1), keepdims=True)
    return out - mean
