"""Model checkpoints: one safetensors file, no pickle.

A checkpoint holds the model's state (``model.<key>``), the optimizer's
tensor state (``optim.<param>.<key>``) and, in the file's metadata, a JSON
document (``meta``) with the completed epoch count, the seed, the training
configuration, the history and the optimizer's scalar state. Reading it
runs no code. It is written to a temporary name and renamed into place.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import StoreError
from .atomic import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint",
           "DamagedCheckpointError", "checkpoint_epoch"]


class DamagedCheckpointError(StoreError):
    """A checkpoint file that cannot be read (truncated, overwritten, not safetensors).

    A resumed training treats it as missing (the fold is trained again); any
    other reader reports it, naming the file.
    """

CHECKPOINT_FORMAT = "mexkit-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: Any, meta: dict[str, Any]) -> None:
    """Write a model (and optimizer) checkpoint atomically; see the module docstring.

    Parameters
    ----------
    path : path-like
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer, mexkit.learn.optim.Adam or SGD, or None
        Anything with torch's ``state_dict`` layout.
    meta : dict
        JSON-able training state (epoch, seed, config, history, ...).
    """
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensors[f"model.{key}"] = value.detach().to("cpu").clone().contiguous()
    state = optimizer.state_dict() if optimizer is not None else {"state": {},
                                                                   "param_groups": []}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().to("cpu").clone().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    meta = dict(meta, optimizer_param_groups=state["param_groups"],
                optimizer_scalars=scalars)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "meta": json.dumps(meta, sort_keys=True),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor],
                                                      dict[str, torch.Tensor],
                                                      dict[str, Any]]:
    """Read a checkpoint without running any code.

    Returns
    -------
    model_state : dict
        ``model.load_state_dict`` input.
    optimizer_tensors : dict
        ``"<param>.<key>"`` -> tensor.
    meta : dict
        ``epoch`` (completed epochs), ``seed``, ``config``, ``history``,
        ``optimizer_param_groups``, ``optimizer_scalars``, ``model_class``,
        ``mexkit_version``.

    Raises
    ------
    StoreError
        If the file is not a mexkit checkpoint or is of a newer version.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except FileNotFoundError as exc:
        raise StoreError(f"The checkpoint {str(path)!r} does not exist.") from exc
    except Exception as exc:  # SafetensorError, OSError, ValueError, RuntimeError ...
        raise DamagedCheckpointError(
            f"The checkpoint {str(path)!r} is damaged and cannot be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
        ) from exc
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise DamagedCheckpointError(
            f"{str(path)!r} is not a mexkit checkpoint (no 'format' metadata).")
    try:
        version = int(metadata.get("version", "0"))
        meta = json.loads(metadata["meta"])
        if not isinstance(meta, dict):
            raise ValueError("its 'meta' is not a JSON object")
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedCheckpointError(
            f"The checkpoint {str(path)!r} is damaged: its metadata cannot be read ({exc})."
        ) from exc
    if version > CHECKPOINT_VERSION:
        raise StoreError(
            f"The checkpoint {str(path)!r} was written by a newer version of mexkit "
            f"(checkpoint version {version}, this one reads up to {CHECKPOINT_VERSION})."
        )
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}
    return model_state, optim, meta


def checkpoint_epoch(path: str | os.PathLike) -> int:
    """Completed epochs recorded in the checkpoint at ``path``; 0 if it is missing or
    damaged (a damaged checkpoint is trained again, not resumed)."""
    path = Path(path)
    if not path.exists():
        return 0
    try:
        return int(load_checkpoint(path)[2].get("epoch", 0))
    except DamagedCheckpointError:
        return 0
