"""PSN's training augmentation: one rotation and flip per clip, for both inputs.

References
----------
.. [1] J. Li, S.-J. Wang, Y. Wang, H. Zhou, X. Fu, "Parallel Spatiotemporal
   Network to Recognize Micro-Expression" (PSN), Sec. 3.3.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..._validate import check_range
from ...learn.augment import random_affine, register_augmentation

__all__ = ["PSNAugment"]


@register_augmentation("psn")
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
