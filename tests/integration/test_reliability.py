"""Issue 30: nothing lost, nothing forged, nobody else's code run.

One test (or a few) per item of the issue, each named after what it shows;
every one fails on the code before its fix.
"""
from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage


def _invoke(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def _compute(task):
    r = np.random.default_rng(task.payload)
    return {"frames": r.integers(0, 256, (3, 8, 8), dtype=np.uint8)}, {}


def _tasks(n=6):
    return [Task(f"t/s{i % 3}/c{i:02d}", cache_key("crop", 1, {}, str(i)),
                 {"subject": f"s{i % 3}", "label": f"class{i % 2}"}, i) for i in range(n)]


def _store(path, n=6, **kw):
    return run_stage(_tasks(n), _compute, output=path, stage="crop", params={}, progress=False,
                     **kw)


# -- item 1: -o never replaces a file mexkit did not write, nor an input ----------------
def test_crop_output_equal_to_its_own_sheet_is_refused(synth_dataset, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(synth_dataset, data)
    sheet = data / "samples.csv"
    before = sheet.read_bytes()
    r = _invoke("crop", "--annotations", sheet, "-o", sheet)
    assert r.exit_code == 2, r.output
    assert "input of this run" in r.output
    assert sheet.read_bytes() == before
    # --overwrite does not make an input replaceable
    r = _invoke("crop", "--annotations", sheet, "-o", sheet, "--overwrite")
    assert r.exit_code == 2 and sheet.read_bytes() == before


def test_crop_output_equal_to_its_video_is_refused(tmp_path):
    import cv2

    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64))
    for i in range(4):
        w.write(np.full((64, 64, 3), 40 * i, np.uint8))
    w.release()
    before = video.read_bytes()
    r = _invoke("crop", video, "--detector", "none", "-o", video)
    assert r.exit_code == 2, r.output
    assert "input of this run" in r.output
    r = _invoke("crop", video, "--detector", "none", "-o", video, "--overwrite")
    assert r.exit_code == 2, r.output
    assert video.read_bytes() == before


def test_output_that_is_not_a_mexkit_store_is_kept(tmp_path):
    mine = tmp_path / "mydata.h5"
    with h5py.File(mine, "w") as fh:
        fh["x"] = np.arange(5)
    notes = tmp_path / "notes.csv"
    notes.write_text("my,notes\n")
    before = mine.read_bytes(), notes.read_bytes()
    from mexkit.errors import ParameterError

    with pytest.raises(ParameterError, match="not a mexkit store"):
        _store(mine)
    part = tmp_path / "part.h5"
    _store(part)
    r = _invoke("merge", part, "-o", notes)
    assert r.exit_code == 2 and "not a mexkit store" in r.output, r.output
    assert (mine.read_bytes(), notes.read_bytes()) == before
    assert not (tmp_path / "mydata.h5.staging").exists()
    # named with --overwrite, it is replaced
    r = _invoke("merge", part, "-o", notes, "--overwrite")
    assert r.exit_code == 0, r.output
    from mexkit.io.store import validate_store

    assert validate_store(notes) == []
    # a mexkit store is replaced as before, and an empty file too
    _store(part)
    empty = tmp_path / "empty.h5"
    empty.touch()
    _store(empty)
    assert validate_store(empty) == []


def test_stage_output_equal_to_a_reuse_store_is_refused(tmp_path):
    a = tmp_path / "a.h5"
    _store(a)
    before = a.read_bytes()
    from mexkit.errors import ParameterError
    from mexkit.pipeline.parallel import configure

    with configure(reuse=(str(a),)), pytest.raises(ParameterError, match="input of this run"):
        _store(a)
    assert a.read_bytes() == before


# -- item 8: only regular files are read as frames ----------------------------------
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_crop_of_a_folder_with_a_fifo_or_dev_zero_fails_that_clip_only(synth_dataset,
                                                                       tmp_path, kind):
    import subprocess
    import sys

    data = tmp_path / "d"
    shutil.copytree(synth_dataset, data)
    folder = sorted(p for p in data.rglob("*") if p.is_dir() and list(p.glob("*.png")))[0]
    frames = sorted(folder.glob("*.png"))
    frames[-1].unlink()
    if kind == "fifo":
        os.mkfifo(frames[-1])
    else:
        frames[-1].symlink_to("/dev/zero")
    out = tmp_path / "o.h5"
    # in a child with a time limit: before the fix it blocked (FIFO) or ran out of memory
    proc = subprocess.run([sys.executable, "-m", "mexkit", "-q", "crop", "--annotations",
                           str(data / "samples.csv"), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "not a regular file" in proc.stderr
    from mexkit.io.store import open_store

    with open_store(out) as s:
        assert len(s.failures) == 1 and len(s) == 5


# -- item 7: --detector none runs dlib too: no threads sharing it -----------------------
def test_crop_detector_none_refuses_threading(synth_dataset, tmp_path):
    out = tmp_path / "o.h5"
    r = _invoke("crop", "--annotations", synth_dataset / "samples.csv", "--detector", "none",
                "-j", "2", "--backend", "threading", "-o", out)
    assert r.exit_code == 2, r.output
    assert "--detector none runs dlib" in r.output
    assert not out.exists()


# -- item 10: what a stage allocates is bounded by what the store holds, at every size --
def _zeros_store(path, frames=16_000, side=128):
    """A valid crop store whose one sample is ``frames`` frames of zeros (~40 kB on disk)."""
    def compute(task):
        return {"frames": np.zeros((frames, side, side), np.uint8)}, {"onset": 0, "apex": 5,
                                                                       "offset": 9}

    run_stage([Task("z/s/c", cache_key("crop", 1, {}, "z"), {"subject": "s"}, 0)], compute,
              output=path, stage="crop", params={}, progress=False)
    return path


@pytest.mark.parametrize("stage", [["tim", "-n", "32"], ["rpca"], ["magnify"]])
def test_store_of_zeros_declaring_260_mb_is_refused_before_reading(tmp_path, stage):
    import resource
    import subprocess
    import sys

    src = _zeros_store(tmp_path / "z.crop.h5")
    assert src.stat().st_size < 2 << 20
    out = tmp_path / "out.h5"

    def limit():  # 1.5 GiB of address space: the stage must not even try
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))

    proc = subprocess.run([sys.executable, "-m", "mexkit", stage[0], str(src), *stage[1:],
                           "-o", str(out)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr
    assert "ratio above 100" in proc.stderr and "z.crop.h5" in proc.stderr, proc.stderr
    assert not out.exists()


def test_many_arrays_of_one_sample_are_bounded_together(tmp_path):
    from mexkit.errors import StoreError
    from mexkit.io.store import StoreLimits, open_store

    def compute(task):  # 8 arrays of 4 MiB of zeros: each under the floor, 32 MiB together
        return {f"a{i}": np.zeros((64, 256, 256), np.uint8) for i in range(8)}, {}

    p = tmp_path / "many.h5"
    run_stage([Task("m/s/c", cache_key("x", 1, {}, "m"), {}, 0)], compute, output=p,
              stage="x", params={}, progress=False)
    with pytest.raises(StoreError, match="declare .* together"):
        open_store(p)
    open_store(p, limits=StoreLimits(ratio_floor=64 << 20)).close()
