"""Device choice, in one place: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

Every command that runs torch code (batched TV-L1, RPCA, FAN landmarks,
training, prediction, spotting) takes one ``--device`` option with these
spellings, and every layer resolves it here: :func:`check_device_name`
checks the spelling without importing torch, :func:`check_device` also
checks that a CUDA device asked for is there (the pipeline calls it once,
before any work), and :func:`resolve_device` gives the ``torch.device``. The
same spelling therefore means the same thing everywhere, and a GPU that is
not there gives one error, naming it.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any

from .errors import ParameterError

__all__ = ["DEVICE_HELP", "check_device_name", "check_device", "resolve_device",
           "cuda_possible", "usable_cores"]

#: What the ``--device`` option of every command accepts.
DEVICE_HELP = ("auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N "
               "(GPU N)")

_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def cuda_possible() -> bool:
    """Whether a GPU may be there, without importing torch: an NVIDIA driver (Linux)."""
    return os.path.exists("/proc/driver/nvidia/version") or sys.platform != "linux"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; the machine's elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _invalid(device: Any) -> ParameterError:
    return ParameterError(
        f"Invalid value for the 'device' parameter. Allowed values are 'auto', 'cpu', "
        f"'cuda' or 'cuda:N', but got {device!r} instead.")


def check_device_name(device: Any) -> str:
    """Return ``device`` as a name if it is spelt as a device, without importing torch.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (None means the same), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``; a ``torch.device`` of type CPU or CUDA.

    Raises
    ------
    ParameterError
        For any other value, naming it.
    """
    if device is None:
        return "auto"
    if type(device).__name__ == "device" and type(device).__module__ == "torch":
        device = str(device)
    if not isinstance(device, str) or not _NAME.fullmatch(device):
        raise _invalid(device)
    return device


def check_device(device: Any) -> str:
    """Return the name of ``device`` if it is spelt right and there; else raise.

    ``"auto"`` and ``"cpu"`` are always there (torch is not imported for
    them); a CUDA device must be seen by torch, and ``cuda:N`` must have
    ``N`` below the number of devices it sees.

    Raises
    ------
    ParameterError
        Naming the device asked for and what torch sees.
    """
    name = check_device_name(device)
    if not name.startswith("cuda"):
        return name
    import torch  # only for a GPU asked for: "cpu" and "auto" start without torch

    if not torch.cuda.is_available():
        raise ParameterError(
            f"Invalid value for the 'device' parameter: {name!r} was asked for, but torch "
            "sees no CUDA device.")
    index = int(name.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ParameterError(
            f"Invalid value for the 'device' parameter: {name!r} was asked for, but torch "
            f"sees {count} CUDA device(s) (cuda:0 to cuda:{count - 1}).")
    return name


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
        For an unknown name, a device type other than CPU and CUDA, or a
        CUDA device that torch does not see (:func:`check_device`).
    """
    name = check_device(device)
    import torch  # the caller computes with torch anyway; this module stays torch-free

    if name == "auto":
        if isinstance(like, torch.Tensor) and like.device.type != "cpu":
            return like.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
