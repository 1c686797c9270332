"""AKMNet's fold trainer: an optional pre-trained backbone, then one ``fit``.

Training is one :func:`mexkit.learn.train.fit` call with the paper's
settings; the GS-MMM loss enters through the model's
``regularization_loss()``. The paper initialises the ResNet-18 from ImageNet
and pre-trains it on 4,000 AffectNet images ([1]_, Sec. IV-B); neither set
of weights can be downloaded here, so with ``--weights FILE`` (a local
safetensors file, in this backbone's or torchvision's ``resnet18`` naming,
with a 5x5 first convolution) the backbone starts from those weights, and
from He initialisation otherwise. ``--train-resize N`` sets the side the
frames are resized to before the random 128x128 crop (the paper's 144; 128
trains without the crop, for short CPU runs where the few SGD steps do not
pay for the augmentation).

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (2021).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file

from ...errors import ParameterError, StoreError
from ...learn.folds import FoldContext
from .augment import augmentation_for

__all__ = ["fit_fold", "load_weights"]

logger = logging.getLogger("mexkit")


def load_weights(model: Any, path: str | os.PathLike) -> list[str]:
    """Load a local safetensors file into ``model``'s backbone.

    Returns the backbone entries the file did not provide.

    Raises
    ------
    StoreError
        If the file cannot be read as safetensors.
    ParameterError
        If an entry does not fit the backbone (named in the message).
    """
    path = Path(path)
    try:
        state = load_file(str(path))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise StoreError(f"Cannot read the weights file {str(path)!r}: {exc}") from exc
    try:
        missing = model.load_backbone_state(state)
    except ParameterError as exc:
        raise ParameterError(f"{str(path)!r}: {exc}") from exc
    if missing:
        logger.warning("akmnet: %s lacks %d backbone entries (kept from initialisation): %s",
                       path, len(missing), ", ".join(missing[:5]))
    return missing


def fit_fold(ctx: FoldContext) -> list[dict[str, Any]]:
    """Train AKMNet on one fold: optional pre-trained backbone, then one ``fit``."""
    weights = ctx.options.get("weights") or ""
    if weights:
        load_weights(ctx.model, weights)
    overrides: dict[str, Any] = {}
    resize = ctx.options.get("train_resize")
    if resize is not None and int(resize) != 144:
        overrides["augment"] = augmentation_for(resize)
    records = ctx.fit(ctx.model, ctx.train, stage="train", **overrides)
    return [{k: v for k, v in r.items() if k != "stage"} for r in records]
