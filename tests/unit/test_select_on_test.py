"""--select-on-test: each fold's best test epoch, as HTNet's main_HTNet.py keeps it."""
from __future__ import annotations

import pytest

from mexkit.errors import ParameterError
from mexkit.pipeline.training import SELECTED_ON_TEST, select_on_test_rows

CLASSES = ["negative", "positive", "surprise"]


def _rows():
    return [{"fold": "a", "true": "negative", "pred": "surprise", "score_negative": 0.1},
            {"fold": "a", "true": "positive", "pred": "surprise", "score_negative": 0.2},
            {"fold": "b", "true": "surprise", "pred": "negative", "score_negative": 0.7}]


def test_best_test_epoch_per_fold_later_epoch_on_ties():
    histories = {
        # fold a: epoch accuracies 0.5, 1.0, 1.0, 0.0 -> epoch 3 (ties go to the later,
        # as `if best <= val_acc` in the authors' loop)
        "a": [{"epoch": 1, "monitor_accuracy": 0.5, "monitor_pred": [0, 2]},
              {"epoch": 2, "monitor_accuracy": 1.0, "monitor_pred": [0, 1]},
              {"epoch": 3, "monitor_accuracy": 1.0, "monitor_pred": [0, 1]},
              {"epoch": 4, "monitor_accuracy": 0.0, "monitor_pred": [2, 2]}],
        # fold b: only epoch 1 is right
        "b": [{"epoch": 1, "monitor_accuracy": 1.0, "monitor_pred": [2]},
              {"epoch": 2, "monitor_accuracy": 0.0, "monitor_pred": [0]}],
    }
    rows, chosen = select_on_test_rows(_rows(), histories, CLASSES)
    assert chosen == {"a": 3, "b": 1}
    assert [r["pred"] for r in rows] == ["negative", "positive", "surprise"]
    assert [r["epoch"] for r in rows] == [3, 3, 1]
    assert all("score_negative" not in r for r in rows)  # those were the last epoch's
    assert _rows()[0]["pred"] == "surprise"  # the honest rows are not touched
    assert SELECTED_ON_TEST.startswith("SELECTED ON THE TEST FOLD")


def test_folds_without_per_epoch_predictions_are_refused():
    with pytest.raises(ParameterError, match="fold 'b' was trained without test predictions"):
        select_on_test_rows(_rows(), {"a": [{"epoch": 1, "monitor_accuracy": 1.0,
                                             "monitor_pred": [0, 1]}],
                                      "b": [{"epoch": 1, "loss": 0.3}]}, CLASSES)
    with pytest.raises(ParameterError, match="1 test predictions per epoch for 2"):
        select_on_test_rows(_rows(), {"a": [{"epoch": 1, "monitor_accuracy": 1.0,
                                             "monitor_pred": [0]}]}, CLASSES)


def _report(cm_a, cm_b):
    """A results dict as mexkit train writes it, with two datasets and two folds."""
    from mexkit.learn.metrics import pooled_and_per_fold

    rows = []
    for ds, cm in (("casme2", cm_a), ("samm", cm_b)):
        for t, p in cm:
            rows.append({"fold": ds, "dataset": ds, "true": t, "pred": p})
    return pooled_and_per_fold(rows, classes=["negative", "positive"])


def test_report_prints_per_dataset_and_labelled_test_selected_rows():
    from mexkit.pipeline.reports import format_report

    # casme2: 3 of 4 right; samm: 1 of 2 right
    honest = _report([("negative", "negative"), ("negative", "negative"),
                      ("positive", "positive"), ("positive", "negative")],
                     [("negative", "negative"), ("positive", "negative")])
    chosen = _report([("negative", "negative")] * 2 + [("positive", "positive")] * 2,
                     [("negative", "negative"), ("positive", "positive")])
    text = format_report({**honest, "selected_on_test": {"label": SELECTED_ON_TEST,
                                                         **chosen}})
    lines = {line.split("  ")[0].strip(): line.split() for line in text.splitlines()}
    assert lines["dataset casme2"][2] == "0.7500"     # accuracy 3/4
    assert lines["dataset samm"][2] == "0.5000"       # 1/2
    assert SELECTED_ON_TEST in text.splitlines()
    assert lines["pooled (test-selected)"][3] == "1.0000"
    assert lines["dataset samm (test-selected)"][-1] == "2"


def test_training_picture_gains_a_panel_of_each_folds_test_accuracy(tmp_path):
    from PIL import Image

    from mexkit.pipeline.reports import plot_training

    history = {f: [{"epoch": 1, "loss": 1.0, "accuracy": 0.5},
                   {"epoch": 2, "loss": 0.5, "accuracy": 0.9}] for f in ("a", "b")}
    res = _report([("negative", "negative")], [("positive", "negative")])
    plot_training(tmp_path / "plain.png", history, "t")
    plot_training(tmp_path / "folds.png", history, "t", per_fold=res["per_fold"])
    with Image.open(tmp_path / "plain.png") as a, Image.open(tmp_path / "folds.png") as b:
        assert b.size[0] == a.size[0] and b.size[1] > a.size[1] * 1.5
