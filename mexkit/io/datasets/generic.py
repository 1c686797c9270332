"""The generic dataset sheet: mexkit's exchange CSV, read and written here only.

One row per sample; columns in any order: ``subject, clip, path, fps, onset,
apex, offset, label`` required (apex and label may be empty), ``dataset,
emotion, aus, video, kind`` optional.  ``path`` is a video file or an image
folder relative to the CSV's folder; frame numbers are 0-based positions in
it.  A row is one clip: the whole of ``path``, whatever it is (a video file or
a folder), with its annotated positions; onset and offset may both be empty
for a clip without frame annotations.  Only a ``video`` column that differs
from ``clip`` makes a row an interval of a longer video (cropped whole with
``mexkit crop --unit video``).  :func:`write_generic_csv` (samples) and
:func:`write_generic_rows` (plain rows, as ``mexkit synth`` writes them) are
the writers; text cells that a
spreadsheet would run as a formula are escaped on writing (see
:func:`mexkit.io.sheets.escape_formula`) and unescaped on reading.
"""
from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import DatasetError, MediaError
from ..atomic import atomic_open
from ..sheets import escape_formula, read_table, unescape_formula
from .registry import LoadRequest, register_dataset
from .rows import Sheet, clean_text, expression_kind, frame_number, parse_fps
from .sample import Sample, unique_ids
from .sources import Sources

__all__ = ["GENERIC_REQUIRED", "GENERIC_OPTIONAL", "GENERIC_COLUMNS", "load_generic",
           "write_generic_csv", "write_generic_rows"]

logger = logging.getLogger("mexkit")

GENERIC_REQUIRED = ("subject", "clip", "path", "fps", "onset", "apex", "offset", "label")
GENERIC_OPTIONAL = ("dataset", "emotion", "aus", "video", "kind")
#: Column order of the sheets mexkit writes.
GENERIC_COLUMNS = GENERIC_REQUIRED + GENERIC_OPTIONAL

_SHOWN = 5  # missing paths named one by one before the rest are counted


def cell(value: Any) -> str:
    """A text cell of the generic sheet: spaces collapsed, formula escape removed."""
    return unescape_formula(clean_text(value))


@register_dataset(
    "generic", title="generic dataset sheet (mexkit's exchange CSV)", fps=None, long=False,
    columns=GENERIC_REQUIRED,
    sheet="`subject, clip, path, fps, onset, apex, offset, label` (+ `dataset, emotion, aus, "
          "video, kind`); written by `mexkit synth`",
    layout="`path`: a video or image folder relative to the CSV",
    reference="this project", takes_fps=False)
def load_generic(request: LoadRequest) -> list[Sample]:
    """The generic sheet: 0-based positions in ``path`` (a video or image folder)."""
    path, root = request.path, request.root
    table = read_table(path, GENERIC_REQUIRED, expected="generic dataset CSV")
    sh = Sheet("generic", table)
    base = path.parent
    caches: dict[tuple[str, float], Sources] = {}
    samples = []
    missing: list[str] = []
    for row, rec in table.rows:
        with sh.row(row):
            sample = _generic_row(rec, row, sh, base, root, caches, missing)
            samples.append(sample)
    if len(missing) > _SHOWN:
        logger.warning("generic: %d of %d paths in %s do not exist (relative to %s), "
                       "%d more after the ones above", len(missing), len(table.rows),
                       path.name, base, len(missing) - _SHOWN)
    return unique_ids(samples)


def _generic_row(rec: dict[str, Any], row: int, sh: Sheet, base: Path, root: Path,
                 caches: dict[tuple[str, float], Sources], missing: list[str]) -> Sample:
    """One row of the generic sheet (raises :class:`RowError`)."""
    subject, clip = cell(rec.get("subject")), cell(rec.get("clip"))
    if not subject:
        raise sh.error(row, "no subject")
    if not clip:
        raise sh.error(row, "no clip")
    rel = cell(rec.get("path"))
    if not rel:
        raise sh.error(row, f"clip {clip!r} has no path")
    fps = parse_fps(rec.get("fps"), sh, row)
    dataset = cell(rec.get("dataset")) or "generic"
    onset = frame_number(rec.get("onset"), "onset", sh, row)
    offset = frame_number(rec.get("offset"), "offset", sh, row)
    apex = frame_number(rec.get("apex"), "apex", sh, row)
    if (onset is None) != (offset is None):
        raise sh.error(row, f"clip {clip!r} needs both onset and offset (or neither, for a "
                            "clip without frame annotations)")
    if onset is None or offset is None:
        if apex is not None:
            raise sh.error(row, f"clip {clip!r}: apex {apex} without onset and offset")
    elif onset < 0 or offset < onset:
        raise sh.error(row, f"clip {clip!r}: need 0 <= onset <= offset, but got onset "
                            f"{onset}, offset {offset}")
    elif apex is not None and not onset <= apex <= offset:
        raise sh.error(row, f"clip {clip!r}: apex {apex} lies outside onset..offset "
                            f"{onset}..{offset}")
    label = cell(rec.get("label")) or None
    emotion = (cell(rec.get("emotion")) or (label or "")).lower()
    source = Path(rel) if Path(rel).is_absolute() else base / rel
    n_frames = None
    if source.exists():
        src = caches.setdefault((dataset, fps), Sources(dataset, root, fps))
        try:
            _, n_frames = src.numbering(source, 0)
        except MediaError as exc:  # an unreadable clip fails alone, in the crop stage
            logger.warning("generic: %s: %s", sh.where(row), exc)
            n_frames = None
        if n_frames is not None and offset is not None and offset >= n_frames:
            raise sh.error(row, f"clip {clip!r}: offset {offset} but {source} has "
                                f"{n_frames} frames (positions 0..{n_frames - 1})")
    else:
        missing.append(rel)
        if len(missing) <= _SHOWN:
            logger.warning("generic: %s: path %r does not exist (relative to %s)",
                           sh.where(row), rel, base)
    # a row is a clip (the whole of `path`, its frames annotated by position) unless the
    # sheet names a longer video that the row is one interval of: the file's name is not
    # such a statement (issue 28: naming rows after their files made every annotated
    # video file a "long video", cropped whole without its annotations)
    video = cell(rec.get("video")) or clip
    return Sample(
        sample_id=f"{dataset}/{subject}/{clip}", dataset=dataset, subject=subject,
        clip=clip, source=str(source), fps=fps, onset=onset, apex=apex, offset=offset,
        onset_frame=onset, apex_frame=apex, offset_frame=offset,
        aus=cell(rec.get("aus")), emotion=emotion,
        kind=expression_kind(rec.get("kind"), sh, row),
        video=video, label=label, n_frames=n_frames, origin=sh.where(row))


def write_generic_rows(path: str | os.PathLike[str],
                       rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Path:
    """Write rows as the generic dataset sheet, atomically (temporary name, then rename).

    Parameters
    ----------
    path : str or path-like
    rows : iterable
        Mappings keyed by column name, or sequences in :data:`GENERIC_COLUMNS`
        order (trailing optional columns may be left out: the header then
        stops at the last column any row has).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    items = list(rows)
    width = len(GENERIC_REQUIRED)  # the optional columns are written when a row has them
    for row in items:
        if isinstance(row, Mapping):
            unknown = set(row) - set(GENERIC_COLUMNS)
            if unknown:
                raise DatasetError(f"generic sheet {path}: unknown column(s) "
                                   f"{', '.join(sorted(unknown))}")
            width = max([width] + [GENERIC_COLUMNS.index(k) + 1 for k in row])
        else:
            if len(row) > len(GENERIC_COLUMNS):
                raise DatasetError(f"generic sheet {path}: a row has {len(row)} cells, "
                                   f"more than its {len(GENERIC_COLUMNS)} columns")
            width = max(width, len(row))
    columns = GENERIC_COLUMNS[:width]
    out = []
    for row in items:
        values = ([row.get(c, "") for c in columns] if isinstance(row, Mapping)
                  else list(row) + [""] * (width - len(row)))
        out.append([escape_formula("" if v is None else v) for v in values])
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        w.writerows(out)
    return path


def write_generic_csv(samples: Iterable[Sample], path: str | os.PathLike[str]) -> Path:
    """Write samples as the generic dataset sheet (the exchange contract).

    Columns :data:`GENERIC_COLUMNS`; ``path`` relative to the CSV's folder
    when possible; frames as 0-based positions (empty apex/label when
    unknown).

    Raises
    ------
    DatasetError
        A sample without source or positions cannot be written.
    """
    path = Path(path)
    rows = []
    for s in samples:
        if s.source is None or (s.onset is None) != (s.offset is None):
            raise DatasetError(f"sample {s.sample_id!r} has no source, or only one of onset "
                               "and offset; the generic CSV needs a source and both "
                               "positions (or neither)")
        try:
            rel = os.path.relpath(s.source, path.parent)
        except ValueError:  # another drive on Windows: keep it absolute
            rel = os.path.abspath(s.source)
        rows.append([s.subject, s.clip, Path(rel).as_posix(), f"{s.fps:g}",
                     "" if s.onset is None else s.onset, "" if s.apex is None else s.apex,
                     "" if s.offset is None else s.offset, s.label or "", s.dataset,
                     s.emotion, s.aus, s.video, s.kind])
    return write_generic_rows(path, rows)
