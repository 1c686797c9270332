"""io.atomic: a reader sees the old file or the whole new one, never a part."""
from __future__ import annotations

import json
import os

import pytest

from mexkit.io.atomic import (
    atomic_open,
    atomic_path,
    is_temporary_of,
    temporary_name,
    write_json,
    write_text,
    write_with,
)


def test_text_json_and_csv_replace_the_file_whole(tmp_path):
    p = tmp_path / "a.json"
    write_json(p, {"b": 1, "a": [1, 2]})
    assert json.loads(p.read_text()) == {"a": [1, 2], "b": 1}
    assert p.read_text().index('"a"') < p.read_text().index('"b"')   # sorted keys
    write_text(p, "second\n")
    assert p.read_text() == "second\n"
    csv = tmp_path / "t.csv"
    with atomic_open(csv, newline="") as fh:
        fh.write("a,b\r\n1,2\r\n")
    assert csv.read_bytes() == b"a,b\r\n1,2\r\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json", "t.csv"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "keep.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(p) as fh:
        fh.write("half of the new")
        raise RuntimeError("killed halfway")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["keep.txt"]


def test_path_for_libraries_that_open_the_file_themselves(tmp_path):
    p = tmp_path / "plot.png"

    def writer(tmp):
        assert tmp.suffix == ".png" and is_temporary_of(tmp, p) and tmp.parent == tmp_path
        tmp.write_bytes(b"png bytes")

    write_with(p, writer, suffix=".png")
    assert p.read_bytes() == b"png bytes"


def test_a_planted_link_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / ".out.txt.tmp-planted"
    planted.symlink_to(victim)
    import mexkit.io.atomic as atomic

    monkeypatch.setattr(atomic, "temporary_name", lambda path, suffix="": planted)
    with pytest.raises(FileExistsError), atomic_path(tmp_path / "out.txt"):
        pass
    assert victim.read_text() == "precious"


def test_temporary_names_are_hidden_unique_and_recognised(tmp_path):
    p = tmp_path / "x.h5"
    a, b = temporary_name(p), temporary_name(p)
    assert a != b and a.name.startswith(".x.h5.tmp-") and str(os.getpid()) in a.name
    assert is_temporary_of(a, p) and not is_temporary_of(tmp_path / "x.h5", p)
