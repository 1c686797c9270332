"""Pre-train a model's frame backbone on the still frames of a labelled store.

Some papers start a model's per-frame backbone from weights trained on
labelled still images that cannot be downloaded here (AKMNet's ImageNet and
AffectNet stage, [1]_, Sec. IV-B). ``mexkit pretrain`` builds the stand-in
from a labelled store of *other* subjects: the model's
:class:`~mexkit.models.registry.BackbonePretraining` hooks pick each clip's
frames that show its expression (labelled with the clip's class) and those
that show a face at rest (labelled ``neutral``), and train the backbone on
them. The weights are written as safetensors with their provenance in the
file's metadata (:mod:`mexkit.pipeline.weights`):

``mexkit_stage``
    ``"pretrain"``.
``model``, ``classes``, ``settings``, ``history``, ``store``
    The model, the frame classes, the training settings, the loss and
    accuracy of each epoch, and the source store's id and content hash.
``sources``
    A short digest of each pre-training clip's source path and of its
    frames, so that ``mexkit train`` can refuse weights that saw the clips
    it is about to test on (:func:`mexkit.pipeline.weights.check_weights`).
``subjects``
    Each pre-training clip's ``dataset/subject``, so that ``mexkit train``
    under LOSO (CDE, HDE) refuses weights that saw any clip of a subject it
    evaluates.

Running the same command again keeps a finished file with the same
provenance; a file that differs, or any other file, is replaced only with
``overwrite=True``.

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (2021).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .. import __version__
from ..devices import resolve_device
from ..errors import LabelError, ParameterError, StoreError
from ..io.atomic import atomic_path
from ..io.store import open_store
from ..models.inputs import build_input
from ..models.registry import ModelSpec, get_spec, list_models
from .labelled import sample_table
from .reports import EpochBar
from .stages import check_output_path
from .weights import read_weights_metadata, sample_sources, sample_subject

__all__ = ["pretrain_weights", "pretrainable_models", "NEUTRAL"]

logger = logging.getLogger("mexkit")

#: Class of the frames that show a face at rest.
NEUTRAL = "neutral"


def pretrainable_models() -> list[str]:
    """The registered models with a backbone to pre-train (``mexkit pretrain --model``)."""
    return [s.name for s in list_models() if s.pretraining is not None]


def _pretrainable(model: str | None) -> ModelSpec:
    able = pretrainable_models()
    if model is None and len(able) == 1:
        model = able[0]
    spec = get_spec(model) if model is not None else None
    if spec is None or spec.pretraining is None:
        raise ParameterError(
            f"Model {model!r} has no frame backbone to pre-train; models with one: "
            f"{', '.join(able) or 'none'}.")
    return spec


def _kept(output: Path, model: str, settings: Mapping[str, Any],
          store_entry: Mapping[str, Any], overwrite: bool) -> bool:
    """True when ``output`` already holds these weights; raise when it holds others."""
    if not output.exists():
        return False
    try:
        old = read_weights_metadata(output)
    except StoreError:
        old = {}
    same = (old.get("mexkit_stage") == "pretrain" and old.get("model") == model
            and json.loads(old.get("settings", "null")) == settings
            and json.loads(old.get("store", "{}")).get("content_hash")
            == store_entry["content_hash"])
    if same:
        return True
    if not overwrite:
        what = ("weights pre-trained with other settings or data"
                if old.get("mexkit_stage") == "pretrain" else
                "a file that `mexkit pretrain` did not write")
        raise ParameterError(
            f"The output {str(output)!r} exists and is {what}; it is kept. Give "
            "--overwrite to replace it, or another -o.")
    return False


def _still_frames(store: Any, spec: ModelSpec, table: Any, classes: list[str],
                  image_size: int) -> tuple[list[Any], list[int], list[str], list[str],
                                            set[str]]:
    """Each clip's expression and rest frames (resized clip by clip), their classes,
    the clips' source digests, the clips skipped (no apex inside) and the subjects."""
    index = {c: i for i, c in enumerate(classes)}
    input_name = spec.inputs[0].name
    frames, targets, sources, skipped = [], [], [], []
    subjects: set[str] = set()
    for sid, label in zip(table.sample_ids, table.labels, strict=True):
        sample = store[sid]
        a = sample.attrs
        n = int(sample.shape("frames")[0]) if "frames" in sample else int(
            a.get("n_frames", 0))
        expression, neutral = spec.pretraining.frames(n, a.get("onset"), a.get("apex"),
                                                      a.get("offset"))
        if not expression:
            skipped.append(sid)
            continue
        clip = torch.from_numpy(build_input(input_name, sample)[expression + neutral])
        if clip.shape[-1] != int(image_size):  # kept small: the frames of every clip
            clip = F.interpolate(clip, size=(int(image_size), int(image_size)),
                                 mode="bilinear", align_corners=False, antialias=True)
        frames.extend(clip)
        targets.extend([index[label]] * len(expression) + [index[NEUTRAL]] * len(neutral))
        sources.extend(sample_sources(a))
        subjects.add(sample_subject(a))
    return frames, targets, sources, skipped, subjects


def _save(output: Path, state: Mapping[str, Any], metadata: Mapping[str, str]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(output) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                      metadata=dict(metadata))
    except OSError as exc:
        raise StoreError(f"Cannot write the weights file {str(output)!r}: {exc}") from exc


def pretrain_weights(store_path: str | os.PathLike, output: str | os.PathLike, *,
                     model: str | None = None, scheme: str | None = None, epochs: int = 40,
                     lr: float = 0.01, batch_size: int = 16, image_size: int = 128,
                     seed: int = 0, device: str = "auto", overwrite: bool = False,
                     progress: bool = True) -> tuple[Path, bool]:
    """Pre-train ``model``'s frame backbone on a store's still frames.

    Parameters
    ----------
    store_path : path-like
        A labelled store with the model's input and onset/apex/offset
        annotations (for AKMNet: ``mexkit magnify --alpha 15`` output) of
        subjects that the model will not be tested on.
    output : path-like
        The safetensors file to write.
    model : str, optional
        A registered model with a frame backbone
        (:func:`pretrainable_models`); None: the one there is.
    scheme : str, optional
        Label scheme for the clips' classes (None: the stored labels).
    epochs, lr, batch_size, image_size, seed : number
        Passed to the model's pre-training hook
        (:attr:`~mexkit.models.registry.BackbonePretraining.train`).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    overwrite : bool
        Replace an existing output that differs.
    progress : bool
        Show a progress bar over the epochs (on a terminal).

    Returns
    -------
    path : pathlib.Path
        The weights file.
    computed : bool
        False when an identical finished file was kept.

    Raises
    ------
    ParameterError
        For a model without a frame backbone, an output that is the input
        or an existing file without ``overwrite``.
    LabelError
        If fewer than two classes of frames are found.
    """
    spec = _pretrainable(model)
    spec.pretraining.check_image_size(image_size)
    dev = str(resolve_device(device))  # a missing GPU fails before any work
    output = Path(output)
    check_output_path(store_path, output)
    if output.is_dir():
        raise ParameterError(f"The output {str(output)!r} is a folder; give a file name.")
    settings = {"epochs": int(epochs), "lr": float(lr), "batch_size": int(batch_size),
                "image_size": int(image_size), "seed": int(seed), "scheme": scheme}
    with open_store(store_path) as store:
        store_entry = {"store_id": store.store_id, "content_hash": store.content_hash,
                       "path": str(Path(store.path).resolve())}
        if _kept(output, spec.name, settings, store_entry, overwrite):
            logger.info("%s: already pre-trained with these settings; kept", output)
            return output, False
        table = sample_table(store, scheme=scheme)
        classes = [NEUTRAL] + [c for c in table.classes if c != NEUTRAL]
        frames, targets, sources, skipped, subjects = _still_frames(store, spec, table,
                                                                    classes, image_size)
    if skipped:
        logger.warning("pretrain: %d clip(s) without an apex inside the clip were skipped "
                       "(first: %s)", len(skipped), skipped[0])
    if len(set(targets)) < 2:
        raise LabelError(
            f"{str(store_path)!r}: {len(targets)} usable frame(s) in {len(set(targets))} "
            "class(es); pre-training needs clips with an annotated apex in two classes.")
    logger.info("pretrain: %d frames of %d clips, classes %s", len(targets),
                len(table.sample_ids) - len(skipped), ", ".join(classes))
    bar = EpochBar(int(epochs), f"pretrain {spec.name}", progress)
    try:
        state, history = spec.pretraining.train(
            torch.stack(frames), torch.tensor(targets), len(classes),
            image_size=int(image_size), epochs=int(epochs), lr=float(lr),
            batch_size=int(batch_size), seed=int(seed), device=dev, progress=bar.callback)
    finally:
        bar.close()
    _save(output, state, {
        "mexkit_stage": "pretrain", "model": spec.name, "mexkit_version": __version__,
        "classes": json.dumps(classes), "settings": json.dumps(settings),
        "history": json.dumps([{k: round(float(v), 6) for k, v in r.items()}
                               for r in history]),
        "store": json.dumps(store_entry), "n_frames": str(len(targets)),
        "sources": json.dumps(sorted(set(sources))),
        "subjects": json.dumps(sorted(subjects)),
    })
    last = history[-1]
    logger.info("pretrain: %d epochs, final loss %.4f, training accuracy %.3f", len(history),
                last["loss"], last["accuracy"])
    return output, True
