"""Recognition metrics: accuracy, UF1, UAR, per-class precision and recall.

All counts come from one confusion matrix over an explicit list holding
every class of the label scheme, so a class that is absent from a fold (or
from a whole evaluation) is never dropped silently.  The per-class values are
scikit-learn's (``precision_recall_fscore_support`` with ``labels=`` and
``zero_division=np.nan``), computed with the same float64 divisions, so they
are equal to the last bit; computing them here spares every process that
reports results scikit-learn's import (about 1.3 s of CPU).

Conventions
-----------
- UF1 is the mean over classes of ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``;
  UAR is the mean over classes of ``recall_c = TP_c / N_c``.
- Undefined values are NaN (as scikit-learn's ``zero_division=np.nan``), never
  0 or 1, and they are left out of the means:

  * a class with no true and no predicted sample has an undefined F1 and
    recall: it is excluded from UF1 and from UAR;
  * a class with predictions but no true sample has F1 = 0 (its false
    positives count against UF1) and an undefined recall: it stays in UF1
    and is excluded from UAR;
  * precision is undefined (NaN) for a class that is never predicted.

  Every exclusion is listed in the report (``excluded_from_uf1``,
  ``excluded_from_uar``, ``notes``) and logged.
- MEGC scores the predictions pooled over all folds of a protocol (one
  confusion matrix for all test samples); :func:`pooled_and_per_fold`
  returns that as ``"pooled"`` and, for information, the per-fold reports
  and their means.

References
----------
.. [1] J. See, M. H. Yap, J. Li, X. Hong, S.-J. Wang, "MEGC 2019 - the second
   facial micro-expressions grand challenge", FG 2019.
.. [2] M. Peng et al., "A Novel Apex-Time Network for Cross-Dataset
   Micro-Expression Recognition", ACII 2019, eqs. 8-10.
"""
from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import LabelError, ParameterError

__all__ = ["classification_report", "pooled_and_per_fold", "CONVENTION"]

logger = logging.getLogger("mexkit")

CONVENTION = (
    "UF1 = mean over classes of 2TP/(2TP+FP+FN); UAR = mean over classes of TP/N. "
    "Undefined per-class values are NaN and left out of the means: a class with no true "
    "and no predicted sample is excluded from UF1 and UAR; a class with predictions but "
    "no true sample has F1 = 0 (kept in UF1) and is excluded from UAR. Pooled metrics "
    "(all folds' predictions together) are the MEGC protocol."
)


def _as_list(name: str, values: Any) -> list:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ParameterError(
                f"Invalid shape for the {name!r} parameter: expected (N,), but got shape "
                f"{values.shape!r}."
            )
        return values.tolist()
    return list(values)


def _mean_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _confusion(y_true: list, y_pred: list, classes: list) -> np.ndarray:
    """Counts of (true, predicted) pairs, (K, K) int64, rows true, in ``classes`` order."""
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    t = np.fromiter((index[v] for v in y_true), dtype=np.int64, count=len(y_true))
    p = np.fromiter((index[v] for v in y_pred), dtype=np.int64, count=len(y_pred))
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` in float64, NaN where ``den`` is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def classification_report(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], *,
                          classes: Sequence[Hashable], log: bool = True) -> dict[str, Any]:
    """Accuracy, UF1, UAR, per-class scores and the confusion matrix.

    Parameters
    ----------
    y_true, y_pred : sequence, shape (N,)
        True and predicted labels, each one of ``classes`` (names or integer
        indices, the same kind as ``classes``).
    classes : sequence
        Every class of the label scheme, in the order used for the
        confusion matrix, including classes that do not occur here.
    log : bool
        Log a warning for each class excluded from UF1 or UAR.

    Returns
    -------
    dict
        ``n``, ``classes``, ``accuracy``, ``uf1``, ``uar``,
        ``per_class`` (``{class: {"precision", "recall", "f1", "support",
        "predicted"}}``, NaN where undefined), ``confusion_matrix`` (list of
        lists, rows true, columns predicted, in ``classes`` order),
        ``excluded_from_uf1``, ``excluded_from_uar`` and ``notes``. With no
        samples, accuracy, UF1 and UAR are NaN.

    Raises
    ------
    LabelError
        If a label is not one of ``classes``.
    ParameterError
        If ``y_true`` and ``y_pred`` differ in length or ``classes`` is
        empty or repeats a class.
    """
    y_true = _as_list("y_true", y_true)
    y_pred = _as_list("y_pred", y_pred)
    classes = _as_list("classes", classes)
    if len(classes) == 0 or len(set(classes)) != len(classes):
        raise ParameterError(
            f"Invalid value for the 'classes' parameter: it must list every class once, "
            f"but got {classes!r}."
        )
    if len(y_true) != len(y_pred):
        raise ParameterError(
            f"'y_true' has {len(y_true)} labels but 'y_pred' has {len(y_pred)}."
        )
    known = set(classes)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = sorted({str(v) for v in labels if v not in known})
        if unknown:
            raise LabelError(
                f"{name} holds labels {', '.join(unknown)} that are not classes of the "
                f"scheme ({', '.join(str(c) for c in classes)})."
            )
    n = len(y_true)
    k = len(classes)
    if n == 0:
        cm = np.zeros((k, k), dtype=np.int64)
        precision = recall = f1 = np.full(k, np.nan)
        accuracy = float("nan")
    else:
        cm = _confusion(y_true, y_pred, classes)
        tp = np.diagonal(cm)
        precision = _divide(tp, cm.sum(axis=0))
        recall = _divide(tp, cm.sum(axis=1))
        # 2 TP / (2 TP + FP + FN) = 2 TP / (N_c + predicted_c), as scikit-learn divides
        f1 = _divide(2.0 * tp, cm.sum(axis=1) + cm.sum(axis=0))
        accuracy = float(tp.sum() / n)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    excluded_uf1 = [c for c, v in zip(classes, f1, strict=True) if np.isnan(v)]
    excluded_uar = [c for c, v in zip(classes, recall, strict=True) if np.isnan(v)]
    notes = []
    if excluded_uf1:
        notes.append(
            "classes with no true and no predicted sample, excluded from UF1: "
            + ", ".join(str(c) for c in excluded_uf1)
        )
    if excluded_uar:
        notes.append(
            "classes with no true sample, excluded from UAR: "
            + ", ".join(str(c) for c in excluded_uar)
        )
    if log:
        for note in notes:
            logger.warning("metrics: %s", note)
    per_class = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i, c in enumerate(classes)
    }
    return {
        "n": n,
        "classes": classes,
        "accuracy": accuracy,
        "uf1": _mean_defined(np.asarray(f1, dtype=float)),
        "uar": _mean_defined(np.asarray(recall, dtype=float)),
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
        "excluded_from_uf1": excluded_uf1,
        "excluded_from_uar": excluded_uar,
        "notes": notes,
    }


def pooled_and_per_fold(rows: Iterable[Mapping[str, Any]], *,
                        classes: Sequence[Hashable] | None = None) -> dict[str, Any]:
    """Score prediction rows pooled over all folds, per fold and per dataset.

    Parameters
    ----------
    rows : iterable of mappings
        One per test sample, with keys ``true``, ``pred`` and ``fold`` and
        optionally ``dataset`` (the columns of mexkit's predictions CSV).
    classes : sequence, optional
        Every class of the label scheme. Default: the sorted union of the
        true and predicted labels of all rows (recorded in ``notes``); pass
        the scheme's classes so that a class that never occurs is visible.

    Returns
    -------
    dict
        ``pooled``: :func:`classification_report` of all rows together (the
        MEGC figure); ``per_fold``: ``{fold: report}`` in first-seen order;
        ``fold_mean``: mean over folds of accuracy, UF1 and UAR (each fold's
        undefined values left out); ``per_dataset``: ``{dataset: report}``
        of the pooled rows of each dataset, when rows carry ``dataset``;
        ``convention``; ``notes``.
    """
    rows = list(rows)
    for i, row in enumerate(rows):
        missing = [key for key in ("true", "pred", "fold") if key not in row]
        if missing:
            raise ParameterError(
                f"Prediction row {i} lacks the column(s) {', '.join(missing)}: {dict(row)!r}."
            )
    notes = []
    if classes is None:
        seen = {r["true"] for r in rows} | {r["pred"] for r in rows}
        try:
            classes = sorted(seen)
        except TypeError:
            classes = sorted(seen, key=str)
        notes.append(
            "classes inferred from the predictions: " + ", ".join(str(c) for c in classes)
        )
    classes = list(classes)
    y_true = [r["true"] for r in rows]
    y_pred = [r["pred"] for r in rows]
    pooled = classification_report(y_true, y_pred, classes=classes, log=True)

    folds: dict[Any, list[int]] = {}
    datasets: dict[Any, list[int]] = {}
    for i, r in enumerate(rows):
        folds.setdefault(r["fold"], []).append(i)
        if r.get("dataset") is not None:
            datasets.setdefault(r["dataset"], []).append(i)

    def subset(idx: list[int]) -> dict[str, Any]:
        return classification_report([y_true[i] for i in idx], [y_pred[i] for i in idx],
                                     classes=classes, log=False)

    per_fold = {fold: subset(idx) for fold, idx in folds.items()}
    n_excluded = sum(1 for rep in per_fold.values() if rep["excluded_from_uar"])
    if n_excluded:
        notes.append(
            f"{n_excluded} of {len(per_fold)} folds lack some classes; their per-fold UF1/UAR "
            "average over the classes present (see each fold's notes)"
        )
        logger.info("metrics: %s", notes[-1])
    fold_mean = {
        key: _mean_defined(np.array([rep[key] for rep in per_fold.values()], dtype=float))
        for key in ("accuracy", "uf1", "uar")
    }
    result = {
        "pooled": pooled,
        "per_fold": per_fold,
        "fold_mean": fold_mean,
        "convention": CONVENTION,
        "notes": notes,
    }
    if datasets:
        result["per_dataset"] = {ds: subset(idx) for ds, idx in datasets.items()}
    return result
