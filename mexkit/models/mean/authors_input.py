"""MEAN's input built as the authors' public code builds it (``mean_input="authors"``).

The authors' feature extraction, step by step, for two grey 128x128 crop
frames ``F_a`` (reference) and ``F_b`` and the clip's landmarks:

1. flow: OpenCV's ``DualTVL1OpticalFlow`` with its default parameters on the
   8-bit frames, ``F_a(x) ~ F_b(x + flow(x))``
   (:func:`opencv_tvl1_uint8`);
2. ``u, v``: the flow through ``cv2.cartToPolar`` (float32 magnitude and
   angle; OpenCV's angle is a fast approximation, about 0.3 degrees) and back
   with ``rho cos(phi)``, ``rho sin(phi)`` in float32
   (:func:`polar_round_trip`);
3. optical strain with backward differences, each derivative 0 where it is
   undefined (the first column for x, the first row for y), in float32:
   ``sqrt(u_x**2 + v_y**2 + (u_y + v_x)**2 / 2)`` with ``u_x[i, j] = u[i, j]
   - u[i, j - 1]`` and ``u_y[i, j] = u[i, j] - u[i - 1, j]``
   (:func:`backward_strain`);
4. each of ``u``, ``v`` and strain min-max normalised to [0, 1] over the
   whole field (``cv2.normalize`` with ``NORM_MINMAX``, in float64; a
   constant map becomes 0) (:func:`minmax_unit`);
5. two boxes from dlib's 68 points found on the clip's *first* crop frame
   with the whole frame as the face rectangle (0-based dlib part numbers;
   12 px margins; each bound clipped to the frame; end bounds exclusive, as
   a Python slice): eyebrows and eyes ``x`` from ``p17.x - 12`` to ``p26.x +
   12``, ``y`` from ``min(p19.y, p24.y) - 12`` to ``max(p41.y, p46.y) + 12``;
   mouth ``x`` from ``p60.x - 12`` to ``p64.x + 12``, ``y`` from ``p50.y -
   12`` to ``p57.y + 12`` (:func:`authors_boxes`);
6. each box of the three normalised maps resized with ``cv2.resize``
   (bilinear) to 42 x 21 (width x height), the eyebrow band on top of the
   mouth: a 42 x 42 image with channels u, v, strain
   (:func:`authors_regions`).

The paper (section 3.1) describes the eye parts as two 21x21 pieces and says
nothing of normalisation or of the difference scheme; the networks the
authors publish were trained on the input above, so mexkit builds it this way
by default (``mexkit flow --features mean``); ``mean_input="paper"`` keeps
mexkit's reading of the paper (:func:`mexkit.face.regions.mean_regions` on
unnormalised flow and central-difference strain).

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023), section 3.1, and the
   authors' public code (``feature_extraction.py``).
.. [2] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
   flow estimation", IPOL 3 (2013), pp. 137-150.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ...errors import ParameterError

__all__ = ["MEAN_INPUTS", "opencv_tvl1_uint8", "polar_round_trip", "backward_strain",
           "minmax_unit", "authors_boxes", "authors_regions", "authors_mean_input",
           "authors_landmarks"]

#: The ways ``mexkit flow --features mean`` can build MEAN's input.
MEAN_INPUTS = ("authors", "paper")
_MARGIN = 12
_W, _H = 42, 21


def opencv_tvl1_uint8(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """OpenCV DualTVL1 with its defaults on 8-bit frames, as the authors call it.

    Parameters
    ----------
    reference, moving : ndarray, shape (P, H, W) or (H, W), uint8
        Grey frames.

    Returns
    -------
    ndarray, shape (P, 2, H, W) or (2, H, W), float32
        Channel 0 horizontal, channel 1 vertical, in pixels.
    """
    ref = np.asarray(reference)
    mov = np.asarray(moving)
    if ref.dtype != np.uint8 or mov.dtype != np.uint8 or ref.shape != mov.shape \
            or ref.ndim not in (2, 3):
        raise ParameterError(
            f"Invalid frames for OpenCV's 8-bit TV-L1: expected two uint8 arrays of the same "
            f"shape (P, H, W) or (H, W), but got {ref.dtype} {ref.shape} and {mov.dtype} "
            f"{mov.shape}.")
    single = ref.ndim == 2
    ref, mov = (ref[None], mov[None]) if single else (ref, mov)
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    out = np.empty((ref.shape[0], 2) + ref.shape[1:], dtype=np.float32)
    for i in range(ref.shape[0]):
        out[i] = solver.calc(np.ascontiguousarray(ref[i]), np.ascontiguousarray(mov[i]),
                             None).transpose(2, 0, 1)
    return out[0] if single else out


def polar_round_trip(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``u, v`` of one flow field through ``cv2.cartToPolar`` and back, in float32.

    Parameters
    ----------
    flow : ndarray, shape (2, H, W)
        Channel 0 horizontal, 1 vertical.

    Returns
    -------
    u, v : ndarray, shape (H, W), float32
    """
    f = np.asarray(flow, dtype=np.float32)
    if f.ndim != 3 or f.shape[0] != 2:
        raise ParameterError(f"Invalid shape for the 'flow' parameter: expected (2, H, W), "
                             f"but got {f.shape!r}.")
    magnitude, angle = cv2.cartToPolar(np.ascontiguousarray(f[0]), np.ascontiguousarray(f[1]))
    return magnitude * np.cos(angle), magnitude * np.sin(angle)


def backward_strain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Optical strain magnitude with backward differences and zero fill, in float32.

    ``sqrt(u_x**2 + v_y**2 + (u_y + v_x)**2 / 2)`` where ``u_x[i, j] = u[i, j] -
    u[i, j - 1]`` (0 in column 0), ``u_y[i, j] = u[i, j] - u[i - 1, j]`` (0 in
    row 0), and likewise for ``v``; the sums are taken in this order.

    Parameters
    ----------
    u, v : ndarray, shape (H, W)

    Returns
    -------
    ndarray, shape (H, W), float32

    References
    ----------
    .. [1] MEAN, eq. 3; the authors' code takes backward differences.
    """
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if u.ndim != 2 or u.shape != v.shape:
        raise ParameterError(f"Invalid shapes for 'u' and 'v': expected two (H, W) maps, but "
                             f"got {u.shape!r} and {v.shape!r}.")

    def dx(a: np.ndarray) -> np.ndarray:
        d = np.zeros_like(a)
        d[:, 1:] = a[:, 1:] - a[:, :-1]
        return d

    def dy(a: np.ndarray) -> np.ndarray:
        d = np.zeros_like(a)
        d[1:] = a[1:] - a[:-1]
        return d

    ux, vy, uy, vx = dx(u), dy(v), dy(u), dx(v)
    shear = uy + vx
    total = ux ** 2 + vy ** 2 + np.float32(0.5) * shear ** 2
    return np.sqrt(total).astype(np.float32)


def minmax_unit(channel: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1] of a whole map, in float64 (``cv2.normalize``).

    A constant map (range at most the float64 epsilon) becomes all zeros, as
    OpenCV does.
    """
    a = np.ascontiguousarray(channel, dtype=np.float64)
    return cv2.normalize(a, None, alpha=0, beta=1, norm_type=cv2.NORM_MINMAX)


def authors_landmarks(first_frame: np.ndarray) -> np.ndarray:
    """dlib's 68 points on the clip's first crop frame, the whole frame as the face box.

    Parameters
    ----------
    first_frame : ndarray, shape (H, W), uint8
        The first grey crop frame.

    Returns
    -------
    ndarray, shape (68, 2), float32
        Integer pixel positions ``(x, y)`` (dlib's parts).
    """
    from ...face.landmarks import fit_landmarks  # start-up: dlib, only for these landmarks

    frame = np.asarray(first_frame)
    if frame.ndim != 2 or frame.dtype != np.uint8:
        raise ParameterError(f"Invalid first frame: expected a grey uint8 (H, W) image, but "
                             f"got {frame.dtype} {frame.shape}.")
    h, w = frame.shape
    return fit_landmarks(frame, np.array([0, 0, w, h], dtype=np.float32), detector="dlib")


def authors_boxes(landmarks: np.ndarray, *, shape: tuple[int, int] = (128, 128)
                  ) -> dict[str, tuple[int, int, int, int]]:
    """The eyebrow/eye band and the mouth box of the authors' code.

    Parameters
    ----------
    landmarks : ndarray, shape (68, 2)
        dlib's integer points ``(x, y)`` on the first crop frame.
    shape : (int, int)
        ``(H, W)`` of the maps (128 x 128 in the authors' code).

    Returns
    -------
    dict
        ``"eyes"`` and ``"mouth"``, each ``(x0, y0, x1, y1)`` with exclusive
        ends: the region is ``maps[y0:y1, x0:x1]``.

    Raises
    ------
    ParameterError
        Landmarks with NaN, or a box that is empty after clipping.
    """
    L = np.asarray(landmarks, dtype=np.float64)
    if L.shape != (68, 2) or not np.isfinite(L).all():
        raise ParameterError(f"Invalid landmarks: expected 68 finite (x, y) points, but got "
                             f"shape {L.shape!r}{' with NaN' if L.shape == (68, 2) else ''}.")
    L = np.rint(L).astype(np.int64)
    h, w = (int(s) for s in shape)
    m = _MARGIN

    def box(x0: int, y0: int, x1: int, y1: int, name: str) -> tuple[int, int, int, int]:
        b = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
        if b[2] <= b[0] or b[3] <= b[1]:
            raise ParameterError(
                f"Invalid landmarks: the {name} box {b} (x0, y0, x1, y1) is empty inside the "
                f"{h}x{w} frame.")
        return b

    eyes = box(L[17, 0] - m, min(max(L[19, 1] - m, 0), max(L[24, 1] - m, 0)),
               L[26, 0] + m, max(min(L[41, 1] + m, h), min(L[46, 1] + m, h)), "eyebrow/eye")
    mouth = box(L[60, 0] - m, L[50, 1] - m, L[64, 0] + m, L[57, 1] + m, "mouth")
    return {"eyes": eyes, "mouth": mouth}


def authors_regions(maps: np.ndarray, boxes: dict[str, tuple[int, int, int, int]]
                    ) -> np.ndarray:
    """Resize the two boxes of ``(H, W, 3)`` float64 maps to 42 x 21 each, eyebrows on top.

    Returns
    -------
    ndarray, shape (42, 42, 3), float64
    """
    out = np.zeros((2 * _H, _W, maps.shape[-1]), dtype=np.float64)
    ex0, ey0, ex1, ey1 = boxes["eyes"]
    mx0, my0, mx1, my1 = boxes["mouth"]
    out[:_H] = cv2.resize(np.ascontiguousarray(maps[ey0:ey1, ex0:ex1]), (_W, _H)
                          ).reshape(_H, _W, -1)
    out[_H:] = cv2.resize(np.ascontiguousarray(maps[my0:my1, mx0:mx1]), (_W, _H)
                          ).reshape(_H, _W, -1)
    return out


def authors_mean_input(flow: Any, landmarks: np.ndarray) -> np.ndarray:
    """MEAN's 42x42 input from flow fields, built as the authors' code builds it.

    Parameters
    ----------
    flow : array_like, shape (P, 2, H, W) or (2, H, W)
        Flow in pixels (channel 0 horizontal); for the authors' networks,
        OpenCV DualTVL1 with defaults on the 8-bit crop frames
        (:func:`opencv_tvl1_uint8`).
    landmarks : ndarray, shape (68, 2)
        dlib's points on the clip's first crop frame (:func:`authors_landmarks`);
        the same boxes serve every flow field of the clip.

    Returns
    -------
    ndarray, shape (P, 3, 42, 42) or (3, 42, 42), float32
        Channels u, v, strain, each normalised to [0, 1] over the whole field
        before the boxes are cut.

    References
    ----------
    .. [1] MEAN, section 3.1; the authors' ``feature_extraction.py``.
    """
    f = np.asarray(flow, dtype=np.float32)
    single = f.ndim == 3
    f = f[None] if single else f
    if f.ndim != 4 or f.shape[1] != 2:
        raise ParameterError(f"Invalid shape for the 'flow' parameter: expected (P, 2, H, W), "
                             f"but got {np.shape(flow)!r}.")
    boxes = authors_boxes(landmarks, shape=f.shape[-2:])
    out = np.empty((f.shape[0], 3, 2 * _H, _W), dtype=np.float32)
    maps = np.empty(f.shape[-2:] + (3,), dtype=np.float64)
    for i, field in enumerate(f):
        u, v = polar_round_trip(field)
        maps[..., 0] = u
        maps[..., 1] = v
        maps[..., 2] = backward_strain(u, v)
        for c in range(3):
            maps[..., c] = minmax_unit(maps[..., c])
        out[i] = authors_regions(maps, boxes).transpose(2, 0, 1)
    return out[0] if single else out
