"""Re-running a stage with other parameters never replaces the store silently (issue 28,
item 4): without --overwrite the command stops, naming each parameter that differs; the
same parameters resume; old stores (and their default names) stay as they were."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _sheet(tmp_path):
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0,
                        (40, 32))
    for _ in range(12):
        w.write(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    w.release()
    sheet = tmp_path / "mine.csv"
    sheet.write_text("subject,clip,path,fps,onset,apex,offset,label\n"
                     "s1,c1,v.avi,25,0,5,11,positive\n")
    return sheet


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_other_parameters_need_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sheet = _sheet(tmp_path)
    crop = tmp_path / "mine.crop.h5"                        # the default name, both times
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 32)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(crop)
    before = _digest(crop)
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 48)
    assert r.exit_code == 2, r.output
    assert "size: 32 -> 48" in r.stderr and "--overwrite" in r.stderr
    assert _digest(crop) == before                          # untouched
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 32)
    assert r.exit_code == 0 and "0 computed, 1 skipped" in r.stderr   # same: resumed
    with open_store(crop) as s:
        assert s.params["size"] == 32
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 48,
            "--overwrite")
    assert r.exit_code == 0, r.output
    with open_store(crop) as s:
        assert s.params["size"] == 48 and s[s.sample_ids[0]].read("frames").shape[1] == 48


def test_flow_pairs_and_gap_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sheet = _sheet(tmp_path)
    assert run("crop", "--annotations", sheet, "--detector", "none", "--size", 32,
               "-q").exit_code == 0
    crop = tmp_path / "mine.crop.h5"
    r = run("flow", crop, "--method", "farneback", "--pairs", "onset-apex")
    assert r.exit_code == 0, r.output
    out = tmp_path / "mine.crop.flow-farneback.h5"
    before = _digest(out)
    r = run("flow", crop, "--method", "farneback", "--pairs", "gap", "--gap", 2)
    assert r.exit_code == 2, r.output
    assert 'pairs: "onset-apex" -> "gap"' in r.stderr and "k: null -> 2" in r.stderr
    assert _digest(out) == before
    # another stage's store under the name given with -o is not replaced either
    r = run("tim", crop, "-n", 8, "-o", out)
    assert r.exit_code == 2 and "stage 'flow' -> 'tim'" in r.stderr
    assert _digest(out) == before
