"""`mexkit synth --first-subject N`: subjects numbered from N, each the same person as in
a dataset of the same seed that numbers from 1, so that pre-training data of other
subjects can be written (issue 25, item 7)."""
from __future__ import annotations

import csv

import numpy as np
from click.testing import CliRunner

from mexkit.cli import cli


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_first_subject_numbers_the_same_people(tmp_path):
    args = ["--clips-per-class", "1", "--classes", "surprise", "--size", "160",
            "--format", "png"]
    r = CliRunner().invoke(cli, ["synth", str(tmp_path / "a"), "--subjects", "2", *args])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["synth", str(tmp_path / "b"), "--subjects", "1",
                                 "--first-subject", "2", *args])
    assert r.exit_code == 0, r.output
    b = _rows(tmp_path / "b" / "samples.csv")
    assert [row["subject"] for row in b] == ["sub02"]
    a = {row["subject"]: row for row in _rows(tmp_path / "a" / "samples.csv")}
    assert {k: v for k, v in a["sub02"].items()} == b[0]
    import cv2

    first = sorted((tmp_path / "a" / b[0]["path"]).iterdir())[0]
    other = tmp_path / "b" / b[0]["path"] / first.name
    np.testing.assert_array_equal(cv2.imread(str(first)), cv2.imread(str(other)))
