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
``folds/<fold>.json`` and ``checkpoints/<fold>.safetensors``
    Finished folds and per-epoch checkpoints: a killed run resumes at the
    fold and epoch where it stopped.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._validate import check_option
from ..errors import LabelError, ParameterError
from ..io.store import open_store
from .stages import upstream_entry

__all__ = ["SampleTable", "sample_table", "train_evaluate", "write_predictions",
           "read_predictions", "plot_confusion", "plot_training", "format_report"]

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
    if len(set(labels)) < 2:
        raise ParameterError(
            f"{store.path}: {len(sids)} labelled sample(s) in {len(set(labels))} class(es); "
            "training needs at least two classes."
        )
    return SampleTable(sids, subjects, datasets, labels, classes, excluded)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_predictions(path: Path, rows: Sequence[Mapping[str, Any]], classes: Sequence[str]
                      ) -> None:
    """Write prediction rows as DESIGN.md's predictions CSV (atomically)."""
    buf = io.StringIO()
    cols = ["sample_id", "subject", "dataset", "fold", "true", "pred"] + [
        f"score_{c}" for c in classes]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    _atomic_write(path, buf.getvalue())


def read_predictions(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a predictions CSV (any tool's); return rows and the score classes."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ParameterError(f"{path}: cannot read the predictions CSV ({exc}).") from exc
    need = {"true", "pred"}
    if not need <= set(fields):
        raise ParameterError(
            f"{path}: a predictions CSV needs the columns 'true' and 'pred' (and usually "
            f"'fold'); it has {', '.join(fields) or 'none'}.")
    for i, r in enumerate(rows, start=2):
        if not r.get("true") or not r.get("pred"):
            raise ParameterError(f"{path}: row {i} has an empty 'true' or 'pred'.")
        r.setdefault("fold", "all")
        if not r.get("fold"):
            r["fold"] = "all"
    classes = [f[6:] for f in fields if f.startswith("score_")]
    return rows, classes


def _save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG under a temporary name, then rename it into place."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def plot_confusion(path: Path, matrix: np.ndarray, classes: Sequence[str], title: str) -> None:
    """Save a labelled confusion-matrix image (rows: true, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(classes), 1.0 + 0.8 * len(classes)))
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    _save_figure(fig, path)


def plot_training(path: Path, histories: Mapping[str, Sequence[Mapping[str, Any]]],
                  title: str) -> None:
    """Save the training loss and accuracy by epoch, one line per fold.

    A flat loss near ``log(n_classes)`` or a training accuracy near chance
    means the model did not fit its training data (too few steps, too low a
    rate), which the test metrics alone do not tell apart from overfitting.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, records in histories.items():
        if not records:
            continue
        epochs = [r["epoch"] for r in records]
        ax_loss.plot(epochs, [r["loss"] for r in records], lw=1, label=str(name))
        if all("accuracy" in r for r in records):
            ax_acc.plot(epochs, [r["accuracy"] for r in records], lw=1)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("training accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    if 0 < len(histories) <= 12:
        ax_loss.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    _save_figure(fig, path)


def format_report(results: Mapping[str, Any]) -> str:
    """A readable table of pooled and per-fold metrics."""
    pooled = results["pooled"]
    lines = []
    cfg = results.get("config", {})
    if cfg:
        lines.append(f"model {cfg.get('model')}  protocol {cfg.get('protocol')}  "
                     f"scheme {cfg.get('scheme')}  samples {results.get('n_samples')}")
    width = max([16] + [len(str(f)) + 3 for f in results.get("per_fold", {})])
    lines.append(f"{'':<{width}}{'acc':>8}{'UF1':>8}{'UAR':>8}{'n':>6}")

    def row(name: str, r: Mapping[str, Any]) -> str:
        n = int(np.sum(r["confusion_matrix"]))
        return (f"{name:<{width}}{r['accuracy']:>8.4f}{_f(r['uf1']):>8}{_f(r['uar']):>8}"
                f"{n:>6}")

    lines.append(row("pooled", pooled))
    per_fold = results.get("per_fold", {})
    if len(per_fold) > 1:
        for fold, r in per_fold.items():
            lines.append(row(f"  {fold}", r))
    classes = pooled["classes"]
    lines.append("per class       precision  recall      F1  support")
    for c in classes:
        pc = pooled["per_class"][c]
        lines.append(f"  {str(c)[:14]:<14}{_f(pc['precision']):>10}{_f(pc['recall']):>8}"
                     f"{_f(pc['f1']):>8}{int(pc['support']):>9}")
    for note in pooled.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _f(v: Any) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if not np.isfinite(v) else f"{v:.4f}"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def train_evaluate(store_path: str | os.PathLike, out_dir: str | os.PathLike, **kw: Any
                   ) -> Path:
    """Cross-validate a model on a store; see :func:`_train_evaluate`.

    Under torchrun (``WORLD_SIZE`` > 1) the process group is created once here
    for every fold, rather than by each fold's ``fit`` call.
    """
    import torch
    import torch.distributed as dist

    own_group = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = _device(kw.get("device", "auto")) == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        own_group = True
    try:
        return _train_evaluate(store_path, out_dir, **kw)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train_evaluate(store_path: str | os.PathLike, out_dir: str | os.PathLike, *, model: str,
                   protocol: str = "loso", scheme: str | None = None, n_splits: int = 10,
                   epochs: int | None = None, batch_size: int | None = None,
                   lr: float | None = None, schedule: str | None = None,
                   device: str = "auto", seed: int = 0, deterministic: bool = True,
                   class_balance: str | None = "default",
                   final: bool = False, progress: bool = True) -> Path:
    """Cross-validate ``model`` on the store; return the results file.

    Parameters mirror ``mexkit train``; ``None`` means the paper's default
    (from the model registry).  Finished folds are kept in ``out_dir`` and
    skipped when the same command runs again.
    """
    import torch

    from ..learn.data import StoreDataset
    from ..learn.metrics import pooled_and_per_fold
    from ..learn.protocols import split
    from ..learn.train import fit, paper_defaults, parse_schedule, predict, seed_everything
    from ..models.registry import count_parameters, get_model, get_spec

    spec = get_spec(model)
    check_option("protocol", protocol, ("loso", "kfold", "cde", "hde"))
    device = _device(device)
    kw = paper_defaults(model)
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if schedule is not None:
        kw["schedule"] = parse_schedule(schedule)
    if class_balance != "default":
        kw["class_balance"] = class_balance
    with open_store(store_path) as store:
        table = sample_table(store, scheme=scheme)
        upstream = upstream_entry(store)
    inputs = list(spec.input_names)
    full = StoreDataset(store_path, table.sample_ids, table.y, inputs)
    full.preload()  # a missing input fails here, before any training
    config = {"model": model, "protocol": protocol, "scheme": scheme, "n_splits": n_splits,
              "seed": seed, "deterministic": deterministic, "device": device,
              "classes": table.classes, "inputs": inputs, "store": upstream,
              **{k: v for k, v in kw.items() if k != "augment"},
              "augment": spec.defaults.augmentation}
    folds = list(split(protocol, subjects=table.subjects, datasets=table.datasets,
                       labels=table.labels, n_splits=n_splits, seed=seed))
    # every setting is checked: only now does the results folder appear
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds").mkdir(exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    config_key = json.dumps(config, sort_keys=True, default=str)
    rows: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    n_params = None
    start = time.perf_counter()
    for k, fold in enumerate(folds):
        done = out / "folds" / f"{_safe(fold.name)}.json"
        if done.exists():
            saved = json.loads(done.read_text())
            if saved.get("config") == config_key:
                rows.extend(saved["rows"])
                histories[fold.name] = saved.get("history", [])
                logger.info("fold %s already done; kept", fold.name)
                continue
        if len(set(table.y[fold.train])) < 2:
            logger.warning("fold %s: training data has one class only", fold.name)
        seed_everything(seed + k)
        net = get_model(model, len(table.classes))
        n_params = count_parameters(net)
        train_ds = torch.utils.data.Subset(full, fold.train)
        train_ds.labels = [full.labels[i] for i in fold.train]  # type: ignore[attr-defined]
        bar = _epoch_bar(kw["epochs"], f"fold {k + 1}/{len(folds)} {fold.name}", progress)
        trained = fit(net, train_ds, device=device, seed=seed + k,
                      deterministic=deterministic,
                      checkpoint_path=out / "checkpoints" / f"{_safe(fold.name)}.safetensors",
                      progress=bar.callback, **kw)
        histories[fold.name] = trained["epochs"]
        bar.close()
        test_ds = torch.utils.data.Subset(full, fold.test)
        scores, preds = predict(net, test_ds, device=device)
        fold_rows = []
        for j, idx in enumerate(fold.test):
            r = {"sample_id": table.sample_ids[idx], "subject": table.subjects[idx],
                 "dataset": table.datasets[idx], "fold": fold.name,
                 "true": table.labels[idx], "pred": table.classes[int(preds[j])]}
            for c, s in zip(table.classes, scores[j], strict=False):
                r[f"score_{c}"] = float(s)
            fold_rows.append(r)
        if _rank() == 0:
            _atomic_write(done, json.dumps({"config": config_key, "rows": fold_rows,
                                            "history": histories[fold.name]}))
        rows.extend(fold_rows)
        acc = np.mean([r["true"] == r["pred"] for r in fold_rows])
        logger.info("fold %s: %d test sample(s), accuracy %.3f", fold.name, len(fold_rows), acc)
    if final:
        seed_everything(seed)
        net = get_model(model, len(table.classes))
        bar = _epoch_bar(kw["epochs"], "final model (all samples)", progress)
        fit(net, full, device=device, seed=seed, deterministic=deterministic,
            checkpoint_path=out / "checkpoints" / "final.safetensors", progress=bar.callback,
            **kw)
        bar.close()
        if _rank() == 0:
            _atomic_write(out / "model.json", json.dumps({
                "model": model, "classes": table.classes, "scheme": scheme,
                "inputs": inputs, "checkpoint": "checkpoints/final.safetensors"}, indent=2))
    metrics = pooled_and_per_fold(rows, classes=table.classes)
    results = {
        "config": config,
        "n_samples": len(table.sample_ids),
        "excluded": table.excluded,
        "parameters_as_paper_counts": n_params,
        "versions": {"mexkit": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "command": " ".join(sys.argv),
        "seconds": time.perf_counter() - start,
        "training": histories,
        **metrics,
    }
    path = out / "results.json"
    if _rank() == 0:
        write_predictions(out / "predictions.csv", rows, table.classes)
        plot_confusion(out / "confusion.png", np.asarray(metrics["pooled"]["confusion_matrix"]),
                       table.classes, f"{model} {protocol}: pooled over {len(folds)} folds")
        plot_training(out / "training.png", histories,
                      f"{model} {protocol}: training loss and accuracy per fold")
        _atomic_write(path, json.dumps(_jsonable(results), indent=2, sort_keys=True))
    return path


def predict_store(store_path: str | os.PathLike, results_dir: str | os.PathLike,
                  output: str | os.PathLike, *, device: str = "auto") -> Path:
    """Apply the final model of ``mexkit train --final`` to every sample of a store."""
    from ..learn.data import StoreDataset
    from ..learn.train import load_checkpoint, predict
    from ..models.registry import get_model

    results_dir = Path(results_dir)
    meta_path = results_dir / "model.json"
    if not meta_path.exists():
        raise ParameterError(
            f"{results_dir}: no model.json; train with `mexkit train ... --final` to get a "
            "model trained on all samples.")
    meta = json.loads(meta_path.read_text())
    state, _, _ = load_checkpoint(results_dir / meta["checkpoint"])
    net = get_model(meta["model"], len(meta["classes"]))
    net.load_state_dict(state)
    with open_store(store_path) as store:
        ids = list(store.sample_ids)
        attrs = [store[s].attrs for s in ids]
    ds = StoreDataset(store_path, ids, [0] * len(ids), meta["inputs"])
    scores, preds = predict(net, ds, device=_device(device))
    rows = []
    for i, sid in enumerate(ids):
        true = attrs[i].get("label")
        r = {"sample_id": sid, "subject": attrs[i].get("subject", ""),
             "dataset": attrs[i].get("dataset", ""), "fold": "predict",
             "true": "" if true is None else true, "pred": meta["classes"][int(preds[i])]}
        for c, v in zip(meta["classes"], scores[i], strict=False):
            r[f"score_{c}"] = float(v)
        rows.append(r)
    write_predictions(Path(output), rows, meta["classes"])
    return Path(output)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _device(device: str) -> str:
    import torch

    check_option("device", device, ("auto", "cpu", "cuda"))
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("--device cuda was asked for, but torch sees no CUDA device.")
    return device


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


class _epoch_bar:
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
