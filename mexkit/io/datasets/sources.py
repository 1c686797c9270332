"""Where a clip's frames are, and the sheet's frame numbers as positions in them.

:class:`Sources` finds each clip's folder or video and caches its frame
numbering; :func:`resolve_sources` turns parsed rows (:class:`Entry`) into
:class:`Sample` objects whose onset, apex and offset are 0-based positions
in those frames (see :mod:`mexkit.io.datasets` for the rules).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ...errors import MediaError
from ..video import VIDEO_EXTENSIONS, natural_key, open_clip
from .rows import Sheet
from .sample import Entry, Sample, unique_ids

logger = logging.getLogger("mexkit")


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
