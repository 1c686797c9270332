"""The interval file (mexkit.io.intervals): reading, writing, bad rows."""
from __future__ import annotations

import json
import logging

import pytest

from mexkit.errors import DatasetError
from mexkit.io.intervals import read_intervals, write_intervals, write_intervals_json
from mexkit.spot import Interval


def test_round_trip_keeps_every_field(tmp_path):
    ivs = [Interval("s1", "v1", 3, 9, type="micro", emotion="pos", confidence=0.123456789012,
                    apex=6),
           Interval("s 2", "v,2", 0, 0)]
    path = write_intervals(tmp_path / "a.csv", ivs)
    assert read_intervals(path) == ivs
    doc = json.loads(write_intervals_json(tmp_path / "a.json", ivs, k_prime=3).read_text())
    assert doc["k_prime"] == 3 and doc["intervals"][0]["confidence"] == 0.123456789012
    assert not list(tmp_path.glob(".*tmp*"))


def test_columns_in_any_order_and_optional_ones_absent(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("Offset,Video,Subject,Onset\n9,v1,s1,3\n")
    assert read_intervals(p) == [Interval("s1", "v1", 3, 9)]


BAD = ("subject,video,onset,offset,confidence,apex\n"
       "s1,v1,3,9,0.5,-1\n"        # row 2: fine (SAMM-LV's -1 = no apex)
       "s1,v1,-2,9,,\n"            # row 3: negative onset
       "s1,v1,9,3,,\n"             # row 4: reversed
       "s1,,3,9,,\n"               # row 5: no video
       "s1,v1,3,9,high,\n"         # row 6: bad confidence
       "s1,v1,3.6,9,,\n")          # row 7: fractional -> 4


def test_predictions_keep_a_negative_onset_and_skip_bad_rows(tmp_path, caplog):
    # MEAN's spotter writes [peak - k', peak + k'] and its STRS scorer scores it as
    # written: a negative onset is kept, with one warning naming the rows
    p = tmp_path / "t.csv"
    p.write_text(BAD)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        got, rows = read_intervals(p, with_rows=True, negative_onsets="keep")
    assert [(iv.onset, iv.offset, iv.apex) for iv in got] == [
        (3, 9, None), (-2, 9, None), (4, 9, None)]
    assert rows == [2, 3, 7]
    text = caplog.text
    assert "t.csv: row 3 has a negative onset (-2): kept as written" in text
    for row in (4, 5, 6, 7):
        assert f"t.csv, row {row}" in text


def test_negative_onset_is_invalid_by_default_and_skipped_when_not_strict(tmp_path, caplog):
    p = tmp_path / "t.csv"
    p.write_text(BAD)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        got, rows = read_intervals(p, with_rows=True)
    assert [(iv.onset, iv.offset) for iv in got] == [(3, 9), (4, 9)] and rows == [2, 7]
    assert "t.csv, row 3: negative onset -2; row skipped" in caplog.text


def test_strict_reading_refuses_the_file_naming_every_invalid_row(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(BAD)
    with pytest.raises(DatasetError) as exc:
        read_intervals(p, what="truth file", strict=True)
    msg = str(exc.value)
    assert "has 4 invalid rows" in msg
    for part in ("row 3: negative onset -2", "row 4: offset 3 is before onset 9",
                 "row 5: empty subject or video", "row 6: confidence 'high'"):
        assert part in msg
    assert "row 7" not in msg                       # a fractional frame is rounded, not invalid


def test_missing_columns_and_missing_file_are_one_line_errors(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("subject,video,start,end\ns1,v1,3,9\n")
    with pytest.raises(DatasetError, match="lacks the column.*onset, offset"):
        read_intervals(p)
    p.write_text("")
    with pytest.raises(DatasetError, match="lacks"):
        read_intervals(p)
    with pytest.raises(DatasetError, match="does not exist"):
        read_intervals(tmp_path / "none.csv")
