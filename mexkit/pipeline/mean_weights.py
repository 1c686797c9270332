"""The authors' published MEAN networks (Keras HDF5) in mexkit: predict, fold mapping, convert.

A weights argument is one ``.hdf5`` file, or a folder of LOSO fold files
``s1.hdf5``, ``s2.hdf5``, ... (``MEAN_Weights/<dataset>/<kind>``; a
``MEAN_Weights/<dataset>`` folder picks its ``spot_recog``, ``recog`` or
``spot`` subfolder by what is needed).

The authors number the folds by subject: ``sN`` is the network whose test
subject is the N-th, counting, in natural order of the subject names, only
the subjects that have at least one expression sample the authors use
(``load_label.py`` keeps a video only when one of its samples has an emotion
of their list; ``train_evaluate.py`` saves fold N as ``sN``, N from 1).
:func:`authors_folds` rebuilds that numbering from a store.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023); the authors' public
   code and ``MEAN_Weights``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import LabelError, ModelInputError, ParameterError, StoreError
from ..io.checkpoints import save_checkpoint
from ..io.keras_h5 import read_keras_weights
from ..io.predictions import write_predictions
from ..io.store import open_store
from ..labels import get_scheme, normalize_emotion
from ..models.mean.keras import (
    dataset_from_path,
    fold_index,
    keras_state_dict,
    mean_from_keras_layers,
)
from ..models.mean.network import MEAN

__all__ = ["load_keras_mean", "weight_files", "authors_folds", "natural_key",
           "classes_for", "predict_with_weights", "convert_weights", "true_label"]

logger = logging.getLogger("mexkit")

_KIND_ORDER = {"recognition": ("recog", "spot_recog"), "spotting": ("spot_recog", "spot"),
               "both": ("spot_recog",)}


def natural_key(name: str) -> list[Any]:
    """Sort key of natural order (``s2`` before ``s10``), as ``natsort`` orders folders."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower())
            for t in re.split(r"(\d+)", str(name)) if t]


def load_keras_mean(path: str | os.PathLike) -> tuple[Any, Any]:
    """``(MEAN in eval mode, MeanKeras)`` of one Keras HDF5 file (either layout, any kind)."""

    kw = read_keras_weights(path)
    info = mean_from_keras_layers(kw.layers, config=kw.model_config, where=str(path))
    net = MEAN(max(info.n_classes, 1))
    missing, unexpected = net.load_state_dict(keras_state_dict(info), strict=False)
    if unexpected:
        raise StoreError(f"{path}: unexpected MEAN weights {unexpected}.")
    net.eval()
    return net, info


def weight_files(path: str | os.PathLike, *, need: str = "recognition"
                 ) -> tuple[dict[int, Path], Path]:
    """``({N: file}, folder)`` of a folder of fold files, or ``({0: file}, parent)`` for a file.

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
                return weight_files(p / kind, need=need)
        raise ParameterError(
            f"The weights folder {str(p)!r} holds no fold file sN.hdf5 (nor a "
            f"{'/'.join(_KIND_ORDER[need])} folder of them).")
    return dict(sorted(files.items())), p  # type: ignore[arg-type]


def classes_for(weights: str | os.PathLike, n_classes: int,
                classes: Sequence[str] | None) -> list[str]:
    """The recognition head's class names: ``classes`` if given, else from the dataset folder."""

    if classes:
        names = [c.strip() for c in classes if c.strip()]
        if n_classes and len(names) != n_classes:
            raise ParameterError(
                f"--classes names {len(names)} classes, but the network in {weights} has "
                f"{n_classes} outputs.")
        return names
    ds = dataset_from_path(Path(weights).resolve())
    if ds is None:
        if not n_classes:
            return []
        raise ParameterError(
            f"No dataset folder (CASME2, CASME_sq, SAMMLV, SMIC_HS, SMIC_VIS, SMIC_NIR) in "
            f"the path {str(weights)!r} names the classes of its {n_classes} outputs; give "
            "them with --classes a,b,c in the network's output order.")
    if n_classes and len(ds.classes) != n_classes:
        raise ParameterError(
            f"{weights}: the network has {n_classes} outputs, but {ds.name}'s authors' "
            f"classes are {', '.join(ds.classes)}; give --classes.")
    return list(ds.classes)


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


def _read_subject_map(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    p = Path(text)
    items = (p.read_text().replace("\n", ",").split(",") if p.is_file() else text.split(","))
    for item in items:
        item = item.strip()
        if not item or item.lower().startswith("subject"):
            continue
        subject, sep, fold = item.replace(";", "=").replace(":", "=").partition("=")
        m = re.fullmatch(r"s?(\d+)", fold.strip(), flags=re.IGNORECASE)
        if not sep or not m:
            raise ParameterError(
                f"Invalid --subject-map entry {item!r}: expected SUBJECT=sN (e.g. 01=s1).")
        out[subject.strip()] = int(m.group(1))
    return out


def _mean_input(store: Any, sample: Any) -> np.ndarray:
    if "mean_regions" not in sample:
        raise ModelInputError(
            f"{store.path}: sample {sample.sample_id!r} has no 'mean_regions'; make the store "
            "with `mexkit flow --pairs onset-apex --features mean` (or --pairs gap).")
    x = sample.read("mean_regions").astype(np.float32)
    return x.reshape((-1,) + x.shape[-3:])


def _run(net: Any, x: np.ndarray, info: Any, device: str) -> tuple[np.ndarray | None,
                                                                    np.ndarray | None]:

    net = net.to(device)
    with torch.no_grad():
        t = torch.from_numpy(x).to(device)
        z = net.shared(t)
        spot = net.spot_head(z).squeeze(1).cpu().numpy() if info.has_spot else None
        prob = (torch.softmax(net.recog_head(z), dim=1).cpu().numpy()
                if info.has_recog else None)
    return spot, prob


def predict_with_weights(store_path: str | os.PathLike, weights: str | os.PathLike,
                         output: str | os.PathLike, *, per_subject: bool = False,
                         classes: Sequence[str] | None = None, scheme: str | None = None,
                         subject_map: str | None = None, device: str = "cpu") -> Path:
    """Score every sample of a MEAN input store with the authors' network(s).

    Writes the predictions CSV (``sample_id, subject, dataset, fold, true,
    pred``, ``score_<class>`` = the softmax outputs, and ``spot_score`` for a
    network with a spotting head) and returns its path. The store's first
    pair of each sample is scored (an onset-apex store has one).

    With ``per_subject``, ``weights`` is a folder of fold files and each
    sample is scored by its own subject's network (:func:`authors_folds`, or
    ``subject_map`` ``"SUBJECT=sN,..."`` / a file of such lines); ``fold`` is
    then ``sN``.
    """

    files, folder = weight_files(weights)
    if not per_subject and len(files) > 1:
        raise ParameterError(
            f"--weights {weights} is a folder of {len(files)} fold networks: give one file, "
            "or --per-subject to score each sample with its own subject's network.")
    if per_subject and not Path(weights).is_dir():
        raise ParameterError("--per-subject needs --weights to name a folder of sN.hdf5 files.")
    first_net, first_info = load_keras_mean(next(iter(files.values())))
    names = classes_for(folder if per_subject else next(iter(files.values())),
                        first_info.n_classes, classes)
    with open_store(store_path) as store:
        samples = [store[s] for s in store.sample_ids]
        attrs = [s.attrs for s in samples]
        kinds = {a.get("mean_input") for a in attrs}
        if kinds != {"authors"}:
            logger.warning(
                "predict: %s holds MEAN input not built as the authors build it (mean_input "
                "%s); the authors' networks saw `mexkit flow --features mean --mean-input "
                "authors` input (docs/fidelity.md)", store_path,
                ", ".join(sorted(str(k) for k in kinds)))
        inputs = [_mean_input(store, s)[0] for s in samples]
        ids = list(store.sample_ids)
    truths = [true_label(a, names, scheme) if names else None for a in attrs]
    subjects = [str(a.get("subject", "")) for a in attrs]
    if per_subject:
        if subject_map:
            fold_of = _read_subject_map(subject_map)
        else:
            eligible = [t is not None or str(a.get("emotion", "")).lower().startswith("other")
                        for t, a in zip(truths, attrs, strict=True)]
            fold_of = authors_folds(subjects, eligible)
            top = max(files)
            if fold_of and len(fold_of) != top:
                raise ParameterError(
                    f"{store_path} has {len(fold_of)} subjects with samples of the classes "
                    f"{', '.join(names)}, but {folder} numbers its folds up to s{top}: the "
                    "authors number the subjects of the whole dataset. Give --subject-map "
                    "SUBJECT=sN,... (docs/reproducing.md lists the authors' numbering).")
        logger.info("predict: subject -> fold file: %s",
                    ", ".join(f"{s}=s{n}" for s, n in sorted(fold_of.items(),
                                                            key=lambda kv: kv[1])))
    rows: list[dict[str, Any]] = []
    nets: dict[int, tuple[Any, Any]] = {next(iter(files)): (first_net, first_info)}
    by_fold: dict[int, list[int]] = {}
    for i, subject in enumerate(subjects):
        if per_subject:
            if subject not in fold_of:
                logger.info("predict: sample %s (subject %s) has no fold network; skipped",
                            ids[i], subject)
                continue
            n = fold_of[subject]
            if n not in files:
                logger.warning("predict: no fold file s%d.hdf5 in %s for subject %s; sample %s "
                               "skipped", n, folder, subject, ids[i])
                continue
        else:
            n = next(iter(files))
        by_fold.setdefault(n, []).append(i)
    results: dict[int, dict[str, Any]] = {}
    for n, members in by_fold.items():
        if n not in nets:
            nets[n] = load_keras_mean(files[n])
        net, info = nets[n]
        if info.n_classes != first_info.n_classes or info.kind != first_info.kind:
            raise StoreError(f"{files[n]}: a {info.kind} network with {info.n_classes} "
                             f"classes among {first_info.kind} networks with "
                             f"{first_info.n_classes}.")
        spot, prob = _run(net, np.stack([inputs[i] for i in members]), info, device)
        for j, i in enumerate(members):
            r: dict[str, Any] = {"sample_id": ids[i], "subject": subjects[i],
                                 "dataset": attrs[i].get("dataset", ""),
                                 "fold": f"s{n}" if per_subject else
                                 (files[n].stem if n else "predict"),
                                 "true": truths[i] or ""}
            if prob is not None:
                r["pred"] = names[int(np.argmax(prob[j]))]
                for c, v in zip(names, prob[j], strict=True):
                    r[f"score_{c}"] = float(v)
            else:
                r["pred"] = ""
            if spot is not None:
                r["spot_score"] = float(spot[j])
            results[i] = r
    rows = [results[i] for i in sorted(results)]
    if not rows:
        raise ParameterError(f"{store_path}: no sample was scored (no subject has a fold "
                             f"network in {folder}).")
    extra = ("spot_score",) if first_info.has_spot else ()
    write_predictions(Path(output), rows, names if first_info.has_recog else [], extra=extra)
    return Path(output)


def convert_weights(source: str | os.PathLike, output: str | os.PathLike, *,
                    classes: Sequence[str] | None = None) -> Path:
    """Write an authors' Keras network as mexkit's safetensors weights (``mexkit convert``).

    The file holds MEAN's ``state_dict`` (``model.<key>``, the checkpoint
    layout of :mod:`mexkit.io.checkpoints`) and, as metadata, where it came
    from, its kind and its classes; ``mexkit train --model mean --weights``
    starts from it with the shared layers frozen.
    """


    net, info = load_keras_mean(source)
    names = classes_for(source, info.n_classes, classes) if info.has_recog else []
    save_checkpoint(Path(output), net, None, {
        "model": "mean", "model_class": "MEAN", "source": str(Path(source).resolve()),
        "source_format": "keras-hdf5", "kind": info.kind, "classes": names,
        "keras_layers": json.dumps(info.layers)})
    return Path(output)
