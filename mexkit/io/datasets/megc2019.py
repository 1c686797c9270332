"""The MEGC 2019 three-class composite list (SMIC-HS + CASME II + SAMM).

The challenge distributes the list as a headerless CSV whose columns are
dataset, subject, file name and a numeric label (0 negative, 1 positive, 2
surprise); other copies carry a header (``dataset, subject (or sub),
filename (or filename_o), label (or emotion)``) and names for the labels.
Both are read.  The published list has 442 clips of 68 subjects: SMIC 164,
CASME II 145, SAMM 133; 250 negative, 109 positive, 83 surprise.

Onset/apex/offset come from the parts' own sheets when they are given
(``sheets={"casme2": ..., "samm": ..., "smic-hs": ...}``), else from the clip
folders found under ``root/<dataset>/`` (onset = first frame, offset = last,
apex unknown), else stay ``None``.

References
----------
See, J. et al. "MEGC 2019 - the second facial micro-expressions grand
challenge", FG 2019.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import DatasetError
from ..sheets import (
    Row,
    Table,
    cell_text,
    find_header,
    normalize_column,
    read_workbook,
    table_from_rows,
)
from .loading import load_dataset
from .registry import LoadRequest, get_adapter, register_dataset
from .rows import Sheet, clean_text, get_cell, smic_clip, subject_casme, subject_samm, subject_smic
from .sample import Sample, unique_ids
from .sources import Sources

logger = logging.getLogger("mexkit")

MEGC_COLUMNS = (("dataset", "database", "db"), ("subject", "sub"),
                ("filename", "filenameo", "clip", "sample"),
                ("label", "emotion", "class", "category"))
_KEYS = ("dataset", "subject", "filename", "label")
PARTS = {"casme2": "casme2", "casmeii": "casme2", "casme2raw": "casme2", "casme": "casme2",
         "samm": "samm", "smic": "smic-hs", "smichs": "smic-hs", "smice": "smic-hs",
         "smicehs": "smic-hs", "smichse": "smic-hs"}
LABELS = {"0": "negative", "1": "positive", "2": "surprise", "negative": "negative",
          "positive": "positive", "surprise": "surprise", "ne": "negative",
          "po": "positive", "sur": "surprise"}
_ROOTS = {"casme2": ("casme2", "CASME2", "CASME II", "CASME_II"),
          "samm": ("samm", "SAMM"), "smic-hs": ("smic", "SMIC", "smic-hs", "SMIC-HS")}
_SUBJECTS = {"casme2": subject_casme, "samm": subject_samm, "smic-hs": subject_smic}


def _is_entry(row: Row) -> bool:
    cells = [c for c in row.cells if cell_text(c) != ""]
    return (len(cells) == 4 and normalize_column(cells[0]) in PARTS
            and cell_text(cells[3]).lower() in LABELS)


def _headerless_rows(book: Mapping[str, list[Row]]) -> tuple[str, list[Row]] | None:
    """The first sheet that looks like the headerless list (most rows are entries)."""
    for name, rows in book.items():
        filled = [r for r in rows[:40] if not r.is_blank()]
        if filled and sum(_is_entry(r) for r in filled) >= max(1, len(filled) // 2):
            return name, rows
    return None


def _headerless_list(book: Mapping[str, list[Row]], path: Path) -> bool:
    return _headerless_rows(book) is not None


def _megc_table(path: Path) -> Table:
    book = read_workbook(path)
    for name, rows in book.items():
        idx = find_header(rows, MEGC_COLUMNS)
        if idx is not None:
            return table_from_rows(path, rows, idx, sheet=name)
    found = _headerless_rows(book)
    if found is None:
        raise DatasetError(f"{str(path)!r} (MEGC 2019 composite list): no header row with "
                           "the columns dataset, subject, filename, label, and no rows "
                           "of the headerless list (dataset, subject, filename, 0/1/2)")
    name, rows = found
    logger.info("megc2019: %s has no header; columns read as dataset, subject, filename, "
                "label", path.name)
    table = Table(path, name, 0, list(_KEYS), list(_KEYS))
    for row in rows:
        if row.is_blank():
            continue
        cells = [c for c in row.cells if cell_text(c) != ""]
        table.rows.append((row.number, dict(zip(_KEYS, cells, strict=False))))
    return table


def megc_root(root: Path, dataset: str) -> Path:
    """The folder of one part under the composite's root (``root/casme2``, ...)."""
    for d in _ROOTS[dataset]:
        if (root / d).is_dir():
            return root / d
    return root


def _locate_short(ds: str, root: Path, subject: str, clip: str, emotion: str) -> Path | None:
    if ds == "casme2":
        digits = subject[3:]
        cands = [root / d / s / clip for d in ("", "CASME2_RAW_selected", "Cropped")
                 for s in (subject, digits)]
    elif ds == "samm":
        cands = [root / subject / clip, root / clip]
    else:
        num = subject[1:]
        subs = [subject] + ([f"s{int(num):02d}"] if num.isdigit() else [])
        cands = [b / s / x for b in (root / "HS", root) for s in subs
                 for x in (Path("micro") / emotion / clip, Path(clip))]
        cands.append(root / clip)
    for c in cands:
        if c.is_dir():
            return c
    return None


def _megc_row(rec: dict[str, Any], row: int, sh: Sheet, root: Path, sheets: bool,
              by_key: dict[tuple[str, str, str], Sample], unknown: list[str]) -> Sample:
    """One entry of the list (raises :class:`RowError`)."""
    ds = PARTS.get(normalize_column(get_cell(rec, MEGC_COLUMNS[0])))
    if ds is None:
        raise sh.error(row, f"dataset {clean_text(get_cell(rec, MEGC_COLUMNS[0]))!r} is not "
                            "one of casme2, samm, smic")
    subject = _SUBJECTS[ds](get_cell(rec, MEGC_COLUMNS[1]), sh, row)
    clip = clean_text(get_cell(rec, MEGC_COLUMNS[2]))
    if not clip:
        raise sh.error(row, "no clip name")
    if ds == "smic-hs":
        clip = smic_clip(clip)
    raw_label = cell_text(get_cell(rec, MEGC_COLUMNS[3])).lower()
    label = LABELS.get(raw_label)
    if label is None:
        raise sh.error(row, f"label {raw_label!r} is not negative/positive/surprise or 0/1/2")
    if sheets:
        found = by_key.get((ds, subject, clip.lower()))
        if found is None:
            raise sh.error(row, f"{ds} clip {subject}/{clip} is not in the {ds} sheet")
        return dataclasses.replace(found, label=label, origin=sh.where(row))
    fps = get_adapter(ds).fps
    droot = megc_root(root, ds)
    source = _locate_short(ds, droot, subject, clip, label)
    if source is None:
        unknown.append(f"{ds}/{subject}/{clip}")
        return Sample(
            sample_id=f"{ds}/{subject}/{clip}", dataset=ds, subject=subject, clip=clip,
            source=None, fps=fps, onset=None, apex=None, offset=None, onset_frame=None,
            apex_frame=None, offset_frame=None, emotion=label, video=clip, label=label,
            origin=sh.where(row))
    numbers, n = Sources(ds, droot, fps).numbering(source, 0)
    return Sample(
        sample_id=f"{ds}/{subject}/{clip}", dataset=ds, subject=subject, clip=clip,
        source=str(source), fps=fps, onset=0, apex=None, offset=n - 1,
        onset_frame=int(numbers[0]), apex_frame=None, offset_frame=int(numbers[-1]),
        emotion=label, video=clip, label=label, n_frames=n, origin=sh.where(row))


@register_dataset(
    "megc2019", title="MEGC 2019 three-class composite (SMIC-HS, CASME II, SAMM)", fps=None,
    long=False, columns=MEGC_COLUMNS, forbidden=("onset", "onsetf", "onsetframe"),
    detect=_headerless_list,
    sheet="`dataset, subject, filename, label`, with or without header; labels as names or "
          "0 negative / 1 positive / 2 surprise",
    layout="`casme2/`, `samm/`, `smic/` under `--root`, each in its own layout; "
           "`--sheet casme2=FILE` for annotated frames",
    reference="See et al., FG 2019", extra_sheets=("casme2", "samm", "smic-hs"),
    takes_fps=False)
def load_megc2019(request: LoadRequest) -> list[Sample]:
    """The composite list, headerless or not."""

    path, root, sheets = request.path, request.root, request.sheets
    table = _megc_table(path)
    sh = Sheet("megc2019", table)
    by_key: dict[tuple[str, str, str], Sample] = {}
    for name, sheet in (sheets or {}).items():
        ds = PARTS.get(normalize_column(name), name)
        if ds not in _SUBJECTS:
            raise DatasetError(f"Invalid value for the 'sheets' key. Allowed values are "
                               f"casme2, samm, smic-hs, but got {name!r} instead.")
        for s in load_dataset(ds, sheet, root=megc_root(root, ds)):
            by_key[(ds, s.subject, s.clip.lower())] = s
    samples: list[Sample] = []
    unknown: list[str] = []
    for row, rec in table.rows:
        with sh.row(row):
            samples.append(_megc_row(rec, row, sh, root, bool(sheets), by_key, unknown))
    if unknown:
        logger.warning("megc2019: %d clip(s) have no frames found under %s and no sheet was "
                       "given (%s%s); their onset/offset are None", len(unknown), root,
                       ", ".join(unknown[:3]), ", ..." if len(unknown) > 3 else "")
    elif not sheets:
        logger.info("megc2019: onset/offset are each clip folder's first/last frame; apex "
                    "unknown (pass sheets= for the annotated frames)")
    return unique_ids(samples)
