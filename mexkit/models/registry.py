"""A registry of the recognition models mexkit can train, and their hooks.

Each model is one package, ``mexkit/models/<name>/``: the pure network
(``network.py``, torch only), and beside it its inputs (``inputs.py``), its
augmentation, trainer hooks and pre-training, and ``spec.py``, which
describes the model with a :class:`ModelSpec` and registers it with one
:func:`register_model` call (in the manner of timm's ``register_model``).
:func:`get_model`, :func:`get_spec` and :func:`list_models` import every
module of every package of :mod:`mexkit.models` on first use, so
adding a model is adding one package: nothing is listed by hand, and
nothing outside a model's package names it.

What a model needs beyond one plain :func:`mexkit.learn.train.fit` call is a
hook in its entry, a function of its own package: a fold trainer
(:attr:`ModelSpec.trainer`), a report on a finished run
(:attr:`ModelSpec.report`), per-sample extra outputs (the network's
``predict_extras`` method), the pre-training of a frame backbone
(:class:`BackbonePretraining`), spot-then-recognize on stores of whole
videos (:class:`Spotting`), the networks its authors published in another
framework's files and the input they were trained on
(:class:`PublishedNetworks`). What a model's inputs are made from, and by
which command, is recorded once, in the input registry
(:mod:`mexkit.models.inputs`); a model names its inputs and their shapes
only.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._validate import check_option
from ..errors import ParameterError
from ..learn.augment import get_augmentation
from ._nn import count_parameters

__all__ = ["InputSpec", "ModelOption", "TrainDefaults", "BackbonePretraining", "Spotting",
           "PublishedNet", "PublishedNetworks", "PublishedDataset",
           "ModelSpec", "load_model_packages",
           "register_model", "get_model", "get_spec", "list_models",
           "paper_defaults", "count_parameters", "model_options", "constructor_options"]


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
    recorded once, in :mod:`mexkit.models.inputs`.
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
    scope : {"all", "spotting"}
        ``"spotting"``: a setting of spot-then-recognize on stores of whole
        videos only (:class:`Spotting`); a clip-classification run neither
        uses nor records it, and warns when it is given.
    """

    name: str
    type: Any
    default: Any
    help: str
    constructor: bool = True
    scope: str = "all"

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
        Name of an augmentation registered with
        :func:`mexkit.learn.augment.register_augmentation` (by the model's
        package), or None.
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
class BackbonePretraining:
    """How ``mexkit pretrain`` pre-trains a model's per-frame backbone.

    The stand-in for a pre-training on labelled still images that cannot be
    downloaded (AKMNet's AffectNet stage): frames of a labelled store of
    other subjects learn their clip's class, and the model's
    ``weights_option`` then loads the backbone for ``mexkit train``.

    Attributes
    ----------
    frames : callable
        ``frames(n_frames, onset, apex, offset) -> (expression, neutral)``:
        0-based positions of the clip's frames that show its expression and
        of those that show a face at rest (empty lists to skip the clip).
    train : callable
        ``train(frames, targets, n_classes, *, image_size, epochs, lr,
        batch_size, seed, device, progress) -> (state, history)``: frames
        ``(N, 3, S, S)`` float in [0, 1], targets ``(N,)`` int64; returns the
        backbone's ``state_dict`` (CPU tensors) and one record per epoch with
        ``loss`` and ``accuracy``.
    check_image_size : callable
        ``check_image_size(side) -> side``; raises ParameterError for a side
        the backbone cannot take.
    image_size_option : str
        The model option (keyword) of the frame side the network sees; a
        file pre-trained at another side is warned about.
    """

    frames: Callable[..., tuple[list[int], list[int]]]
    train: Callable[..., tuple[dict[str, Any], list[dict[str, float]]]]
    check_image_size: Callable[[Any], int]
    image_size_option: str = "image_size"


@dataclass(frozen=True)
class Spotting:
    """Spot-then-recognize on stores of whole videos (MEAN's evaluation).

    ``mexkit train --model NAME`` on a store whose samples are whole videos
    with ``(j, j + k)`` flow pairs holding :attr:`input` runs a LOSO interval
    spotting evaluation (:mod:`mexkit.pipeline.spotting`) instead of clip
    classification; ``--final`` saves networks that ``mexkit spot`` applies.
    The pipeline reads the videos, makes the pseudo-labels and the frames
    of each training interval, scores and plots; the hooks are the
    network's part.

    Attributes
    ----------
    input : str
        The per-pair input such a store holds (e.g. ``"mean_regions"``).
    produced_by : str
        A ``mexkit`` command line that makes such a store from a crop store
        of whole videos.
    settings : callable
        ``settings(options, *, epochs, batch_size, lr) -> dict``: the
        training settings from the model's options and ``mexkit train``'s
        overrides (None: the paper's). The dict holds ``p``, ``kprime``,
        ``emotions``, ``type_stores`` and ``ratio`` (read by the pipeline)
        beside what :attr:`train` needs; the pipeline adds ``device`` and
        ``deterministic``, and records the dict in results.json.
    train : callable
        ``train(x, y, rx, ry, *, n_classes, settings, seed, checkpoint,
        monitor) -> {"spotter", "recognizer", "history"}``: the
        spotting network trained on per-pair features ``x`` with
        pseudo-labels ``y`` (float, subsampled), the recognition network on
        the onset -> apex features ``rx`` of the training intervals with
        classes ``ry`` (lists of one-row arrays; empty when there are none),
        ``checkpoint(stage)`` the file of the stage ``"spotting"`` or
        ``"recognition"`` (or None), ``monitor`` ``(features, classes)`` of
        the held-out subject's intervals at their onset (or None), watched
        only.
    scores : callable
        ``scores(spotter, x, device) -> (P,)`` spotting score per pair.
    classes : callable
        ``classes(recognizer, x, device) -> (P,)`` class index per pair.
    build : callable
        ``build(role, n_classes) -> nn.Module``: an untrained network of the
        role ``"spotter"`` or ``"recognizer"``, to load saved weights into.
    """

    input: str
    produced_by: str
    settings: Callable[..., dict[str, Any]]
    train: Callable[..., dict[str, Any]]
    scores: Callable[..., Any]
    classes: Callable[..., Any]
    build: Callable[[str, int], nn.Module]


@dataclass
class PublishedNet:
    """One of the authors' published networks, loaded (see :class:`PublishedNetworks`).

    Attributes
    ----------
    module : torch.nn.Module
        The network in eval mode, on the CPU (mexkit's own class, the file's
        weights in it).
    kind : str
        Which heads the file holds (the authors' name, e.g. ``"spot_recog"``).
    n_classes : int
        Outputs of the recognition head (0 without one).
    has_spot, has_recog : bool
        Whether the network has a spotting head and a recognition head.
    outputs : callable
        ``outputs(module, x) -> (spot, probs)``: for a float32 tensor of the
        model's input ``(N, ...)``, the spotting scores ``(N,)`` and the class
        probabilities ``(N, C)`` (None for a missing head), under
        ``torch.no_grad``.
    source : str
        The file it was read from.
    meta : dict
        What the file says of itself (recorded by ``mexkit convert``).
    """

    module: nn.Module
    kind: str
    n_classes: int
    has_spot: bool
    has_recog: bool
    outputs: Callable[[nn.Module, Any], tuple[Any, Any]]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedDataset:
    """What the authors' code fixes for the dataset a published network was trained on.

    Attributes
    ----------
    name : str
    classes : tuple of str
        The recognition head's classes in output order.
    fps : float
        The dataset's frame rate.
    kprime : int
        ``k'`` of smoothing and intervals at that frame rate.
    long : bool
        Long videos (every peak above the threshold) or short clips (the
        single highest peak).
    """

    name: str
    classes: tuple[str, ...]
    fps: float
    kprime: int
    long: bool


@dataclass(frozen=True)
class PublishedNetworks:
    """A model's networks as its authors published them, and the input they saw.

    ``mexkit predict --weights``, ``mexkit spot --weights`` and ``mexkit
    convert`` read the files through these hooks (the pipeline's
    :mod:`mexkit.pipeline.published`); a video given to ``mexkit spot`` is
    cropped with :attr:`crop` and its input built with :attr:`flow`, so the
    networks see what the authors' own code would give them.

    Attributes
    ----------
    title : str
        What the files are (e.g. ``"the authors' Keras HDF5 networks"``).
    files : callable
        ``files(path, need) -> ({fold number: file}, folder)``: the network
        files a ``--weights`` path names (one file: ``{0 or its number:
        file}``); ``need`` is ``"recognition"``, ``"spotting"`` or
        ``"both"`` (a folder of several kinds picks one). Raises
        ParameterError for a path that holds none.
    load : callable
        ``load(file) -> PublishedNet``; raises StoreError for a file that is
        not such a network, naming the first layer that does not fit.
    dataset : callable
        ``dataset(path) -> PublishedDataset | None``: the dataset the path
        names (a folder name), or None.
    true_label : callable
        ``true_label(attrs, classes, scheme) -> str | None``: a store
        sample's class among the network's ``classes`` as the authors label
        it (``scheme``: a mexkit label scheme given by the user, or None).
    folds : callable
        ``folds(subjects, eligible) -> {subject: fold number}``: the
        authors' numbering of their LOSO folds for a store's subjects
        (``eligible``: per sample, whether the authors used it).
    input : str
        The store array the networks take (per sample, ``(P, ...)``).
    produced_by : str
        A ``mexkit`` command line that makes a store holding :attr:`input`.
    crop : Mapping
        Settings of :func:`mexkit.pipeline.crop.run_crop` that give the frames
        the authors' networks saw (``mexkit crop --preset <model>``).
    flow : Mapping
        Settings of :func:`mexkit.pipeline.flow.run_flow` that build
        :attr:`input` from such frames, for whole videos (``pairs="gap"``; the
        gap comes from :attr:`gap`).
    gap : callable
        ``gap(fps) -> k``: the flow gap the authors take at a frame rate.
    convert : callable
        ``convert(file, output, classes) -> Path``: the network as mexkit's
        safetensors weights, for ``mexkit train --weights``.
    check_input : callable
        ``check_input(attrs) -> str | None``: given the attributes of a
        store's samples, a warning when their input was not built as the
        authors build it (None when it was).
    """

    title: str
    files: Callable[[Any, str], tuple[dict[int, Any], Any]]
    load: Callable[[Any], PublishedNet]
    dataset: Callable[[Any], PublishedDataset | None]
    true_label: Callable[..., str | None]
    folds: Callable[..., dict[str, int]]
    input: str
    produced_by: str
    crop: Mapping[str, Any]
    flow: Mapping[str, Any]
    gap: Callable[[float], int]
    convert: Callable[..., Any]
    check_input: Callable[[Sequence[Mapping[str, Any]]], str | None] = lambda attrs: None


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
    reference : str
        The paper.
    paper_parameter_count : callable
        ``f(model) -> int``: the parameter count as the paper counts it;
        Keras' way by default (:func:`~mexkit.models._nn.count_parameters`),
        :func:`~mexkit.models._nn.torch_parameter_count` for PyTorch's.
    pretrain : TrainDefaults or None
        A first training stage the paper uses (MEAN's spotting stage).
    paper_reported : Mapping[int, int]
        Parameter counts printed in the paper, by number of classes.
    options : tuple of ModelOption
        Model-specific settings (ablations, training variants), offered by
        ``mexkit train`` as options.
    trainer : callable or None
        Fold trainer hook, ``trainer(ctx) -> list of epoch records`` with
        ``ctx`` a :class:`mexkit.learn.folds.FoldContext`, for models whose
        training is not one plain :func:`~mexkit.learn.train.fit` call
        (pre-training stages, pairs); None for
        :func:`mexkit.learn.folds.standard`.
    clip_run : callable or None
        ``clip_run(options) -> dict``: what a clip-classification run
        (``mexkit train`` on a store of clips) of the model is, given its
        options, when that differs from what the paper trains (MEAN: the
        recognition network alone, from scratch, unless weights are given);
        recorded in results.json's ``config["run"]``; it may warn, once per
        run.
    weights_option : str or None
        The model option (keyword) that names a weights file every fold starts
        from (AKMNet's pre-trained backbone, MEAN's converted authors'
        network): ``mexkit train`` refuses a file ``mexkit pretrain`` made
        from clips of the store trained on, and each fold's key carries the
        file's SHA-256, so that folds trained from other weights are redone.
    report : callable or None
        Report hook, ``report(results_dir) -> list of paths``, called after
        a training run has written its results (model-specific pictures,
        such as AKMNet's key frames per clip); a
        :class:`~mexkit.errors.MexkitError` there is logged, not raised.
    pretraining : BackbonePretraining or None
        ``mexkit pretrain``'s hooks, for a model with a frame backbone.
    spotting : Spotting or None
        Spot-then-recognize hooks, for a model that spots intervals in
        whole videos.
    published : PublishedNetworks or None
        The networks its authors published (``mexkit predict/spot
        --weights``, ``mexkit convert``) and the crop and input they saw.
    protocol : str
        The evaluation protocol of the paper (``mexkit train``'s default).
    scheme : str or None
        The label scheme of the paper (``mexkit train``'s default; None: the
        label stored with each sample).

    Notes
    -----
    A spec pickles as its name (it is looked up again in the registry), so
    that fold contexts holding it reach worker processes.
    """

    name: str
    constructor: Callable[..., nn.Module]
    inputs: tuple[InputSpec, ...]
    defaults: TrainDefaults
    reference: str
    paper_parameter_count: Callable[[nn.Module], int] = count_parameters
    pretrain: TrainDefaults | None = None
    paper_reported: Mapping[int, int] = field(default_factory=dict)
    options: tuple[ModelOption, ...] = ()
    trainer: Callable[[Any], list[dict[str, Any]]] | None = None
    clip_run: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    weights_option: str | None = None
    report: Callable[[Any], list[Any]] | None = None
    pretraining: BackbonePretraining | None = None
    spotting: Spotting | None = None
    published: PublishedNetworks | None = None
    protocol: str = "loso"
    scheme: str | None = None

    @property
    def module(self) -> str:
        """The module that defines the model's network."""
        return getattr(self.constructor, "__module__", "") or ""

    @property
    def package(self) -> str:
        """The model's package (``mexkit.models.<name>``): the network's module's parent."""
        return self.module.rpartition(".")[0]

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the inputs, in ``forward`` order."""
        return tuple(i.name for i in self.inputs)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return get_spec, (self.name,)


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


_REGISTRY: dict[str, ModelSpec] = {}
_scanned: list[Any] = []


def load_model_packages() -> None:
    """Import every module of every model package of :mod:`mexkit.models`.

    ``spec`` registers the model; ``inputs`` and ``augment`` register its
    inputs and augmentation; ``features`` the flow features it defines
    (:mod:`mexkit.motion.feature_registry`). The folders are listed again only
    when the package's path changed.
    """
    package = importlib.import_module("mexkit.models")
    path = list(package.__path__)
    if _scanned == path:
        return
    for info in pkgutil.iter_modules(path):
        if not info.ispkg or info.name.startswith("_"):
            continue
        model = importlib.import_module(f"mexkit.models.{info.name}")
        for sub in pkgutil.iter_modules(model.__path__):
            importlib.import_module(f"{model.__name__}.{sub.name}")
    _scanned[:] = path


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` registered under ``name``."""
    load_model_packages()
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
    load_model_packages()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def paper_defaults(model_or_name: nn.Module | str, *, stage: str = "recognition"
                   ) -> dict[str, Any]:
    """Keyword arguments of :func:`mexkit.learn.train.fit` with the paper's settings.

    Parameters
    ----------
    model_or_name : torch.nn.Module or str
        A registered model (its ``registry_name``) or a registry name.
    stage : {"recognition", "pretrain"}
        ``"pretrain"`` gives the first stage the paper trains (MEAN's
        spotting stage).

    Returns
    -------
    dict
        ``optimizer``, ``lr``, ``epochs``, ``batch_size``, ``momentum``,
        ``weight_decay``, ``schedule``, ``loss``, ``class_balance`` and
        ``augment`` (a callable or None).
    """
    name = model_or_name if isinstance(model_or_name, str) else getattr(
        model_or_name, "registry_name", None)
    if name is None:
        raise ParameterError(
            f"{type(model_or_name).__name__} is not a registered model; pass the training "
            "settings to fit() explicitly."
        )
    spec = get_spec(name)
    check_option("stage", stage, ("recognition", "pretrain"))
    defaults = spec.defaults if stage == "recognition" else spec.pretrain
    if defaults is None:
        raise ParameterError(f"Model {name!r} has no 'pretrain' stage.")
    kw = defaults.as_fit_kwargs()
    kw["augment"] = get_augmentation(defaults.augmentation)
    return kw


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
