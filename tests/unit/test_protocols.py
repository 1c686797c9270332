"""Evaluation protocols: partitions, subject separation, dataset hold-out."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.learn.protocols import PROTOCOLS, cde, hde, kfold, loso, split


def _table(rng):
    """A composite table: subject "s01" exists in both datasets (different people)."""
    rows = []
    for dataset, subjects in (("casme2", ["s01", "s02", "s03"]), ("smic", ["s01", "s02"])):
        for s in subjects:
            for _ in range(int(rng.integers(2, 6))):
                rows.append((dataset, s, int(rng.integers(0, 3))))
    order = rng.permutation(len(rows))
    ds, subj, lab = zip(*[rows[i] for i in order], strict=True)
    return np.array(ds), np.array(subj), np.array(lab)


def _assert_partition(folds, n):
    tested = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(tested), np.arange(n))  # each sample tested once
    for f in folds:
        assert f.train.dtype == np.int64 and f.test.dtype == np.int64
        assert np.intersect1d(f.train, f.test).size == 0
        assert f.train.size + f.test.size == n


def test_loso_keeps_subjects_of_different_datasets_apart(rng):
    ds, subj, _ = _table(rng)
    folds = list(loso(subj, datasets=ds))
    assert [f.name for f in folds] == ["casme2/s01", "casme2/s02", "casme2/s03",
                                       "smic/s01", "smic/s02"]
    _assert_partition(folds, ds.size)
    ident = np.array([f"{d}/{s}" for d, s in zip(ds, subj, strict=True)])
    for f in folds:
        assert set(ident[f.test]) == {f.name}
        assert f.name not in set(ident[f.train])
    # casme2/s01's fold trains on smic/s01
    assert "smic/s01" in set(ident[folds[0].train])


def test_loso_without_datasets_treats_equal_names_as_one_subject(rng):
    ds, subj, _ = _table(rng)
    folds = list(loso(subj))
    assert [f.name for f in folds] == ["s01", "s02", "s03"]
    _assert_partition(folds, ds.size)


def test_cde_is_loso_over_the_union_and_needs_two_datasets(rng):
    ds, subj, _ = _table(rng)
    ours = [(f.name, f.test.tolist()) for f in cde(subj, ds)]
    assert ours == [(f.name, f.test.tolist()) for f in loso(subj, datasets=ds)]
    with pytest.raises(ParameterError, match="at least 2 datasets"):
        cde(subj, ["casme2"] * subj.size)


def test_hde_folds_are_the_datasets(rng):
    ds, subj, _ = _table(rng)
    folds = list(hde(ds))
    assert [f.name for f in folds] == ["casme2", "smic"]
    _assert_partition(folds, ds.size)
    for f in folds:
        assert set(ds[f.test]) == {f.name}
        assert f.name not in set(ds[f.train])
    with pytest.raises(ParameterError, match="at least 2 datasets"):
        hde(["smic"] * 4)


def test_kfold_is_stratified_seeded_and_partitions(rng):
    labels = np.repeat([0, 1, 2], [30, 20, 13])
    folds = list(kfold(labels, n_splits=5, seed=3))
    assert [f.name for f in folds] == ["fold01", "fold02", "fold03", "fold04", "fold05"]
    _assert_partition(folds, labels.size)
    for f in folds:
        counts = np.bincount(labels[f.test], minlength=3)
        assert np.all(np.abs(counts - np.array([30, 20, 13]) / 5) <= 1)
    again = [f.test.tolist() for f in kfold(labels, n_splits=5, seed=3)]
    assert again == [f.test.tolist() for f in folds]
    other = [f.test.tolist() for f in kfold(labels, n_splits=5, seed=4)]
    assert other != again


def test_kfold_small_class_is_logged_not_warned(caplog):
    labels = [0] * 12 + [1] * 2
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        folds = list(kfold(labels, n_splits=4))  # filterwarnings=error would catch sklearn's
    _assert_partition(folds, 14)
    assert "fewer than n_splits=4" in caplog.text
    with pytest.raises(ParameterError, match="n_splits"):
        kfold([0, 1, 0, 1], n_splits=3)
    with pytest.raises(ParameterError, match="n_splits"):
        kfold([0, 1, 0, 1], n_splits=1)


def test_split_dispatch_and_errors(rng):
    ds, subj, lab = _table(rng)
    assert PROTOCOLS == ("loso", "kfold", "cde", "hde")
    for name in PROTOCOLS:
        folds = list(split(name, subjects=subj, datasets=ds, labels=lab, n_splits=2, seed=0))
        _assert_partition(folds, ds.size)
    with pytest.raises(ParameterError, match="Allowed values are 'loso', 'kfold'"):
        split("loocv", subjects=subj)
    with pytest.raises(ParameterError, match="'datasets' column"):
        split("hde", subjects=subj)
    with pytest.raises(ParameterError, match="differ in length"):
        loso(subj, datasets=ds[:-1])
    with pytest.raises(ParameterError, match="empty"):
        loso([])
    with pytest.raises(ParameterError, match="at least 2 subjects"):
        loso(["s1", "s1"])


def test_loso_and_hde_folds_are_those_of_scikit_learn(rng):
    # the folds are built without scikit-learn (start-up); they must be its
    # LeaveOneGroupOut's folds, indices in the same order
    from sklearn.model_selection import LeaveOneGroupOut

    ds, subj, _ = _table(rng)
    for folds, keys in ((list(loso(subj, datasets=ds)), [f"{d}/{s}" for d, s in zip(ds, subj,
                                                                                    strict=True)]),
                        (list(loso(subj)), list(subj)), (list(hde(ds)), list(ds))):
        expected = list(LeaveOneGroupOut().split(np.zeros((len(keys), 1)), groups=keys))
        assert len(folds) == len(expected)
        for f, (train, test) in zip(folds, expected, strict=True):
            assert np.array_equal(f.train, train) and np.array_equal(f.test, test)
            assert {keys[i] for i in f.test} == {f.name}
