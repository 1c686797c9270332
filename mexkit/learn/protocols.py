"""Evaluation protocols: LOSO, stratified k-fold, CDE and HDE.

Each splitter takes the columns of a sample table (one entry per sample)
and returns an iterator of :class:`Fold` tuples ``(name, train, test)``
with int64 index arrays into that table. Inputs are checked when the
splitter is called, not when it is first iterated. In every protocol the
test sets of the folds partition the samples: each sample is tested exactly
once, and train and test of a fold are disjoint.

Subject identity is the pair (dataset, subject): "s01" of CASME II and "s01"
of SMIC are different people and never share a fold.

============  ==============================================================
``loso``      leave one subject out (the folds of scikit-learn's
              ``LeaveOneGroupOut`` over (dataset, subject)); one or several
              datasets
``kfold``     stratified k-fold on the labels (``StratifiedKFold``, shuffled
              with a seed); subjects may appear in train and test, as in
              PSN's 10-fold protocol
``cde``       composite database evaluation: LOSO over the union of at least
              two datasets (ATNet, MEGC 2019)
``hde``       holdout-database evaluation: train on all datasets but one,
              test on it (``LeaveOneGroupOut`` over datasets)
============  ==============================================================

References
----------
.. [1] M. Peng et al., "A Novel Apex-Time Network for Cross-Dataset
   Micro-Expression Recognition", ACII 2019 (CDE and HDE).
.. [2] J. See et al., "MEGC 2019 - the second facial micro-expressions grand
   challenge", FG 2019 (composite LOSO).
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._validate import check_option, check_range
from ..errors import ParameterError

__all__ = ["Fold", "PROTOCOLS", "loso", "kfold", "cde", "hde", "split"]

logger = logging.getLogger("mexkit")

PROTOCOLS = ("loso", "kfold", "cde", "hde")


class Fold(NamedTuple):
    """One fold: its name and the train and test indices (int64 arrays)."""

    name: str
    train: np.ndarray
    test: np.ndarray


def _column(name: str, values: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values if values is not None else [], dtype=object)
    if arr.ndim != 1:
        raise ParameterError(
            f"Invalid shape for the {name!r} parameter: expected (N,), but got shape "
            f"{arr.shape!r}."
        )
    if arr.size == 0:
        raise ParameterError(f"The {name!r} column is empty: there are no samples to split.")
    if n is not None and arr.size != n:
        raise ParameterError(
            f"The sample table's columns differ in length: {name!r} has {arr.size} "
            f"entries, expected {n}."
        )
    return np.array([str(v) for v in arr], dtype=object)


def _subject_groups(subjects: Any, datasets: Any | None) -> tuple[np.ndarray, list[str]]:
    subj = _column("subjects", subjects)
    if datasets is None:
        keys = [f"{s}" for s in subj]
    else:
        ds = _column("datasets", datasets, subj.size)
        keys = [f"{d}/{s}" for d, s in zip(ds, subj, strict=True)]
    names, groups = np.unique(np.array(keys, dtype=object), return_inverse=True)
    return groups, [str(n) for n in names]


def _by_group(groups: np.ndarray, names: list[str]) -> Iterator[Fold]:
    """One fold per group, in the order of ``names`` (``groups`` indexes them): the folds
    and index order of scikit-learn's ``LeaveOneGroupOut``, without importing
    scikit-learn (more than a second of CPU at the start of every run)."""
    for g in range(len(names)):
        test = np.flatnonzero(groups == g)
        if test.size:
            yield Fold(names[g], np.flatnonzero(groups != g).astype(np.int64),
                       test.astype(np.int64))


def loso(subjects: Sequence[Any], *, datasets: Sequence[Any] | None = None) -> Iterator[Fold]:
    """Leave one subject out.

    Parameters
    ----------
    subjects : sequence, shape (N,)
        Subject of each sample.
    datasets : sequence, shape (N,), optional
        Dataset of each sample; subjects of different datasets are different
        people. Folds are named ``"dataset/subject"`` (``"subject"`` without
        datasets), in sorted order.

    Returns
    -------
    iterator of Fold
    """
    groups, names = _subject_groups(subjects, datasets)
    if len(names) < 2:
        raise ParameterError(
            f"LOSO needs at least 2 subjects, but the samples hold only {names!r}."
        )
    return _by_group(groups, names)


def cde(subjects: Sequence[Any], datasets: Sequence[Any]) -> Iterator[Fold]:
    """Composite database evaluation: LOSO over the union of the datasets.

    Parameters
    ----------
    subjects, datasets : sequence, shape (N,)
        Subject and dataset of each sample; at least two datasets.

    Returns
    -------
    iterator of Fold
        Named ``"dataset/subject"``.
    """
    ds = _column("datasets", datasets)
    if np.unique(ds).size < 2:
        raise ParameterError(
            f"CDE (composite database evaluation) needs samples of at least 2 datasets, "
            f"but all come from {ds[0]!r}; use the 'loso' protocol for one dataset."
        )
    return loso(subjects, datasets=datasets)


def hde(datasets: Sequence[Any]) -> Iterator[Fold]:
    """Holdout-database evaluation: test on each dataset, train on the others.

    Parameters
    ----------
    datasets : sequence, shape (N,)
        Dataset of each sample; at least two datasets.

    Returns
    -------
    iterator of Fold
        Named after the held-out dataset, in sorted order.
    """
    ds = _column("datasets", datasets)
    names, groups = np.unique(ds, return_inverse=True)
    if names.size < 2:
        raise ParameterError(
            f"HDE (holdout-database evaluation) needs samples of at least 2 datasets, "
            f"but all come from {ds[0]!r}."
        )
    return _by_group(groups, [str(n) for n in names])


def kfold(labels: Sequence[Any], *, n_splits: int = 10, seed: int = 0) -> Iterator[Fold]:
    """Stratified k-fold cross-validation, shuffled with a seed.

    Parameters
    ----------
    labels : sequence, shape (N,)
        Class of each sample.
    n_splits : int
        Number of folds (10 in PSN).
    seed : int
        Seed of the shuffle; the same seed gives the same folds.

    Returns
    -------
    iterator of Fold
        Named ``"fold01"``, ``"fold02"``, ...

    Notes
    -----
    When a class has fewer samples than ``n_splits``, some folds lack it;
    this is logged (scikit-learn's warning is not raised).
    """
    y = _column("labels", labels)
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)):
        raise ParameterError(
            f"Invalid value for the 'n_splits' parameter. It must be an integer, but got "
            f"{n_splits!r} instead."
        )
    check_range("n_splits", int(n_splits), 2, y.size)
    values, counts = np.unique(y, return_counts=True)
    if counts.max() < n_splits:
        raise ParameterError(
            f"Invalid value for the 'n_splits' parameter: no class has {n_splits} samples "
            f"(largest class {str(values[counts.argmax()])!r} has {int(counts.max())}), so "
            "stratified folds cannot be built."
        )
    if counts.min() < n_splits:
        logger.warning(
            "kfold: class %r has only %d samples, fewer than n_splits=%d; some folds "
            "will not test it", str(values[counts.argmin()]), int(counts.min()), n_splits,
        )
    from sklearn.model_selection import StratifiedKFold  # start-up: only k-fold needs it

    splitter = StratifiedKFold(n_splits=int(n_splits), shuffle=True, random_state=int(seed))
    width = len(str(n_splits))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        folds = list(splitter.split(np.zeros((y.size, 1)), y))
    return iter([
        Fold(f"fold{i:0{max(width, 2)}d}", train.astype(np.int64), test.astype(np.int64))
        for i, (train, test) in enumerate(folds, start=1)
    ])


def split(protocol: str, *, subjects: Sequence[Any] | None = None,
          datasets: Sequence[Any] | None = None, labels: Sequence[Any] | None = None,
          n_splits: int = 10, seed: int = 0) -> Iterator[Fold]:
    """Dispatch on the ``--protocol`` name.

    Parameters
    ----------
    protocol : {"loso", "kfold", "cde", "hde"}
    subjects, datasets, labels : sequence, shape (N,)
        Columns of the sample table; each protocol uses the ones it needs
        (``loso``: subjects, datasets if given; ``kfold``: labels; ``cde``:
        subjects and datasets; ``hde``: datasets).
    n_splits, seed : int
        For ``kfold``.

    Returns
    -------
    iterator of Fold
    """
    check_option("protocol", protocol, PROTOCOLS)

    def need(name: str, value: Any) -> Any:
        if value is None:
            raise ParameterError(f"The {protocol!r} protocol needs the {name!r} column.")
        return value

    if protocol == "loso":
        return loso(need("subjects", subjects), datasets=datasets)
    if protocol == "kfold":
        return kfold(need("labels", labels), n_splits=n_splits, seed=seed)
    if protocol == "cde":
        return cde(need("subjects", subjects), need("datasets", datasets))
    return hde(need("datasets", datasets))
