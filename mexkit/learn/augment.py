"""Training-time augmentation, batched in torch and seeded.

An augmentation is a callable ``augment(inputs, *, generator) -> inputs``
that :func:`mexkit.learn.train.fit` applies to each training batch after
moving it to the device. ``inputs`` is the batch as the model takes it (a
tensor, or a dict of tensors keyed by input name); ``generator`` is a CPU
``torch.Generator`` that ``fit`` seeds from (seed, epoch), so that the same
seed gives the same augmented batches, on CPU and GPU alike.

A model's augmentation lives in its package (``mexkit/models/<name>/``)
and is registered there under a name with :func:`register_augmentation`; its
:class:`~mexkit.models.registry.TrainDefaults` name it. This module holds
what they share: the registry, :func:`random_affine` and
:func:`apply_to_inputs`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .._validate import check_ndim, check_option, check_range

__all__ = ["random_affine", "apply_to_inputs", "get_augmentation", "register_augmentation",
           "AUGMENTATIONS"]

AUGMENTATIONS: dict[str, Callable[..., Any]] = {}


def register_augmentation(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering an augmentation class or factory under ``name``."""
    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        AUGMENTATIONS[name] = factory
        return factory
    return decorate


def apply_to_inputs(inputs: Any, keys: Sequence[str],
                    transform: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``transform`` to the inputs ``keys`` of a batch.

    ``inputs`` is a dict of tensors (the others pass through unchanged, in
    their order) or one tensor (transformed).
    """
    if isinstance(inputs, Mapping):
        return {k: (transform(v) if k in keys else v) for k, v in inputs.items()}
    return transform(inputs)


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




def get_augmentation(name: str | None, **kw: Any) -> Callable[..., Any] | None:
    """The augmentation registered as ``name``, built with ``kw`` (``None`` for none).

    Names are registered by the models' packages, which the model registry
    imports (:func:`mexkit.models.registry.get_spec`).
    """
    if name is None:
        return None
    check_option("augmentation", name, sorted(AUGMENTATIONS))
    return AUGMENTATIONS[name](**kw)
