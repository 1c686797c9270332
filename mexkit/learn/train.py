"""Training and prediction for in-memory torch datasets, on CPU, GPU or DDP.

A dataset is a ``torch.utils.data.Dataset`` whose items are ``(inputs,
label)``: ``inputs`` is a tensor (passed to the model positionally) or a
dict of tensors (passed by keyword, named as in the model's registry
entry), ``label`` an int class index (a float target for ``loss="mse"``).
A dataset may expose its labels as a ``labels`` attribute (sequence of N
ints) to spare :func:`fit` a pass over the data when it balances classes.

Reproducibility
---------------
:func:`fit` seeds Python, NumPy and torch from ``seed``, and at the start
of each epoch re-seeds torch (dropout) and draws the epoch's sample order
and augmentation from generators seeded by (seed, epoch). An epoch's
randomness therefore does not depend on how the run got there, which is
what makes resuming exact: with ``deterministic=True`` (deterministic
kernels, cuDNN benchmarking off) a run resumed from the checkpoint of epoch
k ends with the same weights as a run that was never interrupted. Seed the
model's initialisation yourself (:func:`seed_everything` before building
it).

Data in memory
--------------
A dataset whose items are collated by torch's default collate (no
``collate_fn``, no worker processes) and whose items together take at most
:data:`IN_MEMORY_BYTES` is collated once, into one tensor per input, and each
batch is taken from those tensors by index (on the training device). The
batches hold the same values in the same order as a ``DataLoader`` would
build them item by item, so the results are the same; small models then
spend their epochs on their own operations, not on building batches. The
held-out ``monitor`` samples are held the same way.

Checkpoints
-----------
One safetensors file: the model's state (``model.<key>``), the optimizer's
tensor state (``optim.<param>.<key>``) and, in the file's metadata, a JSON
document with the completed epoch count, the seed, the training
configuration, the history and the optimizer's scalar state. Loading it
runs no code (no pickle). It is written after every ``checkpoint_every``
epochs (with ``checkpoint_seconds``, only once that long has passed since the
last one) and after the last epoch, to a temporary name that is synced to
disk and renamed into place.

Distributed training
--------------------
When launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment),
:func:`fit` joins the process group (NCCL on CUDA, Gloo on CPU), puts the
model on ``cuda:LOCAL_RANK`` when a CUDA device is asked for, wraps it in
``DistributedDataParallel`` and gives each process an equal share of every
batch: ``batch_size`` is the global batch, which must be divisible by the
number of processes. Each epoch's sample order is drawn identically on all
ranks and sharded with ``DistributedSampler``, so a DDP run follows the
same optimisation path as a single process with the same global batch
(exactly so for models without batch norm or dropout, whose statistics and
masks are per process). Only rank 0 writes checkpoints. The user's command
does not change besides the launcher.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize", Signal
   Process. Image Commun. 110 (2023): Adam 5e-4, two-stage training.
.. [2] M. Peng et al., "A Novel Apex-Time Network for Cross-Dataset
   Micro-Expression Recognition", ACII 2019: SGD 0.01, /10 every 10 epochs.
.. [3] T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for
   Dense Object Detection", ICCV 2017.
"""
from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    WeightedRandomSampler,
    default_collate,
)

from .. import __version__
from .._validate import check_option, check_range
from ..errors import ParameterError
from ..io.checkpoints import (
    CHECKPOINT_FORMAT,
    DamagedCheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from .distributed import distributed_setup
from .losses import focal_loss
from .optim import Optimizer, make_optimizer

__all__ = [
    "fit",
    "move_to_device",
    "predict",
    "seed_everything",
    "parse_schedule",
    "ratio_subsample",
    "load_checkpoint",
    "CHECKPOINT_FORMAT",
]

logger = logging.getLogger("mexkit")

_OPTIMIZERS = ("adam", "sgd")
_LOSSES = ("ce", "focal", "mse")
_BALANCE = ("resample", "weights", None)
_SCHEDULES = ("constant", "step", "cosine")
# Settings that shape the optimisation path: a checkpoint made with other values
# cannot be resumed.
_TRAJECTORY_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "schedule", "batch_size",
                    "seed", "class_balance", "loss", "focal_gamma", "focal_alpha", "augment")
#: Largest training set (bytes of its inputs) that :func:`fit` collates once and batches by
#: index (see the module's "Data in memory").
IN_MEMORY_BYTES = 512 << 20


# -- seeding ------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _derive(*keys: int) -> int:
    """A 63-bit seed that depends on all of ``keys`` (SeedSequence hashing)."""
    state = np.random.SeedSequence([int(k) % 2**32 for k in keys]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def _seed_torch(seed: int, device: torch.device) -> None:
    """Seed torch's generators for a run on ``device``: on the CPU its default generator
    only. ``torch.manual_seed`` also queues the seeding of every accelerator backend,
    formatting the caller's stack for each (about 2.5 ms a call, most of a small
    model's epoch overhead); none of those generators is used on the CPU."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _set_deterministic(mode: bool, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=...)`` without its import of
    ``torch._inductor.config`` (which loads torch's compiler stack: about 1.2 s of CPU
    in each fold worker). That config's flag only steers ``torch.compile``d code; it is
    set as well when the compiler is already loaded."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # another torch: its public call
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    setter(mode, warn_only=warn_only)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = mode


@contextmanager
def _determinism(enabled: bool, device: torch.device):
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if enabled:
        if device.type == "cuda":
            # cuBLAS needs this before its first call to be deterministic.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _set_deterministic(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        _set_deterministic(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic = previous[2]
        torch.backends.cudnn.benchmark = previous[3]


def ratio_subsample(labels: Sequence[int], *, ratio: float = 8.0, seed: int = 0,
                    negative: int = 0) -> np.ndarray:
    """Indices of a subsample with at most ``ratio`` negatives per positive.

    MEAN trains its spotting head on all ME frames and a random subset of
    the non-ME frames, ``ratio`` of them per ME frame (8:1 in the paper).

    Parameters
    ----------
    labels : sequence of int, shape (N,)
        0/1 pseudo-labels (``negative`` marks the non-ME class).
    ratio : float
        Negatives kept per positive.
    seed : int
    negative : int

    Returns
    -------
    numpy.ndarray of int64
        Sorted indices: all positives and ``min(#neg, floor(ratio * #pos))``
        negatives drawn without replacement.
    """
    check_range("ratio", ratio, 0.0, low_open=True)
    y = np.asarray(labels)
    neg = np.flatnonzero(y == negative)
    pos = np.flatnonzero(y != negative)
    keep = min(neg.size, int(math.floor(ratio * pos.size)))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(neg, size=keep, replace=False) if keep else neg[:0]
    return np.sort(np.concatenate([pos, chosen])).astype(np.int64)


# -- data -----------------------------------------------------------------------
def _labels_of(dataset: Dataset) -> np.ndarray:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    return np.asarray([int(v) for v in labels], dtype=np.int64)


def _item_bytes(item: Any) -> int:
    inputs = item[0]
    tensors = inputs.values() if isinstance(inputs, Mapping) else [inputs]
    return sum(t.numel() * t.element_size() if isinstance(t, torch.Tensor)
               else np.asarray(t).nbytes for t in tensors)


class _InMemory:
    """A dataset collated once: ``inputs`` (a tensor or a dict of tensors, first axis the
    items) and ``target``; :meth:`batch` takes items by index."""

    def __init__(self, inputs: Any, target: torch.Tensor) -> None:
        self.inputs = inputs
        self.target = target

    @classmethod
    def of(cls, dataset: Dataset, collate_fn: Callable[..., Any] | None, num_workers: int,
           device: torch.device) -> _InMemory | None:
        """The dataset held in memory, or None where batches must be built item by item
        (a ``collate_fn``, worker processes, or more than :data:`IN_MEMORY_BYTES`)."""
        n = len(dataset)
        if collate_fn is not None or num_workers or n == 0:
            return None
        first = dataset[0]
        if _item_bytes(first) * n > IN_MEMORY_BYTES:
            return None
        inputs, target = default_collate([first] + [dataset[i] for i in range(1, n)])
        if device.type == "cuda":  # one copy on the device instead of one per batch
            inputs, target = move_to_device(inputs, device), target.to(device)
        return cls(inputs, target)

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def batch(self, index: Sequence[int]) -> tuple[Any, torch.Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long, device=self.target.device)
        if isinstance(self.inputs, Mapping):
            return {k: v[idx] for k, v in self.inputs.items()}, self.target[idx]
        return self.inputs[idx], self.target[idx]

    def batches(self, order: Sequence[int], size: int) -> Any:
        """``(inputs, target)`` of ``order[i:i + size]``, as a DataLoader would give them.

        A DataLoader draws one number from torch's global generator when it starts
        iterating (its workers' base seed, drawn even without workers); the same draw is
        made here, so that the dropout masks that follow, and with them the results, are
        those of the item-by-item path.
        """
        torch.empty((), dtype=torch.int64).random_()
        for start in range(0, len(order), size):
            yield self.batch(order[start:start + size])


def move_to_device(inputs: Any, device: torch.device) -> Any:
    """Move a batch (a tensor or a dict of tensors) to ``device``."""
    if isinstance(inputs, Mapping):
        return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=True)


def _call(model: nn.Module, inputs: Any) -> torch.Tensor:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def _epoch_order(n: int, sample_weights: torch.Tensor | None, seed: int, epoch: int,
                 rank: int, world: int) -> list[int]:
    """The epoch's sample indices for this rank (identical draws on every rank)."""
    gen = torch.Generator().manual_seed(_derive(seed, epoch, 1))
    if sample_weights is None:
        order = list(RandomSampler(range(n), generator=gen))
    else:
        order = list(WeightedRandomSampler(sample_weights, n, replacement=True, generator=gen))
    if world > 1:
        shard = DistributedSampler(order, num_replicas=world, rank=rank, shuffle=False)
        order = [order[i] for i in shard]
    return order


# -- loss -------------------------------------------------------------------------
def _loss(kind: str, out: torch.Tensor, target: torch.Tensor,
          class_weights: torch.Tensor | None, gamma: float) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(out.reshape(target.shape), target.to(out.dtype))
    if kind == "ce":
        return F.cross_entropy(out, target, weight=class_weights)
    return focal_loss(out, target, alpha=class_weights, gamma=gamma, reduction="weighted")


# -- optimiser and schedule -----------------------------------------------------------
def _check_schedule(schedule: Mapping[str, Any] | None) -> dict[str, Any]:
    if schedule is None:
        return {"kind": "constant"}
    if not isinstance(schedule, Mapping) or "kind" not in schedule:
        raise ParameterError(
            f"Invalid value for the 'schedule' parameter: expected None or a dict with a "
            f"'kind' key, but got {schedule!r}."
        )
    s = dict(schedule)
    check_option("schedule kind", s["kind"], _SCHEDULES)
    if s["kind"] == "step":
        s.setdefault("gamma", 0.1)
        if "step_size" not in s:
            raise ParameterError("A 'step' schedule needs a 'step_size' (epochs).")
        check_range("step_size", s["step_size"], 1)
    if s["kind"] == "cosine":
        s.setdefault("eta_min", 0.0)
    return s


def parse_schedule(text: str) -> dict[str, Any]:
    """Parse a learning-rate schedule written on a command line.

    Parameters
    ----------
    text : str
        ``"constant"``; ``"step:N"`` or ``"step:N:GAMMA"`` (multiply the
        rate by GAMMA, default 0.1, every N epochs); ``"cosine"`` or
        ``"cosine:ETA_MIN"`` (cosine annealing to ETA_MIN, default 0).

    Returns
    -------
    dict
        The ``schedule`` argument of :func:`fit`.

    Raises
    ------
    ParameterError
        For any other text.

    Examples
    --------
    >>> parse_schedule("step:40")
    {'kind': 'step', 'step_size': 40, 'gamma': 0.1}
    """
    kind, *args = str(text).strip().split(":")
    usage = ("expected 'constant', 'step:N', 'step:N:GAMMA', 'cosine' or 'cosine:ETA_MIN'")
    try:
        if kind == "constant" and not args:
            return _check_schedule({"kind": "constant"})
        if kind == "step" and len(args) in (1, 2):
            s: dict[str, Any] = {"kind": "step", "step_size": int(args[0])}
            if len(args) == 2:
                s["gamma"] = float(args[1])
                check_range("gamma", s["gamma"], 0.0, 1.0, low_open=True)
            return _check_schedule(s)
        if kind == "cosine" and len(args) <= 1:
            s = {"kind": "cosine"}
            if args:
                s["eta_min"] = float(args[0])
                check_range("eta_min", s["eta_min"], 0.0)
            return _check_schedule(s)
    except ValueError as exc:
        raise ParameterError(
            f"Invalid learning-rate schedule {text!r}: {usage} ({exc})."
        ) from exc
    raise ParameterError(f"Invalid learning-rate schedule {text!r}: {usage}.")


def _lr_at(lr: float, schedule: Mapping[str, Any], epoch: int, epochs: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based)."""
    kind = schedule["kind"]
    if kind == "step":
        return lr * schedule["gamma"] ** (epoch // schedule["step_size"])
    if kind == "cosine":
        eta = schedule["eta_min"]
        return eta + (lr - eta) * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2
    return lr


# -- checkpoints (the file format is io's: mexkit.io.checkpoints) ------------------------
def _restore_optimizer(optimizer: Optimizer, tensors: dict[str, torch.Tensor],
                       meta: dict[str, Any], device: torch.device) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value.to(device)
    for pid, values in meta["optimizer_scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = meta["optimizer_param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    # Adam keeps 'step' on the CPU; load_state_dict may have moved it.
    for pstate in optimizer.state.values():
        if "step" in pstate and isinstance(pstate["step"], torch.Tensor):
            pstate["step"] = pstate["step"].to("cpu")


# -- distributed ------------------------------------------------------------------------
def _unused_parameters(model: nn.Module, loader_item: Any, device: torch.device) -> list[str]:
    """Names of trainable parameters the loss does not reach (e.g. an inactive head).

    One forward and backward pass in training mode (a cuDNN LSTM has no
    backward in evaluation mode); buffers such as batch-norm statistics are
    restored afterwards, so the probe leaves no trace in the model.
    """
    was_training = model.training
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.train()
    out = _call(model, move_to_device(loader_item, device))
    out.float().sum().backward()
    unused = [name for name, p in model.named_parameters()
              if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    model.train(was_training)
    return unused


def _describe(augment: Callable[..., Any] | None) -> str | None:
    """A description of ``augment`` that is stable across processes."""
    if augment is None:
        return None
    name = getattr(augment, "__qualname__", None)
    if name is not None:
        return f"{getattr(augment, '__module__', '')}.{name}"
    text = repr(augment)
    return type(augment).__qualname__ if " at 0x" in text else text


# -- fit ----------------------------------------------------------------------------------
def fit(model: nn.Module, train_dataset: Dataset, *, epochs: int, optimizer: str = "adam",
        lr: float = 5e-4, momentum: float = 0.0, weight_decay: float = 0.0,
        schedule: Mapping[str, Any] | None = None, batch_size: int = 32,
        device: str | torch.device = "cpu", seed: int = 0, deterministic: bool = True,
        class_balance: str | None = None, loss: str = "ce", focal_gamma: float = 2.0,
        focal_alpha: Sequence[float] | str | None = None,
        augment: Callable[..., Any] | None = None, collate_fn: Callable[..., Any] | None = None,
        checkpoint_path: str | os.PathLike | None = None, resume: bool = True,
        checkpoint_every: int = 1, progress: Callable[[dict[str, Any]], None] | None = None,
        num_workers: int = 0, monitor: Dataset | None = None,
        checkpoint_seconds: float = 0.0) -> dict[str, Any]:
    """Train ``model`` on ``train_dataset``.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place (moved to ``device``). A ``regularization_loss()``
        method, when the model has one, is added to the loss.
    train_dataset : torch.utils.data.Dataset
        Items ``(inputs, label)``; see the module docstring.
    epochs : int
        Total number of epochs (a resumed run trains the remaining ones).
    optimizer : {"adam", "sgd"}
    lr, momentum, weight_decay : float
        ``momentum`` applies to SGD only.
    schedule : dict or None
        Learning-rate schedule by epoch: None (constant), ``{"kind": "step",
        "step_size": 10, "gamma": 0.1}`` or ``{"kind": "cosine",
        "eta_min": 1e-8}``.
    batch_size : int
        Global batch size (divided among DDP processes).
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    seed : int
    deterministic : bool
        Use deterministic kernels (``torch.use_deterministic_algorithms``,
        cuDNN deterministic, no benchmarking) during the call; the previous
        settings are restored afterwards.
    class_balance : {"resample", "weights"} or None
        ``"resample"``: draw each epoch's samples with replacement with
        probability proportional to 1 / (size of their class);
        ``"weights"``: weight the loss per class by ``N / (C * N_c)``
        (scikit-learn's "balanced"); None: neither.
    loss : {"ce", "focal", "mse"}
        Cross-entropy, focal loss with ``focal_gamma`` (class weights act as
        its alpha unless ``focal_alpha`` is given), or mean squared error for
        a regression head (MEAN's spotting head; float targets, no class
        balancing).
    focal_gamma : float
        The focusing parameter of the focal loss ([3]_; 2 in MERSiamC3D).
    focal_alpha : sequence of float, "balanced" or None
        Per-class weights alpha of the focal loss: one value per class, or
        ``"balanced"`` for ``N / (C * N_c)`` from the training labels (the
        class frequencies, as MERSiamC3D motivates them); None: the class
        weights of ``class_balance="weights"``, or 1.
    augment : callable, optional
        ``augment(inputs, *, generator) -> inputs`` applied to each training
        batch on the device (see :mod:`mexkit.learn.augment`).
    collate_fn : callable, optional
        The DataLoader's ``collate_fn`` (e.g. :func:`mexkit.learn.data.pad_collate`
        for clips of varying length); torch's default when None.
    checkpoint_path : path, optional
        Where to keep the safetensors checkpoint.
    resume : bool
        Continue from ``checkpoint_path`` when it exists. Its training
        settings must match these (``epochs`` may differ).
    checkpoint_every : int
        Epochs between checkpoints (the last epoch is always saved).
    checkpoint_seconds : float
        Also at least this many seconds between checkpoints: one is due
        after ``checkpoint_every`` epochs once this long has passed since
        the last one was written (or since training started); the last
        epoch is always saved. Each checkpoint is synced to disk (tens of
        milliseconds), which for a small network can cost more than its
        epochs: a killed run then repeats at most about this much training.
        0 (the default) writes every ``checkpoint_every`` epochs.
    progress : callable, optional
        Called with each epoch's history record (on rank 0 only).
    num_workers : int
        DataLoader worker processes.
    monitor : torch.utils.data.Dataset, optional
        Samples whose loss (unweighted, without regularisation) and accuracy
        are measured after every epoch, in evaluation mode, and recorded as
        ``monitor_loss``, ``monitor_accuracy`` and ``monitor_pred`` (each
        sample's predicted class index, in the dataset's order). They only
        watch the training (nothing is chosen on them), so a held-out test
        fold may serve without leaking into the result.

    Returns
    -------
    dict
        ``config`` (the settings), ``epochs`` (one record per epoch:
        ``epoch`` 1-based, ``loss``, ``accuracy`` (classification), ``lr``,
        ``seconds``), ``resumed_from`` (completed epochs found in the
        checkpoint, or None), ``world_size``.

    Raises
    ------
    ParameterError
        For invalid settings, or a checkpoint made with other settings.
    """
    check_option("optimizer", optimizer, _OPTIMIZERS)
    check_option("loss", loss, _LOSSES)
    check_option("class_balance", class_balance, _BALANCE)
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1),
                             ("checkpoint_every", checkpoint_every, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ParameterError(
                f"Invalid value for the {name!r} parameter. It must be an integer, but got "
                f"{value!r} instead."
            )
        check_range(name, int(value), low)
    check_range("lr", lr, 0.0, low_open=True)
    check_range("checkpoint_seconds", checkpoint_seconds, 0.0)
    check_range("momentum", momentum, 0.0, 1.0)
    check_range("weight_decay", weight_decay, 0.0)
    sched = _check_schedule(schedule)
    check_range("focal_gamma", focal_gamma, 0.0)
    if isinstance(focal_alpha, str):
        check_option("focal_alpha", focal_alpha, ("balanced",))
    elif focal_alpha is not None:
        focal_alpha = [float(a) for a in focal_alpha]
        if not focal_alpha or min(focal_alpha) < 0:
            raise ParameterError(
                f"Invalid value for the 'focal_alpha' parameter: expected non-negative "
                f"weights, one per class, but got {focal_alpha!r} instead.")
    if loss == "mse" and class_balance is not None:
        raise ParameterError(
            f"class_balance={class_balance!r} needs class labels; it cannot be used with "
            "loss='mse' (subsample the data instead, e.g. with ratio_subsample)."
        )
    if len(train_dataset) == 0:
        raise ParameterError("The training dataset is empty.")

    device = torch.device(device)
    rank, world, device, created_group = distributed_setup(device)
    if batch_size % world:
        raise ParameterError(
            f"Invalid value for the 'batch_size' parameter: the global batch of {batch_size} "
            f"cannot be split evenly over {world} processes."
        )
    config = {
        "epochs": int(epochs), "optimizer": optimizer, "lr": float(lr),
        "momentum": float(momentum), "weight_decay": float(weight_decay), "schedule": sched,
        "batch_size": int(batch_size), "seed": int(seed), "deterministic": bool(deterministic),
        "class_balance": class_balance, "loss": loss, "focal_gamma": float(focal_gamma),
        "focal_alpha": focal_alpha,
        "augment": _describe(augment),
        "model_class": type(model).__name__,
    }
    try:
        with _determinism(deterministic, device):
            return _fit(model, train_dataset, config=config, device=device, rank=rank,
                        world=world, augment=augment, checkpoint_path=checkpoint_path,
                        resume=resume, checkpoint_every=int(checkpoint_every),
                        progress=progress, num_workers=num_workers, collate_fn=collate_fn,
                        monitor=monitor, checkpoint_seconds=float(checkpoint_seconds))
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


def _class_weights(config: Mapping[str, Any], dataset: Dataset, model: nn.Module,
                   device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(per-class loss weights, per-sample draw weights) of ``class_balance``."""
    if config["class_balance"] is None:
        return None, None
    labels = _labels_of(dataset)
    n_classes = int(getattr(model, "n_classes", labels.max() + 1))
    present = np.unique(labels)
    counts = np.bincount(labels, minlength=n_classes)
    weights = np.ones(n_classes)
    # scikit-learn's "balanced" weights over the classes present, N / (C * N_c) (computed
    # here: importing scikit-learn costs every fold worker more than a second of CPU)
    weights[present] = len(labels) / (len(present) * counts[present].astype(np.float64))
    if config["class_balance"] == "weights":
        return torch.as_tensor(weights, dtype=torch.float32, device=device), None
    return None, torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)


def _focal_alpha(config: Mapping[str, Any], dataset: Dataset, model: nn.Module,
                 device: torch.device) -> torch.Tensor | None:
    """The focal loss's per-class alpha (``focal_alpha``), or None."""
    if config["focal_alpha"] is None or config["loss"] != "focal":
        return None
    labels = _labels_of(dataset)
    n_classes = int(getattr(model, "n_classes", labels.max() + 1))
    if config["focal_alpha"] == "balanced":
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        values = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0)
    else:
        values = np.asarray(config["focal_alpha"], dtype=np.float64)
        if values.size != n_classes:
            raise ParameterError(
                f"Invalid value for the 'focal_alpha' parameter: {values.size} weight(s) "
                f"given for {n_classes} classes.")
    return torch.as_tensor(values, dtype=torch.float32, device=device)


def _freeze_unused(model: nn.Module, dataset: Dataset, batch: int,
                   collate_fn: Callable[..., Any] | None, device: torch.device
                   ) -> list[nn.Parameter]:
    """Freeze the parameters the loss does not reach (one probe batch); return them."""
    probe = DataLoader(dataset, batch_size=min(batch, len(dataset)), shuffle=False,
                       collate_fn=collate_fn)
    unused = _unused_parameters(model, next(iter(probe))[0], device)
    frozen = [p for name, p in model.named_parameters() if name in unused]
    for p in frozen:
        p.requires_grad_(False)
    if unused:
        logger.debug("fit: parameters not reached by the loss, left untouched: %s", unused)
    return frozen


def _train_epoch(net: nn.Module, loader: Any, opt: Optimizer, *,
                 config: Mapping[str, Any], device: torch.device,
                 augment: Callable[..., Any] | None, aug_gen: torch.Generator,
                 weights: torch.Tensor | None, regularize: Callable[[], torch.Tensor] | None,
                 world: int) -> torch.Tensor:
    """One pass over ``loader`` (a DataLoader or :meth:`_InMemory.batches`); returns (loss
    sum, correct, count) over every process."""
    classify = config["loss"] != "mse"  # the mode: set once by _fit (see there)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    for inputs, target in loader:
        inputs = move_to_device(inputs, device)
        target = target.to(device)
        target = target.long() if classify else target.float()
        if augment is not None:
            inputs = augment(inputs, generator=aug_gen)
        out = _call(net, inputs)
        value = _loss(config["loss"], out, target, weights, config["focal_gamma"])
        if regularize is not None:
            value = value + regularize()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        b = target.shape[0]
        totals[0] += float(value.detach()) * b
        totals[2] += b
        if classify:
            totals[1] += float((out.detach().argmax(1) == target).sum())
    if world > 1:
        reduced = totals.to(device)
        dist.all_reduce(reduced)
        totals = reduced.cpu()
    return totals


def _fit(model: nn.Module, dataset: Dataset, *, config: dict[str, Any], device: torch.device,
         rank: int, world: int, augment: Callable[..., Any] | None,
         checkpoint_path: str | os.PathLike | None, resume: bool, checkpoint_every: int,
         progress: Callable[[dict[str, Any]], None] | None, num_workers: int,
         collate_fn: Callable[..., Any] | None = None,
         monitor: Dataset | None = None, checkpoint_seconds: float = 0.0) -> dict[str, Any]:
    seed, epochs = config["seed"], config["epochs"]
    seed_everything(_derive(seed, 0, 0, rank))
    model.to(device)
    class_weights, sample_weights = _class_weights(config, dataset, model, device)
    alpha = _focal_alpha(config, dataset, model, device)
    weights = alpha if alpha is not None else class_weights
    local_batch = config["batch_size"] // world
    frozen = _freeze_unused(model, dataset, local_batch, collate_fn, device)
    held = _InMemory.of(dataset, collate_fn, num_workers, device)
    watched = None
    if monitor is not None and len(monitor) and rank == 0:
        watched = _InMemory.of(monitor, collate_fn, 0, device) or monitor
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ParameterError(f"{type(model).__name__} has no trainable parameters.")
        opt = make_optimizer(config["optimizer"], params, lr=config["lr"],
                             momentum=config["momentum"], weight_decay=config["weight_decay"])
        history: list[dict[str, Any]] = []
        start_epoch = 0
        resumed_from = None
        path = Path(checkpoint_path) if checkpoint_path is not None else None
        if path is not None and resume and path.exists():
            try:
                start_epoch, history = _resume(path, model, opt, config, device)
                resumed_from = start_epoch
                logger.info("fit: resuming from %s after epoch %d", path, start_epoch)
            except DamagedCheckpointError as exc:  # as if missing: train from the start
                logger.warning("%s It is trained again from the first epoch.", exc)
        net: nn.Module = model
        if world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        regularize = getattr(model, "regularization_loss", None)
        saved = {"at": _clock()}  # when the last checkpoint was written
        # the training mode, once: in the loop only _monitor switches modes, and it gives
        # every module its own back
        net.train()
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            lr_e = _lr_at(config["lr"], config["schedule"], epoch, epochs)
            for group in opt.param_groups:
                group["lr"] = lr_e
            _seed_torch(_derive(seed, epoch, 2, rank), device)
            aug_gen = torch.Generator().manual_seed(_derive(seed, epoch, 3, rank))
            order = _epoch_order(len(dataset), sample_weights, seed, epoch, rank, world)
            if held is not None:
                loader: Any = held.batches(order, local_batch)
            else:
                loader = DataLoader(dataset, batch_size=local_batch, sampler=order,
                                    num_workers=num_workers, pin_memory=device.type == "cuda",
                                    collate_fn=collate_fn)
            totals = _train_epoch(net, loader, opt, config=config, device=device,
                                  augment=augment, aug_gen=aug_gen, weights=weights,
                                  regularize=regularize, world=world)
            record = {"epoch": epoch + 1, "loss": float(totals[0] / totals[2]), "lr": lr_e,
                      "seconds": round(time.perf_counter() - t0, 4)}
            if config["loss"] != "mse":
                record["accuracy"] = float(totals[1] / totals[2])
            if watched is not None:
                record.update(_monitor(model, watched, config["loss"], device, collate_fn))
            history.append(record)
            logger.debug("fit: %s", record)
            if rank == 0:
                _after_epoch(record, progress, path, model, opt, config, history,
                             every=checkpoint_every, seconds=checkpoint_seconds, saved=saved)
        if world > 1:
            dist.barrier()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return {"config": config, "epochs": history, "resumed_from": resumed_from,
            "world_size": world}


_clock = time.monotonic  # the checkpoints' clock (tests replace it)


def _after_epoch(record: dict[str, Any], progress: Callable[[dict[str, Any]], None] | None,
                 path: Path | None, model: nn.Module, opt: Optimizer,
                 config: dict[str, Any], history: list[dict[str, Any]], *, every: int,
                 seconds: float = 0.0, saved: dict[str, float] | None = None) -> None:
    """Report the epoch and save a checkpoint after the last epoch and every ``every``
    epochs once ``seconds`` have passed since ``saved["at"]`` (the last save)."""
    if progress is not None:
        progress(record)
    epoch = record["epoch"]
    now = _clock()
    due = epoch % every == 0 and (saved is None or now - saved["at"] >= seconds)
    if path is not None and (due or epoch == config["epochs"]):
        if saved is not None:
            saved["at"] = now
        save_checkpoint(path, model, opt, {
            "epoch": epoch, "seed": config["seed"], "config": config, "history": history,
            "model_class": type(model).__name__, "mexkit_version": __version__,
        })


def _resume(path: Path, model: nn.Module, opt: Optimizer,
            config: dict[str, Any], device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    model_state, optim_tensors, meta = load_checkpoint(path)
    old = meta.get("config", {})
    differ = [k for k in _TRAJECTORY_KEYS if old.get(k) != config.get(k)]
    if old.get("model_class") != config["model_class"]:
        differ.append("model_class")
    if differ:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in differ)
        raise ParameterError(
            f"The checkpoint {str(path)!r} was made with other training settings ({shown}); "
            "resume with the same settings, or pass resume=False to start again."
        )
    try:
        model.load_state_dict({k: v.to(device) for k, v in model_state.items()})
        _restore_optimizer(opt, optim_tensors, meta, device)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ParameterError(
            f"The checkpoint {str(path)!r} does not fit this model: {exc}"
        ) from exc
    return int(meta["epoch"]), list(meta.get("history", []))


def _evaluation_mode(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Put every module of ``model`` in evaluation mode, as ``model.eval()`` does; return
    each module's mode before, for :func:`_restore_modes`.

    The flags are set directly: ``eval()`` and ``train()`` walk the modules through
    ``nn.Module.__setattr__``, about 0.3 ms each for MEAN, whose epochs under bin/demo
    take about 17 ms. A model whose class overrides ``train`` for more than the flags
    goes through ``eval()`` (MEAN's override, which keeps frozen batch norm in
    evaluation mode, sets flags only and says so: ``train_sets_flags_only``).
    """
    modules = list(model.modules())
    before = [(m, m.training) for m in modules]
    if any(type(m).train is not nn.Module.train and not getattr(m, "train_sets_flags_only",
                                                                 False) for m in modules):
        model.eval()
        return before
    for m in modules:
        object.__setattr__(m, "training", False)
    return before


def _restore_modes(before: list[tuple[nn.Module, bool]]) -> None:
    """Give each module the mode :func:`_evaluation_mode` found it in."""
    for m, mode in before:
        object.__setattr__(m, "training", mode)


@torch.inference_mode()
def _monitor(model: nn.Module, dataset: Dataset | _InMemory, loss_kind: str,
             device: torch.device, collate_fn: Callable[..., Any] | None) -> dict[str, Any]:
    """Loss, accuracy and predicted classes of held-out samples, in evaluation mode; mode
    restored after."""
    modes = _evaluation_mode(model)
    total = correct = count = 0.0
    predicted: list[int] = []
    try:
        if isinstance(dataset, _InMemory):
            loader: Any = dataset.batches(range(len(dataset)), 256)
        else:
            loader = DataLoader(dataset, batch_size=256, shuffle=False, collate_fn=collate_fn)
        for inputs, target in loader:
            out = _call(model, move_to_device(inputs, device))
            target = target.to(device)
            if loss_kind == "mse":
                value = F.mse_loss(out.reshape(target.shape), target.to(out.dtype),
                                   reduction="sum")
            else:
                target = target.long()
                value = F.cross_entropy(out, target, reduction="sum")
                correct += float((out.argmax(1) == target).sum())
                predicted += out.argmax(1).tolist()
            total += float(value)
            count += int(target.shape[0])
    finally:
        _restore_modes(modes)
    result = {"monitor_loss": total / max(count, 1)}
    if loss_kind != "mse":
        result["monitor_accuracy"] = correct / max(count, 1)
        result["monitor_pred"] = predicted  # watched only: nothing is chosen here
    return result


# -- predict ------------------------------------------------------------------------------
@torch.inference_mode()
def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 256,
            device: str | torch.device = "cpu", num_workers: int = 0,
            collate_fn: Callable[..., Any] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Scores and predicted classes for every item of ``dataset``, in order.

    Parameters
    ----------
    model : torch.nn.Module
        Put in evaluation mode (and moved to ``device``).
    dataset : torch.utils.data.Dataset
        Items ``(inputs, label)``; labels are ignored.
    batch_size : int
    device : str or torch.device
    num_workers : int
    collate_fn : callable, optional
        As in :func:`fit`.

    Returns
    -------
    scores : numpy.ndarray, float32
        ``(N, C)`` softmax probabilities for a classifier; ``(N,)`` raw
        outputs for a regression head (MEAN's spotting head).
    preds : numpy.ndarray
        ``(N,)`` int64 argmax classes; for a regression head, the scores.
    """
    check_range("batch_size", batch_size, 1)
    device = torch.device(device)
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate_fn)
    outs = []
    for inputs, _ in loader:
        outs.append(_call(model, move_to_device(inputs, device)).float().cpu())
    if not outs:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    out = torch.cat(outs)
    if out.ndim == 1:
        scores = out.numpy().astype(np.float32)
        return scores, scores.copy()
    scores = torch.softmax(out, dim=1).numpy().astype(np.float32)
    return scores, scores.argmax(axis=1).astype(np.int64)
