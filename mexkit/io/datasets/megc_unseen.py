"""The MEGC spotting challenges' unseen test sets (2022 onwards).

The test sets are long videos taken from SAMM (200 fps) and CAS(ME)^3
(30 fps) that the training sets do not hold.  Their ground truth is one table
with a header: the video (``vid``, ``video``, ``Filename``), the interval
(``onset``, ``offset``, inclusive, 1-based frame numbers; ``gt_onset`` /
``gt_offset`` and the submission format's ``pred_onset`` / ``pred_offset`` are
accepted), the expression type (``type``: micro or macro, or the challenge's
``me``/``mae``) and optionally the source dataset.  The sheet is
recognised by ``MEGC`` together with ``test`` or ``unseen`` in its file name.
The source dataset (and so the frame rate) comes from a ``dataset`` column,
else from the video's name: ``037_4``-style names are SAMM's, others
(``spNO.216_a``-style) CAS(ME)^3's.  Frames: ``root/<vid>/`` (also under
``SAMM_Test_cropped/``, ``CAS_Test_cropped/``, ``SAMM/``, ``CAS/``, and those
under ``MEGC2022_testSet/``), a folder or a video file.

References
----------
Li, J. et al. "MEGC2022: ACM Multimedia 2022 micro-expression grand
challenge", ACM MM 2022; See, J. et al. "MEGC2023", ACM MM 2023.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..sheets import Row, cell_text, find_header, read_table
from .header import Columns, parse_rows, recording_intervals
from .registry import LoadRequest, register_dataset
from .rows import Sheet, clean_text, get_cell
from .sample import Entry, Sample
from .sources import Sources, resolve_sources

UNSEEN_COLUMNS = Columns(subject=("subject", "sub", "vid", "video", "videoname", "filename"),
                         clip=("vid", "video", "videoname", "filename"),
                         onset=("onset", "gtonset", "onsetframe", "startframe", "predonset"),
                         apex=(), offset=("offset", "gtoffset", "offsetframe", "endframe",
                                          "predoffset"),
                         kind=("type", "expressiontype", "label"),
                         emotion=("emotion", "estimatedemotion"))
PART_FPS = {"samm": 200.0, "casme3": 30.0}
_SAMM_VIDEO = re.compile(r"\d{3}_\d+")


def _detect(book: Mapping[str, list[Row]], path: Path) -> bool:
    name = path.name.lower()
    return ("megc" in name and ("test" in name or "unseen" in name)
            and any(find_header(rows, UNSEEN_COLUMNS.required()) is not None
                    for rows in book.values()))


def _part(dataset_cell: Any, video: str) -> str:
    text = re.sub(r"[^a-z0-9]", "", cell_text(dataset_cell).lower())
    if text.startswith("samm"):
        return "samm"
    if text.startswith("cas"):
        return "casme3"
    return "samm" if _SAMM_VIDEO.fullmatch(video) else "casme3"


def _subject(value: Any, sh: Sheet, row: int) -> str:
    """The video's subject: ``037`` of ``037_4``, ``spNO.216`` of ``spNO.216_a``."""
    text = clean_text(value)
    if not text:
        raise sh.error(row, "no video name")
    return text.rsplit("_", 1)[0] if "_" in text else text


def _kind_text(value: Any) -> str:
    text = clean_text(value).lower()
    return {"me": "micro", "mae": "macro", "1": "micro", "2": "macro"}.get(text, text)


@register_dataset(
    "megc-unseen", title="MEGC spotting unseen test sets (SAMM, CAS(ME)^3 long videos)",
    fps=None, long=True, detect=_detect,
    sheet="ground truth named `MEGC...test...`: `vid, onset, offset, type` (+ `dataset`)",
    layout="`<vid>/` (also under `SAMM_Test_cropped/`, `CAS_Test_cropped/`)",
    reference="Li et al., ACM MM 2022")
def load_megc_unseen(request: LoadRequest) -> list[Sample]:
    """The ground truth of an unseen test set: one sample per interval."""
    table = read_table(request.path, UNSEEN_COLUMNS.required(),
                       expected="MEGC unseen test set ground truth")
    for _, rec in table.rows:  # "ME"/"MaE" and 1/2 as type
        for key in UNSEEN_COLUMNS.kind:
            if key in rec:
                rec[key] = _kind_text(rec[key])
    samples: list[Sample] = []
    root = request.root
    for part in ("samm", "casme3"):
        sub = dataclasses.replace(table, rows=[
            (row, rec) for row, rec in table.rows
            if _part(get_cell(rec, ("dataset", "database", "source")),
                     clean_text(get_cell(rec, UNSEEN_COLUMNS.clip))) == part])
        if not sub.rows:
            continue
        sh = Sheet(request.name, sub)
        entries = recording_intervals(parse_rows(sub, sh, UNSEEN_COLUMNS, _subject,
                                                 first_number=1))
        fps = request.fps if request.fps is not None else PART_FPS[part]
        names = ("SAMM_Test_cropped", "SAMM_Test", "SAMM") if part == "samm" else (
            "CAS_Test_cropped", "CAS_Test", "CAS", "CASME3")
        folders = ("", *names, *(f"MEGC2022_testSet/{n}" for n in names))

        def candidates(e: Entry, folders: tuple[str, ...] = folders) -> list[Path]:
            bases = [root / d / e.video for d in folders]
            return bases + [b.with_name(b.name + ext) for b in bases
                            for ext in (".mp4", ".avi", ".mov")]

        samples += resolve_sources(entries, sh, Sources(request.name, root, fps), candidates,
                                   first_number=1, short=False)
    samples.sort(key=lambda s: int(s.origin.rsplit("row ", 1)[-1]))
    return samples
