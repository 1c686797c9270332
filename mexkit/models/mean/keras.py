"""MEAN's published Keras networks as mexkit :class:`~mexkit.models.mean.network.MEAN` weights.

The authors publish one Keras network per LOSO fold and dataset, in three
kinds: ``spot`` (shared layers and the spotting head), ``recog`` (shared
layers and the recognition head) and ``spot_recog`` (both heads). Their
weighted layers, in the order of the files' ``layer_names`` (the order in
which Keras' own ``load_weights`` assigns them):

==  =====================  ===========================================  ===========
#   layer                  Keras weights                                mexkit
==  =====================  ===========================================  ===========
1   u stream conv          kernel (5, 5, 1, 3), bias (3,)               streams.0.0
2   v stream conv          kernel (5, 5, 1, 3), bias (3,)               streams.1.0
3   strain stream conv     kernel (5, 5, 1, 8), bias (8,)               streams.2.0
4-6 batch normalisations   gamma, beta, moving_mean, moving_variance    streams.i.2
7   head conv(s)           kernel (5, 5, 14, 8), bias (8,)              *_head.0
8   dense ``spot``         kernel (392, 1), bias (1,), linear           spot_head.5
8'  dense ``recog``        kernel (392, C), bias (C,), softmax          recog_head.5
==  =====================  ===========================================  ===========

With both heads, the head convolutions come in the order of the dense layers
(the spotting head's first in the authors' files); a full-model file's
``model_config`` says which convolution feeds which dense layer, and that
graph is followed when present.

Conversions (Keras: channels last, cross-correlation; torch: channels first,
cross-correlation): a convolution kernel ``(kh, kw, in, out)`` becomes
``(out, in, kh, kw)``; 'same' padding of a 5x5 kernel is 2 pixels on each
side in both. Keras flattens the ``7 x 7 x 8`` head output in channels-last
order (index ``(h * 7 + w) * 8 + c``), torch's ``Flatten`` in channels-first
order (``c * 49 + h * 7 + w``), so a dense kernel ``(392, out)`` is reshaped
to ``(7, 7, 8, out)``, permuted to ``(out, 8, 7, 7)`` and flattened. Batch
normalisation (epsilon 0.001 in both) keeps its four vectors. Max-pooling 3x3
stride 3 'same' (42 -> 14) and 2x2 stride 2 'same' (14 -> 7) need no padding
at these sizes, so torch's unpadded pooling is the same.

Class order of the recognition head, as the authors encode labels
(``prepare_training.py``): CASME II disgust, happiness, others, surprise,
repression; the other datasets negative, positive, surprise.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023) 116875; the authors'
   public code (``define_model.py``, ``prepare_training.py``,
   ``load_label.py``) and ``MEAN_Weights``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from ...errors import ParameterError, StoreError

__all__ = ["AUTHORS_DATASETS", "AuthorsDataset", "MeanKeras", "dataset_from_path",
           "mean_from_keras_layers", "keras_state_dict", "config_layers",
           "fold_index", "KERAS_FLATTEN_SHAPE"]

#: The head output Keras flattens: (height, width, channels).
KERAS_FLATTEN_SHAPE = (7, 7, 8)
_STREAMS = ((3, "u"), (3, "v"), (8, "strain"))


@dataclass(frozen=True)
class AuthorsDataset:
    """What the authors' code fixes for one dataset of ``MEAN_Weights``.

    Attributes
    ----------
    name : str
        The folder name in ``MEAN_Weights`` (``CASME2``, ``SMIC_HS``, ...).
    classes : tuple of str
        The recognition head's classes in output order.
    k : int
        Flow gap of the spotting features (``set_k``: 0.1 x fps, rounded).
    kprime : int
        ``k'`` of the smoothing and the intervals (the paper's Table 1).
    long : bool
        Long videos (all peaks above the threshold) or short clips (the
        single highest peak).
    fps : float
        The dataset's frame rate.
    """

    name: str
    classes: tuple[str, ...]
    k: int
    kprime: int
    long: bool
    fps: float


_NPS = ("negative", "positive", "surprise")
#: The six datasets of ``MEAN_Weights`` (``load_label.set_k``, ``prepare_training``, Table 1).
AUTHORS_DATASETS: dict[str, AuthorsDataset] = {d.name: d for d in (
    AuthorsDataset("CASME2", ("disgust", "happiness", "others", "surprise", "repression"),
                   20, 34, False, 200.0),
    AuthorsDataset("SMIC_HS", _NPS, 10, 17, False, 100.0),
    AuthorsDataset("SMIC_VIS", _NPS, 3, 4, False, 25.0),
    AuthorsDataset("SMIC_NIR", _NPS, 3, 4, False, 25.0),
    AuthorsDataset("CASME_sq", _NPS, 3, 6, True, 30.0),
    AuthorsDataset("SAMMLV", _NPS, 20, 37, True, 200.0),
)}


def dataset_from_path(path: str | PurePath) -> AuthorsDataset | None:
    """The authors' dataset named by a folder of ``path`` (``.../CASME2/recog/s1.hdf5``).

    The nearest folder whose name is one of :data:`AUTHORS_DATASETS`
    (case-insensitive) wins; None when no folder names one.
    """
    lower = {k.lower(): v for k, v in AUTHORS_DATASETS.items()}
    for part in reversed(PurePath(path).parts):
        hit = lower.get(part.lower())
        if hit is not None:
            return hit
    return None


def fold_index(path: str | PurePath) -> int | None:
    """``N`` of a fold file ``sN.hdf5`` (``sN.h5``), else None."""
    m = re.fullmatch(r"s(\d+)\.(hdf5|h5)", PurePath(path).name, flags=re.IGNORECASE)
    return int(m.group(1)) if m else None


@dataclass
class MeanKeras:
    """A MEAN network read from a Keras file, as a mexkit state dict.

    Attributes
    ----------
    kind : {"spot", "recog", "spot_recog"}
        Which heads the file holds.
    n_classes : int
        Outputs of the recognition head (0 without one).
    state : dict of str to numpy.ndarray
        Entries of :class:`~mexkit.models.mean.network.MEAN`'s ``state_dict`` (float32);
        a missing head is absent.
    layers : dict of str to str
        Keras layer name -> the mexkit module it fills.
    """

    kind: str
    n_classes: int
    state: dict[str, np.ndarray] = field(default_factory=dict)
    layers: dict[str, str] = field(default_factory=dict)

    @property
    def has_spot(self) -> bool:
        return "spot_head.5.weight" in self.state

    @property
    def has_recog(self) -> bool:
        return "recog_head.5.weight" in self.state


def config_layers(config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{layer name: {"class_name", "config", "inbound": [names]}}`` of a Keras model config.

    Data only: the functional graph of a ``model_config`` JSON, so callers
    can check which layer feeds which. Empty for a missing or unknown config.
    """
    if not config:
        return {}
    layers = (config.get("config") or {}).get("layers")
    if not isinstance(layers, Sequence):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        if not isinstance(layer, Mapping):
            continue
        name = layer.get("name") or (layer.get("config") or {}).get("name")
        inbound: list[str] = []
        for node in layer.get("inbound_nodes") or []:
            for ref in node if isinstance(node, list) else []:
                if isinstance(ref, list) and ref and isinstance(ref[0], str):
                    inbound.append(ref[0])
        out[str(name)] = {"class_name": layer.get("class_name"),
                          "config": layer.get("config") or {}, "inbound": inbound}
    return out


def _shape(arr: np.ndarray | None) -> tuple[int, ...] | None:
    return None if arr is None else tuple(int(s) for s in arr.shape)


def _conv(layer: Any, cin: int, cout: int) -> tuple[np.ndarray, np.ndarray] | None:
    k, b = layer.weight("kernel"), layer.weight("bias")
    if len(layer.weights) != 2 or _shape(k) != (5, 5, cin, cout) or _shape(b) != (cout,):
        return None
    return (np.ascontiguousarray(k.astype(np.float32).transpose(3, 2, 0, 1)),
            b.astype(np.float32))


def _bn(layer: Any, c: int) -> dict[str, np.ndarray] | None:
    names = ("gamma", "beta", "moving_mean", "moving_variance")
    vals = [layer.weight(n) for n in names]
    if len(layer.weights) != 4 or any(_shape(v) != (c,) for v in vals):
        return None
    return dict(zip(("weight", "bias", "running_mean", "running_var"),
                    (v.astype(np.float32) for v in vals), strict=True))


def keras_dense_to_torch(kernel: np.ndarray) -> np.ndarray:
    """A Keras dense kernel ``(392, out)`` on a channels-last flatten -> torch ``(out, 392)``.

    Keras' flatten index of head output ``(h, w, c)`` is ``(h * 7 + w) * 8 + c``;
    torch's is ``c * 49 + h * 7 + w``.
    """
    h, w, c = KERAS_FLATTEN_SHAPE
    kernel = np.asarray(kernel, dtype=np.float32)
    out = kernel.shape[1]
    return np.ascontiguousarray(
        kernel.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, h * w * c))


def _dense(layer: Any) -> tuple[np.ndarray, np.ndarray] | None:
    k, b = layer.weight("kernel"), layer.weight("bias")
    if (len(layer.weights) != 2 or k is None or b is None or k.ndim != 2
            or k.shape[0] != int(np.prod(KERAS_FLATTEN_SHAPE)) or k.shape[1] < 1
            or _shape(b) != (k.shape[1],)):
        return None
    return keras_dense_to_torch(k), b.astype(np.float32)


def _head_of_dense(name: str, out: int) -> str:
    low = name.lower()
    if low.startswith("spot"):
        return "spot"
    if low.startswith("recog"):
        return "recog"
    return "spot" if out == 1 else "recog"


def _trace_head_conv(graph: Mapping[str, Mapping[str, Any]], dense: str,
                     head_convs: Sequence[str]) -> str | None:
    """The head convolution upstream of ``dense`` in a model config's graph."""
    seen = 0
    node = dense
    while node in graph and seen < 16:
        inbound = graph[node]["inbound"]
        if len(inbound) != 1:
            return None
        node = inbound[0]
        if node in head_convs:
            return node
        seen += 1
    return None


def _check_graph(graph: Mapping[str, Mapping[str, Any]], stream_convs: Sequence[str],
                 where: str) -> None:
    """The concatenation must take the streams in the order of their convolutions."""
    concat = [n for n, v in graph.items() if v["class_name"] == "Concatenate"]
    if len(concat) != 1:
        return
    order = []
    for src in graph[concat[0]]["inbound"]:
        node, hops = src, 0
        while node in graph and node not in stream_convs and hops < 8:
            inbound = graph[node]["inbound"]
            node = inbound[0] if len(inbound) == 1 else ""
            hops += 1
        order.append(node)
    if order and order != list(stream_convs):
        raise StoreError(
            f"{where}: the model's concatenation takes the streams in the order {order}, "
            f"not in the order of their convolutions {list(stream_convs)}; this is not "
            "MEAN's layout.")


def mean_from_keras_layers(layers: Sequence[Any], *, config: Mapping[str, Any] | None = None,
                           where: str = "weights file") -> MeanKeras:
    """Map the weighted layers of a Keras MEAN file to mexkit's MEAN.

    Parameters
    ----------
    layers : sequence of KerasLayer
        The file's layers with weights, in file order
        (:func:`mexkit.io.keras_h5.read_keras_weights`); each has ``name``,
        ``weights`` and ``weight(suffix)``.
    config : dict, optional
        The parsed ``model_config`` of a full-model file; its graph decides
        which head convolution belongs to which dense layer.
    where : str
        Named in errors (the file's path).

    Returns
    -------
    MeanKeras

    Raises
    ------
    StoreError
        The first layer that does not fit MEAN's shapes, named with its
        weights and what was expected there; or a file that ends early.
    """
    layers = list(layers)
    pos = 0
    out = MeanKeras(kind="", n_classes=0)

    def take(what: str) -> Any:
        nonlocal pos
        if pos >= len(layers):
            raise StoreError(
                f"{where}: the file ends after {len(layers)} layer(s) with weights, but MEAN "
                f"needs {what} next (a truncated file, or not a MEAN network).")
        layer = layers[pos]
        pos += 1
        return layer

    def refuse(layer: Any, what: str) -> StoreError:
        return StoreError(f"{where}: layer {layer.describe()} does not fit MEAN: expected "
                          f"{what}.")

    stream_names = []
    for i, (cout, label) in enumerate(_STREAMS):
        layer = take(f"the {label} stream's convolution")
        conv = _conv(layer, 1, cout)
        if conv is None:
            raise refuse(layer, f"the {label} stream's convolution, kernel (5, 5, 1, {cout}) "
                                f"and bias ({cout},)")
        out.state[f"streams.{i}.0.weight"], out.state[f"streams.{i}.0.bias"] = conv
        out.layers[layer.name] = f"streams.{i}.0 ({label} convolution)"
        stream_names.append(layer.name)
    for i, (c, label) in enumerate(_STREAMS):
        layer = take(f"the {label} stream's batch normalisation")
        bn = _bn(layer, c)
        if bn is None:
            raise refuse(layer, f"the {label} stream's batch normalisation, gamma, beta, "
                                f"moving_mean and moving_variance of shape ({c},)")
        for k, v in bn.items():
            out.state[f"streams.{i}.2.{k}"] = v
        out.state[f"streams.{i}.2.num_batches_tracked"] = np.zeros((), dtype=np.int64)
        out.layers[layer.name] = f"streams.{i}.2 ({label} batch normalisation)"
    head_convs: list[tuple[str, tuple[np.ndarray, np.ndarray]]] = []
    while pos < len(layers):
        layer = layers[pos]
        conv = _conv(layer, 14, 8)
        if conv is None:
            break
        pos += 1
        head_convs.append((layer.name, conv))
    if not head_convs:
        layer = take("a head convolution")
        raise refuse(layer, "a head convolution, kernel (5, 5, 14, 8) and bias (8,)")
    if len(head_convs) > 2:
        raise refuse(layers[pos - 1], "at most two head convolutions (spotting, recognition)")
    dense: list[tuple[str, str, tuple[np.ndarray, np.ndarray]]] = []
    for _ in head_convs:
        layer = take("a dense layer 'spot' (392, 1) or 'recog' (392, classes)")
        d = _dense(layer)
        if d is None:
            raise refuse(layer, "a dense layer with kernel (392, outputs) and bias (outputs,) "
                                "on the 7 x 7 x 8 head output")
        dense.append((layer.name, _head_of_dense(layer.name, d[0].shape[0]), d))
    if pos < len(layers):
        raise refuse(layers[pos], "nothing after MEAN's dense layers")
    heads = [h for _, h, _ in dense]
    if len(set(heads)) != len(heads):
        raise StoreError(f"{where}: two dense layers of the same head ({heads}).")
    graph = config_layers(config)
    if graph:
        _check_graph(graph, stream_names, where)
    conv_names = [n for n, _ in head_convs]
    for j, (dname, head, (wt, bias)) in enumerate(dense):
        traced = _trace_head_conv(graph, dname, conv_names) if graph else None
        cname, conv = head_convs[conv_names.index(traced) if traced else j]
        prefix = "spot_head" if head == "spot" else "recog_head"
        out.state[f"{prefix}.0.weight"], out.state[f"{prefix}.0.bias"] = conv
        out.state[f"{prefix}.5.weight"], out.state[f"{prefix}.5.bias"] = wt, bias
        out.layers[cname] = f"{prefix}.0 ({head} head convolution)"
        out.layers[dname] = f"{prefix}.5 ({head} dense, {wt.shape[0]} output(s))"
        if head == "spot" and wt.shape[0] != 1:
            raise StoreError(f"{where}: the spotting dense layer {dname!r} has "
                             f"{wt.shape[0]} outputs; MEAN's has one.")
        if head == "recog":
            out.n_classes = int(wt.shape[0])
    out.kind = "spot_recog" if len(dense) == 2 else dense[0][1]
    return out


def keras_state_dict(net: MeanKeras, *, n_classes: int | None = None) -> dict[str, Any]:
    """Torch tensors for :meth:`MEAN.load_state_dict` (a missing head left out).

    ``n_classes`` must match the recognition head's outputs when the file
    has one.
    """
    if n_classes is not None and net.has_recog and int(n_classes) != net.n_classes:
        raise ParameterError(
            f"The network's recognition head has {net.n_classes} outputs, but "
            f"{n_classes} classes were given.")
    return {k: torch.from_numpy(np.array(v)) for k, v in net.state.items()}
