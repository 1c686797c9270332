"""Device choice, in one place: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

Every layer that runs torch code (batched TV-L1, RPCA, FAN landmarks,
training) resolves its ``device`` option with :func:`resolve_device`, so the
same spelling means the same thing everywhere and asking for a GPU that is
not there gives the same error.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from .errors import ParameterError

__all__ = ["resolve_device", "cuda_possible", "usable_cores"]


def cuda_possible() -> bool:
    """Whether a GPU may be there, without importing torch: an NVIDIA driver (Linux)."""
    return os.path.exists("/proc/driver/nvidia/version") or sys.platform != "linux"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; the machine's elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: Any = "auto", *, like: Any = None) -> Any:
    """Return the ``torch.device`` that ``device`` names.

    Parameters
    ----------
    device : str or torch.device or None
        ``"auto"`` (or None): the device of ``like`` when it is a tensor on
        a GPU, else CUDA when torch sees one, else the CPU. ``"cpu"``,
        ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
    like : torch.Tensor, optional
        Data whose device ``"auto"`` follows.

    Returns
    -------
    torch.device

    Raises
    ------
    ParameterError
        For an unknown name, a device type other than CPU and CUDA, or CUDA
        asked for where torch sees none.
    """
    import torch

    if device is None or device == "auto":
        if isinstance(like, torch.Tensor) and like.device.type != "cpu":
            return like.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError(
            f"Invalid value for the 'device' parameter. Allowed values are 'auto', 'cpu', "
            f"'cuda' or 'cuda:N', but got {device!r} instead.") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ParameterError(
            f"Invalid value for the 'device' parameter. Allowed values are 'auto', 'cpu', "
            f"'cuda' or 'cuda:N', but got {device!r} instead.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(
            f"Invalid value for the 'device' parameter: {device!r} was asked for, but torch "
            "sees no CUDA device.")
    return resolved
