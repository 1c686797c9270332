"""SMIC-E (HS, VIS, NIR): one short clip per row; SMIC has no apex.

The three modalities share one sheet format; detection tells them apart by a
``HS``/``VIS``/``NIR`` token in the file name.

References
----------
Li, X. et al. "A spontaneous micro-expression database: inducement,
collection and baseline", FG 2013.
"""
from __future__ import annotations

import re
from pathlib import Path

from .header import Columns, load_header_sheet
from .registry import LoadRequest, register_dataset
from .rows import smic_clip, subject_smic
from .sample import Entry, Sample

SMIC_COLUMNS = Columns(onset=("onsetf", "onsetframe"), offset=("offsetf", "offsetframe"),
                       first=("firstf", "firstframe"))

EMOTION_FOLDERS = {"negative": "negative", "ne": "negative", "positive": "positive",
                   "po": "positive", "surprise": "surprise", "sur": "surprise"}

_SHEET = "`Subject, Filename, OnsetF, OffsetF, Emotion, FirstF`"
_FORBIDDEN = ("apexf1", "apexf", "apexframe")


def load_smic(request: LoadRequest) -> list[Sample]:
    """A SMIC-E sheet; positions count from ``FirstF`` when the clip is not found."""
    root = request.root
    modality = request.name.split("-")[1].upper()

    def candidates(e: Entry) -> list[Path]:
        num = e.subject[1:] if e.subject[:1] == "s" and e.subject[1:].isdigit() else None
        subs = [e.subject] + ([f"s{int(num):02d}"] if num is not None else [])
        emo = EMOTION_FOLDERS.get(e.emotion, e.emotion)
        code = e.clip.split("_")[1] if e.clip.count("_") >= 2 else ""
        emo = emo or EMOTION_FOLDERS.get(code.lower(), "")
        clips = list(dict.fromkeys([e.clip, re.sub(
            r"^s(\d+)", lambda m: f"s{int(m.group(1)):02d}", e.clip)]))
        out = []
        for base in (root / modality, root):
            for s in subs:
                for c in clips:
                    out += [base / s / "micro" / emo / c, base / s / c]
        out += [root / f"{modality}_long" / f"SMIC-{modality}-E" / s / c
                for s in subs for c in clips]
        out += [root / c for c in clips]
        return out

    return load_header_sheet(request, SMIC_COLUMNS, subject_smic, candidates,
                             expected="SMIC coding sheet", clip_fn=smic_clip)


for _name, _fps, _title in (("smic-hs", 100.0, "SMIC-E HS"), ("smic-vis", 25.0, "SMIC-E VIS"),
                            ("smic-nir", 25.0, "SMIC-E NIR")):
    register_dataset(
        _name, title=_title, fps=_fps, long=False, columns=SMIC_COLUMNS.required(),
        forbidden=_FORBIDDEN, sheet=_SHEET,
        layout=f"`{_name[5:].upper()}/s1/micro/negative/s1_ne_01/*.bmp` (or `s1/s1_ne_01/`)",
        reference="Li et al., FG 2013")(load_smic)
