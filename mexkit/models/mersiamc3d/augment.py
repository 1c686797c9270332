"""MERSiamC3D's augmentation of key-frame flow clips (Sec. 4.1.2): crops at 9 places,
frame drops.

References
----------
.. [1] Zhao et al., MERSiamC3D (2021), Sec. 4.1.2 (the full reference:
   :mod:`mexkit.models.mersiamc3d.network`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..._validate import check_int
from ...errors import ParameterError
from ...learn.augment import apply_to_inputs, register_augmentation

__all__ = ["KeyframeFlowAugment", "CROP_POSITIONS"]

CROP_POSITIONS = ("upper left", "up", "upper right", "left", "center", "right",
                  "lower left", "bottom", "lower right")


@register_augmentation("mersiamc3d")
class KeyframeFlowAugment:
    """The paper's augmentation of a key-frame flow clip: a crop at one of 9 places, frame drop.

    For each clip of a batch, independently ([1]_, Sec. 4.1.2):

    - **crop**: one of 10 choices drawn uniformly, no crop or a crop at one
      of the 9 places (upper left, up, upper right, left, center, right,
      lower left, bottom, lower right); a crop removes ``c`` pixels (``c``
      drawn uniformly from ``min_crop..max_crop``, 2-5) from the height and
      from the width, i.e. keeps an ``(H - c) x (W - c)`` window at that
      place (centred: ``c // 2`` off the top and left), and resizes it
      back to ``H x W`` bilinearly. Flow is in pixels, so u is multiplied
      by ``W / (W - c)`` and v by ``H / (H - c)``, and the magnitude
      channel (when there is one) is recomputed from them;
    - **frame drop**: one of 4 choices drawn uniformly, none, drop the first
      frame, drop the second, or drop both, the missing frames being filled
      by copies of the last one at the end (T stays the same).

    The paper applies these to the key frames before computing flow; on
    the fly they apply to the stored flow fields (time axis 2 of ``(B, C,
    T, H, W)``), which is where the training batches are. 10 x 4 = 40
    variants per clip (the paper's 36 plus unchanged framings).

    Parameters
    ----------
    keys : sequence of str
        Inputs the transform applies to when the batch is a dict (each
        independently); others pass through.
    min_crop, max_crop : int
        Pixels cut (2 and 5).
    magnitude_channel : int or None
        Channel holding sqrt(u^2 + v^2) (2), recomputed after scaling; None
        when there is none. Channels 0 and 1 are u and v.
    """

    def __init__(self, *, keys: Sequence[str] = ("keyframe_flow", "first", "second"),
                 min_crop: int = 2, max_crop: int = 5, magnitude_channel: int | None = 2
                 ) -> None:
        self.keys = tuple(keys)
        self.min_crop = check_int("min_crop", min_crop, 1)
        self.max_crop = check_int("max_crop", max_crop, self.min_crop)
        self.magnitude_channel = (None if magnitude_channel is None
                                  else check_int("magnitude_channel", magnitude_channel, 2))

    def clip(self, x: torch.Tensor, *, crop: int, place: int, drop: int) -> torch.Tensor:
        """One clip ``(C, T, H, W)`` with a given variant.

        ``crop`` pixels (0: none), ``place`` in 0..8 (row-major over
        :data:`CROP_POSITIONS`), ``drop`` in 0..3 (none, first, second,
        both).
        """
        c, t, h, w = x.shape
        if crop:
            if crop >= min(h, w):
                raise ParameterError(
                    f"Invalid crop of {crop} px for a {h}x{w} clip.")
            row, col = divmod(int(place), 3)
            top = (0, crop // 2, crop)[row]
            left = (0, crop // 2, crop)[col]
            win = x[:, :, top:top + h - crop, left:left + w - crop]
            y = F.interpolate(win.reshape(c * t, 1, h - crop, w - crop).float(), size=(h, w),
                              mode="bilinear", align_corners=False).reshape(c, t, h, w)
            y = y.to(x.dtype).clone()
            y[0] *= w / (w - crop)
            if c > 1:
                y[1] *= h / (h - crop)
            m = self.magnitude_channel
            if m is not None and c > m:
                y[m] = torch.sqrt(y[0] ** 2 + y[1] ** 2)
            x = y
        if drop:
            keep = [i for i in range(t) if not ((drop in (1, 3) and i == 0)
                                                or (drop in (2, 3) and i == 1))]
            keep = keep + [t - 1] * (t - len(keep))
            x = x[:, keep]
        return x

    def _batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 5:
            raise ParameterError(
                f"KeyframeFlowAugment needs batches of shape (B, C, T, H, W), but got "
                f"{tuple(x.shape)}.")
        b = x.shape[0]
        choice = torch.randint(0, 10, (b,), generator=generator)
        size = torch.randint(self.min_crop, self.max_crop + 1, (b,), generator=generator)
        drop = torch.randint(0, 4, (b,), generator=generator)
        out = [self.clip(x[k], crop=int(size[k]) if int(choice[k]) else 0,
                         place=max(int(choice[k]) - 1, 0), drop=int(drop[k]))
               for k in range(b)]
        return torch.stack(out)

    def __call__(self, inputs: Any, *, generator: torch.Generator) -> Any:
        return apply_to_inputs(inputs, self.keys, lambda x: self._batch(x, generator))

    def __repr__(self) -> str:
        return (f"KeyframeFlowAugment(keys={self.keys!r}, min_crop={self.min_crop}, "
                f"max_crop={self.max_crop}, magnitude_channel={self.magnitude_channel})")
