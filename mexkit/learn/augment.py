"""Training-time augmentation, batched in torch and seeded.

An augmentation is a callable ``augment(inputs, *, generator) -> inputs``
that :func:`mexkit.learn.train.fit` applies to each training batch after
moving it to the device. ``inputs`` is the batch as the model takes it (a
tensor, or a dict of tensors keyed by input name); ``generator`` is a CPU
``torch.Generator`` that ``fit`` seeds from (seed, epoch), so that the same
seed gives the same augmented batches, on CPU and GPU alike.

- ATNet ([1]_, Sec. IV-A): rotation up to 5 degrees and shift up to 10
  pixels, each applied with probability 0.5, to the apex frame
  (:class:`ATNetAugment`).
- MEAN ([2]_) trains without augmentation: its inputs are flow and strain
  of fixed facial regions, and neither the paper nor its code augments them.
  The registry therefore names no augmentation for MEAN.

The paper's "pixel shift (with a maximum value of 10)" is read here as a
spatial translation. The authors' Caffe data layer names the corresponding
option ``colorshift`` (an intensity offset); ``shift="intensity"`` gives that
reading. Their layer also mirrors images, which the paper does not mention
(``mirror=True``).

References
----------
.. [1] M. Peng et al., "A Novel Apex-Time Network for Cross-Dataset
   Micro-Expression Recognition", ACII 2019.
.. [2] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from .._validate import check_ndim, check_option, check_range

__all__ = ["random_affine", "ATNetAugment", "get_augmentation", "register_augmentation",
           "AUGMENTATIONS"]

AUGMENTATIONS: dict[str, Callable[..., Any]] = {}


def register_augmentation(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering an augmentation class or factory under ``name``."""
    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        AUGMENTATIONS[name] = factory
        return factory
    return decorate


def random_affine(images: torch.Tensor, *, generator: torch.Generator,
                  max_rotation: float = 5.0, max_shift: int = 10, p: float = 0.5,
                  padding_mode: str = "border") -> torch.Tensor:
    """Randomly rotate and translate each image of a batch.

    Per image, independently: with probability ``p`` a rotation about the
    image centre by an angle drawn uniformly from ``[-max_rotation,
    max_rotation]`` degrees, and with probability ``p`` a translation by
    integers drawn uniformly from ``[-max_shift, max_shift]`` pixels along x
    and y. Bilinear resampling; outside pixels repeat the border
    (``padding_mode="border"``) or are 0 (``"zeros"``).

    Parameters
    ----------
    images : torch.Tensor, shape (B, C, H, W)
        Float images on any device.
    generator : torch.Generator
        CPU generator the random draws come from.
    max_rotation : float
        Degrees.
    max_shift : int
        Pixels.
    p : float
        Probability of each of the two transforms.
    padding_mode : {"border", "zeros"}

    Returns
    -------
    torch.Tensor, shape (B, C, H, W)
        Same dtype and device; images drawing neither transform are returned
        unchanged (bit for bit).
    """
    check_ndim("images", images, 4, "(B, C, H, W)")
    check_range("max_rotation", max_rotation, 0.0, 180.0)
    check_range("max_shift", max_shift, 0)
    check_range("p", p, 0.0, 1.0)
    check_option("padding_mode", padding_mode, ("border", "zeros"))
    b, _, h, w = images.shape
    rotate = torch.rand(b, generator=generator) < p
    shift = torch.rand(b, generator=generator) < p
    angle = (torch.rand(b, generator=generator) * 2 - 1) * max_rotation * rotate
    dxy = torch.randint(-int(max_shift), int(max_shift) + 1, (b, 2),
                        generator=generator) * shift[:, None]
    active = rotate | shift
    if not bool(active.any()):
        return images
    # Output pixel p_out = R (p_in - c) + c + d, so p_in = R^-1 (p_out - c - d) + c.
    # In affine_grid's normalised coordinates (align_corners=False) x_n = S (x - c)
    # with S = diag(2/W, 2/H): theta = [S R^-1 S^-1 | -S R^-1 d].
    a = torch.deg2rad(angle.double())
    cos, sin = torch.cos(a), torch.sin(a)
    sx, sy = 2.0 / w, 2.0 / h
    rinv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    s = torch.tensor([[sx, 0.0], [0.0, sy]], dtype=torch.float64)
    s_inv = torch.tensor([[1 / sx, 0.0], [0.0, 1 / sy]], dtype=torch.float64)
    lin = s @ rinv @ s_inv
    trans = -(s @ rinv @ dxy.double()[:, :, None])[:, :, 0]
    theta = torch.cat([lin, trans[:, :, None]], dim=2)
    idx = torch.nonzero(active).flatten().to(images.device)
    sel = images.index_select(0, idx)
    grid = F.affine_grid(theta[active].to(device=images.device, dtype=sel.dtype),
                         list(sel.shape), align_corners=False)
    warped = F.grid_sample(sel, grid, mode="bilinear", padding_mode=padding_mode,
                           align_corners=False)
    out = images.clone()
    out[idx] = warped
    return out


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
        if isinstance(inputs, Mapping):
            out = dict(inputs)
            out[self.key] = self._images(inputs[self.key], generator)
            return out
        return self._images(inputs, generator)

    def __repr__(self) -> str:
        return (f"ATNetAugment(key={self.key!r}, max_rotation={self.max_rotation}, "
                f"max_shift={self.max_shift}, p={self.p}, shift={self.shift!r}, "
                f"mirror={self.mirror})")


register_augmentation("atnet")(ATNetAugment)


def get_augmentation(name: str | None, **kw: Any) -> Callable[..., Any] | None:
    """Return the augmentation a model's registry entry names (``None`` for none).

    ``name`` is a name given to :func:`register_augmentation` in this
    module, or ``"module:attribute"`` of an augmentation class defined
    beside a model's own code (imported on demand).
    """
    if name is None:
        return None
    if ":" in name:
        from ..models.registry import load_reference

        return load_reference(name, "The augmentation")(**kw)
    check_option("augmentation", name, sorted(AUGMENTATIONS))
    return AUGMENTATIONS[name](**kw)
