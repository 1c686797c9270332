"""MEAN's published Keras networks: reading (h5py only), mapping, forward pass, refusals.

Fixture files are written with h5py in both Keras layouts from known random
weights (tests/unit/_keras_mean.py); the expected outputs come from a numpy
implementation of the Keras layers, independent of mexkit's network.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from _keras_mean import numpy_mean, random_weights, write_keras_file

from mexkit.errors import StoreError
from mexkit.io.keras_h5 import read_keras_weights
from mexkit.models.mean.keras import (
    AUTHORS_DATASETS,
    dataset_from_path,
    fold_index,
    keras_dense_to_torch,
)
from mexkit.models.mean.published import authors_folds, natural_key
from mexkit.models.mean.published import load as load_keras_mean


def _mexkit_outputs(path, x):
    """What the published-networks hook gives the pipeline (predict, spot)."""
    info = load_keras_mean(path)
    spot, prob = info.outputs(info.module, torch.from_numpy(x))
    out = {}
    if spot is not None:
        out["spot"] = spot.numpy()
    if prob is not None:
        out["recog"] = prob.numpy()
    return out, info


@pytest.mark.parametrize("layout", ["full-model", "weights-only"])
@pytest.mark.parametrize("kind,n_classes", [("spot", 1), ("recog", 3), ("recog", 5),
                                            ("spot_recog", 3)])
def test_forward_pass_equals_keras_layers_in_numpy(tmp_path, rng, layout, kind, n_classes):
    w = random_weights(rng, kind, n_classes)
    path = tmp_path / "s1.hdf5"
    write_keras_file(path, w, layout=layout)
    x = rng.random((4, 3, 42, 42)).astype(np.float32)
    ours, info = _mexkit_outputs(path, x)
    expected = numpy_mean(w, x)
    assert info.kind == kind and read_keras_weights(path).layout == layout
    assert set(ours) == set(expected)
    for head in expected:
        np.testing.assert_allclose(ours[head], expected[head], atol=2e-5, rtol=1e-5)
    if "recog" in ours:
        assert info.n_classes == n_classes
        np.testing.assert_array_equal(ours["recog"].argmax(1), expected["recog"].argmax(1))


def test_flatten_order_is_keras_channels_last():
    # one non-zero kernel entry at Keras' flatten index of (h, w, c) = (2, 5, 6)
    h, w, c = 2, 5, 6
    kernel = np.zeros((392, 1), dtype=np.float32)
    kernel[(h * 7 + w) * 8 + c, 0] = 1.0
    t = keras_dense_to_torch(kernel)
    assert t.shape == (1, 392)
    assert np.flatnonzero(t[0]).tolist() == [c * 49 + h * 7 + w]
    # the same through a whole network: a head output that is 1 at one position only
    feat = torch.zeros(1, 8, 7, 7)
    feat[0, c, h, w] = 3.0
    assert float(feat.flatten(1) @ torch.from_numpy(t).T) == 3.0


def test_spot_head_convolution_first_in_a_weights_only_file(tmp_path, rng):
    w = random_weights(rng, "spot_recog", 3)
    path = tmp_path / "s2.hdf5"
    write_keras_file(path, w, layout="weights-only", head_conv_order=["spot", "recog"])
    x = rng.random((3, 3, 42, 42)).astype(np.float32)
    ours, info = _mexkit_outputs(path, x)
    expected = numpy_mean(w, x)
    np.testing.assert_allclose(ours["spot"], expected["spot"], atol=2e-5)
    np.testing.assert_allclose(ours["recog"], expected["recog"], atol=2e-5)
    # the head convolutions swapped (recognition's written first): the outputs change
    write_keras_file(tmp_path / "swapped.hdf5", w, layout="weights-only",
                     head_conv_order=["recog", "spot"])
    swapped, _ = _mexkit_outputs(tmp_path / "swapped.hdf5", x)
    assert np.abs(swapped["spot"] - expected["spot"]).max() > 1e-3


def test_full_model_graph_decides_which_convolution_feeds_which_head(tmp_path, rng):
    w = random_weights(rng, "spot_recog", 3)
    path = tmp_path / "s3.hdf5"
    # convolutions written recognition first, but the model config wires them correctly
    write_keras_file(path, w, layout="full-model", head_conv_order=["recog", "spot"])
    x = rng.random((2, 3, 42, 42)).astype(np.float32)
    ours, _ = _mexkit_outputs(path, x)
    expected = numpy_mean(w, x)
    np.testing.assert_allclose(ours["spot"], expected["spot"], atol=2e-5)
    np.testing.assert_allclose(ours["recog"], expected["recog"], atol=2e-5)


def test_truncated_file_is_refused_in_one_line(tmp_path, rng):
    path = tmp_path / "s1.hdf5"
    write_keras_file(path, random_weights(rng, "spot_recog"), layout="weights-only")
    data = path.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError) as err:
        load_keras_mean(cut)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)


def test_foreign_hdf5_is_refused(tmp_path):
    path = tmp_path / "store.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("samples/x", data=np.zeros(3))
    with pytest.raises(StoreError, match="not a Keras weights file"):
        load_keras_mean(path)


def test_first_layer_that_does_not_fit_is_named(tmp_path, rng):
    w = random_weights(rng, "recog", 3)
    w["streams"][1] = (np.zeros((5, 5, 1, 4), np.float32), np.zeros(4, np.float32))
    path = tmp_path / "s1.hdf5"
    write_keras_file(path, w, layout="weights-only")
    with pytest.raises(StoreError) as err:
        load_keras_mean(path)
    msg = str(err.value)
    assert "'conv2d_11'" in msg and "v stream" in msg and "(5, 5, 1, 3)" in msg
    assert "\n" not in msg


def test_a_file_that_ends_early_is_refused(tmp_path, rng):
    w = random_weights(rng, "spot", 1)
    path = tmp_path / "s1.hdf5"
    write_keras_file(path, w, layout="weights-only")
    with h5py.File(path, "a") as f:   # drop the dense layer from the list of layers
        names = [n for n in f.attrs["layer_names"] if n != b"spot"]
        f.attrs["layer_names"] = np.array(names)
    with pytest.raises(StoreError, match="ends after 7 layer"):
        load_keras_mean(path)


def test_class_names_and_folds_from_the_path():
    assert dataset_from_path("/x/MEAN_Weights/CASME2/recog/s3.hdf5").classes == (
        "disgust", "happiness", "others", "surprise", "repression")
    assert dataset_from_path("MEAN_Weights/smic_hs/spot").classes == (
        "negative", "positive", "surprise")
    assert dataset_from_path("/somewhere/else.hdf5") is None
    assert fold_index("s12.hdf5") == 12 and fold_index("weights.hdf5") is None
    # the authors' k: 0.1 x fps, 3 for 25 fps
    assert {d.name: d.k for d in AUTHORS_DATASETS.values()} == {
        "CASME2": 20, "SMIC_HS": 10, "SMIC_VIS": 3, "SMIC_NIR": 3, "CASME_sq": 3,
        "SAMMLV": 20}


def test_authors_fold_numbering_is_natural_order_of_used_subjects():
    subjects = ["sub10", "sub2", "sub1", "sub3", "sub2"]
    used = [True, True, True, False, True]     # sub3 has no sample the authors use
    assert authors_folds(subjects, used) == {"sub1": 1, "sub2": 2, "sub10": 3}
    assert sorted(["s10", "s9", "s1"], key=natural_key) == ["s1", "s9", "s10"]


@pytest.fixture
def keras3():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = pytest.importorskip("keras", reason="Keras 3 not installed (pip install keras)")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs another backend than torch here")
    return keras


def _keras_model(keras, kind, n_classes):
    from keras import layers

    ins, streams = [], []
    for f in (3, 3, 8):
        i = layers.Input(shape=(42, 42, 1))
        ins.append(i)
        streams.append(layers.Conv2D(f, (5, 5), padding="same", activation="relu")(i))
    streams = [layers.BatchNormalization()(s) for s in streams]
    streams = [layers.MaxPooling2D((3, 3), strides=(3, 3), padding="same")(s) for s in streams]
    merged = layers.Concatenate()([layers.Dropout(0.3)(s) for s in streams])
    names = {"spot": ["spot"], "recog": ["recog"], "spot_recog": ["spot", "recog"]}[kind]
    convs = [layers.Conv2D(8, (5, 5), padding="same", activation="relu")(merged) for _ in names]
    outs = []
    for name, conv in zip(names, convs, strict=True):
        z = layers.MaxPooling2D((2, 2), (2, 2), "same")(conv)
        z = layers.Dropout(0.2)(layers.Flatten()(z))
        outs.append(layers.Dense(1 if name == "spot" else n_classes,
                                 activation="linear" if name == "spot" else "softmax",
                                 name=name)(z))
    return keras.Model(ins, outs), names


@pytest.mark.parametrize("kind", ["spot", "recog", "spot_recog"])
def test_forward_pass_equals_keras3(tmp_path, rng, keras3, kind):
    w = random_weights(rng, kind, 3)
    path = tmp_path / "s1.hdf5"
    write_keras_file(path, w, layout="weights-only")
    model, names = _keras_model(keras3, kind, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_weights(str(path))
        x = rng.random((4, 3, 42, 42)).astype(np.float32)
        out = model.predict([x[:, i, :, :, None] for i in range(3)], verbose=0)
    out = dict(zip(names, out if isinstance(out, list) else [out], strict=True))
    ours, _ = _mexkit_outputs(path, x)
    if "spot" in out:
        np.testing.assert_allclose(ours["spot"], np.asarray(out["spot"])[:, 0], atol=1e-5)
    if "recog" in out:
        np.testing.assert_allclose(ours["recog"], np.asarray(out["recog"]), atol=1e-5)


def _authors_files():
    repo = os.environ.get("MEXKIT_MEAN_REPO")
    if not repo:
        pytest.skip("MEXKIT_MEAN_REPO is not set (the authors' repository with MEAN_Weights)")
    files = sorted(Path(repo, "MEAN_Weights").glob("*/*/s1.hdf5"))
    if not files:
        pytest.skip(f"{repo} has no MEAN_Weights/*/*/s1.hdf5")
    return files


def test_the_authors_files_load_and_match_keras3(rng, keras3):
    files = _authors_files()
    x = rng.random((6, 3, 42, 42)).astype(np.float32)
    for path in files:
        ours, info = _mexkit_outputs(path, x)
        model, names = _keras_model(keras3, info.kind, max(info.n_classes, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
            out = model.predict([x[:, i, :, :, None] for i in range(3)], verbose=0)
        out = dict(zip(names, out if isinstance(out, list) else [out], strict=True))
        for head in names:
            ref = np.asarray(out[head])
            ref = ref[:, 0] if head == "spot" else ref
            np.testing.assert_allclose(ours[head], ref, atol=1e-5, err_msg=str(path))
