"""DistributedDataParallel set-up, in one place.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; these are the
only functions that read them. The process group uses NCCL on CUDA and Gloo
on the CPU.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["world_size", "rank", "distributed_setup", "destroy"]


def world_size() -> int:
    """Number of processes of a ``torchrun`` launch (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 outside ``torchrun``)."""
    return int(os.environ.get("RANK", "0"))


def distributed_setup(device: Any) -> tuple[int, int, Any, bool]:
    """Join the process group of a ``torchrun`` launch, if there is one.

    Parameters
    ----------
    device : torch.device
        The device asked for; a CUDA device becomes ``cuda:LOCAL_RANK``.

    Returns
    -------
    rank, world : int
    device : torch.device
    created : bool
        Whether this call created the process group (and should destroy it).
    """
    device = torch.device(device)
    world = world_size()
    if world <= 1:
        return 0, 1, device, False
    r = rank()
    local_rank = int(os.environ.get("LOCAL_RANK", str(r)))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=r, world_size=world)
        created = True
    return dist.get_rank(), dist.get_world_size(), device, created


def destroy(created: bool) -> None:
    """Destroy the process group if ``created`` (as returned by :func:`distributed_setup`)."""
    if created and dist.is_initialized():
        dist.destroy_process_group()
