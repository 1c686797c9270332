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


def test_bad_rows_are_skipped_with_a_warning_naming_the_row(tmp_path, caplog):
    p = tmp_path / "t.csv"
    p.write_text("subject,video,onset,offset,confidence,apex\n"
                 "s1,v1,3,9,0.5,-1\n"        # row 2: fine (SAMM-LV's -1 = no apex)
                 "s1,v1,-2,9,,\n"            # row 3: negative
                 "s1,v1,9,3,,\n"             # row 4: reversed
                 "s1,,3,9,,\n"               # row 5: no video
                 "s1,v1,3,9,high,\n"         # row 6: bad confidence
                 "s1,v1,3.6,9,,\n")          # row 7: fractional -> 4
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        got, rows = read_intervals(p, with_rows=True)
    assert [(iv.onset, iv.offset, iv.apex) for iv in got] == [(3, 9, None), (4, 9, None)]
    assert rows == [2, 7]
    text = caplog.text
    for row in (3, 4, 5, 6, 7):
        assert f"t.csv, row {row}" in text


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
