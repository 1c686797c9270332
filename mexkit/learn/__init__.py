"""Learning, generic: nothing here names a model.

- :mod:`mexkit.learn.protocols`: LOSO, stratified k-fold, CDE and HDE splits;
- :mod:`mexkit.learn.metrics`: accuracy, UF1, UAR, pooled and per fold;
- :mod:`mexkit.learn.augment`: batched, seeded augmentation and its registry;
- :mod:`mexkit.learn.train`: ``fit`` and ``predict`` (CPU, GPU, torchrun DDP);
- :mod:`mexkit.learn.folds`: the fold context model trainers receive;
- :mod:`mexkit.learn.data`: torch datasets over feature stores;
- :mod:`mexkit.learn.losses`: focal and other losses.

Submodules load on first use, so that ``mexkit.learn.metrics`` does not
import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "fit",
    "predict",
    "seed_everything",
    "classification_report",
    "pooled_and_per_fold",
    "split",
    "PROTOCOLS",
]

_WHERE = {
    "fit": "train",
    "predict": "train",
    "seed_everything": "train",
    "classification_report": "metrics",
    "pooled_and_per_fold": "metrics",
    "split": "protocols",
    "PROTOCOLS": "protocols",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
