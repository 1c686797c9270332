"""MEAN's part of spot-then-recognize: its two networks, trained one after the other.

The pipeline (:mod:`mexkit.pipeline.spotting`) reads the whole videos of a
gap-flow store, makes each expression type's pseudo-labels and subsamples
the non-expression frames; these hooks (:class:`~mexkit.models.registry.Spotting`)
train and apply MEAN on them ([1]_, Secs. 3-4):

1. the spotting network (``head="spotting"``): MSE against the pseudo-labels,
   Adam 5e-4;
2. its recognition head on the onset -> apex input of each training interval
   with an emotion (one sample per expression: the paper's k = apex - onset
   for recognition, section 4.3; the authors' ``prepare_training.py`` X2),
   the shared layers frozen (inductive transfer); its loss and accuracy are
   watched each epoch on the held-out subject's input of the pair ``(onset,
   onset + k)`` of each interval (the authors' validation data X1), never
   chosen on; ``--no-transfer`` trains a separate MEAN from scratch instead
   (the paper's ablation).

Each network starts from weights that depend on the seed only
(:func:`_seeded`), not on what the process trained before.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos",
   Signal Processing: Image Communication 2023.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ...learn.train import fit, predict
from ..registry import get_spec, model_options
from .network import MEAN

__all__ = ["settings", "train", "scores", "classes", "build"]


def settings(options: Mapping[str, Any] | None, *, epochs: int | None = None,
             batch_size: int | None = None, lr: float | None = None) -> dict[str, Any]:
    """Spot-then-recognize settings from MEAN's options and ``mexkit train``'s overrides.

    ``epochs`` sets the recognition stage's epochs (``--spot-epochs`` the
    spotting stage's); ``batch_size`` and ``lr`` both stages'. None: the
    paper's (the registry's ``pretrain`` and ``defaults``).
    """
    spec = get_spec("mean")
    opts = model_options(spec, options)
    rec, pre = spec.defaults, spec.pretrain
    return {"spot_epochs": int(opts["spot_epochs"] or pre.epochs),
            "recog_epochs": int(epochs or rec.epochs),
            "batch_size": int(batch_size or pre.batch_size), "lr": float(lr or pre.lr),
            "ratio": 8.0, "transfer": not opts["no_transfer"], "p": float(opts["p"]),
            "kprime": int(opts["kprime"]) or None, "emotions": opts["emotions"] or None,
            "type_stores": opts.get("type_store") or None}


def _seeded(build_net: Callable[[], MEAN], seed: int) -> MEAN:
    """``build_net()`` with torch's generator seeded, leaving the global generator as it was.

    The initial weights then depend on the seed only, not on what the process
    trained before (the other expression type, earlier folds, a resumed run).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build_net()


def _fit(model: MEAN, x: np.ndarray, y: np.ndarray, *, loss: str, epochs: int,
         settings: Mapping[str, Any], seed: int, ckpt: Path | None,
         monitor: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    watched = None if monitor is None else TensorDataset(
        torch.from_numpy(monitor[0].astype(np.float32)), torch.from_numpy(monitor[1]))
    return fit(model, ds, epochs=int(epochs), optimizer="adam", lr=float(settings["lr"]),
               batch_size=int(settings["batch_size"]), device=settings["device"], seed=seed,
               deterministic=bool(settings["deterministic"]), loss=loss,
               checkpoint_path=ckpt, monitor=watched)["epochs"]


def train(x: np.ndarray, y: np.ndarray, rx: Sequence[np.ndarray], ry: Sequence[np.ndarray],
          *, n_classes: int, settings: Mapping[str, Any], seed: int,
          checkpoint: Callable[[str], Path | None],
          monitor: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Train the spotting network, then the recognition head (see the module docstring).

    Parameters
    ----------
    x : ndarray, shape (N, 3, 42, 42)
        Features of the (subsampled) training pairs; ``y`` their float
        pseudo-labels.
    rx, ry : lists of arrays
        Onset -> apex features (one row each) and class of each training
        interval with an emotion; empty: no recognition network.
    n_classes : int
    settings : mapping
        :func:`settings` plus ``device`` and ``deterministic``.
    seed : int
    checkpoint : callable
        ``checkpoint(stage)``: the file of stage ``"spotting"`` or
        ``"recognition"``, or None.
    monitor : (ndarray, ndarray), optional
        Held-out features and classes whose recognition loss and accuracy
        are recorded each epoch (``monitor_loss``, ``monitor_accuracy``).

    Returns
    -------
    dict
        ``spotter``, ``recognizer`` (None without intervals to learn from) and
        ``history`` (epoch records by stage).
    """
    spotter = _seeded(lambda: MEAN(n_classes, head="spotting"), seed)
    history = {"spotting": _fit(spotter, x, y, loss="mse", epochs=settings["spot_epochs"],
                                settings=settings, seed=seed, ckpt=checkpoint("spotting"))}
    recognizer = None
    if len(rx):
        if settings["transfer"]:
            recognizer = spotter
            recognizer.freeze_shared(True)
        else:
            recognizer = _seeded(lambda: MEAN(n_classes), seed + 1)
        recognizer.head = "recognition"
        history["recognition"] = _fit(
            recognizer, np.concatenate(rx), np.concatenate(ry), loss="ce",
            epochs=settings["recog_epochs"], settings=settings, seed=seed + 1,
            ckpt=checkpoint("recognition"), monitor=monitor)
    return {"spotter": spotter, "recognizer": recognizer, "history": history}


def _predict(model: MEAN, x: np.ndarray, head: str, device: str) -> np.ndarray:
    model.head = head
    ds = TensorDataset(torch.from_numpy(x), torch.zeros(len(x)))
    out, preds = predict(model, ds, batch_size=1024, device=device)
    return out if head == "spotting" else preds


def scores(spotter: MEAN, x: np.ndarray, device: str) -> np.ndarray:
    """Spotting score of every pair, ``(P,)`` float32."""
    return _predict(spotter, x, "spotting", device)


def classes(recognizer: MEAN, x: np.ndarray, device: str) -> np.ndarray:
    """Class index of every pair, ``(P,)`` int64."""
    return _predict(recognizer, x, "recognition", device)


def build(role: str, n_classes: int) -> MEAN:
    """An untrained MEAN to load a saved ``"spotter"`` or ``"recognizer"`` into."""
    return MEAN(n_classes)
