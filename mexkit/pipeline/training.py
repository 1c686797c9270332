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
    Finished folds and per-epoch checkpoints: a killed run resumes at the
    fold and epoch where it stopped; the folder's name carries the fold's
    key, so a fold whose samples, settings or code changed trains afresh.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._validate import check_option
from ..devices import resolve_device, usable_cores
from ..errors import LabelError, MexkitError, ParameterError
from ..io.atomic import write_text
from ..io.predictions import read_predictions, write_predictions
from ..io.store import open_store
from ..learn.distributed import rank, world_size
from .reports import format_report, plot_confusion, plot_training
from .stages import upstream_entry

__all__ = ["SampleTable", "sample_table", "train_evaluate", "predict_store",
           "write_predictions", "read_predictions", "plot_confusion", "plot_training",
           "format_report", "jsonable", "EpochBar"]

logger = logging.getLogger("mexkit")


@dataclass
class SampleTable:
    """The labelled samples of a store that a protocol splits."""

    sample_ids: list[str]
    subjects: list[str]
    datasets: list[str]
    labels: list[str]
    classes: list[str]
    excluded: dict[str, str]

    @property
    def y(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[v] for v in self.labels], dtype=np.int64)


def sample_table(store: Any, *, scheme: str | None) -> SampleTable:
    """Collect subject, dataset and class of every sample of ``store``.

    With ``scheme`` the class comes from the label scheme applied to the
    sample's emotion, action units and dataset; samples outside the scheme
    are excluded and reported.  Without it, the stored ``label`` is used.
    """
    sids, subjects, datasets, labels = [], [], [], []
    excluded: dict[str, str] = {}
    classes: list[str] | None = None
    get = None
    if scheme is not None:
        from ..labels import get_scheme

        sch = get_scheme(scheme)
        classes = list(sch.classes)
        get = sch.label
    for sid in store.sample_ids:
        a = store[sid].attrs
        if get is not None:
            try:
                label = get(emotion=a.get("emotion"), aus=a.get("aus"),
                            dataset=a.get("dataset"), objective_class=a.get("objective_class"))
            except LabelError as exc:
                excluded[sid] = str(exc)
                continue
        else:
            label = a.get("label")
            if label in (None, "") and a.get("intervals"):
                excluded[sid] = (f"a whole video holding {len(a['intervals'])} annotated "
                                 "interval(s) (mexkit crop --unit video); crop with --unit "
                                 "clip for one labelled sample per interval")
                continue
            if label in (None, ""):
                excluded[sid] = "no label (give --scheme to derive one from the emotion)"
                continue
        sids.append(sid)
        subjects.append(str(a.get("subject", "")))
        datasets.append(str(a.get("dataset", "")))
        labels.append(str(label))
    if classes is None:
        classes = sorted(set(labels))
    for sid, why in excluded.items():
        logger.warning("sample %s excluded: %s", sid, why)
    if len(set(labels)) < 2:  # the store's content, not the command line: exit status 1
        raise LabelError(
            f"{store.path}: {len(sids)} labelled sample(s) in {len(set(labels))} class(es); "
            "training needs at least two classes."
        )
    return SampleTable(sids, subjects, datasets, labels, classes, excluded)


def train_evaluate(store_path: str | os.PathLike, out_dir: str | os.PathLike, **kw: Any
                   ) -> Path:
    """Cross-validate a model on a store; see :func:`_train_evaluate`.

    Under torchrun (``WORLD_SIZE`` > 1) the process group is created once here
    for every fold, rather than by each fold's ``fit`` call.
    """
    from ..learn.distributed import destroy, distributed_setup, world_size

    created = False
    if world_size() > 1:
        _, _, _, created = distributed_setup(resolve_device(kw.get("device", "auto")))
    try:
        return _train_evaluate(store_path, out_dir, **kw)
    finally:
        destroy(created)


def _code_digest(spec: Any) -> str:
    """Digest of the source of the code that trains ``spec``'s model, and mexkit's version.

    The model's module, its fold trainer's (if it has one), the generic
    training loop and this module: a results folder's finished folds are
    kept only when the code that would train them again is the same.
    """
    import importlib
    import inspect

    # this module too: how a fold is trained and resumed lives here (a fold result written
    # while a redone fold resumed an earlier run's network must not be kept)
    modules = {spec.constructor.__module__, "mexkit.learn.train", "mexkit.learn.data",
               __name__}
    if spec.trainer:
        modules.add(str(spec.trainer).split(":")[0])
    h = hashlib.sha256(__version__.encode())
    for name in sorted(modules):
        try:
            path = inspect.getsourcefile(importlib.import_module(name))
            h.update(name.encode() + b"\0" + Path(path).read_bytes())  # type: ignore[arg-type]
        except (ImportError, OSError, TypeError):
            h.update(name.encode() + b"\0?")
    return h.hexdigest()[:16]


def _weights_entry(options: Mapping[str, Any], store: Any) -> dict[str, Any]:
    """Check a ``weights`` model option against the store; its digest for the fold key.

    Weights that ``mexkit pretrain`` made from clips of this store are
    refused (:func:`mexkit.pipeline.pretraining.check_weights`); the file's
    SHA-256 enters the settings, so that folds trained from other weights
    under the same path are redone.
    """
    path = options.get("weights") if isinstance(options, Mapping) else None
    if not path:
        return {}
    from .pretraining import check_weights, weights_digest

    meta = check_weights(path, store)
    entry: dict[str, Any] = {"weights_sha256": weights_digest(path)}
    if meta.get("mexkit_stage") == "pretrain":
        made = json.loads(meta.get("settings", "{}")).get("image_size")
        wanted = options.get("image_size")
        if made and wanted and int(made) != int(wanted):
            logger.warning("the weights %s were pre-trained on %dx%d frames, but the model "
                           "sees %dx%d (--image-size)", path, made, made, wanted, wanted)
    return entry


def _fold_key(config: Mapping[str, Any], fold_name: str, cache_keys: Sequence[str]) -> str:
    """Key of one fold's result: the settings and the cache keys of its samples."""
    h = hashlib.sha256()
    h.update(json.dumps(jsonable(config), sort_keys=True, default=str).encode())
    h.update(str(fold_name).encode())
    for key in cache_keys:
        h.update(b"\0" + str(key).encode())
    return h.hexdigest()


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
                    fold_jobs: int | str = "auto") -> Path:
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
    """
    import torch

    from ..learn.data import StoreDataset, collate_for
    from ..learn.metrics import pooled_and_per_fold
    from ..learn.protocols import split
    from ..learn.train import paper_defaults, parse_schedule, seed_everything
    from ..learn.trainers import resolve_trainer
    from ..models.registry import (
        constructor_options,
        get_model,
        get_spec,
    )
    from ..models.registry import (
        model_options as resolve_options,
    )

    spec = get_spec(model)
    protocol = spec.protocol if protocol is None else protocol
    scheme = spec.scheme if scheme is None else scheme
    check_option("protocol", protocol, ("loso", "kfold", "cde", "hde"))
    device = str(resolve_device(device))
    options = resolve_options(spec, model_options)
    net_options = constructor_options(spec, options)
    kw = paper_defaults(model)
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "loss": loss,
                 "focal_gamma": focal_gamma, "focal_alpha": focal_alpha}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if schedule is not None:
        kw["schedule"] = parse_schedule(schedule)
    if class_balance != "default":
        kw["class_balance"] = class_balance
    kw["collate_fn"] = collate_for(spec.inputs)
    resolve_trainer(spec)  # a model naming a missing trainer fails before any output
    with open_store(store_path) as store:
        table = sample_table(store, scheme=scheme)
        upstream = upstream_entry(store)
        keys = store.cache_keys()
        failed_upstream = dict(store.failures)
        weights = _weights_entry(options, store)
    inputs = list(spec.input_names)
    full = StoreDataset(store_path, table.sample_ids, table.y, inputs)
    full.preload()  # a missing input fails here, before any training
    config = {"model": model, "protocol": protocol, "scheme": scheme, "n_splits": n_splits,
              "seed": seed, "deterministic": deterministic, "device": device,
              "classes": table.classes, "inputs": inputs, "store": upstream,
              "model_options": options, **weights,
              **{k: v for k, v in kw.items() if k not in ("augment", "collate_fn")},
              "augment": spec.defaults.augmentation}
    folds = list(split(protocol, subjects=table.subjects, datasets=table.datasets,
                       labels=table.labels, n_splits=n_splits, seed=seed))
    # every setting is checked: only now does the results folder appear
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds").mkdir(exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    # the fold key covers the settings and the samples, not the store's path or id
    key_config = {k: v for k, v in config.items() if k not in ("store", "device")}
    # a fold trained by other code (a new initialisation, a fixed trainer) is redone
    key_config["code"] = _code_digest(spec)
    rows: list[dict[str, Any]] = []
    extras: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    n_params = None
    start = time.perf_counter()

    job = _FoldJob(store_path=str(store_path), model=model, table=table, options=options,
                   net_options=net_options, fit_kwargs=kw, device=device, seed=seed,
                   deterministic=deterministic, out=out, progress=progress,
                   n_folds=len(folds), threads=0, _dataset=full)
    pending = []
    for k, fold in enumerate(folds):
        done = out / "folds" / f"{_safe(fold.name)}.json"
        fold_key = _fold_key(key_config, fold.name,
                             [keys.get(table.sample_ids[i], "") for i in
                              sorted(set(fold.train) | set(fold.test))])
        if done.exists():
            saved = json.loads(done.read_text())
            if saved.get("key") == fold_key:
                rows.extend(saved["rows"])
                extras.update(saved.get("extras", {}))
                histories[fold.name] = saved.get("history", [])
                n_params = saved.get("parameters", n_params)
                logger.info("fold %s already done; kept", fold.name)
                continue
        pending.append((k, fold.name, np.asarray(fold.train), np.asarray(fold.test), fold_key))
    jobs = max(1, min(_fold_jobs(fold_jobs, device, full), len(pending)))
    if jobs > 1 and world_size() > 1:
        raise ParameterError("--fold-jobs cannot be combined with torchrun (DDP already "
                             "spreads each fold over the processes).")
    if jobs > 1:
        job = dataclasses.replace(job, threads=max(1, usable_cores() // jobs),
                                  progress=False)
    from .parallel import parallel_map

    for result in parallel_map(_run_folds, ([(job, item)] for item in pending), jobs=jobs,
                               backend="loky"):
        name, fold_rows, history, fold_extras, n_params = result
        histories[name] = history
        rows.extend(fold_rows)
        extras.update(fold_extras)
        acc = np.mean([r["true"] == r["pred"] for r in fold_rows]) if fold_rows else float("nan")
        logger.info("fold %s: %d test sample(s), accuracy %.3f", name, len(fold_rows), acc)
    order = {f.name: i for i, f in enumerate(folds)}
    rows.sort(key=lambda r: (order.get(r["fold"], 0)))
    histories = {f.name: histories[f.name] for f in folds if f.name in histories}
    if final:
        from ..io.checkpoints import save_checkpoint
        from ..learn.train import seed_everything

        seed_everything(seed)
        net = get_model(model, len(table.classes), **net_options)
        final_key = _fold_key(key_config, "final",
                              [keys.get(sid, "") for sid in table.sample_ids])
        ctx = job.context(net, np.arange(len(table.sample_ids)),
                          _checkpoint_dir(out, "final", final_key), 0, None,
                          "final model (all samples)")
        resolve_trainer(spec)(ctx)
        if rank() == 0:
            save_checkpoint(out / "checkpoints" / "final.safetensors", net, None, {
                "model_class": type(net).__name__, "model": model,
                "model_options": options})
            write_text(out / "model.json", json.dumps({
                "model": model, "classes": table.classes, "scheme": scheme,
                "inputs": inputs, "model_options": options,
                "checkpoint": "checkpoints/final.safetensors"}, indent=2))
    metrics = pooled_and_per_fold(rows, classes=table.classes)
    results = {
        "config": config,
        "n_samples": len(table.sample_ids),
        "excluded": table.excluded,
        "failed_upstream": failed_upstream,
        "parameters_as_paper_counts": n_params,
        "versions": {"mexkit": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "command": " ".join(sys.argv),
        "seconds": time.perf_counter() - start,
        "training": histories,
        **metrics,
    }
    path = out / "results.json"
    if rank() == 0:
        write_predictions(out / "predictions.csv", rows, table.classes)
        if extras:
            write_text(out / "predictions.json", json.dumps(jsonable(extras), indent=1,
                                                            sort_keys=True))
        plot_confusion(out / "confusion.png", np.asarray(metrics["pooled"]["confusion_matrix"]),
                       table.classes, f"{model} {protocol}: pooled over {len(folds)} folds")
        plot_training(out / "training.png", histories,
                      f"{model} {protocol}: training loss and accuracy per fold")
        write_text(path, json.dumps(jsonable(results), indent=2, sort_keys=True))
        if spec.report:
            _run_report(spec, out)
    return path


def _run_report(spec: Any, out: Path) -> None:
    """The model's own report (``ModelSpec.report``); a failure there is logged only."""
    from ..models.registry import load_reference

    try:
        written = load_reference(spec.report, f"Model {spec.name!r}: the report")(out)
    except MexkitError as exc:
        logger.warning("%s report: %s", spec.name, exc)
        return
    if written:
        logger.info("%s report: %d file(s) in %s", spec.name, len(written), out)


@dataclasses.dataclass
class _FoldJob:
    """What a fold needs, picklable, so folds can run in other processes."""

    store_path: str
    model: str
    table: SampleTable
    options: dict[str, Any]
    net_options: dict[str, Any]
    fit_kwargs: dict[str, Any]
    device: str
    seed: int
    deterministic: bool
    out: Path
    progress: bool
    n_folds: int
    threads: int
    _dataset: Any = None

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            from ..learn.data import StoreDataset

            self._dataset = StoreDataset(self.store_path, self.table.sample_ids, self.table.y,
                                         list(_spec(self.model).input_names))
        return self._dataset

    def context(self, net: Any, train_idx: np.ndarray, ckpt: Path, k: int,
                monitor_idx: Any, desc: str) -> Any:
        from ..learn.trainers import FoldContext

        ckpt.mkdir(parents=True, exist_ok=True)
        return FoldContext(
            model=net, spec=_spec(self.model), dataset=self.dataset,
            train=np.asarray(train_idx, dtype=np.int64), labels=self.table.y,
            classes=list(self.table.classes), subjects=list(self.table.subjects),
            fit_kwargs=dict(self.fit_kwargs), options=dict(self.options), device=self.device,
            seed=self.seed + k, deterministic=self.deterministic, checkpoint_dir=ckpt,
            progress=lambda stage, n: EpochBar(n, f"{desc}: {stage}", self.progress),
            sample_ids=list(self.table.sample_ids),
            monitor=None if monitor_idx is None else np.asarray(monitor_idx, dtype=np.int64))


def _spec(name: str) -> Any:
    from ..models.registry import get_spec

    return get_spec(name)


def _run_folds(items: list[tuple[_FoldJob, tuple[Any, ...]]]) -> tuple[Any, ...]:
    """Train and test one fold (in this process or a worker); write its result file."""
    import torch

    from ..learn.train import predict, seed_everything
    from ..learn.trainers import resolve_trainer
    from ..models.registry import count_parameters, get_model

    ((job, (k, name, train, test, fold_key)),) = items
    if job.threads:
        torch.set_num_threads(job.threads)
    table = job.table
    if len(set(table.y[train])) < 2:
        logger.warning("fold %s: training data has one class only", name)
    seed_everything(job.seed + k)
    net = get_model(job.model, len(table.classes), **job.net_options)
    n_params = count_parameters(net)
    desc = f"fold {k + 1}/{job.n_folds} {name}"
    ctx = job.context(net, train, _checkpoint_dir(job.out, name, fold_key), k, test, desc)
    history = resolve_trainer(_spec(job.model))(ctx)
    test_ds = torch.utils.data.Subset(job.dataset, [int(i) for i in test])
    collate = job.fit_kwargs.get("collate_fn")
    scores, preds = predict(net, test_ds, device=job.device, collate_fn=collate)
    fold_extras = _predict_extras(net, test_ds, job.device, collate,
                                  [table.sample_ids[i] for i in test])
    fold_rows = []
    for j, idx in enumerate(test):
        r = {"sample_id": table.sample_ids[idx], "subject": table.subjects[idx],
             "dataset": table.datasets[idx], "fold": name,
             "true": table.labels[idx], "pred": table.classes[int(preds[j])]}
        for c, sc in zip(table.classes, scores[j], strict=False):
            r[f"score_{c}"] = float(sc)
        fold_rows.append(r)
    if rank() == 0:
        write_text(job.out / "folds" / f"{_safe(name)}.json", json.dumps(jsonable({
            "key": fold_key, "rows": fold_rows, "history": history, "extras": fold_extras,
            "parameters": n_params})))
    return name, fold_rows, history, fold_extras, n_params


def _predict_extras(net: Any, dataset: Any, device: str, collate_fn: Any,
                    sample_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-sample extras of a model with ``predict_extras`` (e.g. AKMNet's key frames)."""
    import torch
    from torch.utils.data import DataLoader

    from ..learn.train import move_to_device

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


def predict_store(store_path: str | os.PathLike, results_dir: str | os.PathLike,
                  output: str | os.PathLike, *, device: str = "auto",
                  scheme: str | None = None) -> Path:
    """Apply the final model of ``mexkit train --final`` to every sample of a store.

    ``true`` in the predictions is the stored label, or with ``scheme`` (by
    default the scheme the model was trained with) the class the scheme
    gives the sample, so that ``mexkit evaluate`` can score the file.
    """
    from ..io.checkpoints import load_checkpoint
    from ..learn.data import StoreDataset, collate_for
    from ..learn.train import predict
    from ..models.registry import constructor_options, get_model, get_spec

    results_dir = Path(results_dir)
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
    get_label = None
    if scheme:
        from ..labels import get_scheme

        get_label = get_scheme(scheme).label
    with open_store(store_path) as store:
        ids = list(store.sample_ids)
        attrs = [store[s].attrs for s in ids]
    ds = StoreDataset(store_path, ids, [0] * len(ids), meta["inputs"])
    scores, preds = predict(net, ds, device=str(resolve_device(device)),
                            collate_fn=collate_for(spec.inputs))
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


def _fold_jobs(fold_jobs: int | str, device: str, dataset: Any) -> int:
    """``--fold-jobs``: a number, or "auto" (see :func:`run_training`)."""
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
    base = _safe(name)
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


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values and non-finite floats made JSON-able."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


class EpochBar:
    """tqdm bar over epochs fed by fit's progress callback."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr,
                        disable=not (enabled and sys.stderr.isatty()), leave=False)

    def callback(self, info: Mapping[str, Any]) -> None:
        self.bar.update(1)
        loss = info.get("loss")
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4f}")

    def close(self) -> None:
        self.bar.close()
