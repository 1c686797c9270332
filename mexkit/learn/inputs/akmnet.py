"""AKMNet's input: the magnified clip, and its training-time augmentation.

The paper ([1]_, Sec. IV-A) feeds AKMNet the whole clip, onset to offset,
with its number of frames unchanged, after phase-based video magnification
with alpha = 15; frames are 128x128. In training each frame is resized to
144x144 and cropped at a random position to 128x128 (one position per
clip, so that the clip stays aligned in time); test frames are only resized
to 128x128.

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (2021).
.. [2] N. Wadhwa, M. Rubinstein, F. Durand, W. T. Freeman, "Phase-based
   video motion processing", ACM TOG 32(4), 2013.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..._validate import check_int
from ...errors import ModelInputError, ParameterError
from . import missing_input, register_input

__all__ = ["magnified_clip", "AKMNetAugment", "SIDE"]

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
        import cv2

        frames = np.stack([cv2.resize(f, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
                           for f in frames])
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    x = frames.astype(np.float32) / scale
    if x.ndim == 3:
        x = np.repeat(x[:, None], 3, axis=1)
    else:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


class AKMNetAugment:
    """Resize each clip's frames by 144/128 and crop them back at a random position.

    One crop position per clip, drawn uniformly; the same for all its frames
    (padding frames included, which the model ignores).

    Parameters
    ----------
    key : str
        The input it applies to (``"magnified_clip"``); other inputs, the
        mask included, pass through unchanged.
    resize, crop : int
        The paper's 144 and 128 for 128x128 input. For input of another side
        S, frames are resized to ``round(S * resize / crop)`` and cropped to S.
    """

    def __init__(self, *, key: str = "magnified_clip", resize: int = 144,
                 crop: int = SIDE) -> None:
        self.key = key
        self.resize = check_int("resize", resize, 1)
        self.crop = check_int("crop", crop, 1)
        if self.resize < self.crop:
            raise ParameterError(
                f"Invalid value for the 'resize' parameter. It must be at least crop "
                f"({self.crop}), but got {resize!r} instead."
            )

    def clips(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment ``(B, T, C, S, S)`` clips; returns the same shape."""
        if x.ndim != 5:
            raise ModelInputError(
                f"AKMNet's augmentation needs clips (B, T, C, S, S), but got shape "
                f"{tuple(x.shape)}."
            )
        b, t, c, h, w = x.shape
        big = int(round(h * self.resize / self.crop)), int(round(w * self.resize / self.crop))
        off_y = torch.randint(0, big[0] - h + 1, (b,), generator=generator).tolist()
        off_x = torch.randint(0, big[1] - w + 1, (b,), generator=generator).tolist()
        if big == (h, w):
            return x
        up = F.interpolate(x.reshape(b * t, c, h, w), size=big, mode="bilinear",
                           align_corners=False).reshape(b, t, c, *big)
        return torch.stack([up[i, :, :, oy:oy + h, ox:ox + w]
                            for i, (oy, ox) in enumerate(zip(off_y, off_x, strict=True))])

    def __call__(self, inputs: Any, *, generator: torch.Generator) -> Any:
        if isinstance(inputs, Mapping):
            out = dict(inputs)
            out[self.key] = self.clips(inputs[self.key], generator)
            return out
        return self.clips(inputs, generator)

    def __repr__(self) -> str:
        return f"AKMNetAugment(key={self.key!r}, resize={self.resize}, crop={self.crop})"
