"""CAS(ME)^2: a workbook without header row, and two naming sheets.

The coding sheet (first sheet) has no header: participant number, expression
name (``anger1_1``: video ``anger1``, expression 1), onset, apex, offset,
AUs, estimated emotion, ``micro-expression``/``macro-expression`` and the
self-reported emotion.  ``naming rule1`` maps participant numbers to subject
numbers and folders (``15``, ``s15``), ``naming rule2`` video names to codes
(``anger1`` -> ``0401``).  Frame numbers are 1-based; offset 0 means unknown
and is estimated from the apex (as several public loaders do).

References
----------
Qu, F. et al. "CAS(ME)^2: a database for spontaneous macro-expression and
micro-expression spotting and recognition", IEEE TAC 9 (2018).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import DatasetError
from ..sheets import Row, cell_text, normalize_column, read_workbook
from ..video import VIDEO_EXTENSIONS, natural_key
from .registry import LoadRequest, register_dataset
from .rows import Sheet, check_frames, clean_text, expression_kind, frame_number
from .sample import Entry, Sample, unique_ids
from .sources import Sources, make_sample

logger = logging.getLogger("mexkit")


def _pick_sheet(book: Mapping[str, list[Row]], pattern: str, index: int,
                path: Path, what: str) -> tuple[str, list[Row]]:
    for name, rows in book.items():
        if re.search(pattern, normalize_column(name)):
            return name, rows
    names = list(book)
    if index < len(names):
        return names[index], book[names[index]]
    raise DatasetError(f"casme-sq: {path} has {len(names)} sheet(s); the {what} sheet is "
                       "missing (CAS(ME)^2 sheets: coding, 'naming rule1', 'naming rule2')")


def _casme_sq_subjects(rows: list[Row], sh: Sheet) -> dict[int, tuple[int, str]]:
    """participant number -> (subject number, folder name) from 'naming rule1'.

    Assumed layout (as in the released workbook): column A the subject number
    used in file names (15), column B the folder name (``s15``), column C the
    participant number used in the coding sheet (1).  Rows whose cells are
    not numbers (a header, notes) are ignored.
    """
    out: dict[int, tuple[int, str]] = {}
    for row in rows:
        cells = list(row.cells) + [None] * 3
        a, b, c = cell_text(cells[0]), cell_text(cells[1]), cell_text(cells[2])
        if not (re.fullmatch(r"\d+", c) and (re.fullmatch(r"\d+", a) or
                                             re.fullmatch(r"(?i)s\d+", b))):
            if not row.is_blank():
                logger.debug("casme-sq: %s: not a subject mapping; ignored", sh.where(row.number))
            continue
        number = int(a) if a.isdigit() else int(b[1:])
        folder = b.lower() if re.fullmatch(r"(?i)s\d+", b) else f"s{number}"
        out[int(c)] = (number, folder)
    if not out:
        raise DatasetError(f"casme-sq: {sh.path}, sheet {sh.sheet!r}: no participant-to-"
                           "subject rows (expected: subject number, folder such as 's15', "
                           "participant number)")
    return out


def _casme_sq_videos(rows: list[Row], sh: Sheet) -> dict[str, str]:
    """video name (``anger1``) -> 4-digit code (``0401``) from 'naming rule2'."""
    out: dict[str, str] = {}
    for row in rows:
        cells = list(row.cells) + [None] * 2
        code, name = cell_text(cells[0]), cell_text(cells[1]).lower()
        if not (re.fullmatch(r"\d{1,4}", code) and name):
            if not row.is_blank():
                logger.debug("casme-sq: %s: not a video mapping; ignored", sh.where(row.number))
            continue
        out[name] = f"{int(code):04d}"
    if not out:
        raise DatasetError(f"casme-sq: {sh.path}, sheet {sh.sheet!r}: no video-code rows "
                           "(expected: code such as 0401, name such as 'anger1')")
    return out


def _coding_row(cells: list[Any], number: int, sh: Sheet,
                subjects: dict[int, tuple[int, str]], videos: dict[str, str],
                r1_name: str, r2_name: str
                ) -> tuple[Entry, int, str] | None:
    """One row of the coding sheet (raises :class:`RowError`; None when skipped)."""
    first = cell_text(cells[0])
    if not first:
        raise sh.error(number, "no participant number")
    try:
        participant = int(float(first))
    except ValueError:
        raise sh.error(number, f"participant {first!r} is not a number") from None
    if participant not in subjects:
        raise sh.error(number, f"participant {participant} is not in sheet "
                                   f"{r1_name!r}")
    subject_number, folder = subjects[participant]
    clip = clean_text(cells[1])
    if not clip:
        raise sh.error(number, "no expression name (column B)")
    video = clip.split("_")[0].lower()
    if video not in videos:
        raise sh.error(number, f"video {video!r} (from {clip!r}) is not in sheet "
                                   f"{r2_name!r}")
    e = Entry(row=number, subject=folder, clip=clip,
               onset=frame_number(cells[2], "onset", sh, number),
               apex=frame_number(cells[3], "apex", sh, number),
               offset=frame_number(cells[4], "offset", sh, number),
               aus=clean_text(cells[5]), emotion=clean_text(cells[6]).lower(),
               kind=expression_kind(cells[7], sh, number), video=video)
    e = check_frames(e, sh, first_number=1)
    if e is None:
        return None
    return e, subject_number, videos[video]


def _looks_like_casme_sq(book: Mapping[str, list[Row]], path: Path) -> bool:
    if any("namingrule" in normalize_column(n) for n in book):
        return True
    rows = next(iter(book.values()), [])
    hits = 0
    for row in rows[:20]:
        cells = list(row.cells) + [None] * 8
        if cell_text(cells[7]).lower() in ("micro-expression", "macro-expression"):
            hits += 1
    return hits >= 1 and len(book) >= 3


@register_dataset(
    "casme-sq", title="CAS(ME)^2", fps=30.0, long=True, detect=_looks_like_casme_sq,
    sheet="`CAS(ME)^2code_final.xlsx` (also `(Updated)`): coding sheet without header "
          "(participant, `anger1_1`, onset, apex, offset, AUs, emotion, type, self-report), "
          "`naming rule1`, `naming rule2`",
    layout="`rawpic/s15/15_0401girlcrashing/img1.jpg` or `rawvideo/s15/15_0401*.avi`",
    reference="Qu et al., IEEE TAC 2018")
def load_casme_sq(request: LoadRequest) -> list[Sample]:
    """The CAS(ME)^2 workbook: one sample per interval of its long videos."""
    path, root, fps = request.path, request.root, request.fps
    book = read_workbook(path)
    main_name, main = _pick_sheet(book, r"code", 0, path, "coding")
    r1_name, r1 = _pick_sheet(book, r"namingrule1", 1, path, "'naming rule1'")
    r2_name, r2 = _pick_sheet(book, r"namingrule2", 2, path, "'naming rule2'")
    sh = Sheet("casme-sq", path=path, sheet=main_name)
    subjects = _casme_sq_subjects(r1, Sheet("casme-sq", path=path, sheet=r1_name))
    videos = _casme_sq_videos(r2, Sheet("casme-sq", path=path, sheet=r2_name))
    logger.info("casme-sq: %s has no header; columns read as participant, name, onset, "
                "apex, offset, AUs, emotion, type, self-report", path.name)
    entries: list[tuple[Entry, int, str]] = []
    for row in main:
        if row.is_blank():
            continue
        cells = list(row.cells) + [None] * 9
        first, onset_text = cell_text(cells[0]), cell_text(cells[2])
        if not re.fullmatch(r"\d+(\.0)?", first) and not re.fullmatch(r"-?\d+(\.\d+)?",
                                                                        onset_text):
            logger.info("casme-sq: %s: not a coding row (starts %r); taken as a header",
                        sh.where(row.number), first)
            continue
        with sh.row(row.number):
            item = _coding_row(cells, row.number, sh, subjects, videos, r1_name, r2_name)
            if item is not None:
                entries.append(item)
    src = Sources("casme-sq", root, fps)
    samples = []
    for e, number, code in entries:
        prefix = f"{number}_{code}"
        source = None
        for base in (root / "rawpic" / e.subject, root / e.subject,
                     root / "rawvideo" / e.subject, root / "CAS(ME)^2" / "rawpic" / e.subject):
            if not base.is_dir():
                continue
            found = sorted((p for p in base.iterdir() if p.name.startswith(prefix) and
                            (p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS)),
                           key=lambda p: (not p.is_dir(), natural_key(p.name)))
            if found:
                source = found[0]
                break
        if source is None:
            src.missing.append(f"{e.subject}/{prefix}")
        with sh.guard(e.row):
            samples.append(make_sample(e, sh, src, source, first_number=1, short=False))
    src.missing = sorted(set(src.missing), key=natural_key)
    src.report()
    return unique_ids(samples)
