"""CASME and CASME II: one short clip per row, header-based coding sheets.

CASME II's coding sheet is distributed with and without the ``Estimated
Emotion`` column (and, in later copies, with an unnamed empty column); only
subject, file name and the three frame columns are required.

References
----------
Yan, W.-J. et al. "CASME database: a dataset of spontaneous micro-expressions
collected from neutralized faces", FG 2013.  Yan, W.-J. et al. "CASME II: an
improved spontaneous micro-expression database and the baseline evaluation",
PLoS ONE 9 (2014).
"""
from __future__ import annotations

from pathlib import Path

from .header import Columns, load_header_sheet
from .registry import LoadRequest, register_dataset
from .rows import subject_casme
from .sample import Entry, Sample

CASME2_COLUMNS = Columns(onset=("onsetframe",), apex=("apexframe",), offset=("offsetframe",))
CASME_COLUMNS = Columns(onset=("onsetf", "onsetframe"), apex=("apexf1", "apexf", "apexframe"),
                        offset=("offsetf", "offsetframe"))


@register_dataset(
    "casme", title="CASME", fps=60.0, long=False,
    columns=[("subject",), ("filename",), ("onsetf",), ("apexf1", "apexf"), ("offsetf",)],
    forbidden=("inducementcode",),
    sheet="`Subject, Filename, OnsetF, ApexF1, ApexF2, OffsetF, ..., AU, Emotion`",
    layout="`sub01/EP01_12/*.jpg`", reference="Yan et al., FG 2013")
def load_casme(request: LoadRequest) -> list[Sample]:
    """CASME's coding sheet (the ``Onset``/``Total`` duration columns are not used)."""
    subdirs = ("", "CASME_raw_selected", "CASME_raw", "Cropped", "CASME")
    return load_header_sheet(
        request, CASME_COLUMNS, subject_casme,
        lambda e: [request.root / d / e.subject / e.clip for d in subdirs],
        expected="CASME coding sheet")


@register_dataset(
    "casme2", title="CASME II", fps=200.0, long=False, columns=CASME2_COLUMNS.required(),
    forbidden=("inducementcode",),
    sheet="`Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units[, Estimated "
          "Emotion]`",
    layout="`sub01/EP02_01f/img46.jpg` (also under `CASME2_RAW_selected/`, `Cropped/`)",
    reference="Yan et al., PLoS ONE 2014")
def load_casme2(request: LoadRequest) -> list[Sample]:
    """CASME II's coding sheet, with or without the emotion column."""
    subdirs = ("", "CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped", "CASME2")

    def candidates(e: Entry) -> list[Path]:
        digits = e.subject[3:] if e.subject.startswith("sub") else e.subject
        subs = (e.subject, digits, str(int(digits)) if digits.isdigit() else digits)
        return [request.root / d / s / e.clip for d in subdirs for s in dict.fromkeys(subs)]

    return load_header_sheet(request, CASME2_COLUMNS, subject_casme, candidates,
                             expected="CASME II coding sheet")
