"""DFME: a large dynamic facial micro-expression set in three parts by frame rate.

Each part has its label sheet (one table with a header: subject or
participant, clip name, onset, apex, offset, AUs, emotion among happiness,
anger, contempt, disgust, fear, sadness, surprise), recognised by ``DFME`` in
its file name.  Part A was recorded at 500 fps, part B at 300 fps, part C at
200 fps: the part comes from an ``fps`` or ``part`` column, else from a
``PartA``/``A`` token in the file name, else ``--dataset-fps`` must be given.
Frames: ``root/<clip>/`` or ``root/<subject>/<clip>/`` (also under
``Part_A/`` etc.).

References
----------
Zhao, S. et al. "DFME: a new benchmark for dynamic facial micro-expression
recognition", IEEE TAC (2023).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ...errors import DatasetError
from .header import Columns, load_header_sheet, name_tokens, named_sheet
from .registry import LoadRequest, register_dataset
from .rows import subject_rule
from .sample import Entry, Sample

DFME_COLUMNS = Columns(subject=("subject", "participant", "sub", "subjectid"),
                       clip=("filename", "clip", "sample", "video", "clipname"),
                       onset=("onset", "onsetframe"), apex=("apex", "apexframe"),
                       offset=("offset", "offsetframe"), aus=("aus", "actionunits", "au"),
                       emotion=("emotion", "estimatedemotion", "label"))
PART_FPS = {"a": 500.0, "b": 300.0, "c": 200.0}
subject_dfme = subject_rule(r"(?i)(?:s|sub|subject)?\s*0*(\d+)", lambda n: f"{n:03d}")


def part_of(path: Path) -> str:
    """``"a"``, ``"b"``, ``"c"`` from a file name (``DFME_PartA.xlsx``), else ``""``."""
    m = re.search(r"(?i)part[ _-]?([abc])(?![a-z])", path.name)
    if m:
        return m.group(1).lower()
    tokens = name_tokens(path) & set(PART_FPS)
    return tokens.pop() if len(tokens) == 1 else ""


@register_dataset(
    "dfme", title="DFME", fps=None, long=False, detect=named_sheet("dfme", DFME_COLUMNS),
    sheet="a `DFME` label sheet per part: `Subject, Filename, Onset, Apex, Offset, AU, "
          "Emotion`",
    layout="`<clip>/` or `<subject>/<clip>/` (also under `Part_A/`...)",
    reference="Zhao et al., IEEE TAC 2023")
def load_dfme(request: LoadRequest) -> list[Sample]:
    """A DFME part's sheet; fps 500 / 300 / 200 for parts A / B / C."""
    fps = request.fps
    part = part_of(request.path)
    if fps is None:
        if not part:
            raise DatasetError(f"dfme: {request.path}: cannot tell the part (A 500 fps, B "
                               "300 fps, C 200 fps) from the file name; pass --dataset-fps")
        fps = PART_FPS[part]
    root = request.root

    def candidates(e: Entry) -> list[Path]:
        bases = [root] + [root / f"{p}{part.upper()}" for p in ("Part_", "Part", "part_")
                          if part]
        return [b / s / e.clip for b in bases for s in (e.subject, "")]

    return load_header_sheet(dataclasses.replace(request, fps=fps), DFME_COLUMNS,
                             subject_dfme, candidates, expected="DFME label sheet")
