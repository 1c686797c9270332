"""Sort-and-sweep matching against a brute-force matcher; types side by side."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mexkit.spot import Interval, average_precision, evaluate_intervals, match_intervals


def brute_force(truth, pred, thr):
    """The documented rule, written out: every truth of the video is looked at.

    Predictions by confidence (highest first, stable; None ranks last); each takes
    the unmatched truth of its video (and type, if it has one) with the highest
    IoU >= thr; IoU ties go to the earlier truth onset, then the earlier truth.
    """
    def iou(p, t):
        inter = len(set(range(p.onset, p.offset + 1)) & set(range(t.onset, t.offset + 1)))
        union = len(set(range(p.onset, p.offset + 1)) | set(range(t.onset, t.offset + 1)))
        return inter / union

    order = sorted(range(len(pred)), key=lambda i: -(
        pred[i].confidence if pred[i].confidence is not None else -math.inf))
    taken, out = set(), []
    for i in order:
        p = pred[i]
        best = None
        for j, t in enumerate(truth):
            if j in taken or t.key != p.key or (p.type is not None and t.type != p.type):
                continue
            v = iou(p, t)
            if v < thr:
                continue
            if best is None or v > best[0] or (v == best[0] and t.onset < truth[best[1]].onset):
                best = (v, j)
        if best is not None:
            taken.add(best[1])
            out.append((i, best[1], best[0]))
    return out


def brute_ap(truth, pred, thr):
    order = sorted(range(len(pred)), key=lambda i: -(
        pred[i].confidence if pred[i].confidence is not None else -math.inf))
    hit = {i for i, _, _ in brute_force(truth, pred, thr)}
    ap, tp, best_after = 0.0, 0, []
    precisions, recalls = [], []
    for n, i in enumerate(order, 1):
        tp += i in hit
        precisions.append(tp / n)
        recalls.append(tp / len(truth))
    best_after = [max(precisions[k:]) for k in range(len(precisions))]
    prev = 0.0
    for r, p in zip(recalls, best_after, strict=True):
        ap += (r - prev) * p
        prev = r
    return ap


def random_case(rng):
    """Few frames and few values, so that equal IoUs, onsets and confidences are common."""
    n_frames = int(rng.integers(8, 40))
    videos = [("s1", "a"), ("s1", "b"), ("s2", "a")][:int(rng.integers(1, 4))]
    types = [None, "micro", "macro"]
    confs = [None, 0.2, 0.5, 0.5, 0.9]

    def draw(n, negative):
        out = []
        for _ in range(n):
            s, v = videos[int(rng.integers(len(videos)))]
            lo = -5 if negative else 0
            on = int(rng.integers(lo, n_frames))
            off = on + int(rng.integers(0, 12))
            out.append((s, v, on, off))
        return out

    typed_truth = bool(rng.integers(2))
    truth = [Interval(s, v, on, off,
                      type=types[1 + int(rng.integers(2))] if typed_truth else None)
             for s, v, on, off in draw(int(rng.integers(0, 15)), False)]
    pred = [Interval(s, v, on, off, type=types[int(rng.integers(3))] if typed_truth else None,
                     confidence=confs[int(rng.integers(len(confs)))])
            for s, v, on, off in draw(int(rng.integers(0, 15)), True)]
    # exact duplicates of truths make IoU 1.0 ties
    for _ in range(int(rng.integers(0, 3))):
        if truth:
            t = truth[int(rng.integers(len(truth)))]
            pred.append(Interval(t.subject, t.video, t.onset, t.offset, type=t.type,
                                 confidence=confs[int(rng.integers(len(confs)))]))
    return truth, pred


@pytest.mark.parametrize("seed", range(4))
def test_sweep_matching_equals_the_brute_force_matcher(seed):
    rng = np.random.default_rng(seed)
    thresholds = (0.1, 1 / 3, 0.5, 0.5, 0.55, 2 / 3, 0.75, 1.0)
    for _ in range(150):
        truth, pred = random_case(rng)
        thr = thresholds[int(rng.integers(len(thresholds)))]
        assert match_intervals(truth, pred, iou_threshold=thr) == brute_force(truth, pred, thr)


def test_ap_equals_the_brute_force_matcher_at_every_threshold():
    rng = np.random.default_rng(7)
    for _ in range(60):
        truth, pred = random_case(rng)
        if not truth:
            continue
        got = average_precision(truth, pred)["per_threshold"]
        for key, value in got.items():
            assert value == pytest.approx(brute_ap(truth, pred, float(key))), key


def test_ties_are_broken_as_documented():
    t = [Interval("s", "v", 4, 13), Interval("s", "v", 0, 9), Interval("s", "v", 0, 9)]
    # [2, 11] has IoU 8/12 with all three truths: the earlier onset wins (truth 1 before
    # truth 0), then the earlier row (truth 1 before truth 2)
    p = [Interval("s", "v", 2, 11), Interval("s", "v", 2, 11), Interval("s", "v", 2, 11)]
    assert [(i, j) for i, j, _ in match_intervals(t, p)] == [(0, 1), (1, 2), (2, 0)]


def test_types_side_by_side_with_the_paper_row_named():
    """Hand-computed micro, macro and overall rows (MEAN's Tables 4-5 are micro rows).

    micro: truths [0, 9] pos, [30, 39] neg; predictions [0, 9] pos (0.9, TP),
    [50, 59] neg (0.8, FP): TP 1, FP 1, FN 1, F1 1/2; AP at every threshold: ranked
    hit, miss -> recall 1/2 at precision 1 -> 0.5.  Analysis over C = {neg, pos}:
    one pair (pos, pos): precision (0 + 1) / 2, recall (0 + 1) / 2, F1 1/2; STRS 1/4.
    macro: truth [100, 139] neg; prediction [100, 139] pos (0.7): TP 1, F1 1, AP 1;
    analysis over {neg}: the pair (neg, pos) is wrong: F1 0, STRS 0.
    overall: TP 2, FP 1, FN 1, F1 2/3; analysis over {neg, pos}: pairs (pos, pos),
    (neg, pos): precision (0 + 1/2) / 2, recall (0 + 1) / 2, F1 1/3; STRS 2/9.
    """
    truth = [Interval("s", "v", 0, 9, type="micro", emotion="pos"),
             Interval("s", "v", 30, 39, type="micro", emotion="neg"),
             Interval("s", "v", 100, 139, type="macro", emotion="neg")]
    pred = [Interval("s", "v", 0, 9, type="micro", emotion="pos", confidence=0.9),
            Interval("s", "v", 50, 59, type="micro", emotion="neg", confidence=0.8),
            Interval("s", "v", 100, 139, type="macro", emotion="pos", confidence=0.7)]
    rep = evaluate_intervals(truth, pred)
    rows = rep["by_type"]
    assert list(rows) == ["macro", "micro", "overall"]
    micro, macro, overall = rows["micro"], rows["macro"], rows["overall"]
    assert (micro["spotting"]["tp"], micro["spotting"]["fp"], micro["spotting"]["fn"]) == (1, 1, 1)
    assert micro["spotting"]["f1"] == pytest.approx(0.5) and micro["ap"] == pytest.approx(0.5)
    assert micro["analysis"]["f1"] == pytest.approx(0.5)
    assert micro["strs"] == pytest.approx(0.25)
    assert macro["spotting"]["f1"] == 1.0 and macro["ap"] == 1.0
    assert macro["analysis"]["f1"] == 0.0 and macro["strs"] == 0.0
    assert overall["spotting"]["f1"] == pytest.approx(2 / 3)
    assert overall["analysis"]["f1"] == pytest.approx(1 / 3)
    assert overall["strs"] == pytest.approx(2 / 9) == pytest.approx(rep["strs"])
    assert rep["comparable_to_paper"]["row"] == "micro"
    assert "Tables 4-5" in rep["comparable_to_paper"]["why"]


def test_untyped_predictions_leave_type_precision_ap_and_strs_undefined():
    truth = [Interval("s", "v", 0, 9, type="micro", emotion="pos"),
             Interval("s", "v", 100, 139, type="macro", emotion="neg")]
    pred = [Interval("s", "v", 0, 9, emotion="pos"), Interval("s", "v", 60, 69, emotion="neg")]
    rows = evaluate_intervals(truth, pred)["by_type"]
    assert rows["micro"]["spotting"]["tp"] == 1 and rows["micro"]["spotting"]["fp"] is None
    assert rows["micro"]["ap"] is None and rows["micro"]["strs"] is None
    assert rows["micro"]["analysis"]["f1"] == 1.0       # analysis needs no FP
    assert rows["overall"]["spotting"]["fp"] == 1


def test_matching_in_small_chunks_gives_the_same_result(monkeypatch):
    # the candidates are held a bounded number at a time; chunks of 3 pairs (or one
    # prediction) must give the brute-force result too
    import mexkit.spot.metrics as metrics

    monkeypatch.setattr(metrics, "_PAIRS_PER_CHUNK", 3)
    rng = np.random.default_rng(11)
    for _ in range(100):
        truth, pred = random_case(rng)
        assert match_intervals(truth, pred) == brute_force(truth, pred, 0.5)
        if truth:
            got = average_precision(truth, pred)["per_threshold"]
            assert got["0.70"] == pytest.approx(brute_ap(truth, pred, 0.7))
