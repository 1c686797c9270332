"""`mexkit spot-eval` on hand-made interval files."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mexkit.cli import cli

TRUTH = ("subject,video,onset,offset,type,emotion\n"
         "s1,v1,0,4,micro,pos\n"
         "s1,v1,5,9,micro,neg\n"
         "s1,v2,10,39,macro,neg\n")


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_spot_eval_table_and_json(tmp_path):
    (tmp_path / "t.csv").write_text(TRUTH)
    (tmp_path / "p.csv").write_text(
        "subject,video,onset,offset,type,emotion,confidence\n"
        "s1,v1,0,9,micro,pos,0.9\n"          # IoU 0.5 with both micro truths: one TP
        "s1,v2,12,40,macro,neg,0.5\n"        # TP
        "s1,v9,0,4,micro,neg,0.1\n")         # unknown video: FP, with a warning
    r = run("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"))
    assert r.exit_code == 0, r.output
    assert "overall" in r.stdout and "STRS" in r.stdout
    assert "v9" in r.stderr
    r = run("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"),
            "--json")
    rep = json.loads(r.stdout)
    o = rep["spotting"]["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == (2, 1, 1)
    assert rep["spotting"]["per_type"]["micro"] == {
        "tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert rep["analysis"]["accuracy"] == 1.0
    assert rep["strs"] == o["f1"] * rep["analysis"]["f1"]
    assert rep["unknown_videos"] == ["s1/v9"]


def test_spot_eval_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "t.csv").write_text(TRUTH)
    (tmp_path / "p.csv").write_text("subject,video,start\ns1,v1,3\n")
    r = run("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"))
    assert r.exit_code == 1
    assert "lacks the column(s) onset, offset" in r.stderr
    assert "Traceback" not in r.output
    (tmp_path / "p.csv").write_text("subject,video,onset,offset\ns1,v1,-1,3\ns1,v1,8,2\n")
    r = run("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"),
            "--json")
    assert r.exit_code == 0
    # a negative predicted onset is kept and scored as written (MEAN's STRS scorer)
    assert "p.csv: row 2 has a negative onset (-1): kept as written" in r.stderr
    assert "p.csv, row 3: offset 2 is before onset 8" in r.stderr
    assert "Traceback" not in r.output
    rep = json.loads(r.stdout)
    assert rep["spotting"]["n_pred"] == 1
    # [-1, 3] against [0, 4]: 4 shared frames of 6 (frame -1 counts in the union)
    assert rep["matches"] == [{"pred": 0, "truth": 0, "iou": 4 / 6}]


def test_invalid_truth_rows_are_an_error_unless_lenient(tmp_path):
    (tmp_path / "t.csv").write_text(TRUTH + "s1,v3,-2,8,micro,pos\ns1,v3,9,4,micro,pos\n"
                                    "s1,v3,x,9,micro,pos\n")
    (tmp_path / "p.csv").write_text("subject,video,onset,offset\ns1,v1,0,4\n")
    args = ("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"))
    r = run(*args)
    assert r.exit_code == 1 and r.stdout == ""
    assert "t.csv' has 3 invalid rows" in r.stderr
    for part in ("row 5: negative onset -2", "row 6: offset 4 is before onset 9",
                 "row 7: onset 'x' is not a frame number"):
        assert part in r.stderr
    assert "Traceback" not in r.output
    r = run(*args, "--lenient", "--json")
    assert r.exit_code == 0, r.output
    assert "t.csv, row 5: negative onset -2; row skipped" in r.stderr
    rep = json.loads(r.stdout)
    assert rep["spotting"]["n_truth"] == 3
    assert rep["spotting"]["overall"]["tp"] == 1


HAND_TRUTH = ("subject,video,onset,offset,emotion\n"
              "s1,v1,10,29,pos\n"
              "s1,v2,0,19,neg\n"
              "s2,v3,40,59,sur\n"
              "s2,v4,5,14,neg\n"
              "s2,v5,20,39,neg\n")
HAND_PRED = ("subject,video,onset,offset,emotion,apex\n"
             "s1,v1,8,31,pos,\n"
             "s1,v2,-6,17,neg,\n"
             "s2,v3,30,49,pos,\n"
             "s2,v4,-10,13,sur,\n"
             "s2,v5,10,39,neg,20\n")


def test_a_hand_made_short_video_case_of_the_definitions(tmp_path):
    """Every figure computed by hand from MEAN's eqs. 13-24 and its STRS scorer's rules.

    IoU (frames as written, eq. 14): v1 [8, 31] vs [10, 29] 20/24; v2 [-6, 17] vs
    [0, 19] 18/26 (frames -6..-1 count in the union); v3 [30, 49] vs [40, 59] 10/30;
    v4 [-10, 13] vs [5, 14] 9/24 (clipped to [0, 13] it would be 9/15, a match);
    v5 [10, 39] vs [20, 39] 20/30.  TP = 3 (v1, v2, v5), FP = FN = 2, F1 = 6/10.
    ASR (eq. 13, open interval): apexes v1 19 (middle), v2 5 (middle of [-6, 17]), v3 39,
    v4 1, v5 20 (given; on the onset, so a miss): 2 of 5.  Analysis over C = 3 classes
    (the truth's emotions neg, pos, sur): pairs (pos, pos), (neg, neg), (neg, neg):
    precision (1 + 1 + 0) / 3, recall (1 + 1 + 0) / 3, F1 2/3, UF1 2/3, UAR 2/3.
    STRS = 0.6 x 2/3 = 0.4.  AP, file order (hits 1, 1, 0, 0, 1): at IoU 0.50-0.65
    1/5 + 1/5 + 1/5 x 3/5 = 0.52; at 0.70-0.80 only v1 (0.833): 0.2; above: 0;
    AP@[.5:.95] = (4 x 0.52 + 3 x 0.2) / 10 = 0.268.
    """
    (tmp_path / "t.csv").write_text(HAND_TRUTH)
    (tmp_path / "p.csv").write_text(HAND_PRED)
    r = run("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"),
            "--json")
    assert r.exit_code == 0, r.output
    assert "rows 3, 5 have a negative onset (-6, -10)" in r.stderr
    rep = json.loads(r.stdout)
    o = rep["spotting"]["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == (3, 2, 2)
    assert o["f1"] == pytest.approx(0.6)
    assert [m["iou"] for m in rep["matches"]] == pytest.approx([20 / 24, 18 / 26, 20 / 30])
    assert (rep["asr"]["hits"], rep["asr"]["videos"]) == (2, 5)
    assert rep["asr"]["asr"] == pytest.approx(0.4)
    a = rep["analysis"]
    assert a["classes"] == ["neg", "pos", "sur"] and (a["n"], a["tp"]) == (3, 3)
    for key in ("precision", "recall", "f1", "uf1", "uar"):
        assert a[key] == pytest.approx(2 / 3), key
    assert rep["strs"] == pytest.approx(0.4)
    assert rep["ap"]["per_threshold"]["0.50"] == pytest.approx(0.52)
    assert rep["ap"]["per_threshold"]["0.75"] == pytest.approx(0.2)
    assert rep["ap"]["per_threshold"]["0.95"] == 0.0
    assert rep["ap"]["ap"] == pytest.approx(0.268)
    assert rep["comparable_to_paper"]["row"] == "overall"
    r = run("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"))
    table = r.stdout.splitlines()
    assert table[2].split() == ["overall", "*", "3", "2", "2", "0.6000", "0.6000", "0.6000",
                                "0.2680", "0.6667", "0.4000"]
    assert "ASR 0.4000 (2 of 5 videos" in r.stdout
