"""MERSiamC3D's two training stages: prior learning on clip pairs, then target learning.

For one fold ([1]_, Sec. 3.2 and 4.1.2):

1. **Prior learning.** Every unordered pair of the fold's *training* clips
   is a sample (eq. 7 counts them: ``M = N (N - 1) / 2``), labelled 1 when
   both clips have the same class and 0 otherwise (:func:`clip_pairs`). The
   pairs are split 90/10 (:func:`split_pairs`); the 90 % train
   :class:`~mexkit.models.mersiamc3d.network.SiameseC3D` (shared SinC3D, weighted
   L1 distance, sigmoid, binary cross-entropy) and the 10 % measure its
   same/different accuracy after the last epoch. An epoch is every
   training pair, as the paper trains on "the 90 % of the sample pairs"
   (it states no other count). For quick runs, ``pairs_per_epoch`` draws
   that many of them per epoch, uniformly without replacement, anew per
   epoch from (seed, epoch) (:func:`epoch_pairs`): the same/different ratio
   is kept as eq. 7 has it (in expectation), not balanced; ``balance=True``
   in :func:`epoch_pairs` draws half of each instead.
2. **Target learning.** The target network's SinC3D *is* the siamese
   network's (one module), so it starts from the prior-learned
   convolutions; conv1..conv``freeze`` are frozen (2 in the paper, Table 7),
   and the network is trained on the fold's clips with the model's loss
   (the focal loss of eq. 11 by default, alpha from the class frequencies
   of the fold's training clips). An epoch is the paper's augmented set:
   its augmentation makes "36 times more data combined with original
   samples" (Sec. 4.1.2), so each training clip appears
   ``copies_per_epoch`` = 36 times per epoch, each time with its own random
   augmentation (1 for quick runs). ``--no-prior`` skips stage 1 and
   freezes nothing (Table 7, "without PL").

The steps per epoch of each stage (``ceil(samples / batch size)``) are in
the epoch records (``steps``, ``samples``) and in ``mexkit train``'s
report.

Both stages use the paper's SGD settings (lr 0.004, momentum 0.9, /10
every 10 epochs, 100 epochs, or the user's overrides) and the paper's
augmentation (:class:`~mexkit.models.mersiamc3d.augment.KeyframeFlowAugment`),
applied on the fly to training batches only (never at prediction).

References
----------
.. [1] S. Zhao, H. Tao, Y. Zhang, T. Xu, K. Zhang, Z. Hao, E. Chen, "A
   two-stage 3D CNN based learning method for spontaneous micro-expression
   recognition" (MERSiamC3D), 2021 (as in :mod:`mexkit.models.mersiamc3d.network`,
   which also cites the siamese networks of Koch et al.).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..._validate import check_int, check_range
from ...errors import ParameterError
from ...io.checkpoints import checkpoint_epoch
from ...learn.folds import FoldContext
from ...learn.train import fit, predict
from .network import INPUT_NAME, MERSiamC3D, SiameseC3D

__all__ = ["count_pairs", "clip_pairs", "split_pairs", "epoch_pairs", "PairDataset",
           "prior_learning", "fit_fold", "AUGMENTED_COPIES", "steps_per_epoch"]

#: Sec. 4.1.2: the augmentation gives "36 times more data combined with original samples".
AUGMENTED_COPIES = 36


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Optimiser steps of one epoch: ``ceil(samples / batch_size)``."""
    return -(-int(samples) // int(batch_size))

logger = logging.getLogger("mexkit")

# -- pairs (eq. 7) -----------------------------------------------------------------------
def count_pairs(labels: Sequence[int] | np.ndarray) -> tuple[int, int, int]:
    """Same-class, different-class and total pair counts of eq. 7.

    ``M = 1/2 sum_i (N_i (N_i - 1) + N_i (N - N_i))``: the same-class pairs
    ``sum_i N_i (N_i - 1) / 2`` plus the different-class pairs
    ``sum_i N_i (N - N_i) / 2``; ``M = N (N - 1) / 2``.

    Parameters
    ----------
    labels : sequence of int, shape (N,)

    Returns
    -------
    same, different, total : int
    """
    y = np.asarray(labels, dtype=np.int64).ravel()
    n = y.size
    counts = np.unique(y, return_counts=True)[1] if n else np.zeros(0, np.int64)
    same = int((counts * (counts - 1)).sum() // 2)
    different = int((counts * (n - counts)).sum() // 2)
    return same, different, same + different


def clip_pairs(indices: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray
               ) -> np.ndarray:
    """Every unordered pair of the clips ``indices``, with its same/different label.

    Parameters
    ----------
    indices : sequence of int, shape (N,)
        Dataset indices of the clips that may be paired: a fold's training
        clips, so that no pair contains a test clip.
    labels : sequence of int
        Class of *every* dataset item (indexed by ``indices``).

    Returns
    -------
    numpy.ndarray of int64, shape (N (N - 1) / 2, 3)
        Rows ``(i, j, same)`` with ``i < j`` dataset indices and ``same`` 1
        when ``labels[i] == labels[j]``, else 0; ordered by ``(i, j)``.

    Raises
    ------
    ParameterError
        For repeated indices or fewer than two clips.
    """
    idx = np.asarray(indices, dtype=np.int64).ravel()
    y = np.asarray(labels, dtype=np.int64).ravel()
    if np.unique(idx).size != idx.size:
        raise ParameterError("Invalid value for the 'indices' parameter: indices repeat.")
    if idx.size < 2:
        raise ParameterError(
            f"Prior learning needs at least two training clips to pair, but got {idx.size}.")
    if idx.min() < 0 or idx.max() >= y.size:
        raise ParameterError(
            f"Invalid value for the 'indices' parameter: they must lie in [0, {y.size}), "
            f"but got {int(idx.min())}..{int(idx.max())}.")
    idx = np.sort(idx)
    a, b = np.triu_indices(idx.size, k=1)
    i, j = idx[a], idx[b]
    return np.stack([i, j, (y[i] == y[j]).astype(np.int64)], axis=1)


def split_pairs(pairs: np.ndarray, *, holdout: float = 0.1, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Split pairs at random into training and held-out parts (90/10 in the paper).

    Parameters
    ----------
    pairs : numpy.ndarray, shape (M, 3)
        From :func:`clip_pairs`.
    holdout : float
        Fraction held out, in [0, 1); rounded down, and none when that
        leaves fewer than one pair.
    seed : int

    Returns
    -------
    train, held : numpy.ndarray
        Rows of ``pairs`` (each in its original order).
    """
    check_range("holdout", holdout, 0.0, 1.0, high_open=True)
    m = len(pairs)
    n_held = int(np.floor(holdout * m))
    perm = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**32, 7])).permutation(m)
    held = np.sort(perm[:n_held])
    train = np.sort(perm[n_held:])
    return pairs[train], pairs[held]


def epoch_pairs(pairs: np.ndarray, *, epoch: int, seed: int = 0, max_pairs: int = 0,
                balance: bool = False) -> np.ndarray:
    """The pairs one epoch of prior learning uses.

    Parameters
    ----------
    pairs : numpy.ndarray, shape (M, 3)
        Training pairs.
    epoch : int
        0-based; each epoch draws anew from ``(seed, epoch)``.
    seed : int
    max_pairs : int
        At most this many per epoch; 0: all (then ``balance`` is ignored).
    balance : bool
        False: a uniform draw, which keeps the same/different ratio of the
        pairs (in expectation). True: half same-class, half different-class
        pairs (as far as each kind has enough).

    Returns
    -------
    numpy.ndarray, shape (min(M, max_pairs), 3)
        Sorted by position in ``pairs``.
    """
    check_int("epoch", epoch, 0)
    check_int("max_pairs", max_pairs, 0)
    m = len(pairs)
    if max_pairs == 0 or m <= max_pairs:
        return pairs
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**32, int(epoch), 11]))
    if not balance:
        return pairs[np.sort(rng.choice(m, size=max_pairs, replace=False))]
    same = np.flatnonzero(pairs[:, 2] == 1)
    diff = np.flatnonzero(pairs[:, 2] == 0)
    n_same = min(same.size, max_pairs // 2)
    n_diff = min(diff.size, max_pairs - n_same)
    n_same = min(same.size, max_pairs - n_diff)
    chosen = np.concatenate([rng.choice(same, size=n_same, replace=False),
                             rng.choice(diff, size=n_diff, replace=False)])
    return pairs[np.sort(chosen)]


class PairDataset(Dataset):
    """Items ``({"first": x_i, "second": x_j}, same)`` over a clip dataset.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Items ``({input_name: tensor}, label)``.
    pairs : numpy.ndarray, shape (M, 3)
        Rows ``(i, j, same)`` (:func:`clip_pairs`).
    input_name : str
        The input of the clip dataset that goes into the siamese network.
    """

    def __init__(self, dataset: Any, pairs: np.ndarray, input_name: str) -> None:
        self.dataset = dataset
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
        self.input_name = input_name
        self.labels = [int(v) for v in self.pairs[:, 2]]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], int]:
        i, j, same = (int(v) for v in self.pairs[index])
        return ({"first": self.dataset[i][0][self.input_name],
                 "second": self.dataset[j][0][self.input_name]}, same)


# -- the fold trainer ------------------------------------------------------------------------
def _holdout_accuracy(siamese: Any, dataset: Any, held: np.ndarray, input_name: str,
                      device: str, batch_size: int) -> float | None:
    if len(held) == 0:
        return None
    scores, _ = predict(siamese, PairDataset(dataset, held, input_name), device=device,
                        batch_size=batch_size)
    return float(np.mean((scores[:, 1] > 0.5).astype(np.int64) == held[:, 2]))


def prior_learning(ctx: FoldContext, siamese: Any, *, pairs_per_epoch: int, augment: Any,
                   epochs: int = 0) -> list[dict[str, Any]]:
    """Stage 1: train ``siamese`` on pairs of the fold's training clips.

    Returns the epoch records (``"stage": "prior"``); the last one carries
    ``holdout_accuracy`` (same/different accuracy on the 10 % held-out
    pairs) and the pair counts.
    """
    pairs = clip_pairs(ctx.train, ctx.labels)
    train_pairs, held = split_pairs(pairs, holdout=0.1, seed=ctx.seed)
    kw = {**ctx.fit_kwargs, "loss": "ce", "class_balance": None, "focal_alpha": None,
          "augment": augment, "collate_fn": None}
    base_epochs = int(kw.pop("epochs"))
    epochs = int(epochs) if epochs else base_epochs
    path = ctx.checkpoint_dir / "prior.safetensors"
    done = checkpoint_epoch(path)
    sampled = 0 < pairs_per_epoch < len(train_pairs)
    per_epoch = pairs_per_epoch if sampled else len(train_pairs)
    steps = steps_per_epoch(per_epoch, int(kw["batch_size"]))
    logger.info("prior learning: %d pairs per epoch (%s), batch %d: %d steps per epoch, "
                "%d epochs", per_epoch, "drawn" if sampled else "every training pair",
                int(kw["batch_size"]), steps, epochs)
    bar = ctx.progress(f"prior learning ({steps} steps/epoch)", epochs)
    try:
        def run(until: int, epoch_set: np.ndarray) -> dict[str, Any]:
            return fit(siamese, PairDataset(ctx.dataset, epoch_set, INPUT_NAME), epochs=until,
                       device=ctx.device, seed=ctx.seed, deterministic=ctx.deterministic,
                       checkpoint_path=path, progress=bar.callback, **kw)

        if not sampled:
            out = run(epochs, train_pairs)
        elif done >= epochs:  # finished before: load the weights
            out = run(epochs, epoch_pairs(train_pairs, epoch=epochs - 1, seed=ctx.seed,
                                          max_pairs=pairs_per_epoch))
        else:
            # one fit call per epoch on that epoch's draw; each resumes the last checkpoint
            for e in range(done, epochs):
                out = run(e + 1, epoch_pairs(train_pairs, epoch=e, seed=ctx.seed,
                                             max_pairs=pairs_per_epoch))
    finally:
        bar.close()
    records = [{**r, "stage": "prior", "samples": per_epoch, "steps": steps}
               for r in out["epochs"]]
    same, different, total = count_pairs(ctx.labels[np.asarray(ctx.train)])
    acc = _holdout_accuracy(siamese, ctx.dataset, held, INPUT_NAME, ctx.device,
                            int(kw["batch_size"]))
    if records:
        records[-1].update({"holdout_accuracy": acc, "pairs_same": same,
                            "pairs_different": different, "pairs_train": len(train_pairs),
                            "pairs_holdout": len(held),
                            "pairs_per_epoch": min(len(train_pairs), pairs_per_epoch)
                            if pairs_per_epoch else len(train_pairs)})
    logger.info("prior learning: %d training pairs (%d same, %d different of %d), "
                "held-out accuracy %s", len(train_pairs), same, different, total,
                "n/a" if acc is None else f"{acc:.3f}")
    return records


def fit_fold(ctx: FoldContext) -> list[dict[str, Any]]:
    """Train MERSiamC3D on one fold: prior learning, then target learning.

    Parameters
    ----------
    ctx : mexkit.learn.folds.FoldContext
        ``ctx.model`` is a :class:`~mexkit.models.mersiamc3d.network.MERSiamC3D`;
        ``ctx.options`` may hold ``no_prior`` (bool), ``freeze`` (int, 0-5),
        ``pairs_per_epoch`` (int, 0 = all pairs every epoch, the default),
        ``prior_epochs`` (int, 0 = the target stage's epochs) and
        ``copies_per_epoch`` (int, 36 = the paper's augmented set).

    Returns
    -------
    list of dict
        Epoch records of both stages, tagged ``"stage": "prior"`` and
        ``"stage": "target"``.
    """
    model = ctx.model
    if not isinstance(model, MERSiamC3D):
        raise ParameterError(
            f"The MERSiamC3D trainer needs a MERSiamC3D model, but got {type(model).__name__}.")
    opts = dict(ctx.options)
    no_prior = bool(opts.get("no_prior", False))
    freeze = check_int("freeze", opts.get("freeze", model.freeze), 0)
    pairs_per_epoch = check_int("pairs_per_epoch", opts.get("pairs_per_epoch", 0), 0)
    prior_epochs = check_int("prior_epochs", opts.get("prior_epochs", 0), 0)
    copies = check_int("copies_per_epoch", opts.get("copies_per_epoch", AUGMENTED_COPIES), 1)
    _, frames, size, _ = model.input_shape
    # the registry names KeyframeFlowAugment as the paper's augmentation; fit applies it to
    # training batches only
    augment = ctx.fit_kwargs.get("augment")
    target_kw: dict[str, Any] = {"augment": augment}
    if (ctx.fit_kwargs.get("loss") == "focal" and ctx.fit_kwargs.get("focal_alpha") is None
            and ctx.fit_kwargs.get("class_balance") is None):
        # Sec. 5.2: alpha from the class frequencies of the training data ("balanced":
        # N / (C N_c), proportional to N_max / N_c; the loss is normalised by the sum of
        # the batch's alphas, so only the ratios matter)
        target_kw["focal_alpha"] = "balanced"
    records: list[dict[str, Any]] = []
    if not no_prior:
        siamese = SiameseC3D(model.features, frames=frames, size=size,
                             resolution=model.resolution, dense=model.dense_units)
        records += prior_learning(ctx, siamese, pairs_per_epoch=pairs_per_epoch,
                                  augment=augment, epochs=prior_epochs)
    frozen = model.freeze_convs(0 if no_prior else freeze)
    if frozen:
        logger.info("target learning: %d convolution(s) frozen (%s)", freeze,
                    ", ".join(frozen))
    # the augmented set: every training clip `copies` times, each drawing its own variant
    indices = np.repeat(np.asarray(ctx.train), copies)
    batch = int(ctx.fit_kwargs["batch_size"])
    steps = steps_per_epoch(len(indices), batch)
    logger.info("target learning: %d clips x %d copies = %d samples per epoch, batch %d: "
                "%d steps per epoch", len(ctx.train), copies, len(indices), batch, steps)
    try:
        target = ctx.fit(model, indices, stage="target", **target_kw)
    finally:
        model.freeze_convs(0)
    return records + [{**r, "samples": len(indices), "steps": steps} for r in target]
