"""Sheet rows: the report of repairs and skips, cell parsing and the frame rules.

Rows that cannot be used as written are repaired where the repair is
unambiguous (:meth:`Sheet.warn`) or skipped (:meth:`Sheet.skip`, or a
:class:`RowError` raised inside :meth:`Sheet.row`), each with a warning that
names the file, the sheet and the row; :func:`collect_report` counts them and
makes them errors when strict.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DatasetError
from ..sheets import Table, cell_text
from .sample import Entry

logger = logging.getLogger("mexkit")

MISSING = {"", "/", "\\", "-", "--", "?", "n/a", "na", "nan", "none", "null"}


class RowError(DatasetError):
    """A sheet row that cannot be used as written (the row is skipped)."""


@dataclass
class ReadReport:
    """What happened to the rows of the sheets read while it is active.

    Attributes
    ----------
    strict : bool
        Every repair or skip raises :class:`~mexkit.errors.DatasetError`.
    rows : int
        Data rows looked at (blank rows and title blocks not counted).
    repaired : dict
        ``"file, sheet, row"`` -> reasons, for rows used after a repair.
    skipped : dict
        ``"file, sheet, row"`` -> reason, for rows left out.
    """

    strict: bool = False
    rows: int = 0
    repaired: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def n_repaired(self) -> int:
        """Rows used after a repair (rows later skipped are not counted)."""
        return sum(1 for w in self.repaired if w not in self.skipped)

    @property
    def n_read(self) -> int:
        """Rows used as written."""
        return self.rows - self.n_repaired - len(self.skipped)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts and messages."""
        return {"rows": self.rows, "read": self.n_read, "repaired": self.n_repaired,
                "skipped": len(self.skipped),
                "repairs": {w: r for w, r in self.repaired.items() if w not in self.skipped},
                "skips": dict(self.skipped)}

    def summary_line(self) -> str:
        """``"rows: 502 read (3 repaired), 0 skipped"``."""
        return (f"sheet rows: {self.rows}: {self.n_read} read as written, "
                f"{self.n_repaired} repaired, {len(self.skipped)} skipped")


_REPORT: contextvars.ContextVar[ReadReport | None] = contextvars.ContextVar(
    "mexkit_dataset_report", default=None)


@contextlib.contextmanager
def collect_report(*, strict: bool = False) -> Iterator[ReadReport]:
    """Collect a :class:`ReadReport` of every sheet row read inside the block.

    With ``strict=True`` the first repair or skip raises
    :class:`~mexkit.errors.DatasetError` instead of a warning.
    """
    report = ReadReport(strict=strict)
    token = _REPORT.set(report)
    try:
        yield report
    finally:
        _REPORT.reset(token)


def current_report() -> ReadReport:
    """The active report, or a throw-away one (not strict) outside :func:`collect_report`."""
    report = _REPORT.get()
    return report if report is not None else ReadReport()


class Sheet:
    """One table of a sheet: warnings, repairs and skips that name file, sheet and row."""

    def __init__(self, name: str, table: Table | None = None, path: Path | None = None,
                 sheet: str = "") -> None:
        self.dataset = name
        self.table = table
        self.path = table.path if table is not None else Path(path or "")
        self.sheet = table.sheet if table is not None else sheet
        self.report = current_report()

    def where(self, row: int) -> str:
        """``"file.xlsx, sheet 'x', row 12"``."""
        sheet = f", sheet {self.sheet!r}" if self.sheet else ""
        return f"{self.path.name}{sheet}, row {row}"

    def _key(self, row: int) -> str:
        sheet = f", sheet {self.sheet!r}" if self.sheet else ""
        return f"{self.path}{sheet}, row {row}"

    def warn(self, row: int, message: str) -> None:
        """A repair: the row is used with ``message`` explaining how (an error if strict)."""
        if self.report.strict:
            raise DatasetError(f"{self.dataset}: {self._key(row)}: {message} (--strict: "
                               "no repairs)")
        self.report.repaired.setdefault(self._key(row), []).append(message)
        logger.warning("%s: %s: %s", self.dataset, self.where(row), message)

    def skip(self, row: int, message: str) -> None:
        """The row is left out because of ``message`` (an error if strict)."""
        if self.report.strict:
            raise DatasetError(f"{self.dataset}: {self._key(row)}: {message} (--strict: "
                               "no rows skipped)")
        self.report.skipped[self._key(row)] = message
        logger.warning("%s: %s: %s; row skipped", self.dataset, self.where(row), message)

    def error(self, row: int, message: str) -> RowError:
        """A :class:`RowError` for this row; raise it inside :meth:`row` to skip the row."""
        return RowError(f"{self.dataset}: {self._key(row)}: {message}")

    @contextlib.contextmanager
    def row(self, row: int) -> Iterator[None]:
        """Count one data row; a :class:`RowError` raised inside skips it."""
        self.report.rows += 1
        with self.guard(row):
            yield

    @contextlib.contextmanager
    def guard(self, row: int) -> Iterator[None]:
        """A :class:`RowError` raised inside skips the row (already counted)."""
        try:
            yield
        except RowError as exc:
            prefix = f"{self.dataset}: {self._key(row)}: "
            text = str(exc)
            self.skip(row, text[len(prefix):] if text.startswith(prefix) else text)


def get_cell(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if k in record:
            return record[k]
    return None


def clean_text(value: Any) -> str:
    return re.sub(r"\s+", " ", cell_text(value))


def frame_number(value: Any, field: str, sh: Sheet, row: int) -> int | None:
    """Parse a frame number: int, integral float, numeric text; None if missing.

    Fractional values are rounded with a warning.
    """
    if isinstance(value, bool):
        raise sh.error(row, f"{field} {value!r} is not a frame number")
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        num = value
    else:
        text = cell_text(value)
        if text.lower() in MISSING:
            return None
        try:
            num = float(text)
        except ValueError:
            raise sh.error(row, f"{field} {text!r} is not a frame number") from None
    if not np.isfinite(num):
        return None
    if not float(num).is_integer():
        rounded = int(np.floor(num + 0.5))
        sh.warn(row, f"fractional {field} {num!r} rounded to {rounded}")
        return rounded
    return int(num)


def parse_fps(value: Any, sh: Sheet, row: int) -> float:
    text = cell_text(value)
    try:
        fps = float(text)
    except ValueError:
        raise sh.error(row, f"fps {text!r} is not a number") from None
    if not (np.isfinite(fps) and fps > 0):
        raise sh.error(row, f"fps must be positive, but got {text!r}")
    return fps


def subject_rule(pattern: str, fmt: Callable[[int], str]
                  ) -> Callable[[Any, Sheet, int], str]:
    """Subject normaliser: text matching ``pattern`` becomes ``fmt(number)``.

    Other non-empty text is kept as it is; an empty cell is an error.
    """
    regex = re.compile(pattern)

    def subject(value: Any, sh: Sheet, row: int) -> str:
        text = clean_text(value)
        m = regex.fullmatch(text)
        if m:
            return fmt(int(m.group(1)))
        if not text:
            raise sh.error(row, "no subject")
        return text

    return subject


# "1", "01", "sub01", "Subject 1" -> "sub01" (CASME, CASME II)
subject_casme = subject_rule(r"(?i)(?:sub(?:ject)?)?\s*0*(\d+)", lambda n: f"sub{n:02d}")
# "6", "006" -> "006" (SAMM, SAMM-LV)
subject_samm = subject_rule(r"(\d+)", lambda n: f"{n:03d}")
# "1", "s01", "S1" -> "s1" (SMIC)
subject_smic = subject_rule(r"(?i)s?\s*0*(\d+)", lambda n: f"s{n}")


def smic_clip(name: str) -> str:
    """``s01_ne_01`` -> ``s1_ne_01`` (SMIC names its folders without padding)."""
    return re.sub(r"(?i)^s0*(\d+)", lambda m: f"s{int(m.group(1))}", name)


_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


def objective_class(value: Any, sh: Sheet, row: int) -> str | None:
    text = clean_text(value).upper()
    if text in ("", "-", "/", "N/A", "NA"):
        return None
    if text in _ROMAN:
        return text
    if re.fullmatch(r"[1-7](\.0)?", text):
        return _ROMAN[int(float(text)) - 1]
    sh.warn(row, f"objective class {text!r} is not one of I-VII or 1-7; taken as unknown")
    return None


def expression_kind(value: Any, sh: Sheet, row: int, default: str = "micro") -> str:
    text = clean_text(value).lower()
    if not text:
        return default
    if text.startswith("micro"):
        return "micro"
    if text.startswith("macro"):
        return "macro"
    raise sh.error(row, f"expression type {clean_text(value)!r} is neither micro nor macro")


def check_frames(e: Entry, sh: Sheet, *, first_number: int = 0) -> Entry | None:
    """Apply the onset/apex/offset quirk rules: the entry as repaired, or None if skipped.

    ``first_number`` is the sheet's first frame number (1 for the long-video
    sheets, whose onset 0 means "from the first frame").
    """
    onset, apex, offset = e.onset, e.apex, e.offset
    if onset is None:
        raise sh.error(e.row, f"clip {e.clip!r} has no onset frame")
    if onset < first_number and onset >= 0 and first_number > 0:
        sh.warn(e.row, f"onset {onset} precedes the first frame {first_number} of this "
                       f"1-based sheet; taken as the first frame {first_number}")
        onset = first_number
    if onset < 0:
        raise sh.error(e.row, f"clip {e.clip!r}: onset {onset} is negative")
    if apex is not None and (apex < 0 or (apex == 0 and onset > 0)):
        sh.warn(e.row, f"apex {apex} means unlabelled; apex unknown")
        apex = None
    if offset is None or offset < 0 or (offset == 0 and onset > 0):
        if apex is not None and apex > onset:
            est = 2 * apex - onset
            sh.warn(e.row, f"offset {offset if offset is not None else 'empty'} means "
                           f"unknown; estimated as apex + (apex - onset) = {est}")
            offset = est
        else:
            sh.skip(e.row, f"clip {e.clip!r}: offset unknown and no apex to estimate it "
                           "from")
            return None
    if onset > offset:
        raise sh.error(e.row, f"clip {e.clip!r}: onset {onset} is after offset {offset}")
    if apex is not None and not onset <= apex <= offset:
        sh.warn(e.row, f"apex {apex} lies outside onset..offset {onset}..{offset}; "
                       "apex unknown")
        apex = None
    return dataclasses.replace(e, onset=onset, apex=apex, offset=offset)
