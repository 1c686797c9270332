"""Train and evaluate a registered model on a feature store under a protocol.

Writes, in the output folder:

``results.json``
    Configuration, versions, per-fold and pooled metrics (MEGC pools the
    predictions of all folds).
``predictions.csv``
    One row per test sample: ``sample_id, subject, dataset, fold, true,
    pred`` and one ``score_<class>`` column per class (DESIGN.md's format).
``confusion.png``
    The pooled confusion matrix.
``folds/<fold>.json`` and ``checkpoints/<fold>-<key>/``
    Finished folds and checkpoints of the fold in training (one every 5 s
    of training and after its last epoch, ``mexkit.learn.folds``): a killed
    run resumes at the fold and the epoch of its last checkpoint; the
    folder's name carries the fold's key, so a fold whose samples, settings
    or code changed trains afresh.

What a model needs beyond the generic loop comes from its registry entry
(:class:`~mexkit.models.registry.ModelSpec`): its fold trainer, its report,
its pre-trained weights option, and, for a store of whole videos, its
spot-then-recognize evaluation (:mod:`mexkit.pipeline.spotting`). Nothing
here names a model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import logging
import os
import pkgutil
import platform
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from .. import __version__
from .._validate import check_option
from ..devices import resolve_device, usable_cores
from ..errors import LabelError, MexkitError, ParameterError, WorkerLostError
from ..io.atomic import write_text
from ..io.checkpoints import load_checkpoint, save_checkpoint
from ..io.predictions import write_predictions
from ..io.store import open_store
from ..io.store.write import _is_mexkit_store
from ..labels import get_scheme
from ..learn.data import StoreDataset, collate_for
from ..learn.distributed import destroy, distributed_setup, rank, world_size
from ..learn.folds import CHECKPOINT_SECONDS, FoldContext, standard
from ..learn.train import move_to_device, parse_schedule, predict, seed_everything
from ..models.inputs import build_input
from ..models.registry import (
    ModelSpec,
    constructor_options,
    count_parameters,
    get_model,
    get_spec,
    paper_defaults,
)
from ..models.registry import model_options as resolve_options
from .labelled import SampleTable, sample_table
from .parallel import current_config, is_lost_worker, parallel_map
from .reports import EpochBars, format_report, jsonable, plot_confusion, plot_training, safe_name
from .weights import check_weights, weights_digest

__all__ = ["TrainingRun", "train_model", "train_evaluate", "predict_store",
           "select_on_test_rows", "SELECTED_ON_TEST"]

logger = logging.getLogger("mexkit")

PROTOCOLS = ("loso", "kfold", "cde", "hde")


@dataclass(frozen=True)
class TrainingRun:
    """What ``mexkit train`` reports: the results file and its metric table.

    ``report`` is None in the processes of a torchrun job other than rank 0
    (only rank 0 reports).
    """

    results: Path
    report: str | None


def train_model(store_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                model: str, protocol: str | None = None, epochs: int | None = None,
                batch_size: int | None = None, lr: float | None = None,
                model_options: Mapping[str, Any] | None = None, device: str = "auto",
                seed: int = 0, deterministic: bool = True, final: bool = False,
                **kw: Any) -> TrainingRun:
    """``mexkit train``: cross-validate ``model`` on a store, or spot-then-recognize.

    A store of whole videos that holds the per-pair input of a model with
    spotting hooks (:attr:`~mexkit.models.registry.ModelSpec.spotting`) runs
    the model's LOSO spotting evaluation
    (:func:`mexkit.pipeline.spotting.train_spotting`; default folder
    ``<store>.<model>-spot-loso``); any other store runs
    :func:`train_evaluate` (default folder ``<store>.<model>-<protocol>``).
    ``kw`` are :func:`train_evaluate`'s other settings (ignored by spotting).
    """
    # start-up: fold workers, which unpickle this module, never spot (flow, runner)
    from .spot_eval import format_spot_report  # start-up: as above
    from .spotting import is_spotting_store, train_spotting  # start-up: as above

    spec = get_spec(model)
    # absolute paths: fold workers of an earlier call (a reused process pool) keep the
    # working folder of that call, so a relative path would name another file there
    path = Path(store_path).absolute()
    out_dir = Path(out_dir).absolute() if out_dir is not None else None
    stem = path.name.split(".")[0]
    if spec.spotting is not None and is_spotting_store(path, spec.spotting.input):
        out = Path(out_dir) if out_dir is not None else path.with_name(
            f"{stem}.{model}-spot-loso")
        results = train_spotting(path, out, model=model, options=model_options,
                                 protocol=protocol, epochs=epochs, batch_size=batch_size,
                                 lr=lr, device=device, seed=seed, deterministic=deterministic,
                                 final=final, scheme=kw.get("scheme"))
        report = format_spot_report(json.loads(results.read_text())["metrics"])
        return TrainingRun(results, report)
    out = Path(out_dir) if out_dir is not None else path.with_name(
        f"{stem}.{model}-{protocol or spec.protocol}")
    results = train_evaluate(path, out, model=model, protocol=protocol, epochs=epochs,
                             batch_size=batch_size, lr=lr, model_options=model_options,
                             device=device, seed=seed, deterministic=deterministic,
                             final=final, **kw)
    if rank() != 0:
        return TrainingRun(results, None)
    return TrainingRun(results, format_report(json.loads(results.read_text())))


def train_evaluate(store_path: str | os.PathLike, out_dir: str | os.PathLike, **kw: Any
                   ) -> Path:
    """Cross-validate a model on a store; see :func:`_train_evaluate`.

    Under torchrun (``WORLD_SIZE`` > 1) the process group is created once here
    for every fold, rather than by each fold's ``fit`` call.
    """
    created = False
    if world_size() > 1:
        _, _, _, created = distributed_setup(resolve_device(kw.get("device", "auto")))
    try:
        return _train_evaluate(store_path, out_dir, **kw)
    finally:
        destroy(created)


# -- what a run is: its settings, checked, and its samples -------------------------------
@dataclass
class _Run:
    """One cross-validation run: the settings checked, the samples read."""

    spec: ModelSpec
    store_path: str
    protocol: str
    scheme: str | None
    device: str
    seed: int
    deterministic: bool
    options: dict[str, Any]
    fit_kwargs: dict[str, Any]
    table: SampleTable
    keys: dict[str, str]
    failed_upstream: dict[str, str]
    dataset: StoreDataset
    config: dict[str, Any]
    folds: list[Any]

    def key_config(self) -> dict[str, Any]:
        """What a fold's key covers: the settings and the code, not the store's path or
        id nor the device (a fold trained by other code is redone)."""
        out = {k: v for k, v in self.config.items() if k not in ("store", "device")}
        out["code"] = _code_digest(self.spec)
        return out

    def sample_keys(self, indices: Sequence[int]) -> list[str]:
        return [self.keys.get(self.table.sample_ids[i], "") for i in indices]


#: Environment variable: seconds of training at least between two checkpoints of a fold
#: (default :data:`mexkit.learn.folds.CHECKPOINT_SECONDS`; 0: after every epoch).  It
#: changes what a killed fold repeats, not the result, so results.json does not record it.
CHECKPOINT_ENV = "MEXKIT_CHECKPOINT_SECONDS"


def _checkpoint_seconds() -> float:
    text = os.environ.get(CHECKPOINT_ENV, "").strip()
    if not text:
        return CHECKPOINT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ParameterError(f"{CHECKPOINT_ENV}={text!r}: give a number of seconds >= 0.")
    return value


def _fit_kwargs(spec: ModelSpec, *, epochs: int | None, batch_size: int | None,
                lr: float | None, schedule: str | None, loss: str | None,
                focal_alpha: Sequence[float] | str | None, focal_gamma: float | None,
                class_balance: str | None) -> dict[str, Any]:
    """The paper's training settings with the user's overrides (None: the paper's)."""
    kw = paper_defaults(spec.name)
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "loss": loss,
                 "focal_gamma": focal_gamma, "focal_alpha": focal_alpha}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if schedule is not None:
        kw["schedule"] = parse_schedule(schedule)
    if class_balance != "default":
        kw["class_balance"] = class_balance
    kw["collate_fn"] = collate_for(spec.inputs)
    kw["checkpoint_seconds"] = _checkpoint_seconds()
    return kw


def _prepare(store_path: str | os.PathLike, *, model: str, protocol: str | None,
             scheme: str | None, n_splits: int, device: str, seed: int, deterministic: bool,
             options: Mapping[str, Any] | None, fit_kwargs: Mapping[str, Any]) -> _Run:
    """Check every setting and read the samples (a missing input fails here)."""
    spec = get_spec(model)
    protocol = spec.protocol if protocol is None else protocol
    scheme = spec.scheme if scheme is None else scheme
    check_option("protocol", protocol, PROTOCOLS)
    device = str(resolve_device(device))
    opts = _clip_options(spec, resolve_options(spec, options), options)
    run_entry = spec.clip_run(opts) if spec.clip_run is not None else None
    from .stages import upstream_entry  # start-up: fold workers, as split below

    with open_store(store_path) as store:
        table = sample_table(store, scheme=scheme)
        upstream = upstream_entry(store)
        keys = store.cache_keys()
        failed_upstream = dict(store.failures)
        weights = _weights_entry(spec, opts, store, protocol=protocol)
    inputs = list(spec.input_names)
    dataset = StoreDataset(store_path, table.sample_ids, table.y, inputs, build=build_input)
    dataset.preload()  # a missing input fails here, before any training
    kw = dict(fit_kwargs)
    config = {"model": model, "protocol": protocol, "scheme": scheme, "n_splits": n_splits,
              "seed": seed, "deterministic": deterministic, "device": device,
              "classes": table.classes, "inputs": inputs, "store": upstream,
              "model_options": opts, **weights, **({"run": run_entry} if run_entry else {}),
              **{k: v for k, v in kw.items()
                 if k not in ("augment", "collate_fn", "checkpoint_seconds")},
              "augment": spec.defaults.augmentation}
    _check_kfold(store_path, protocol, n_splits, table.labels)
    # the fold workers unpickle this module: without these imports at its top they do
    # without scikit-learn (the metrics import it), more than a second of CPU each
    from ..learn.protocols import split  # start-up: fold workers, as above
    folds = list(split(protocol, subjects=table.subjects, datasets=table.datasets,
                       labels=table.labels, n_splits=n_splits, seed=seed))
    return _Run(spec, str(store_path), protocol, scheme, device, seed, deterministic, opts,
                kw, table, keys, failed_upstream, dataset, config, folds)


def _check_kfold(store_path: str | os.PathLike, protocol: str, n_splits: int,
                 labels: Sequence[Any]) -> None:
    """Stratified k-fold needs a class with ``n_splits`` samples: say how to go on."""
    if protocol != "kfold" or not len(labels):
        return
    values, counts = np.unique(np.asarray(labels, dtype=object).astype(str),
                               return_counts=True)
    largest = int(counts.max())
    if largest < n_splits:
        raise ParameterError(
            f"{store_path}: --protocol kfold with {n_splits} folds (--folds) needs a class "
            f"of at least {n_splits} samples for stratified folds, but the largest, "
            f"{values[counts.argmax()]!r}, has {largest} ({len(labels)} samples in all). "
            f"Give --folds {largest} or fewer, or --protocol loso.")


def _clip_options(spec: ModelSpec, opts: Mapping[str, Any],
                  given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model's options a clip-classification run uses: those of spot-then-recognize
    alone (``scope="spotting"``) are left out (and warned about when given)."""
    spotting = {o.keyword: o for o in spec.options if o.scope == "spotting"}
    for key, value in (given or {}).items():
        o = spotting.get(key.replace("-", "_"))
        if o is not None and value != o.default:
            logger.warning("--%s applies to spot-then-recognize on a store of whole videos "
                           "(`%s`); this store of clips does not use it", o.name,
                           spec.spotting.produced_by if spec.spotting else "--pairs gap")
    return {k: v for k, v in opts.items() if k not in spotting}


def _code_digest(spec: ModelSpec) -> str:
    """Digest of the source of the code that trains ``spec``'s model, and mexkit's version.

    Every module of the model's package (network, inputs, hooks), the generic
    training loop and this module: a results folder's finished folds are
    kept only when the code that would train them again is the same.
    """
    # this module too: how a fold is trained and resumed lives here (a fold result written
    # while a redone fold resumed an earlier run's network must not be kept)
    modules = {spec.module, "mexkit.learn.train", "mexkit.learn.data", "mexkit.learn.folds",
               __name__}
    package = sys.modules.get(spec.package)
    if package is not None and hasattr(package, "__path__"):
        modules.update(f"{spec.package}.{m.name}" for m in pkgutil.iter_modules(
            package.__path__))
    if spec.trainer is not None:
        modules.add(spec.trainer.__module__)
    h = hashlib.sha256(__version__.encode())
    for name in sorted(modules):
        try:
            path = inspect.getsourcefile(importlib.import_module(name))
            h.update(name.encode() + b"\0" + Path(path).read_bytes())  # type: ignore[arg-type]
        except (ImportError, OSError, TypeError):
            h.update(name.encode() + b"\0?")
    return h.hexdigest()[:16]


def _weights_entry(spec: ModelSpec, options: Mapping[str, Any], store: Any, *,
                   protocol: str | None = None) -> dict[str, Any]:
    """Check a model's weights option against the store; the file's digest for the key.

    For a model with a weights option (:attr:`ModelSpec.weights_option`),
    weights that ``mexkit pretrain`` made from clips of this store, or under
    LOSO (CDE, HDE) from clips of a subject it evaluates, are refused
    (:func:`mexkit.pipeline.weights.check_weights`); the file's SHA-256 enters
    the settings, so that folds trained from other weights under the same
    path are redone.
    """
    path = options.get(spec.weights_option) if spec.weights_option else None
    if not path:
        return {}
    meta = check_weights(path, store, protocol=protocol)
    entry: dict[str, Any] = {"weights_sha256": weights_digest(path)}
    hooks = spec.pretraining
    if meta.get("mexkit_stage") == "pretrain" and hooks is not None:
        made = json.loads(meta.get("settings", "{}")).get("image_size")
        wanted = options.get(hooks.image_size_option)
        if made and wanted and int(made) != int(wanted):
            flag = "--" + hooks.image_size_option.replace("_", "-")
            logger.warning("the weights %s were pre-trained on %dx%d frames, but the model "
                           "sees %dx%d (%s)", path, made, made, wanted, wanted, flag)
    return entry


def _fold_key(config: Mapping[str, Any], fold_name: str, cache_keys: Sequence[str]) -> str:
    """Key of one fold's result: the settings and the cache keys of its samples."""
    h = hashlib.sha256()
    h.update(json.dumps(jsonable(config), sort_keys=True, default=str).encode())
    h.update(str(fold_name).encode())
    for key in cache_keys:
        h.update(b"\0" + str(key).encode())
    return h.hexdigest()


# -- folds -------------------------------------------------------------------------------
@dataclasses.dataclass
class _FoldJob:
    """What a fold needs, picklable, so folds can run in other processes.

    ``base`` is the run's fold context without a model or a fold (the
    dataset preloaded); :meth:`context` fills in one fold.
    """

    base: FoldContext
    table: SampleTable
    net_options: dict[str, Any]
    out: Path
    progress: bool
    n_folds: int
    threads: int

    def context(self, net: Any, train_idx: np.ndarray, ckpt: Path, k: int,
                monitor_idx: Any, desc: str) -> FoldContext:
        ckpt.mkdir(parents=True, exist_ok=True)
        return dataclasses.replace(
            self.base, model=net, train=np.asarray(train_idx, dtype=np.int64),
            seed=self.base.seed + k, checkpoint_dir=ckpt,
            fit_kwargs=dict(self.base.fit_kwargs), options=dict(self.base.options),
            progress=EpochBars(desc, self.progress),
            monitor=None if monitor_idx is None else np.asarray(monitor_idx, dtype=np.int64))

    def build(self, k: int) -> Any:
        """The model of fold ``k``, initialised from the fold's seed."""
        seed_everything(self.base.seed + k)
        return get_model(self.base.spec.name, len(self.table.classes), **self.net_options)


def _fold_job(run: _Run, out: Path, progress: bool) -> _FoldJob:
    base = FoldContext(
        model=None, spec=run.spec, dataset=run.dataset, train=np.zeros(0, np.int64),
        labels=run.table.y, classes=list(run.table.classes),
        subjects=list(run.table.subjects), fit_kwargs=run.fit_kwargs, options=run.options,
        device=run.device, seed=run.seed, deterministic=run.deterministic,
        checkpoint_dir=out / "checkpoints", progress=EpochBars("", progress),
        sample_ids=list(run.table.sample_ids))
    return _FoldJob(base=base, table=run.table,
                    net_options=constructor_options(run.spec, run.options), out=out,
                    progress=progress, n_folds=len(run.folds), threads=0)


def _split_done(run: _Run, out: Path, key_config: Mapping[str, Any]
                ) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
    """The folds finished with the same key (their saved results), and the others."""
    done: dict[str, dict[str, Any]] = {}
    pending = []
    for k, fold in enumerate(run.folds):
        path = out / "folds" / f"{safe_name(fold.name)}.json"
        fold_key = _fold_key(key_config, fold.name,
                             run.sample_keys(sorted(set(fold.train) | set(fold.test))))
        if path.exists():
            try:
                saved = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):  # damaged: train the fold again
                logger.warning("%s is damaged; fold %s is trained again", path, fold.name)
                saved = {}
            if isinstance(saved, dict) and saved.get("key") == fold_key:
                done[fold.name] = saved
                logger.info("fold %s already done; kept", fold.name)
                continue
        pending.append((k, fold.name, np.asarray(fold.train), np.asarray(fold.test), fold_key))
    return done, pending


def _train_folds(job: _FoldJob, pending: list[tuple[Any, ...]], fold_jobs: int | str,
                 dataset: Any) -> dict[str, dict[str, Any]]:
    """Train and test the pending folds, ``fold_jobs`` at once; their results by name.

    Folds lost with a worker process (killed, out of memory, a worker pool
    that stopped working) are trained again, as many times as the run's
    ``retries`` setting says (2 by default; :func:`~.parallel.configure`);
    after that the run stops with :class:`~mexkit.errors.WorkerLostError`,
    the finished folds kept for the next run.
    """
    wanted = _fold_jobs(fold_jobs, job.base.device, dataset)
    if min(wanted, len(pending)) > 1 and world_size() > 1:
        raise ParameterError("--fold-jobs cannot be combined with torchrun (DDP already "
                             "spreads each fold over the processes).")
    retries = current_config().retries
    trained: dict[str, dict[str, Any]] = {}
    for attempt in range(retries + 1):
        left = [item for item in pending if item[1] not in trained]
        jobs = max(1, min(wanted, len(left)))
        this = job if jobs == 1 else dataclasses.replace(
            job, threads=max(1, usable_cores() // jobs), progress=False)
        try:
            for n, result in enumerate(parallel_map(
                    _run_folds, ([(this, item)] for item in left), jobs=jobs,
                    backend="loky"), start=1):
                rows = result["rows"]
                acc = np.mean([r["true"] == r["pred"] for r in rows]) if rows else float("nan")
                logger.info("fold %s: %d test sample(s), accuracy %.3f", result["name"],
                            len(rows), acc)
                trained[result["name"]] = result
                if jobs > 1 and len(left) - n < jobs:  # a worker has no fold left
                    _prefetch_results_imports()
            break
        except Exception as exc:
            if not is_lost_worker(exc):
                raise
            lost = [item[1] for item in left if item[1] not in trained]
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if attempt < retries:
                logger.warning("%d fold(s) lost with a worker (%s): %s; training them again "
                               "(%d of %d)", len(lost), ", ".join(lost), reason, attempt + 1,
                               retries)
                continue
            raise WorkerLostError(
                f"{len(lost)} fold(s) lost with a worker after {retries + 1} attempt(s) "
                f"({', '.join(lost)}): {reason}; the finished folds are kept, run the same "
                "command again to train the rest") from exc
    return trained


_PREFETCH = threading.Lock()
_PREFETCHED: list[threading.Thread] = []


def _prefetch_results_imports() -> None:
    """Import, in a thread of this process, what writing the results needs (the metrics,
    which import scikit-learn, and matplotlib for the plots): about 2 s of CPU that would
    otherwise come after the last fold. Called once a fold worker has no fold left, so
    the import runs on the core that worker leaves idle. Once per process."""
    with _PREFETCH:
        if _PREFETCHED:
            return

        def load() -> None:
            try:
                import matplotlib  # start-up: as in reports.plot_confusion

                matplotlib.use("Agg")
                import matplotlib.pyplot  # noqa: F401  # start-up: as above

                from ..learn import metrics  # noqa: F401  # start-up: see _prepare
            except Exception as exc:  # an import that fails fails again where it is used
                logger.debug("prefetching the results' imports: %s", exc)

        thread = threading.Thread(target=load, name="mexkit-prefetch", daemon=True)
        _PREFETCHED.append(thread)
        thread.start()


def _run_folds(items: list[tuple[_FoldJob, tuple[Any, ...]]]) -> dict[str, Any]:
    """Train and test one fold (in this process or a worker); write its result file."""
    ((job, (k, name, train, test, fold_key)),) = items
    if job.threads:
        torch.set_num_threads(job.threads)
    table = job.table
    if len(set(table.y[train])) < 2:
        logger.warning("fold %s: training data has one class only", name)
    net = job.build(k)
    n_params = count_parameters(net)
    desc = f"fold {k + 1}/{job.n_folds} {name}"
    ctx = job.context(net, train, _checkpoint_dir(job.out, name, fold_key), k, test, desc)
    history = (job.base.spec.trainer or standard)(ctx)
    test_ds = Subset(job.base.dataset, [int(i) for i in test])
    collate = job.base.fit_kwargs.get("collate_fn")
    scores, preds = predict(net, test_ds, device=job.base.device, collate_fn=collate)
    result = {"name": name, "key": fold_key, "history": history, "parameters": n_params,
              "rows": _prediction_rows(table, test, name, scores, preds),
              "extras": _predict_extras(net, test_ds, job.base.device, collate,
                                        [table.sample_ids[i] for i in test])}
    if rank() == 0:
        saved = {k: v for k, v in result.items() if k != "name"}
        write_text(job.out / "folds" / f"{safe_name(name)}.json", json.dumps(jsonable(saved)))
    return result


def _prediction_rows(table: SampleTable, test: Sequence[int], fold: str, scores: np.ndarray,
                     preds: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for j, idx in enumerate(test):
        r = {"sample_id": table.sample_ids[idx], "subject": table.subjects[idx],
             "dataset": table.datasets[idx], "fold": fold,
             "true": table.labels[idx], "pred": table.classes[int(preds[j])]}
        for c, sc in zip(table.classes, scores[j], strict=False):
            r[f"score_{c}"] = float(sc)
        rows.append(r)
    return rows


def _predict_extras(net: Any, dataset: Any, device: str, collate_fn: Any,
                    sample_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-sample extras of a network with ``predict_extras`` (e.g. AKMNet's key frames)."""
    method = getattr(net, "predict_extras", None)
    if method is None or len(dataset) == 0:
        return {}
    out: dict[str, dict[str, Any]] = {}
    loader = DataLoader(dataset, batch_size=32, shuffle=False, collate_fn=collate_fn)
    position = 0
    net.eval()
    with torch.inference_mode():
        for inputs, _ in loader:
            values = method(**move_to_device(inputs, torch.device(device)))
            n = len(next(iter(values.values()))) if values else 0
            for j in range(n):
                out[sample_ids[position + j]] = {k: v[j] for k, v in values.items()}
            position += n
    return out


def _train_final(run: _Run, job: _FoldJob, out: Path, key_config: Mapping[str, Any]) -> None:
    """``--final``: one model on every sample, for ``mexkit predict``."""
    net = job.build(0)
    final_key = _fold_key(key_config, "final", run.sample_keys(range(len(run.table.y))))
    ctx = job.context(net, np.arange(len(run.table.sample_ids)),
                      _checkpoint_dir(out, "final", final_key), 0, None,
                      "final model (all samples)")
    (run.spec.trainer or standard)(ctx)
    if rank() != 0:
        return
    model = run.spec.name
    save_checkpoint(out / "checkpoints" / "final.safetensors", net, None, {
        "model_class": type(net).__name__, "model": model, "model_options": run.options})
    write_text(out / "model.json", json.dumps({
        "model": model, "classes": run.table.classes, "scheme": run.scheme,
        "inputs": list(run.spec.input_names), "model_options": run.options,
        "checkpoint": "checkpoints/final.safetensors"}, indent=2))


# -- the run -----------------------------------------------------------------------------
def _train_evaluate(store_path: str | os.PathLike, out_dir: str | os.PathLike, *, model: str,
                    protocol: str | None = None, scheme: str | None = None,
                    n_splits: int = 10, epochs: int | None = None,
                    batch_size: int | None = None, lr: float | None = None,
                    schedule: str | None = None, loss: str | None = None,
                    focal_alpha: Sequence[float] | str | None = None,
                    focal_gamma: float | None = None,
                    model_options: Mapping[str, Any] | None = None,
                    device: str = "auto", seed: int = 0, deterministic: bool = True,
                    class_balance: str | None = "default",
                    final: bool = False, progress: bool = True,
                    fold_jobs: int | str = "auto", select_on_test: bool = False) -> Path:
    """Cross-validate ``model`` on the store; return the results file.

    Parameters mirror ``mexkit train``; ``None`` means the paper's default
    (from the model registry: protocol, scheme, training settings).
    ``model_options`` are the model's own options
    (:attr:`~mexkit.models.registry.ModelSpec.options`). Finished folds are
    kept in ``out_dir`` and skipped when the same command runs again; a fold
    is redone when the settings or the cache key of any of its samples
    changed. ``fold_jobs`` > 1 trains that many folds at once in worker
    processes (each with its share of the CPU threads); the results are the
    same as one after the other (scores within float rounding). ``"auto"``
    (default): on the CPU, one fold per core the process may use (at most as
    many as the folds left, and as many copies of the preloaded samples as
    fit in half the available memory); on a GPU or under ``torchrun``, one.
    Folds side by side, each on one thread, keep their pace when other jobs
    load the machine; one fold spread over every core in torch's threads does
    not (its threads wait for each other at every operation).

    ``select_on_test`` adds, beside the honest figures (the network after
    the last epoch; the test subject never influences training or the
    choice), the figures of the published practice that keeps each fold's
    best test epoch (:func:`select_on_test_rows`), under
    ``selected_on_test`` in results.json, labelled as chosen on the test
    fold.  Training is the same either way (the test fold is only watched),
    so finished folds are kept.
    """
    spec = get_spec(model)
    fit_kwargs = _fit_kwargs(spec, epochs=epochs, batch_size=batch_size, lr=lr,
                             schedule=schedule, loss=loss, focal_alpha=focal_alpha,
                             focal_gamma=focal_gamma, class_balance=class_balance)
    run = _prepare(store_path, model=model, protocol=protocol, scheme=scheme,
                   n_splits=n_splits, device=device, seed=seed, deterministic=deterministic,
                   options=model_options, fit_kwargs=fit_kwargs)
    # every setting is checked: only now does the results folder appear
    out = Path(out_dir)
    for folder in (out, out / "folds", out / "checkpoints"):
        folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    key_config = run.key_config()
    job = _fold_job(run, out, progress)
    done, pending = _split_done(run, out, key_config)
    done.update(_train_folds(job, pending, fold_jobs, run.dataset))
    if final:
        _train_final(run, job, out, key_config)
    return _write_results(run, out, done, time.perf_counter() - start,
                          select_on_test=select_on_test)


def _write_results(run: _Run, out: Path, folds: Mapping[str, Mapping[str, Any]],
                   seconds: float, *, select_on_test: bool = False) -> Path:
    """Pool the folds' results (in fold order) and write the run's files; rank 0 only."""
    rows: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    histories: dict[str, Any] = {}
    n_params = None
    for fold in run.folds:  # fold order, whichever finished first
        if fold.name not in folds:
            continue
        result = folds[fold.name]
        rows.extend(result["rows"])
        extras.update(result.get("extras", {}))
        histories[fold.name] = result.get("history", [])
        n_params = result.get("parameters", n_params)
    from ..learn.metrics import pooled_and_per_fold  # start-up: fold workers (_prepare)

    classes = run.table.classes
    metrics = pooled_and_per_fold(rows, classes=classes)
    selected = chosen_rows = None
    if select_on_test:
        chosen_rows, chosen = select_on_test_rows(rows, histories, classes)
        selected = {"label": SELECTED_ON_TEST, "epochs": chosen,
                    **pooled_and_per_fold(chosen_rows, classes=classes)}
    results = {
        "config": run.config,
        "n_samples": len(run.table.sample_ids),
        "excluded": run.table.excluded,
        "failed_upstream": run.failed_upstream,
        "parameters_as_paper_counts": n_params,
        "versions": {"mexkit": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "command": " ".join(sys.argv),
        "seconds": seconds,
        "training": histories,
        **metrics,
    }
    if selected is not None:
        results["selected_on_test"] = selected
    path = out / "results.json"
    if rank() != 0:
        return path
    model, protocol = run.spec.name, run.protocol
    write_predictions(out / "predictions.csv", rows, classes)
    if chosen_rows is not None:
        write_predictions(out / "predictions-selected-on-test.csv", chosen_rows, classes,
                          extra=("epoch",))
    if extras:
        write_text(out / "predictions.json", json.dumps(jsonable(extras), indent=1,
                                                        sort_keys=True))
    plot_confusion(out / "confusion.png", np.asarray(metrics["pooled"]["confusion_matrix"]),
                   classes, f"{model} {protocol}: pooled over {len(run.folds)} folds")
    plot_training(out / "training.png", histories,
                  f"{model} {protocol}: training loss and accuracy per fold",
                  per_fold=metrics["per_fold"])
    write_text(path, json.dumps(jsonable(results), indent=2, sort_keys=True))
    if run.spec.report is not None:
        _run_report(run.spec, out)
    return path


SELECTED_ON_TEST = ("SELECTED ON THE TEST FOLD: each fold's predictions from the epoch with "
                    "the best test accuracy (the published practice of HTNet's code); not "
                    "an estimate of accuracy on new subjects")


def select_on_test_rows(rows: Sequence[Mapping[str, Any]],
                        histories: Mapping[str, Sequence[Mapping[str, Any]]],
                        classes: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each fold's predictions from its best test epoch (ties: the later epoch).

    The practice of HTNet's ``main_HTNet.py`` (``if best <= val_acc``): the
    test subject is scored after every epoch and the best epoch's predictions
    are kept.  Reads the per-epoch test predictions (``monitor_pred``) that
    training records; the honest rows are the last epoch's.  A fold trained
    in stages is chosen among the epochs of its last stage (the network
    whose predictions the honest rows are).

    Returns
    -------
    rows : list of dict
        Copies of ``rows`` with ``pred`` (and ``epoch``) from the chosen epoch;
        the scores, which are the last epoch's, are left out.
    chosen : dict
        Fold -> chosen epoch (1-based).

    Raises
    ------
    ParameterError
        A fold whose history has no per-epoch test predictions, or not one per
        test sample.
    """
    by_fold: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_fold.setdefault(r["fold"], []).append(i)
    out = [dict(r) for r in rows]
    chosen: dict[str, int] = {}
    for fold, idx in by_fold.items():
        history = list(histories.get(fold, []))
        if history and "stage" in history[-1]:
            history = [h for h in history if h.get("stage") == history[-1]["stage"]]
        records = [h for h in history if "monitor_pred" in h]
        if not records:
            raise ParameterError(
                f"fold {fold!r} was trained without test predictions per epoch; "
                "--select-on-test needs them (train it again with this version).")
        best = max(range(len(records)),
                   key=lambda e: (records[e].get("monitor_accuracy", 0.0), e))
        preds = records[best]["monitor_pred"]
        if len(preds) != len(idx):
            raise ParameterError(f"fold {fold!r}: {len(preds)} test predictions per epoch "
                                 f"for {len(idx)} test samples")
        chosen[fold] = int(records[best].get("epoch", best + 1))
        for j, i in enumerate(idx):
            out[i]["pred"] = classes[int(preds[j])]
            out[i]["epoch"] = chosen[fold]
            for c in classes:
                out[i].pop(f"score_{c}", None)  # the scores are the last epoch's
    return out, chosen


def _run_report(spec: ModelSpec, out: Path) -> None:
    """The model's own report (``ModelSpec.report``); a failure there is logged only."""
    try:
        written = spec.report(out)
    except MexkitError as exc:
        logger.warning("%s report: %s", spec.name, exc)
        return
    if written:
        logger.info("%s report: %d file(s) in %s", spec.name, len(written), out)


# -- predict ----------------------------------------------------------------------------
def predict_store(store_path: str | os.PathLike, results_dir: str | os.PathLike | None,
                  output: str | os.PathLike, *, device: str = "auto",
                  scheme: str | None = None, weights: str | os.PathLike | None = None,
                  per_subject: bool = False, subject_map: str | None = None,
                  classes: Sequence[str] | None = None) -> Path:
    """Apply the final model of ``mexkit train --final`` to every sample of a store.

    ``true`` in the predictions is the stored label, or with ``scheme`` (by
    default the scheme the model was trained with) the class the scheme
    gives the sample, so that ``mexkit evaluate`` can score the file. With
    ``weights`` instead of ``results_dir``, a model's published networks predict
    (:func:`mexkit.pipeline.published.predict_with_weights`; ``per_subject``,
    ``subject_map`` and ``classes`` go with them).

    Raises
    ------
    ParameterError
        Unless exactly one of ``results_dir`` and ``weights`` is given, or for
        the options of ``weights`` without it.
    """
    if (results_dir is None) == (weights is None):
        raise ParameterError("Give either --results or --weights.")
    if weights is None and (per_subject or subject_map or classes):
        raise ParameterError("--per-subject, --subject-map and --classes go with --weights.")
    device = str(resolve_device(device))  # a GPU that is not there fails before any work
    _check_csv_output(Path(output), [Path(store_path)] + ([] if results_dir is None else [
        *Path(results_dir).glob("*"), *Path(results_dir).glob("checkpoints/*")]))
    if weights is not None:
        from .published import predict_with_weights  # start-up: not in the fold workers

        return Path(predict_with_weights(store_path, weights, output, per_subject=per_subject,
                                         classes=classes, scheme=scheme,
                                         subject_map=subject_map, device=device))
    results_dir = Path(results_dir)
    _check_csv_output(Path(output), [Path(store_path), *results_dir.glob("*"),
                                     *results_dir.glob("checkpoints/*")])
    meta_path = results_dir / "model.json"
    if not meta_path.exists():
        raise ParameterError(
            f"{results_dir}: no model.json; train with `mexkit train ... --final` to get a "
            "model trained on all samples.")
    meta = json.loads(meta_path.read_text())
    spec = get_spec(meta["model"])
    state, _, _ = load_checkpoint(results_dir / meta["checkpoint"])
    options = meta.get("model_options", {})
    net = get_model(meta["model"], len(meta["classes"]), **constructor_options(spec, options)
                    if options else {})
    net.load_state_dict(state)
    scheme = meta.get("scheme") if scheme is None else scheme
    get_label = get_scheme(scheme).label if scheme else None
    with open_store(store_path) as store:
        ids = list(store.sample_ids)
        attrs = [store[s].attrs for s in ids]
    ds = StoreDataset(store_path, ids, [0] * len(ids), meta["inputs"], build=build_input)
    scores, preds = predict(net, ds, device=device, collate_fn=collate_for(spec.inputs))
    rows = []
    for i, sid in enumerate(ids):
        a = attrs[i]
        true = a.get("label")
        if get_label is not None:
            try:
                true = get_label(emotion=a.get("emotion"), aus=a.get("aus"),
                                 dataset=a.get("dataset"),
                                 objective_class=a.get("objective_class"))
            except LabelError:
                true = None
        r = {"sample_id": sid, "subject": a.get("subject", ""),
             "dataset": a.get("dataset", ""), "fold": "predict",
             "true": "" if true is None else true, "pred": meta["classes"][int(preds[i])]}
        for c, v in zip(meta["classes"], scores[i], strict=False):
            r[f"score_{c}"] = float(v)
        rows.append(r)
    write_predictions(Path(output), rows, meta["classes"])
    return Path(output)


def _check_csv_output(output: Path, inputs: Sequence[Path]) -> None:
    """Refuse a predictions file that would replace an input or a mexkit store."""
    if not output.exists():
        return
    for p in inputs:
        try:
            if os.path.samefile(p, output):
                raise ParameterError(f"The output {str(output)!r} is an input of this run "
                                     f"({str(p)!r}); choose another output (-o).")
        except OSError:
            continue
    if _is_mexkit_store(output):
        raise ParameterError(f"The output {str(output)!r} is a mexkit store; predictions "
                             "(CSV) never replace one. Choose another output (-o).")


def _fold_jobs(fold_jobs: int | str, device: str, dataset: Any) -> int:
    """``--fold-jobs``: a number, or "auto" (see :func:`_train_evaluate`)."""
    if fold_jobs != "auto":
        try:
            n = int(fold_jobs)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise ParameterError(f"Invalid value for the 'fold_jobs' parameter: it must be "
                                 f"a positive integer or 'auto', but got {fold_jobs!r}.")
        return n
    if not device.startswith("cpu") or world_size() > 1:
        return 1
    jobs = usable_cores()
    size = dataset.nbytes()
    room = _available_memory()
    if room is not None and size > 0:
        jobs = min(jobs, max(1, room // 2 // size))
    return jobs


def _available_memory() -> int | None:
    """Bytes of memory available to new work (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _checkpoint_dir(out: Path, name: str, key: str) -> Path:
    """The checkpoint folder of one fold's training, named by the fold's key.

    A killed fold resumes from its folder; a fold whose key changed (other
    samples or sample data, settings, training code or pre-trained weights)
    starts afresh in a folder of its own instead of resuming the network of
    the earlier run. The checkpoint files of the same fold under other keys
    (this results folder's own ``*.safetensors``) are removed.
    """
    base = safe_name(name)
    root = Path(out) / "checkpoints"
    folder = root / f"{base}-{key[:12]}"
    stale = re.compile(re.escape(base) + r"-[0-9a-f]{12}")
    for old in (root.iterdir() if root.is_dir() else ()):
        if old == folder or old.is_symlink() or not old.is_dir() \
                or not stale.fullmatch(old.name):
            continue
        for f in old.iterdir():
            if f.is_file() and not f.is_symlink() and f.name.endswith(".safetensors"):
                f.unlink()
        try:
            old.rmdir()
        except OSError:  # something else is in there: left alone
            pass
    return folder
