"""Shared pieces of the dataset adapters: samples, cell parsing, frame sources.

Every adapter module (one per dataset family) parses its sheet's rows into
:class:`Entry` objects with the helpers here, then :func:`resolve_sources`
finds each clip's frames and turns positions into :class:`Sample` objects.

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import DatasetError, MediaError
from ..sheets import Table, cell_text, read_table
from ..video import VIDEO_EXTENSIONS, natural_key, open_clip

if TYPE_CHECKING:
    from .registry import LoadRequest

logger = logging.getLogger("mexkit")

MISSING = {"", "/", "\\", "-", "--", "?", "n/a", "na", "nan", "none", "null"}


# ---------------------------------------------------------------------------
# Sample
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One annotated expression: a short clip, or an interval of a long video.

    Attributes
    ----------
    sample_id : str
        Unique id ``"<dataset>/<subject>/<clip>"``, e.g. ``"casme2/sub01/EP02_01f"``.
    dataset : str
        Dataset name (``"casme2"``, ``"samm-lv"``, ...).
    subject : str
        Normalised subject: ``"sub01"`` (CASME, CASME II), ``"006"`` (SAMM,
        SAMM-LV), ``"s1"`` (SMIC), ``"s15"`` (CAS(ME)^2).
    clip : str
        The sheet's clip / interval name.
    source : str or None
        The video file or image folder holding the frames; ``None`` when it
        was not found (only the sheet was given).
    fps : float
        Frames per second.
    onset, apex, offset : int or None
        0-based positions in ``source`` (see the module notes); apex ``None``
        when unknown; onset/offset ``None`` only for MEGC 2019 list entries
        whose frames are unknown.
    onset_frame, apex_frame, offset_frame : int or None
        The sheet's frame numbers.
    aus : str
        Action units as written in the sheet (stripped).
    emotion : str
        The sheet's emotion, lower-case and stripped (``""`` when none).
    objective_class : str or None
        SAMM's objective class as a Roman numeral ``"I"`` .. ``"VII"``.
    kind : {'micro', 'macro'}
    video : str
        Long-video id (``"006_1"``, ``"anger1"``); the clip name for short clips.
    label : str or None
        Class label, set by the MEGC 2019 list, the generic CSV or
        :func:`mexkit.labels.apply_scheme`.
    n_frames : int or None
        Frames in ``source`` when it was found.
    origin : str
        ``"file, row N"`` of the annotation, for messages.
    """

    sample_id: str
    dataset: str
    subject: str
    clip: str
    source: str | None
    fps: float
    onset: int | None
    apex: int | None
    offset: int | None
    onset_frame: int | None
    apex_frame: int | None
    offset_frame: int | None
    aus: str = ""
    emotion: str = ""
    objective_class: str | None = None
    kind: str = "micro"
    video: str = ""
    label: str | None = None
    n_frames: int | None = None
    origin: str = ""

    @property
    def video_id(self) -> str:
        """``"<dataset>/<subject>/<video>"``: the key of :func:`group_by_video`."""
        return f"{self.dataset}/{self.subject}/{self.video}"

    def attrs(self) -> dict[str, Any]:
        """The known (non-``None``) fields, for store attributes."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name != "origin":
                out[f.name] = value
        return out


def group_by_video(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Group samples by :attr:`Sample.video_id`, each group sorted by onset.

    For long-video datasets this gives, per video, its annotated intervals
    (all sharing one ``source``); for short-clip datasets each group holds
    one sample.  Groups keep the order in which videos first appear.
    """
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.video_id, []).append(s)
    for items in groups.values():
        items.sort(key=lambda s: (s.onset is None, s.onset or 0, s.offset or 0))
    return groups


# ---------------------------------------------------------------------------
# Cell parsing
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# Frame sources and positions
# ---------------------------------------------------------------------------
class Sources:
    """Finds clip folders/videos and caches their frame numbering."""

    def __init__(self, dataset: str, root: Path, fps: float) -> None:
        self.dataset = dataset
        self.root = root
        self.fps = fps
        self._cache: dict[Path, tuple[np.ndarray, int]] = {}
        self.missing: list[str] = []

    def locate(self, candidates: Iterable[Path]) -> Path | None:
        for c in candidates:
            if c.is_dir() or (c.is_file() and c.suffix.lower() in VIDEO_EXTENSIONS):
                return c
        return None

    def numbering(self, source: Path, first_number: int) -> tuple[np.ndarray, int]:
        """``(frame numbers, n_frames)`` of a folder or video (cached).

        A folder's numbers come from its image names; a video's frames are
        numbered from the dataset's ``first_number``.
        """
        if source not in self._cache:
            clip = open_clip(source, fps=self.fps)
            clip.close()
            numbers = clip.frame_numbers
            if clip.kind == "video":
                numbers = numbers + first_number
            self._cache[source] = (numbers, clip.n_frames)
        return self._cache[source]

    def report(self) -> None:
        if self.missing:
            shown = ", ".join(self.missing[:3]) + (", ..." if len(self.missing) > 3 else "")
            logger.warning("%s: %d clip(s) not found under %s (%s); their positions are "
                           "counted from the sheet's frame numbers and source is None",
                           self.dataset, len(self.missing), self.root, shown)


def _position(numbers: np.ndarray, value: int, field: str, sh: Sheet, row: int,
              source: Path) -> int:
    pos = int(np.searchsorted(numbers, value))
    n = len(numbers)
    if pos < n and numbers[pos] == value:
        return pos
    if pos == 0 or pos == n:
        nearest = 0 if pos == 0 else n - 1
    else:
        nearest = pos if numbers[pos] - value < value - numbers[pos - 1] else pos - 1
    sh.warn(row, f"{field} frame {value} is not in {source} (frames {int(numbers[0])}.."
                 f"{int(numbers[-1])}); using frame {int(numbers[nearest])}")
    return nearest


@dataclass
class Entry:
    """A parsed sheet row before positions are resolved."""

    row: int
    subject: str
    clip: str
    onset: int | None
    apex: int | None
    offset: int | None
    aus: str = ""
    emotion: str = ""
    objective_class: str | None = None
    kind: str = "micro"
    video: str = ""
    base: int | None = None  # frame number of position 0 when no source is found
    label: str | None = None


def check_frames(e: Entry, sh: Sheet, *, first_number: int = 0) -> bool:
    """Apply the onset/apex/offset quirk rules; False means: the row was skipped.

    ``first_number`` is the sheet's first frame number (1 for the long-video
    sheets, whose onset 0 means "from the first frame").
    """
    if e.onset is None:
        raise sh.error(e.row, f"clip {e.clip!r} has no onset frame")
    if e.onset < first_number and e.onset >= 0 and first_number > 0:
        sh.warn(e.row, f"onset {e.onset} precedes the first frame {first_number} of this "
                       f"1-based sheet; taken as the first frame {first_number}")
        e.onset = first_number
    if e.onset < 0:
        raise sh.error(e.row, f"clip {e.clip!r}: onset {e.onset} is negative")
    if e.apex is not None and (e.apex < 0 or (e.apex == 0 and e.onset > 0)):
        sh.warn(e.row, f"apex {e.apex} means unlabelled; apex unknown")
        e.apex = None
    if e.offset is None or e.offset < 0 or (e.offset == 0 and e.onset > 0):
        if e.apex is not None and e.apex > e.onset:
            est = 2 * e.apex - e.onset
            sh.warn(e.row, f"offset {e.offset if e.offset is not None else 'empty'} means "
                           f"unknown; estimated as apex + (apex - onset) = {est}")
            e.offset = est
        else:
            sh.skip(e.row, f"clip {e.clip!r}: offset unknown and no apex to estimate it "
                           "from")
            return False
    if e.offset is None:
        raise sh.error(e.row, f"clip {e.clip!r} has no offset frame")
    if e.onset > e.offset:
        raise sh.error(e.row, f"clip {e.clip!r}: onset {e.onset} is after offset {e.offset}")
    if e.apex is not None and not e.onset <= e.apex <= e.offset:
        sh.warn(e.row, f"apex {e.apex} lies outside onset..offset {e.onset}..{e.offset}; "
                       "apex unknown")
        e.apex = None
    return True


def make_sample(e: Entry, sh: Sheet, src: Sources, source: Path | None, *,
                 first_number: int, short: bool) -> Sample:
    """Resolve positions of ``e`` in ``source`` (or from the sheet) into a Sample."""
    assert e.onset is not None and e.offset is not None
    n_frames = None
    numbers = None
    if source is not None:
        try:
            numbers, n_frames = src.numbering(source, first_number)
        except MediaError as exc:  # an unreadable clip fails alone, in the crop stage
            logger.warning("%s: %s: %s", sh.dataset, sh.where(e.row), exc)
    if numbers is not None:
        if e.onset > numbers[-1] or e.offset < numbers[0]:
            raise sh.error(e.row, f"clip {e.clip!r}: frames {e.onset}..{e.offset} lie outside "
                                  f"{source} (frames {int(numbers[0])}..{int(numbers[-1])})")
        onset = _position(numbers, e.onset, "onset", sh, e.row, source)
        offset = _position(numbers, e.offset, "offset", sh, e.row, source)
        apex = (None if e.apex is None
                else _position(numbers, e.apex, "apex", sh, e.row, source))
    else:
        base = e.base if e.base is not None else (e.onset if short else first_number)
        if e.onset < base:
            raise sh.error(e.row, f"clip {e.clip!r}: onset {e.onset} precedes the clip's "
                                  f"first frame {base}")
        onset, offset = e.onset - base, e.offset - base
        apex = None if e.apex is None else e.apex - base
    return Sample(
        sample_id=f"{sh.dataset}/{e.subject}/{e.clip}", dataset=sh.dataset, subject=e.subject,
        clip=e.clip, source=None if source is None else str(source), fps=src.fps,
        onset=onset, apex=apex, offset=offset, onset_frame=e.onset, apex_frame=e.apex,
        offset_frame=e.offset, aus=e.aus, emotion=e.emotion,
        objective_class=e.objective_class, kind=e.kind, video=e.video or e.clip,
        label=e.label, n_frames=n_frames, origin=sh.where(e.row))


def unique_ids(samples: list[Sample]) -> list[Sample]:
    counts: Counter[str] = Counter()
    out = []
    for s in samples:
        counts[s.sample_id] += 1
        if counts[s.sample_id] > 1:
            new = f"{s.sample_id}#{counts[s.sample_id]}"
            logger.warning("%s: %s: sample id %r already used; this one is %r", s.dataset,
                           s.origin, s.sample_id, new)
            s = dataclasses.replace(s, sample_id=new)
        out.append(s)
    return out


# ---------------------------------------------------------------------------
# Header-based sheets
# ---------------------------------------------------------------------------
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
            e = parse_entry(rec, row, sh, cols, subject_fn, clip_fn=clip_fn,
                            long_video=long_video, default_kind=default_kind)
            if check_frames(e, sh, first_number=first_number):
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
    e = Entry(row=row, subject=subject, clip=clip,
              onset=frame_number(get_cell(rec, cols.onset), "onset", sh, row), apex=apex,
              offset=frame_number(get_cell(rec, cols.offset), "offset", sh, row),
              aus=clean_text(get_cell(rec, cols.aus)),
              emotion=clean_text(get_cell(rec, cols.emotion)).lower(),
              objective_class=objective_class(get_cell(rec, cols.objective), sh, row),
              kind=expression_kind(get_cell(rec, cols.kind), sh, row, default_kind)
              if cols.kind else default_kind)
    if cols.first:
        e.base = frame_number(get_cell(rec, cols.first), "first frame", sh, row)
    if long_video:
        parts = clip.split("_")
        e.video = "_".join(parts[:2]) if len(parts) >= 3 else clip
    return e


def resolve_sources(entries: list[Entry], sh: Sheet, src: Sources,
                    candidates: Callable[[Entry], list[Path]], *, first_number: int,
                    short: bool) -> list[Sample]:
    """Find each entry's frames and make its :class:`Sample` (bad rows skipped)."""
    samples = []
    for e in entries:
        source = src.locate(candidates(e))
        if source is None:
            src.missing.append(f"{e.subject}/{e.video if not short else e.clip}")
        with sh.guard(e.row):
            samples.append(make_sample(e, sh, src, source, first_number=first_number,
                                       short=short))
    # One missing long video is reported once, not once per interval.
    src.missing = sorted(set(src.missing), key=natural_key)
    src.report()
    return unique_ids(samples)




def name_tokens(path: Path) -> set[str]:
    """Lower-case letter/digit runs of a file name (``"MMEW_Micro_Exp"`` -> mmew, micro, exp)."""
    return set(re.split(r"[^a-z0-9]+", path.name.lower())) - {""}


def load_header_sheet(request: LoadRequest, columns: Columns,
                      subject_fn: Callable[[Any, Sheet, int], str],
                      candidates: Callable[[Entry], list[Path]], *, expected: str,
                      long_video: bool = False, first_number: int = 0,
                      default_kind: str = "micro", short: bool = True) -> list[Sample]:
    """Read a header-based coding sheet with ``columns`` and resolve its clips.

    The common path of the adapters whose sheet is one table with a header
    row: :func:`~mexkit.io.sheets.read_table`, :func:`parse_rows`,
    :func:`resolve_sources`.
    """
    table = read_table(request.path, columns.required(), expected=expected)
    sh = Sheet(request.name, table)
    entries = parse_rows(table, sh, columns, subject_fn, long_video=long_video,
                         default_kind=default_kind, first_number=first_number)
    src = Sources(request.name, request.root, request.fps)
    return resolve_sources(entries, sh, src, candidates, first_number=first_number,
                           short=short)
