"""Input checks shared by the functions that take flow fields or frame pairs."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .._validate import check_ndim
from ..errors import ParameterError


def _to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array (torch tensors are detached and copied to the CPU).

    torch is not imported for this: where it is not loaded yet, ``x`` cannot
    be a tensor (the CPU flow engine runs without torch).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_frames(name: str, frames: Any, *, dtype: Any = np.float32) -> tuple[np.ndarray, bool]:
    """Return grey ``frames`` as a new (P, H, W) float array in [0, 1], and a 2-D flag.

    uint8 frames are divided by 255; float frames must be finite and are cast
    to ``dtype`` (None keeps their float type).  Raises ParameterError naming
    parameter ``name`` for other shapes or dtypes.
    """
    array = _to_numpy(frames)
    check_ndim(name, array, (2, 3), "(P, H, W) or (H, W) grey frames")
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ParameterError(f"The {name!r} frames contain NaN or infinite values.")
        out = np.array(array, dtype=dtype)  # always a writable copy
    else:
        raise ParameterError(
            f"Invalid dtype for the {name!r} parameter: expected uint8 (0-255) or float "
            f"(0-1) frames, but got {array.dtype}."
        )
    single = out.ndim == 2
    return (out[None] if single else out), single


def as_frame_pair(reference: Any, moving: Any, *, dtype: Any = np.float32
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check the two frame stacks of a flow computation (see :func:`as_frames`).

    Returns ``(reference, moving, single)``; both are (P, H, W), of the same
    shape and at least 3 x 3 pixels.
    """
    ref, single = as_frames("reference", reference, dtype=dtype)
    mov, _ = as_frames("moving", moving, dtype=dtype)
    if ref.shape != mov.shape:
        raise ParameterError(
            f"The 'reference' and 'moving' frames must have the same shape, but got "
            f"{ref.shape} and {mov.shape}."
        )
    if ref.shape[1] < 3 or ref.shape[2] < 3:
        raise ParameterError(
            f"Frames must be at least 3 x 3 pixels, but got {ref.shape[1]} x {ref.shape[2]}."
        )
    return ref, mov, single


def as_flow(flow: Any, name: str = "flow", *, dtype: Any = np.float32) -> np.ndarray:
    """Return ``flow`` as an array of shape (P, 2, H, W) or (2, H, W).

    Accepts numpy arrays and torch tensors; raises ParameterError (naming
    parameter ``name``) for other shapes or a non-float dtype.  The result is
    cast to ``dtype`` (float32 by default; None keeps the input's).
    """
    array = _to_numpy(flow)
    check_ndim(name, array, (3, 4), "(P, 2, H, W) or (2, H, W) flow")
    if array.shape[-3] != 2:
        raise ParameterError(
            f"Invalid shape for the {name!r} parameter: expected 2 channels (u, v) on axis "
            f"-3, but got shape {array.shape!r}."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ParameterError(
            f"Invalid dtype for the {name!r} parameter: expected float, got {array.dtype}."
        )
    return array if dtype is None else np.asarray(array, dtype=dtype)
