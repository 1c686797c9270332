"""General helpers for dense flow fields: backward warping and the endpoint error.

Any flow of ``(P, 2, H, W)`` (channel 0 horizontal, channel 1 vertical, in
pixels, ``reference(x) ~ moving(x + flow(x))``) can be checked with these,
whichever method computed it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import check_ndim, check_option
from ..errors import ParameterError
from ._flowarray import as_flow

__all__ = ["flow_endpoint_error", "warp"]

# largest pixel count of one batch: the flat tap indices are int32
_MAX_INDEX = (1 << 31) - 1


def flow_endpoint_error(flow: Any, truth: Any, *, mask: Any = None) -> float:
    """Mean endpoint error between two flows, in pixels.

    Parameters
    ----------
    flow, truth : array_like, shape (P, 2, H, W) or (2, H, W)
        Estimated and true flow, channel 0 horizontal, channel 1 vertical.
    mask : array_like of bool, optional
        Pixels to average over, broadcastable to (P, H, W) (e.g. (H, W) to
        leave out a border); default all.

    Returns
    -------
    float
        Mean over the selected pixels of ``sqrt((u - u*)**2 + (v - v*)**2)``.

    References
    ----------
    .. [1] S. Baker et al., "A database and evaluation methodology for
       optical flow", IJCV 92 (2011), pp. 1-31.
    """
    a = as_flow(flow, "flow", dtype=np.float64)
    b = as_flow(truth, "truth", dtype=np.float64)
    if a.shape != b.shape:
        raise ParameterError(
            f"The 'flow' and 'truth' shapes differ: {a.shape!r} and {b.shape!r}."
        )
    epe = np.sqrt(((a - b) ** 2).sum(axis=-3))
    if mask is None:
        return float(epe.mean())
    try:
        m = np.broadcast_to(np.asarray(mask, dtype=bool), epe.shape)
    except ValueError as exc:
        raise ParameterError(
            f"Invalid shape for the 'mask' parameter: {np.shape(mask)!r} does not "
            f"broadcast to {epe.shape!r}."
        ) from exc
    if not m.any():
        raise ParameterError("The 'mask' parameter selects no pixel.")
    return float(epe[m].mean())


def warp(image: Any, flow: Any, *, interpolation: str = "bicubic",
         border: str = "replicate") -> np.ndarray:
    """Backward-warp frames by a flow: ``out(x) = image(x + flow(x))``.

    With the flow of :func:`~mexkit.motion.tvl1.tvl1_flow` (``reference ~ moving(x + flow)``),
    ``warp(moving, flow)`` approximates ``reference``.

    Parameters
    ----------
    image : array_like, shape (H, W), (H, W, 3), (P, H, W) or (P, H, W, 3)
        Frames, uint8 or float.
    flow : array_like, shape (2, H, W) or (P, 2, H, W)
        Flow in pixels (channel 0 horizontal); one flow for all frames or one
        per frame.
    interpolation : {"bicubic", "bilinear"}
        Bicubic is Keys' kernel with a = -0.75 (as OpenCV and torch).
    border : {"replicate", "zero"}
        Values read outside the frame.

    Returns
    -------
    numpy.ndarray
        Same shape as `image`; uint8 input gives uint8 (rounded and clipped),
        float input gives float32.
    """
    check_option("interpolation", interpolation, ("bicubic", "bilinear"))
    check_option("border", border, ("replicate", "zero"))
    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    fl = as_flow(flow, "flow")
    check_ndim("image", img, (2, 3, 4), "(H, W), (H, W, 3), (P, H, W) or (P, H, W, 3) frames")
    is_uint8 = img.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(img.dtype, np.floating)):
        raise ParameterError(
            f"Invalid dtype for the 'image' parameter: expected uint8 or float, got {img.dtype}."
        )
    h, w = fl.shape[-2:]
    colour = img.ndim == 4 or (img.ndim == 3 and img.shape[-1] == 3 and img.shape[:2] == (h, w))
    batched = img.ndim == 4 or (img.ndim == 3 and not colour)
    frames = img if batched else img[None]
    if not colour:
        frames = frames[..., None]
    if frames.shape[1:3] != (h, w):
        raise ParameterError(
            f"The 'image' size {frames.shape[1:3]!r} differs from the 'flow' size {(h, w)!r}."
        )
    flows = fl if fl.ndim == 4 else fl[None]
    if flows.shape[0] not in (1, frames.shape[0]):
        raise ParameterError(
            f"The 'flow' holds {flows.shape[0]} fields for {frames.shape[0]} frames."
        )
    flows = np.broadcast_to(flows, (frames.shape[0],) + flows.shape[1:])
    import torch  # start-up: torch, only warp needs it

    from .tvl1_torch import remap  # start-up: tvl1_torch imports torch

    channels = [torch.from_numpy(np.array(frames[..., k], dtype=np.float32))
                for k in range(frames.shape[-1])]
    t_flow = torch.from_numpy(np.array(flows, dtype=np.float32))
    if frames.shape[0] == 0:
        return np.zeros(img.shape, dtype=np.uint8 if is_uint8 else np.float32)
    # chunks of frames keep the flat int32 tap indices in range
    chunk = max(1, _MAX_INDEX // (h * w))
    parts = []
    with torch.no_grad():
        for start in range(0, t_flow.shape[0], chunk):
            sel = slice(start, start + chunk)
            map_x = torch.arange(w, dtype=torch.float32)[None, None, :] + t_flow[sel, 0]
            map_y = torch.arange(h, dtype=torch.float32)[None, :, None] + t_flow[sel, 1]
            warped = remap([c[sel] for c in channels], map_x, map_y,
                           interpolation=interpolation, zero_border=border == "zero")
            parts.append(torch.stack(warped, dim=-1))
    result = torch.cat(parts).numpy()
    if not colour:
        result = result[..., 0]
    if not batched:
        result = result[0]
    if is_uint8:
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(result, dtype=np.float32)


