"""PSN's inputs (RPCA sparse frames, TIM frames) and its training augmentation.

``mexkit rpca --psn`` interpolates each clip to 150 frames with TIM, runs
RPCA on the 150 frames and keeps 16 of them (1, 11, ..., 141, 150, 1-based):
the sparse part ``E`` as ``sparse`` and the TIM frames themselves as
``tim_frames``. The spatial sub-network takes the first, the Temporal
Perception Unit the second (see :mod:`mexkit.models.psn`).

A clip whose RPCA does not converge (the paper lost seven CASME II and three
CAS(ME)^2 clips that way) is a failed sample of the ``rpca`` store: it is
recorded there with its reason and never reaches training.

References
----------
.. [1] J. Li, S.-J. Wang, Y. Wang, H. Zhou, X. Fu, "Parallel Spatiotemporal
   Network to Recognize Micro-Expression" (PSN), Secs. 2.1 and 3.2.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..._validate import check_range
from ...errors import ModelInputError
from ..augment import random_affine
from . import get_input, missing_input, register_input

__all__ = ["psn_sparse", "psn_frames", "PSNAugment"]

_SHAPE = (16, 112, 112)
_PRODUCER = "mexkit crop --size 112 | mexkit rpca - --psn"


def _read(sample: Any, name: str, array: str) -> np.ndarray:
    if array not in sample:
        raise missing_input(sample, name, (array,))
    shape = tuple(sample.shape(array))
    if shape != _SHAPE:
        raise ModelInputError(
            f"sample {sample.sample_id!r}: {array!r} has shape {shape}, but the model "
            f"input {name!r} needs {_SHAPE} (16 frames of 112 x 112 grey); produce it with "
            f"`{get_input(name).produced_by}`.")
    return sample.read(array)


@register_input(
    "psn_sparse", shape=_SHAPE, needs=("sparse",), produced_by=_PRODUCER,
    description=("RPCA sparse part E of the clip after TIM to 150 frames, at 16 uniformly "
                 "sampled frames, 112x112 grey, in grey levels (signed, mostly near 0)"))
def psn_sparse(sample: Any) -> np.ndarray:
    """The stored 16 sparse frames in grey levels, float32 ``(16, 112, 112)``.

    ``mexkit rpca`` stores ``E`` in intensity units of [0, 1]; the network
    takes it in grey levels (x 255), as RPCA of 8-bit frames gives it: in
    [0, 1] units its standard deviation is about 1e-3, too small a signal for
    the spatial sub-network's default initialisation.
    """
    sparse = _read(sample, "psn_sparse", "sparse").astype(np.float32)
    return np.ascontiguousarray(sparse * np.float32(255.0))


@register_input(
    "psn_frames", shape=_SHAPE, needs=("tim_frames",), produced_by=_PRODUCER,
    description=("the TIM-normalised grey frames at the same 16 positions as psn_sparse, "
                 "112x112, intensity in [0, 1] (the TPU's vectorised x_t)"))
def psn_frames(sample: Any) -> np.ndarray:
    """The stored 16 TIM frames (uint8), scaled to [0, 1], float32 ``(16, 112, 112)``."""
    frames = _read(sample, "psn_frames", "tim_frames")
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    return (frames.astype(np.float32) / np.float32(scale)).copy()


class PSNAugment:
    """PSN's training augmentation: rotation and flipping (Sec. 3.3).

    The same transform is applied to all frames of a clip and to both of its
    inputs (``psn_sparse`` and ``psn_frames``), so that the two
    sub-networks see one clip. Per clip: with probability ``p`` a rotation
    about the centre by an angle uniform in ``[-max_rotation,
    max_rotation]`` degrees (bilinear, border pixels repeated), and with
    probability ``p`` a left-right flip. The paper gives neither the angles
    nor the probabilities; 10 degrees and 0.5 are chosen here.

    Parameters
    ----------
    max_rotation : float
        Degrees.
    p : float
        Probability of each transform.
    """

    keys = ("psn_sparse", "psn_frames")

    def __init__(self, *, max_rotation: float = 10.0, p: float = 0.5) -> None:
        self.max_rotation = float(check_range("max_rotation", max_rotation, 0.0, 180.0))
        self.p = float(check_range("p", p, 0.0, 1.0))

    def __call__(self, inputs: Any, *, generator: torch.Generator) -> Any:
        """Augment a batch: a dict of ``(B, T, H, W)`` tensors, or one such tensor."""
        single = not isinstance(inputs, Mapping)
        batch = {"x": inputs} if single else dict(inputs)
        keys = [k for k in (("x",) if single else self.keys) if k in batch]
        if not keys:
            return inputs
        sizes = [batch[k].shape[1] for k in keys]
        stacked = torch.cat([batch[k] for k in keys], dim=1)  # one transform per clip
        b = stacked.shape[0]
        stacked = random_affine(stacked, generator=generator, max_rotation=self.max_rotation,
                                max_shift=0, p=self.p)
        flip = (torch.rand(b, generator=generator) < self.p).to(stacked.device)
        stacked = torch.where(flip.view(b, 1, 1, 1), stacked.flip(-1), stacked)
        for k, part in zip(keys, torch.split(stacked, sizes, dim=1), strict=True):
            batch[k] = part
        return batch["x"] if single else batch

    def __repr__(self) -> str:
        return f"PSNAugment(max_rotation={self.max_rotation}, p={self.p})"
