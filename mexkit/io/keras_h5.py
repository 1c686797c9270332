"""Keras HDF5 weight files, read as plain data with h5py.

Keras 2 (``model.save`` / ``model.save_weights`` / ``ModelCheckpoint`` in the
legacy ``.h5`` / ``.hdf5`` format) writes one of two layouts:

full model
    Root attributes ``model_config`` (JSON), ``training_config``,
    ``keras_version`` and ``backend``; the weights under the group
    ``/model_weights``.
weights only
    Root attributes ``layer_names``, ``keras_version`` and ``backend``; the
    layer groups at the root.

Under either, the weights group's attribute ``layer_names`` lists every layer
of the model in the order Keras built it (layers without weights included),
and each layer's group has an attribute ``weight_names`` naming its datasets
(``conv2d_60/kernel:0``, ``batch_normalization_6/gamma:0``, ...), in the order
of the layer's ``get_weights()``. Attributes larger than HDF5's 64 KiB limit
are split by Keras into ``layer_names0``, ``layer_names1``, ...; both forms are
read.

Reading takes attributes and numeric datasets only: nothing in the file is
imported, deserialised or executed (the model configuration is parsed as JSON
text and returned as data). Keras' own loader matches the weighted layers of
a weights-only file to the model's by their order, which
:func:`read_keras_weights` keeps.

References
----------
.. [1] Keras 2.4, ``keras/saving/hdf5_format.py`` (``save_weights_to_hdf5_group``,
   ``load_weights_from_hdf5_group``): the layout described above.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError

__all__ = ["KerasLayer", "KerasWeights", "read_keras_weights", "MAX_WEIGHT_VALUES"]

#: Largest number of values read from one weight dataset (a guard against
#: hostile files; MEAN's largest weight has 2,800 values).
MAX_WEIGHT_VALUES = 1 << 26


@dataclass(frozen=True)
class KerasLayer:
    """One layer with weights.

    Attributes
    ----------
    name : str
        The layer's name (its group's name).
    weights : tuple of (str, numpy.ndarray)
        ``(weight name, value)`` in the order of the group's ``weight_names``
        (Keras' ``get_weights()`` order), e.g. ``("conv2d_60/kernel:0", ...)``.
    """

    name: str
    weights: tuple[tuple[str, np.ndarray], ...]

    def weight(self, suffix: str) -> np.ndarray | None:
        """The weight whose name ends with ``suffix`` (``"kernel"``, ``"gamma"``, ...)."""
        for name, value in self.weights:
            base = name.rsplit("/", 1)[-1].split(":", 1)[0]
            if base == suffix:
                return value
        return None

    def describe(self) -> str:
        """``name [weight shapes]``, for messages."""
        shapes = ", ".join(f"{n.rsplit('/', 1)[-1]} {tuple(v.shape)}" for n, v in self.weights)
        return f"{self.name!r} ({shapes})"


@dataclass(frozen=True)
class KerasWeights:
    """The content of a Keras HDF5 weights file.

    Attributes
    ----------
    path : Path
    layout : {"full-model", "weights-only"}
    layer_names : tuple of str
        Every layer, in the file's order (layers without weights included).
    layers : tuple of KerasLayer
        The layers that have weights, in the file's order.
    keras_version, backend : str or None
        The root attributes of the same names.
    model_config : dict or None
        The parsed ``model_config`` JSON of a full-model file (data only).
    """

    path: Path
    layout: str
    layer_names: tuple[str, ...]
    layers: tuple[KerasLayer, ...]
    keras_version: str | None
    backend: str | None
    model_config: dict[str, Any] | None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.bytes_):
        return bytes(value).decode("utf-8")
    return str(value)


def _attr(group: Any, name: str) -> Any:
    """An attribute, joined from Keras' ``name0``, ``name1``, ... chunks when split."""
    if name in group.attrs:
        return group.attrs[name]
    chunks = []
    while f"{name}{len(chunks)}" in group.attrs:
        chunks.append(group.attrs[f"{name}{len(chunks)}"])
    if not chunks:
        return None
    return np.concatenate([np.atleast_1d(c) for c in chunks])


def _names(group: Any, name: str, where: str) -> tuple[str, ...] | None:
    raw = _attr(group, name)
    if raw is None:
        return None
    arr = np.atleast_1d(np.asarray(raw))
    if arr.size == 0:
        return ()  # Keras writes an empty float array for a layer without weights
    if arr.dtype.kind not in "SUO" or arr.ndim != 1:
        raise StoreError(f"{where}: attribute {name!r} is not a list of names.")
    return tuple(_text(v) for v in arr)


def _read_dataset(group: Any, name: str, where: str) -> np.ndarray:
    import h5py  # start-up: h5py, only when a weight file is read

    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise StoreError(f"{where}: weight {name!r} is listed in 'weight_names' but the file "
                         "has no such dataset (a truncated or edited file?).")
    if obj.dtype.kind not in "fiu":
        raise StoreError(f"{where}: weight {name!r} has the non-numeric type {obj.dtype}.")
    if obj.size > MAX_WEIGHT_VALUES:
        raise StoreError(f"{where}: weight {name!r} holds {obj.size} values, more than the "
                         f"{MAX_WEIGHT_VALUES} allowed.")
    try:
        return np.asarray(obj[()])
    except OSError as exc:
        raise StoreError(f"{where}: weight {name!r} cannot be read ({exc}); the file is "
                         "truncated or damaged.") from exc


def read_keras_weights(path: str | os.PathLike) -> KerasWeights:
    """Read a Keras HDF5 weights file (either layout) without Keras.

    Parameters
    ----------
    path : path-like
        A ``.h5`` / ``.hdf5`` file written by Keras 2 (``model.save``,
        ``save_weights`` or ``ModelCheckpoint``).

    Returns
    -------
    KerasWeights

    Raises
    ------
    StoreError
        The file is missing, not HDF5, truncated, or not a Keras weights file
        (no ``layer_names``), or a listed weight is missing or not numeric.
        The message names the file and the layer.
    """
    import h5py  # start-up: h5py, only when a weight file is read

    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise StoreError(f"{where}: no such file.")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise StoreError(f"{where}: not a readable HDF5 file ({exc}).") from exc
    with f:
        try:
            full = "model_weights" in f and isinstance(f["model_weights"], h5py.Group)
            root = f["model_weights"] if full else f
            layer_names = _names(root, "layer_names", where)
            if layer_names is None:
                raise StoreError(
                    f"{where}: not a Keras weights file (no 'layer_names' attribute at the "
                    "root or under /model_weights).")
            config = None
            raw_config = f.attrs.get("model_config")
            if raw_config is not None:
                try:
                    config = json.loads(_text(raw_config))
                except ValueError as exc:
                    raise StoreError(f"{where}: 'model_config' is not JSON ({exc}).") from exc
                if not isinstance(config, dict):
                    raise StoreError(f"{where}: 'model_config' is not a JSON object.")
            layers = []
            for name in layer_names:
                group = root.get(name)
                if not isinstance(group, h5py.Group):
                    raise StoreError(
                        f"{where}: layer {name!r} is listed in 'layer_names' but has no group "
                        "(a truncated or edited file?).")
                lw = f"{where}: layer {name!r}"
                weight_names = _names(group, "weight_names", lw) or ()
                if weight_names:
                    layers.append(KerasLayer(name, tuple(
                        (w, _read_dataset(group, w, lw)) for w in weight_names)))
            version = f.attrs.get("keras_version", root.attrs.get("keras_version"))
            backend = f.attrs.get("backend", root.attrs.get("backend"))
        except StoreError:
            raise
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{where}: cannot be read as a Keras weights file ({exc}); the "
                             "file is truncated or damaged.") from exc
    return KerasWeights(p, "full-model" if full else "weights-only", layer_names,
                        tuple(layers), None if version is None else _text(version),
                        None if backend is None else _text(backend), config)

