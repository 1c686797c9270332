"""Input check shared by the functions that take flow fields."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import check_ndim
from ..errors import ParameterError


def as_flow(flow: Any, name: str = "flow", *, dtype: Any = np.float32) -> np.ndarray:
    """Return ``flow`` as an array of shape (P, 2, H, W) or (2, H, W).

    Accepts numpy arrays and torch tensors; raises ParameterError (naming
    parameter ``name``) for other shapes or a non-float dtype.  The result is
    cast to ``dtype`` (float32 by default; None keeps the input's).
    """
    try:
        import torch

        if isinstance(flow, torch.Tensor):
            flow = flow.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    array = np.asarray(flow)
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
