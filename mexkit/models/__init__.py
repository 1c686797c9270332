"""Torch models, one module per paper, and the registry that names them.

>>> from mexkit.models import get_model, list_models
>>> model = get_model("mean", n_classes=3)

See :mod:`mexkit.models.registry` for the declarative model descriptions
(inputs, paper training defaults, parameter counts).
"""
from __future__ import annotations

from .atnet import ATNet
from .mean import MEAN
from .registry import (
    InputSpec,
    ModelSpec,
    TrainDefaults,
    count_parameters,
    get_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "ATNet",
    "MEAN",
    "InputSpec",
    "ModelSpec",
    "TrainDefaults",
    "count_parameters",
    "get_model",
    "get_spec",
    "list_models",
    "register_model",
]
