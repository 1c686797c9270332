"""Torch datasets over feature stores, and the model inputs built from them.

A :class:`StoreDataset` is lazy: it keeps the store path and sample ids and
opens the file in whichever process first reads an item (so each DataLoader
worker has its own HDF5 handle).  Each model input (see the registry's
:class:`~mexkit.models.registry.InputSpec`) is built from the arrays a store
holds:

``mean_regions`` (3, 42, 42)
    A stored ``mean_regions`` array, or built from the onset-apex ``flow``,
    its ``strain`` and the onset frame's ``landmarks`` with MEAN's region
    layout ([1]_), as ``mexkit flow --pairs onset-apex --strain`` writes them.
``apex_rgb`` (3, 224, 224)
    The stored ``apex_image`` (``mexkit flow --with-apex``), resized to 224
    and scaled to [0, 1] ([2]_).
``direction_magnitude`` (64, 128)
    A stored ``direction_magnitude`` array (``mexkit flow --features dm``),
    or computed from 64 stored flow fields ([2]_).

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023).
.. [2] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A Novel
   Apex-Time Network for Cross-Dataset Micro-Expression Recognition",
   ACII 2019.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ModelInputError, ParameterError
from ..io.store import SampleView, open_store

__all__ = ["StoreDataset", "INPUT_BUILDERS", "build_input", "PRODUCERS"]

# The command that produces each input, named in errors.
PRODUCERS = {
    "mean_regions": "mexkit flow --pairs onset-apex --strain",
    "apex_rgb": "mexkit crop --rgb --size 224 | mexkit flow --pairs apex-window --with-apex",
    "direction_magnitude": "mexkit flow --pairs apex-window --features dm",
}


def _missing(sample: SampleView, name: str, needs: Sequence[str]) -> ModelInputError:
    return ModelInputError(
        f"sample {sample.sample_id!r} lacks {', '.join(repr(n) for n in needs)} for the "
        f"model input {name!r} (the store holds {', '.join(sample.keys()) or 'nothing'}); "
        f"produce it with `{PRODUCERS[name]}`."
    )


def _mean_regions(sample: SampleView) -> np.ndarray:
    if "mean_regions" in sample:
        regions = sample.read("mean_regions").astype(np.float32)
        return regions[0] if regions.ndim == 4 else regions  # (P, 3, 42, 42): first pair
    needs = ("flow", "strain", "landmarks")
    if not all(n in sample for n in needs):
        raise _missing(sample, "mean_regions", needs)
    from ..face.regions import mean_regions

    flow = sample.read("flow", 0)
    strain = sample.read("strain", 0)
    landmarks = sample.read("landmarks", 0)
    if not np.isfinite(landmarks).all():
        raise ModelInputError(
            f"sample {sample.sample_id!r} has no landmarks (no face found when it was "
            "cropped); MEAN's regions need them."
        )
    maps = np.stack([flow[0], flow[1], strain]).astype(np.float32)
    return mean_regions(maps, landmarks).astype(np.float32)


def _apex_rgb(sample: SampleView) -> np.ndarray:
    if "apex_image" not in sample:
        raise _missing(sample, "apex_rgb", ("apex_image",))
    import cv2

    img = sample.read("apex_image")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != (224, 224):
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)
    return (img.astype(np.float32) / 255.0).transpose(2, 0, 1).copy()


def _direction_magnitude(sample: SampleView) -> np.ndarray:
    if "direction_magnitude" in sample:
        return sample.read("direction_magnitude").astype(np.float32)
    if "flow" not in sample:
        raise _missing(sample, "direction_magnitude", ("direction_magnitude",))
    shape = sample.shape("flow")
    if shape[0] != 64:
        raise ModelInputError(
            f"sample {sample.sample_id!r} holds {shape[0]} flow fields; ATNet's "
            f"direction-magnitude feature needs 64 (`{PRODUCERS['direction_magnitude']}`)."
        )
    from ..motion.features import direction_magnitude

    return direction_magnitude(sample.read("flow")).astype(np.float32)


INPUT_BUILDERS: dict[str, Callable[[SampleView], np.ndarray]] = {
    "mean_regions": _mean_regions,
    "apex_rgb": _apex_rgb,
    "direction_magnitude": _direction_magnitude,
}


def build_input(name: str, sample: SampleView) -> np.ndarray:
    """Build model input ``name`` for one stored sample."""
    try:
        builder = INPUT_BUILDERS[name]
    except KeyError:
        raise ParameterError(
            f"No builder for the model input {name!r}; known inputs: "
            f"{', '.join(sorted(INPUT_BUILDERS))}."
        ) from None
    return builder(sample)


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
        Model input names (keys of :data:`INPUT_BUILDERS`).
    cache : bool
        Keep built inputs in memory after the first read (they are small).
    """

    def __init__(self, path: str | os.PathLike, sample_ids: Sequence[str],
                 labels: Sequence[int], inputs: Sequence[str], *, cache: bool = True) -> None:
        if len(sample_ids) != len(labels):
            raise ParameterError("sample_ids and labels differ in length.")
        self.path = str(path)
        self.sample_ids = list(sample_ids)
        self.labels = [int(v) for v in labels]
        self.inputs = list(inputs)
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
        item = {name: torch.from_numpy(build_input(name, sample)) for name in self.inputs}
        if self.cache:
            self._memo[index] = item
        return item

    def __getitem__(self, index: int) -> tuple[Mapping[str, torch.Tensor], int]:
        return dict(self.features(index)), self.labels[index]

    def preload(self) -> None:
        """Build every item now (fails early on a sample with missing inputs)."""
        for i in range(len(self)):
            self.features(i)
