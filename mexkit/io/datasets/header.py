"""Header-based coding sheets: one table whose header row names the columns.

Most adapters read such a sheet: :class:`Columns` names each field's column
(with alternatives), :func:`parse_rows` turns the rows into :class:`Entry`
objects and :func:`load_header_sheet` runs the whole path from the file to
the samples.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sheets import Row, Table, cell_text, find_header, read_table
from .rows import (
    Sheet,
    check_frames,
    clean_text,
    expression_kind,
    frame_number,
    get_cell,
    objective_class,
)
from .sample import Entry, Sample
from .sources import Sources, resolve_sources

if TYPE_CHECKING:
    from .registry import LoadRequest

logger = logging.getLogger("mexkit")


@dataclass(frozen=True)
class Columns:
    """Normalised column names (alternatives) of a header-based coding sheet."""

    subject: tuple[str, ...] = ("subject",)
    clip: tuple[str, ...] = ("filename",)
    onset: tuple[str, ...] = ()
    apex: tuple[str, ...] = ()
    offset: tuple[str, ...] = ()
    aus: tuple[str, ...] = ("actionunits", "actionunit", "aus", "au")
    emotion: tuple[str, ...] = ("estimatedemotion", "emotion")
    objective: tuple[str, ...] = ("objectiveclasses", "objectiveclass")
    kind: tuple[str, ...] = ()
    first: tuple[str, ...] = ()

    def required(self) -> list[tuple[str, ...]]:
        req = [self.subject, self.clip, self.onset, self.offset]
        if self.apex:
            req.append(self.apex)
        return req


def parse_rows(table: Table, sh: Sheet, cols: Columns,
               subject_fn: Callable[[Any, Sheet, int], str], *,
               clip_fn: Callable[[str], str] = lambda c: c,
               long_video: bool = False, default_kind: str = "micro",
               first_number: int = 0) -> list[Entry]:
    """Parse the rows of a header table into entries; bad rows are skipped with a warning.

    ``long_video``: the clip name ``006_1_3`` is interval 3 of video
    ``006_1`` (SAMM-LV style).  ``first_number``: see :func:`check_frames`.
    """
    entries = []
    for row, rec in table.rows:
        subj_v, clip_v = get_cell(rec, cols.subject), get_cell(rec, cols.clip)
        onset_v, offset_v = get_cell(rec, cols.onset), get_cell(rec, cols.offset)
        if all(cell_text(v) == "" for v in (clip_v, onset_v, offset_v)):
            # a note or footnote row below the table: nothing to annotate
            if cell_text(subj_v):
                logger.info("%s: %s: no clip and no frames (%r); a note, not a sample",
                            sh.dataset, sh.where(row), cell_text(subj_v))
            continue
        with sh.row(row):
            e = check_frames(parse_entry(rec, row, sh, cols, subject_fn, clip_fn=clip_fn,
                                         long_video=long_video, default_kind=default_kind),
                             sh, first_number=first_number)
            if e is not None:
                entries.append(e)
    return entries


def parse_entry(rec: Mapping[str, Any], row: int, sh: Sheet, cols: Columns,
                subject_fn: Callable[[Any, Sheet, int], str], *,
                clip_fn: Callable[[str], str] = lambda c: c, long_video: bool = False,
                default_kind: str = "micro") -> Entry:
    """One header-table row as an :class:`Entry` (raises :class:`RowError`)."""
    clip_v = get_cell(rec, cols.clip)
    if cell_text(clip_v) == "":
        raise sh.error(row, "no clip name (Filename)")
    subject = subject_fn(get_cell(rec, cols.subject), sh, row)
    clip = clip_fn(clean_text(clip_v))
    apex = None
    if cols.apex:
        apex_v = get_cell(rec, cols.apex)
        apex = frame_number(apex_v, "apex", sh, row)
        if apex is None:
            sh.warn(row, f"apex {cell_text(apex_v)!r} means unlabelled; apex unknown")
    onset = frame_number(get_cell(rec, cols.onset), "onset", sh, row)
    offset = frame_number(get_cell(rec, cols.offset), "offset", sh, row)
    aus = clean_text(get_cell(rec, cols.aus))
    emotion = clean_text(get_cell(rec, cols.emotion)).lower()
    objective = objective_class(get_cell(rec, cols.objective), sh, row)
    kind = (expression_kind(get_cell(rec, cols.kind), sh, row, default_kind)
            if cols.kind else default_kind)
    base = (frame_number(get_cell(rec, cols.first), "first frame", sh, row)
            if cols.first else None)
    video = ""
    if long_video:
        parts = clip.split("_")
        video = "_".join(parts[:2]) if len(parts) >= 3 else clip
    return Entry(row=row, subject=subject, clip=clip, onset=onset, apex=apex, offset=offset,
                 aus=aus, emotion=emotion, objective_class=objective, kind=kind, video=video,
                 base=base)


def recording_intervals(entries: list[Entry]) -> list[Entry]:
    """Rows whose clip column names a recording, as intervals of that recording.

    The recording becomes the entry's ``video`` and its clip
    ``<recording>_<onset>`` (CAS(ME)^3 and the MEGC 2022 unseen set name
    recordings, not clips).
    """
    return [dataclasses.replace(e, video=e.clip, clip=f"{e.clip}_{e.onset}") for e in entries]


def name_tokens(path: Path) -> set[str]:
    """Lower-case letter/digit runs of a file name (``"MMEW_Micro_Exp"`` -> mmew, micro, exp)."""
    return set(re.split(r"[^a-z0-9]+", path.name.lower())) - {""}


def named_sheet(token: str, columns: Columns
                ) -> Callable[[Mapping[str, list[Row]], Path], bool]:
    """Detection of a sheet by ``token`` in its file name and a header with ``columns``.

    For datasets whose sheet has another dataset's columns (MMEW has CASME
    II's) or loose ones: the file name tells them apart.
    """

    def detect(book: Mapping[str, list[Row]], path: Path) -> bool:
        return token in name_tokens(path) and any(
            find_header(rows, columns.required()) is not None for rows in book.values())

    return detect


def load_header_sheet(request: LoadRequest, columns: Columns,
                      subject_fn: Callable[[Any, Sheet, int], str],
                      candidates: Callable[[Entry], list[Path]], *, expected: str,
                      long_video: bool = False, first_number: int = 0,
                      default_kind: str = "micro", short: bool = True,
                      clip_fn: Callable[[str], str] = lambda c: c,
                      required: Sequence[tuple[str, ...]] | None = None) -> list[Sample]:
    """Read a header-based coding sheet with ``columns`` and resolve its clips.

    The common path of the adapters whose sheet is one table with a header
    row: :func:`~mexkit.io.sheets.read_table` (the header must hold
    ``required``, default ``columns.required()``), :func:`parse_rows`,
    :func:`resolve_sources`.
    """
    table = read_table(request.path, list(columns.required() if required is None else required),
                       expected=expected)
    sh = Sheet(request.name, table)
    entries = parse_rows(table, sh, columns, subject_fn, clip_fn=clip_fn,
                         long_video=long_video, default_kind=default_kind,
                         first_number=first_number)
    src = Sources(request.name, request.root, request.fps)
    return resolve_sources(entries, sh, src, candidates, first_number=first_number,
                           short=short)
