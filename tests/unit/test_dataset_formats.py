"""Official annotation files in each published form, quirks included, and the
newer datasets' adapters; each fixture is built here in the file's own layout."""
from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from pathlib import Path

import pytest
from _sheets import frames, write_csv, write_xlsx

from mexkit.errors import DatasetError
from mexkit.io import sheets
from mexkit.io.datasets import (
    adapters,
    collect_report,
    dataset_names,
    detect_dataset,
    group_by_video,
    load_dataset,
    markdown_table,
    summarize,
    write_generic_csv,
    write_generic_rows,
)

SAMMLV_HEADER = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset",
                 "Duration", "Type", "Action Units", "Notes"]
CASME2_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                 "Action Units", "Estimated Emotion"]
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "Action Units",
                 "Objective class", "emotion"]


def read_with_report(*args, **kwargs):
    with collect_report() as report:
        samples = load_dataset(*args, **kwargs)
    return samples, report


# -- SAMM Long Videos: V1 and V2 sheets ------------------------------------------------
def samm_lv_rows(title_rows: int) -> list[list]:
    """A SAMM-LV sheet as released: title block, header, intervals (1-based frames)."""
    title = [["SAMM Long Videos"], ["Ground truth for MEGC"], []]
    title += [[]] * (title_rows - len(title))
    return title + [SAMMLV_HEADER,
                    [6, "006_1_1", "1_1", 0, 150, 320, 321, "Macro", "R12", None],  # onset 0
                    [6, "006_1_2", "1_2", 5562, 5588, 5605, 44, "Micro - 1/2", "4+7", None],
                    [6, "006_1_3", "1_3", 6000, -1, 6040, 41, "Micro - 1/2", "14", "apex?"],
                    ["007", "007_6_1", "6_1", 1200.4, 1230, 1500, 301, "Macro", "4", None],
                    ["007", "007_6_2 ", "6_2", 2000, 2010, 2030, 31, "Micro - 1/2", "12", None],
                    ["007", "007_6_3", "6_3", 2500, 2510, -1, 0, "Macro", "12", None],
                    [], ["* Onset 0: the expression starts with the video"]]


@pytest.mark.parametrize("version, title_rows", [("V1", 9), ("V2", 9), ("V3", 9),
                                                 ("V2", 4)])
def test_samm_lv_sheets_with_onset_zero_are_read_whole(tmp_path, caplog, version, title_rows):
    sheet = write_xlsx(tmp_path / f"SAMM_LongVideos_{version}_Release.xlsx",
                       {"FACS": samm_lv_rows(title_rows)})
    assert detect_dataset(sheet) == "samm-lv"
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        samples, report = read_with_report(None, sheet)
    assert len(samples) == 6 and report.skipped == {}
    assert Counter(s.kind for s in samples) == {"micro": 3, "macro": 3}
    assert len(group_by_video(samples)) == 2
    first = samples[0]
    header = title_rows + 1
    assert (first.onset_frame, first.onset) == (1, 0)       # onset 0 is the first frame
    assert f"row {header + 1}: onset 0 precedes the first frame 1" in caplog.text
    assert f"SAMM_LongVideos_{version}_Release.xlsx, sheet 'FACS', row {header + 3}: apex -1" \
        in caplog.text
    assert samples[2].apex is None
    assert samples[3].onset_frame == 1200                  # fractional onset rounded
    assert samples[4].clip == "007_6_2" and samples[4].video == "007_6"
    assert samples[5].offset_frame == 2520                 # offset -1: apex + (apex - onset)
    assert report.rows == 6 and report.n_repaired == 4 and report.n_read == 2
    with pytest.raises(DatasetError, match=rf"row {header + 1}: onset 0 .*--strict"):
        load_dataset("samm-lv", sheet, strict=True)


def test_samm_lv_onset_zero_with_frames_on_disk(tmp_path):
    sheet = write_xlsx(tmp_path / "SAMM_LongVideos_V2_Release.xlsx",
                       {"FACS": [SAMMLV_HEADER,
                                 [6, "006_1_1", "1_1", 0, 3, 5, 6, "Macro", "12", None]]})
    frames(tmp_path / "SAMM_longvideos" / "006_1", range(1, 11), "006_{:05d}.jpg")
    (s,) = load_dataset("samm-lv", sheet)
    assert (s.onset, s.apex, s.offset, s.n_frames) == (0, 2, 4, 10)


# -- MEGC 2019 composite list ----------------------------------------------------------
def megc_rows() -> list[list]:
    return [["smic", "s1", "s1_ne_01", 0], ["smic", "s01", "s01_po_02", 1],
            ["casme2", "sub01", "EP02_01f", 1], ["casme2", "17", "EP01_06", 2],
            ["samm", "006", "006_1_2", 0], ["samm", 7, "007_6_1", 2], []]


def test_megc2019_headerless_list_with_numeric_labels(tmp_path):
    listing = write_csv(tmp_path / "combined_3class_gt.csv", megc_rows())
    assert detect_dataset(listing) == "megc2019"
    samples, report = read_with_report(None, listing)
    assert report.skipped == {} and report.rows == 6
    summary = summarize(samples)
    assert {d: v["samples"] for d, v in summary["datasets"].items()} == {
        "smic-hs": 2, "casme2": 2, "samm": 2}
    assert Counter(s.label for s in samples) == {"negative": 2, "positive": 2, "surprise": 2}
    assert [s.sample_id for s in samples[:3]] == [
        "smic-hs/s1/s1_ne_01", "smic-hs/s1/s1_po_02", "casme2/sub01/EP02_01f"]
    assert samples[3].subject == "sub17" and samples[5].subject == "007"
    assert summary["n_subjects"] == 5


def test_megc2019_list_with_header_and_label_names(tmp_path):
    rows = [["dataset", "sub", "filename_o", "emotion"], ["SMIC", "s1", "s1_ne_01", "negative"],
            ["CASME_II", "sub01", "EP02_01f", "positive"], ["SAMM", "006", "006_1_2", "Surprise"]]
    listing = write_xlsx(tmp_path / "megc2019.xlsx", {"list": rows})
    assert detect_dataset(listing) == "megc2019"
    samples = load_dataset(None, listing)
    assert [s.label for s in samples] == ["negative", "positive", "surprise"]


def test_megc2019_bad_entry_is_skipped_not_fatal(tmp_path):
    listing = write_csv(tmp_path / "megc.csv", megc_rows()[:5] + [["samm", "008", "x", 7]])
    samples, report = read_with_report("megc2019", listing)
    assert len(samples) == 5
    assert list(report.skipped.values()) == ["label '7' is not negative/positive/surprise "
                                             "or 0/1/2"]
    assert re.search(r"megc\.csv, row 6$", next(iter(report.skipped)))


# -- CASME II: coding sheets with and without the emotion column -----------------------
@pytest.mark.parametrize("header", [
    CASME2_HEADER,
    CASME2_HEADER[:6],                                           # no emotion column
    CASME2_HEADER[:2] + [None] + CASME2_HEADER[2:],              # an unnamed empty column
])
def test_casme2_coding_sheet_versions(tmp_path, header):
    values = {"Subject": "01", "Filename": "EP02_01f", "OnsetFrame": 46, "ApexFrame": 59,
              "OffsetFrame": 86, "Action Units": "12", "Estimated Emotion": "happiness"}
    rows = [header, [values.get(h) if h else None for h in header],
            [values.get(h) if h != "ApexFrame" else "/" for h in header if True]]
    rows[2] = ["02" if h == "Subject" else ("/" if h == "ApexFrame" else values.get(h))
               for h in header]
    sheet = write_xlsx(tmp_path / "CASME2-coding-20140508.xlsx", {"Sheet1": rows})
    assert detect_dataset(sheet) == "casme2"
    a, b = load_dataset(None, sheet)
    assert (a.subject, a.onset_frame, a.apex_frame, a.offset_frame) == ("sub01", 46, 59, 86)
    assert a.emotion == ("happiness" if "Estimated Emotion" in header else "")
    assert b.subject == "sub02" and b.apex is None


# -- CAS(ME)^2: the updated workbook with a header row and extra sheets ------------------
def test_casme_sq_updated_workbook_with_header_row(tmp_path):
    coding = [["participant", "name", "onset", "apex", "offset", "AUs", "emotion", "type",
               "self-report"],
              [1, "anger1_1", 557, 572, 608, "4+10", "negative", "macro-expression", "anger"],
              [1, "anger1_2", 1, 12, 0, "4", "negative", "micro-expression", "anger"],
              [2, "disgust1_1", 100, 0, 0, "4", "others", "macro-expression", ""]]
    rule1 = [["subject", "folder", "participant"], [15, "s15", 1], [16, "s16", 2]]
    rule2 = [["code", "name"], ["0401", "anger1"], [101, "disgust1"]]
    sheet = write_xlsx(tmp_path / "CAS(ME)^2code_final(Updated).xlsx",
                       {"CASFEcode_final": coding, "naming rule1": rule1, "naming rule2": rule2,
                        "notes": [["release notes"]]})
    assert detect_dataset(sheet) == "casme-sq"
    samples, report = read_with_report(None, sheet)
    assert [s.clip for s in samples] == ["anger1_1", "anger1_2"]
    assert samples[1].offset_frame == 23               # offset 0: apex + (apex - onset)
    assert [s.kind for s in samples] == ["macro", "micro"]
    assert report.rows == 3 and len(report.skipped) == 1 and report.n_repaired == 1
    assert "offset unknown and no apex" in next(iter(report.skipped.values()))


# -- CAS(ME)^3 ------------------------------------------------------------------------------
def casme3_fixture(tmp_path: Path) -> Path:
    rows = [CASME3_HEADER,
            ["spNO.1", "a", 120, 131, 140, "4,7", "III", "disgust"],
            ["spNO.1", "a", 300, 306, 315, "12", "I", "happy"],
            ["spNO.2", "b", 10, 14, 20, "1+2", 2, "surprise"],
            ["spNO.2", "b", 30, 34, "?", "1", "II", "surprise"]]        # no offset, apex ok
    root = tmp_path / "part_A"
    for sub, rec in (("spNO.1", "a"), ("spNO.2", "b")):
        frames(root / "data" / "part_A" / sub / rec / "color", range(0, 400), "{}.jpg")
        (root / "data" / "part_A" / sub / rec / "depth").mkdir()
    return write_xlsx(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", {"label": rows})


def test_casme3_part_a_clips_long_videos_and_depth_note(tmp_path, caplog):
    sheet = casme3_fixture(tmp_path)
    assert detect_dataset(sheet) == "casme3-a"
    with caplog.at_level(logging.INFO, logger="mexkit"):
        samples, report = read_with_report(None, sheet)
    assert [s.sample_id for s in samples] == ["casme3-a/spNO.1/a_120", "casme3-a/spNO.1/a_300",
                                              "casme3-a/spNO.2/b_10", "casme3-a/spNO.2/b_30"]
    a = samples[0]
    assert a.source.endswith("spNO.1/a/color") and (a.onset, a.apex, a.offset) == (120, 131, 140)
    assert a.aus == "4,7" and a.objective_class == "III" and a.fps == 30.0
    assert samples[2].objective_class == "II"
    assert samples[3].offset_frame == 38 and report.n_repaired == 1
    assert "depth frames" in caplog.text and "not used" in caplog.text
    lv = load_dataset("casme3-a-lv", sheet)
    assert list(group_by_video(lv)) == ["casme3-a-lv/spNO.1/a", "casme3-a-lv/spNO.2/b"]
    assert next(a for a in adapters() if a.name == "casme3-a-lv").long


def test_casme3_distributed_clip_folders(tmp_path, caplog):
    rows = [CASME3_HEADER, ["spNO.1", "a", 120, 131, 140, 4, "III", "disgust"]]
    sheet = write_xlsx(tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", {"label": rows})
    clip = frames(tmp_path / "Part_A_ME_clip" / "frame" / "spNO.1_a_120", range(120, 141),
                  "{}.jpg")
    (tmp_path / "Part_A_ME_clip" / "depth" / "spNO.1_a_120").mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="mexkit"):
        (s,) = load_dataset(None, sheet)
    assert s.source == str(clip) and (s.onset, s.apex, s.offset, s.n_frames) == (0, 11, 20, 21)
    assert s.aus == "4" and "depth frames" in caplog.text


def test_casme3_macro_sheet_and_part_c(tmp_path):
    sheet = casme3_fixture(tmp_path)
    mae = write_xlsx(tmp_path / "part_A" / "cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx",
                     {"Sheet1": [["sub", "seq", "onset", "apex", "offset", "emotion"],
                                 ["spNO.1", "a", 200, 230, 260, "happy"]]})
    assert detect_dataset(mae) == "casme3-a"
    (m,) = load_dataset(None, mae)
    assert m.kind == "macro" and m.clip == "a_200"
    both = load_dataset("casme3-a-lv", sheet, sheets={"macro": mae})
    assert Counter(s.kind for s in both) == {"micro": 4, "macro": 1}
    part_c = write_xlsx(tmp_path / "CAS(ME)3_part_C_ME.xlsx",
                        {"Sheet1": [CASME3_HEADER, ["spNO.216", "c", 5, 9, 14, "4", "", "anger"]]})
    assert detect_dataset(part_c) == "casme3-c"
    (c,) = load_dataset(None, part_c)
    assert c.kind == "micro" and c.source is None and (c.onset, c.offset) == (5, 14)
    with pytest.raises(DatasetError, match="unknown sheet key"):
        load_dataset("casme3-a-lv", sheet, sheets={"micro": mae})


# -- 4DME, MMEW, DFME ----------------------------------------------------------------------
def test_4dme_sheet_with_multi_labels(tmp_path):
    rows = [["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Emotion"],
            ["S1", "S01_01_01", 31, 40, 52, "1+2", "Surprise"],
            [2, "S02_03_02", 10, 12, 15, "4", "Negative+Surprise"]]
    sheet = write_xlsx(tmp_path / "4DME_Labelling_Micro_release_v1.xlsx", {"Sheet1": rows})
    frames(tmp_path / "2D_Grey" / "S01" / "S01_01_01", range(1, 80), "img{}.jpg")
    assert detect_dataset(sheet) == "4dme"
    a, b = load_dataset(None, sheet)
    assert (a.subject, a.onset, a.apex, a.offset, a.fps) == ("S01", 30, 39, 51, 60.0)
    assert b.emotion == "negative+surprise" and b.source is None


def test_mmew_is_told_from_casme2_by_its_name(tmp_path):
    rows = [CASME2_HEADER[:5] + ["AUs", "Estimated Emotion"],
            ["S01", "S01-07-001", 12, 20, 31, "AU4", "disgust"], [3, "S03-01-002", 1, 5, 9, "12",
                                                                  "happiness"]]
    sheet = write_xlsx(tmp_path / "MMEW_Micro_Exp.xlsx", {"Sheet1": rows})
    frames(tmp_path / "Micro_Expression" / "disgust" / "S01-07-001", range(1, 40), "{}.jpg")
    assert detect_dataset(sheet) == "mmew"
    a, b = load_dataset(None, sheet)
    assert a.source.endswith("disgust/S01-07-001") and (a.onset, a.offset) == (11, 30)
    assert b.subject == "S03" and a.fps == 90.0 and a.aus == "AU4"
    renamed = write_xlsx(tmp_path / "CASME2-coding.xlsx", {"Sheet1": rows})
    assert detect_dataset(renamed) == "casme2"


@pytest.mark.parametrize("name, fps", [("DFME_PartA_labels.xlsx", 500.0),
                                       ("DFME_part_B.xlsx", 300.0), ("dfme_C.xlsx", 200.0)])
def test_dfme_fps_from_the_part(tmp_path, name, fps):
    rows = [["Participant", "Clip", "Onset", "Apex", "Offset", "AU", "Emotion"],
            [17, "0017_1", 100, 140, 180, "6+12", "happiness"]]
    sheet = write_xlsx(tmp_path / name, {"Sheet1": rows})
    assert detect_dataset(sheet) == "dfme"
    (s,) = load_dataset(None, sheet)
    assert (s.subject, s.clip, s.fps, s.emotion) == ("017", "0017_1", fps, "happiness")


def test_dfme_without_a_part_needs_the_frame_rate(tmp_path):
    sheet = write_xlsx(tmp_path / "dfme_labels.xlsx", {"Sheet1": [
        ["Subject", "Filename", "Onset", "Apex", "Offset"], [1, "x", 1, 2, 3]]})
    with pytest.raises(DatasetError, match="--dataset-fps"):
        load_dataset("dfme", sheet)
    (s,) = load_dataset("dfme", sheet, fps=250)
    assert s.fps == 250.0


# -- MEGC unseen test sets ----------------------------------------------------------------
def test_megc_unseen_test_set_ground_truth(tmp_path):
    rows = [["vid", "onset", "offset", "type"], ["037_4", 1201, 1290, "MaE"],
            ["spNO.216_a", 0, 12, "ME"], ["037_4", 3000, 3050, "micro"]]
    sheet = write_csv(tmp_path / "MEGC2022_testSet_GT.csv", rows)
    frames(tmp_path / "SAMM_Test_cropped" / "037_4", range(1, 4001), "037_{:05d}.jpg")
    assert detect_dataset(sheet) == "megc-unseen"
    samples, report = read_with_report(None, sheet)
    assert [(s.subject, s.video, s.kind, s.fps) for s in samples] == [
        ("037", "037_4", "macro", 200.0), ("spNO.216", "spNO.216_a", "micro", 30.0),
        ("037", "037_4", "micro", 200.0)]
    assert samples[0].onset == 1200 and samples[0].n_frames == 4000
    assert samples[1].onset_frame == 1 and report.n_repaired == 1     # onset 0: first frame
    assert len(group_by_video(samples)) == 2


# -- registry, README table ---------------------------------------------------------------
def test_readme_dataset_table_matches_the_registry():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, (
        "README's dataset table is out of date; paste the output of "
        "`python -c 'from mexkit.io.datasets import markdown_table; print(markdown_table())'`")
    assert len(markdown_table().splitlines()) == len(dataset_names()) + 2


def test_every_adapter_documents_itself():
    for a in adapters():
        assert a.title and a.sheet and a.layout and a.reference, a.name
        assert a.loader.__doc__, a.name


# -- sheets: encoding, formulas -------------------------------------------------------------
def test_non_utf8_lines_are_named_in_a_warning(tmp_path, caplog):
    path = tmp_path / "g.csv"
    path.write_bytes("subject,clip\nsub01,caf\u00e9\n".encode("utf-8") +
                     "sub02,na\u00efve\n".encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        rows = sheets.read_rows(path)
    assert [r.cells for r in rows][1:] == [("sub01", "caf\u00e9"), ("sub02", "na\u00efve")]
    assert "1 line(s) are not UTF-8 (line 3)" in caplog.text


@pytest.mark.parametrize("value, escaped", [
    ("=1+2", "'=1+2"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("@SUM(A1)", "'@SUM(A1)"),
    ("-2+3", "'-2+3"), ("\t=x", "'\t=x"), ("-1", "-1"), ("+0.5", "+0.5"), ("-1e-3", "-1e-3"),
    ("sub01", "sub01"), (-3, -3), (None, None),
])
def test_escape_formula(value, escaped):
    assert sheets.escape_formula(value) == escaped
    if isinstance(value, str):
        assert sheets.unescape_formula(sheets.escape_formula(value)) == value


def test_generic_sheet_writer_escapes_formulas_and_reads_them_back(tmp_path):
    frames(tmp_path / "clips" / "c1", range(5), "f{}.png")
    out = write_generic_rows(tmp_path / "g.csv", [
        ["=HYPERLINK(\"x\")", "c1", "clips/c1", 30, 0, "", 4, "@bad", "d", "-x"]])
    text = out.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and "'@bad" in text and text.endswith(",'-x\n")
    assert text.startswith("subject,clip,path,fps,onset,apex,offset,label,dataset,emotion\n")
    (s,) = load_dataset("generic", out)
    assert (s.subject, s.label, s.emotion) == ("=HYPERLINK(\"x\")", "@bad", "-x")
    again = write_generic_csv([s], tmp_path / "h.csv")
    with open(again, newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[1][0] == "'=HYPERLINK(\"x\")"


def test_many_missing_paths_are_summarised(tmp_path, caplog):
    rows = [["subject", "clip", "path", "fps", "onset", "apex", "offset", "label"]]
    rows += [[f"p{i}", f"c{i}", f"clips/c{i}", 30, 0, "", 4, ""] for i in range(200)]
    sheet = write_csv(tmp_path / "g.csv", rows)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        samples = load_dataset("generic", sheet)
    assert len(samples) == 200
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 6
    assert "200 of 200 paths in g.csv do not exist" in lines[-1].getMessage()


def test_megc_unseen_in_the_submission_columns_and_test_set_folder(tmp_path):
    sheet = write_csv(tmp_path / "megc2023_unseen_gt.csv", [
        ["vid", "pred_onset", "pred_offset", "type"], ["casme_042", 15, 40, "mae"]])
    clip = frames(tmp_path / "MEGC2022_testSet" / "CAS_Test_cropped" / "casme_042",
                  range(1, 61), "img{:05d}.jpg")
    assert detect_dataset(sheet) == "megc-unseen"
    (s,) = load_dataset(None, sheet)
    assert s.source == str(clip) and (s.onset, s.offset, s.kind, s.fps) == (14, 39, "macro", 30.0)
