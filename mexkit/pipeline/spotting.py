"""Spot-then-recognize: scoring interval files, and MEAN's spotting evaluation.

This layer joins the pure pieces (:mod:`mexkit.spot`) with the interval file
(:mod:`mexkit.io.intervals`), feature stores, training and plots.

MEAN's evaluation on a store of whole videos (``mexkit flow --pairs gap
--features mean`` over ``mexkit crop`` of a long-video sheet), per LOSO fold:

1. for each expression type (micro, macro; one model when the intervals
   carry no type), a MEAN spotting network is trained on the training
   subjects' frames with pseudo-labels of that type's intervals (window
   ``k'`` from the type's mean length), non-ME:ME frames subsampled 8:1,
   MSE loss (Adam 5e-4);
2. its recognition head is trained on the frames ``[onset, offset]`` of the
   training intervals with an emotion, with the shared layers frozen
   (inductive transfer; ``transfer=False`` trains a separate MEAN from
   scratch instead, the paper's ablation);
3. on the held-out subject's videos: per-frame scores and classes, smoothing,
   peaks, intervals with confidence and emotion (:func:`mexkit.spot.spot_video`).

All folds' intervals are scored together (:func:`mexkit.spot.evaluate_intervals`).

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos",
   Signal Processing: Image Communication 2023, sections 3-4.
"""
from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import check_range
from ..errors import ParameterError
from ..io.intervals import read_intervals
from ..spot.metrics import Interval, evaluate_intervals

__all__ = ["score_interval_files", "score_intervals", "format_spot_report", "jsonable",
           "SpotVideo", "load_spot_videos", "train_spotter", "spot_with", "plot_video",
           "spot_loso", "load_spot_model", "spot_store", "is_spotting_store",
           "train_spotting", "parse_type_stores"]

logger = logging.getLogger("mexkit")


def jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and inf become None (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def score_intervals(truth: Sequence[Interval], pred: Sequence[Interval], *,
                    iou_threshold: float = 0.5, classes: Sequence[str] | None = None,
                    pred_rows: Sequence[int] | None = None, pred_name: str = "predictions"
                    ) -> dict[str, Any]:
    """:func:`mexkit.spot.evaluate_intervals` plus warnings about unknown videos.

    A prediction for a video that has no ground-truth interval is kept (it is
    a false positive) and one warning per such video names its first row.
    """
    known = {t.key for t in truth}
    unknown: dict[tuple[str, str], list[int]] = defaultdict(list)
    for k, p in enumerate(pred):
        if p.key not in known:
            unknown[p.key].append(pred_rows[k] if pred_rows is not None else k + 1)
    for (subject, video), rows in unknown.items():
        logger.warning("%s, row %d: video %s/%s has no ground-truth interval; its %d "
                       "interval(s) count as false positives", pred_name, rows[0], subject,
                       video, len(rows))
    report = evaluate_intervals(truth, pred, iou_threshold=iou_threshold, classes=classes)
    report["unknown_videos"] = sorted(f"{s}/{v}" for s, v in unknown)
    return report


def score_interval_files(truth_path: str | os.PathLike, pred_path: str | os.PathLike, *,
                         iou_threshold: float = 0.5,
                         classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Read two interval files and score the predictions against the truth."""
    truth = read_intervals(truth_path, what="truth file")
    pred, rows = read_intervals(pred_path, what="prediction file", with_rows=True)
    report = score_intervals(truth, pred, iou_threshold=iou_threshold, classes=classes,
                             pred_rows=rows, pred_name=Path(pred_path).name)
    report["truth_file"] = str(truth_path)
    report["pred_file"] = str(pred_path)
    return report


def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_spot_report(report: Mapping[str, Any]) -> str:
    """The metric table of :func:`score_intervals` (or a results.json's ``spotting``)."""
    sp = report["spotting"]
    lines = [f"spotting at IoU >= {sp['iou_threshold']:.2f} (one-to-one, greedy by "
             f"confidence): {sp['n_truth']} true, {sp['n_pred']} spotted intervals",
             f"{'type':<10}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>9}{'F1':>9}"]
    rows = list(sp["per_type"].items())
    if len(rows) != 1 or rows[0][0] != "untyped":
        rows = rows + [("overall", sp["overall"])]
    else:
        rows = [("overall", sp["overall"])]
    for name, r in rows:
        lines.append(f"{name:<10}{_f(r['tp']):>6}{_f(r['fp']):>6}{_f(r['fn']):>6}"
                     f"{_f(r['precision']):>11}{_f(r['recall']):>9}{_f(r['f1']):>9}")
    for note in sp.get("notes", []):
        lines.append(f"note: {note}")
    ap = report.get("ap")
    if ap:
        lines.append(f"AP@[.5:.95] {_f(ap['ap'])} (ranked by {ap['ranked_by']}; "
                     f"AP@.5 {_f(ap['per_threshold'].get('0.50'))})")
    asr = report.get("asr")
    if asr:
        lines.append(f"ASR {_f(asr['asr'])} ({asr['hits']} of {asr['videos']} videos, apex "
                     f"from the {asr['apex_from']})")
    an = report.get("analysis")
    if an:
        lines.append(f"analysis on {an['n']} true positives: accuracy {_f(an['accuracy'])}  "
                     f"precision {_f(an['precision'])}  recall {_f(an['recall'])}  "
                     f"F1 {_f(an['f1'])}  UF1 {_f(an['uf1'])}  UAR {_f(an['uar'])}")
        lines.append(f"STRS {_f(report.get('strs'))} (spotting F1 x analysis F1)")
    else:
        lines.append("analysis: no true positive with an emotion on both sides; no STRS")
    return "\n".join(lines)


# -- MEAN's spot-then-recognize evaluation -----------------------------------------
@dataclass
class SpotVideo:
    """One video of a gap-flow store: its MEAN features and its true intervals."""

    sample_id: str
    subject: str
    video: str
    fps: float
    n_frames: int
    gap: int
    features: np.ndarray            # (P, 3, 42, 42) float32, P = n_frames - gap
    truth: list[Interval]


def _store_intervals(attrs: Mapping[str, Any], subject: str, video: str, n: int
                     ) -> list[Interval]:
    raw = attrs.get("intervals")
    if raw is None:
        on, off = attrs.get("onset"), attrs.get("offset")
        if on is None or off is None:
            return []
        raw = [{"onset": on, "offset": off, "kind": attrs.get("kind") or "micro",
                "emotion": attrs.get("label") or attrs.get("emotion"),
                "apex": attrs.get("apex")}]
    out = []
    for r in raw:
        on, off = r.get("onset"), r.get("offset")
        if on is None or off is None or int(on) < 0 or int(off) < int(on) or int(on) >= n:
            logger.warning("%s/%s: interval [%s, %s] skipped (outside the video of %d "
                           "frames or reversed)", subject, video, on, off, n)
            continue
        emo = r.get("label") or r.get("emotion") or None
        apex = r.get("apex")
        out.append(Interval(subject, video, int(on), min(int(off), n - 1),
                            type=(str(r.get("kind")).lower() if r.get("kind") else None),
                            emotion=str(emo) if emo else None,
                            apex=int(apex) if apex is not None and int(apex) >= 0 else None))
    return out


def load_spot_videos(store_path: str | os.PathLike, *,
                     emotions: str | os.PathLike | None = None) -> list[SpotVideo]:
    """Read every video of a ``--pairs gap --features mean`` flow store.

    Parameters
    ----------
    store_path : path
        The flow store.
    emotions : path, optional
        An interval file whose ``emotion`` (and ``type``) columns label the
        store's intervals, matched by subject, video, onset and offset (for
        sheets without emotions, e.g. SAMM Long Videos or ``mexkit synth
        --long``, whose ``intervals.csv`` has them).

    Raises
    ------
    ModelInputError
        The store has no ``mean_regions`` or its pairs are not ``(j, j + k)``.
    """
    from ..errors import ModelInputError
    from ..io.store import open_store

    label_of: dict[tuple[str, str, int, int], Interval] = {}
    if emotions is not None:
        for iv in read_intervals(emotions, what="emotion file"):
            label_of[(iv.subject, iv.video, iv.onset, iv.offset)] = iv
    videos = []
    with open_store(store_path) as store:
        for sample in store:
            a = sample.attrs
            if "mean_regions" not in sample or "pairs" not in sample:
                raise ModelInputError(
                    f"{store_path}: sample {sample.sample_id} has no 'mean_regions' and "
                    "'pairs'; make the store with `mexkit flow --pairs gap --features mean`.")
            pairs = sample.read("pairs")
            gaps = np.unique(pairs[:, 1] - pairs[:, 0])
            if gaps.size != 1 or not np.array_equal(pairs[:, 0], np.arange(len(pairs))):
                raise ModelInputError(
                    f"{store_path}: sample {sample.sample_id}: spotting needs the pairs "
                    "(j, j + k) of every frame j (`mexkit flow --pairs gap`).")
            gap = int(gaps[0])
            n_frames = int(a.get("n_frames") or (len(pairs) + gap))
            subject = str(a.get("subject"))
            video = str(a.get("video") or a.get("clip") or sample.sample_id)
            truth = _store_intervals(a, subject, video, n_frames)
            if label_of:
                labelled = []
                for t in truth:
                    hit = label_of.get((subject, video, t.onset, t.offset))
                    labelled.append(t if hit is None else Interval(
                        subject, video, t.onset, t.offset, type=hit.type or t.type,
                        emotion=hit.emotion or t.emotion, apex=t.apex))
                truth = labelled
            videos.append(SpotVideo(sample.sample_id, subject, video, float(a.get("fps") or 0),
                                    n_frames, gap, sample.read("mean_regions")
                                    .astype(np.float32), truth))
    if not videos:
        raise ParameterError(f"{store_path}: the store holds no video.")
    return videos


#: What a spotting network's input depends on besides the gap (a flow store's
#: parameters): compared by `mexkit spot` against the model's (issue 28).
PREPROCESSING = ("flow_method", "method_options", "mask_eyes", "remove_head_motion")


def store_preprocessing(store_path: str | os.PathLike) -> dict[str, Any]:
    """How a gap-flow store's features were made: flow method and its options, SOFTNet's
    eye mask and head-motion removal (None where the store does not say)."""
    from ..io.store import open_store
    from .flow import method_options_of

    with open_store(store_path) as store:
        params = dict(store.params or {})
    has_options = "method_options" in params or "tvl1" in params
    return {"flow_method": params.get("method"),
            "method_options": method_options_of(params) if has_options else None,
            "mask_eyes": params.get("mask_eyes"),
            "remove_head_motion": params.get("remove_head_motion")}


def _preprocessing_differences(model: Mapping[str, Any], store: Mapping[str, Any]
                               ) -> list[str]:
    """``["flow method 'tvl1' (model) / 'farneback' (store)", ...]``; keys either side
    does not record are not compared."""
    import json

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
                 type_stores: Mapping[str, str], emotions: str | os.PathLike | None
                 ) -> dict[str | None, list[SpotVideo]]:
    """Each type's copy of ``videos``: features from its own store when one is given.

    The truth always comes from the main store; a type store must hold every
    video of the main store, with the same number of frames.
    """
    from dataclasses import replace

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
        other = {(v.subject, v.video): v for v in load_spot_videos(path, emotions=emotions)}
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
    from ..spot.postprocess import kprime_from_length

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


def _fit_quiet(model: Any, x: np.ndarray, y: np.ndarray, *, loss: str, epochs: int,
               settings: Mapping[str, Any], seed: int, ckpt: Path | None) -> dict[str, Any]:
    import torch
    from torch.utils.data import TensorDataset

    from ..learn.train import fit

    ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return fit(model, ds, epochs=int(epochs), optimizer="adam", lr=float(settings["lr"]),
               batch_size=int(settings["batch_size"]), device=settings["device"], seed=seed,
               deterministic=bool(settings["deterministic"]), loss=loss,
               checkpoint_path=ckpt)


def _predict_head(model: Any, x: np.ndarray, head: str, device: str) -> np.ndarray:
    import torch
    from torch.utils.data import TensorDataset

    from ..learn.train import predict

    model.head = head
    ds = TensorDataset(torch.from_numpy(x), torch.zeros(len(x)))
    scores, preds = predict(model, ds, batch_size=1024, device=device)
    return scores if head == "spotting" else preds


def _seeded(build: Any, seed: int) -> Any:
    """``build()`` with torch's generator seeded, leaving the global generator as it was.

    The initial weights then depend on the seed only, not on what the process
    trained before (the other expression type, earlier folds, a resumed run).
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


def _digest(*arrays: np.ndarray) -> str:
    """First 12 hex digits of the SHA-1 of the arrays' shapes, dtypes and bytes."""
    import hashlib

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def train_spotter(videos: Sequence[SpotVideo], *, kind: str | None, kprime: int,
                  classes: Sequence[str], settings: Mapping[str, Any], seed: int,
                  ckpt_dir: Path | None, tag: str) -> dict[str, Any]:
    """Train MEAN's spotting network, then its recognition head (inductive transfer).

    Returns ``{"spotter": model, "recognizer": model or None, "history": {...},
    "checkpoints": {"spotting": path, "recognition": path or None}}``; the
    checkpoint names carry a digest of the training data, so a folder holding
    another run's checkpoints is never resumed from.
    """
    from ..learn.train import ratio_subsample
    from ..models.mean import MEAN
    from ..spot.postprocess import pseudo_labels

    xs, ys = [], []
    rx, ry = [], []
    index = {c: k for k, c in enumerate(classes)}
    for v in videos:
        mine = [t for t in v.truth if t.type == kind]
        p = len(v.features)
        xs.append(v.features)
        ys.append(pseudo_labels(p, [(t.onset, t.offset) for t in mine], kprime))
        for t in mine:
            if t.emotion in index and t.onset < p:
                sl = slice(t.onset, min(t.offset, p - 1) + 1)
                rx.append(v.features[sl])
                ry.append(np.full(sl.stop - sl.start, index[t.emotion], dtype=np.int64))
    x = np.concatenate(xs)
    y = np.concatenate(ys).astype(np.float32)
    if not (y > 0).any():
        raise ParameterError(f"No training frame of type {kind!r} is inside an interval.")
    keep = ratio_subsample(y.astype(np.int64), ratio=float(settings["ratio"]), seed=seed)
    n_classes = max(1, len(classes))
    spotter = _seeded(lambda: MEAN(n_classes, head="spotting"), seed)
    # the checkpoint names carry a digest of the training data, so that a run in a folder
    # that holds another run's checkpoints (other store, k', type store or emotions)
    # trains afresh instead of resuming the other run's networks
    digest = _digest(x[keep], y[keep], *rx, *ry, np.array([kprime, n_classes]),
                     np.frombuffer("\n".join(classes).encode(), dtype=np.uint8))
    ck = (lambda name: None) if ckpt_dir is None else (
        lambda name: ckpt_dir / f"{tag}-{kind or 'all'}-{digest}-{name}.safetensors")
    hist = {"spotting": _fit_quiet(spotter, x[keep], y[keep], loss="mse",
                                   epochs=settings["spot_epochs"], settings=settings,
                                   seed=seed, ckpt=ck("spotting"))["epochs"]}
    recognizer = None
    if rx and len(classes) > 1:
        if settings["transfer"]:
            recognizer = spotter
            recognizer.freeze_shared(True)
        else:
            recognizer = _seeded(lambda: MEAN(n_classes), seed + 1)
        recognizer.head = "recognition"
        hist["recognition"] = _fit_quiet(
            recognizer, np.concatenate(rx), np.concatenate(ry), loss="ce",
            epochs=settings["recog_epochs"], settings=settings, seed=seed + 1,
            ckpt=ck("recognition"))["epochs"]
    logger.info("spot: %s %s: %d spotting frames (%d in intervals), %d recognition frames",
                tag, kind or "all", int(keep.size), int((y[keep] > 0).sum()),
                int(sum(len(r) for r in ry)))
    return {"spotter": spotter, "recognizer": recognizer, "history": hist,
            "checkpoints": {"spotting": ck("spotting"),
                            "recognition": ck("recognition") if recognizer is not None
                            else None}}


def spot_with(models: Mapping[str | None, Mapping[str, Any]], video: SpotVideo, *,
              kprimes: Mapping[str | None, int], classes: Sequence[str], p: float,
              long: bool, device: str,
              per_type: Mapping[str | None, SpotVideo] | None = None
              ) -> tuple[list[Interval], dict[str, Any]]:
    """Spotted intervals of one video with every type's model, and the curves to plot.

    ``per_type`` gives a type's own copy of the video (features of its own
    flow gap, ``--type-store``); other types use ``video``.
    """
    from ..spot.postprocess import spot_video

    found: list[Interval] = []
    curves: dict[str, Any] = {}
    for kind, m in models.items():
        kp = kprimes[kind]
        feats = (per_type or {}).get(kind, video).features
        scores = _predict_head(m["spotter"], feats, "spotting", device)
        frame_cls = None
        if m.get("recognizer") is not None:
            frame_cls = _predict_head(m["recognizer"], feats, "recognition", device)
        spots, smooth, thr = spot_video(scores, kp, n_frames=video.n_frames, p=p, long=long,
                                        frame_classes=frame_cls)
        for s in spots:
            found.append(Interval(video.subject, video.video, s.onset, s.offset, type=kind,
                                  emotion=(classes[s.emotion] if s.emotion is not None
                                           and classes else None),
                                  confidence=s.confidence, apex=s.peak))
        curves[kind or "all"] = {"scores": scores, "smoothed": smooth, "threshold": thr,
                                 "kprime": kp,
                                 "gap": (per_type or {}).get(kind, video).gap}
    found.sort(key=lambda iv: (iv.onset, iv.offset))
    return found, curves


def plot_video(path: Path, video: SpotVideo, curves: Mapping[str, Any],
               spotted: Sequence[Interval]) -> None:
    """PNG: smoothed score per type, threshold, spotted (top) and true (bottom) intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def spot_loso(store_path: str | os.PathLike, out_dir: str | os.PathLike, *,
              emotions: str | os.PathLike | None = None,
              kprime: Mapping[str, int] | int | None = None, p: float = 0.55,
              long: bool | None = None, spot_epochs: int = 200, recog_epochs: int = 800,
              batch_size: int = 32, lr: float = 5e-4, ratio: float = 8.0,
              transfer: bool = True, device: str = "cpu", seed: int = 0,
              deterministic: bool = True, final: bool = False, plots: bool = True,
              type_stores: Mapping[str, str] | str | None = None) -> Path:
    """MEAN's LOSO spot-then-recognize evaluation of a gap-flow store.

    ``type_stores`` (``{type: path}`` or ``"macro=PATH"``) gives an expression
    type's network the features of another gap-flow store of the same videos
    (SOFTNet's per-type flow gap, e.g. k = k' for macro-expressions); the
    intervals always come from ``store_path``.

    Writes to ``out_dir``: ``intervals.csv`` / ``intervals.json`` (spotted
    intervals of every held-out video, with type, emotion, confidence and
    apex), ``truth.csv`` (the intervals scored against), ``results.json`` (the
    metric table of :func:`mexkit.spot.evaluate_intervals`, settings, k' per
    type, per-fold histories), ``plots/<subject>_<video>.png``, fold
    checkpoints under ``checkpoints/``, and with ``final`` the models trained
    on every subject (``final/``, ``spot_model.json``) for ``mexkit spot``.

    Returns
    -------
    Path
        ``out_dir / "results.json"``.
    """
    import json
    import time

    from .. import __version__
    from ..io.intervals import write_intervals, write_intervals_json

    check_range("p", float(p), 0.0, 1.0)
    videos = load_spot_videos(store_path, emotions=emotions)
    types = _types(videos)
    kprimes = _kprimes(videos, types, kprime)
    type_stores = parse_type_stores(type_stores)
    by_type = _type_videos(videos, types, type_stores, emotions)
    if long is None:
        long = any(len(v.truth) > 1 for v in videos)
    classes = sorted({t.emotion for v in videos for t in v.truth if t.emotion})
    subjects = sorted({v.subject for v in videos})
    if len(subjects) < 2:
        raise ParameterError(f"LOSO needs at least two subjects; {store_path} has "
                             f"{len(subjects)}.")
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if plots:
        (out / "plots").mkdir(exist_ok=True)
    settings = {"spot_epochs": int(spot_epochs), "recog_epochs": int(recog_epochs),
                "batch_size": int(batch_size), "lr": float(lr), "ratio": float(ratio),
                "transfer": bool(transfer), "device": device,
                "deterministic": bool(deterministic)}
    t0 = time.perf_counter()
    spotted: list[Interval] = []
    histories: dict[str, Any] = {}
    for fold, subject in enumerate(subjects):
        test = [n for n, v in enumerate(videos) if v.subject == subject]
        models = {}
        for kind in types:
            train = [v for v in by_type[kind] if v.subject != subject]
            m = train_spotter(train, kind=kind, kprime=kprimes[kind], classes=classes,
                              settings=settings, seed=seed + 1000 * fold,
                              ckpt_dir=out / "checkpoints", tag=f"fold{fold:02d}-{_safe(subject)}")
            models[kind] = m
            histories[f"{subject}/{kind or 'all'}"] = m["history"]
        for n in test:
            v = videos[n]
            own = {kind: by_type[kind][n] for kind in types}
            found, curves = spot_with(models, v, kprimes=kprimes, classes=classes, p=p,
                                      long=long, device=device, per_type=own)
            spotted.extend(found)
            if plots:
                plot_video(out / "plots" / f"{_safe(v.subject)}_{_safe(v.video)}.png", v,
                           curves, found)
        logger.info("spot: fold %d/%d (subject %s) done", fold + 1, len(subjects), subject)
    truth = [t for v in videos for t in v.truth]
    report = evaluate_intervals(truth, spotted, classes=classes or None)
    write_intervals(out / "intervals.csv", spotted)
    write_intervals_json(out / "intervals.json", spotted, kprime=_keyed(kprimes), p=p,
                         long=long, classes=classes)
    write_intervals(out / "truth.csv", truth)
    results = {
        "task": "spot-then-recognize", "model": "mean", "protocol": "loso",
        "store": str(store_path), "mexkit_version": __version__,
        "types": [t or "all" for t in types], "kprime": _keyed(kprimes), "p": p,
        "long_videos": long, "classes": classes, "settings": settings, "seed": seed,
        "gap": {(k or "all"): by_type[k][0].gap for k in types},
        "type_stores": type_stores,
        "subjects": subjects, "seconds": round(time.perf_counter() - t0, 1),
        "metrics": report, "histories": histories,
    }
    if final:
        models = {}
        (out / "final").mkdir(exist_ok=True)
        for kind in types:
            models[kind] = train_spotter(by_type[kind], kind=kind, kprime=kprimes[kind],
                                         classes=classes, settings=settings, seed=seed,
                                         ckpt_dir=out / "final", tag="final")
        results["final"] = _save_final(
            out, models, kprimes, classes, p, long, {k: by_type[k][0].gap for k in types},
            {k: store_preprocessing(type_stores.get(k or "", store_path)) for k in types})
    path = out / "results.json"
    _write_atomic(path, json.dumps(jsonable(results), indent=1) + "\n")
    return path


def _keyed(d: Mapping[str | None, Any]) -> dict[str, Any]:
    return {(k or "all"): v for k, v in d.items()}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _relative(path: Path | None, root: Path) -> str | None:
    return None if path is None else Path(path).relative_to(root).as_posix()


def _save_final(out: Path, models: Mapping[str | None, Mapping[str, Any]],
                kprimes: Mapping[str | None, int], classes: Sequence[str], p: float,
                long: bool, gaps: Mapping[str | None, int],
                preprocessing: Mapping[str | None, Mapping[str, Any]] | None = None
                ) -> dict[str, Any]:
    import json

    entry = {"format": "mexkit-spot-model", "version": 1, "model": "mean",
             "classes": list(classes), "p": p, "long_videos": long, "types": {}}
    for kind, m in models.items():
        name = kind or "all"
        entry["types"][name] = {
            "kind": kind, "kprime": int(kprimes[kind]), "gap": int(gaps[kind]),
            "preprocessing": dict((preprocessing or {}).get(kind) or {}),
            "spotter": _relative(m["checkpoints"]["spotting"], out),
            "recognizer": _relative(m["checkpoints"]["recognition"], out),
        }
    _write_atomic(out / "spot_model.json", json.dumps(entry, indent=1) + "\n")
    return entry


def load_spot_model(results_dir: str | os.PathLike, *, device: str = "cpu"
                    ) -> tuple[dict[str | None, dict[str, Any]], dict[str, Any]]:
    """The final spotting models of a training run (``spot_model.json``)."""
    import json

    from ..errors import StoreError
    from ..learn.train import load_checkpoint
    from ..models.mean import MEAN

    root = Path(results_dir)
    meta_path = root / "spot_model.json"
    if not meta_path.is_file():
        raise StoreError(f"{root}: no spot_model.json; train with `mexkit train STORE "
                         "--model mean --final` on a long-video store first.")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise StoreError(f"{meta_path}: not readable JSON ({exc}).") from exc
    if meta.get("format") != "mexkit-spot-model":
        raise StoreError(f"{meta_path}: not a mexkit spotting model description.")
    n_classes = max(1, len(meta["classes"]))
    models: dict[str | None, dict[str, Any]] = {}
    for entry in meta["types"].values():
        m: dict[str, Any] = {}
        for role in ("spotter", "recognizer"):
            if entry.get(role):
                net = MEAN(n_classes)
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
    """Apply trained spotting models to every video of a gap-flow store.

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
    from ..io.intervals import write_intervals, write_intervals_json

    models, meta = load_spot_model(results_dir, device=device)
    kprimes = {e["kind"]: int(e["kprime"]) for e in meta["types"].values()}
    p = float(meta["p"] if p is None else p)
    check_range("p", p, 0.0, 1.0)
    videos = load_spot_videos(store_path, emotions=emotions)
    types = [e["kind"] for e in meta["types"].values()]
    stores = parse_type_stores(type_stores)
    by_type = _type_videos(videos, types, stores, emotions)
    for e in meta["types"].values():
        name = e["kind"] or "all"
        where = stores.get(e["kind"] or "", str(store_path))
        gaps = sorted({v.gap for v in by_type[e["kind"]]})
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
    for n, v in enumerate(videos):
        found, curves = spot_with(models, v, kprimes=kprimes, classes=meta["classes"], p=p,
                                  long=bool(meta["long_videos"]), device=device,
                                  per_type={k: by_type[k][n] for k in types})
        spotted.extend(found)
        if plots:
            plot_video(plot_dir / f"{_safe(v.subject)}_{_safe(v.video)}.png", v, curves, found)
    write_intervals(output, spotted)
    write_intervals_json(output.with_suffix(".json"), spotted, kprime=_keyed(kprimes), p=p,
                         classes=meta["classes"], model=str(results_dir))
    truth = [t for v in videos for t in v.truth]
    report = (evaluate_intervals(truth, spotted, classes=meta["classes"] or None)
              if truth else None)
    return output, report


def is_spotting_store(store_path: str | os.PathLike) -> bool:
    """True when the store holds MEAN features of ``(j, j + k)`` pairs of whole videos."""
    from ..io.store import open_store

    with open_store(store_path) as store:
        for sample in store:
            return sample.attrs.get("pair_mode") == "gap" and "mean_regions" in sample
    return False


def train_spotting(store_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                   options: Mapping[str, Any], protocol: str | None = None,
                   epochs: int | None = None, batch_size: int | None = None,
                   lr: float | None = None, device: str = "auto", seed: int = 0,
                   deterministic: bool = True, final: bool = False) -> Path:
    """`mexkit train --model mean` on a spotting store: :func:`spot_loso` with MEAN's defaults.

    ``options`` are MEAN's model options (``no_transfer``, ``spot_epochs``,
    ``p``, ``kprime``, ``emotions``, ``type_store``); ``epochs``, ``batch_size`` and ``lr``
    override the paper's recognition / both stages' settings.
    """
    from ..models.registry import get_spec, model_options

    if protocol not in (None, "loso"):
        raise ParameterError(
            f"Invalid value for the 'protocol' parameter: MEAN's spot-then-recognize "
            f"evaluation on a store of whole videos is LOSO, but got {protocol!r}.")
    spec = get_spec("mean")
    opts = model_options(spec, options)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    rec, pre = spec.defaults, spec.pretrain
    return spot_loso(
        store_path, out_dir, emotions=opts["emotions"] or None,
        type_stores=opts.get("type_store") or None,
        kprime=int(opts["kprime"]) or None, p=float(opts["p"]),
        spot_epochs=int(opts["spot_epochs"] or pre.epochs),
        recog_epochs=int(epochs or rec.epochs), batch_size=int(batch_size or pre.batch_size),
        lr=float(lr or pre.lr), transfer=not opts["no_transfer"], device=device, seed=seed,
        deterministic=deterministic, final=final)
