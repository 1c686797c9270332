"""Recognition metrics against confusion matrices worked out by hand."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from mexkit.errors import LabelError, ParameterError
from mexkit.learn.metrics import classification_report, pooled_and_per_fold

CLASSES = ["negative", "positive", "surprise"]
NEG, POS, SUR = CLASSES


def test_all_classes_present():
    # rows = true, columns = predicted       neg pos sur
    #                               neg       2   1   0
    #                               pos       0   1   1
    #                               sur       0   0   1
    # TP = 2, 1, 1   FP = 0, 1, 1   FN = 1, 1, 0
    # F1 = 4/5, 2/4, 2/3 -> UF1 = (0.8 + 0.5 + 0.6667) / 3 = 0.65556
    # recall = 2/3, 1/2, 1 -> UAR = 0.72222;  precision = 1, 1/2, 1/2;  accuracy 4/6
    rep = classification_report([NEG, NEG, NEG, POS, POS, SUR],
                                [NEG, NEG, POS, POS, SUR, SUR], classes=CLASSES)
    assert rep["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["uf1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert rep["uar"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    pc = rep["per_class"]
    assert [pc[c]["precision"] for c in CLASSES] == pytest.approx([1.0, 0.5, 0.5])
    assert [pc[c]["recall"] for c in CLASSES] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [pc[c]["support"] for c in CLASSES] == [3, 2, 1]
    assert [pc[c]["predicted"] for c in CLASSES] == [2, 2, 2]
    assert rep["excluded_from_uf1"] == rep["excluded_from_uar"] == rep["notes"] == []


def test_class_absent_from_truth_and_predictions_is_excluded(caplog):
    #        neg pos sur
    #  neg    1   1   0      neg: TP 1, FP 0, FN 1 -> F1 2/3, recall 1/2
    #  pos    0   1   0      pos: TP 1, FP 1, FN 0 -> F1 2/3, recall 1
    #  sur    0   0   0      sur: nothing at all   -> undefined, excluded
    # UF1 = 2/3 (a script that scores the empty class as 0 reports 4/9); UAR = 3/4.
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        rep = classification_report([NEG, NEG, POS], [NEG, POS, POS], classes=CLASSES)
    assert rep["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert rep["uf1"] == pytest.approx(2 / 3)
    assert rep["uar"] == pytest.approx(0.75)
    assert rep["excluded_from_uf1"] == [SUR] and rep["excluded_from_uar"] == [SUR]
    assert math.isnan(rep["per_class"][SUR]["f1"])
    assert any("surprise" in n for n in rep["notes"])
    assert "surprise" in caplog.text


def test_class_predicted_but_never_true_counts_against_uf1_only():
    #        neg pos sur
    #  neg    1   0   1      neg: TP 1, FP 0, FN 1 -> F1 2/3, recall 1/2
    #  pos    0   1   0      pos: TP 1, FP 0, FN 0 -> F1 1,   recall 1
    #  sur    0   0   0      sur: TP 0, FP 1, FN 0 -> F1 0,   recall undefined
    # UF1 = (2/3 + 1 + 0) / 3 = 5/9;  UAR = (1/2 + 1) / 2 = 3/4
    rep = classification_report([NEG, NEG, POS], [NEG, SUR, POS], classes=CLASSES, log=False)
    assert rep["uf1"] == pytest.approx(5 / 9)
    assert rep["uar"] == pytest.approx(0.75)
    assert rep["per_class"][SUR]["f1"] == 0.0
    assert rep["per_class"][SUR]["precision"] == 0.0
    assert math.isnan(rep["per_class"][SUR]["recall"])
    assert rep["excluded_from_uf1"] == [] and rep["excluded_from_uar"] == [SUR]


def test_integer_labels_and_never_predicted_class():
    # classes 0..3; class 3 is true once but never predicted:
    # 3: TP 0, FP 0, FN 1 -> F1 0, recall 0, precision undefined (NaN)
    rep = classification_report(np.array([0, 1, 2, 3]), np.array([0, 1, 2, 2]),
                                classes=[0, 1, 2, 3], log=False)
    # F1: 1, 1, 2/3, 0 -> 2.6667/4;  recall: 1, 1, 1, 0 -> 3/4
    assert rep["uf1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    assert rep["uar"] == pytest.approx(0.75)
    assert math.isnan(rep["per_class"][3]["precision"])
    assert rep["per_class"][3]["f1"] == 0.0


def test_bad_input():
    with pytest.raises(LabelError, match="happiness"):
        classification_report([NEG, "happiness"], [NEG, NEG], classes=CLASSES)
    with pytest.raises(ParameterError, match="2 labels"):
        classification_report([NEG, POS], [NEG], classes=CLASSES)
    with pytest.raises(ParameterError, match="classes"):
        classification_report([NEG], [NEG], classes=[NEG, NEG])
    empty = classification_report([], [], classes=CLASSES)
    assert empty["n"] == 0 and math.isnan(empty["uf1"])


ROWS = [
    # fold A: true neg, pos; predicted neg, neg
    {"fold": "A", "dataset": "casme2", "true": NEG, "pred": NEG},
    {"fold": "A", "dataset": "casme2", "true": POS, "pred": NEG},
    # fold B: true sur, sur, neg; predicted sur, neg, neg
    {"fold": "B", "dataset": "smic", "true": SUR, "pred": SUR},
    {"fold": "B", "dataset": "smic", "true": SUR, "pred": NEG},
    {"fold": "B", "dataset": "smic", "true": NEG, "pred": NEG},
]


def test_pooled_and_per_fold():
    res = pooled_and_per_fold(ROWS, classes=CLASSES)
    # Pooled:  neg pos sur          TP 2, 0, 1;  FP 2, 0, 0;  FN 0, 1, 1
    #   neg     2   0   0           F1 4/6, 0/1, 2/3 -> UF1 = 4/9
    #   pos     1   0   0           recall 1, 0, 1/2 -> UAR = 1/2
    #   sur     1   0   1           accuracy 3/5
    pooled = res["pooled"]
    assert pooled["confusion_matrix"] == [[2, 0, 0], [1, 0, 0], [1, 0, 1]]
    assert pooled["uf1"] == pytest.approx(4 / 9)
    assert pooled["uar"] == pytest.approx(0.5)
    assert pooled["accuracy"] == pytest.approx(0.6)
    # Fold A: neg F1 2/3 recall 1; pos F1 0 recall 0; sur absent -> UF1 1/3, UAR 1/2.
    # Fold B: neg F1 2/3 recall 1; sur F1 2/3 recall 1/2; pos absent -> UF1 2/3, UAR 3/4.
    a, b = res["per_fold"]["A"], res["per_fold"]["B"]
    assert (a["uf1"], a["uar"], a["accuracy"]) == pytest.approx((1 / 3, 0.5, 0.5))
    assert (b["uf1"], b["uar"], b["accuracy"]) == pytest.approx((2 / 3, 0.75, 2 / 3))
    assert a["excluded_from_uf1"] == [SUR] and b["excluded_from_uf1"] == [POS]
    assert res["fold_mean"]["uf1"] == pytest.approx(0.5)
    assert res["fold_mean"]["uar"] == pytest.approx(0.625)
    assert res["fold_mean"]["accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    # per dataset: casme2 rows equal fold A, smic rows equal fold B here
    assert res["per_dataset"]["casme2"]["uf1"] == pytest.approx(1 / 3)
    assert res["per_dataset"]["smic"]["uar"] == pytest.approx(0.75)
    assert "pooled" in res["convention"].lower()
    assert any("2 of 2 folds" in n for n in res["notes"])


def test_pooled_infers_classes_when_not_given():
    res = pooled_and_per_fold([{k: v for k, v in r.items() if k != "dataset"} for r in ROWS])
    assert res["pooled"]["classes"] == CLASSES
    assert "per_dataset" not in res
    assert any("inferred" in n for n in res["notes"])
    with pytest.raises(ParameterError, match="fold"):
        pooled_and_per_fold([{"true": NEG, "pred": NEG}])


def test_equal_to_scikit_learn_to_the_last_bit():
    # issue 32, item 5: the counts are no longer scikit-learn's (its import cost every
    # process that reports results 1.3 s of CPU); its per-class values, accuracy and
    # confusion matrix, with the same labels= and zero_division=nan, are the reference
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(7)
    for trial in range(60):
        k = int(rng.integers(2, 6))
        classes = [f"c{i}" for i in range(k)] if trial % 2 else list(range(k))
        n = int(rng.integers(1, 40))
        # some classes never true, some never predicted, some neither
        true_pool = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
        pred_pool = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
        y_true = [classes[i] for i in rng.choice(true_pool, n)]
        y_pred = [classes[i] for i in rng.choice(pred_pool, n)]
        rep = classification_report(y_true, y_pred, classes=classes, log=False)
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes,
                                                     average=None, zero_division=np.nan)
        pc = rep["per_class"]
        for name, want in (("precision", p), ("recall", r), ("f1", f)):
            got = np.array([pc[c][name] for c in classes])
            assert np.array_equal(got, want, equal_nan=True), (trial, name, got, want)
        assert rep["accuracy"] == accuracy_score(y_true, y_pred)
        assert rep["confusion_matrix"] == confusion_matrix(y_true, y_pred,
                                                           labels=classes).tolist()


def test_reporting_results_does_not_import_scikit_learn():
    import subprocess
    import sys

    code = ("import sys\nfrom mexkit.learn.metrics import classification_report\n"
            "classification_report(['a', 'b'], ['a', 'a'], classes=['a', 'b'])\n"
            "print('sklearn' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
