"""Reports of a training run: the metrics table, the confusion matrix, the
training curves (PNG, written atomically), the results as JSON, and the
progress bar over epochs."""
from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..io.atomic import atomic_path

__all__ = ["plot_confusion", "plot_training", "format_report", "save_figure", "jsonable",
           "safe_name", "EpochBar", "EpochBars"]


def safe_name(name: str) -> str:
    """``name`` (a sample id, a fold, a subject) as a file name: other characters than
    letters, digits, ``-``, ``_`` and ``.`` become ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120) -> None:
    """Write ``fig`` as a PNG under a temporary name, then rename it into place."""
    import matplotlib.pyplot as plt  # start-up: `mexkit evaluate` reports without plots

    fig.tight_layout()
    try:
        with atomic_path(Path(path), suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def plot_confusion(path: Path, matrix: np.ndarray, classes: Sequence[str], title: str) -> None:
    """Save a labelled confusion-matrix image (rows: true, columns: predicted)."""
    import matplotlib  # start-up: `mexkit evaluate` reports without plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up, as above; after the backend is chosen

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
    save_figure(fig, path)


def plot_training(path: Path, histories: Mapping[str, Sequence[Mapping[str, Any]]],
                  title: str, per_fold: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Save the loss and accuracy by epoch, one colour per fold.

    Solid lines: the training samples. Dashed lines: the fold's held-out
    test samples (``monitor_loss``, ``monitor_accuracy``), watched only,
    never used to choose anything. A flat training loss near
    ``log(n_classes)`` means the model did not fit its training data; a
    test loss that turns up while the training loss falls is overfitting.
    Models trained in stages (records with a ``stage``) are drawn stage
    after stage, with the stage boundaries marked.  With ``per_fold`` (the
    results' per-fold metrics), a third panel shows each fold's test
    accuracy (per subject under LOSO) with its number of test samples.
    """
    import matplotlib  # start-up: `mexkit evaluate` reports without plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up, as above; after the backend is chosen

    if per_fold:
        low = max(2.6, 0.11 * len(per_fold))
        fig = plt.figure(figsize=(9, 3.4 + low))
        grid = fig.add_gridspec(2, 2, height_ratios=[3.4, low])
        ax_loss, ax_acc = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        _fold_accuracy(fig.add_subplot(grid[1, :]), per_fold)
    else:
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    monitored = False
    boundaries: set[int] = set()
    for name, records in histories.items():
        if not records:
            continue
        x = list(range(1, len(records) + 1))
        stages = [r.get("stage") for r in records]
        boundaries.update(i + 0.5 for i in range(1, len(stages))
                          if stages[i] != stages[i - 1])
        (line,) = ax_loss.plot(x, [r["loss"] for r in records], lw=1, label=str(name))
        colour = line.get_color()
        if all("accuracy" in r for r in records):
            ax_acc.plot(x, [r["accuracy"] for r in records], lw=1, color=colour)
        if any("monitor_loss" in r for r in records):
            monitored = True
            mx = [i for i, r in zip(x, records, strict=True) if "monitor_loss" in r]
            ax_loss.plot(mx, [r["monitor_loss"] for r in records if "monitor_loss" in r],
                         lw=1, ls="--", color=colour)
            acc = [(i, r["monitor_accuracy"]) for i, r in zip(x, records, strict=True)
                   if "monitor_accuracy" in r]
            if acc:
                ax_acc.plot(*zip(*acc, strict=True), lw=1, ls="--", color=colour)
    for b in sorted(boundaries):
        for ax in (ax_loss, ax_acc):
            ax.axvline(b, color="0.6", lw=0.6, ls=":")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    if 0 < len(histories) <= 12:
        ax_loss.legend(fontsize=6)
    note = ("solid: training samples; dashed: the fold's test samples (watched only)"
            if monitored else "training samples")
    fig.suptitle(f"{title}\n{note}", fontsize=8)
    save_figure(fig, path)


def _fold_accuracy(ax: Any, per_fold: Mapping[str, Mapping[str, Any]]) -> None:
    """Bars of each fold's test accuracy, labelled with the fold and its sample count."""
    names = list(per_fold)
    acc = [float(per_fold[n]["accuracy"]) for n in names]
    count = [int(np.sum(per_fold[n]["confusion_matrix"])) for n in names]
    ax.bar(range(len(names)), acc, color="0.45")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n} ({c})" for n, c in zip(names, count, strict=True)],
                       rotation=90, fontsize=5)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy per fold (test samples in brackets)", fontsize=7)


def format_report(results: Mapping[str, Any]) -> str:
    """A readable table of pooled and per-fold metrics."""
    pooled = results["pooled"]
    lines = []
    cfg = results.get("config", {})
    if cfg:
        scheme = cfg.get("scheme") or "stored labels"
        lines.append(f"model {cfg.get('model')}  protocol {cfg.get('protocol')}  "
                     f"scheme {scheme}  samples {results.get('n_samples')}")
        failed = results.get("failed_upstream") or {}
        if failed:
            lines.append(f"{len(failed)} sample(s) failed in earlier stages and are not "
                         f"evaluated (see failed_upstream in results.json)")
    width = max([16] + [len(str(f)) + 3 for f in results.get("per_fold", {})]
                + [len(f"dataset {d} (test-selected)") + 1
                   for d in results.get("per_dataset", {})])
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
    per_dataset = results.get("per_dataset", {})
    if len(per_dataset) > 1:
        for ds, r in per_dataset.items():
            lines.append(row(f"dataset {ds}", r))
    selected = results.get("selected_on_test")
    if selected:
        lines.append(selected.get("label", "SELECTED ON THE TEST FOLD"))
        lines.append(row("pooled (test-selected)", selected["pooled"]))
        for ds, r in selected.get("per_dataset", {}).items():
            lines.append(row(f"dataset {ds} (test-selected)", r))
    classes = pooled["classes"]
    lines.append("per class       precision  recall      F1  support")
    for c in classes:
        pc = pooled["per_class"][c]
        lines.append(f"  {str(c)[:14]:<14}{_f(pc['precision']):>10}{_f(pc['recall']):>8}"
                     f"{_f(pc['f1']):>8}{int(pc['support']):>9}")
    for note in pooled.get("notes", []):
        lines.append(f"note: {note}")
    steps = _steps_line(results.get("training") or {})
    if steps:
        lines.append(steps)
    return "\n".join(lines)


def _steps_line(histories: Mapping[str, Any]) -> str:
    """``epochs per stage x steps per epoch (samples)`` of the first fold, for trainers
    that record ``steps`` in their epoch records (MERSiamC3D's two stages)."""
    for fold, records in histories.items():
        stages: dict[str, tuple[int, int, int]] = {}
        for r in records or []:
            if "steps" in r:
                stage = str(r.get("stage", "train"))
                n = stages.get(stage, (0, 0, 0))[0]
                stages[stage] = (n + 1, int(r["steps"]), int(r.get("samples", 0)))
        if stages:
            parts = [f"{stage} {n} epochs x {steps} steps ({samples} samples per epoch)"
                     for stage, (n, steps, samples) in stages.items()]
            return f"training ({fold}): " + "; ".join(parts)
    return ""


def _f(v: Any) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if not np.isfinite(v) else f"{v:.4f}"


def jsonable(obj: Any) -> Any:
    """``obj`` in plain JSON types: numpy values made Python's, NaN and inf None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class EpochBar:
    """tqdm bar over epochs fed by fit's progress callback."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr,
                        disable=not (enabled and sys.stderr.isatty()), leave=False)

    def callback(self, info: Mapping[str, Any]) -> None:
        self.bar.update(1)
        loss = info.get("loss")
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4f}")

    def close(self) -> None:
        self.bar.close()


class EpochBars:
    """``bars(stage, epochs) -> EpochBar`` for one fold (picklable, for fold workers).

    Parameters
    ----------
    desc : str
        What the fold is, e.g. ``"fold 2/5 sub01"``; each bar adds its stage.
    enabled : bool
        Show the bars (on a terminal).
    """

    def __init__(self, desc: str, enabled: bool) -> None:
        self.desc = desc
        self.enabled = enabled

    def __call__(self, stage: str, epochs: int) -> EpochBar:
        return EpochBar(epochs, f"{self.desc}: {stage}", self.enabled)
