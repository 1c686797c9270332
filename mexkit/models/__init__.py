"""The models: one package per paper, and the registry that names them.

>>> from mexkit.models import get_model, list_models
>>> model = get_model("mean", n_classes=3)

``mexkit/models/<name>/`` holds one model: ``network.py`` (the pure torch
network, importable without any training code), ``spec.py`` (its registry
entry), ``inputs.py`` (how its inputs are built from a store) and, where the
model needs them, its augmentation, trainer hooks and pre-training. The
registry (:mod:`mexkit.models.registry`) discovers the packages; the input
registry is :mod:`mexkit.models.inputs`. The names below load on first use,
so that importing a network does not import the registry.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "InputSpec",
    "ModelOption",
    "ModelSpec",
    "TrainDefaults",
    "BackbonePretraining",
    "Spotting",
    "count_parameters",
    "get_model",
    "get_spec",
    "list_models",
    "paper_defaults",
    "register_model",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.registry"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
