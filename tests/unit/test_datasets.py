"""Dataset adapters and sheet readers on small fixtures written in each
dataset's documented format, quirks included."""
from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import openpyxl
import pytest
from _sheets import frames, write_csv, write_xlsx

from mexkit.errors import DatasetError
from mexkit.io import sheets
from mexkit.io.datasets import (
    Sample,
    collect_report,
    dataset_names,
    detect_dataset,
    format_summary,
    group_by_video,
    load_dataset,
    summarize,
    write_generic_csv,
)
from mexkit.labels import apply_scheme

CASME2_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                 "Action Units", "Estimated Emotion"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Type", "Action Units", "Notes",
               "Estimated Emotion", "Objective Classes"]
SAMMLV_HEADER = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset",
                 "Duration", "Type", "Action Units", "Notes"]
SMIC_HEADER = ["Subject", "Filename", "OnsetF", "OffsetF", "Emotion", "FirstF"]


def assert_row_skipped(match: str, load) -> None:
    """The row is skipped with a warning naming file and row; strict makes it an error."""
    with collect_report() as report:
        samples = load()
    assert samples == [] or all(re.search(match, s.origin) is None for s in samples)
    texts = [f"{where}: {why}" for where, why in report.skipped.items()]
    assert any(re.search(match, t) for t in texts), texts
    with pytest.raises(DatasetError, match="--strict"):
        load(strict=True)


def by_clip(samples) -> dict[str, Sample]:
    return {s.clip: s for s in samples}


# -- sheet readers -----------------------------------------------------------------
def test_find_header_below_a_title_block_and_csv_sniffing(tmp_path):
    rows = [["SAMM Micro-FACS Codes"], [], ["Release v2", None, "2018"]] + [[]] * 10 + [
        SAMM_HEADER, ["6", "006_1_2", "1_2", 5562, 5588, 5605, 44, "Micro - 1/2", "4+7",
                      None, "Anger", 3]]
    path = write_xlsx(tmp_path / "samm.xlsx", {"FACS": rows})
    table = sheets.read_table(path, [("onsetframe",), ("offsetframe",), ("subject",)])
    assert table.header_row == 14 and table.sheet == "FACS"
    assert table.rows == [(15, dict(zip(table.keys, [
        "6", "006_1_2", "1_2", 5562, 5588, 5605, 44, "Micro - 1/2", "4+7", None, "Anger", 3],
        strict=True)))]
    assert table.keys[3] == "onsetframe" and table.columns[3] == "Onset Frame"
    semi = tmp_path / "s.csv"
    semi.write_text("subject;clip\nsub01; EP01 \n", encoding="utf-8-sig")
    assert [r.cells for r in sheets.read_rows(semi)] == [("subject", "clip"),
                                                         ("sub01", " EP01 ")]
    with pytest.raises(DatasetError, match="no header row with the columns onset"):
        sheets.read_table(semi, ["onset"])


def test_workbook_with_several_sheets_and_bad_files(tmp_path):
    path = write_xlsx(tmp_path / "w.xlsx", {"a": [[1, 2.0, " x "]], "b": [["y"]]})
    book = sheets.read_workbook(path)
    assert list(book) == ["a", "b"]
    assert book["a"][0].cells == (1, 2, " x ") and book["a"][0].number == 1
    assert sheets.read_rows(path, sheet=1)[0].cells == ("y",)
    with pytest.raises(DatasetError, match="no sheet 'c'"):
        sheets.read_rows(path, sheet="c")
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="bad.xlsx"):
        sheets.read_workbook(tmp_path / "bad.xlsx")
    with pytest.raises(DatasetError, match="unknown extension"):
        sheets.read_workbook(tmp_path / "x.pdf")
    with pytest.raises(DatasetError, match="does not exist"):
        sheets.read_workbook(tmp_path / "missing.xls")


def test_xlsx_with_a_wrong_stored_dimension_is_read_whole(tmp_path):
    # some writers store <dimension ref="A1"/>; read-only openpyxl would trust it
    path = write_xlsx(tmp_path / "d.xlsx", {"s": [["a", "b"], [1, 2], [3, 4]]})
    with zipfile.ZipFile(path) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    name = "xl/worksheets/sheet1.xml"
    members[name] = re.sub(rb'<dimension ref="[^"]*" ?/>', b'<dimension ref="A1"/>',
                           members[name])
    assert b'<dimension ref="A1"/>' in members[name]
    with zipfile.ZipFile(path, "w") as zout:
        for n, data in members.items():
            zout.writestr(n, data)
    assert [r.cells for r in sheets.read_rows(path)] == [("a", "b"), (1, 2), (3, 4)]


def test_xls_cells_are_converted_like_xlsx_cells():
    # xlrd gives every number as a float and types cells with ctype codes
    cells = [SimpleNamespace(ctype=t, value=v) for t, v in
             [(1, "sub01"), (2, 46.0), (2, 12.5), (0, ""), (4, 1), (5, 42), (1, "  ")]]
    sheet = SimpleNamespace(nrows=1, row=lambda i: cells)
    (row,) = sheets._xlrd_rows(sheet)
    assert row.cells == ("sub01", 46, 12.5, None, True, None, None)
    assert isinstance(row.cells[1], int)


# -- CASME II ----------------------------------------------------------------------
def casme2_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "CASME2"
    frames(root / "sub01" / "EP02_01f", range(46, 91), "img{}.jpg")
    frames(root / "sub02" / "EP09_01", range(1, 31), "img{}.jpg")
    rows = [CASME2_HEADER,
            [1, "EP02_01f", 46, 59, 86, "12", "happiness"],
            ["02", "EP09_01 ", " 3", "/", "29", "4+L10", "Disgust  "],   # text, spaces, no apex
            ["sub03", "EP01_02", 100, 120, 140, "R14", "others"],        # no folder
            [2, "EP09_02", 5, 17.0, 200, "1+2", "surprise"]]             # offset past the end
    return write_xlsx(root / "CASME2-coding.xlsx", {"Sheet1": rows})


def test_casme2_positions_frames_and_quirks(tmp_path, caplog):
    sheet = casme2_fixture(tmp_path)
    (tmp_path / "CASME2" / "sub02" / "EP09_02").mkdir()
    frames(tmp_path / "CASME2" / "sub02" / "EP09_02", range(5, 61), "img{}.jpg")
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        samples = load_dataset("casme2", sheet)
    s = by_clip(samples)
    a = s["EP02_01f"]
    assert a.sample_id == "casme2/sub01/EP02_01f" and a.subject == "sub01"
    assert (a.onset, a.apex, a.offset) == (0, 13, 40)
    assert (a.onset_frame, a.apex_frame, a.offset_frame) == (46, 59, 86)
    assert a.n_frames == 45 and a.fps == 200.0 and a.kind == "micro"
    assert Path(a.source) == tmp_path / "CASME2" / "sub01" / "EP02_01f"
    assert a.emotion == "happiness" and a.aus == "12" and a.video == "EP02_01f"
    b = s["EP09_01"]
    assert b.subject == "sub02" and b.emotion == "disgust"
    assert (b.onset, b.apex, b.offset) == (2, None, 28)
    assert "CASME2-coding.xlsx, sheet 'Sheet1', row 3: apex '/' means unlabelled" in caplog.text
    c = s["EP01_02"]
    assert c.source is None and c.subject == "sub03" and c.n_frames is None
    assert (c.onset, c.apex, c.offset) == (0, 20, 40)         # counted from the onset
    assert "1 clip(s) not found" in caplog.text and "sub03/EP01_02" in caplog.text
    d = s["EP09_02"]
    assert (d.onset, d.apex, d.offset) == (0, 12, 55)         # offset clamped to img60
    assert "row 5: offset frame 200 is not in" in caplog.text
    assert detect_dataset(sheet) == "casme2"
    assert [x.clip for x in load_dataset(None, sheet)] == [x.clip for x in samples]


@pytest.mark.parametrize("row, message", [
    ([1, "EP01", 50, 55, 40, "4", "others"], r"row 2: clip 'EP01': onset 50 is after offset 40"),
    ([None, "EP01", 50, 55, 60, "4", "others"], r"row 2: no subject"),
    ([1, "EP01", "fifty", 55, 60, "4", "others"], r"row 2: onset 'fifty' is not a frame number"),
    ([1, None, 50, 55, 60, "4", "others"], r"row 2: no clip name"),
])
def test_casme2_bad_rows_name_file_row_and_value(tmp_path, row, message):
    sheet = write_xlsx(tmp_path / "CASME2-coding.xlsx", {"s": [CASME2_HEADER, row]})
    assert_row_skipped(message, lambda **kw: load_dataset("casme2", sheet, **kw))


def test_casme2_from_csv_with_numbers_as_text(tmp_path):
    rows = [CASME2_HEADER, ["1", "EP02_01f", "46", "59.0", "86", "12", "Happiness "]]
    sheet = write_csv(tmp_path / "casme2.csv", rows)
    (s,) = load_dataset("casme2", sheet)
    assert (s.onset_frame, s.apex_frame, s.offset_frame) == (46, 59, 86)
    assert s.emotion == "happiness"


# -- CASME -------------------------------------------------------------------------
def test_casme_uses_frame_columns_not_millisecond_columns(tmp_path):
    header = ["Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None,
              "Onset", "Total", "AU", "Emotion"]
    rows = [header, [1, "EP01_12", None, 73, 81, "\\", 91, None, 150.0, 316.7, "4", "tense"],
            [1, "EP01_5", None, 113, 121, 125, 133, None, 150.0, 350.0, "12", "happiness"]]
    sheet = write_xlsx(tmp_path / "CASME-coded.xlsx", {"s": rows})
    root = tmp_path / "raw"
    frames(root / "sub01" / "EP01_12", range(70, 95), "EP01_12-{}.jpg")
    assert detect_dataset(sheet) == "casme"
    s = by_clip(load_dataset("casme", sheet, root=root))
    assert (s["EP01_12"].onset, s["EP01_12"].apex, s["EP01_12"].offset) == (3, 11, 21)
    assert s["EP01_12"].fps == 60.0 and s["EP01_12"].emotion == "tense"
    assert (s["EP01_5"].onset_frame, s["EP01_5"].apex_frame) == (113, 121)
    assert s["EP01_5"].source is None


# -- SAMM ----------------------------------------------------------------------------
def test_samm_header_not_first_objective_classes_and_paths(tmp_path, caplog):
    rows = [["SAMM"], ["Micro-FACS codes"], [None]] + [[None]] * 9 + [SAMM_HEADER,
            [6, "006_1_2", "1_2", 5562, 5588, 5605, 44, "Micro - 1/2", "4+7", None,
             "Anger", 3],
            ["007", "007_6_1", "6_1", 2033, 2050, 2080, 48, "Micro - 1/2", "R12", "smile",
             " Happiness", "I"],
            [6, "006_1_3", "1_3", 6000, -1, 6040, 40, "Micro - 1/2", "14", None, "Other", 7],
            [], ["* Inducement codes: see the paper"]]                   # footnote
    sheet = write_xlsx(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", {"FACS": rows})
    frames(tmp_path / "006" / "006_1_2", range(5555, 5611), "006_{:05d}.jpg")
    assert detect_dataset(sheet) == "samm"
    with caplog.at_level(logging.INFO, logger="mexkit"):
        s = by_clip(load_dataset("samm", sheet))
    assert len(s) == 3
    assert "row 18: no clip and no frames ('* Inducement codes: see the paper')" in caplog.text
    a = s["006_1_2"]
    assert a.subject == "006" and a.sample_id == "samm/006/006_1_2"
    assert (a.onset, a.apex, a.offset) == (7, 33, 50) and a.n_frames == 56
    assert a.objective_class == "III" and a.emotion == "anger"
    b = s["007_6_1"]
    assert b.subject == "007" and b.objective_class == "I" and b.emotion == "happiness"
    c = s["006_1_3"]
    assert c.apex is None and c.objective_class == "VII" and c.emotion == "other"


# -- SMIC ----------------------------------------------------------------------------
def test_smic_folders_firstf_and_modality_detection(tmp_path, caplog):
    rows = [SMIC_HEADER, ["s01", "s1_ne_01", 12360, 12380, "negative", 12345],
            [3, "s3_po_02", 500, 530, "positive", 490]]
    sheet = write_xlsx(tmp_path / "SMIC-HS-E_annotation.xlsx", {"HS": rows})
    frames(tmp_path / "HS" / "s1" / "micro" / "negative" / "s1_ne_01", range(12345, 12400),
           "image{:07d}.bmp")
    assert detect_dataset(sheet) == "smic-hs"
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        s = by_clip(load_dataset("smic-hs", sheet))
    a = s["s1_ne_01"]
    assert a.subject == "s1" and a.fps == 100.0 and a.apex is None
    assert (a.onset, a.offset) == (15, 35) and a.n_frames == 55
    b = s["s3_po_02"]
    assert b.source is None and (b.onset, b.offset) == (10, 40)   # counted from FirstF
    plain = write_xlsx(tmp_path / "annotations.xlsx", {"x": rows})
    with pytest.raises(DatasetError, match="smic-hs, smic-vis, smic-nir"):
        detect_dataset(plain)
    assert load_dataset("smic-nir", plain)[0].fps == 25.0


# -- SAMM Long Videos ------------------------------------------------------------------
def sammlv_fixture(tmp_path: Path) -> Path:
    rows = [["SAMM Long Videos"], ["version 3"]] + [[None]] * 7 + [SAMMLV_HEADER,
            ["006", "006_1_1", "1_1", 101, 110, 130, 30, "Micro - 1/2", "4+7", None],
            [6, "006_1_2", "1_2", 20.5, -1, 60, 40, "Macro", "12", "smile"],
            ["006", "006_2_1", "2_1", 11, 15, 19, 9, "Micro - 1/2", "R2", None]]
    return write_xlsx(tmp_path / "SAMM_LongVideos_V3_Release.xlsx", {"Sheet1": rows})


def test_samm_lv_intervals_quirks_and_grouping(tmp_path, caplog):
    sheet = sammlv_fixture(tmp_path)
    frames(tmp_path / "006_1", range(1, 201), "006_{:05d}.jpg")
    assert detect_dataset(sheet) == "samm-lv"
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        samples = load_dataset("samm-lv", sheet)
    s = by_clip(samples)
    a, b, c = s["006_1_1"], s["006_1_2"], s["006_2_1"]
    assert a.video == b.video == "006_1" and a.source == b.source
    assert (a.onset, a.apex, a.offset, a.kind) == (100, 109, 129, "micro")
    assert (b.onset_frame, b.apex, b.offset, b.kind) == (21, None, 59, "macro")
    assert "row 12: fractional onset 20.5 rounded to 21" in caplog.text
    assert "row 12: apex -1 means unlabelled" in caplog.text
    assert c.source is None and (c.onset, c.apex, c.offset) == (10, 14, 18)  # frame 1 = pos 0
    groups = group_by_video(samples)
    assert list(groups) == ["samm-lv/006/006_1", "samm-lv/006/006_2"]
    assert [x.clip for x in groups["samm-lv/006/006_1"]] == ["006_1_2", "006_1_1"]


def test_samm_lv_unknown_type_is_an_error(tmp_path):
    rows = [["title"], SAMMLV_HEADER, ["006", "006_1_1", "1_1", 1, 2, 3, 3, "Blink", "", ""]]
    sheet = write_xlsx(tmp_path / "lv.xlsx", {"s": rows})
    assert_row_skipped("row 3: expression type 'Blink'",
                       lambda **kw: load_dataset("samm-lv", sheet, **kw))


# -- CAS(ME)^2 ---------------------------------------------------------------------------
def casme_sq_fixture(tmp_path: Path, extra_rows=()) -> Path:
    code = [[1, "anger1_1", 10, 15, 22, "4+7", "negative", "micro-expression", "anger"],
            [1, "anger1_2", 40, 48, 0, "12", "positive ", "macro-expression", "happy"],
            [2, "happy1_1", 30, 33, 36, "R12", "positive", "micro-expression", "happy"],
            [2, "disgust1_3", 5, 0, 0, "1+2", "surprise", "micro-expression", "disgust"],
            *extra_rows]
    rule1 = [[15, "s15", 1], [16, "s16", 2]]
    rule2 = [["0101", "disgust1"], ["0401", "anger1"], [502, "happy1"]]
    return write_xlsx(tmp_path / "CAS(ME)^2code_final.xlsx",
                      {"CASFEcode_final": code, "naming rule1": rule1, "naming rule2": rule2})


def test_casme_sq_sheets_offsets_and_sources(tmp_path, caplog):
    sheet = casme_sq_fixture(tmp_path)
    frames(tmp_path / "rawpic" / "s15" / "15_0401girlcrashing", range(1, 101), "img{}.jpg")
    video_dir = tmp_path / "rawvideo" / "s16"
    video_dir.mkdir(parents=True)
    w = cv2.VideoWriter(str(video_dir / "16_0502funnyerrors.avi"),
                        cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (8, 8))
    for _ in range(50):
        w.write(np.zeros((8, 8, 3), np.uint8))
    w.release()
    assert detect_dataset(sheet) == "casme-sq"
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        s = by_clip(load_dataset("casme-sq", sheet))
    a = s["anger1_1"]
    assert a.sample_id == "casme-sq/s15/anger1_1" and a.video == "anger1"
    assert (a.onset, a.apex, a.offset) == (9, 14, 21) and a.kind == "micro"
    assert Path(a.source).name == "15_0401girlcrashing" and a.fps == 30.0
    assert a.emotion == "negative" and a.aus == "4+7"
    b = s["anger1_2"]
    assert (b.offset_frame, b.kind, b.emotion) == (56, "macro", "positive")   # 48 + (48 - 40)
    assert "row 2: offset 0 means unknown; estimated as apex + (apex - onset) = 56" in caplog.text
    c = s["happy1_1"]
    assert c.subject == "s16" and Path(c.source).suffix == ".avi" and c.n_frames == 50
    assert (c.onset, c.apex, c.offset) == (29, 32, 35)                        # frame 1 = pos 0
    assert "disgust1_3" not in s and "row 4: clip 'disgust1_3': offset unknown" in caplog.text
    assert "1 clip(s) not found" not in caplog.text


@pytest.mark.parametrize("row, message", [
    ([3, "anger1_3", 1, 2, 3, "4", "negative", "micro-expression", ""],
     "row 5: participant 3 is not in sheet 'naming rule1'"),
    ([1, "fear9_1", 1, 2, 3, "4", "negative", "micro-expression", ""],
     "row 5: video 'fear9' .* is not in sheet 'naming rule2'"),
])
def test_casme_sq_unknown_codes_are_errors(tmp_path, row, message):
    sheet = casme_sq_fixture(tmp_path, [row])
    assert_row_skipped(message, lambda **kw: load_dataset("casme-sq", sheet, **kw))


# -- generic CSV ------------------------------------------------------------------------
def test_generic_round_trip(tmp_path):
    samples = load_dataset("casme2", casme2_fixture(tmp_path))
    on_disk = [s for s in samples if s.source is not None]
    labelled, _ = apply_scheme(on_disk, "megc3")
    (tmp_path / "out").mkdir()
    out = write_generic_csv(labelled, tmp_path / "out" / "generic.csv")
    text = out.read_text().splitlines()
    assert text[0].startswith("subject,clip,path,fps,onset,apex,offset,label")
    assert "../CASME2/sub01/EP02_01f" in text[1]
    assert detect_dataset(out) == "generic"
    back = load_dataset("generic", out)
    assert len(back) == len(labelled)
    for a, b in zip(labelled, back, strict=True):
        assert (b.subject, b.clip, b.dataset, b.fps) == (a.subject, a.clip, a.dataset, a.fps)
        assert (b.onset, b.apex, b.offset) == (a.onset, a.apex, a.offset)
        assert Path(b.source).resolve() == Path(a.source).resolve()
        assert (b.label, b.emotion, b.aus, b.n_frames) == (a.label, a.emotion, a.aus,
                                                           a.n_frames)
        assert b.sample_id == a.sample_id


def test_generic_contract_checks(tmp_path, caplog):
    frames(tmp_path / "clips" / "c1", range(10), "f{}.png")
    header = ["label", "offset", "onset", "apex", "fps", "path", "clip", "subject"]  # any order
    ok = write_csv(tmp_path / "g.csv", [header, ["", 8, 2, "", 50, "clips/c1", "c1", "p1"]])
    (s,) = load_dataset("generic", ok)
    assert (s.onset, s.apex, s.offset, s.label, s.dataset) == (2, None, 8, None, "generic")
    assert s.n_frames == 10 and s.sample_id == "generic/p1/c1"
    bad = write_csv(tmp_path / "b.csv", [header, ["x", 10, 2, 5, 50, "clips/c1", "c1", "p1"]])
    assert_row_skipped(r"row 2: clip 'c1': offset 10 but .* has 10 frames",
                       lambda **kw: load_dataset("generic", bad, **kw))
    fps = write_csv(tmp_path / "f.csv", [header, ["x", 8, 2, 5, "fast", "clips/c1", "c1", "p1"]])
    assert_row_skipped("row 2: fps 'fast' is not a number",
                       lambda **kw: load_dataset("generic", fps, **kw))
    missing = write_csv(tmp_path / "m.csv", [header[:-1], ["x", 8, 2, 5, 50, "clips/c1", "c1"]])
    with pytest.raises(DatasetError, match="no header row with the columns subject"):
        load_dataset("generic", missing)
    gone = write_csv(tmp_path / "n.csv", [header, ["x", 8, 2, 5, 50, "clips/nope", "c1", "p1"]])
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        (g,) = load_dataset("generic", gone)
    assert g.n_frames is None and "path 'clips/nope' does not exist" in caplog.text


# -- MEGC 2019 composite ----------------------------------------------------------------
def test_megc2019_list_with_and_without_sheets(tmp_path, caplog):
    casme2 = casme2_fixture(tmp_path)
    smic = write_xlsx(tmp_path / "smic.xlsx", {"s": [
        SMIC_HEADER, ["s01", "s1_ne_01", 12360, 12380, "negative", 12345]]})
    listing = write_csv(tmp_path / "combined_3_class.csv", [
        ["dataset", "sub", "filename_o", "label", "apex", "imagename"],
        ["casme2", "sub01", "EP02_01f", 1, "", "sub01_EP02_01f.jpg"],
        ["smic", "s01", "s01_ne_01", 0, "", "s01_s1_ne_01.jpg"]])
    assert detect_dataset(listing) == "megc2019"
    merged = load_dataset("megc2019", listing,
                          sheets={"casme2": casme2, "smic-hs": smic}, root=tmp_path)
    a, b = merged
    assert a.sample_id == "casme2/sub01/EP02_01f" and a.label == "positive"
    assert (a.onset_frame, a.apex_frame, a.offset_frame) == (46, 59, 86)
    assert b.sample_id == "smic-hs/s1/s1_ne_01" and b.label == "negative" and b.fps == 100.0
    frames(tmp_path / "casme2" / "sub01" / "EP02_01f", range(46, 91), "img{}.jpg")
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        a2, b2 = load_dataset("megc2019", listing, root=tmp_path)
    assert (a2.onset, a2.apex, a2.offset, a2.onset_frame, a2.offset_frame) == (0, None, 44,
                                                                               46, 90)
    assert b2.onset is None and b2.source is None and b2.label == "negative"
    assert "1 clip(s) have no frames" in caplog.text
    bad = write_csv(tmp_path / "bad.csv", [["dataset", "subject", "filename", "label"],
                                           ["samm", "6", "006_1_2", 7]])
    assert_row_skipped("row 2: label '7'", lambda **kw: load_dataset("megc2019", bad, **kw))


# -- detection, names, summary ------------------------------------------------------------
def test_detection_and_name_errors(tmp_path):
    unknown = write_csv(tmp_path / "u.csv", [["a", "b"], [1, 2]])
    with pytest.raises(DatasetError, match="cannot tell which dataset"):
        detect_dataset(unknown)
    with pytest.raises(DatasetError, match="'dataset' parameter.*casme2"):
        load_dataset("casme3", unknown)
    assert {"casme", "casme2", "smic-hs", "smic-vis", "smic-nir", "samm", "casme-sq",
            "samm-lv", "megc2019", "generic", "casme3-a", "casme3-a-lv", "casme3-c", "4dme",
            "mmew", "dfme", "megc-unseen", "megc2019-flow"} == set(dataset_names())


def test_duplicate_ids_are_made_unique(tmp_path, caplog):
    rows = [CASME2_HEADER, [1, "EP01", 1, 2, 3, "4", "others"],
            [1, "EP01", 5, 6, 7, "4", "others"]]
    sheet = write_xlsx(tmp_path / "c.xlsx", {"s": rows})
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        ids = [s.sample_id for s in load_dataset("casme2", sheet)]
    assert ids == ["casme2/sub01/EP01", "casme2/sub01/EP01#2"]
    assert "already used" in caplog.text


def test_summary_counts_and_table(tmp_path):
    samples = load_dataset("casme2", casme2_fixture(tmp_path))
    samples += load_dataset("samm-lv", sammlv_fixture(tmp_path))
    labelled, skipped = apply_scheme(samples, "4class", on_error="skip")
    summary = summarize(labelled)
    # casme2: happiness, disgust, others, surprise; samm-lv has no emotion -> skipped
    assert [sid for sid, _ in skipped] == ["samm-lv/006/006_1_1", "samm-lv/006/006_1_2",
                                           "samm-lv/006/006_2_1"]
    assert summary["n_samples"] == 4 and summary["n_subjects"] == 3
    assert summary["datasets"]["casme2"]["subjects"] == 3
    assert summary["subjects"]["casme2"] == {"sub01": 1, "sub02": 2, "sub03": 1}
    assert summary["labels"]["casme2"] == {"negative": 1, "others": 1, "positive": 1,
                                           "surprise": 1}
    full = summarize(samples)
    assert full["datasets"]["samm-lv"] == {"samples": 3, "micro": 2, "macro": 1,
                                           "without_source": 3, "fps": [200.0],
                                           "subjects": 1, "videos": 2}
    text = format_summary(full)
    assert text.splitlines()[0] == "7 samples, 4 subjects, 6 videos in 2 dataset(s)"
    assert any(line.split() == ["samm-lv", "3", "1", "2", "2", "1", "3", "200"]
               for line in text.splitlines())
    assert "subjects (casme2, samples each): sub01 1, sub02 2, sub03 1" in text


# -- the layouts `mexkit synth` writes (the coordination contract) -----------------------
def test_reads_synthetic_casme2_and_samm_lv_as_written(tmp_path):
    synth = pytest.importorskip("mexkit.pipeline.synth")
    sheet = synth.write_casme2_like(tmp_path / "c2", n_subjects=2, clips_per_class=1,
                                    classes=("positive",), seconds=(0.1, 0.15))
    assert detect_dataset(sheet) == "casme2"
    clips = load_dataset(None, sheet)
    generic = {s.sample_id.split("/", 1)[1]: s for s in
               load_dataset(None, tmp_path / "c2" / "samples.csv")}
    assert len(clips) == len(generic) == 2
    for s in clips:
        truth = np.load(tmp_path / "c2" / "truth" / s.subject / f"{s.clip}.npz")
        expected = (int(truth["onset"]), int(truth["apex"]), int(truth["offset"]))
        assert (s.onset, s.apex, s.offset) == expected          # positions in the folder
        g = generic[f"{s.subject}/{s.clip}"]
        assert (g.onset, g.apex, g.offset) == expected          # generic CSV agrees
        assert s.onset_frame == truth["frame_numbers"][s.onset] > 0
        assert s.n_frames == g.n_frames == len(truth["frame_numbers"])
        assert s.emotion == str(truth["emotion"]) and s.aus == str(truth["aus"])
    sheet = synth.write_samm_lv_like(tmp_path / "lv", n_subjects=1, seconds=6, fps=25,
                                     n_micro=2, n_macro=1, n_blinks=0)
    assert detect_dataset(sheet) == "samm-lv"
    intervals = load_dataset("samm-lv", sheet, fps=25)
    (video_id, items), = group_by_video(intervals).items()
    truth = np.load(tmp_path / "lv" / "truth" / f"{items[0].video}.npz")
    assert [(s.onset, s.apex, s.offset, s.kind, s.fps) for s in items] == [
        (int(a), int(b), int(c), str(k), 25.0) for a, b, c, k in
        zip(truth["onsets"], truth["apexes"], truth["offsets"], truth["kinds"], strict=True)]
    assert all(s.source == items[0].source for s in items) and video_id == "samm-lv/006/006_1"


def test_casme_sq_found_by_its_columns_when_sheets_are_renamed(tmp_path):
    sheet = casme_sq_fixture(tmp_path)
    wb = openpyxl.load_workbook(sheet)
    for i, ws in enumerate(wb.worksheets, start=1):
        ws.title = f"Sheet{i}"
    wb.save(sheet)
    assert detect_dataset(sheet) == "casme-sq"
    assert [s.subject for s in load_dataset("casme-sq", sheet)] == ["s15", "s15", "s16"]


def test_fps_override_attrs_and_write_errors(tmp_path):
    sheet = casme2_fixture(tmp_path)
    samples = load_dataset("casme2", sheet, fps=100)
    assert {s.fps for s in samples} == {100.0}
    attrs = samples[0].attrs()
    assert attrs["onset"] == 0 and attrs["fps"] == 100.0 and "origin" not in attrs
    assert "apex" not in samples[1].attrs()                 # unknown apex is left out
    with pytest.raises(ValueError, match="'fps' argument does not apply to 'generic'"):
        load_dataset("generic", sheet, fps=25)
    missing = [s for s in samples if s.source is None]
    with pytest.raises(DatasetError, match="casme2/sub03/EP01_02.*no source"):
        write_generic_csv(missing, tmp_path / "g.csv")
