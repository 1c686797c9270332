"""MMEW: micro- and macro-expressions of the same subjects (micro part here).

``MMEW_Micro_Exp.xlsx`` (also exported as CSV) has the columns of CASME II's
sheet (``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame``, AUs,
``Estimated Emotion``), so it is recognised by ``MMEW`` in its file name.
Emotions: happiness, surprise, anger, disgust, fear, sadness, others.
Frames: ``root/Micro_Expression/<emotion>/<Filename>/<n>.jpg`` (also without
the emotion level, or under ``MMEW_Final/``); 90 fps.

References
----------
Ben, X. et al. "Video-based facial micro-expression analysis: a survey of
datasets, features and algorithms", IEEE TPAMI 44 (2022).
"""
from __future__ import annotations

from pathlib import Path

from .header import Columns, load_header_sheet, named_sheet
from .registry import LoadRequest, register_dataset
from .rows import subject_rule
from .sample import Entry, Sample

MMEW_COLUMNS = Columns(onset=("onsetframe", "onset"), apex=("apexframe", "apex"),
                       offset=("offsetframe", "offset"),
                       aus=("aus", "actionunits", "au"))
# "S1", "s01", "1" -> "S01"
subject_mmew = subject_rule(r"(?i)s?\s*0*(\d+)", lambda n: f"S{n:02d}")


@register_dataset(
    "mmew", title="MMEW (micro-expressions)", fps=90.0, long=False,
    detect=named_sheet("mmew", MMEW_COLUMNS),
    sheet="`MMEW_Micro_Exp.xlsx`: `Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, "
          "AUs, Estimated Emotion`",
    layout="`Micro_Expression/happiness/<Filename>/1.jpg`",
    reference="Ben et al., IEEE TPAMI 2022")
def load_mmew(request: LoadRequest) -> list[Sample]:
    """MMEW's micro-expression sheet."""
    root = request.root

    def candidates(e: Entry) -> list[Path]:
        out = []
        for base in (root, root / "MMEW_Final", root / "MMEW"):
            micro = base / "Micro_Expression"
            out += [micro / e.emotion / e.clip, micro / e.clip, base / e.emotion / e.clip,
                    base / e.clip]
            if micro.is_dir() and not e.emotion:
                out += [d / e.clip for d in sorted(micro.iterdir()) if d.is_dir()]
        return out

    return load_header_sheet(request, MMEW_COLUMNS, subject_mmew, candidates,
                             expected="MMEW micro-expression sheet")
