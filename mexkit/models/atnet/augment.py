"""ATNet's training augmentation of the apex frame.

ATNet ([1]_, Sec. IV-A) rotates the apex frame by up to 5 degrees and shifts
it by up to 10 pixels, each with probability 0.5 (:class:`ATNetAugment`,
registered as ``"atnet"``).

The paper's "pixel shift (with a maximum value of 10)" is read here as a
spatial translation. The authors' Caffe data layer names the corresponding
option ``colorshift`` (an intensity offset); ``shift="intensity"`` gives that
reading. Their layer also mirrors images, which the paper does not mention
(``mirror=True``).

References
----------
.. [1] M. Peng et al., "A Novel Apex-Time Network for Cross-Dataset
   Micro-Expression Recognition", ACII 2019.
"""
from __future__ import annotations

from typing import Any

import torch

from ..._validate import check_option, check_range
from ...learn.augment import apply_to_inputs, random_affine, register_augmentation

__all__ = ["ATNetAugment"]


@register_augmentation("atnet")
class ATNetAugment:
    """ATNet's augmentation of the apex frame.

    Parameters
    ----------
    key : str
        Input the transform applies to when the batch is a dict
        (``"apex_rgb"``); other inputs pass through unchanged.
    max_rotation : float
        Degrees (5).
    max_shift : int
        Pixels for ``shift="spatial"``, intensity units for
        ``shift="intensity"`` (10).
    p : float
        Probability of each transform (0.5).
    shift : {"spatial", "intensity"}
        Translation of the image, or an offset added to all its values.
    mirror : bool
        Also flip left-right with probability ``p`` (the authors' code).
    """

    def __init__(self, *, key: str = "apex_rgb", max_rotation: float = 5.0,
                 max_shift: int = 10, p: float = 0.5, shift: str = "spatial",
                 mirror: bool = False) -> None:
        self.key = key
        self.max_rotation = float(check_range("max_rotation", max_rotation, 0.0, 180.0))
        self.max_shift = int(check_range("max_shift", max_shift, 0))
        self.p = float(check_range("p", p, 0.0, 1.0))
        self.shift = check_option("shift", shift, ("spatial", "intensity"))
        self.mirror = bool(mirror)

    def _images(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        spatial_shift = self.max_shift if self.shift == "spatial" else 0
        x = random_affine(x, generator=generator, max_rotation=self.max_rotation,
                          max_shift=spatial_shift, p=self.p)
        b = x.shape[0]
        if self.shift == "intensity":
            on = torch.rand(b, generator=generator) < self.p
            offset = torch.randint(-self.max_shift, self.max_shift + 1, (b,),
                                   generator=generator) * on
            x = x + offset.to(device=x.device, dtype=x.dtype).view(b, 1, 1, 1)
        if self.mirror:
            flip = (torch.rand(b, generator=generator) < self.p).to(x.device)
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        return x

    def __call__(self, inputs: Any, *, generator: torch.Generator) -> Any:
        return apply_to_inputs(inputs, (self.key,), lambda x: self._images(x, generator))

    def __repr__(self) -> str:
        return (f"ATNetAugment(key={self.key!r}, max_rotation={self.max_rotation}, "
                f"max_shift={self.max_shift}, p={self.p}, shift={self.shift!r}, "
                f"mirror={self.mirror})")
