"""Fold trainers: how one model is trained on one fold's training samples.

Most models train with one :func:`mexkit.learn.train.fit` call
(:func:`standard`). A model whose paper trains in stages (MERSiamC3D's prior
learning on pairs, then target learning) gives its own trainer in its
registry entry (:attr:`mexkit.models.registry.ModelSpec.trainer`), a
function of the model's package. A trainer takes a :class:`FoldContext` and
returns the epoch history records of the training it ran (stages may tag
their records with a ``"stage"`` key). Nothing here names a model.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Subset

from .train import fit

__all__ = ["FoldContext", "standard", "labelled_subset"]


@dataclass
class FoldContext:
    """Everything a fold trainer needs.

    Attributes
    ----------
    model : torch.nn.Module
        The freshly built (seeded) model; trained in place.
    spec : ModelSpec
        Its registry entry.
    dataset : torch.utils.data.Dataset
        All labelled samples; items ``({input: tensor}, label)``.
    train : numpy.ndarray of int
        Indices into ``dataset`` of this fold's training samples (never a
        test sample).
    labels : numpy.ndarray of int
        Class index of every sample of ``dataset``.
    classes : list of str
    subjects : list of str
        Subject of every sample of ``dataset``.
    fit_kwargs : dict
        The paper's settings merged with the user's overrides; keyword
        arguments of :func:`mexkit.learn.train.fit` (``augment`` and
        ``collate_fn`` included).
    options : dict
        The model's options (:func:`mexkit.models.registry.model_options`).
    device : str
    seed : int
    deterministic : bool
    checkpoint_dir : pathlib.Path
        Where the trainer keeps its checkpoints (one file per stage), so a
        killed fold resumes.
    progress : callable
        ``progress(stage, epochs) -> bar``: a progress bar over a stage's
        epochs, whose ``bar.callback`` is ``fit``'s ``progress=`` and whose
        ``bar.close()`` ends it.
    sample_ids : list of str
        Sample id of every sample of ``dataset``.
    monitor : numpy.ndarray of int
        Indices of held-out samples (the fold's test samples) whose loss is
        recorded each epoch for the training curves only: a trainer must
        not choose anything on them.
    extra : dict
        Free-form values for model-specific trainers.
    """

    model: nn.Module
    spec: Any
    dataset: Any
    train: np.ndarray
    labels: np.ndarray
    classes: list[str]
    subjects: list[str]
    fit_kwargs: dict[str, Any]
    options: dict[str, Any]
    device: str
    seed: int
    deterministic: bool
    checkpoint_dir: Path
    progress: Callable[[str, int], Any]
    sample_ids: list[str] = field(default_factory=list)
    monitor: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fit(self, model: nn.Module, indices: np.ndarray, *, stage: str,
            **overrides: Any) -> list[dict[str, Any]]:
        """Run :func:`mexkit.learn.train.fit` on ``dataset[indices]``.

        ``overrides`` replace entries of :attr:`fit_kwargs`; the checkpoint
        is ``checkpoint_dir / f"{stage}.safetensors"``; the returned records
        carry ``"stage": stage``.
        """
        kw = {**self.fit_kwargs, **overrides}
        subset = labelled_subset(self.dataset, indices, self.labels)
        if "monitor" not in kw and self.monitor is not None and len(self.monitor):
            kw["monitor"] = labelled_subset(self.dataset, self.monitor, self.labels)
        bar = self.progress(stage, int(kw["epochs"]))
        try:
            out = fit(model, subset, device=self.device, seed=self.seed,
                      deterministic=self.deterministic,
                      checkpoint_path=self.checkpoint_dir / f"{stage}.safetensors",
                      progress=bar.callback, **kw)
        finally:
            bar.close()
        return [{**r, "stage": stage} for r in out["epochs"]]


def labelled_subset(dataset: Any, indices: np.ndarray, labels: np.ndarray) -> Subset:
    """``Subset(dataset, indices)`` exposing its labels (for class balancing)."""
    subset = Subset(dataset, [int(i) for i in indices])
    subset.labels = [int(labels[i]) for i in indices]  # type: ignore[attr-defined]
    return subset


def standard(ctx: FoldContext) -> list[dict[str, Any]]:
    """One :func:`mexkit.learn.train.fit` call on the fold's training samples."""
    records = ctx.fit(ctx.model, ctx.train, stage="train")
    return [{k: v for k, v in r.items() if k != "stage"} for r in records]
