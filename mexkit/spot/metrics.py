"""Spotting and spot-then-recognize metrics: F1, AP@[.5:.95], ASR, analysis F1, STRS.

Conventions (each is also written into every report under ``"conventions"``):

- Intervals are inclusive 0-based ``[onset, offset]``; a length is
  ``offset - onset + 1`` and ``IoU = |A n B| / |A u B|`` counts frames.
- Matching is one-to-one and greedy by confidence: predictions are visited
  from the highest confidence down (equal or missing confidences keep the
  order of the input, a stable sort); each takes the still unmatched ground
  truth of the same subject and video with the highest IoU, if that IoU is at
  least the threshold (IoU ties go to the earlier truth onset, then to the
  earlier truth in the input).  A prediction matches at most one truth and a
  truth at most one prediction.  This is the COCO rule that AP needs, and the
  same matching gives the F1 at IoU 0.5.
- Types (``micro``, ``macro``, ...): a prediction that carries a type is
  matched only with truths of that type; an untyped prediction may match a
  truth of any type.  Per type, TP and FN count the truths of that type; FP
  count the unmatched predictions of that type.  When any prediction is
  untyped, its false positives belong to no type, so per-type precision and
  F1 are undefined (NaN) and a note says so; overall counts are the sums over
  all intervals (MEGC's "overall" row).
- ``F1 = 2 TP / (2 TP + FP + FN)`` (MEAN eq. 16), ``precision = TP / (TP + FP)``,
  ``recall = TP / (TP + FN)``; 0/0 is NaN.
- AP at one IoU threshold: predictions of all videos ranked by confidence,
  precision made monotone (the running maximum from the right) and summed
  over the recall steps (eq. 17, all-point interpolation); AP@[.5:.95] is the
  mean over IoU 0.50, 0.55, ..., 0.95.  Without confidences the ranking is the
  file order and the report says so.
- ASR (eq. 13, short videos): per video with ground truth, the apex of its
  most confident prediction must lie in a truth ``[onset, offset]`` (inclusive;
  the paper writes the interval with round brackets); videos without a
  prediction count as misses.
- Analysis metrics (eqs. 18-23) use only the true-positive pairs whose truth
  and prediction both carry an emotion: accuracy = correct / pairs;
  per-class precision and recall; macro precision and recall (eqs. 19-20) and
  their harmonic mean, the analysis F1 (eq. 21); UF1 (eq. 22) and UAR (eq. 23).
  Undefined per-class values (0/0) are NaN and left out of the means, as in
  :mod:`mexkit.learn.metrics`.
- ``STRS = spotting F1 x analysis F1`` (eq. 24), with the overall spotting F1
  at IoU 0.5.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos",
   Signal Processing: Image Communication 2023, eqs. 13-24.
.. [2] J. Li et al., "Spotting micro-expressions on long videos sequences",
   FG 2019 (the IoU >= 0.5 rule adopted by MEGC 2020).
.. [3] T.-Y. Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014
   (AP over IoU thresholds 0.5:0.05:0.95).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import check_range
from ..errors import ParameterError

__all__ = [
    "Interval",
    "CONVENTIONS",
    "interval_iou",
    "match_intervals",
    "spotting_counts",
    "spotting_report",
    "average_precision",
    "apex_spotting_rate",
    "analysis_report",
    "strs",
    "evaluate_intervals",
]

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

CONVENTIONS = (
    "Inclusive frame intervals; IoU counts frames. One-to-one matching, greedy by "
    "confidence (stable for ties and missing confidences), each prediction taking the "
    "unmatched truth of its video with the highest IoU >= threshold. Typed predictions "
    "match truths of their type only. F1 = 2TP/(2TP+FP+FN); 0/0 is NaN. AP: all-point "
    "interpolated precision over the confidence ranking of all videos, averaged over IoU "
    "0.50:0.05:0.95. Analysis metrics on true-positive pairs with emotions: analysis F1 = "
    "harmonic mean of macro precision and macro recall (eqs. 19-21), UF1, UAR; undefined "
    "per-class values are left out of the means. STRS = spotting F1 x analysis F1."
)


@dataclass(frozen=True)
class Interval:
    """One ground-truth or predicted expression interval.

    Attributes
    ----------
    subject, video : str
        Identify the video (a video name is unique within its subject).
    onset, offset : int
        Inclusive 0-based frame positions, ``0 <= onset <= offset``.
    type : str or None
        Expression type (``"micro"``, ``"macro"``), when known.
    emotion : str or None
        Emotion class, when known.
    confidence : float or None
        A prediction's score (higher = more confident), used for ranking.
    apex : int or None
        The apex (spotted peak) frame, when known.
    """

    subject: str
    video: str
    onset: int
    offset: int
    type: str | None = None
    emotion: str | None = None
    confidence: float | None = None
    apex: int | None = None

    def __post_init__(self) -> None:
        if self.onset < 0 or self.offset < self.onset:
            raise ParameterError(
                f"Invalid interval [{self.onset}, {self.offset}] of video "
                f"{self.subject}/{self.video}: frames must satisfy 0 <= onset <= offset.")

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.video)

    @property
    def length(self) -> int:
        return self.offset - self.onset + 1


def interval_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Frame-count IoU of two inclusive intervals ``(onset, offset)``.

    >>> interval_iou((0, 9), (5, 14))   # 5 shared frames of 15
    0.3333333333333333
    """
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def _rank(pred: Sequence[Interval]) -> list[int]:
    conf = [-(p.confidence if p.confidence is not None else -math.inf) for p in pred]
    if any(p.confidence is not None and not math.isfinite(p.confidence) for p in pred):
        raise ParameterError("Invalid value for a prediction's confidence: NaN or inf.")
    return sorted(range(len(pred)), key=lambda i: conf[i])  # stable


def match_intervals(truth: Sequence[Interval], pred: Sequence[Interval], *,
                    iou_threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one greedy matching by confidence (see the module conventions).

    Parameters
    ----------
    truth, pred : sequence of Interval
        Ground truth and predictions (any videos, in any order).
    iou_threshold : float
        Minimum IoU in (0, 1] for a match.

    Returns
    -------
    list of (pred_index, truth_index, iou)
        In the order the predictions were visited (most confident first).
    """
    check_range("iou_threshold", float(iou_threshold), 0.0, 1.0, low_open=True)
    by_video: dict[tuple[str, str], list[int]] = defaultdict(list)
    for j, t in enumerate(truth):
        by_video[t.key].append(j)
    taken = [False] * len(truth)
    out: list[tuple[int, int, float]] = []
    for i in _rank(pred):
        p = pred[i]
        best, best_iou = -1, -1.0
        for j in by_video.get(p.key, ()):
            t = truth[j]
            if taken[j] or (p.type is not None and t.type != p.type):
                continue
            v = interval_iou((p.onset, p.offset), (t.onset, t.offset))
            if v < iou_threshold:
                continue
            if v > best_iou or (v == best_iou and t.onset < truth[best].onset):
                best, best_iou = j, v
        if best >= 0:
            taken[best] = True
            out.append((i, best, best_iou))
    return out


def spotting_counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    """TP, FP, FN with precision, recall and F1 (eqs. 15-16); 0/0 is NaN."""
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn),
            "precision": _div(tp, tp + fp), "recall": _div(tp, tp + fn),
            "f1": _div(2 * tp, 2 * tp + fp + fn)}


def spotting_report(truth: Sequence[Interval], pred: Sequence[Interval], *,
                    iou_threshold: float = 0.5,
                    matches: list[tuple[int, int, float]] | None = None) -> dict[str, Any]:
    """Overall and per-type TP, FP, FN, precision, recall and F1 at one IoU threshold.

    Returns
    -------
    dict
        ``{"overall": {...}, "per_type": {type: {...}}, "notes": [...]}``;
        truths without a type are counted under ``"untyped"``.
    """
    if matches is None:
        matches = match_intervals(truth, pred, iou_threshold=iou_threshold)
    matched_p = {i for i, _, _ in matches}
    matched_t = {j for _, j, _ in matches}
    types = sorted({t.type or "untyped" for t in truth} | {p.type for p in pred if p.type})
    untyped_pred = any(p.type is None for p in pred)
    per_type = {}
    for ty in types:
        tp = sum(1 for j in matched_t if (truth[j].type or "untyped") == ty)
        fn = sum(1 for j, t in enumerate(truth)
                 if (t.type or "untyped") == ty and j not in matched_t)
        fp = sum(1 for i, p in enumerate(pred) if p.type == ty and i not in matched_p)
        row = spotting_counts(tp, fp, fn)
        if untyped_pred:
            row["fp"] = None
            row["precision"] = row["f1"] = math.nan
        per_type[ty] = row
    overall = spotting_counts(len(matches), len(pred) - len(matches),
                              len(truth) - len(matches))
    notes = []
    if untyped_pred and types:
        notes.append("some predictions carry no type: their false positives belong to no "
                     "type, so per-type FP, precision and F1 are undefined")
    return {"iou_threshold": float(iou_threshold), "overall": overall, "per_type": per_type,
            "n_truth": len(truth), "n_pred": len(pred), "notes": notes}


def average_precision(truth: Sequence[Interval], pred: Sequence[Interval], *,
                      thresholds: Iterable[float] = IOU_THRESHOLDS) -> dict[str, Any]:
    """AP per IoU threshold and their mean, AP@[.5:.95] (eq. 17).

    Returns
    -------
    dict
        ``{"ap": mean, "per_threshold": {"0.5": ap, ...}, "ranked_by":
        "confidence" | "file order"}``; NaN when there is no ground truth.
    """
    ranked_by = ("confidence" if pred and all(p.confidence is not None for p in pred)
                 else "file order")
    order = _rank(pred)
    per = {}
    for thr in thresholds:
        hits = np.zeros(len(pred), dtype=bool)
        for i, _, _ in match_intervals(truth, pred, iou_threshold=thr):
            hits[i] = True
        if not truth:
            per[f"{thr:.2f}"] = math.nan
            continue
        h = hits[order]
        ctp = np.cumsum(h)
        prec = ctp / np.arange(1, len(h) + 1)
        rec = ctp / len(truth)
        env = np.maximum.accumulate(prec[::-1])[::-1] if len(h) else prec
        prev = np.concatenate([[0.0], rec[:-1]]) if len(h) else rec
        per[f"{thr:.2f}"] = float(np.sum((rec - prev) * env))
    vals = list(per.values())
    ap = math.nan if not vals or any(math.isnan(v) for v in vals) else float(np.mean(vals))
    return {"ap": ap, "per_threshold": per, "ranked_by": ranked_by}


def apex_spotting_rate(truth: Sequence[Interval], pred: Sequence[Interval]) -> dict[str, Any]:
    """ASR (eq. 13): share of videos whose spotted apex lies in a true interval.

    Each video with ground truth counts once; its most confident prediction's
    ``apex`` (or, without an apex, the middle frame of the predicted
    interval, rounded down) must lie in ``[onset, offset]`` of one of the
    video's truths.

    Returns
    -------
    dict
        ``{"asr": rate, "hits": h, "videos": n, "apex_from": "apex" | "middle"}``.
    """
    videos: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for t in truth:
        videos[t.key].append(t)
    best: dict[tuple[str, str], Interval] = {}
    for i in _rank(pred):
        best.setdefault(pred[i].key, pred[i])
    hits = 0
    middle = False
    for key, ts in videos.items():
        p = best.get(key)
        if p is None:
            continue
        if p.apex is None:
            middle = True
        a = p.apex if p.apex is not None else (p.onset + p.offset) // 2
        hits += any(t.onset <= a <= t.offset for t in ts)
    return {"asr": _div(hits, len(videos)), "hits": hits, "videos": len(videos),
            "apex_from": "middle" if middle else "apex"}


def analysis_report(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], *,
                    classes: Sequence[Hashable] | None = None) -> dict[str, Any]:
    """Recognition metrics of the spotted true positives (eqs. 18-23).

    Parameters
    ----------
    y_true, y_pred : sequence
        True and predicted emotions of the true-positive intervals.
    classes : sequence, optional
        The label scheme's classes; default: the sorted union of both lists.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``precision`` (eq. 20), ``recall`` (eq. 19),
        ``f1`` (eq. 21), ``uf1`` (eq. 22), ``uar`` (eq. 23), ``per_class`` and
        the ``confusion`` matrix (rows true, columns predicted) over ``classes``.
    """
    if len(y_true) != len(y_pred):
        raise ParameterError(
            f"Invalid analysis input: {len(y_true)} true and {len(y_pred)} predicted labels.")
    if classes is None:
        classes = sorted({str(c) for c in y_true} | {str(c) for c in y_pred})
        y_true = [str(c) for c in y_true]
        y_pred = [str(c) for c in y_pred]
    classes = list(classes)
    index = {c: k for k, c in enumerate(classes)}
    unknown = [c for c in list(y_true) + list(y_pred) if c not in index]
    if unknown:
        raise ParameterError(
            f"Invalid emotion {unknown[0]!r}: it is not one of the classes {classes}.")
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[index[t], index[p]] += 1
    tp = np.diag(cm).astype(float)
    n_true = cm.sum(axis=1).astype(float)
    n_pred = cm.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), np.nan)
        rec = np.where(n_true > 0, tp / np.maximum(n_true, 1), np.nan)
        denom = n_true + n_pred
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)

    def mean(v: np.ndarray) -> float:
        v = v[~np.isnan(v)]
        return float(v.mean()) if v.size else math.nan

    p_macro, r_macro = mean(prec), mean(rec)
    f1_a = (2 * p_macro * r_macro / (p_macro + r_macro)
            if p_macro + r_macro > 0 else (0.0 if p_macro == 0 and r_macro == 0 else math.nan))
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": _div(float(tp.sum()), n),
        "precision": p_macro,
        "recall": r_macro,
        "f1": f1_a,
        "uf1": mean(f1),
        "uar": mean(rec),
        "classes": [str(c) for c in classes],
        "per_class": {str(c): {"precision": float(prec[k]), "recall": float(rec[k]),
                               "f1": float(f1[k]), "support": int(n_true[k])}
                      for k, c in enumerate(classes)},
        "confusion": cm.tolist(),
    }


def strs(spotting_f1: float, analysis_f1: float) -> float:
    """Spot-Then-Recognize Score: spotting F1 x analysis F1 (eq. 24)."""
    return float(spotting_f1) * float(analysis_f1)


def evaluate_intervals(truth: Sequence[Interval], pred: Sequence[Interval], *,
                       iou_threshold: float = 0.5,
                       classes: Sequence[Hashable] | None = None) -> dict[str, Any]:
    """The full table: spotting at ``iou_threshold``, AP@[.5:.95], ASR, analysis and STRS.

    Analysis uses the true positives at ``iou_threshold`` whose truth and
    prediction both carry an emotion; with none, analysis and STRS are None.
    """
    matches = match_intervals(truth, pred, iou_threshold=iou_threshold)
    spotting = spotting_report(truth, pred, iou_threshold=iou_threshold, matches=matches)
    pairs = [(truth[j].emotion, pred[i].emotion) for i, j, _ in matches
             if truth[j].emotion is not None and pred[i].emotion is not None]
    analysis = None
    score = None
    if pairs:
        analysis = analysis_report([a for a, _ in pairs], [b for _, b in pairs],
                                   classes=classes)
        score = strs(spotting["overall"]["f1"], analysis["f1"])
    per_video = max((sum(1 for t in truth if t.key == k) for k in {t.key for t in truth}),
                    default=0)
    return {
        "spotting": spotting,
        "ap": average_precision(truth, pred),
        "asr": apex_spotting_rate(truth, pred) if per_video == 1 else None,
        "analysis": analysis,
        "strs": score,
        "matches": [{"pred": i, "truth": j, "iou": v} for i, j, v in matches],
        "conventions": CONVENTIONS,
    }
