"""Networks published by a model's authors: predict, spot and convert with them.

A model whose registry entry has a
:class:`~mexkit.models.registry.PublishedNetworks` hook (MEAN: its authors'
Keras networks) can be used without training:

* :func:`predict_with_weights` (``mexkit predict STORE --weights PATH``) scores
  every sample of an input store with one network, or with ``per_subject``
  each sample with the network of its own held-out subject (the authors' LOSO
  fold), so that ``mexkit evaluate`` gives the figures their networks reach;
* :func:`spot_with_weights` (``mexkit spot INPUT --weights PATH``) spots and
  recognises in whole videos with all fold networks averaged (or one), a
  video being cropped and given its input as the authors' code builds it
  (:attr:`~mexkit.models.registry.PublishedNetworks.crop` and ``flow``);
* :func:`convert_weights` (``mexkit convert``) writes a network as mexkit's
  weights, for ``mexkit train --weights``.

Nothing here names a model: the model is the one whose hook reads the files
(:func:`published_model`).

Spotting follows the paper's post-processing (:func:`mexkit.spot.spot_video`):
moving average over ``[i - k', i + k']``, all peaks above ``T = mean + p (max
- mean)`` at least ``k'`` apart (long videos) or the single highest (short
clips), intervals ``[peak - k', peak + k' - 1]``, emotion = the most frequent
class over ``[peak - k', peak - 1]``; ``k'`` is the networks' dataset's,
scaled to the video's frame rate, unless given.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023), sections 3.3-4.3.
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validate import check_option, check_range
from ..errors import ModelInputError, ParameterError, StoreError
from ..io.intervals import write_intervals, write_intervals_json
from ..io.predictions import write_predictions
from ..io.store import open_store
from ..models.registry import ModelSpec, PublishedNet, get_spec, list_models
from ..spot.metrics import Interval, evaluate_intervals
from ..spot.postprocess import spot_video
from .crop import clips_from_paths, run_crop
from .flow import run_flow
from .reports import safe_name
from .spotting import load_spot_videos, plot_video

__all__ = ["published_models", "published_model", "weight_files",
           "classes_for", "predict_with_weights", "convert_weights", "spot_with_weights",
           "prepare_video", "kprime_for", "is_video_input", "read_subject_map"]

logger = logging.getLogger("mexkit")

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


# -- which model's networks -----------------------------------------------------------------
def published_models() -> list[ModelSpec]:
    """The registered models whose authors' networks mexkit reads."""
    return [s for s in list_models() if s.published is not None]


def published_model(weights: str | os.PathLike | None = None, model: str | None = None
                    ) -> ModelSpec:
    """The model whose published-networks hook reads ``weights`` (or ``model``'s).

    With one such model it is that one; with several, the first whose hook
    finds network files in ``weights``.
    """
    if model is not None:
        spec = get_spec(model)
        if spec.published is None:
            able = ", ".join(s.name for s in published_models()) or "none"
            raise ParameterError(f"Model {model!r} has no published networks mexkit reads; "
                                 f"models that do: {able}.")
        return spec
    able = published_models()
    if not able:
        raise ParameterError("No registered model reads published networks.")
    if len(able) == 1 or weights is None:
        return able[0]
    for spec in able:
        try:
            files, _ = spec.published.files(weights, "recognition")
            spec.published.load(next(iter(files.values())))
            return spec
        except (ParameterError, StoreError):
            continue
    raise ParameterError(f"{weights}: no model reads these networks ("
                         f"{', '.join(s.name for s in able)} tried).")


def weight_files(spec: ModelSpec, weights: str | os.PathLike, need: str = "recognition"
                 ) -> tuple[dict[int, Path], Path]:
    """``({fold number: file}, folder)`` of a ``--weights`` path (the model's hook)."""
    return spec.published.files(weights, need)


def _fold_name(n: int, file: Path) -> str:
    return file.stem if n else "predict"


def classes_for(spec: ModelSpec, weights: str | os.PathLike, n_classes: int,
                classes: Sequence[str] | None) -> list[str]:
    """The recognition head's class names: ``classes`` if given, else from the dataset
    the weights' path names (the model's hook)."""
    if classes:
        names = [c.strip() for c in classes if c.strip()]
        if n_classes and len(names) != n_classes:
            raise ParameterError(
                f"--classes names {len(names)} classes, but the network in {weights} has "
                f"{n_classes} outputs.")
        return names
    ds = spec.published.dataset(weights)
    if ds is None:
        if not n_classes:
            return []
        raise ParameterError(
            f"No dataset folder in the path {str(weights)!r} names the classes of its "
            f"{n_classes} outputs ({spec.published.title}); give them with --classes a,b,c "
            "in the network's output order.")
    if n_classes and len(ds.classes) != n_classes:
        raise ParameterError(
            f"{weights}: the network has {n_classes} outputs, but {ds.name}'s authors' "
            f"classes are {', '.join(ds.classes)}; give --classes.")
    return list(ds.classes)


def read_subject_map(text: str) -> dict[str, int]:
    """``--subject-map``: ``SUBJECT=sN,...`` (or ``SUBJECT=N``), or a file of such lines."""
    out: dict[str, int] = {}
    p = Path(text)
    items = (p.read_text().replace("\n", ",").split(",") if p.is_file() else text.split(","))
    for item in items:
        item = item.strip()
        if not item or item.lower().startswith("subject"):
            continue
        subject, sep, fold = item.replace(";", "=").replace(":", "=").partition("=")
        m = re.fullmatch(r"[a-z]*(\d+)", fold.strip(), flags=re.IGNORECASE)
        if not sep or not m:
            raise ParameterError(
                f"Invalid --subject-map entry {item!r}: expected SUBJECT=sN (e.g. 01=s1).")
        out[subject.strip()] = int(m.group(1))
    return out


def _input(spec: ModelSpec, store: Any, sample: Any) -> np.ndarray:
    name = spec.published.input
    if name not in sample:
        raise ModelInputError(
            f"{store.path}: sample {sample.sample_id!r} has no {name!r}; make the store with "
            f"`{spec.published.produced_by}` (or --pairs onset-apex).")
    x = sample.read(name).astype(np.float32)
    return x


def _run(net: PublishedNet, x: np.ndarray, device: str
         ) -> tuple[np.ndarray | None, np.ndarray | None]:
    module = net.module.to(device)
    spot, prob = net.outputs(module, torch.from_numpy(x).to(device))
    return (None if spot is None else spot.double().cpu().numpy(),
            None if prob is None else prob.double().cpu().numpy())


# -- mexkit predict --weights ---------------------------------------------------------------
def predict_with_weights(store_path: str | os.PathLike, weights: str | os.PathLike,
                         output: str | os.PathLike, *, per_subject: bool = False,
                         classes: Sequence[str] | None = None, scheme: str | None = None,
                         subject_map: str | None = None, device: str = "cpu",
                         model: str | None = None) -> Path:
    """Score every sample of an input store with the authors' network(s).

    Writes the predictions CSV (``sample_id, subject, dataset, fold, true,
    pred``, ``score_<class>`` = the softmax outputs, and ``spot_score`` for a
    network with a spotting head) and returns its path. The store's first
    pair of each sample is scored (an onset-apex store has one).

    With ``per_subject``, ``weights`` is a folder of fold files and each
    sample is scored by its own subject's network (the model's
    :attr:`~mexkit.models.registry.PublishedNetworks.folds`, or
    ``subject_map`` ``"SUBJECT=sN,..."`` / a file of such lines); ``fold`` is
    then the file's name.
    """
    spec = published_model(weights, model)
    hook = spec.published
    files, folder = weight_files(spec, weights)
    if not per_subject and len(files) > 1:
        raise ParameterError(
            f"--weights {weights} is a folder of {len(files)} fold networks: give one file, "
            "or --per-subject to score each sample with its own subject's network.")
    if per_subject and not Path(weights).is_dir():
        raise ParameterError("--per-subject needs --weights to name a folder of fold files.")
    first_n, first_file = next(iter(files.items()))
    first = hook.load(first_file)
    names = classes_for(spec, folder if per_subject else first_file, first.n_classes, classes)
    with open_store(store_path) as store:
        samples = [store[s] for s in store.sample_ids]
        attrs = [s.attrs for s in samples]
        warning = hook.check_input(attrs)
        if warning:
            logger.warning("predict: %s: %s", store_path, warning)
        inputs = [_input(spec, store, s)[0] for s in samples]
        ids = list(store.sample_ids)
    truths = [hook.true_label(a, names, scheme) if names else None for a in attrs]
    subjects = [str(a.get("subject", "")) for a in attrs]
    if per_subject:
        if subject_map:
            fold_of = read_subject_map(subject_map)
        else:
            eligible = [t is not None or str(a.get("emotion", "")).lower().startswith("other")
                        for t, a in zip(truths, attrs, strict=True)]
            fold_of = hook.folds(subjects, eligible)
            top = max(files)
            if fold_of and len(fold_of) != top:
                raise ParameterError(
                    f"{store_path} has {len(fold_of)} subjects with samples of the classes "
                    f"{', '.join(names)}, but {folder} numbers its folds up to {top}: the "
                    "authors number the subjects of the whole dataset. Give --subject-map "
                    "SUBJECT=sN,... (docs/reproducing.md lists the authors' numbering).")
        logger.info("predict: subject -> fold file: %s",
                    ", ".join(f"{s}={n}" for s, n in sorted(fold_of.items(),
                                                           key=lambda kv: kv[1])))
    nets: dict[int, PublishedNet] = {first_n: first}
    by_fold: dict[int, list[int]] = {}
    for i, subject in enumerate(subjects):
        n = first_n
        if per_subject:
            if subject not in fold_of:
                logger.info("predict: sample %s (subject %s) has no fold network; skipped",
                            ids[i], subject)
                continue
            n = fold_of[subject]
            if n not in files:
                logger.warning("predict: no fold file %d in %s for subject %s; sample %s "
                               "skipped", n, folder, subject, ids[i])
                continue
        by_fold.setdefault(n, []).append(i)
    results: dict[int, dict[str, Any]] = {}
    for n, members in by_fold.items():
        if n not in nets:
            nets[n] = hook.load(files[n])
        net = nets[n]
        if net.n_classes != first.n_classes or net.kind != first.kind:
            raise StoreError(f"{files[n]}: a {net.kind} network with {net.n_classes} "
                             f"classes among {first.kind} networks with {first.n_classes}.")
        spot, prob = _run(net, np.stack([inputs[i] for i in members]), device)
        for j, i in enumerate(members):
            r: dict[str, Any] = {"sample_id": ids[i], "subject": subjects[i],
                                 "dataset": attrs[i].get("dataset", ""),
                                 "fold": _fold_name(n, files[n]), "true": truths[i] or ""}
            r["pred"] = names[int(np.argmax(prob[j]))] if prob is not None else ""
            if prob is not None:
                for c, v in zip(names, prob[j], strict=True):
                    r[f"score_{c}"] = float(v)
            if spot is not None:
                r["spot_score"] = float(spot[j])
            results[i] = r
    rows = [results[i] for i in sorted(results)]
    if not rows:
        raise ParameterError(f"{store_path}: no sample was scored (no subject has a fold "
                             f"network in {folder}).")
    extra = ("spot_score",) if first.has_spot else ()
    write_predictions(Path(output), rows, names if first.has_recog else [], extra=extra)
    return Path(output)


# -- mexkit convert -------------------------------------------------------------------------
def convert_weights(source: str | os.PathLike, output: str | os.PathLike, *,
                    classes: Sequence[str] | None = None, model: str | None = None) -> Path:
    """Write an authors' network as mexkit's safetensors weights (``mexkit convert``)."""
    spec = published_model(source, model)
    net = spec.published.load(source)
    names = classes_for(spec, source, net.n_classes, classes) if net.has_recog else []
    return Path(spec.published.convert(source, output, names))


# -- mexkit spot --weights ------------------------------------------------------------------
def kprime_for(dataset: Any, fps: float | None) -> int:
    """The dataset's k', rescaled to ``fps`` when it differs from the dataset's."""
    if dataset is None:
        raise ParameterError("No dataset folder in the weights' path gives k'; give --kprime.")
    if not fps or abs(float(fps) - dataset.fps) < 1e-6:
        return dataset.kprime
    return max(1, int(math.floor(dataset.kprime * float(fps) / dataset.fps + 0.5)))


def is_video_input(path: Path) -> bool:
    """A video file or an image folder (not an HDF5 store)."""
    return path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES


def prepare_video(spec: ModelSpec, video: Path, out_base: Path, *, gap: int | None,
                  fps: float | None, progress: bool, crop: str = "authors") -> Path:
    """Crop ``video`` and build the published networks' input from it; the input store.

    ``crop="authors"`` frames the face as the authors' code does
    (:attr:`~mexkit.models.registry.PublishedNetworks.crop`); ``"mexkit"``
    with ``mexkit crop``'s own defaults (landmark-aligned). The flow gap is
    ``gap``, else the authors' for the video's frame rate.
    """
    check_option("crop", crop, ("authors", "mexkit"))
    hook = spec.published
    crop_store = out_base.with_name(out_base.name + ".crop.h5")
    specs = clips_from_paths([video], fps=fps)
    run_crop(specs, crop_store, progress=progress,
             **(dict(hook.crop) if crop == "authors" else {}))
    flow = dict(hook.flow)
    if gap is None:
        with open_store(crop_store) as store:
            rates = {float(store[s].attrs.get("fps") or 0) for s in store.sample_ids}
        rate = max(rates) if rates else 0.0
        if not rate:
            raise ParameterError(f"{video}: its frame rate is unknown; give --fps or --gap.")
        gap = hook.gap(rate)
    flow_store = out_base.with_name(f"{out_base.name}.crop.flow-{flow['method']}.h5")
    run_flow(crop_store, flow_store, k=gap, progress=progress, **{
        k: (list(v) if isinstance(v, tuple) else v) for k, v in flow.items()})
    return flow_store


def spot_with_weights(input_path: str | os.PathLike, weights: str | os.PathLike,
                      output: str | os.PathLike, *, fold: str | None = None,
                      per_subject: bool = False, subject_map: str | None = None,
                      kprime: int | None = None, p: float = 0.55, peaks: str | None = None,
                      classes: Sequence[str] | None = None, gap: int | None = None,
                      fps: float | None = None, device: str = "cpu", plots: bool = True,
                      progress: bool = True, crop: str = "authors", model: str | None = None
                      ) -> tuple[Path, dict[str, Any] | None]:
    """Spot and recognise with the authors' networks; write intervals (CSV, JSON) and PNGs.

    ``input_path`` is a store of the networks' input for pairs ``(j, j + k)``
    of whole videos, or a video file or image folder, which is cropped
    (``crop``) and given that input first (:func:`prepare_video`; both stores
    are kept beside the output). Each video's spotting scores are the mean of
    the spotting outputs of all fold networks (an ensemble; ``fold`` takes
    one, ``per_subject`` each video's own subject's network), its per-frame
    classes the argmax of their mean class probabilities.

    Returns the interval CSV's path and, when the input holds annotated
    intervals, the metric report (:func:`mexkit.spot.evaluate_intervals`).
    """
    check_range("p", float(p), 0.0, 1.0)
    if peaks is not None:
        check_option("peaks", peaks, ("all", "highest"))
    spec = published_model(weights, model)
    hook = spec.published
    src = Path(input_path)
    output = Path(output)
    weights = Path(weights)
    files, _ = weight_files(spec, weights, "spotting")
    if fold is not None:
        digits = re.sub(r"^[a-z]*", "", str(fold).lower())
        n = int(digits) if digits.isdigit() else None
        if n not in files:
            raise ParameterError(
                f"Invalid value for '--fold': {fold!r} is not one of the fold files "
                f"{', '.join(f.stem for f in files.values())} in {weights}.")
        files = {n: files[n]}
    nets = {n: hook.load(f) for n, f in files.items()}
    net0 = next(iter(nets.values()))
    if not net0.has_spot:
        raise ParameterError(f"{weights}: these networks have no spotting head; give the "
                             "spotting networks (spot or spot_recog).")
    video_input = is_video_input(src)
    output.parent.mkdir(parents=True, exist_ok=True)
    if video_input:
        base = output.parent / (output.name.split(".")[0] or "video")
        src = prepare_video(spec, src, base, gap=gap, fps=fps, progress=progress, crop=crop)
        logger.info("spot: the networks' input of %s is in %s", input_path, src)
    elif gap is not None:
        raise ParameterError("--gap applies to a video input; a store keeps its own gap.")
    dataset = hook.dataset(weights)
    names = classes_for(spec, weights, net0.n_classes, classes) if net0.has_recog else []
    videos = load_spot_videos(src, feature=hook.input)
    long = {"all": True, "highest": False}.get(peaks or "", None)
    if long is None:
        long = True if video_input or dataset is None else dataset.long
    fold_of: dict[str, int] = {}
    if per_subject:
        fold_of = (read_subject_map(subject_map) if subject_map else
                   hook.folds([v.subject for v in videos], [bool(v.truth) for v in videos]))
    spotted: list[Interval] = []
    plot_dir = output.with_name(output.stem + ".plots")
    if plots:
        plot_dir.mkdir(parents=True, exist_ok=True)
    used_k: dict[str, int] = {}
    for v in videos:
        chosen = nets
        if per_subject:
            n = fold_of.get(v.subject)
            if n is None or n not in nets:
                logger.warning("spot: no fold network for subject %s (video %s); skipped",
                               v.subject, v.video)
                continue
            chosen = {n: nets[n]}
        spot_sum = np.zeros(len(v.features), dtype=np.float64)
        prob_sum = np.zeros((len(v.features), max(net0.n_classes, 1)), dtype=np.float64)
        for net in chosen.values():
            s, prob = _run(net, v.features, device)
            spot_sum += s
            if prob is not None:
                prob_sum += prob
        scores = spot_sum / len(chosen)
        frame_cls = prob_sum.argmax(1) if net0.has_recog else None
        kp = int(kprime) if kprime else kprime_for(dataset, v.fps or None)
        used_k[f"{v.subject}/{v.video}"] = kp
        spots, smooth, thr = spot_video(scores, kp, n_frames=v.n_frames, p=p, long=long,
                                        frame_classes=frame_cls)
        found = [Interval(v.subject, v.video, s.onset, s.offset, type="micro",
                          emotion=(names[s.emotion] if s.emotion is not None and names
                                   else None), confidence=s.confidence, apex=s.peak)
                 for s in spots]
        spotted.extend(found)
        if plots:
            curves = {"micro": {"scores": scores, "smoothed": smooth, "threshold": thr,
                                "kprime": kp, "gap": v.gap}}
            plot_video(plot_dir / f"{safe_name(v.subject)}_{safe_name(v.video)}.png", v,
                       curves, found)
    write_intervals(output, spotted)
    write_intervals_json(output.with_suffix(".json"), spotted, kprime=used_k, p=p, long=long,
                         classes=names, weights=str(weights),
                         folds=[f.stem for f in files.values()] if not per_subject
                         else "per-subject", input=str(src), model=spec.name,
                         crop=crop if video_input else None)
    truth = [t for v in videos for t in v.truth]
    report = evaluate_intervals(truth, spotted, classes=names or None) if truth else None
    return output, report
