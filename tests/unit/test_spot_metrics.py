"""Spotting metrics against hand-computed cases."""
from __future__ import annotations

import math

import pytest

from mexkit.errors import ParameterError
from mexkit.spot import (
    Interval,
    analysis_report,
    apex_spotting_rate,
    average_precision,
    evaluate_intervals,
    interval_iou,
    match_intervals,
    spotting_report,
    strs,
)


def iv(on, off, video="v1", **kw):
    return Interval("s1", video, on, off, **kw)


def test_iou_counts_frames_inclusively():
    assert interval_iou((0, 9), (5, 14)) == pytest.approx(5 / 15)
    assert interval_iou((0, 9), (0, 9)) == 1.0
    assert interval_iou((0, 4), (5, 9)) == 0.0
    assert interval_iou((3, 3), (3, 3)) == 1.0          # one frame: length 1, not 0


def test_interval_rejects_reversed_frames_and_keeps_a_negative_onset():
    with pytest.raises(ParameterError, match="s1/v1"):
        iv(5, 4)
    # MEAN's spotter writes [peak - k', peak + k'] for a peak near frame 0: kept as written
    assert iv(-3, 65).length == 69


def test_negative_onset_counts_its_frames_in_the_union_as_the_authors_scorer():
    # MEAN's STRS scorer: |arange(-3, 66) n arange(30, 56)| / |... u ...| = 26 / 69;
    # clipping to frame 0 would give 26 / 66
    assert interval_iou((-3, 65), (30, 55)) == pytest.approx(26 / 69)
    # subject 14, EP09_03 of the scorer's CASME II files: [-19, 49] against [5, 40]
    assert interval_iou((-19, 49), (5, 40)) == pytest.approx(36 / 69)
    assert match_intervals([iv(30, 55)], [iv(-3, 65)]) == []
    # where clipping would decide otherwise: [-10, 19] against [0, 13] is 14/30 < 0.5
    # as written (no match), 14/20 clipped to [0, 19]
    assert match_intervals([iv(0, 13)], [iv(-10, 19)]) == []
    assert match_intervals([iv(0, 14)], [iv(-10, 19)])[0][2] == pytest.approx(15 / 30)


def test_one_prediction_over_two_truths_matches_only_one():
    # [0, 9] has IoU exactly 0.5 with both truths; a tie goes to the earlier truth
    truth = [iv(0, 4), iv(5, 9)]
    pred = [iv(0, 9, confidence=0.9)]
    assert match_intervals(truth, pred) == [(0, 0, 0.5)]
    rep = spotting_report(truth, pred)["overall"]
    assert (rep["tp"], rep["fp"], rep["fn"]) == (1, 0, 1)
    assert rep["f1"] == pytest.approx(2 / 3)
    assert rep["precision"] == 1.0 and rep["recall"] == 0.5


def test_the_more_confident_prediction_takes_the_truth():
    truth = [iv(10, 19)]
    pred = [iv(10, 19, confidence=0.2), iv(12, 21, confidence=0.9)]   # IoU 1.0 and 8/12
    assert match_intervals(truth, pred) == [(1, 0, pytest.approx(8 / 12))]
    rep = spotting_report(truth, pred)["overall"]
    assert (rep["tp"], rep["fp"], rep["fn"]) == (1, 1, 0)


def test_equal_confidences_keep_the_input_order():
    truth = [iv(10, 19)]
    pred = [iv(12, 21, confidence=0.5), iv(10, 19, confidence=0.5)]
    assert match_intervals(truth, pred)[0][0] == 0
    pred = [iv(12, 21), iv(10, 19)]                      # no confidences at all
    assert match_intervals(truth, pred)[0][0] == 0


def test_a_prediction_picks_its_best_truth():
    truth = [iv(0, 9), iv(4, 13)]
    pred = [iv(4, 12, confidence=1.0)]                   # IoU 6/13 and 9/10
    assert match_intervals(truth, pred)[0][1] == 1


def test_matching_stays_within_a_video_and_below_threshold_fails():
    truth = [iv(0, 9, video="a")]
    assert match_intervals(truth, [iv(0, 9, video="b")]) == []
    assert match_intervals(truth, [iv(0, 3, video="a")]) == []        # IoU 0.4
    assert len(match_intervals(truth, [iv(0, 4, video="a")])) == 1    # IoU 0.5


def test_empty_predictions_and_empty_truth():
    rep = spotting_report([iv(0, 9), iv(20, 29)], [])["overall"]
    assert (rep["tp"], rep["fp"], rep["fn"]) == (0, 0, 2)
    assert math.isnan(rep["precision"]) and rep["recall"] == 0.0 and rep["f1"] == 0.0
    rep = spotting_report([], [])["overall"]
    assert math.isnan(rep["f1"])
    rep = spotting_report([], [iv(0, 9)])["overall"]
    assert (rep["fp"], rep["f1"]) == (1, 0.0)
    assert math.isnan(average_precision([], [iv(0, 9)])["ap"])
    assert average_precision([iv(0, 9)], [])["ap"] == 0.0


def test_per_type_with_typed_predictions():
    truth = [iv(0, 4, type="micro"), iv(10, 39, type="macro")]
    pred = [iv(0, 4, type="micro"), iv(10, 39, type="micro")]   # wrong type: no match
    rep = spotting_report(truth, pred)
    micro, macro = rep["per_type"]["micro"], rep["per_type"]["macro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (1, 1, 0)
    assert (macro["tp"], macro["fp"], macro["fn"]) == (0, 0, 1)
    o = rep["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == (1, 1, 1)
    assert micro["f1"] == pytest.approx(2 / 3) and macro["f1"] == 0.0


def test_per_type_with_untyped_predictions_leaves_precision_undefined():
    truth = [iv(0, 4, type="micro"), iv(10, 39, type="macro")]
    rep = spotting_report(truth, [iv(10, 39), iv(60, 69)])
    assert rep["per_type"]["macro"]["tp"] == 1 and rep["per_type"]["micro"]["fn"] == 1
    assert rep["per_type"]["macro"]["fp"] is None
    assert math.isnan(rep["per_type"]["macro"]["f1"])
    assert rep["notes"]
    assert rep["overall"]["fp"] == 1


def test_ap_ranks_by_confidence():
    truth = [iv(0, 9, video="v1"), iv(0, 9, video="v2")]
    pred = [iv(50, 59, video="v2", confidence=0.8), iv(0, 9, video="v2", confidence=0.7),
            iv(0, 9, video="v1", confidence=0.9)]
    # ranked hits 1, 0, 1: precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    # AP = 1/2 * 1 + 1/2 * 2/3 at every threshold
    got = average_precision(truth, pred)
    assert got["ranked_by"] == "confidence"
    assert got["ap"] == pytest.approx(0.5 + 1 / 3)
    # the same intervals without confidences are ranked in file order: hits 0, 1, 1
    plain = [Interval(p.subject, p.video, p.onset, p.offset) for p in pred]
    got = average_precision(truth, plain)
    assert got["ranked_by"] == "file order"
    assert got["ap"] == pytest.approx(2 / 3)


def test_ap_over_iou_thresholds():
    # IoU 0.8: a hit at 0.50 ... 0.80 (7 thresholds), a miss at 0.85 ... 0.95
    got = average_precision([iv(0, 9)], [iv(0, 7, confidence=1.0)])
    assert got["per_threshold"]["0.80"] == 1.0 and got["per_threshold"]["0.85"] == 0.0
    assert got["ap"] == pytest.approx(0.7)


def test_apex_spotting_rate():
    truth = [iv(10, 20, video="a"), iv(10, 20, video="b"), iv(10, 20, video="c")]
    pred = [iv(5, 24, video="a", apex=15), iv(20, 29, video="b", apex=25),
            iv(10, 20, video="b", apex=12, confidence=None)]
    # b's first prediction (stable order, no confidences) misses; c has none
    got = apex_spotting_rate(truth, pred)
    assert (got["hits"], got["videos"]) == (1, 3)
    assert got["asr"] == pytest.approx(1 / 3)
    # eq. 13's open interval: an apex on the truth's onset or offset is a miss
    assert apex_spotting_rate([iv(10, 20)], [iv(0, 30, apex=10)])["asr"] == 0.0
    assert apex_spotting_rate([iv(10, 20)], [iv(0, 30, apex=20)])["asr"] == 0.0
    assert apex_spotting_rate([iv(10, 20)], [iv(0, 30, apex=11)])["asr"] == 1.0
    # without an apex, the middle of the interval as written: [-3, 25] -> 11 (not 12)
    got = apex_spotting_rate([iv(11, 20)], [iv(-3, 25)])
    assert got["asr"] == 0.0 and got["apex_from"] == "middle"
    assert apex_spotting_rate([iv(10, 20)], [iv(-3, 25)])["asr"] == 1.0


def test_analysis_metrics_of_eqs_19_to_23():
    got = analysis_report(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    # precision: a 1/1, b 1/3, c never predicted (0/0 counts 0) -> (1 + 1/3 + 0) / 3 = 4/9
    # recall: a 1/2, b 1/1, c 0/1 -> 1/2 (eqs. 19-20 divide by C = 3)
    assert got["precision"] == pytest.approx(4 / 9)
    assert got["recall"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx(2 * (4 / 9) * 0.5 / (4 / 9 + 0.5))
    # F1 per class 2TP / (2TP + FP + FN): a 2/3, b 2/4, c 0/1
    assert got["uf1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert got["uar"] == pytest.approx(0.5)
    assert got["accuracy"] == pytest.approx(0.5)
    assert (got["tp"], got["fp"], got["fn"]) == (2, 2, 2)
    assert got["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    # UAR is the mean recall (eq. 23), not the mean precision of the authors' scorer
    assert got["uar"] != pytest.approx(got["precision"])


def test_analysis_with_a_class_list_and_unknown_labels():
    # eqs. 19-20 divide by C = 2: x is 1/1, y has no sample and no prediction (0)
    got = analysis_report(["x"], ["x"], classes=["x", "y"])
    assert got["precision"] == got["recall"] == 0.5
    assert got["f1"] == 0.5 and got["per_class"]["y"]["support"] == 0
    with pytest.raises(ParameterError, match="'z'"):
        analysis_report(["z"], ["x"], classes=["x", "y"])
    # a prediction outside the classes (or none) is wrong: a miss of x, no class's FP
    got = analysis_report(["x", "x"], ["z", None], classes=["x", "y"])
    assert got["accuracy"] == 0.0 and got["unlisted_predictions"] == 2
    assert (got["tp"], got["fp"], got["fn"]) == (0, 0, 2)
    assert got["per_class"]["x"]["recall"] == 0.0 and got["f1"] == 0.0


def test_evaluate_gives_strs_from_true_positives_only():
    truth = [iv(0, 9, emotion="pos"), iv(20, 29, emotion="neg"), iv(40, 49, emotion="neg")]
    pred = [iv(0, 9, emotion="pos", confidence=0.9), iv(20, 29, emotion="pos", confidence=0.8),
            iv(60, 69, emotion="neg", confidence=0.7)]
    rep = evaluate_intervals(truth, pred)
    o = rep["spotting"]["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == (2, 1, 1)
    assert o["f1"] == pytest.approx(2 / 3)
    a = rep["analysis"]
    assert a["n"] == 2 and a["accuracy"] == 0.5
    # classes: the truth's emotions {neg, pos}; pairs (pos, pos), (neg, pos)
    # precision: pos 1/2, neg never predicted 0 -> 1/4; recall: pos 1, neg 0 -> 1/2
    assert a["precision"] == pytest.approx(0.25) and a["recall"] == pytest.approx(0.5)
    assert a["f1"] == pytest.approx(1 / 3)
    assert rep["strs"] == pytest.approx(strs(2 / 3, 1 / 3)) == pytest.approx(2 / 9)
    assert rep["asr"] is None                        # several truths in a video: no ASR
    rep = evaluate_intervals([iv(0, 9)], [iv(0, 9)])
    assert rep["analysis"] is None and rep["strs"] is None
    assert rep["asr"]["asr"] == 1.0
