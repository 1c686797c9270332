"""Torch datasets over feature stores.

A :class:`StoreDataset` is lazy: it keeps the store path and sample ids and
opens the file in whichever process first reads an item (so each DataLoader
worker has its own HDF5 handle). Each model input is built by the function
the caller gives (the pipeline gives the input registry's,
:func:`mexkit.models.inputs.build_input`, which records what each input is
made from and which command produces it). Inputs whose length varies
between samples (AKMNet's clips) are padded per batch by
:func:`pad_collate`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from ..errors import ModelInputError, ParameterError
from ..io.store import open_store

__all__ = ["StoreDataset", "pad_collate", "collate_for"]


def pad_collate(batch: Sequence[tuple[Mapping[str, torch.Tensor], Any]],
                variable: Sequence[str] = ()) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Collate ``(inputs, label)`` items, padding the ``variable`` inputs.

    Each input named in ``variable`` is padded with zeros along its first
    axis to the longest item of the batch, and a boolean mask
    ``<name>_mask`` of shape ``(B, T)`` (True on real frames) is added.

    Parameters
    ----------
    batch : sequence of (dict of tensors, label)
    variable : sequence of str
        Inputs whose first axis varies in length.

    Returns
    -------
    inputs : dict of tensors
    labels : torch.Tensor
    """
    inputs: dict[str, torch.Tensor] = {}
    keys = list(batch[0][0])
    for key in keys:
        items = [item[0][key] for item in batch]
        if key in variable:
            longest = max(int(x.shape[0]) for x in items)
            padded = items[0].new_zeros((len(items), longest, *items[0].shape[1:]))
            mask = torch.zeros((len(items), longest), dtype=torch.bool)
            for i, x in enumerate(items):
                padded[i, :x.shape[0]] = x
                mask[i, :x.shape[0]] = True
            inputs[key] = padded
            inputs[f"{key}_mask"] = mask
        else:
            shapes = {tuple(x.shape) for x in items}
            if len(shapes) > 1:  # e.g. `crop --detector none` kept each clip's own size
                shown = ", ".join(map(str, sorted(shapes)))
                raise ModelInputError(
                    f"Input {key!r} differs in shape between samples ({shown}): a batch "
                    "needs one size; crop with --size N (e.g. --size 128).")
            inputs[key] = torch.stack(items)
    labels = default_collate([item[1] for item in batch])
    return inputs, labels


class _PadCollate:
    """Picklable ``collate_fn`` padding the given inputs (for DataLoader workers)."""

    def __init__(self, variable: Sequence[str]) -> None:
        self.variable = tuple(variable)

    def __call__(self, batch: Sequence[tuple[Mapping[str, torch.Tensor], Any]]) -> Any:
        return pad_collate(batch, self.variable)


def collate_for(input_specs: Sequence[Any]) -> Any:
    """The ``collate_fn`` for a model's inputs: None (torch's default) unless
    some input varies in length, then a padding collate."""
    variable = [i.name for i in input_specs if getattr(i, "variable", False)]
    return _PadCollate(variable) if variable else None


class StoreDataset(Dataset):
    """Items ``({input name: tensor}, label)`` read lazily from a store.

    Parameters
    ----------
    path : path-like
        The feature store.
    sample_ids : sequence of str
        The samples, in item order.
    labels : sequence of int
        Class index of each sample.
    inputs : sequence of str
        Model input names.
    build : callable
        ``build(name, sample) -> numpy.ndarray``: the input ``name`` of one
        stored sample (:class:`~mexkit.io.store.SampleView`); picklable, so
        that worker processes can build items.
    cache : bool
        Keep built inputs in memory after the first read (they are small).
    """

    def __init__(self, path: str | os.PathLike, sample_ids: Sequence[str],
                 labels: Sequence[int], inputs: Sequence[str], *,
                 build: Callable[[str, Any], Any], cache: bool = True) -> None:
        if len(sample_ids) != len(labels):
            raise ParameterError("sample_ids and labels differ in length.")
        self.path = str(path)
        self.sample_ids = list(sample_ids)
        self.labels = [int(v) for v in labels]
        self.inputs = list(inputs)
        self.build = build
        self.cache = cache
        self._store: Any = None
        self._pid: int | None = None
        self._memo: dict[int, dict[str, torch.Tensor]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        state["_pid"] = None
        return state

    def _open(self) -> Any:
        if self._store is None or self._pid != os.getpid():
            self._store = open_store(self.path, verify=False)
            self._pid = os.getpid()
        return self._store

    def __len__(self) -> int:
        return len(self.sample_ids)

    def features(self, index: int) -> Mapping[str, torch.Tensor]:
        if index in self._memo:
            return self._memo[index]
        sample = self._open()[self.sample_ids[index]]
        item = {name: torch.from_numpy(self.build(name, sample)) for name in self.inputs}
        if self.cache:
            self._memo[index] = item
        return item

    def __getitem__(self, index: int) -> tuple[Mapping[str, torch.Tensor], int]:
        return dict(self.features(index)), self.labels[index]

    def preload(self) -> None:
        """Build every item now (fails early on a sample with missing inputs)."""
        for i in range(len(self)):
            self.features(i)

    def nbytes(self) -> int:
        """Bytes held by the items built so far (all of them after :meth:`preload`)."""
        return sum(t.numel() * t.element_size() for item in self._memo.values()
                   for t in item.values())
