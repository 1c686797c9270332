"""AKMNet's backbone pre-training on still frames (the stand-in for its AffectNet stage).

``mexkit pretrain`` (:mod:`mexkit.pipeline.pretraining`) reads a labelled
store of other subjects and calls these hooks
(:class:`~mexkit.models.registry.BackbonePretraining`):
:func:`expression_frames` picks each clip's frames, :func:`pretrain_backbone`
trains the ResNet-18 of Table II on them.

References
----------
.. [1] Peng et al., AKMNet, arXiv:2009.09179 (2021), Sec. IV-B (the full reference:
   :mod:`mexkit.models.akmnet.network`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._validate import check_int, check_range
from ...errors import ParameterError
from .inputs import SIDE
from .network import AKMResNet18, check_image_size

__all__ = ["expression_frames", "pretrain_backbone"]


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
