"""Dataset adapters: one uniform list of :class:`Sample` from each ME dataset.

Every adapter reads a dataset's official annotation sheet as distributed
(see :mod:`mexkit.io.sheets`), finds each clip's frames under a root folder
when they are there, and returns one :class:`Sample` per annotated
expression.  Entry points: :func:`load_dataset` and :func:`detect_dataset`.

Supported datasets (``name``: sheet, layout under ``root``, frame rate)

``casme``
    CASME: ``Subject, Filename, OnsetF, ApexF1, ApexF2, OffsetF, ..., AU,
    Emotion`` (the ``Onset``/``Total`` columns are durations in ms and are not
    used); ``root/sub01/EP01_12/<images>``; 60 fps.
``casme2``
    CASME II: ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action
    Units, Estimated Emotion``; ``root/sub01/EP02_01f/img46.jpg``; 200 fps.
``smic-hs``, ``smic-vis``, ``smic-nir``
    SMIC-E: ``Subject, Filename, OnsetF, OffsetF, Emotion, FirstF``;
    ``root/HS/s1/micro/negative/s1_ne_01/image0012345.bmp`` (also without the
    ``HS`` level, and ``root/s1/s1_ne_01``); 100 / 25 / 25 fps.  SMIC has no
    apex: ``apex`` stays ``None``.
``samm``
    SAMM: a title block, then ``Subject, Filename, Inducement Code, Onset
    Frame, Apex Frame, Offset Frame, Duration, Type, Action Units, Notes,
    Estimated Emotion, Objective Classes``; ``root/006/006_1_2/006_05562.jpg``;
    200 fps.
``casme-sq``
    CAS(ME)^2: a workbook without header: the coding sheet (participant
    number, ``anger1_1`` style name, onset, apex, offset, AUs, estimated
    emotion, ``micro-expression``/``macro-expression``, self-reported
    emotion), ``naming rule1`` (subject number such as 15, folder ``s15``,
    participant number) and ``naming rule2`` (video code ``0401``, name
    ``anger1``).  Frames under ``root/rawpic/s15/15_0401girlcrashing/img1.jpg``
    or the video ``root/rawvideo/s15/15_0401girlcrashing.avi``; 30 fps.  Long
    videos: one sample per interval.
``samm-lv``
    SAMM Long Videos: a title block, then ``Subject, Filename, Inducement
    Code, Onset, Apex, Offset, Duration, Type, Action Units, Notes``;
    ``Filename`` ``006_1_3`` is interval 3 of long video ``006_1`` whose frames
    are ``root/006_1/006_01234.jpg``; ``Type`` is ``Macro`` or ``Micro - 1/2``;
    200 fps.  One sample per interval.
``megc2019``
    The MEGC 2019 three-class composite list (SMIC-HS + CASME II + SAMM): a
    CSV/xlsx with ``dataset, subject (or sub), filename (or filename_o), label
    (or emotion)``.  Labels are ``negative, positive, surprise`` or the
    integers 0, 1, 2 in that order (the convention of the public composite
    lists).  Onset/apex/offset come from the original sheets when
    ``sheets={"casme2": ..., "samm": ..., "smic-hs": ...}`` is given, else from
    the clip folders found under ``root/<dataset>/`` (onset = first frame,
    offset = last, apex unknown), else stay ``None``.
``generic``
    The documented exchange CSV: ``subject, clip, path, fps, onset, apex,
    offset, label`` (apex and label may be empty), optional ``dataset,
    emotion, aus`` (and ``video, kind``).  ``path`` is relative to the CSV's
    folder; frame numbers are 0-based positions.  :func:`write_generic_csv`
    writes it.

Frame numbers and positions
    ``onset_frame``/``apex_frame``/``offset_frame`` are the sheet's frame
    numbers.  ``onset``/``apex``/``offset`` are 0-based positions in the clip
    that :attr:`Sample.source` points at: when the folder exists, the index
    of that frame number in the naturally sorted folder (a number the folder
    lacks takes the nearest frame, with a warning); for a video file, the
    frame number minus the dataset's first frame number (1 for CAS(ME)^2).
    When only the sheet is given (``source`` is ``None``), positions are
    counted from the clip's first frame: the onset for short clips (``FirstF``
    for SMIC-E) and frame number 1 for long videos (CAS(ME)^2, SAMM-LV).

Sheet quirks, each handled with a ``logging`` warning naming file and row
    header row not first (found by its column names); sheets without header
    (CAS(ME)^2); fractional frame numbers (rounded); apex ``-1``, ``0``,
    ``/``, empty (unknown: ``None``); apex outside [onset, offset] (unknown);
    offset ``0`` or empty (unknown: estimated as ``apex + (apex - onset)``,
    mirroring the rise, as several public CAS(ME)^2 loaders do; without an
    apex the row is skipped); type strings such as ``Micro - 1/2``; trailing
    spaces and numbers stored as text (accepted silently); the same sample
    id twice (the second gets a ``#2`` suffix).  Rows that cannot be
    understood (no subject or clip, non-numeric frames, onset after offset,
    unknown type, unknown participant or video code) raise
    :class:`~mexkit.errors.DatasetError` naming the file, the row and the
    value: a sheet that says something else than expected is better fixed
    than guessed around.

References
----------
CASME: Yan et al., FG 2013.  CASME II: Yan et al., PLoS ONE 2014.  SMIC: Li
et al., FG 2013.  SAMM: Davison et al., IEEE TAC 2018.  CAS(ME)^2: Qu et al.,
IEEE TAC 2018.  SAMM Long Videos: Yap et al., FG 2020.  MEGC 2019 composite:
See et al., FG 2019.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import check_option, check_range
from ..errors import DatasetError, ParameterError
from .sheets import Row, Table, cell_text, normalize_column, read_table, read_workbook
from .sheets import find_header as _find_header
from .video import VIDEO_EXTENSIONS, natural_key, open_clip

__all__ = [
    "Sample",
    "DATASETS",
    "dataset_names",
    "load_dataset",
    "detect_dataset",
    "group_by_video",
    "summarize",
    "format_summary",
    "write_generic_csv",
]

logger = logging.getLogger("mexkit")

_MISSING = {"", "/", "\\", "-", "--", "?", "n/a", "na", "nan", "none", "null"}


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
class _Sheet:
    """Messages for one table: warnings and errors naming file and row."""

    def __init__(self, name: str, table: Table | None = None, path: Path | None = None,
                 sheet: str = "") -> None:
        self.dataset = name
        self.table = table
        self.path = table.path if table is not None else Path(path or "")
        self.sheet = table.sheet if table is not None else sheet

    def where(self, row: int) -> str:
        sheet = f", sheet {self.sheet!r}" if self.sheet else ""
        return f"{self.path.name}{sheet}, row {row}"

    def warn(self, row: int, message: str) -> None:
        logger.warning("%s: %s: %s", self.dataset, self.where(row), message)

    def error(self, row: int, message: str) -> DatasetError:
        sheet = f", sheet {self.sheet!r}" if self.sheet else ""
        return DatasetError(f"{self.dataset}: {self.path}{sheet}, row {row}: {message}")


def _get(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if k in record:
            return record[k]
    return None


def _text(value: Any) -> str:
    return re.sub(r"\s+", " ", cell_text(value))


def _number(value: Any, field: str, sh: _Sheet, row: int) -> int | None:
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
        if text.lower() in _MISSING:
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


def _fps(value: Any, sh: _Sheet, row: int) -> float:
    text = cell_text(value)
    try:
        fps = float(text)
    except ValueError:
        raise sh.error(row, f"fps {text!r} is not a number") from None
    if not (np.isfinite(fps) and fps > 0):
        raise sh.error(row, f"fps must be positive, but got {text!r}")
    return fps


def _subject_rule(pattern: str, fmt: Callable[[int], str]
                  ) -> Callable[[Any, _Sheet, int], str]:
    """Subject normaliser: text matching ``pattern`` becomes ``fmt(number)``.

    Other non-empty text is kept as it is; an empty cell is an error.
    """
    regex = re.compile(pattern)

    def subject(value: Any, sh: _Sheet, row: int) -> str:
        text = _text(value)
        m = regex.fullmatch(text)
        if m:
            return fmt(int(m.group(1)))
        if not text:
            raise sh.error(row, "no subject")
        return text

    return subject


# "1", "01", "sub01", "Subject 1" -> "sub01" (CASME, CASME II)
_subject_casme = _subject_rule(r"(?i)(?:sub(?:ject)?)?\s*0*(\d+)", lambda n: f"sub{n:02d}")
# "6", "006" -> "006" (SAMM, SAMM-LV)
_subject_samm = _subject_rule(r"(\d+)", lambda n: f"{n:03d}")
# "1", "s01", "S1" -> "s1" (SMIC)
_subject_smic = _subject_rule(r"(?i)s?\s*0*(\d+)", lambda n: f"s{n}")


def _smic_clip(name: str) -> str:
    """``s01_ne_01`` -> ``s1_ne_01`` (SMIC names its folders without padding)."""
    return re.sub(r"(?i)^s0*(\d+)", lambda m: f"s{int(m.group(1))}", name)


_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


def _objective(value: Any, sh: _Sheet, row: int) -> str | None:
    text = _text(value).upper()
    if text in ("", "-", "/", "N/A", "NA"):
        return None
    if text in _ROMAN:
        return text
    if re.fullmatch(r"[1-7](\.0)?", text):
        return _ROMAN[int(float(text)) - 1]
    raise sh.error(row, f"objective class {text!r} is not one of I-VII or 1-7")


def _kind(value: Any, sh: _Sheet, row: int, default: str = "micro") -> str:
    text = _text(value).lower()
    if not text:
        return default
    if text.startswith("micro"):
        return "micro"
    if text.startswith("macro"):
        return "macro"
    raise sh.error(row, f"expression type {_text(value)!r} is neither micro nor macro")


# ---------------------------------------------------------------------------
# Frame sources and positions
# ---------------------------------------------------------------------------
class _Sources:
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


def _position(numbers: np.ndarray, value: int, field: str, sh: _Sheet, row: int,
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
class _Entry:
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


def _check_frames(e: _Entry, sh: _Sheet) -> bool:
    """Apply the apex/offset quirk rules; False means: skip the row."""
    if e.onset is None:
        raise sh.error(e.row, f"clip {e.clip!r} has no onset frame")
    if e.apex is not None and (e.apex < 0 or (e.apex == 0 and e.onset > 0)):
        sh.warn(e.row, f"apex {e.apex} means unlabelled; apex unknown")
        e.apex = None
    if e.offset is None or (e.offset == 0 and e.onset > 0):
        if e.apex is not None and e.apex > e.onset:
            est = 2 * e.apex - e.onset
            sh.warn(e.row, f"offset {e.offset if e.offset is not None else 'empty'} means "
                           f"unknown; estimated as apex + (apex - onset) = {est}")
            e.offset = est
        else:
            sh.warn(e.row, f"clip {e.clip!r}: offset unknown and no apex to estimate it "
                           "from; row skipped")
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


def _make_sample(e: _Entry, sh: _Sheet, src: _Sources, source: Path | None, *,
                 first_number: int, short: bool) -> Sample:
    """Resolve positions of ``e`` in ``source`` (or from the sheet) into a Sample."""
    assert e.onset is not None and e.offset is not None
    n_frames = None
    if source is not None:
        numbers, n_frames = src.numbering(source, first_number)
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


def _unique(samples: list[Sample]) -> list[Sample]:
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
# Header-based adapters (CASME, CASME II, SAMM, SMIC, SAMM-LV)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Columns:
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


_CASME2_COLS = _Columns(onset=("onsetframe",), apex=("apexframe",), offset=("offsetframe",))
_CASME_COLS = _Columns(onset=("onsetf", "onsetframe"), apex=("apexf1", "apexf", "apexframe"),
                       offset=("offsetf", "offsetframe"))
_SAMM_COLS = _Columns(onset=("onsetframe",), apex=("apexframe",), offset=("offsetframe",),
                      kind=())
_SMIC_COLS = _Columns(onset=("onsetf", "onsetframe"), offset=("offsetf", "offsetframe"),
                      first=("firstf", "firstframe"))
_SAMMLV_COLS = _Columns(onset=("onset",), apex=("apex",), offset=("offset",),
                        kind=("type",), emotion=("estimatedemotion", "emotion"))


def _parse_rows(table: Table, sh: _Sheet, cols: _Columns,
                subject_fn: Callable[[Any, _Sheet, int], str], *,
                clip_fn: Callable[[str], str] = lambda c: c,
                long_video: bool = False, default_kind: str = "micro") -> list[_Entry]:
    entries = []
    for row, rec in table.rows:
        subj_v, clip_v = _get(rec, cols.subject), _get(rec, cols.clip)
        onset_v, offset_v = _get(rec, cols.onset), _get(rec, cols.offset)
        if all(cell_text(v) == "" for v in (clip_v, onset_v, offset_v)):
            # a note or footnote row below the table: nothing to annotate
            if cell_text(subj_v):
                sh.warn(row, f"no clip and no frames ({cell_text(subj_v)!r}); row ignored")
            continue
        if cell_text(clip_v) == "":
            raise sh.error(row, "no clip name (Filename)")
        subject = subject_fn(subj_v, sh, row)
        clip = clip_fn(_text(clip_v))
        apex = None
        if cols.apex:
            apex_v = _get(rec, cols.apex)
            apex = _number(apex_v, "apex", sh, row)
            if apex is None:
                sh.warn(row, f"apex {cell_text(apex_v)!r} means unlabelled; apex unknown")
        e = _Entry(row=row, subject=subject, clip=clip,
                   onset=_number(onset_v, "onset", sh, row), apex=apex,
                   offset=_number(offset_v, "offset", sh, row),
                   aus=_text(_get(rec, cols.aus)),
                   emotion=_text(_get(rec, cols.emotion)).lower(),
                   objective_class=_objective(_get(rec, cols.objective), sh, row),
                   kind=_kind(_get(rec, cols.kind), sh, row, default_kind)
                   if cols.kind else default_kind)
        if cols.first:
            e.base = _number(_get(rec, cols.first), "first frame", sh, row)
        if long_video:
            parts = clip.split("_")
            e.video = "_".join(parts[:2]) if len(parts) >= 3 else clip
        if _check_frames(e, sh):
            entries.append(e)
    return entries


def _resolve(entries: list[_Entry], sh: _Sheet, src: _Sources,
             candidates: Callable[[_Entry], list[Path]], *, first_number: int,
             short: bool) -> list[Sample]:
    samples = []
    for e in entries:
        source = src.locate(candidates(e))
        if source is None:
            src.missing.append(f"{e.subject}/{e.video if not short else e.clip}")
        samples.append(_make_sample(e, sh, src, source, first_number=first_number,
                                    short=short))
    # One missing long video is reported once, not once per interval.
    src.missing = sorted(set(src.missing), key=natural_key)
    src.report()
    return _unique(samples)


def _load_casme2(path: Path, root: Path, fps: float) -> list[Sample]:
    table = read_table(path, _CASME2_COLS.required(), expected="CASME II coding sheet")
    sh = _Sheet("casme2", table)
    entries = _parse_rows(table, sh, _CASME2_COLS, _subject_casme)
    src = _Sources("casme2", root, fps)
    subdirs = ("", "CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped", "CASME2")

    def candidates(e: _Entry) -> list[Path]:
        digits = e.subject[3:] if e.subject.startswith("sub") else e.subject
        subs = (e.subject, digits, str(int(digits)) if digits.isdigit() else digits)
        return [root / d / s / e.clip for d in subdirs for s in dict.fromkeys(subs)]

    return _resolve(entries, sh, src, candidates, first_number=0, short=True)


def _load_casme(path: Path, root: Path, fps: float) -> list[Sample]:
    table = read_table(path, _CASME_COLS.required(), expected="CASME coding sheet")
    sh = _Sheet("casme", table)
    entries = _parse_rows(table, sh, _CASME_COLS, _subject_casme)
    src = _Sources("casme", root, fps)
    subdirs = ("", "CASME_raw_selected", "CASME_raw", "Cropped", "CASME")

    def candidates(e: _Entry) -> list[Path]:
        return [root / d / e.subject / e.clip for d in subdirs]

    return _resolve(entries, sh, src, candidates, first_number=0, short=True)


def _load_samm(path: Path, root: Path, fps: float) -> list[Sample]:
    table = read_table(path, _SAMM_COLS.required(), expected="SAMM coding sheet")
    sh = _Sheet("samm", table)
    entries = _parse_rows(table, sh, _SAMM_COLS, _subject_samm)
    src = _Sources("samm", root, fps)

    def candidates(e: _Entry) -> list[Path]:
        return [root / d / e.subject / e.clip for d in ("", "SAMM")] + [root / e.clip]

    return _resolve(entries, sh, src, candidates, first_number=0, short=True)


_SMIC_EMOTION_DIRS = {"negative": "negative", "ne": "negative", "positive": "positive",
                      "po": "positive", "surprise": "surprise", "sur": "surprise"}


def _load_smic(path: Path, root: Path, name: str, fps: float) -> list[Sample]:
    table = read_table(path, _SMIC_COLS.required(), expected="SMIC coding sheet")
    sh = _Sheet(name, table)
    entries = _parse_rows(table, sh, _SMIC_COLS, _subject_smic, clip_fn=_smic_clip)
    src = _Sources(name, root, fps)
    modality = name.split("-")[1].upper()

    def candidates(e: _Entry) -> list[Path]:
        num = e.subject[1:] if e.subject[:1] == "s" and e.subject[1:].isdigit() else None
        subs = [e.subject] + ([f"s{int(num):02d}"] if num is not None else [])
        emo = _SMIC_EMOTION_DIRS.get(e.emotion, e.emotion)
        code = e.clip.split("_")[1] if e.clip.count("_") >= 2 else ""
        emo = emo or _SMIC_EMOTION_DIRS.get(code.lower(), "")
        clips = list(dict.fromkeys([e.clip, re.sub(r"^s(\d+)", lambda m: f"s{int(m.group(1)):02d}",
                                                   e.clip)]))
        out = []
        for base in (root / modality, root):
            for s in subs:
                for c in clips:
                    out += [base / s / "micro" / emo / c, base / s / c]
        out += [root / f"{modality}_long" / f"SMIC-{modality}-E" / s / c
                for s in subs for c in clips]
        out += [root / c for c in clips]
        return out

    return _resolve(entries, sh, src, candidates, first_number=0, short=True)


def _load_samm_lv(path: Path, root: Path, fps: float) -> list[Sample]:
    table = read_table(path, _SAMMLV_COLS.required() + [("type",)],
                       expected="SAMM Long Videos coding sheet")
    sh = _Sheet("samm-lv", table)
    entries = _parse_rows(table, sh, _SAMMLV_COLS, _subject_samm, long_video=True)
    src = _Sources("samm-lv", root, fps)

    def candidates(e: _Entry) -> list[Path]:
        out = []
        for base in (root, root / "SAMM_longvideos", root / "rawpic", root / e.subject):
            out.append(base / e.video)
            out += [base / (e.video + ext) for ext in (".mp4", ".avi", ".mov")]
        return out

    return _resolve(entries, sh, src, candidates, first_number=1, short=False)


# ---------------------------------------------------------------------------
# CAS(ME)^2: no header, several sheets
# ---------------------------------------------------------------------------
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


def _casme_sq_subjects(rows: list[Row], sh: _Sheet) -> dict[int, tuple[int, str]]:
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


def _casme_sq_videos(rows: list[Row], sh: _Sheet) -> dict[str, str]:
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


def _load_casme_sq(path: Path, root: Path, fps: float) -> list[Sample]:
    book = read_workbook(path)
    main_name, main = _pick_sheet(book, r"code", 0, path, "coding")
    r1_name, r1 = _pick_sheet(book, r"namingrule1", 1, path, "'naming rule1'")
    r2_name, r2 = _pick_sheet(book, r"namingrule2", 2, path, "'naming rule2'")
    sh = _Sheet("casme-sq", path=path, sheet=main_name)
    subjects = _casme_sq_subjects(r1, _Sheet("casme-sq", path=path, sheet=r1_name))
    videos = _casme_sq_videos(r2, _Sheet("casme-sq", path=path, sheet=r2_name))
    logger.info("casme-sq: %s has no header; columns read as participant, name, onset, "
                "apex, offset, AUs, emotion, type, self-report", path.name)
    entries: list[tuple[_Entry, int, str]] = []
    for row in main:
        if row.is_blank():
            continue
        cells = list(row.cells) + [None] * 9
        first, onset_text = cell_text(cells[0]), cell_text(cells[2])
        if not re.fullmatch(r"\d+(\.0)?", first) and not re.fullmatch(r"-?\d+(\.\d+)?",
                                                                        onset_text):
            sh.warn(row.number, f"not a coding row (starts {first!r}); taken as a header "
                                "and skipped")
            continue
        if not first:
            raise sh.error(row.number, "no participant number")
        try:
            participant = int(float(first))
        except ValueError:
            raise sh.error(row.number, f"participant {first!r} is not a number") from None
        if participant not in subjects:
            raise sh.error(row.number, f"participant {participant} is not in sheet "
                                       f"{r1_name!r}")
        number, folder = subjects[participant]
        clip = _text(cells[1])
        if not clip:
            raise sh.error(row.number, "no expression name (column B)")
        video = clip.split("_")[0].lower()
        if video not in videos:
            raise sh.error(row.number, f"video {video!r} (from {clip!r}) is not in sheet "
                                       f"{r2_name!r}")
        e = _Entry(row=row.number, subject=folder, clip=clip,
                   onset=_number(cells[2], "onset", sh, row.number),
                   apex=_number(cells[3], "apex", sh, row.number),
                   offset=_number(cells[4], "offset", sh, row.number),
                   aus=_text(cells[5]), emotion=_text(cells[6]).lower(),
                   kind=_kind(cells[7], sh, row.number), video=video)
        if _check_frames(e, sh):
            entries.append((e, number, videos[video]))
    src = _Sources("casme-sq", root, fps)
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
        samples.append(_make_sample(e, sh, src, source, first_number=1, short=False))
    src.missing = sorted(set(src.missing), key=natural_key)
    src.report()
    return _unique(samples)


# ---------------------------------------------------------------------------
# Generic CSV
# ---------------------------------------------------------------------------
GENERIC_REQUIRED = ("subject", "clip", "path", "fps", "onset", "apex", "offset", "label")
GENERIC_OPTIONAL = ("dataset", "emotion", "aus", "video", "kind")


def _load_generic(path: Path, root: Path) -> list[Sample]:
    table = read_table(path, GENERIC_REQUIRED, expected="generic dataset CSV")
    sh = _Sheet("generic", table)
    base = path.parent
    caches: dict[tuple[str, float], _Sources] = {}
    samples = []
    for row, rec in table.rows:
        subject, clip = _text(rec.get("subject")), _text(rec.get("clip"))
        if not subject:
            raise sh.error(row, "no subject")
        if not clip:
            raise sh.error(row, "no clip")
        rel = _text(rec.get("path"))
        if not rel:
            raise sh.error(row, f"clip {clip!r} has no path")
        fps = _fps(rec.get("fps"), sh, row)
        dataset = _text(rec.get("dataset")) or "generic"
        onset = _number(rec.get("onset"), "onset", sh, row)
        offset = _number(rec.get("offset"), "offset", sh, row)
        apex = _number(rec.get("apex"), "apex", sh, row)
        if onset is None or offset is None:
            raise sh.error(row, f"clip {clip!r} needs onset and offset")
        if onset < 0 or offset < onset:
            raise sh.error(row, f"clip {clip!r}: need 0 <= onset <= offset, but got onset "
                                f"{onset}, offset {offset}")
        if apex is not None and not onset <= apex <= offset:
            raise sh.error(row, f"clip {clip!r}: apex {apex} lies outside onset..offset "
                                f"{onset}..{offset}")
        label = _text(rec.get("label")) or None
        emotion = (_text(rec.get("emotion")) or (label or "")).lower()
        source = Path(rel) if Path(rel).is_absolute() else base / rel
        n_frames = None
        if source.exists():
            src = caches.setdefault((dataset, fps), _Sources(dataset, root, fps))
            _, n_frames = src.numbering(source, 0)
            if offset >= n_frames:
                raise sh.error(row, f"clip {clip!r}: offset {offset} but {source} has "
                                    f"{n_frames} frames (positions 0..{n_frames - 1})")
        else:
            sh.warn(row, f"path {rel!r} does not exist (relative to {base})")
        is_video_file = source.suffix.lower() in VIDEO_EXTENSIONS
        video = _text(rec.get("video")) or (source.stem if is_video_file else source.name)
        samples.append(Sample(
            sample_id=f"{dataset}/{subject}/{clip}", dataset=dataset, subject=subject,
            clip=clip, source=str(source), fps=fps, onset=onset, apex=apex, offset=offset,
            onset_frame=onset, apex_frame=apex, offset_frame=offset,
            aus=_text(rec.get("aus")), emotion=emotion, kind=_kind(rec.get("kind"), sh, row),
            video=video, label=label, n_frames=n_frames, origin=sh.where(row)))
    return _unique(samples)


def write_generic_csv(samples: Iterable[Sample], path: str | os.PathLike[str]) -> Path:
    """Write samples as the generic dataset CSV (the exchange contract).

    Columns: ``subject, clip, path, fps, onset, apex, offset, label, dataset,
    emotion, aus, video, kind``; ``path`` relative to the CSV's folder when
    possible; frames as 0-based positions (empty apex/label when unknown).

    Raises
    ------
    DatasetError
        A sample without source or positions cannot be written.
    """
    path = Path(path)
    rows = []
    for s in samples:
        if s.source is None or s.onset is None or s.offset is None:
            raise DatasetError(f"sample {s.sample_id!r} has no source or positions; the "
                               "generic CSV needs both")
        try:
            rel = os.path.relpath(s.source, path.parent)
        except ValueError:  # another drive on Windows: keep it absolute
            rel = os.path.abspath(s.source)
        rows.append([s.subject, s.clip, Path(rel).as_posix(), f"{s.fps:g}", s.onset,
                     "" if s.apex is None else s.apex, s.offset, s.label or "", s.dataset,
                     s.emotion, s.aus, s.video, s.kind])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(GENERIC_REQUIRED) + list(GENERIC_OPTIONAL))
        w.writerows(rows)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------
# MEGC 2019 composite list
# ---------------------------------------------------------------------------
_MEGC_COLS = (("dataset", "database", "db"), ("subject", "sub"),
              ("filename", "filenameo", "clip", "sample"),
              ("label", "emotion", "class", "category"))
_MEGC_DATASETS = {"casme2": "casme2", "casmeii": "casme2", "casme2raw": "casme2",
                  "samm": "samm", "smic": "smic-hs", "smichs": "smic-hs", "smice": "smic-hs"}
_MEGC_LABELS = {"0": "negative", "1": "positive", "2": "surprise", "negative": "negative",
                "positive": "positive", "surprise": "surprise", "ne": "negative",
                "po": "positive", "sur": "surprise"}
_MEGC_ROOTS = {"casme2": ("casme2", "CASME2", "CASME II", "CASME_II"),
               "samm": ("samm", "SAMM"), "smic-hs": ("smic", "SMIC", "smic-hs", "SMIC-HS")}


def _megc_root(root: Path, dataset: str) -> Path:
    for d in _MEGC_ROOTS[dataset]:
        if (root / d).is_dir():
            return root / d
    return root


def _load_megc2019(path: Path, root: Path,
                   sheets: Mapping[str, str | os.PathLike[str]] | None) -> list[Sample]:
    table = read_table(path, _MEGC_COLS, expected="MEGC 2019 composite list")
    sh = _Sheet("megc2019", table)
    by_key: dict[tuple[str, str, str], Sample] = {}
    for name, sheet in (sheets or {}).items():
        ds = _MEGC_DATASETS.get(normalize_column(name), name)
        check_option("sheets key", ds, ("casme2", "samm", "smic-hs"))
        for s in load_dataset(ds, sheet, root=_megc_root(root, ds)):
            by_key[(ds, s.subject, s.clip.lower())] = s
    subject_fns = {"casme2": _subject_casme, "samm": _subject_samm, "smic-hs": _subject_smic}
    samples, unknown = [], []
    for row, rec in table.rows:
        ds_text = normalize_column(_get(rec, _MEGC_COLS[0]))
        ds = _MEGC_DATASETS.get(ds_text)
        if ds is None:
            raise sh.error(row, f"dataset {_text(_get(rec, _MEGC_COLS[0]))!r} is not one of "
                                "casme2, samm, smic")
        subject = subject_fns[ds](_get(rec, _MEGC_COLS[1]), sh, row)
        clip = _text(_get(rec, _MEGC_COLS[2]))
        if not clip:
            raise sh.error(row, "no clip name")
        if ds == "smic-hs":
            clip = _smic_clip(clip)
        raw_label = cell_text(_get(rec, _MEGC_COLS[3])).lower()
        label = _MEGC_LABELS.get(raw_label)
        if label is None:
            raise sh.error(row, f"label {raw_label!r} is not negative/positive/surprise or "
                                "0/1/2")
        if sheets:
            found = by_key.get((ds, subject, clip.lower()))
            if found is None:
                raise sh.error(row, f"{ds} clip {subject}/{clip} is not in the {ds} sheet")
            samples.append(dataclasses.replace(found, label=label))
            continue
        fps = DATASETS[ds]["fps"]
        droot = _megc_root(root, ds)
        source = _locate_short(ds, droot, subject, clip, label)
        if source is None:
            unknown.append(f"{ds}/{subject}/{clip}")
            samples.append(Sample(
                sample_id=f"{ds}/{subject}/{clip}", dataset=ds, subject=subject, clip=clip,
                source=None, fps=fps, onset=None, apex=None, offset=None, onset_frame=None,
                apex_frame=None, offset_frame=None, emotion=label, video=clip, label=label,
                origin=sh.where(row)))
            continue
        numbers, n = _Sources(ds, droot, fps).numbering(source, 0)
        samples.append(Sample(
            sample_id=f"{ds}/{subject}/{clip}", dataset=ds, subject=subject, clip=clip,
            source=str(source), fps=fps, onset=0, apex=None, offset=n - 1,
            onset_frame=int(numbers[0]), apex_frame=None, offset_frame=int(numbers[-1]),
            emotion=label, video=clip, label=label, n_frames=n, origin=sh.where(row)))
    if unknown:
        logger.warning("megc2019: %d clip(s) have no frames found under %s and no sheet was "
                       "given (%s%s); their onset/offset are None", len(unknown), root,
                       ", ".join(unknown[:3]), ", ..." if len(unknown) > 3 else "")
    elif not sheets:
        logger.info("megc2019: onset/offset are each clip folder's first/last frame; apex "
                    "unknown (pass sheets= for the annotated frames)")
    return _unique(samples)


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


# ---------------------------------------------------------------------------
# Registry, detection, entry point
# ---------------------------------------------------------------------------
DATASETS: dict[str, dict[str, Any]] = {
    "casme": {"fps": 60.0, "title": "CASME", "long": False},
    "casme2": {"fps": 200.0, "title": "CASME II", "long": False},
    "smic-hs": {"fps": 100.0, "title": "SMIC-E HS", "long": False},
    "smic-vis": {"fps": 25.0, "title": "SMIC-E VIS", "long": False},
    "smic-nir": {"fps": 25.0, "title": "SMIC-E NIR", "long": False},
    "samm": {"fps": 200.0, "title": "SAMM", "long": False},
    "casme-sq": {"fps": 30.0, "title": "CAS(ME)^2", "long": True},
    "samm-lv": {"fps": 200.0, "title": "SAMM Long Videos", "long": True},
    "megc2019": {"fps": None, "title": "MEGC 2019 3-class composite", "long": False},
    "generic": {"fps": None, "title": "generic dataset CSV", "long": False},
}


def dataset_names() -> list[str]:
    """The names :func:`load_dataset` accepts."""
    return list(DATASETS)


# (name(s), required column groups, forbidden columns)
_SIGNATURES: list[tuple[tuple[str, ...], list[tuple[str, ...]], tuple[str, ...]]] = [
    (("generic",), [(c,) for c in GENERIC_REQUIRED], ()),
    (("casme2",), _CASME2_COLS.required(), ("inducementcode",)),
    (("samm",), _SAMM_COLS.required() + [("inducementcode",)], ()),
    (("samm-lv",), _SAMMLV_COLS.required() + [("type",)], ("onsetframe",)),
    (("casme",), [("subject",), ("filename",), ("onsetf",), ("apexf1", "apexf"),
                  ("offsetf",)], ("inducementcode",)),
    (("smic-hs", "smic-vis", "smic-nir"), _SMIC_COLS.required(),
     ("apexf1", "apexf", "apexframe")),
    (("megc2019",), list(_MEGC_COLS), ("onset", "onsetf", "onsetframe")),
]


def _looks_like_casme_sq(book: Mapping[str, list[Row]]) -> bool:
    if any("namingrule" in normalize_column(n) for n in book):
        return True
    rows = next(iter(book.values()), [])
    hits = 0
    for row in rows[:20]:
        cells = list(row.cells) + [None] * 8
        if cell_text(cells[7]).lower() in ("micro-expression", "macro-expression"):
            hits += 1
    return hits >= 1 and len(book) >= 3


def _detect(book: Mapping[str, list[Row]], path: Path) -> list[str]:
    found: list[str] = []
    if _looks_like_casme_sq(book):
        found.append("casme-sq")
    for names, required, forbidden in _SIGNATURES:
        for rows in book.values():
            idx = _find_header(rows, required)
            if idx is None:
                continue
            keys = {normalize_column(c) for c in rows[idx].cells}
            if keys & set(forbidden):
                continue
            if len(names) > 1:  # SMIC: the file name may tell the modality
                tokens = re.split(r"[^a-z]+", path.stem.lower())
                hinted = [n for n in names if n.split("-")[1] in tokens]
                found.extend(hinted if len(hinted) == 1 else names)
            else:
                found.extend(names)
            break
    return list(dict.fromkeys(found))


def detect_dataset(annotations: str | os.PathLike[str]) -> str:
    """Tell which dataset an annotation sheet belongs to.

    Detection uses the header (or, for CAS(ME)^2, the sheet names and the
    ``micro-expression``/``macro-expression`` column) and, for SMIC, whose
    three modalities share one format, a ``HS``/``VIS``/``NIR`` token in the
    file name.

    Returns
    -------
    str
        A name from :func:`dataset_names`.

    Raises
    ------
    DatasetError
        No dataset fits, or several do (the message lists them).
    """
    path = Path(annotations)
    found = _detect(read_workbook(path), path)
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(f"cannot tell which dataset {str(path)!r} belongs to: no known "
                           "header or sheet layout; name it (one of "
                           f"{', '.join(dataset_names())})")
    raise DatasetError(f"{str(path)!r} fits several datasets: {', '.join(found)}; name the "
                       "one you mean")


def load_dataset(name: str | None, annotations: str | os.PathLike[str], *,
                 root: str | os.PathLike[str] | None = None, fps: float | None = None,
                 sheets: Mapping[str, str | os.PathLike[str]] | None = None) -> list[Sample]:
    """Read a dataset's annotation sheet into a list of :class:`Sample`.

    Parameters
    ----------
    name : str or None
        One of :func:`dataset_names`, or ``None``/``"auto"`` to
        :func:`detect_dataset`.
    annotations : str or path-like
        The annotation sheet (xlsx, xls or csv) as distributed.
    root : str or path-like, optional
        Folder holding the clips in the dataset's layout (see the module
        notes); default: the sheet's folder.  Clips not found there keep
        ``source=None`` and positions counted from the sheet (one warning).
        Not used by ``generic``, whose paths are relative to the CSV.
    fps : float, optional
        Frame rate of the clips when it differs from the dataset's published
        one (re-encoded or synthetic copies); not for ``generic`` (its CSV
        has an ``fps`` column) or ``megc2019``.
    sheets : mapping, optional
        ``megc2019`` only: the original sheets of its parts, e.g.
        ``{"casme2": "CASME2-coding.xlsx", "samm": ..., "smic-hs": ...}``, to
        take onset/apex/offset and AUs from.

    Returns
    -------
    list of Sample
        In sheet order; sample ids unique.

    Raises
    ------
    DatasetError
        Unknown name, unreadable sheet, rows that cannot be understood.
    MediaError
        A clip folder that exists but holds no images or mis-numbered ones.
    """
    path = Path(annotations)
    if name in (None, "auto"):
        name = detect_dataset(path)
        logger.info("%s: detected dataset %r", path.name, name)
    try:
        check_option("name", name, dataset_names())
    except Exception as exc:
        raise DatasetError(str(exc)) from None
    if sheets is not None and name != "megc2019":
        raise DatasetError(f"the 'sheets' argument is for 'megc2019', not {name!r}")
    if fps is not None:
        if name in ("generic", "megc2019"):
            raise ParameterError(f"the 'fps' argument does not apply to {name!r}")
        check_range("fps", float(fps), 0.0, low_open=True)
    rate = float(fps) if fps is not None else DATASETS[name]["fps"]
    if name == "generic" and root is not None:
        logger.warning("generic: paths are relative to the CSV's folder (%s); root %s is "
                       "not used", path.parent, root)
        root = None
    base = Path(root) if root is not None else path.parent
    if root is not None and not base.is_dir():
        raise DatasetError(f"{name}: root folder {str(base)!r} does not exist")
    if name == "casme":
        return _load_casme(path, base, rate)
    if name == "casme2":
        return _load_casme2(path, base, rate)
    if name in ("smic-hs", "smic-vis", "smic-nir"):
        return _load_smic(path, base, name, rate)
    if name == "samm":
        return _load_samm(path, base, rate)
    if name == "samm-lv":
        return _load_samm_lv(path, base, rate)
    if name == "casme-sq":
        return _load_casme_sq(path, base, rate)
    if name == "megc2019":
        return _load_megc2019(path, base, sheets)
    return _load_generic(path, base)


# ---------------------------------------------------------------------------
# Summary for `mexkit samples`
# ---------------------------------------------------------------------------
def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts per dataset, subject, kind, emotion and label (JSON-ready).

    Returns
    -------
    dict
        ``n_samples``, ``n_subjects``, ``n_videos``, ``n_without_source``,
        ``datasets`` (per dataset: samples, subjects, videos, micro, macro,
        without_source, fps), ``subjects`` (dataset -> subject -> count),
        ``emotions`` and ``labels`` (dataset -> value -> count; ``""`` and
        ``None`` shown as ``"(none)"``).
    """
    datasets: dict[str, dict[str, Any]] = {}
    subjects: dict[str, Counter[str]] = defaultdict(Counter)
    emotions: dict[str, Counter[str]] = defaultdict(Counter)
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    videos: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        d = datasets.setdefault(s.dataset, {"samples": 0, "micro": 0, "macro": 0,
                                            "without_source": 0, "fps": set()})
        d["samples"] += 1
        d[s.kind if s.kind in ("micro", "macro") else "micro"] += 1
        d["without_source"] += s.source is None
        d["fps"].add(s.fps)
        subjects[s.dataset][s.subject] += 1
        emotions[s.dataset][s.emotion or "(none)"] += 1
        labels[s.dataset][s.label or "(none)"] += 1
        videos[s.dataset].add(s.video_id)
    for ds, d in datasets.items():
        d["subjects"] = len(subjects[ds])
        d["videos"] = len(videos[ds])
        d["fps"] = sorted(d["fps"])

    def plain(c: Mapping[str, Counter[str]], natural: bool = False) -> dict[str, dict[str, int]]:
        key = (lambda kv: natural_key(kv[0])) if natural else (lambda kv: (-kv[1], kv[0]))
        return {ds: dict(sorted(cnt.items(), key=key)) for ds, cnt in c.items()}

    return {
        "n_samples": len(samples),
        "n_subjects": sum(len(v) for v in subjects.values()),
        "n_videos": sum(len(v) for v in videos.values()),
        "n_without_source": sum(d["without_source"] for d in datasets.values()),
        "datasets": datasets,
        "subjects": plain(subjects, natural=True),
        "emotions": plain(emotions),
        "labels": plain(labels),
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for k, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _crosstab(title: str, counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    names = list(counts)
    values = list(dict.fromkeys(v for c in counts.values() for v in c))
    rows = [[v] + [counts[d].get(v, 0) for d in names] + [sum(counts[d].get(v, 0)
                                                             for d in names)]
            for v in values]
    return _table([title] + names + ["total"], rows)


def format_summary(summary: Mapping[str, Any]) -> str:
    """A readable text report of :func:`summarize`'s result (for ``mexkit samples``)."""
    ds = summary["datasets"]
    lines = [f"{summary['n_samples']} samples, {summary['n_subjects']} subjects, "
             f"{summary['n_videos']} videos in {len(ds)} dataset(s)"]
    if summary["n_without_source"]:
        lines.append(f"{summary['n_without_source']} sample(s) have no frames on disk "
                     "(source not found)")
    lines.append("")
    rows = [[name, d["samples"], d["subjects"], d["videos"], d["micro"], d["macro"],
             d["without_source"], "/".join(f"{f:g}" for f in d["fps"] if f is not None) or "-"]
            for name, d in ds.items()]
    lines += _table(["dataset", "samples", "subjects", "videos", "micro", "macro",
                     "no source", "fps"], rows)
    lines.append("")
    lines += _crosstab("emotion", summary["emotions"])
    if any(set(c) != {"(none)"} for c in summary["labels"].values()):
        lines.append("")
        lines += _crosstab("label", summary["labels"])
    lines.append("")
    for name, subj in summary["subjects"].items():
        text = ", ".join(f"{s} {n}" for s, n in subj.items())
        lines.append(f"subjects ({name}, samples each): {text}")
    return "\n".join(lines)
