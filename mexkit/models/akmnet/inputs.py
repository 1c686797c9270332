"""AKMNet's input: the magnified clip.

The paper ([1]_, Sec. IV-A) feeds AKMNet the whole clip, onset to offset,
with its number of frames unchanged, after phase-based video magnification
with alpha = 15; frames are 128x128 (test frames are only resized to
128x128; the training crops are :mod:`mexkit.models.akmnet.augment`).

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (2021).
.. [2] N. Wadhwa, M. Rubinstein, F. Durand, W. T. Freeman, "Phase-based
   video motion processing", ACM TOG 32(4), 2013.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ...errors import ModelInputError
from ..inputs import missing_input, register_input

__all__ = ["magnified_clip", "SIDE"]

#: Frame side of AKMNet's input (Sec. IV-A).
SIDE = 128


@register_input(
    "magnified_clip", shape=(None, 3, SIDE, SIDE), needs=("frames",),
    produced_by="mexkit crop --size 128 | mexkit magnify - --alpha 15",
    description=("every frame of the clip after phase-based magnification (alpha 15), "
                 "128x128, grey repeated to 3 channels (or RGB), in [0, 1]; T varies"))
def magnified_clip(sample: Any) -> np.ndarray:
    """The stored ``frames``, resized to 128x128, as ``(T, 3, 128, 128)`` float32 in [0, 1].

    Grey frames ``(T, H, W)`` are repeated to three channels; RGB frames
    ``(T, H, W, 3)`` keep theirs.
    """
    if "frames" not in sample:
        raise missing_input(sample, "magnified_clip", ("frames",))
    frames = sample.read("frames")
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[3] != 3) \
            or frames.shape[0] == 0:
        raise ModelInputError(
            f"sample {sample.sample_id!r}: 'frames' must be (T, H, W) grey or (T, H, W, 3) "
            f"RGB with T >= 1, but has shape {tuple(frames.shape)}."
        )
    if frames.shape[1:3] != (SIDE, SIDE):

        frames = np.stack([cv2.resize(f, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
                           for f in frames])
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    x = frames.astype(np.float32) / scale
    if x.ndim == 3:
        x = np.repeat(x[:, None], 3, axis=1)
    else:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)
