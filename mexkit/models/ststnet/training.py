"""STSTNet's fold trainer: MATLAB's ``zerocenter`` input layer, then one ``fit``.

The authors' MATLAB network (``STSTNet.mat``, trained by ``main.m``) begins
with an image input layer whose normalisation is ``zerocenter``: when
``trainNetwork`` starts, it averages the training images and subtracts that
mean image from every image the network sees, in training and in testing.
:func:`fit_fold` does the same with the fold's training samples only (the
network's ``input_mean`` buffer, saved with its weights), then trains with
the paper's settings.

References
----------
.. [1] S.-T. Liong, Y. S. Gan, J. See, H.-Q. Khor, Y.-C. Huang, "Shallow Triple
   Stream Three-dimensional CNN (STSTNet) for Micro-expression Recognition",
   FG 2019; the authors' ``main.m`` and ``STSTNet.mat``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...errors import ParameterError
from ...learn.folds import FoldContext

__all__ = ["fit_fold", "mean_image", "INPUT_NORMS"]

#: ``--input-norm``: ``zerocenter`` (MATLAB's input layer in ``STSTNet.mat``) or ``none``
#: (the authors' PyTorch port).
INPUT_NORMS = ("zerocenter", "none")


def mean_image(dataset: Any, indices: Sequence[int], name: str = "flow_image"
               ) -> torch.Tensor:
    """The mean of input ``name`` over ``dataset[indices]`` (float64 sum, float32 result).

    Raises
    ------
    ParameterError
        ``indices`` is empty.
    """
    if len(indices) == 0:
        raise ParameterError("the mean image of no training sample is undefined")
    total = None
    for i in indices:
        x = dataset[int(i)][0][name].to(torch.float64)
        total = x.clone() if total is None else total + x
    return (total / len(indices)).to(torch.float32)


def fit_fold(ctx: FoldContext) -> list[dict[str, Any]]:
    """Set the network's mean image from the fold's training samples (``input_norm``
    ``zerocenter``), then train it (one ``fit``)."""
    norm = ctx.options.get("input_norm", "zerocenter")
    if norm not in INPUT_NORMS:
        raise ParameterError(f"Invalid value for the 'input_norm' parameter. Allowed values "
                             f"are {', '.join(INPUT_NORMS)}, but got {norm!r} instead.")
    with torch.no_grad():
        if norm == "zerocenter":
            ctx.model.input_mean.copy_(mean_image(ctx.dataset, np.asarray(ctx.train)))
        else:
            ctx.model.input_mean.zero_()
    records = ctx.fit(ctx.model, ctx.train, stage="train")
    return [{k: v for k, v in r.items() if k != "stage"} for r in records]
