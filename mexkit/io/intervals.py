"""The interval file: spotted or ground-truth expression intervals (CSV and JSON).

The exchange format of DESIGN.md: one row per interval, columns in any order,
``subject, video, onset, offset`` required, ``emotion, confidence`` optional;
frames are 0-based and inclusive.  mexkit also reads and writes two more
optional columns: ``type`` (``micro`` / ``macro``, for per-type scores) and
``apex`` (the spotted peak, for the apex spotting rate).  Ground truth and
predictions use the same file, so the output of any tool can be scored.

A file without one of the required columns is a
:class:`~mexkit.errors.DatasetError` naming the missing columns.  A row with a
missing, negative, reversed or non-numeric frame, an empty subject or video,
or a non-numeric confidence is invalid: with ``strict=True`` (ground truth,
unless the user asks for leniency) the file is refused with one
:class:`~mexkit.errors.DatasetError` that names every invalid row; otherwise
each such row is skipped with a warning that names the file and row.  With
``negative_onsets="keep"`` (predictions) a negative onset is not invalid: MEAN's
spotter writes ``peak - k'`` for a peak near the start of a video and MEAN's
STRS scorer scores such intervals as written, so they are kept, with one
warning naming the rows.  Fractional frames (SAMM Long Videos has some) are
rounded to the nearest frame with a warning.
"""
from __future__ import annotations

import csv
import io as _io
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..spot.metrics import Interval
from .sheets import cell_text, read_rows, table_from_rows

__all__ = ["COLUMNS", "read_intervals", "write_intervals", "write_intervals_json",
           "intervals_to_records"]

logger = logging.getLogger("mexkit")

#: Column order mexkit writes (the first four are required when reading).
COLUMNS = ("subject", "video", "onset", "offset", "type", "emotion", "confidence", "apex")
REQUIRED = ("subject", "video", "onset", "offset")


def _frame(text: str, name: str, where: str, *, negative: bool = False
           ) -> tuple[int | None, str | None]:
    if text == "":
        return None, f"{where}: empty {name}"
    try:
        value = float(text)
    except ValueError:
        return None, f"{where}: {name} {text!r} is not a frame number"
    if not math.isfinite(value):
        return None, f"{where}: {name} {text!r} is not a frame number"
    if not value.is_integer():
        logger.warning("%s: fractional %s %s rounded to frame %d", where, name, text,
                       round(value))
    frame = int(round(value))
    if frame < 0 and not negative:
        return None, f"{where}: negative {name} {frame}"
    return frame, None


def _rows_text(numbers: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return f"row{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _interval_table(path: Path, what: str) -> Any:
    """The file's table (header on its first non-blank row), refused without the
    :data:`REQUIRED` columns."""
    if not path.is_file():
        raise DatasetError(f"The {what} {str(path)!r} does not exist or is not a file.")
    rows = read_rows(path)
    first = next((i for i, r in enumerate(rows) if not r.is_blank()), None)
    table = None if first is None else table_from_rows(path, rows, first)
    have = [] if table is None else [k for k in table.keys if k]
    missing = [c for c in REQUIRED if c not in have]
    if table is None or missing:
        raise DatasetError(
            f"The {what} {str(path)!r} lacks the column(s) {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED)}; found: {', '.join(have) or 'none'}).")
    return table


def _row_interval(rec: dict[str, Any], where: str, keep_negative: bool
                  ) -> tuple[Interval | None, str]:
    """One row's interval, or None and why the row is invalid (an unreadable apex is
    dropped with a warning, not refused)."""
    subject = cell_text(rec.get("subject"))
    video = cell_text(rec.get("video"))
    if not subject or not video:
        return None, f"{where}: empty subject or video"
    onset, problem = _frame(cell_text(rec.get("onset")), "onset", where,
                            negative=keep_negative)
    if problem is None:
        offset, problem = _frame(cell_text(rec.get("offset")), "offset", where,
                                 negative=keep_negative)
    if problem is not None:
        return None, problem
    if offset < onset:
        return None, f"{where}: offset {offset} is before onset {onset}"
    conf_text = cell_text(rec.get("confidence"))
    confidence = None
    if conf_text:
        try:
            confidence = float(conf_text)
        except ValueError:
            confidence = math.nan
        if not math.isfinite(confidence):
            return None, f"{where}: confidence {conf_text!r} is not a finite number"
    apex_text = cell_text(rec.get("apex"))
    apex = None
    if apex_text and apex_text != "-1":   # SAMM-LV writes -1 for "no apex"
        apex, problem = _frame(apex_text, "apex", where)
        if problem is not None:
            logger.warning("%s: apex %r ignored", where, apex_text)
            apex = None
    kind = cell_text(rec.get("type")).lower() or None
    emotion = cell_text(rec.get("emotion")) or None
    return Interval(subject, video, onset, offset, type=kind, emotion=emotion,
                    confidence=confidence, apex=apex), ""


def read_intervals(path: str | os.PathLike[str], *, what: str = "interval file",
                   with_rows: bool = False, strict: bool = False,
                   negative_onsets: str = "invalid") -> Any:
    """Read an interval CSV.

    Parameters
    ----------
    path : str or Path
        A ``.csv`` (or ``.tsv``, ``.txt``) interval file.
    what : str
        What the file is ("truth file", "prediction file"), for messages.
    with_rows : bool
        Also return each interval's 1-based row number in the file.
    strict : bool
        Refuse a file with an invalid row (one error naming every such row)
        instead of skipping those rows with a warning.
    negative_onsets : {"invalid", "keep"}
        ``"keep"``: a row whose onset (or onset and offset) is negative is
        kept as written, with one warning naming the rows (predictions:
        MEAN's STRS scorer scores them as written).

    Returns
    -------
    list of Interval
        In file order; with ``with_rows``, a pair ``(intervals, row_numbers)``.

    Raises
    ------
    DatasetError
        The file does not exist, cannot be read, or lacks a required column;
        with ``strict``, a row is invalid.
    """
    if negative_onsets not in ("invalid", "keep"):
        raise ValueError(f"negative_onsets must be 'invalid' or 'keep', not {negative_onsets!r}")
    keep_negative = negative_onsets == "keep"
    path = Path(path)
    table = _interval_table(path, what)
    out: list[Interval] = []
    numbers: list[int] = []
    seen: dict[tuple[Any, ...], int] = {}
    invalid: list[str] = []
    negative: list[tuple[int, int]] = []

    def bad(problem: str) -> None:
        if strict:
            invalid.append(problem)
        else:
            logger.warning("%s; row skipped", problem)

    for number, rec in table.rows:
        where = table.where(number)
        iv, problem = _row_interval(rec, where, keep_negative)
        if iv is None:
            bad(problem)
            continue
        if iv.onset < 0:
            negative.append((number, iv.onset))
        dup = (iv.subject, iv.video, iv.onset, iv.offset, iv.type)
        if dup in seen:
            logger.warning("%s: the same interval as row %d", where, seen[dup])
        else:
            seen[dup] = number
        out.append(iv)
        numbers.append(number)
    if invalid:
        shown = "; ".join(invalid[:20])
        more = f"; and {len(invalid) - 20} more" if len(invalid) > 20 else ""
        raise DatasetError(
            f"The {what} {str(path)!r} has {len(invalid)} invalid row"
            f"{'s' if len(invalid) > 1 else ''}: {shown}{more}.")
    if negative:
        logger.warning(
            "%s: %s %s a negative onset (%s): kept as written and scored as MEAN's STRS "
            "scorer scores them (the frames before the video's first frame count in the "
            "IoU's union; the apex is the interval's middle)", path.name,
            _rows_text([n for n, _ in negative]), "has" if len(negative) == 1 else "have",
            ", ".join(str(v) for _, v in negative[:20]) + (" ..." if len(negative) > 20
                                                           else ""))
    return (out, numbers) if with_rows else out


def intervals_to_records(intervals: Iterable[Interval]) -> list[dict[str, Any]]:
    """Intervals as dictionaries with the :data:`COLUMNS` keys (None when unknown)."""
    return [{c: getattr(iv, c) for c in COLUMNS} for iv in intervals]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_intervals(path: str | os.PathLike[str], intervals: Sequence[Interval]) -> Path:
    """Write an interval CSV with the :data:`COLUMNS` header, atomically.

    Confidences are written with full precision (``repr``), so a file read
    back ranks exactly as the original.
    """
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for rec in intervals_to_records(intervals):
        writer.writerow([_text(rec[c]) for c in COLUMNS])
    return _write_atomic(Path(path), buf.getvalue())


def write_intervals_json(path: str | os.PathLike[str], intervals: Sequence[Interval],
                         **extra: Any) -> Path:
    """Write ``{"columns": [...], "intervals": [records], **extra}`` as JSON, atomically."""
    doc = {"columns": list(COLUMNS), "intervals": intervals_to_records(intervals), **extra}
    return _write_atomic(Path(path), json.dumps(doc, indent=1, sort_keys=False) + "\n")


def _write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
