"""Spotting and spot-then-recognize metrics: F1, AP@[.5:.95], ASR, analysis F1, STRS.

Conventions (each is also written into every report under ``"conventions"``):

- Intervals are inclusive 0-based ``[onset, offset]``; a length is
  ``offset - onset + 1`` and ``IoU = |A n B| / |A u B|`` counts frames.  A
  predicted onset may be negative (MEAN's spotter writes ``peak - k'`` for a
  peak near the start of a video): the interval is scored as written, its
  frames before the video's first frame counting in the union, as MEAN's
  STRS scorer counts them.
- Matching is one-to-one and greedy by confidence: predictions are visited
  from the highest confidence down (equal or missing confidences keep the
  order of the input, a stable sort); each takes the still unmatched ground
  truth of the same subject and video with the highest IoU, if that IoU is at
  least the threshold (IoU ties go to the earlier truth onset, then to the
  earlier truth in the input).  A prediction matches at most one truth and a
  truth at most one prediction.  This is the COCO rule that AP needs, and the
  same matching gives the F1 at IoU 0.5.  The candidates of a prediction are
  found by sorting each video's truths by onset and searching the window of
  onsets that can reach the threshold (sort and sweep), so the cost grows
  with the number of overlapping pairs, not with truths x predictions.
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
  most confident prediction must lie strictly inside a truth:
  ``onset < apex < offset`` (eq. 13's open interval, as MEAN's code tests
  it); videos without a prediction count as misses.
- Analysis metrics (eqs. 18-23) use the true-positive pairs whose truth
  carries one of the C classes (by default the emotions of all the truth
  intervals, as MEAN's STRS scorer takes them): accuracy = correct / pairs;
  per class c, ``TP_c`` (true c, predicted c), ``FP_c`` (predicted c, true
  another class), ``FN_c`` (true c, predicted otherwise); macro precision and
  recall are sums over all C classes divided by C (eqs. 19-20), a 0/0 term
  counting 0 (as the scorer does); the analysis F1 is their harmonic mean
  (eq. 21); UF1 (eq. 22) and UAR = macro recall (eq. 23).  A prediction
  without an emotion, or with one outside the classes, is a wrong prediction
  (it adds to ``FN_c`` of its truth's class and to no ``FP_c``).
- ``STRS = spotting F1 x analysis F1`` (eq. 24), with the spotting F1 at
  IoU 0.5.
- Expression types side by side: :func:`evaluate_intervals` gives spotting,
  AP, analysis and STRS per type (``micro``, ``macro``) and overall under
  ``by_type``, and names the row comparable to MEAN's tables under
  ``comparable_to_paper``: MEAN's long-video figures (Tables 4-5) are
  micro-expression figures.

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
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
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
    "type_table",
    "evaluate_intervals",
]

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

CONVENTIONS = (
    "Inclusive frame intervals; IoU counts frames; a negative predicted onset is scored as "
    "written (as MEAN's STRS scorer does). One-to-one matching, greedy by confidence "
    "(stable for ties and missing confidences), each prediction taking the unmatched truth "
    "of its video with the highest IoU >= threshold. Typed predictions match truths of "
    "their type only. F1 = 2TP/(2TP+FP+FN); 0/0 is NaN. AP: all-point interpolated "
    "precision over the confidence ranking of all videos, averaged over IoU "
    "0.50:0.05:0.95. ASR: apex strictly inside the truth (eq. 13). Analysis metrics on the "
    "true-positive pairs whose truth has one of the C classes (default: the truth's "
    "emotions): macro precision and recall over all C classes, a 0/0 class term counting "
    "0 (eqs. 19-20, as MEAN's scorer); analysis F1 = their harmonic mean (eq. 21), UF1, "
    "UAR = macro recall. STRS = spotting F1 x analysis F1 (eq. 24), per type and overall."
)


@dataclass(frozen=True)
class Interval:
    """One ground-truth or predicted expression interval.

    Attributes
    ----------
    subject, video : str
        Identify the video (a video name is unique within its subject).
    onset, offset : int
        Inclusive 0-based frame positions, ``onset <= offset``.  A predicted
        onset may be negative (MEAN's spotter writes ``peak - k'``); readers
        of ground truth refuse negative frames
        (:func:`mexkit.io.intervals.read_intervals`).
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
        if self.offset < self.onset:
            raise ParameterError(
                f"Invalid interval [{self.onset}, {self.offset}] of video "
                f"{self.subject}/{self.video}: the offset must not come before the onset.")

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.video)

    @property
    def length(self) -> int:
        return self.offset - self.onset + 1


def interval_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Frame-count IoU of two inclusive intervals ``(onset, offset)``.

    Negative frames count like any other (MEAN's STRS scorer counts the
    frames ``onset ... offset`` of a predicted interval as written).

    >>> interval_iou((0, 9), (5, 14))   # 5 shared frames of 15
    0.3333333333333333
    >>> interval_iou((-3, 65), (30, 55))   # 26 shared frames of 69
    0.37681159420289856
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


#: Most candidate pairs held at once while matching (bounds memory on dense inputs).
_PAIRS_PER_CHUNK = 1 << 21


def _codes(values: Sequence[str | None], table: dict[str | None, int]) -> np.ndarray:
    return np.fromiter((table.setdefault(v, len(table)) for v in values), np.int64,
                       count=len(values))


def _match_many(truth: Sequence[Interval], pred: Sequence[Interval],
                thresholds: Sequence[float]) -> list[list[tuple[int, int, float]]]:
    """The greedy one-to-one matching at each threshold, by sort and sweep.

    Each video's truths are sorted by onset once.  A truth with IoU >= t
    against a prediction of length L is at most L / t frames long and
    overlaps it, so its onset lies in ``[onset - ceil(L / t), offset]``: a
    binary search over the sorted onsets finds every candidate, and IoU is
    computed for those only.  Predictions are taken in confidence order, in
    chunks of bounded candidate count; within a chunk the candidates of each
    prediction are sorted best first (highest IoU, then earlier truth onset,
    then earlier truth in the input: the tie rule of the module conventions)
    and each prediction takes its first untaken candidate, at every threshold
    with its own record of taken truths.  The result equals scanning every
    truth of the video for each prediction; the cost grows with the number
    of overlapping pairs instead of truths x predictions.
    """
    order = np.asarray(_rank(pred), dtype=np.int64)
    out: list[list[tuple[int, int, float]]] = [[] for _ in thresholds]
    if not truth or not pred:
        return out
    t_min = min(thresholds)
    videos: dict[tuple[str, str] | None, int] = {}
    t_vid = _codes([t.key for t in truth], videos)          # type: ignore[arg-type]
    p_vid = np.fromiter((videos.get(p.key, -1) for p in pred), np.int64, count=len(pred))
    t_on = np.fromiter((t.onset for t in truth), np.int64, count=len(truth))
    t_off = np.fromiter((t.offset for t in truth), np.int64, count=len(truth))
    p_on = np.fromiter((p.onset for p in pred), np.int64, count=len(pred))
    p_off = np.fromiter((p.offset for p in pred), np.int64, count=len(pred))
    kinds: dict[str | None, int] = {None: -1}
    t_kind = _codes([t.type for t in truth], kinds)
    p_kind = _codes([p.type for p in pred], kinds)
    p_len = p_off - p_on + 1
    lo = p_on - np.ceil(p_len / t_min).astype(np.int64)
    hi = p_off
    # one sorted key per truth: (video, onset), searchable for every prediction at once
    base = min(int(t_on.min()), int(lo.min()))
    span = max(int(t_on.max()), int(hi.max())) - base + 1
    t_sorted = np.lexsort((np.arange(len(truth)), t_on, t_vid))
    key = t_vid[t_sorted] * span + (t_on[t_sorted] - base)
    first = np.searchsorted(key, p_vid * span + (lo - base), side="left")
    last = np.searchsorted(key, p_vid * span + (hi - base), side="right")
    count = np.where(p_vid >= 0, last - first, 0)
    taken = [bytearray(len(truth)) for _ in thresholds]
    start = 0
    while start < len(order):
        # predictions order[start:stop], holding at most _PAIRS_PER_CHUNK pairs (or one)
        csum = np.cumsum(count[order[start:]])
        stop = start + max(1, int(np.searchsorted(csum, _PAIRS_PER_CHUNK, side="right")))
        idx = order[start:stop]
        n = count[idx]
        total = int(n.sum())
        if total:
            pos = np.repeat(np.arange(len(idx)), n)         # the chunk position of each pair
            rank_in = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
            j = t_sorted[np.repeat(first[idx], n) + rank_in]
            i = idx[pos]
            inter = np.minimum(t_off[j], p_off[i]) - np.maximum(t_on[j], p_on[i]) + 1
            union = (t_off[j] - t_on[j] + 1) + p_len[i] - inter
            iou = np.where(inter > 0, inter / union, 0.0)
            keep = (iou >= t_min) & ((p_kind[i] == -1) | (p_kind[i] == t_kind[j]))
            pos, j, iou = pos[keep], j[keep], iou[keep]
            best = np.lexsort((j, t_on[j], -iou, pos))
            pos, j, iou = pos[best], j[best], iou[best]
            ptr = np.searchsorted(pos, np.arange(len(idx) + 1)).tolist()
            jl, vl, il = j.tolist(), iou.tolist(), idx.tolist()
            for k, thr in enumerate(thresholds):
                tk, ok = taken[k], out[k]
                for c in range(len(il)):
                    for m in range(ptr[c], ptr[c + 1]):
                        v = vl[m]
                        if v < thr:
                            break                 # sorted by IoU, best first
                        if not tk[jl[m]]:
                            tk[jl[m]] = 1
                            ok.append((il[c], jl[m], v))
                            break
        start = stop
    return out


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

    Notes
    -----
    The result is that of visiting the predictions by confidence and scanning
    every truth of the video for the best unmatched one; the candidates are
    found by sort and sweep instead (:func:`_match_many`), so the cost grows
    with the number of overlapping pairs, not with truths x predictions.
    """
    check_range("iou_threshold", float(iou_threshold), 0.0, 1.0, low_open=True)
    return _match_many(truth, pred, [float(iou_threshold)])[0]


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
    tp_of: Counter[str] = Counter(truth[j].type or "untyped" for j in matched_t)
    n_of: Counter[str] = Counter(t.type or "untyped" for t in truth)
    fp_of: Counter[str] = Counter(p.type for i, p in enumerate(pred)
                                  if p.type and i not in matched_p)
    per_type = {}
    for ty in types:
        row = spotting_counts(tp_of[ty], fp_of[ty], n_of[ty] - tp_of[ty])
        if untyped_pred:
            row["fp"] = None
            row["precision"] = row["f1"] = math.nan
        per_type[ty] = row
    overall = spotting_counts(len(matches), len(pred) - len(matches),
                              len(truth) - len(matches))
    notes = []
    if untyped_pred and any(ty != "untyped" for ty in types):
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
    thresholds = [float(t) for t in thresholds]
    for thr in thresholds:
        check_range("iou_threshold", thr, 0.0, 1.0, low_open=True)
    ranked_by = ("confidence" if pred and all(p.confidence is not None for p in pred)
                 else "file order")
    order = _rank(pred)
    matched = _match_many(truth, pred, thresholds) if thresholds else []
    per = {}
    for thr, matches in zip(thresholds, matched, strict=True):
        if not truth:
            per[f"{thr:.2f}"] = math.nan
            continue
        hits = np.zeros(len(pred), dtype=bool)
        for i, _, _ in matches:
            hits[i] = True
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
    """ASR (eq. 13): share of videos whose spotted apex lies strictly inside a true interval.

    Each video with ground truth counts once; its most confident prediction's
    ``apex`` (or, without an apex, the middle frame of the predicted
    interval, rounded down: MEAN's ``peak - k'`` ... ``peak + k'`` has its
    peak there) must satisfy ``onset < apex < offset`` for one of the
    video's truths: eq. 13's open interval, which MEAN's code also tests.

    Returns
    -------
    dict
        ``{"asr": rate, "hits": h, "videos": n, "apex_from": "apex" | "middle",
        "interval": "open"}``.
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
        hits += any(t.onset < a < t.offset for t in ts)
    return {"asr": _div(hits, len(videos)), "hits": hits, "videos": len(videos),
            "apex_from": "middle" if middle else "apex", "interval": "open"}


def analysis_report(y_true: Sequence[Hashable], y_pred: Sequence[Hashable | None], *,
                    classes: Sequence[Hashable] | None = None) -> dict[str, Any]:
    """Recognition metrics of the spotted true positives (eqs. 18-23).

    Parameters
    ----------
    y_true, y_pred : sequence
        True and predicted emotions of the true-positive intervals.  A
        predicted emotion outside ``classes`` (or None) is a wrong prediction.
    classes : sequence, optional
        The C classes; default: the sorted union of both lists.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``tp`` (correct), ``fp`` (wrong predictions of a
        listed class), ``fn`` (wrong), ``precision`` (eq. 20), ``recall``
        (eq. 19), ``f1`` (eq. 21), ``uf1`` (eq. 22), ``uar`` (eq. 23),
        ``per_class``, ``unlisted_predictions`` and the ``confusion`` matrix
        (rows true, columns predicted) over ``classes``.

    Notes
    -----
    Macro precision and recall are sums over all C classes divided by C; a
    class term that is 0/0 (a class never predicted, or without a true
    sample) counts 0, as in MEAN's STRS scorer, so every class weighs 1/C.
    """
    if len(y_true) != len(y_pred):
        raise ParameterError(
            f"Invalid analysis input: {len(y_true)} true and {len(y_pred)} predicted labels.")
    if classes is None:
        classes = sorted({str(c) for c in y_true} | {str(c) for c in y_pred if c is not None})
        y_true = [str(c) for c in y_true]
        y_pred = [None if c is None else str(c) for c in y_pred]
    classes = list(classes)
    if not classes:
        raise ParameterError("Invalid analysis input: no class.")
    index = {c: k for k, c in enumerate(classes)}
    unknown = [c for c in y_true if c not in index]
    if unknown:
        raise ParameterError(
            f"Invalid emotion {unknown[0]!r}: it is not one of the classes {classes}.")
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    unlisted = 0
    for t, p in zip(y_true, y_pred, strict=True):
        if p in index:
            cm[index[t], index[p]] += 1
        else:
            unlisted += 1
    n = len(y_true)
    tp = np.diag(cm).astype(float)
    n_true = np.bincount([index[t] for t in y_true], minlength=len(classes)).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = n_true - tp

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    prec = ratio(tp, tp + fp)
    rec = ratio(tp, tp + fn)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    p_macro, r_macro = float(prec.mean()), float(rec.mean())
    f1_a = 2 * p_macro * r_macro / (p_macro + r_macro) if p_macro + r_macro > 0 else 0.0
    correct = int(tp.sum())
    return {
        "n": n,
        "accuracy": _div(float(correct), n),
        "tp": correct,
        "fp": int(fp.sum()),
        "fn": n - correct,
        "precision": p_macro,
        "recall": r_macro,
        "f1": f1_a if n else math.nan,
        "uf1": float(f1.mean()),
        "uar": r_macro,
        "classes": [str(c) for c in classes],
        "per_class": {str(c): {"precision": float(prec[k]), "recall": float(rec[k]),
                               "f1": float(f1[k]), "support": int(n_true[k])}
                      for k, c in enumerate(classes)},
        "unlisted_predictions": unlisted,
        "confusion": cm.tolist(),
    }


def strs(spotting_f1: float, analysis_f1: float) -> float:
    """Spot-Then-Recognize Score: spotting F1 x analysis F1 (eq. 24)."""
    return float(spotting_f1) * float(analysis_f1)


def _analysis(truth: Sequence[Interval], pred: Sequence[Interval],
              matches: Sequence[tuple[int, int, float]],
              classes: Sequence[Hashable] | None) -> dict[str, Any] | None:
    """Analysis of the matched pairs whose truth has one of ``classes`` (None: no pair)."""
    if classes is None:
        classes = sorted({t.emotion for t in truth if t.emotion is not None})
    classes = list(classes)
    if not classes or not any(p.emotion is not None for p in pred):
        return None
    listed = set(classes)
    pairs = [(truth[j].emotion, pred[i].emotion) for i, j, _ in matches
             if truth[j].emotion in listed]
    if not pairs:
        return None
    return analysis_report([a for a, _ in pairs], [b for _, b in pairs], classes=classes)


def type_table(truth: Sequence[Interval], pred: Sequence[Interval], *,
               iou_threshold: float = 0.5, classes: Sequence[Hashable] | None = None,
               matches: list[tuple[int, int, float]] | None = None,
               spotting: Mapping[str, Any] | None = None,
               ap: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Spotting, AP, analysis and STRS per expression type and overall, side by side.

    A type's row scores that type's truths and predictions as if alone (a
    typed prediction only ever matches a truth of its type, so this is the
    overall matching restricted to the type): what MEAN reports when it
    evaluates micro-expressions of long videos (Tables 4-5).  When some
    predictions carry no type, a type's FP, precision, F1, AP and STRS are
    undefined (None / NaN); its TP, FN, recall and analysis are still given.

    Parameters
    ----------
    truth, pred : sequence of Interval
    iou_threshold : float
    classes : sequence, optional
        The analysis classes of every row; default: the emotions of the
        row's truths.
    matches, spotting, ap : optional
        The overall matching, spotting report and AP when already computed.

    Returns
    -------
    dict
        ``{"rows": {type: row, ..., "overall": row}, "comparable_to_paper":
        {"row": name, "why": text}}``; a row is ``{"spotting": counts,
        "ap": float | None, "analysis": dict | None, "strs": float | None}``.
    """
    if matches is None:
        matches = match_intervals(truth, pred, iou_threshold=iou_threshold)
    if spotting is None:
        spotting = spotting_report(truth, pred, iou_threshold=iou_threshold, matches=matches)
    if ap is None:
        ap = average_precision(truth, pred)
    untyped_pred = any(p.type is None for p in pred)
    rows: dict[str, Any] = {}
    types = [ty for ty in spotting["per_type"] if ty != "untyped"]
    for ty in types:
        t_idx = [j for j, t in enumerate(truth) if t.type == ty]
        row_ap = None
        if not untyped_pred:
            p_sub = [p for p in pred if p.type == ty]
            row_ap = average_precision([truth[j] for j in t_idx], p_sub)["ap"]
        wanted = set(t_idx)
        sub = [m for m in matches if m[1] in wanted]
        an = _analysis(truth, pred, sub, classes if classes is not None else
                       sorted({truth[j].emotion for j in t_idx
                               if truth[j].emotion is not None}))
        counts = dict(spotting["per_type"][ty])
        f1 = counts["f1"]
        rows[ty] = {"spotting": counts, "ap": row_ap, "analysis": an,
                    "strs": None if an is None or f1 is None or math.isnan(f1)
                    else strs(f1, an["f1"])}
    an = _analysis(truth, pred, matches, classes)
    f1 = spotting["overall"]["f1"]
    rows["overall"] = {"spotting": dict(spotting["overall"]), "ap": ap["ap"], "analysis": an,
                       "strs": None if an is None else strs(f1, an["f1"])}
    if "micro" in rows:
        paper = {"row": "micro",
                 "why": "MEAN's long-video figures (Tables 4-5, CAS(ME)^2 and SAMM-LV) "
                        "score micro-expressions only; compare them with this row"}
    elif types:
        paper = {"row": "overall",
                 "why": "no truth is a micro-expression; MEAN's long-video figures "
                        "(Tables 4-5) are micro-expression figures, so no row here is "
                        "comparable to them"}
    else:
        paper = {"row": "overall",
                 "why": "the truth carries no expression type, so every interval is scored "
                        "together, as in MEAN's short-video figures (Tables 2, 5); its "
                        "long-video figures (Tables 4-5) score micro-expressions only, so "
                        "give long-video truth a type column"}
    return {"rows": rows, "comparable_to_paper": paper}


def evaluate_intervals(truth: Sequence[Interval], pred: Sequence[Interval], *,
                       iou_threshold: float = 0.5,
                       classes: Sequence[Hashable] | None = None) -> dict[str, Any]:
    """The full table: spotting at ``iou_threshold``, AP@[.5:.95], ASR, analysis and STRS.

    The top-level ``spotting``, ``ap``, ``analysis`` and ``strs`` are the
    overall figures; ``by_type`` holds them per expression type and overall
    side by side (:func:`type_table`) and ``comparable_to_paper`` names the
    row that MEAN's tables report.  Analysis uses the true positives at
    ``iou_threshold`` whose truth carries one of ``classes`` (default: the
    truth's emotions); with none, or when no prediction carries an emotion,
    analysis and STRS are None.
    """
    matches = match_intervals(truth, pred, iou_threshold=iou_threshold)
    spotting = spotting_report(truth, pred, iou_threshold=iou_threshold, matches=matches)
    ap = average_precision(truth, pred)
    table = type_table(truth, pred, iou_threshold=iou_threshold, classes=classes,
                       matches=matches, spotting=spotting, ap=ap)
    overall = table["rows"]["overall"]
    per_video = max(Counter(t.key for t in truth).values(), default=0)
    return {
        "spotting": spotting,
        "ap": ap,
        "asr": apex_spotting_rate(truth, pred) if per_video == 1 else None,
        "analysis": overall["analysis"],
        "strs": overall["strs"],
        "by_type": table["rows"],
        "comparable_to_paper": table["comparable_to_paper"],
        "matches": [{"pred": i, "truth": j, "iou": v} for i, j, v in matches],
        "conventions": CONVENTIONS,
    }
