"""`mexkit spot-eval` on hand-made interval files."""
from __future__ import annotations

import json

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
    r = run("spot-eval", "--truth", str(tmp_path / "t.csv"), "--pred", str(tmp_path / "p.csv"))
    assert r.exit_code == 0
    assert "p.csv, row 2: negative onset" in r.stderr
    assert "p.csv, row 3: offset 2 is before onset 8" in r.stderr
    assert "Traceback" not in r.output
