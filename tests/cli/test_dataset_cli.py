"""`mexkit samples` and `mexkit crop` on annotation sheets: row summaries and
--strict, --detector none keeping frame sizes, a sheet given as INPUT, and
generic sheets whose rows share a base name across folders."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store

SAMMLV_HEADER = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset",
                 "Duration", "Type", "Action Units", "Notes"]
GENERIC = ["subject", "clip", "path", "fps", "onset", "apex", "offset", "label"]


def frames(folder: Path, n: int, shape=(30, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        assert cv2.imwrite(str(folder / f"img{i + 1}.png"),
                           rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
    return folder


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def samm_lv(tmp_path: Path, extra: list[list] = ()) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in [["SAMM Long Videos"], [], SAMMLV_HEADER,
                [6, "006_1_1", "1_1", 0, 30, 60, 61, "Macro", "12", None],
                [6, "006_1_2", "1_2", 500, 520, 540, 41, "Micro - 1/2", "4", None], *extra]:
        ws.append(row)
    path = tmp_path / "SAMM_LongVideos_V2_Release.xlsx"
    wb.save(path)
    return path


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_samples_summary_counts_repaired_rows_and_exits_0(tmp_path):
    r = run("samples", "--annotations", str(samm_lv(tmp_path)))
    assert r.exit_code == 0, r.output
    assert "sheet rows: 2: 1 read as written, 1 repaired, 0 skipped" in r.stdout
    assert "row 4: onset 0 precedes the first frame 1" in r.stderr


def test_samples_skipped_row_exits_1_and_strict_refuses(tmp_path):
    sheet = samm_lv(tmp_path, [[7, "007_3_1", "3_1", "x", 5, 9, 4, "Macro", "4", None]])
    r = run("samples", "--annotations", str(sheet))
    assert r.exit_code == 1
    assert "2 samples" in r.stdout and "1 skipped" in r.stdout
    assert "row 6: onset 'x' is not a frame number; row skipped" in r.stderr
    r = run("samples", "--annotations", str(sheet), "--strict")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "row 4: onset 0" in r.stderr and "--strict" in r.stderr
    r = run("samples", "--annotations", str(sheet), "--json")
    assert '"skipped": 1' in r.stdout and r.exit_code == 1


def test_samples_dataset_choices_come_from_the_registry(tmp_path):
    r = run("samples", "--annotations", str(samm_lv(tmp_path)), "--dataset", "nope")
    assert r.exit_code == 2 and "casme3-a" in r.output and "megc-unseen" in r.output


@pytest.fixture
def precropped(tmp_path):
    """Two pre-cropped, non-square clips and a generic sheet for them."""
    frames(tmp_path / "clips" / "a", 4, (34, 28))
    frames(tmp_path / "clips" / "b", 4, (34, 28))
    return write_csv(tmp_path / "samples.csv", [
        GENERIC, ["p1", "a", "clips/a", 100, 0, 1, 3, "x"], ["p2", "b", "clips/b", 100, 0, 2, 3,
                                                            "y"]])


def test_detector_none_keeps_frame_sizes_unless_size_is_given(tmp_path, precropped):
    out = tmp_path / "kept.crop.h5"
    r = run("crop", "--annotations", str(precropped), "--detector", "none", "-o", str(out))
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        assert {sample["frames"].shape for sample in s} == {(4, 34, 28)}
    out2 = tmp_path / "sized.crop.h5"
    r = run("crop", "--annotations", str(precropped), "--detector", "none", "--size", "32",
            "-o", str(out2))
    assert r.exit_code == 0, r.output
    with open_store(out2) as s:
        assert {sample["frames"].shape for sample in s} == {(4, 32, 32)}


def test_a_sheet_given_as_input_is_read_as_annotations(tmp_path, precropped):
    out = tmp_path / "in.crop.h5"
    r = run("crop", str(precropped), "--detector", "none", "-o", str(out))
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        assert len(s) == 2
    renamed = tmp_path / "sheet_without_extension"
    renamed.write_bytes(precropped.read_bytes())
    r = run("crop", str(renamed), "--detector", "none", "-o", str(tmp_path / "x.crop.h5"))
    assert r.exit_code == 0, r.output
    r = run("crop", str(precropped), str(tmp_path / "clips" / "a"), "--detector", "none")
    assert r.exit_code != 0 and "--annotations" in r.output


def test_generic_rows_with_one_base_name_in_two_folders_stay_two_samples(tmp_path):
    frames(tmp_path / "sub01" / "EP01_05", 5)
    frames(tmp_path / "sub02" / "EP01_05", 5)
    sheet = write_csv(tmp_path / "samples.csv", [
        GENERIC, ["sub01", "clipA", "sub01/EP01_05", 100, 0, 2, 4, "x"],
        ["sub02", "clipB", "sub02/EP01_05", 100, 1, 2, 3, "y"]])
    out = tmp_path / "two.crop.h5"
    r = run("crop", "--annotations", str(sheet), "--detector", "none", "-o", str(out))
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        assert len(s) == 2
        assert sorted(x.attrs["subject"] for x in s) == ["sub01", "sub02"]


def test_samples_encoding_option_reads_a_cp1252_sheet(tmp_path):
    frames(tmp_path / "clips" / "a", 4)
    sheet = tmp_path / "g.csv"
    sheet.write_bytes(("subject,clip,path,fps,onset,apex,offset,label,emotion\n"
                       "p1,a,clips/a,100,0,1,3,x,d\u00e9go\u00fbt\n").encode("cp1252"))
    r = run("samples", "--annotations", str(sheet), "--list")
    assert r.exit_code == 0 and "line(s) are not UTF-8 (line 2)" in r.stderr
    r = run("samples", "--annotations", str(sheet), "--list", "--encoding", "cp1252")
    assert r.exit_code == 0 and "not UTF-8" not in r.stderr
    assert "d\u00e9go\u00fbt" in r.stdout
    r = run("samples", "--annotations", str(sheet), "--encoding", "utf-8")
    assert r.exit_code != 0 and "line 2 is not utf-8 text" in r.stderr
    r = run("samples", "--annotations", str(sheet), "--encoding", "nope")
    assert r.exit_code != 0 and "'encoding' parameter" in r.stderr


def test_samm_lv_sized_like_the_release_counts_as_published(tmp_path):
    """A sheet of the release's size and quirks: 502 intervals in 147 videos, 159 micro and
    343 macro, a few with onset 0 or apex -1; every row is read or repaired (exit 0)."""
    rows, n = [], 0
    for v in range(147):
        subject, video = f"{6 + v // 5:03d}", v % 5 + 1
        for k in range(4 if v < 61 else 3):
            n += 1
            onset = 0 if n % 97 == 0 else 1000 * k + 11
            apex = -1 if n % 89 == 0 else onset + 20
            kind = "Micro - 1/2" if n <= 159 else "Macro"
            rows.append([int(subject), f"{subject}_{video}_{k + 1}", f"{video}_{k + 1}", onset,
                         apex, onset + 60, 61, kind, "12", None])
    assert len(rows) == 502
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in [["SAMM Long Videos"]] + [[]] * 8 + [SAMMLV_HEADER] + rows:
        ws.append(row)
    wb.save(tmp_path / "SAMM_LongVideos_V2_Release.xlsx")
    r = run("samples", "--annotations", str(tmp_path / "SAMM_LongVideos_V2_Release.xlsx"))
    assert r.exit_code == 0, r.stderr[-500:]
    assert r.stdout.startswith("502 samples, ")
    assert re.search(r"samm-lv\s+502\s+\d+\s+147\s+159\s+343", r.stdout)
    assert "0 skipped" in r.stdout and "row 107: onset 0 precedes" in r.stderr


def test_megc2019_list_sized_like_the_release_counts_as_published(tmp_path):
    """442 clips of 68 subjects (SMIC 164 of 16, CASME II 145 of 24, SAMM 133 of 28),
    250 negative, 109 positive, 83 surprise, headerless with numeric labels."""
    parts = [("smic", 16, 164), ("casme2", 24, 145), ("samm", 28, 133)]
    labels = [0] * 250 + [1] * 109 + [2] * 83
    rows, i = [], 0
    for name, n_subjects, n_clips in parts:
        for c in range(n_clips):
            s = c % n_subjects + 1
            subject = {"smic": f"s{s:02d}", "casme2": f"sub{s:02d}", "samm": f"{s + 5:03d}"}[name]
            clip = {"smic": f"s{s:02d}_ne_{c:02d}", "casme2": f"EP{c:02d}_01",
                    "samm": f"{s + 5:03d}_{c}_1"}[name]
            rows.append([name, subject, clip, labels[i]])
            i += 1
    sheet = write_csv(tmp_path / "combined_3class_gt.csv", rows)
    r = run("samples", "--annotations", str(sheet))
    assert r.exit_code == 0, r.stderr[-500:]
    assert r.stdout.startswith("442 samples, 68 subjects")
    for name, count in (("smic-hs", 164), ("casme2", 145), ("samm", 133)):
        assert re.search(rf"\n{name}\s+{count}\s", r.stdout)
    assert re.search(r"negative\s+\d+\s+\d+\s+\d+\s+250", r.stdout)
    assert re.search(r"positive\s+\d+\s+\d+\s+\d+\s+109", r.stdout)
    assert re.search(r"surprise\s+\d+\s+\d+\s+\d+\s+83", r.stdout)


def test_casme_sq_sized_like_the_release_counts_as_published(tmp_path):
    """357 intervals (57 micro, 300 macro) of 22 subjects' long videos, without a header,
    some offsets 0 (estimated from the apex); every row is read or repaired (exit 0)."""
    videos = ["anger1", "anger2", "disgust1", "happy1"]
    coding = []
    for n in range(357):
        participant, video = n % 22 + 1, videos[n % 4]
        onset = 100 + 50 * (n // 88)
        offset = 0 if n % 41 == 0 else onset + 20
        kind = "micro-expression" if n < 57 else "macro-expression"
        coding.append([participant, f"{video}_{n // 88 + 1}", onset, onset + 6, offset, "4",
                       "negative", kind, ""])
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "CASFEcode_final"
    for row in coding:
        ws.append(row)
    rule1 = wb.create_sheet("naming rule1")
    for p in range(1, 23):
        rule1.append([14 + p, f"s{14 + p}", p])
    rule2 = wb.create_sheet("naming rule2")
    for code, name in ((401, "anger1"), (402, "anger2"), (101, "disgust1"), (201, "happy1")):
        rule2.append([code, name])
    wb.save(tmp_path / "CAS(ME)^2code_final.xlsx")
    r = run("samples", "--annotations", str(tmp_path / "CAS(ME)^2code_final.xlsx"))
    assert r.exit_code == 0, r.stderr[-500:]
    assert re.search(r"casme-sq\s+357\s+22\s+\d+\s+57\s+300", r.stdout)
    assert "357 read as written" not in r.stdout and "0 skipped" in r.stdout
    assert "row 42: offset 0 means unknown" in r.stderr
