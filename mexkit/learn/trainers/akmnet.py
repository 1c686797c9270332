"""AKMNet's fold trainer (optional pre-trained backbone) and key-frame plots.

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

:func:`write_key_frame_plots` draws, for a few test clips of each class of a
finished run, beta over time with the selected key frames and the max-key
frame marked, from the run's ``predictions.json`` and ``predictions.csv``.

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (2021).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import ParameterError, StoreError
from ..inputs.akmnet import SIDE, AKMNetAugment
from . import FoldContext

__all__ = ["augmentation_for", "fit_fold", "load_weights", "plot_key_frames",
           "write_key_frame_plots"]

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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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


def augmentation_for(train_resize: int | None) -> AKMNetAugment | None:
    """The training augmentation for ``--train-resize``.

    Parameters
    ----------
    train_resize : int or None
        Side the 128x128 frames are resized to before the random 128x128
        crop (the paper's 144, Sec. IV-A); 128 (no resize, no crop) gives
        None: no augmentation. None: the paper's 144.

    Raises
    ------
    ParameterError
        If ``train_resize`` is below 128.
    """
    resize = 144 if train_resize is None else int(train_resize)
    if resize < SIDE:
        raise ParameterError(
            f"Invalid value for the 'train_resize' parameter. It must be at least {SIDE} "
            f"(the paper's 144; {SIDE} turns the random crop off), but got "
            f"{train_resize!r} instead."
        )
    return None if resize == SIDE else AKMNetAugment(resize=resize, crop=SIDE)


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


# -- plots ------------------------------------------------------------------------------------
def plot_key_frames(path: str | os.PathLike, beta: Sequence[float],
                    key_frames: Sequence[int], max_key_frame: int, *, title: str = "",
                    truth: tuple[int, int] | None = None) -> Path:
    """Write a PNG of beta over a clip's frames with its key frames marked.

    Parameters
    ----------
    path : path-like
        Output PNG (written to a temporary name, then renamed).
    beta : sequence of float, length T
        Cosine correlation of each frame with the clip's global vector (eq. 7).
    key_frames : sequence of int
        0-based indices of the selected frames (eq. 8).
    max_key_frame : int
        The frame of highest beta.
    title : str
    truth : (int, int), optional
        A known frame range (e.g. the synthetic expression's) to shade.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    t = list(range(len(beta)))
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    try:
        if truth is not None:
            ax.axvspan(truth[0] - 0.5, truth[1] + 0.5, color="0.9", label="known range")
        ax.plot(t, beta, "-", color="0.3", lw=1)
        mean = sum(beta) / max(len(beta), 1)
        ax.axhline(mean, color="0.6", ls=":", lw=1, label="mean beta")
        ax.plot(list(key_frames), [beta[k] for k in key_frames], "o", color="tab:red",
                ms=5, label="key frames")
        ax.plot([max_key_frame], [beta[max_key_frame]], "*", color="tab:orange", ms=12,
                label="max-key frame")
        ax.set_xlabel("frame")
        ax.set_ylabel("beta")
        ax.ticklabel_format(axis="y", useOffset=False)  # betas often differ in the 4th digit
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


def write_key_frame_plots(results_dir: str | os.PathLike, *, per_class: int = 3,
                          truth: dict[str, tuple[int, int]] | None = None) -> list[Path]:
    """Plot beta and the key frames of ``per_class`` test clips of each true class.

    Reads ``predictions.json`` (AKMNet's ``beta``, ``key_frames`` and
    ``max_key_frame`` per sample) and ``predictions.csv`` (true and predicted
    classes) in ``results_dir`` and writes ``key_frames/<sample>.png``.

    Parameters
    ----------
    results_dir : path-like
        A ``mexkit train --model akmnet`` results folder.
    per_class : int
        Clips plotted per true class (the first ones in sample order).
    truth : dict, optional
        A known frame range per sample id, shaded in the plot.

    Returns
    -------
    list of Path
        The PNG files written.

    Raises
    ------
    StoreError
        If the folder lacks AKMNet predictions.
    """
    results_dir = Path(results_dir)
    extras_path = results_dir / "predictions.json"
    csv_path = results_dir / "predictions.csv"
    if not extras_path.exists() or not csv_path.exists():
        raise StoreError(
            f"{str(results_dir)!r} holds no predictions.json and predictions.csv of an "
            "AKMNet run (`mexkit train --model akmnet` writes them)."
        )
    extras = json.loads(extras_path.read_text())
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(row for row in f if not row.startswith("#")))
    chosen: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda r: r["sample_id"]):
        e = extras.get(row["sample_id"])
        if e is None or "beta" not in e:
            continue
        bucket = chosen.setdefault(row["true"], [])
        if len(bucket) < per_class:
            bucket.append(row)
    written = []
    for cls in sorted(chosen):
        for row in chosen[cls]:
            sid = row["sample_id"]
            e = extras[sid]
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", sid).strip("_") + ".png"
            written.append(plot_key_frames(
                results_dir / "key_frames" / name, e["beta"], e["key_frames"],
                e["max_key_frame"], truth=(truth or {}).get(sid),
                title=f"{sid}: true {row['true']}, predicted {row['pred']}"))
    return written
