"""PSN's inputs: RPCA sparse frames and TIM frames.

``mexkit rpca --psn`` interpolates each clip to 150 frames with TIM, runs
RPCA on the 150 frames and keeps 16 of them (1, 11, ..., 141, 150, 1-based):
the sparse part ``E`` as ``sparse`` and the TIM frames themselves as
``tim_frames``. The spatial sub-network takes the first, the Temporal
Perception Unit the second (see :mod:`mexkit.models.psn.network`).

A clip whose RPCA does not converge (the paper lost seven CASME II and three
CAS(ME)^2 clips that way) is a failed sample of the ``rpca`` store: it is
recorded there with its reason and never reaches training.

References
----------
.. [1] J. Li, S.-J. Wang, Y. Wang, H. Zhou, X. Fu, "Parallel Spatiotemporal
   Network to Recognize Micro-Expression" (PSN), Secs. 2.1 and 3.2.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ModelInputError
from ..inputs import get_input, missing_input, register_input

__all__ = ["psn_sparse", "psn_frames"]

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
