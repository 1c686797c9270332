"""Spot-then-recognize on stores of whole videos: LOSO evaluation and applying the networks.

A model with spotting hooks (:class:`~mexkit.models.registry.Spotting`,
MEAN's) is evaluated on a store of whole videos whose samples hold its
per-pair input for the pairs ``(j, j + k)`` of every frame ``j`` (``mexkit
flow --pairs gap``), per LOSO fold:

1. for each expression type (micro, macro; one network when the intervals
   carry no type), the model's spotting network is trained on the training
   subjects' pairs with pseudo-labels of that type's intervals (window
   ``k'`` from the type's mean length), non-expression:expression pairs
   subsampled (8:1 for MEAN), and its recognition network on the onset ->
   apex input of each training interval with an emotion (stored beside the
   pairs by ``mexkit flow --pairs gap``: ``interval_<input>``), its loss and
   accuracy watched on the held-out subject's input of pair ``(onset, onset +
   k)`` of each interval (MEAN's authors' X2 and X1; the model's
   :attr:`~mexkit.models.registry.Spotting.train` hook);
2. on the held-out subject's videos: per-pair scores and classes, smoothing,
   peaks, intervals with confidence and emotion
   (:func:`mexkit.spot.spot_video`).

All folds' intervals are scored together (:func:`mexkit.spot.evaluate_intervals`);
``final`` also trains networks on every subject, which :func:`spot_store`
(``mexkit spot``) applies to new videos.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos",
   Signal Processing: Image Communication 2023, sections 3-4.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._validate import check_range
from ..devices import resolve_device
from ..errors import LabelError, ModelInputError, ParameterError, StoreError
from ..io.atomic import write_text
from ..io.checkpoints import load_checkpoint
from ..io.intervals import read_intervals, write_intervals, write_intervals_json
from ..io.store import open_store
from ..io.tables import TableWriter
from ..labels import get_scheme
from ..learn.train import ratio_subsample
from ..models.registry import ModelSpec, get_spec, list_models
from ..spot.metrics import Interval, evaluate_intervals
from ..spot.postprocess import kprime_from_length, pseudo_labels, spot_video
from .flow import flow_options
from .reports import jsonable, safe_name, save_figure
from .spot_eval import format_spot_report

__all__ = ["format_spot_report", "SpotVideo", "load_spot_videos", "parse_type_stores",
           "recognition_frames", "train_spotter", "spot_with", "plot_video", "spot_loso",
           "train_spotting",
           "load_spot_model", "spot_store", "is_spotting_store", "spotting_models"]

logger = logging.getLogger("mexkit")


@dataclass
class SpotVideo:
    """One video of a gap-flow store: its per-pair features and its true intervals."""

    sample_id: str
    subject: str
    video: str
    fps: float
    n_frames: int
    gap: int
    features: np.ndarray            # (P, ...) float32, P = n_frames - gap
    truth: list[Interval]
    #: (onset, offset) -> the input of the interval's onset -> apex pair
    onset_apex: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)


# -- which model, which store --------------------------------------------------------------
def spotting_models() -> list[ModelSpec]:
    """The registered models with spotting hooks."""
    return [s for s in list_models() if s.spotting is not None]


def _first_sample(store_path: str | os.PathLike) -> Any:
    with open_store(store_path) as store:
        for sample in store:
            return {"attrs": dict(sample.attrs), "keys": set(sample.keys())}
    return None


def _spotter_of(store_path: str | os.PathLike, model: str | None) -> ModelSpec:
    """The model whose spotting hooks fit the store (``model``, or the one whose input
    the store holds)."""
    if model is not None:
        spec = get_spec(model)
        if spec.spotting is None:
            able = ", ".join(s.name for s in spotting_models()) or "none"
            raise ParameterError(f"Model {model!r} does not spot intervals; models that "
                                 f"do: {able}.")
        return spec
    first = _first_sample(store_path)
    keys = first["keys"] if first else set()
    for spec in spotting_models():
        if spec.spotting.input in keys:
            return spec
    wanted = ", ".join(f"{s.spotting.input!r} ({s.name}: `{s.spotting.produced_by}`)"
                       for s in spotting_models())
    raise ModelInputError(f"{store_path}: the store holds no spotting input; one of "
                          f"{wanted or 'none registered'}.")


def _producer(feature: str) -> str:
    """The command that makes a spotting store holding ``feature``."""
    for spec in spotting_models():
        if spec.spotting.input == feature:
            return spec.spotting.produced_by
    return "mexkit flow --pairs gap"


def is_spotting_store(store_path: str | os.PathLike, feature: str | None = None) -> bool:
    """True when the store holds ``feature`` (default: any spotting model's input) of
    ``(j, j + k)`` pairs of whole videos."""
    first = _first_sample(store_path)
    if first is None or first["attrs"].get("pair_mode") != "gap":
        return False
    features = [feature] if feature else [s.spotting.input for s in spotting_models()]
    return any(f in first["keys"] for f in features)


# -- reading the videos ----------------------------------------------------------------------
def _scheme_label(rule: Any, r: Mapping[str, Any], attrs: Mapping[str, Any]) -> str | None:
    """An interval's class under a label scheme, from its raw emotion (None outside it)."""
    try:
        return rule.label(emotion=r.get("emotion"), aus=r.get("aus"),
                          dataset=attrs.get("dataset"),
                          objective_class=r.get("objective_class"))
    except LabelError:
        return None


def _store_intervals(attrs: Mapping[str, Any], subject: str, video: str, n: int,
                     scheme: str | None = None) -> list[Interval]:
    raw = attrs.get("intervals")
    if raw is None:
        on, off = attrs.get("onset"), attrs.get("offset")
        if on is None or off is None:
            return []
        raw = [{"onset": on, "offset": off, "kind": attrs.get("kind") or "micro",
                "label": attrs.get("label"), "emotion": attrs.get("emotion"),
                "aus": attrs.get("aus"), "objective_class": attrs.get("objective_class"),
                "apex": attrs.get("apex")}]
    rule = get_scheme(scheme) if scheme is not None else None
    out = []
    for r in raw:
        on, off = r.get("onset"), r.get("offset")
        if on is None or off is None or int(on) < 0 or int(off) < int(on) or int(on) >= n:
            logger.warning("%s/%s: interval [%s, %s] skipped (outside the video of %d "
                           "frames or reversed)", subject, video, on, off, n)
            continue
        emo = (_scheme_label(rule, r, attrs) if rule is not None
               else r.get("label") or r.get("emotion") or None)
        apex = r.get("apex")
        out.append(Interval(subject, video, int(on), min(int(off), n - 1),
                            type=(str(r.get("kind")).lower() if r.get("kind") else None),
                            emotion=str(emo) if emo else None,
                            apex=int(apex) if apex is not None and int(apex) >= 0 else None))
    return out


def _labelled(truth: list[Interval], label_of: Mapping[tuple, Interval], subject: str,
              video: str) -> list[Interval]:
    """``truth`` with the emotion (and type) of the same interval in an emotion file."""
    out = []
    for t in truth:
        hit = label_of.get((subject, video, t.onset, t.offset))
        out.append(t if hit is None else Interval(
            subject, video, t.onset, t.offset, type=hit.type or t.type,
            emotion=hit.emotion or t.emotion, apex=t.apex))
    return out


def _gap(store_path: str | os.PathLike, sample: Any) -> tuple[int, int]:
    """The flow gap ``k`` of a sample's pairs ``(j, j + k)``, and the number of pairs."""
    pairs = sample.read("pairs")
    gaps = np.unique(pairs[:, 1] - pairs[:, 0])
    if gaps.size != 1 or not np.array_equal(pairs[:, 0], np.arange(len(pairs))):
        raise ModelInputError(
            f"{store_path}: sample {sample.sample_id}: spotting needs the pairs "
            "(j, j + k) of every frame j (`mexkit flow --pairs gap`).")
    return int(gaps[0]), len(pairs)


def load_spot_videos(store_path: str | os.PathLike, *, feature: str | None = None,
                     emotions: str | os.PathLike | None = None,
                     scheme: str | None = None) -> list[SpotVideo]:
    """Read every video of a ``--pairs gap`` flow store.

    Parameters
    ----------
    store_path : path
        The flow store.
    feature : str, optional
        The per-pair input to read (default: the input of the spotting model
        whose input the store holds, e.g. MEAN's ``mean_regions``).
    emotions : path, optional
        An interval file whose ``emotion`` (and ``type``) columns label the
        store's intervals, matched by subject, video, onset and offset (for
        sheets without emotions, e.g. SAMM Long Videos or ``mexkit synth
        --long``, whose ``intervals.csv`` has them).
    scheme : str, optional
        A label scheme: each interval's emotion becomes its class (None
        outside the scheme: spotted and scored, not recognised).

    Raises
    ------
    ModelInputError
        The store lacks the feature or ``pairs``, or its pairs are not
        ``(j, j + k)``.
    """
    if feature is None:
        feature = _spotter_of(store_path, None).spotting.input
    label_of: dict[tuple[str, str, int, int], Interval] = {}
    if emotions is not None:
        for iv in read_intervals(emotions, what="emotion file"):
            label_of[(iv.subject, iv.video, iv.onset, iv.offset)] = iv
    videos = []
    with open_store(store_path) as store:
        for sample in store:
            a = sample.attrs
            if feature not in sample or "pairs" not in sample:
                raise ModelInputError(
                    f"{store_path}: sample {sample.sample_id} has no {feature!r} and "
                    f"'pairs'; make the store with `{_producer(feature)}`.")
            gap, n_pairs = _gap(store_path, sample)
            n_frames = int(a.get("n_frames") or (n_pairs + gap))
            subject = str(a.get("subject"))
            video = str(a.get("video") or a.get("clip") or sample.sample_id)
            truth = _store_intervals(a, subject, video, n_frames, scheme)
            if label_of:
                truth = _labelled(truth, label_of, subject, video)
            onset_apex = {}
            if f"interval_{feature}" in sample and "interval_pairs" in sample:
                bounds = sample.read("interval_pairs")
                rows = sample.read(f"interval_{feature}").astype(np.float32)
                onset_apex = {(int(b[0]), int(b[2])): r for b, r in zip(bounds, rows,
                                                                        strict=True)}
            videos.append(SpotVideo(sample.sample_id, subject, video, float(a.get("fps") or 0),
                                    n_frames, gap, sample.read(feature).astype(np.float32),
                                    truth, onset_apex))
    if not videos:
        raise ParameterError(f"{store_path}: the store holds no video.")
    return videos


#: What a spotting network's input depends on besides the gap (a flow store's
#: parameters): compared by `mexkit spot` against the model's (issue 28).
PREPROCESSING = ("flow_method", "method_options", "mask_eyes", "remove_head_motion",
                 "mean_input")


def store_preprocessing(store_path: str | os.PathLike) -> dict[str, Any]:
    """How a gap-flow store's features were made: flow method and its options, SOFTNet's
    eye mask and head-motion removal (None where the store does not say)."""
    with open_store(store_path) as store:
        params = dict(store.params or {})
    has_options = params.get("method", "tvl1") in params or "tvl1" in params
    return {"flow_method": params.get("method"),
            "method_options": flow_options(params)[1] if has_options else None,
            "mask_eyes": params.get("mask_eyes"),
            "remove_head_motion": params.get("remove_head_motion"),
            "mean_input": params.get("mean_input")}


def _preprocessing_differences(model: Mapping[str, Any], store: Mapping[str, Any]
                               ) -> list[str]:
    """``["flow method 'tvl1' (model) / 'farneback' (store)", ...]``; keys either side
    does not record are not compared."""
    out = []
    for key in PREPROCESSING:
        a, b = model.get(key), store.get(key)
        if a is None or b is None or a == b:
            continue
        if key == "method_options":
            keys = sorted(set(a) | set(b))
            diff = ", ".join(f"{k} {json.dumps(a.get(k))} / {json.dumps(b.get(k))}"
                             for k in keys if a.get(k) != b.get(k))
            out.append(f"flow options {diff}")
        else:
            name = {"flow_method": "flow method"}.get(key, key.replace("_", " "))
            out.append(f"{name} {json.dumps(a)} / {json.dumps(b)}")
    return out


def parse_type_stores(text: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``"macro=PATH[,micro=PATH]"`` (the ``--type-store`` option) as ``{type: path}``."""
    if not text:
        return {}
    if isinstance(text, Mapping):
        return {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for part in str(text).split(","):
        kind, sep, path = part.partition("=")
        if not sep or not kind.strip() or not path.strip():
            raise ParameterError(
                f"Invalid value for the 'type-store' option: expected TYPE=STORE[,TYPE=STORE] "
                f"(e.g. macro=videos.gap20.flow.h5), but got {part!r}.")
        out[kind.strip().lower()] = path.strip()
    return out


def _type_videos(videos: Sequence[SpotVideo], types: Sequence[str | None],
                 type_stores: Mapping[str, str], emotions: str | os.PathLike | None,
                 feature: str) -> dict[str | None, list[SpotVideo]]:
    """Each type's copy of ``videos``: features from its own store when one is given.

    The truth always comes from the main store; a type store must hold every
    video of the main store, with the same number of frames.
    """
    unknown = sorted(set(type_stores) - {t for t in types if t})
    if unknown:
        raise ParameterError(
            f"Invalid value for the 'type-store' option: type {unknown[0]!r} is not one of "
            f"the store's expression types {[t for t in types if t]}.")
    out: dict[str | None, list[SpotVideo]] = {}
    for kind in types:
        if kind not in type_stores:
            out[kind] = list(videos)
            continue
        path = type_stores[kind]
        other = {(v.subject, v.video): v for v in load_spot_videos(
            path, feature=feature, emotions=emotions)}
        mine = []
        for v in videos:
            w = other.get((v.subject, v.video))
            if w is None or w.n_frames != v.n_frames:
                what = ("has no video" if w is None else
                        f"has {w.n_frames} frames, not {v.n_frames}, in video")
                raise ParameterError(
                    f"{path}: the {kind} store {what} {v.subject}/{v.video}; make it from "
                    "the same crop store with `mexkit flow --pairs gap --gap K`.")
            mine.append(replace(w, truth=v.truth))
        out[kind] = mine
    return out


def _types(videos: Sequence[SpotVideo]) -> list[str | None]:
    kinds = sorted({t.type for v in videos for t in v.truth if t.type})
    return kinds or [None]


def _kprimes(videos: Sequence[SpotVideo], types: Sequence[str | None],
             given: Mapping[str, int] | int | None) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for ty in types:
        if isinstance(given, int):
            out[ty] = given
            continue
        if isinstance(given, Mapping) and ty in given:
            out[ty] = int(given[ty])
            continue
        lengths = [t.length for v in videos for t in v.truth if t.type == ty]
        if not lengths:
            raise ParameterError(f"No interval of type {ty!r} to derive k' from.")
        out[ty] = kprime_from_length(float(np.mean(lengths)))
    return out


# -- training and applying one type's networks -----------------------------------------------
def _digest(*arrays: np.ndarray) -> str:
    """First 12 hex digits of the SHA-1 of the arrays' shapes, dtypes and bytes."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def _onset_apex(v: SpotVideo, t: Interval) -> np.ndarray:
    """The input of interval ``t``'s onset -> apex pair (the store's ``interval_*``)."""
    hit = v.onset_apex.get((t.onset, t.offset))
    if hit is None:
        raise ModelInputError(
            f"video {v.subject}/{v.video} ({v.sample_id}) has no onset -> apex input "
            f"for its interval [{t.onset}, {t.offset}], on which recognition trains; make "
            "the store again with `mexkit flow --pairs gap --features ...` (it stores "
            "interval_pairs and the intervals' features).")
    return hit


def recognition_frames(videos: Sequence[SpotVideo], kind: str | None,
                       classes: Sequence[str], *, at_onset: bool = False
                       ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each interval of ``kind`` whose emotion is one of ``classes``: its input and class.

    The input is its onset -> apex pair's (``at_onset=False``: what recognition
    trains on, the authors' X2), or its pair ``(onset, onset + k)`` of the
    gap flow (``at_onset=True``: what they validate on, X1), one row each.
    """
    rx: list[np.ndarray] = []
    ry: list[np.ndarray] = []
    index = {c: k for k, c in enumerate(classes)}
    for v in videos:
        for t in v.truth:
            if t.type != kind or t.emotion not in index or t.onset >= len(v.features):
                continue
            rx.append((v.features[t.onset] if at_onset else _onset_apex(v, t))[None])
            ry.append(np.array([index[t.emotion]], dtype=np.int64))
    return rx, ry


def _training_frames(videos: Sequence[SpotVideo], kind: str | None, kprime: int,
                     classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list, list]:
    """All pairs with their pseudo-labels of ``kind``'s intervals, and each interval's
    onset -> apex input with its class (:func:`recognition_frames`)."""
    xs, ys = [], []
    for v in videos:
        mine = [t for t in v.truth if t.type == kind]
        xs.append(v.features)
        ys.append(pseudo_labels(len(v.features), [(t.onset, t.offset) for t in mine], kprime))
    rx, ry = recognition_frames(videos, kind, classes)
    return np.concatenate(xs), np.concatenate(ys).astype(np.float32), rx, ry


def train_spotter(videos: Sequence[SpotVideo], *, spotting: Any, kind: str | None,
                  kprime: int, classes: Sequence[str], settings: Mapping[str, Any], seed: int,
                  ckpt_dir: Path | None, tag: str,
                  held_out: Sequence[SpotVideo] = ()) -> dict[str, Any]:
    """Train one expression type's spotting and recognition networks (the model's hook).

    ``spotting`` is the model's :class:`~mexkit.models.registry.Spotting`;
    ``settings`` its :attr:`~mexkit.models.registry.Spotting.settings` plus
    ``device`` and ``deterministic``; ``held_out`` the fold's test videos,
    whose intervals' input at the onset the recognition network's loss is
    watched on each epoch (never chosen on). Returns ``{"spotter": model,
    "recognizer": model or None, "history": {...}, "checkpoints":
    {"spotting": path, "recognition": path or None}}``; the checkpoint names
    carry a digest of the training data, so a folder holding another run's
    checkpoints is never resumed from.
    """
    x, y, rx, ry = _training_frames(videos, kind, kprime, classes)
    if not (y > 0).any():
        raise ParameterError(f"No training frame of type {kind!r} is inside an interval.")
    keep = ratio_subsample(y.astype(np.int64), ratio=float(settings["ratio"]), seed=seed)
    n_classes = max(1, len(classes))
    # the checkpoint names carry a digest of the training data, so that a run in a folder
    # that holds another run's checkpoints (other store, k', type store or emotions)
    # trains afresh instead of resuming the other run's networks
    digest = _digest(x[keep], y[keep], *rx, *ry, np.array([kprime, n_classes]),
                     np.frombuffer("\n".join(classes).encode(), dtype=np.uint8))
    if len(classes) < 2:  # one class or none: nothing to recognize
        rx, ry = [], []

    def checkpoint(stage: str) -> Path | None:
        if ckpt_dir is None:
            return None
        return ckpt_dir / f"{tag}-{kind or 'all'}-{digest}-{stage}.safetensors"

    mx, my = recognition_frames(held_out, kind, classes, at_onset=True) if rx else ([], [])
    monitor = (np.concatenate(mx), np.concatenate(my)) if mx else None
    nets = spotting.train(x[keep], y[keep], rx, ry, n_classes=n_classes, settings=settings,
                          seed=seed, checkpoint=checkpoint, monitor=monitor)
    logger.info("spot: %s %s: %d spotting frames (%d in intervals), %d recognition frames",
                tag, kind or "all", int(keep.size), int((y[keep] > 0).sum()),
                int(sum(len(r) for r in ry)))
    return {**nets, "checkpoints": {
        "spotting": checkpoint("spotting"),
        "recognition": checkpoint("recognition") if nets["recognizer"] is not None
        else None}}


def spot_with(models: Mapping[str | None, Mapping[str, Any]], video: SpotVideo, *,
              spotting: Any, kprimes: Mapping[str | None, int], classes: Sequence[str],
              p: float, long: bool, device: str,
              per_type: Mapping[str | None, SpotVideo] | None = None
              ) -> tuple[list[Interval], dict[str, Any]]:
    """Spotted intervals of one video with every type's networks, and the curves to plot.

    ``per_type`` gives a type's own copy of the video (features of its own
    flow gap, ``--type-store``); other types use ``video``.
    """
    found: list[Interval] = []
    curves: dict[str, Any] = {}
    for kind, m in models.items():
        kp = kprimes[kind]
        own = (per_type or {}).get(kind, video)
        scores = spotting.scores(m["spotter"], own.features, device)
        frame_cls = None
        if m.get("recognizer") is not None:
            frame_cls = spotting.classes(m["recognizer"], own.features, device)
        spots, smooth, thr = spot_video(scores, kp, n_frames=video.n_frames, p=p, long=long,
                                        frame_classes=frame_cls)
        for s in spots:
            found.append(Interval(video.subject, video.video, s.onset, s.offset, type=kind,
                                  emotion=(classes[s.emotion] if s.emotion is not None
                                           and classes else None),
                                  confidence=s.confidence, apex=s.peak))
        curves[kind or "all"] = {"scores": scores, "smoothed": smooth, "threshold": thr,
                                 "kprime": kp, "gap": own.gap}
    found.sort(key=lambda iv: (iv.onset, iv.offset))
    return found, curves


def plot_video(path: Path, video: SpotVideo, curves: Mapping[str, Any],
               spotted: Sequence[Interval]) -> None:
    """PNG: smoothed score per type, threshold, spotted (top) and true (bottom) intervals."""
    import matplotlib  # only for the plots: matplotlib is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    colours = {"micro": "tab:red", "macro": "tab:blue", "all": "tab:purple"}
    fig, ax = plt.subplots(figsize=(10, 3.2))
    top = 0.0
    for kind, c in curves.items():
        col = colours.get(kind, "tab:green")
        sm = c["smoothed"]
        ax.plot(np.arange(len(sm)), sm, color=col, lw=1.2,
                label=f"{kind} score (k'={c['kprime']}, gap {c.get('gap', '?')})")
        if c["threshold"] is not None:
            ax.axhline(c["threshold"], color=col, ls="--", lw=0.8)
        top = max(top, float(np.max(sm)) if len(sm) else 0.0)
    top = max(top, 1e-3)
    for t in video.truth:
        ax.axvspan(t.onset, t.offset + 1, ymin=0.0, ymax=0.08,
                   color=colours.get(t.type or "all", "grey"), alpha=0.6)
    for s in spotted:
        col = colours.get(s.type or "all", "grey")
        ax.axvspan(s.onset, s.offset + 1, ymin=0.92, ymax=1.0, color=col, alpha=0.6)
        ax.annotate(s.emotion or "", (s.onset, top * 1.05), fontsize=7, color=col)
    ax.set_xlim(0, video.n_frames)
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), top * 1.15)
    ax.set_xlabel("frame")
    ax.set_ylabel("smoothed spotting score")
    ax.set_title(f"{video.subject}/{video.video}: spotted (top bars), true (bottom bars), "
                 "thresholds dashed", fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    save_figure(fig, path, dpi=100)


def _plot_name(video: SpotVideo) -> str:
    return f"{safe_name(video.subject)}_{safe_name(video.video)}.png"


# -- the LOSO evaluation ------------------------------------------------------------------------
@dataclass
class _Spotting:
    """One spot-then-recognize run: the store's videos, types and settings."""

    spec: ModelSpec
    videos: list[SpotVideo]
    types: list[str | None]
    kprimes: dict[str | None, int]
    by_type: dict[str | None, list[SpotVideo]]
    type_stores: dict[str, str]
    classes: list[str]
    subjects: list[str]
    p: float
    long: bool
    settings: dict[str, Any]

    @property
    def gaps(self) -> dict[str | None, int]:
        return {k: self.by_type[k][0].gap for k in self.types}

    def train(self, videos_of: Any, *, seed: int, ckpt_dir: Path, tag: str,
              held_out: Any = None) -> dict[str | None, dict[str, Any]]:
        """Every type's networks, trained on ``videos_of(kind)`` (``held_out(kind)``: the
        videos whose recognition loss is watched)."""
        return {kind: train_spotter(videos_of(kind), spotting=self.spec.spotting, kind=kind,
                                    kprime=self.kprimes[kind], classes=self.classes,
                                    settings=self.settings, seed=seed, ckpt_dir=ckpt_dir,
                                    tag=tag,
                                    held_out=held_out(kind) if held_out else ())
                for kind in self.types}

    def spot(self, models: Mapping[str | None, Any], n: int
             ) -> tuple[list[Interval], dict[str, Any]]:
        """The intervals spotted in video ``n`` by ``models``, and the curves to plot."""
        return spot_with(models, self.videos[n], spotting=self.spec.spotting,
                         kprimes=self.kprimes, classes=self.classes, p=self.p,
                         long=self.long, device=self.settings["device"],
                         per_type={kind: self.by_type[kind][n] for kind in self.types})


def _read_spotting(store_path: str | os.PathLike, spec: ModelSpec, settings: dict[str, Any],
                   *, emotions: Any, kprime: Any, p: float, long: bool | None,
                   type_stores: Any, scheme: str | None = None) -> _Spotting:
    check_range("p", float(p), 0.0, 1.0)
    feature = spec.spotting.input
    videos = load_spot_videos(store_path, feature=feature, emotions=emotions, scheme=scheme)
    types = _types(videos)
    kprimes = _kprimes(videos, types, kprime)
    type_stores = parse_type_stores(type_stores)
    by_type = _type_videos(videos, types, type_stores, emotions, feature)
    if long is None:
        long = any(len(v.truth) > 1 for v in videos)
    classes = sorted({t.emotion for v in videos for t in v.truth if t.emotion})
    subjects = sorted({v.subject for v in videos})
    if len(subjects) < 2:
        raise ParameterError(f"LOSO needs at least two subjects; {store_path} has "
                             f"{len(subjects)}.")
    return _Spotting(spec, videos, types, kprimes, by_type, type_stores, classes, subjects,
                     float(p), bool(long), settings)


def spot_loso(store_path: str | os.PathLike, out_dir: str | os.PathLike, *,
              model: str | None = None, options: Mapping[str, Any] | None = None,
              epochs: int | None = None, batch_size: int | None = None,
              lr: float | None = None, emotions: str | os.PathLike | None = None,
              kprime: Mapping[str, int] | int | None = None, p: float | None = None,
              long: bool | None = None, device: str = "cpu", seed: int = 0,
              deterministic: bool = True, final: bool = False, plots: bool = True,
              type_stores: Mapping[str, str] | str | None = None,
              scheme: str | None = None) -> Path:
    """A model's LOSO spot-then-recognize evaluation of a gap-flow store.

    ``model`` is a model with spotting hooks (default: the one whose input
    the store holds); ``options`` its model options and ``epochs``,
    ``batch_size``, ``lr`` ``mexkit train``'s overrides, turned into the
    training settings by its :attr:`~mexkit.models.registry.Spotting.settings`
    hook. ``emotions``, ``kprime``, ``p`` and ``type_stores`` (None: the
    settings') are the spotting parameters; ``type_stores`` (``{type:
    path}`` or ``"macro=PATH"``) gives an expression type's network the
    features of another gap-flow store of the same videos (SOFTNet's
    per-type flow gap, e.g. k = k' for macro-expressions); the intervals
    always come from ``store_path``. ``scheme`` maps each interval's emotion
    to a label scheme's class (e.g. ``casme2-5``: CASME II's five classes, as
    the authors' code takes them); intervals outside it are spotted but not
    recognised.

    Writes to ``out_dir``: ``intervals.csv`` / ``intervals.json`` (spotted
    intervals of every held-out video, with type, emotion, confidence and
    apex), ``truth.csv`` (the intervals scored against), ``results.json`` (the
    metric table of :func:`mexkit.spot.evaluate_intervals`, settings, k' per
    type, per-fold histories), ``plots/<subject>_<video>.png``, fold
    checkpoints under ``checkpoints/``, and with ``final`` the networks
    trained on every subject (``final/``, ``spot_model.json``) for ``mexkit
    spot``.

    Returns
    -------
    Path
        ``out_dir / "results.json"``.
    """
    spec = _spotter_of(store_path, model)
    settings = spec.spotting.settings(options, epochs=epochs, batch_size=batch_size, lr=lr)
    settings.update(device=device, deterministic=bool(deterministic))
    run = _read_spotting(
        store_path, spec, settings,
        emotions=settings.get("emotions") if emotions is None else emotions,
        kprime=settings.get("kprime") if kprime is None else kprime,
        p=settings["p"] if p is None else p, long=long,
        type_stores=settings.get("type_stores") if type_stores is None else type_stores,
        scheme=scheme)
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if plots:
        (out / "plots").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    spotted, histories = _loso(run, out, seed=seed, plots=plots)
    truth = [t for v in run.videos for t in v.truth]
    # classes from the truth (the default): each type's row takes its own truths' emotions,
    # as MEAN scores micro-expressions alone
    report = evaluate_intervals(truth, spotted)
    write_intervals(out / "intervals.csv", spotted)
    write_intervals_json(out / "intervals.json", spotted, kprime=_keyed(run.kprimes), p=run.p,
                         long=run.long, classes=run.classes)
    write_intervals(out / "truth.csv", truth)
    results = {
        "task": "spot-then-recognize", "model": spec.name, "protocol": "loso",
        "store": str(store_path), "mexkit_version": __version__,
        "types": [t or "all" for t in run.types], "kprime": _keyed(run.kprimes), "p": run.p,
        "long_videos": run.long, "classes": run.classes, "scheme": scheme,
        "settings": settings,
        "seed": seed, "gap": _keyed(run.gaps), "type_stores": run.type_stores,
        "subjects": run.subjects, "seconds": round(time.perf_counter() - t0, 1),
        "metrics": report, "histories": histories,
    }
    if final:
        (out / "final").mkdir(exist_ok=True)
        models = run.train(lambda kind: run.by_type[kind], seed=seed, ckpt_dir=out / "final",
                           tag="final")
        results["final"] = _save_final(
            out, run, models, {k: store_preprocessing(run.type_stores.get(k or "", store_path))
                               for k in run.types})
    path = out / "results.json"
    write_text(path, json.dumps(jsonable(results), indent=1) + "\n")
    return path


#: Columns of the per-frame scores file (``frame_scores.csv``; ``mexkit export``).
FRAME_SCORE_COLUMNS = ("subject", "video", "type", "frame", "score", "smoothed", "threshold")


def frame_score_columns(video: SpotVideo, curves: Mapping[str, Any]) -> dict[str, Any]:
    """One video's spotting curves as table columns, one row per type and frame.

    Parameters
    ----------
    video : SpotVideo
    curves : mapping
        Type name -> ``{"scores", "smoothed", "threshold"}`` as the spotting
        step gives them: ``scores[j]`` is the network's score of the pair of
        frames ``j`` and ``j + gap``.

    Returns
    -------
    dict
        :data:`FRAME_SCORE_COLUMNS`: ``frame`` is the 0-based position ``j``
        in the video, ``smoothed`` the score after MEAN's smoothing, and
        ``threshold`` the type's spotting threshold for the video (NaN for a
        short video, spotted at its highest peak without one).
    """
    cols: dict[str, list[Any]] = {c: [] for c in FRAME_SCORE_COLUMNS}
    for kind, c in curves.items():
        scores = np.asarray(c["scores"], dtype=np.float64).reshape(-1)
        smoothed = np.asarray(c["smoothed"], dtype=np.float64).reshape(-1)
        n = len(scores)
        cols["subject"] += [video.subject] * n
        cols["video"] += [video.video] * n
        cols["type"] += [kind] * n
        cols["frame"] += list(range(n))
        cols["score"] += scores.tolist()
        cols["smoothed"] += smoothed.tolist() if len(smoothed) == n else [None] * n
        # short videos are spotted at their highest peak, without a threshold (None)
        thr = c["threshold"]
        cols["threshold"] += [None if thr is None else float(thr)] * n
    out: dict[str, Any] = {k: v for k, v in cols.items() if k in ("subject", "video", "type")}
    out["frame"] = np.asarray(cols["frame"], dtype=np.int64)
    for k in ("score", "smoothed", "threshold"):
        out[k] = np.array([np.nan if v is None else v for v in cols[k]], dtype=np.float64)
    return out


def _loso(run: _Spotting, out: Path, *, seed: int, plots: bool
          ) -> tuple[list[Interval], dict[str, Any]]:
    """Every fold: train on the other subjects, spot the held-out subject's videos."""
    spotted: list[Interval] = []
    histories: dict[str, Any] = {}
    scores = TableWriter(out / "frame_scores.csv", format="csv")
    for fold, subject in enumerate(run.subjects):
        models = run.train(
            lambda kind, s=subject: [v for v in run.by_type[kind] if v.subject != s],
            seed=seed + 1000 * fold, ckpt_dir=out / "checkpoints",
            tag=f"fold{fold:02d}-{safe_name(subject)}",
            held_out=lambda kind, s=subject: [v for v in run.by_type[kind] if v.subject == s])
        for kind, m in models.items():
            histories[f"{subject}/{kind or 'all'}"] = m["history"]
        for n, v in enumerate(run.videos):
            if v.subject != subject:
                continue
            found, curves = run.spot(models, n)
            spotted.extend(found)
            scores.write(frame_score_columns(v, curves))
            if plots:
                plot_video(out / "plots" / _plot_name(v), v, curves, found)
        logger.info("spot: fold %d/%d (subject %s) done", fold + 1, len(run.subjects), subject)
    scores.close(FRAME_SCORE_COLUMNS)
    return spotted, histories


def train_spotting(store_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                   model: str | None = None, options: Mapping[str, Any] | None = None,
                   protocol: str | None = None, epochs: int | None = None,
                   batch_size: int | None = None, lr: float | None = None,
                   device: str = "auto", seed: int = 0, deterministic: bool = True,
                   final: bool = False, scheme: str | None = None) -> Path:
    """``mexkit train`` on a spotting store: :func:`spot_loso` with the model's settings.

    ``options`` are the model's options; ``epochs``, ``batch_size`` and
    ``lr`` override the paper's (see the model's ``settings`` hook).
    """
    if protocol not in (None, "loso"):
        raise ParameterError(
            f"Invalid value for the 'protocol' parameter: the spot-then-recognize "
            f"evaluation on a store of whole videos is LOSO, but got {protocol!r}.")
    device = str(resolve_device(device))  # a GPU that is not there fails before any work
    return spot_loso(store_path, out_dir, model=model, options=options, epochs=epochs,
                     batch_size=batch_size, lr=lr, device=device, seed=seed,
                     deterministic=deterministic, final=final, scheme=scheme)


# -- the final networks: saved, loaded, applied ------------------------------------------------
def _keyed(d: Mapping[str | None, Any]) -> dict[str, Any]:
    return {(k or "all"): v for k, v in d.items()}


def _relative(path: Path | None, root: Path) -> str | None:
    return None if path is None else Path(path).relative_to(root).as_posix()


def _save_final(out: Path, run: _Spotting, models: Mapping[str | None, Mapping[str, Any]],
                preprocessing: Mapping[str | None, Mapping[str, Any]] | None = None
                ) -> dict[str, Any]:
    entry = {"format": "mexkit-spot-model", "version": 1, "model": run.spec.name,
             "classes": list(run.classes), "p": run.p, "long_videos": run.long, "types": {}}
    for kind, m in models.items():
        entry["types"][kind or "all"] = {
            "kind": kind, "kprime": int(run.kprimes[kind]), "gap": int(run.gaps[kind]),
            "preprocessing": dict((preprocessing or {}).get(kind) or {}),
            "spotter": _relative(m["checkpoints"]["spotting"], out),
            "recognizer": _relative(m["checkpoints"]["recognition"], out),
        }
    write_text(out / "spot_model.json", json.dumps(entry, indent=1) + "\n")
    return entry


def load_spot_model(results_dir: str | os.PathLike, *, device: str = "cpu"
                    ) -> tuple[dict[str | None, dict[str, Any]], dict[str, Any]]:
    """The final spotting networks of a training run (``spot_model.json``), and its entry."""
    root = Path(results_dir)
    meta_path = root / "spot_model.json"
    if not meta_path.is_file():
        raise StoreError(f"{root}: no spot_model.json; train with `mexkit train STORE "
                         "--final` on a long-video store first.")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise StoreError(f"{meta_path}: not readable JSON ({exc}).") from exc
    if meta.get("format") != "mexkit-spot-model":
        raise StoreError(f"{meta_path}: not a mexkit spotting model description.")
    spotting = _spotter_of(root, meta["model"]).spotting
    n_classes = max(1, len(meta["classes"]))
    models: dict[str | None, dict[str, Any]] = {}
    for entry in meta["types"].values():
        m: dict[str, Any] = {}
        for role in ("spotter", "recognizer"):
            if entry.get(role):
                net = spotting.build(role, n_classes)
                net.load_state_dict(load_checkpoint(root / entry[role])[0])
                m[role] = net
        models[entry["kind"]] = m
        entry.setdefault("kprime", 1)
    return models, meta


def spot_store(store_path: str | os.PathLike, results_dir: str | os.PathLike,
               output: str | os.PathLike, *, p: float | None = None, device: str = "cpu",
               plots: bool = True, emotions: str | os.PathLike | None = None,
               type_stores: Mapping[str, str] | str | None = None, force: bool = False
               ) -> tuple[Path, dict[str, Any] | None]:
    """Apply trained spotting networks to every video of a gap-flow store.

    Writes the interval CSV ``output`` (and ``.json`` beside it) and, with
    ``plots``, ``<output stem>.plots/<subject>_<video>.png``.  When the store
    holds annotated intervals they are scored; the report is returned.
    ``type_stores`` as in :func:`spot_loso`: a type trained on another flow
    gap needs a store of that gap.

    Raises
    ------
    ParameterError
        A type's store has another flow gap, flow method (or options), eye mask
        or head-motion removal than its network was trained on (with
        ``force``, a warning instead).
    """
    device = str(resolve_device(device))  # a GPU that is not there fails before any work
    models, meta = load_spot_model(results_dir, device=device)
    spec = get_spec(meta["model"])
    types = [e["kind"] for e in meta["types"].values()]
    videos = load_spot_videos(store_path, feature=spec.spotting.input, emotions=emotions)
    stores = parse_type_stores(type_stores)
    run = _Spotting(spec, videos, types, {e["kind"]: int(e["kprime"])
                                          for e in meta["types"].values()},
                    _type_videos(videos, types, stores, emotions, spec.spotting.input),
                    {}, meta["classes"], [], float(meta["p"] if p is None else p),
                    bool(meta["long_videos"]), {"device": device})
    check_range("p", run.p, 0.0, 1.0)
    for e in meta["types"].values():
        name = e["kind"] or "all"
        where = stores.get(e["kind"] or "", str(store_path))
        gaps = sorted({v.gap for v in run.by_type[e["kind"]]})
        diff = []
        if e.get("gap") is not None and gaps != [int(e["gap"])]:
            diff.append(f"gap {e['gap']} / {', '.join(map(str, gaps))}")
        diff += _preprocessing_differences(e.get("preprocessing") or {},
                                           store_preprocessing(where))
        if not diff:
            continue
        text = (f"{results_dir}: the {name} network was trained on features made otherwise "
                f"than those of {where} ({'; '.join(diff)}: the model's first, the "
                "store's second)")
        if force:
            logger.warning("%s; spotting anyway (--force)", text)
            continue
        raise ParameterError(
            f"{text}; give a store made like the training one (--type-store "
            f"{name}=STORE for one type), or --force to spot anyway.")
    output = Path(output)
    plot_dir = output.with_name(output.stem + ".plots")
    if plots:
        plot_dir.mkdir(parents=True, exist_ok=True)
    spotted: list[Interval] = []
    scores = TableWriter(output.with_name(output.stem + ".frame_scores.csv"), format="csv")
    for n, v in enumerate(videos):
        found, curves = run.spot(models, n)
        spotted.extend(found)
        scores.write(frame_score_columns(v, curves))
        if plots:
            plot_video(plot_dir / _plot_name(v), v, curves, found)
    scores.close(FRAME_SCORE_COLUMNS)
    write_intervals(output, spotted)
    write_intervals_json(output.with_suffix(".json"), spotted, kprime=_keyed(run.kprimes),
                         p=run.p, classes=meta["classes"], model=str(results_dir))
    truth = [t for v in videos for t in v.truth]
    report = (evaluate_intervals(truth, spotted, classes=meta["classes"] or None)
              if truth else None)
    return output, report
