"""AKMNet's training augmentation: each clip resized and cropped back at one random place.

In training each frame is resized to 144x144 and cropped at a random
position to 128x128 ([1]_, Sec. IV-A), one position per clip, so that the
clip stays aligned in time.

References
----------
.. [1] Peng et al., AKMNet, arXiv:2009.09179 (2021), Sec. IV-A (the full reference:
   :mod:`mexkit.models.akmnet.network`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..._validate import check_int
from ...errors import ModelInputError, ParameterError
from ...learn.augment import apply_to_inputs, register_augmentation
from .inputs import SIDE

__all__ = ["AKMNetAugment", "augmentation_for"]


@register_augmentation("akmnet")
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
        return apply_to_inputs(inputs, (self.key,), lambda x: self.clips(x, generator))

    def __repr__(self) -> str:
        return f"AKMNetAugment(key={self.key!r}, resize={self.resize}, crop={self.crop})"


def augmentation_for(train_resize: int | None) -> AKMNetAugment | None:
    """The training augmentation for ``--train-resize``.

    Parameters
    ----------
    train_resize : int or None
        Side the 128x128 frames are resized to before the random 128x128
        crop (the paper's 144, Sec. IV-A); 128 (no resize, no crop) gives
        None: no augmentation. None: the paper's 144.

    Raises
    ------
    ParameterError
        If ``train_resize`` is below 128.
    """
    resize = 144 if train_resize is None else int(train_resize)
    if resize < SIDE:
        raise ParameterError(
            f"Invalid value for the 'train_resize' parameter. It must be at least {SIDE} "
            f"(the paper's 144; {SIDE} turns the random crop off), but got "
            f"{train_resize!r} instead."
        )
    return None if resize == SIDE else AKMNetAugment(resize=resize, crop=SIDE)
