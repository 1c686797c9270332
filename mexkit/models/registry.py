"""A registry of the recognition models mexkit can train.

Each model is described by a :class:`ModelSpec`: how to build it, which
inputs it needs (declaratively, so that the pipeline can tell a user which
``mexkit`` commands produce them), the training defaults its paper uses and
how the paper counts its parameters.

Every module of the :mod:`mexkit.models` package registers its models
when it is imported (one :func:`register_model` call beside the model's
definition, in the manner of timm's ``register_model``); :func:`get_model`,
:func:`get_spec` and :func:`list_models` import the package's modules on
first use, so adding a model is adding one module: nothing is listed by
hand. What a model's inputs are made from, and by which command, is recorded
once, in the input registry (:mod:`mexkit.learn.inputs`); a model names its
inputs and their shapes only.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._validate import check_option
from ..errors import ModelInputError, ParameterError

__all__ = [
    "InputSpec",
    "ModelOption",
    "TrainDefaults",
    "ModelSpec",
    "register_model",
    "load_reference",
    "get_model",
    "get_spec",
    "list_models",
    "count_parameters",
    "check_input",
    "model_options",
    "constructor_options",
]

_REGISTRY: dict[str, ModelSpec] = {}
_NOT_MODEL_MODULES = frozenset({"registry"})


@dataclass(frozen=True)
class InputSpec:
    """One input tensor a model needs, per sample (no batch axis).

    Attributes
    ----------
    name : str
        Keyword under which the model's ``forward`` takes the batched input
        and under which a dataset yields it (e.g. ``"mean_regions"``).
    shape : tuple of int or None
        Per-sample shape, e.g. ``(3, 42, 42)``. ``None`` marks an axis whose
        length varies between samples (AKMNet's time axis): the data loader
        pads such inputs to the longest sample of the batch and passes a
        boolean mask ``<name>_mask`` of shape ``(B, T)`` beside them.
    dtype : str
        ``"float32"``; float64 input is accepted and cast.
    description : str
        What the array holds, with units and channel order.

    Notes
    -----
    Which arrays an input is built from and which command produces them is
    recorded once, in :mod:`mexkit.learn.inputs`.
    """

    name: str
    shape: tuple[int | None, ...]
    description: str
    dtype: str = "float32"

    @property
    def variable(self) -> bool:
        """Whether an axis of the input varies in length between samples."""
        return any(s is None for s in self.shape)


@dataclass(frozen=True)
class ModelOption:
    """A model-specific setting, offered as an option of ``mexkit train``.

    Attributes
    ----------
    name : str
        Option name as typed after ``--`` (e.g. ``"no-prior"``); the keyword
        that the model's constructor and trainer receive is the name with
        ``-`` replaced by ``_``.
    type : type or tuple of str
        ``bool`` (a flag), ``int``, ``float``, ``str``, or a tuple of the
        allowed strings.
    default : object
        Value when the option is not given.
    help : str
        One line for ``--help``, naming the paper's setting.
    constructor : bool
        Pass the value to the model's constructor as well as to its trainer
        (``False`` for settings that only change training).
    """

    name: str
    type: Any
    default: Any
    help: str
    constructor: bool = True

    @property
    def keyword(self) -> str:
        """The Python keyword of the option."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class TrainDefaults:
    """Training settings from a model's paper (or its public code).

    Attributes
    ----------
    optimizer : {"adam", "sgd"}
    lr : float
        Initial learning rate.
    epochs : int
    batch_size : int
        Global batch size (split over processes under DDP).
    momentum, weight_decay : float
    schedule : dict or None
        ``None`` for a constant rate, or ``{"kind": "step", "step_size":
        epochs, "gamma": factor}``.
    loss : {"ce", "focal", "mse"}
    class_balance : {"resample", "weights"} or None
    augmentation : str or None
        Name of an augmentation in :mod:`mexkit.learn.augment`, or None.
    notes : str
        Where each value comes from, and what the paper leaves open.
    """

    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: Mapping[str, Any] | None = None
    loss: str = "ce"
    class_balance: str | None = None
    augmentation: str | None = None
    notes: str = ""

    def as_fit_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of :func:`mexkit.learn.train.fit`."""
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "schedule": None if self.schedule is None else dict(self.schedule),
            "loss": self.loss,
            "class_balance": self.class_balance,
        }


@dataclass(frozen=True)
class ModelSpec:
    """Everything mexkit knows about one registered model.

    Attributes
    ----------
    name : str
        Registry name (``--model`` on the command line).
    constructor : callable
        ``constructor(n_classes, **kw) -> torch.nn.Module``.
    inputs : tuple of InputSpec
        The inputs ``forward`` takes, by keyword.
    defaults : TrainDefaults
        The paper's recognition training settings.
    paper_parameter_count : callable
        ``f(model) -> int``: the parameter count as the paper counts it.
    reference : str
        The paper.
    pretrain : TrainDefaults or None
        A first training stage the paper uses (MEAN's spotting stage).
    paper_reported : Mapping[int, int]
        Parameter counts printed in the paper, by number of classes.
    options : tuple of ModelOption
        Model-specific settings (ablations, training variants), offered by
        ``mexkit train`` as options.
    trainer : str or None
        ``"module:function"`` of a fold trainer (see
        :mod:`mexkit.learn.trainers`) for models whose training is not one
        plain :func:`~mexkit.learn.train.fit` call (pre-training stages,
        pairs); None for the standard trainer. A dotted path rather than a
        function keeps this layer free of the training code.
    report : str or None
        ``"module:function"`` called as ``function(results_dir)`` after a
        training run has written its results (model-specific pictures, such
        as AKMNet's key frames per clip); None for none.
    backbone_pretrainer : str or None
        ``"module:function"`` that pre-trains the model's per-frame backbone
        on labelled still frames (``mexkit pretrain``; the stand-in for
        AKMNet's AffectNet stage), with the signature of
        :func:`mexkit.learn.trainers.akmnet.pretrain_backbone`; None for a
        model without one.
    protocol : str
        The evaluation protocol of the paper (``mexkit train``'s default).
    scheme : str or None
        The label scheme of the paper (``mexkit train``'s default; None: the
        label stored with each sample).
    """

    name: str
    constructor: Callable[..., nn.Module]
    inputs: tuple[InputSpec, ...]
    defaults: TrainDefaults
    paper_parameter_count: Callable[[nn.Module], int]
    reference: str
    pretrain: TrainDefaults | None = None
    paper_reported: Mapping[int, int] = field(default_factory=dict)
    options: tuple[ModelOption, ...] = ()
    trainer: str | None = None
    report: str | None = None
    backbone_pretrainer: str | None = None
    protocol: str = "loso"
    scheme: str | None = None

    @property
    def module(self) -> str:
        """The module that defines the model."""
        return getattr(self.constructor, "__module__", "") or ""

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the inputs, in ``forward`` order."""
        return tuple(i.name for i in self.inputs)


def load_reference(reference: str, what: str) -> Any:
    """The object a ``"module:attribute"`` reference names, imported on demand.

    Registry entries name their trainers, reports, pre-trainers and
    augmentations this way, so that the model layer does not import the
    training code.

    Raises
    ------
    ParameterError
        If the module cannot be imported or lacks the attribute; the
        message starts with ``what``.
    """
    module, _, name = str(reference).partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ParameterError(f"{what} {reference!r} cannot be loaded: {exc}") from exc


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry and return it.

    Raises
    ------
    ParameterError
        If a model of that name is already registered and ``overwrite`` is
        False.
    """
    if not overwrite and spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ParameterError(
            f"A model named {spec.name!r} is already registered; pass overwrite=True "
            "to replace it."
        )
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtins() -> None:
    package = importlib.import_module("mexkit.models")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _NOT_MODEL_MODULES:
            continue
        importlib.import_module(f"mexkit.models.{info.name}")


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` registered under ``name``."""
    _load_builtins()
    check_option("model", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def get_model(name: str, n_classes: int, **kw: Any) -> nn.Module:
    """Build the registered model ``name`` for ``n_classes`` classes.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"mean"`` or ``"atnet"``.
    n_classes : int
        Number of classes of the label scheme (at least 2).
    **kw
        Passed to the model's constructor (model options, see
        :attr:`ModelSpec.options`).
    """
    spec = get_spec(name)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ParameterError(
            f"Invalid value for the 'n_classes' parameter. It must be an integer >= 2, "
            f"but got {n_classes!r} instead."
        )
    return spec.constructor(n_classes, **kw)


def list_models() -> list[ModelSpec]:
    """Return the registered models, sorted by name."""
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def count_parameters(model: nn.Module, *, keras_style: bool = True,
                     trainable_only: bool = False) -> int:
    """Count a model's parameters.

    Parameters
    ----------
    model : torch.nn.Module
    keras_style : bool
        Count as Keras' ``model.summary()`` does: batch-norm moving mean and
        moving variance count as (non-trainable) parameters, the
        ``num_batches_tracked`` counter does not, and an LSTM has one bias
        vector per layer (PyTorch keeps two, ``bias_ih`` and ``bias_hh``,
        whose sum is the single bias of the textbook LSTM; Caffe also keeps
        one). With ``keras_style=False``, the plain PyTorch count
        ``sum(p.numel() for p in model.parameters())``.
    trainable_only : bool
        Count only parameters with ``requires_grad`` (moving statistics are
        then excluded, as they are not trainable).

    Returns
    -------
    int
    """
    total = sum(p.numel() for p in model.parameters()
                if p.requires_grad or not trainable_only)
    if not keras_style:
        return total
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not trainable_only:
            if module.running_mean is not None:
                total += module.running_mean.numel() + module.running_var.numel()
        if isinstance(module, nn.LSTM) and module.bias:
            for name, p in module.named_parameters(recurse=False):
                if name.startswith("bias_hh") and (p.requires_grad or not trainable_only):
                    total -= p.numel()
    return total


def check_input(model_name: str, input_name: str, x: Any,
                shape: tuple[int, ...]) -> torch.Tensor:
    """Check one batched model input and return it as a floating tensor.

    Parameters
    ----------
    model_name, input_name : str
        Named in the error message.
    x : torch.Tensor
        Batched input, expected shape ``(B, *shape)``.
    shape : tuple of int
        Per-sample shape.

    Returns
    -------
    torch.Tensor
        ``x`` itself (float16/32/64 are accepted; the caller casts).

    Raises
    ------
    ModelInputError
        If ``x`` is missing, not a floating tensor, or of another shape; the
        message names the model, the input and the expected shape.
    """
    expected = "(B, " + ", ".join("T" if s is None else str(s) for s in shape) + ")"
    if x is None:
        raise ModelInputError(
            f"Model {model_name!r} needs the input {input_name!r} of shape {expected}, "
            "but it was not given."
        )
    if not isinstance(x, torch.Tensor):
        raise ModelInputError(
            f"Model {model_name!r}: input {input_name!r} must be a torch.Tensor of shape "
            f"{expected}, but got {type(x).__name__}."
        )
    if not torch.is_floating_point(x):
        raise ModelInputError(
            f"Model {model_name!r}: input {input_name!r} must be floating point "
            f"(float32 or float64), but got dtype {x.dtype}."
        )
    fits = x.ndim == len(shape) + 1 and all(
        want is None or got == want for got, want in zip(x.shape[1:], shape, strict=False))
    if not fits or x.shape[0] == 0:
        raise ModelInputError(
            f"Model {model_name!r}: input {input_name!r} must have shape {expected} with "
            f"B >= 1, but got shape {tuple(x.shape)}."
        )
    return x


def model_options(spec: ModelSpec, given: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Every option of ``spec`` with its value: ``given`` over the defaults.

    Parameters
    ----------
    spec : ModelSpec
    given : mapping, optional
        Values by keyword (``no_prior``) or by name (``no-prior``).

    Returns
    -------
    dict
        ``{keyword: value}`` for every option the model declares.

    Raises
    ------
    ParameterError
        For an option the model does not declare, naming the models that
        do.
    """
    values = {o.keyword: o.default for o in spec.options}
    for key, value in (given or {}).items():
        kw = key.replace("-", "_")
        if kw not in values:
            owners = sorted(s.name for s in list_models()
                            if any(o.keyword == kw for o in s.options))
            where = f"; it belongs to {', '.join(owners)}" if owners else ""
            raise ParameterError(
                f"Model {spec.name!r} has no option '--{kw.replace('_', '-')}'{where}. "
                f"Its options: {', '.join('--' + o.name for o in spec.options) or 'none'}."
            )
        values[kw] = value
    return values


def constructor_options(spec: ModelSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``values`` (from :func:`model_options`) the constructor takes."""
    return {o.keyword: values[o.keyword] for o in spec.options
            if o.constructor and o.keyword in values}
