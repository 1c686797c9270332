"""Test helpers: Keras-layout MEAN weight files written with h5py, and MEAN's forward pass
in plain numpy following Keras' layer definitions (independent of mexkit's code).

Layouts as Keras 2 writes them: a full model (root ``model_config``, weights under
``/model_weights``) and weights only (``layer_names`` at the root).
"""
from __future__ import annotations

import json

import h5py
import numpy as np

STREAMS = (3, 3, 8)


def random_weights(rng: np.random.Generator, kind: str, n_classes: int = 3) -> dict:
    """Known random weights of a MEAN network, in Keras shapes."""
    w = {"streams": [], "bn": []}
    for f in STREAMS:
        w["streams"].append((rng.normal(0, 0.3, (5, 5, 1, f)).astype(np.float32),
                             rng.normal(0, 0.1, f).astype(np.float32)))
        w["bn"].append((rng.uniform(0.5, 1.5, f).astype(np.float32),
                        rng.normal(0, 0.2, f).astype(np.float32),
                        rng.normal(0, 0.2, f).astype(np.float32),
                        rng.uniform(0.2, 2.0, f).astype(np.float32)))
    heads = {"spot": ["spot"], "recog": ["recog"], "spot_recog": ["spot", "recog"]}[kind]
    for h in heads:
        out = 1 if h == "spot" else n_classes
        w[h] = {"conv": (rng.normal(0, 0.1, (5, 5, 14, 8)).astype(np.float32),
                         rng.normal(0, 0.1, 8).astype(np.float32)),
                "dense": (rng.normal(0, 0.2, (392, out)).astype(np.float32),
                          rng.normal(0, 0.1, out).astype(np.float32))}
    w["heads"] = heads
    return w


def _config(names: dict, heads: list[str]) -> dict:
    layers = []
    for i in range(3):
        layers.append({"class_name": "InputLayer", "name": names["in"][i], "inbound_nodes": [],
                       "config": {"name": names["in"][i]}})
    chain = []
    for i in range(3):
        prev = names["in"][i]
        for key, cls in (("conv", "Conv2D"), ("bn", "BatchNormalization"),
                         ("pool", "MaxPooling2D"), ("drop", "Dropout")):
            layers.append({"class_name": cls, "name": names[key][i],
                           "inbound_nodes": [[[prev, 0, 0, {}]]],
                           "config": {"name": names[key][i]}})
            prev = names[key][i]
        chain.append(prev)
    layers.append({"class_name": "Concatenate", "name": "concatenate_1",
                   "inbound_nodes": [[[c, 0, 0, {}] for c in chain]], "config": {}})
    for h in heads:
        prev = "concatenate_1"
        for key, cls in (("hconv", "Conv2D"), ("hpool", "MaxPooling2D"), ("flat", "Flatten"),
                         ("hdrop", "Dropout"), ("dense", "Dense")):
            name = names[key][h]
            layers.append({"class_name": cls, "name": name, "inbound_nodes": [[[prev, 0, 0, {}]]],
                           "config": {"name": name}})
            prev = name
    return {"class_name": "Functional", "config": {"name": "model", "layers": layers}}


def write_keras_file(path, w: dict, *, layout: str = "weights-only",
                     head_conv_order: list[str] | None = None) -> None:
    """Write ``w`` (:func:`random_weights`) as Keras 2 does, in ``layout``.

    ``head_conv_order`` lists the heads in the order their convolutions are
    written (the dense layers follow ``w["heads"]``).
    """
    heads = w["heads"]
    head_conv_order = head_conv_order or heads
    names = {"in": ["input_1", "input_2", "input_3"],
             "conv": ["conv2d_10", "conv2d_11", "conv2d_12"],
             "bn": ["batch_normalization_4", "batch_normalization_5", "batch_normalization_6"],
             "pool": ["max_pooling2d_7", "max_pooling2d_8", "max_pooling2d_9"],
             "drop": ["dropout_7", "dropout_8", "dropout_9"],
             "hconv": {h: f"conv2d_{20 + j}" for j, h in enumerate(head_conv_order)},
             "hpool": {h: f"max_pooling2d_{20 + j}" for j, h in enumerate(heads)},
             "flat": {h: f"flatten_{20 + j}" for j, h in enumerate(heads)},
             "hdrop": {h: f"dropout_{20 + j}" for j, h in enumerate(heads)},
             "dense": {h: h for h in heads}}
    order: list[tuple[str, list[tuple[str, np.ndarray]]]] = []
    order += [(n, []) for n in names["in"]]
    for i, n in enumerate(names["conv"]):
        k, b = w["streams"][i]
        order.append((n, [(f"{n}/kernel:0", k), (f"{n}/bias:0", b)]))
    for i, n in enumerate(names["bn"]):
        g, be, m, v = w["bn"][i]
        order.append((n, [(f"{n}/gamma:0", g), (f"{n}/beta:0", be),
                          (f"{n}/moving_mean:0", m), (f"{n}/moving_variance:0", v)]))
    order += [(n, []) for n in names["pool"] + names["drop"] + ["concatenate_1"]]
    for h in head_conv_order:
        n = names["hconv"][h]
        k, b = w[h]["conv"]
        order.append((n, [(f"{n}/kernel:0", k), (f"{n}/bias:0", b)]))
    for key in ("hpool", "flat", "hdrop"):
        order += [(names[key][h], []) for h in heads]
    for h in heads:
        k, b = w[h]["dense"]
        order.append((h, [(f"{h}_3/kernel:0", k), (f"{h}_3/bias:0", b)]))
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.4.0"
        f.attrs["backend"] = b"tensorflow"
        if layout == "full-model":
            f.attrs["model_config"] = json.dumps(_config(names, heads)).encode()
            f.attrs["training_config"] = b"{}"
            root = f.create_group("model_weights")
        else:
            root = f
        root.attrs["layer_names"] = np.array([n.encode() for n, _ in order])
        for n, weights in order:
            g = root.create_group(n)
            if weights:
                g.attrs["weight_names"] = np.array([wn.encode() for wn, _ in weights])
                for wn, value in weights:
                    g.create_dataset(wn, data=value)
            else:
                g.attrs["weight_names"] = np.zeros((0,), dtype=np.float64)


# -- Keras' layers in numpy -----------------------------------------------------------
def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding: total = max((ceil(n / s) - 1) s + k - n, 0)."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv2d_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x (N, H, W, Cin), kernel (kh, kw, Cin, Cout): cross-correlation, stride 1, 'same'."""
    kh, kw = kernel.shape[:2]
    (pt, pb), (pl, pr) = _same_pads(x.shape[1], kh, 1), _same_pads(x.shape[2], kw, 1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[3],))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,cd->nhwd", xp[:, i:i + x.shape[1], j:j + x.shape[2]],
                             kernel[i, j].astype(np.float64))
    return out + bias


def maxpool_same(x: np.ndarray, k: int, s: int) -> np.ndarray:
    (pt, pb), (pl, pr) = _same_pads(x.shape[1], k, s), _same_pads(x.shape[2], k, s)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    oh, ow = -(-x.shape[1] // s), -(-x.shape[2] // s)
    out = np.empty((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = xp[:, i * s:i * s + k, j * s:j * s + k].max(axis=(1, 2))
    return out


def numpy_mean(w: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Keras' inference of MEAN on x (N, 3, 42, 42) (u, v, strain).

    Returns {"spot": (N,), "recog": (N, C)} for the heads of ``w``.
    """
    streams = []
    for i in range(3):
        s = x[:, i, :, :, None]
        k, b = w["streams"][i]
        s = np.maximum(conv2d_same(s, k, b), 0.0)                       # Conv2D + ReLU
        g, be, m, v = w["bn"][i]
        s = g * (s - m) / np.sqrt(v + 1e-3) + be                         # BatchNormalization
        streams.append(maxpool_same(s, 3, 3))                            # 42 -> 14
    merged = np.concatenate(streams, axis=-1)                            # (N, 14, 14, 14)
    out = {}
    for h in w["heads"]:
        k, b = w[h]["conv"]
        z = maxpool_same(np.maximum(conv2d_same(merged, k, b), 0.0), 2, 2)   # (N, 7, 7, 8)
        flat = z.reshape(len(z), -1)                                     # channels-last flatten
        dk, db = w[h]["dense"]
        y = flat @ dk.astype(np.float64) + db
        if h == "recog":
            e = np.exp(y - y.max(axis=1, keepdims=True))
            out[h] = e / e.sum(axis=1, keepdims=True)
        else:
            out[h] = y[:, 0]
    return out
