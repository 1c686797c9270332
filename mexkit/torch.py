"""PyTorch datasets over mexkit stores, for models that are not in mexkit.

:class:`StoreDataset` is a :class:`torch.utils.data.Dataset` whose items are a
model input built from each sample of a store (by the same input builders
``mexkit train`` uses: ``mexkit models`` lists them) and the sample's class
index.  :func:`splits` gives the folds of ``mexkit train``'s protocols (LOSO,
k-fold, CDE, HDE) over the dataset's samples: the same folds, with the same
names, that ``mexkit train`` trains and tests.

The dataset holds a path, never an open file: each process opens the store
the first time it reads an item, so a :class:`torch.utils.data.DataLoader`
with several workers gives each worker its own HDF5 handle (HDF5 handles must
not cross a fork).  Nothing is kept between calls beyond the dataset object
itself.

Example
-------
>>> from torch.utils.data import DataLoader, Subset
>>> from mexkit.torch import StoreDataset, splits
>>> data = StoreDataset("demo.flow.h5", input="mean_regions")   # doctest: +SKIP
>>> for fold in splits(data, protocol="loso"):                  # doctest: +SKIP
...     train = DataLoader(Subset(data, fold.train), batch_size=8, shuffle=True,
...                        num_workers=2)
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .errors import ParameterError
from .io.store import open_store
from .learn.data import StoreDataset as _Items
from .learn.protocols import Fold, split
from .models.inputs import build_input, get_input
from .models.registry import get_spec
from .pipeline.labelled import sample_table

__all__ = ["StoreDataset", "splits", "Fold"]


class StoreDataset(Dataset):
    """Items ``(input, label)`` of a feature store.

    Parameters
    ----------
    store : path-like
        A mexkit store holding what the input needs (``mexkit models`` shows
        which command makes each input).
    input : str, optional
        One model input by name (e.g. ``"mean_regions"``): items are
        ``(tensor, label)``.
    inputs : sequence of str, optional
        Several inputs: items are ``({name: tensor}, label)``.
    model : str, optional
        A mexkit model's inputs, as ``mexkit train --model`` reads them:
        items are ``({name: tensor}, label)``.  Exactly one of ``input``,
        ``inputs`` and ``model`` is given.
    scheme : str, optional
        Label scheme (``mexkit train --scheme``); default: the model's
        paper scheme when ``model`` is given, else the samples' stored
        ``label``.  Samples that the scheme does not cover, or without a
        label, are left out (``excluded`` says why).
    cache : bool
        Keep each built input in memory after its first read (per process).

    Attributes
    ----------
    sample_ids, subjects, datasets, labels : list of str
        One entry per item, in the store's order.
    classes : list of str
        Class names; an item's label is an index into it.
    targets : torch.Tensor
        The label of every item (int64).
    excluded : dict of str to str
        Samples left out, with the reason.
    names : list of str
        The model inputs of each item.

    Raises
    ------
    ParameterError
        Not exactly one of ``input``, ``inputs``, ``model``; an unknown
        input, model or scheme.
    StoreError
        An unreadable store.
    LabelError
        Fewer than two classes among the samples.
    """

    def __init__(self, store: str | os.PathLike[str], *, input: str | None = None,
                 inputs: Sequence[str] | None = None, model: str | None = None,
                 scheme: str | None = None, cache: bool = False) -> None:
        given = [n for n, v in (("input", input), ("inputs", inputs), ("model", model))
                 if v is not None]
        if len(given) != 1:
            raise ParameterError(
                "Give exactly one of the 'input', 'inputs' and 'model' parameters, but got "
                f"{', '.join(given) or 'none'}.")
        self.model = model
        if model is not None:
            spec = get_spec(model)
            names = list(spec.input_names)
            scheme = spec.scheme if scheme is None else scheme
        elif input is not None:
            if not isinstance(input, str):
                raise ParameterError(f"Invalid value for the 'input' parameter: expected one "
                                     f"input name, but got {input!r} (use 'inputs' for "
                                     "several).")
            names = [input]
        else:
            names = [inputs] if isinstance(inputs, str) else list(inputs or [])
            if not names:
                raise ParameterError("The 'inputs' parameter is empty.")
        for n in names:
            get_input(n)                          # an unknown name fails here, listing them
        self.single = input is not None
        self.names = names
        self.scheme = scheme
        self.path = str(store)
        with open_store(self.path) as s:
            table = sample_table(s, scheme=scheme)
        self.sample_ids = list(table.sample_ids)
        self.subjects = list(table.subjects)
        self.datasets = list(table.datasets)
        self.labels = list(table.labels)
        self.classes = list(table.classes)
        self.excluded = dict(table.excluded)
        self.targets = torch.as_tensor(table.y, dtype=torch.int64)
        self._items = _Items(self.path, self.sample_ids, table.y.tolist(), names,
                             build=build_input, cache=cache)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        features, label = self._items[index]
        if self.single:
            return features[self.names[0]], label
        return features, label

    def __repr__(self) -> str:
        return (f"StoreDataset({self.path!r}, {len(self)} samples, inputs {self.names}, "
                f"classes {self.classes})")


def splits(data: StoreDataset, *, protocol: str | None = None, n_splits: int = 10,
           seed: int = 0) -> Iterator[Fold]:
    """The folds of ``mexkit train``'s protocols over a dataset's items.

    Parameters
    ----------
    data : StoreDataset
        The dataset (its subjects, datasets and labels decide the folds).
    protocol : {"loso", "kfold", "cde", "hde"}, optional
        Default: the model's paper protocol when the dataset was made with
        ``model``, else ``"loso"``.
    n_splits, seed : int
        ``kfold`` only, as ``mexkit train --n-splits --seed``.

    Returns
    -------
    iterator of Fold
        ``(name, train, test)`` with int64 index arrays into ``data``; the
        names and test sets are those of ``mexkit train`` on the same store
        with the same settings (its ``predictions.csv`` ``fold`` column).
    """

    if protocol is None:
        protocol = "loso"
        if data.model is not None:
            protocol = get_spec(data.model).protocol or "loso"
    return split(protocol, subjects=data.subjects, datasets=data.datasets,
                 labels=data.labels, n_splits=n_splits, seed=seed)
