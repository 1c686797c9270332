"""The predictions CSV: hostile text never reaches a spreadsheet as a formula."""
from __future__ import annotations

from mexkit.io.predictions import read_predictions, write_predictions


def test_formula_cells_are_escaped_and_read_back(tmp_path):
    rows = [{"sample_id": "=HYPERLINK(\"http://x\",\"y\")", "subject": "@SUM(A1)",
             "dataset": "-2+3", "fold": "f1", "true": "negative", "pred": "positive",
             "score_negative": 0.25, "score_positive": 0.75},
            {"sample_id": "s2", "subject": "-1", "dataset": "d", "fold": "f1",
             "true": "positive", "pred": "positive", "score_negative": 0.1,
             "score_positive": 0.9}]
    path = tmp_path / "p.csv"
    write_predictions(path, rows, ["negative", "positive"])
    text = path.read_text()
    for line in text.splitlines()[1:]:
        for cell in line.split(","):
            assert not cell.startswith(("=", "@", "+")), line
    assert "'=HYPERLINK" in text and "'@SUM" in text and "'-2+3" in text
    assert ",-1," in text   # a plain number stays a number
    back, classes = read_predictions(path)
    assert classes == ["negative", "positive"]
    assert back[0]["sample_id"] == rows[0]["sample_id"] and back[0]["subject"] == "@SUM(A1)"
    assert back[0]["dataset"] == "-2+3" and back[1]["subject"] == "-1"
