"""Pre-train a model's frame backbone on the still frames of a labelled store.

AKMNet's authors start its ResNet-18 from ImageNet weights fine-tuned on
AffectNet expression stills ([1]_, Sec. IV-B). Neither can be downloaded
here, so ``mexkit pretrain`` builds the stand-in from a labelled store of
*other* subjects: the frames around each clip's apex, labelled with the
clip's class, and its onset and offset frames, labelled ``neutral``
(:func:`mexkit.learn.trainers.akmnet.expression_frames`). The weights are
written as safetensors with their provenance in the file's metadata:

``mexkit_stage``
    ``"pretrain"``.
``model``, ``classes``, ``settings``, ``history``, ``store``
    The model, the frame classes, the training settings, the loss and
    accuracy of each epoch, and the source store's id and content hash.
``sources``
    A short digest of each pre-training clip's source path and of its
    frames, so that ``mexkit train --weights`` can refuse weights that saw
    the clips it is about to test on (:func:`check_weights`).

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

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..devices import resolve_device
from ..errors import ParameterError, StoreError
from ..io.atomic import atomic_path
from ..io.store import open_store
from .stages import check_output_path

__all__ = ["pretrain_weights", "read_weights_metadata", "check_weights", "weights_digest",
           "NEUTRAL"]

logger = logging.getLogger("mexkit")

#: Class of the onset and offset frames.
NEUTRAL = "neutral"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sample_sources(attrs: Mapping[str, Any]) -> list[str]:
    """Digests that identify a sample's clip: its source path and its frames' hash."""
    out = []
    source = attrs.get("source")
    if source:
        out.append("path:" + _digest(os.path.normpath(os.path.abspath(str(source)))))
    data = attrs.get("data_hash")
    if data:
        out.append("data:" + _digest(str(data)))
    return out


def read_weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a safetensors file (empty for a file without any).

    Raises
    ------
    StoreError
        If the file is missing or is not safetensors.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise StoreError(f"Cannot read the weights file {str(path)!r}: {exc}") from exc


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file (part of a training run's fold key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_weights(path: str | os.PathLike, store: Any) -> dict[str, str]:
    """Refuse pre-trained weights that saw clips of ``store``; return their metadata.

    Parameters
    ----------
    path : path-like
        The ``--weights`` file.
    store : Store
        The store about to be trained and tested on.

    Raises
    ------
    ParameterError
        If the file is missing, or if it was written by ``mexkit pretrain``
        from clips that ``store`` also holds (same source path or same
        frames): their test folds would score frames the backbone was
        trained on.
    StoreError
        If the file is not safetensors.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise ParameterError(f"The weights file {str(p)!r} {what} (--weights).")
    meta = read_weights_metadata(p)
    if meta.get("mexkit_stage") != "pretrain":
        return meta
    seen = set(json.loads(meta.get("sources", "[]")))
    shared = []
    for sid in store.sample_ids:
        if seen.intersection(_sample_sources(store[sid].attrs)):
            shared.append(sid)
    if shared:
        more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
        raise ParameterError(
            f"The weights {str(p)!r} were pre-trained on {len(shared)} clip(s) of "
            f"{str(store.path)!r} ({', '.join(shared[:3])}{more}): their test folds would "
            "score frames the backbone has already learnt. Pre-train on a store of other "
            "subjects (`mexkit pretrain`).")
    return meta


def pretrain_weights(store_path: str | os.PathLike, output: str | os.PathLike, *,
                     model: str = "akmnet", scheme: str | None = None, epochs: int = 40,
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
    model : str
        A registered model with a frame backbone (``akmnet``).
    scheme : str, optional
        Label scheme for the clips' classes (None: the stored labels).
    epochs, lr, batch_size, image_size, seed : number
        See :func:`mexkit.learn.trainers.akmnet.pretrain_backbone`.
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
    import torch
    import torch.nn.functional as F

    from ..learn.inputs import build_input
    from ..learn.trainers.akmnet import expression_frames
    from ..models.akmnet import check_image_size
    from ..models.registry import get_spec, load_reference
    from .training import EpochBar, sample_table

    spec = get_spec(model)
    if getattr(spec, "backbone_pretrainer", None) is None:
        from ..models.registry import list_models

        able = [s.name for s in list_models() if getattr(s, "backbone_pretrainer", None)]
        raise ParameterError(
            f"Model {model!r} has no frame backbone to pre-train; models with one: "
            f"{', '.join(able) or 'none'}.")
    check_image_size(image_size)
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
        if output.exists():
            try:
                old = read_weights_metadata(output)
            except StoreError:
                old = {}
            same = (old.get("mexkit_stage") == "pretrain" and old.get("model") == model
                    and json.loads(old.get("settings", "null")) == settings
                    and json.loads(old.get("store", "{}")).get("content_hash")
                    == store_entry["content_hash"])
            if same:
                logger.info("%s: already pre-trained with these settings; kept", output)
                return output, False
            if not overwrite:
                what = ("weights pre-trained with other settings or data"
                        if old.get("mexkit_stage") == "pretrain" else
                        "a file that `mexkit pretrain` did not write")
                raise ParameterError(
                    f"The output {str(output)!r} exists and is {what}; it is kept. Give "
                    "--overwrite to replace it, or another -o.")
        table = sample_table(store, scheme=scheme)
        classes = [NEUTRAL] + [c for c in table.classes if c != NEUTRAL]
        index = {c: i for i, c in enumerate(classes)}
        input_name = spec.inputs[0].name
        frames, targets, sources, skipped = [], [], [], []
        for sid, label in zip(table.sample_ids, table.labels, strict=True):
            sample = store[sid]
            a = sample.attrs
            n = int(sample.shape("frames")[0]) if "frames" in sample else int(
                a.get("n_frames", 0))
            expression, neutral = expression_frames(n, a.get("onset"), a.get("apex"),
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
            sources.extend(_sample_sources(a))
    if skipped:
        logger.warning("pretrain: %d clip(s) without an apex inside the clip were skipped "
                       "(first: %s)", len(skipped), skipped[0])
    if len(set(targets)) < 2:
        from ..errors import LabelError

        raise LabelError(
            f"{str(store_path)!r}: {len(targets)} usable frame(s) in {len(set(targets))} "
            "class(es); pre-training needs clips with an annotated apex in two classes.")
    logger.info("pretrain: %d frames of %d clips, classes %s", len(targets),
                len(table.sample_ids) - len(skipped), ", ".join(classes))
    bar = EpochBar(int(epochs), f"pretrain {model}", progress)
    try:
        state, history = load_reference(spec.backbone_pretrainer,
                                        f"Model {model!r}: the pre-trainer")(
            torch.stack(frames), torch.tensor(targets), len(classes),
            image_size=int(image_size), epochs=int(epochs), lr=float(lr),
            batch_size=int(batch_size), seed=int(seed), device=dev, progress=bar.callback)
    finally:
        bar.close()
    metadata = {
        "mexkit_stage": "pretrain", "model": model, "mexkit_version": __version__,
        "classes": json.dumps(classes), "settings": json.dumps(settings),
        "history": json.dumps([{k: round(float(v), 6) for k, v in r.items()}
                               for r in history]),
        "store": json.dumps(store_entry), "n_frames": str(len(targets)),
        "sources": json.dumps(sorted(set(sources))),
    }
    from safetensors.torch import save_file

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(output) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                      metadata=metadata)
    except OSError as exc:
        raise StoreError(f"Cannot write the weights file {str(output)!r}: {exc}") from exc
    last = history[-1]
    logger.info("pretrain: %d epochs, final loss %.4f, training accuracy %.3f", len(history),
                last["loss"], last["accuracy"])
    return output, True
