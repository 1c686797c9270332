"""Pictures of flow: the colour-wheel coding and arrow fields.

The colour coding is the one of the Middlebury flow benchmark ([1]_): the
hue gives the direction of motion, the saturation its magnitude relative to
a maximum, white meaning no motion. Hue 0 (red) is motion to the right
(+u), and hue turns through yellow and green as the direction turns towards
+v, which in image coordinates points down.

References
----------
.. [1] S. Baker, D. Scharstein, J. P. Lewis, S. Roth, M. J. Black,
   R. Szeliski, "A Database and Evaluation Methodology for Optical Flow",
   IJCV 92 (2011) 1-31.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError

__all__ = ["flow_to_colour", "colour_wheel", "arrow_grid"]


def _check_flow(flow: np.ndarray) -> np.ndarray:
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ParameterError(
            f"Invalid shape for the 'flow' parameter: expected (2, H, W), but got "
            f"{flow.shape!r}.")
    return flow


def flow_to_colour(flow: np.ndarray, *, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code one flow field.

    Parameters
    ----------
    flow : ndarray, shape (2, H, W)
        u (x) and v (y) in pixels.
    max_magnitude : float, optional
        Magnitude shown fully saturated; larger ones are clipped. Default:
        the field's largest finite magnitude (a still field is all white).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        RGB image; non-finite vectors are black.
    """
    import cv2  # start-up: importing mexkit.motion does not load OpenCV

    flow = _check_flow(flow)
    u, v = flow
    finite = np.isfinite(u) & np.isfinite(v)
    u = np.where(finite, u, 0)
    v = np.where(finite, v, 0)
    mag = np.hypot(u, v)
    top = float(mag.max()) if max_magnitude is None else float(max_magnitude)
    if not np.isfinite(top) or top < 0:
        raise ParameterError(
            f"Invalid value for the 'max_magnitude' parameter: expected a non-negative "
            f"number, but got {max_magnitude!r}.")
    sat = np.clip(mag / top, 0, 1) if top > 0 else np.zeros_like(mag)
    angle = np.degrees(np.arctan2(v, u)) % 360.0
    hsv = np.stack([angle / 2.0, sat * 255.0, np.full_like(sat, 255.0)], axis=-1)
    rgb = cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)
    rgb[~finite] = 0
    return rgb


def colour_wheel(size: int = 64) -> np.ndarray:
    """The key of :func:`flow_to_colour`: a disc whose colour at each point codes
    the vector from the centre to that point. Returns ``(size, size, 3)`` uint8."""
    if size < 3:
        raise ParameterError(f"Invalid value for the 'size' parameter: expected >= 3, "
                             f"but got {size!r}.")
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = np.stack([xs - c, ys - c])
    rgb = flow_to_colour(flow, max_magnitude=c)
    rgb[np.hypot(xs - c, ys - c) > c] = 255
    return rgb


def arrow_grid(flow: np.ndarray, *, step: int = 8) -> tuple[np.ndarray, ...]:
    """Positions and vectors of a flow field sampled every ``step`` pixels.

    Parameters
    ----------
    flow : ndarray, shape (2, H, W)
    step : int
        Spacing in pixels; each arrow is the mean vector of its cell.

    Returns
    -------
    x, y, u, v : ndarray, shape (rows, cols)
        Cell centres (pixels) and mean flow (pixels).
    """
    flow = _check_flow(flow)
    if step < 1:
        raise ParameterError(f"Invalid value for the 'step' parameter: expected >= 1, "
                             f"but got {step!r}.")
    _, h, w = flow.shape
    rows, cols = max(h // step, 1), max(w // step, 1)
    cut = np.nan_to_num(flow[:, :rows * step, :cols * step])
    cells = cut.reshape(2, rows, step, cols, step).mean(axis=(2, 4))
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return xs * step + (step - 1) / 2, ys * step + (step - 1) / 2, cells[0], cells[1]
