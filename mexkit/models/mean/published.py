"""MEAN's published networks (``MEAN_Weights``): the hooks of :class:`PublishedNetworks`.

The authors publish one Keras HDF5 network per LOSO fold and dataset
(``MEAN_Weights/<dataset>/<kind>/sN.hdf5``, kinds ``spot``, ``recog`` and
``spot_recog``). These hooks let the generic pipeline
(:mod:`mexkit.pipeline.published`: ``mexkit predict --weights``, ``mexkit
spot --weights``, ``mexkit convert``) read them into mexkit's
:class:`~mexkit.models.mean.network.MEAN` (:mod:`mexkit.models.mean.keras`,
with h5py only), number the folds as the authors do, label samples as they
do, and build from a video the input they were trained on: their crop
(dlib's face box on the first frame, 128 x 128, JPEG files read back as grey;
:mod:`mexkit.face.boxcrop`) and their features (OpenCV DualTVL1 between
frames ``j`` and ``j + k``, :mod:`mexkit.models.mean.authors_input`).

The authors number the folds by subject: ``sN`` is the network whose test
subject is the N-th, counting, in natural order of the subject names, only
the subjects that have at least one expression sample the authors use
(``load_label.py`` keeps a video only when one of its samples has an emotion
of their list; ``train_evaluate.py`` saves fold N as ``sN``, N from 1).

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023); the authors' public
   code (``face_crop.py``, ``feature_extraction.py``, ``load_label.py``,
   ``prepare_training.py``, ``train_evaluate.py``) and ``MEAN_Weights``.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ...errors import LabelError, ParameterError, StoreError
from ...io.checkpoints import save_checkpoint
from ...io.keras_h5 import read_keras_weights
from ...labels import get_scheme, normalize_emotion
from ..registry import PublishedDataset, PublishedNet, PublishedNetworks
from .keras import dataset_from_path, fold_index, keras_state_dict
from .keras import mean_from_keras_layers as _from_layers
from .network import MEAN

__all__ = ["PUBLISHED", "natural_key", "weight_files", "load", "authors_folds",
           "true_label", "convert", "gap_for_fps", "AUTHORS_CROP"]

_KIND_ORDER = {"recognition": ("recog", "spot_recog"), "spotting": ("spot_recog", "spot"),
               "both": ("spot_recog",)}

#: ``face_crop.py``: dlib's detector (upsampling 1) on the first frame, that box for every
#: frame, 128 x 128, written as JPEG (OpenCV's quality 95) and read back as grey.
AUTHORS_CROP = {"box": "detector", "size": 128, "grey": True, "jpeg": 95, "upsample": 1,
                "detector": "dlib"}


def natural_key(name: str) -> list[Any]:
    """Sort key of natural order (``s2`` before ``s10``), as ``natsort`` orders folders."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower())
            for t in re.split(r"(\d+)", str(name)) if t]


def _outputs(has_spot: bool, has_recog: bool) -> Any:
    def outputs(net: MEAN, x: torch.Tensor) -> tuple[Any, Any]:
        with torch.no_grad():
            z = net.shared(x)
            spot = net.spot_head(z).squeeze(1) if has_spot else None
            prob = torch.softmax(net.recog_head(z), dim=1) if has_recog else None
        return spot, prob
    return outputs


def load(path: str | os.PathLike) -> PublishedNet:
    """One Keras HDF5 file (either layout, any kind) as a :class:`PublishedNet` of MEAN."""
    kw = read_keras_weights(path)
    info = _from_layers(kw.layers, config=kw.model_config, where=str(path))
    net = MEAN(max(info.n_classes, 1))
    _, unexpected = net.load_state_dict(keras_state_dict(info), strict=False)
    if unexpected:
        raise StoreError(f"{path}: unexpected MEAN weights {unexpected}.")
    net.eval()
    return PublishedNet(module=net, kind=info.kind, n_classes=info.n_classes,
                        has_spot=info.has_spot, has_recog=info.has_recog,
                        outputs=_outputs(info.has_spot, info.has_recog), source=str(path),
                        meta={"keras_layers": info.layers})


def weight_files(path: str | os.PathLike, need: str = "recognition"
                 ) -> tuple[dict[int, Path], Path]:
    """``({N: file}, folder)`` of a folder of fold files, or ``({N or 0: file}, parent)``.

    ``need`` (recognition, spotting, both) picks the kind subfolder of a
    ``MEAN_Weights/<dataset>`` folder.
    """
    p = Path(path)
    if p.is_file():
        return {fold_index(p) or 0: p}, p.parent
    if not p.is_dir():
        raise ParameterError(f"The weights {str(p)!r} do not exist (--weights).")
    files = {fold_index(f): f for f in p.iterdir() if fold_index(f) is not None}
    if not files:
        for kind in _KIND_ORDER[need]:
            if (p / kind).is_dir():
                return weight_files(p / kind, need)
        raise ParameterError(
            f"The weights folder {str(p)!r} holds no fold file sN.hdf5 (nor a "
            f"{'/'.join(_KIND_ORDER[need])} folder of them).")
    return dict(sorted(files.items())), p  # type: ignore[arg-type]


def dataset(path: str | os.PathLike) -> PublishedDataset | None:
    """The authors' dataset a folder of ``path`` names (``.../CASME2/recog``), or None."""
    d = dataset_from_path(Path(path).resolve())
    if d is None:
        return None
    return PublishedDataset(d.name, d.classes, d.fps, d.kprime, d.long)


def true_label(attrs: Mapping[str, Any], classes: Sequence[str],
               scheme: str | None = None) -> str | None:
    """A sample's class among ``classes`` as the authors label it, or None.

    CASME II's five classes are its own emotions; negative, positive and
    surprise follow the MEGC grouping (anger, contempt, disgust, fear,
    sadness -> negative; happiness -> positive), as the authors' code maps
    SAMM-LV. ``scheme`` names another mexkit label scheme.
    """
    if scheme is None:
        if set(classes) == {"negative", "positive", "surprise"}:
            scheme = "megc3"
        elif set(classes) == {"disgust", "happiness", "others", "surprise", "repression"}:
            scheme = "casme2-5"
    if scheme is not None:
        try:
            label = get_scheme(scheme).label(
                emotion=attrs.get("emotion"), aus=attrs.get("aus"),
                dataset=attrs.get("dataset"), objective_class=attrs.get("objective_class"))
        except LabelError:
            return None
        return label if label in classes else None
    for value in (attrs.get("label"), attrs.get("emotion")):
        if value not in (None, ""):
            v = normalize_emotion(str(value))
            if v in classes:
                return v
    return None


def authors_folds(subjects: Sequence[str], eligible: Sequence[bool]) -> dict[str, int]:
    """The authors' fold number of each subject: its 1-based rank, in natural order,
    among the subjects with at least one eligible sample."""
    used = sorted({s for s, e in zip(subjects, eligible, strict=True) if e}, key=natural_key)
    return {s: i + 1 for i, s in enumerate(used)}


def gap_for_fps(fps: float) -> int:
    """k = 0.1 x fps rounded half up, at least 1 (25 fps -> 3, 200 fps -> 20, as the authors)."""
    return max(1, int(math.floor(float(fps) * 0.1 + 0.5)))


def convert(source: str | os.PathLike, output: str | os.PathLike,
            classes: Sequence[str] | None = None) -> Path:
    """Write an authors' Keras network as mexkit's safetensors weights.

    The file holds MEAN's ``state_dict`` (``model.<key>``, the checkpoint
    layout of :mod:`mexkit.io.checkpoints`) and, as metadata, where it came
    from, its kind (a head the Keras file lacks is in the state but is not
    loaded: :func:`mexkit.models.mean.training.load_mean_weights` reads the
    kind) and its classes (``classes``, already checked against the
    network's outputs); ``mexkit train --model mean --weights`` starts from
    it with the shared layers frozen.
    """
    net = load(source)
    save_checkpoint(Path(output), net.module, None, {
        "model": "mean", "model_class": "MEAN", "source": str(Path(source).resolve()),
        "source_format": "keras-hdf5", "kind": net.kind, "classes": list(classes or []),
        "keras_layers": json.dumps(net.meta["keras_layers"])})
    return Path(output)


def check_input(attrs: Sequence[Mapping[str, Any]]) -> str | None:
    """A warning when a store's MEAN input was not built as the authors build it."""
    kinds = {a.get("mean_input") for a in attrs}
    if kinds == {"authors"}:
        return None
    return ("the store holds MEAN input not built as the authors build it (mean_input "
            f"{', '.join(sorted(str(k) for k in kinds))}); the authors' networks saw "
            "`mexkit flow --features mean --mean-input authors` input (docs/fidelity.md)")


#: The hooks of MEAN's registry entry (``spec.py``).
PUBLISHED = PublishedNetworks(
    title="the authors' Keras HDF5 networks (MEAN_Weights/<dataset>/<kind>/sN.hdf5)",
    files=weight_files, load=load, dataset=dataset, true_label=true_label,
    folds=authors_folds, input="mean_regions",
    produced_by="mexkit flow --pairs gap --features mean",
    crop=AUTHORS_CROP,
    flow={"method": "tvl1-opencv", "pairs": "gap", "features": ("mean",),
          "mean_input": "authors"},
    gap=gap_for_fps, convert=convert, check_input=check_input)
