"""SAMM and SAMM Long Videos: header below a title block.

SAMM's micro-expression sheet has one short clip per row.  The SAMM Long
Videos sheets (``SAMM_LongVideos_V1_Release.xlsx``, ``V2``, ``V3``) have one
interval per row: ``Filename`` ``006_1_3`` is interval 3 of long video
``006_1`` (frames ``006_1/006_01234.jpg``), ``Type`` is ``Macro`` or
``Micro - 1/2``, frame numbers are 1-based, and a few rows have onset 0,
which there means "from the first frame": such onsets are repaired to frame
1 with a warning.  Apex ``-1`` means unlabelled.

References
----------
Davison, A. K. et al. "SAMM: a spontaneous micro-facial movement dataset",
IEEE TAC 9 (2018).  Yap, C. H. et al. "SAMM Long Videos: a spontaneous facial
micro- and macro-expressions dataset", FG 2020.
"""
from __future__ import annotations

from pathlib import Path

from .header import Columns, load_header_sheet
from .registry import LoadRequest, register_dataset
from .rows import subject_samm
from .sample import Entry, Sample

SAMM_COLUMNS = Columns(onset=("onsetframe",), apex=("apexframe",), offset=("offsetframe",))
SAMMLV_COLUMNS = Columns(onset=("onset", "onsetframe"), apex=("apex", "apexframe"),
                         offset=("offset", "offsetframe"), kind=("type",),
                         emotion=("estimatedemotion", "emotion"))
_EMOTION_COLUMNS = ("estimatedemotion", "objectiveclasses", "objectiveclass")


@register_dataset(
    "samm", title="SAMM", fps=200.0, long=False,
    columns=SAMM_COLUMNS.required() + [("inducementcode",), _EMOTION_COLUMNS],
    sheet="title block, then `Subject, Filename, Inducement Code, Onset Frame, Apex Frame, "
          "Offset Frame, Duration, Type, Action Units, Notes, Estimated Emotion, Objective "
          "Classes`",
    layout="`006/006_1_2/006_05562.jpg`", reference="Davison et al., IEEE TAC 2018")
def load_samm(request: LoadRequest) -> list[Sample]:
    """SAMM's micro-expression coding sheet."""
    root = request.root
    return load_header_sheet(
        request, SAMM_COLUMNS, subject_samm,
        lambda e: [root / d / e.subject / e.clip for d in ("", "SAMM")] + [root / e.clip],
        expected="SAMM coding sheet")


def samm_lv_candidates(root: Path, e: Entry) -> list[Path]:
    """Where a SAMM long video's frames may be (folder or video file)."""
    out = []
    for base in (root, root / "SAMM_longvideos", root / "rawpic", root / e.subject):
        out.append(base / e.video)
        out += [base / (e.video + ext) for ext in (".mp4", ".avi", ".mov")]
    return out


@register_dataset(
    "samm-lv", title="SAMM Long Videos", fps=200.0, long=True,
    columns=SAMMLV_COLUMNS.required() + [("type",)], forbidden=_EMOTION_COLUMNS,
    sheet="`SAMM_LongVideos_V1/V2/V3_Release.xlsx`: title block, then `Subject, Filename, "
          "Inducement Code, Onset, Apex, Offset, Duration, Type, Action Units, Notes`",
    layout="`006_1/006_01234.jpg` (also under `SAMM_longvideos/`)",
    reference="Yap et al., FG 2020")
def load_samm_lv(request: LoadRequest) -> list[Sample]:
    """A SAMM Long Videos sheet (any release): one sample per interval."""
    return load_header_sheet(
        request, SAMMLV_COLUMNS, subject_samm, lambda e: samm_lv_candidates(request.root, e),
        expected="SAMM Long Videos coding sheet", long_video=True, first_number=1,
        short=False, required=SAMMLV_COLUMNS.required() + [("type",)])
