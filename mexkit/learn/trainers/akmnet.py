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

from ..._validate import check_int, check_range
from ...errors import ParameterError, StoreError
from ..inputs.akmnet import SIDE, AKMNetAugment
from . import FoldContext

__all__ = ["augmentation_for", "expression_frames", "fit_fold", "load_weights",
           "plot_key_frames", "pretrain_backbone", "write_key_frame_plots"]

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


# -- pre-training on still frames (the paper's AffectNet stage) ------------------------------
def expression_frames(n_frames: int, onset: int | None, apex: int | None,
                      offset: int | None) -> tuple[list[int], list[int]]:
    """The still frames of one annotated clip used to pre-train the backbone.

    The paper fine-tunes the ResNet-18 on AffectNet stills of expressions
    before training AKMNet ([1]_, Sec. IV-B). Without AffectNet, a labelled
    store of other subjects stands in: the frames around a clip's apex show
    its expression, its onset and offset frames a face at rest.

    Parameters
    ----------
    n_frames : int
        Frames in the clip.
    onset, apex, offset : int or None
        0-based positions in the clip (None or negative: not annotated; the
        onset then defaults to the first frame and the offset to the last).

    Returns
    -------
    expression : list of int
        ``apex - 1``, ``apex`` and ``apex + 1``, kept inside onset..offset;
        empty when the apex is unknown or outside the clip.
    neutral : list of int
        The onset and offset frames that are not expression frames; empty
        when the apex is unknown.
    """
    n = int(n_frames)
    if apex is None or not 0 <= int(apex) < n:
        return [], []
    first = 0 if onset is None or not 0 <= int(onset) < n else int(onset)
    last = n - 1 if offset is None or not 0 <= int(offset) < n else int(offset)
    apex = int(apex)
    lo, hi = min(first, apex), max(last, apex)
    expression = [k for k in (apex - 1, apex, apex + 1) if lo <= k <= hi]
    neutral = sorted({k for k in (first, last) if k not in expression})
    return expression, neutral


def _shift_batch(x: Any, gen: Any, max_shift: int) -> Any:
    """The batch moved by one random offset of up to ``max_shift`` pixels (edges repeated)."""
    import torch
    import torch.nn.functional as F

    if max_shift <= 0:
        return x
    side = x.shape[-1]
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
    return padded[..., dy:dy + side, dx:dx + side]


def pretrain_backbone(frames: Any, targets: Any, n_classes: int, *, image_size: int = SIDE,
                      epochs: int = 40, lr: float = 0.01, batch_size: int = 16,
                      momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                      device: str = "cpu",
                      progress: Any = None) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Pre-train AKMNet's ResNet-18 to classify still frames.

    The stand-in for the paper's fine-tuning on 4,000 AffectNet images
    ([1]_, Sec. IV-B): the backbone of Table II, global average pooling and
    a linear classifier learn the expression (or rest) of single frames; the
    classifier is then discarded and the backbone's weights start AKMNet
    (``mexkit train --model akmnet --weights``).

    Parameters
    ----------
    frames : torch.Tensor, shape (N, 3, S, S)
        Frames in [0, 1], as AKMNet's input builder gives them.
    targets : torch.Tensor of int64, shape (N,)
        Class of each frame, in ``0 .. n_classes - 1``.
    n_classes : int
    image_size : int
        Side the frames are resized to (the ``--image-size`` AKMNet will be
        trained with: the features depend on the scale).
    epochs, lr, batch_size, momentum, weight_decay : number
        SGD with cosine decay of the learning rate to 0 over ``epochs``.
    seed : int
        Seeds the initialisation, the batch order and the augmentation.
    device : str
    progress : callable, optional
        Called after each epoch with ``{"epoch", "loss", "accuracy"}``.

    Returns
    -------
    state : dict of str to torch.Tensor
        The backbone's ``state_dict`` (on the CPU).
    history : list of dict
        ``epoch``, ``loss`` (class-balanced cross-entropy) and training
        ``accuracy`` of each epoch.

    Notes
    -----
    Each batch is shifted by one random offset of up to ``image_size / 16``
    pixels (edges repeated), the order of change of the paper's 144 -> 128
    random crops. (A separate offset per image generalised worse to unseen
    subjects: frame accuracy 0.85 against 0.93 with a nearest-class-mean
    read-out on another synthetic set, one seed.) The loss weighs every
    class by the inverse of its number of frames, so rest frames (two per
    clip) do not outweigh the expressions.

    Raises
    ------
    ParameterError
        If the frames and targets disagree, a target is out of range or a
        setting is invalid.

    References
    ----------
    .. [1] M. Peng et al., "Recognizing Micro-Expression in Video Clip with
       Adaptive Key-Frame Mining", arXiv:2009.09179, Sec. IV-B.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from ...models.akmnet import AKMResNet18, check_image_size

    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_int("n_classes", n_classes, 2)
    check_range("lr", lr, 0.0, low_open=True)
    check_image_size(image_size)
    frames = torch.as_tensor(frames, dtype=torch.float32)
    targets = torch.as_tensor(targets, dtype=torch.int64)
    if frames.ndim != 4 or frames.shape[1] != 3 or targets.shape != (frames.shape[0],):
        raise ParameterError(
            f"pretrain_backbone needs frames (N, 3, S, S) and targets (N,), but got "
            f"{tuple(frames.shape)} and {tuple(targets.shape)}.")
    if len(targets) == 0 or int(targets.min()) < 0 or int(targets.max()) >= n_classes:
        raise ParameterError(
            f"pretrain_backbone: targets must lie in 0..{n_classes - 1} and there must be at "
            f"least one frame, but got {len(targets)} frame(s).")
    if frames.shape[-1] != image_size:
        frames = torch.cat([F.interpolate(chunk, size=(image_size, image_size),
                                          mode="bilinear", align_corners=False, antialias=True)
                            for chunk in frames.split(256)])
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    backbone = AKMResNet18().to(device)
    head = nn.Linear(512, n_classes).to(device)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    counts = torch.bincount(targets, minlength=n_classes).clamp(min=1).to(torch.float32)
    class_weight = (counts.sum() / (n_classes * counts)).to(device)
    n = len(targets)
    max_shift = image_size // 16
    history = []
    backbone.train()
    head.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        total_loss, correct = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and n >= 2:  # batch norm needs two images
                idx = order[max(0, start - 1):start + batch_size]
            x = _shift_batch(frames[idx], gen, max_shift).to(device)
            y = targets[idx].to(device)
            logits = head(backbone(x).mean(dim=(2, 3)))
            loss = F.cross_entropy(logits, y, weight=class_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == y).sum())
        sched.step()
        record = {"epoch": epoch + 1, "loss": total_loss / n, "accuracy": correct / n}
        history.append(record)
        if progress is not None:
            progress(record)
    state = {k: v.detach().to("cpu").clone() for k, v in backbone.state_dict().items()}
    return state, history


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
