"""What one annotated expression is, as a sheet row and as a resolved sample.

A sheet row and the sample made from it share the fields the sheet gives
(subject, clip, onset, apex, offset, AUs, emotion, ...): they are defined
once, in :class:`Annotation`.  :class:`Entry` is a parsed row, its frames
still the sheet's frame numbers; :class:`Sample` is the sample the
adapters return, its frames 0-based positions in the clip's frames.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("mexkit")


@dataclass(frozen=True, kw_only=True)
class Annotation:
    """The fields of one annotated expression that its sheet row gives.

    Attributes
    ----------
    subject : str
        Normalised subject: ``"sub01"`` (CASME, CASME II), ``"006"`` (SAMM,
        SAMM-LV), ``"s1"`` (SMIC), ``"s15"`` (CAS(ME)^2).
    clip : str
        The sheet's clip / interval name.
    onset, apex, offset : int or None
        Onset, apex and offset frames (their meaning is given by
        :class:`Entry` and :class:`Sample`); apex ``None`` when unknown.
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
    """

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
    label: str | None = None


@dataclass(frozen=True, kw_only=True)
class Entry(Annotation):
    """A parsed sheet row before positions are resolved.

    ``onset``, ``apex`` and ``offset`` are the sheet's frame numbers.  Build
    a corrected copy with :func:`dataclasses.replace`.

    Attributes
    ----------
    row : int
        The row's number in its sheet, for messages.
    base : int or None
        Frame number of position 0 when no source is found (SMIC's ``FirstF``).
    """

    row: int
    base: int | None = None


@dataclass(frozen=True, kw_only=True)
class Sample(Annotation):
    """One annotated expression: a short clip, or an interval of a long video.

    Besides the sheet's fields (:class:`Annotation`; ``onset``, ``apex`` and
    ``offset`` there are 0-based positions in ``source``, see the package
    notes; onset/offset ``None`` only for MEGC 2019 list entries whose
    frames are unknown):

    Attributes
    ----------
    sample_id : str
        Unique id ``"<dataset>/<subject>/<clip>"``, e.g. ``"casme2/sub01/EP02_01f"``.
    dataset : str
        Dataset name (``"casme2"``, ``"samm-lv"``, ...).
    source : str or None
        The video file or image folder holding the frames; ``None`` when it
        was not found (only the sheet was given).
    fps : float
        Frames per second.
    onset_frame, apex_frame, offset_frame : int or None
        The sheet's frame numbers.
    n_frames : int or None
        Frames in ``source`` when it was found.
    origin : str
        ``"file, row N"`` of the annotation, for messages.
    """

    sample_id: str
    dataset: str
    source: str | None
    fps: float
    onset_frame: int | None
    apex_frame: int | None
    offset_frame: int | None
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
