"""CAS(ME)^3: part A (labelled clips and their long videos) and part C.

Part A's label sheets (``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, sheet
``label``, and the macro-expression sheet
``cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx``) give per row a
subject (``spNO.1``), the recording's name (``Filename``/``seq``, a letter
such as ``a``), onset, apex and offset as JPG indices of the recording's
``color`` frames, the AUs (``4+7`` or ``4,7``), the objective class and the
emotion (happy, disgust, fear, anger, sad, surprise, others).  Part C
(``CAS(ME)3_part_C_ME.xlsx``, mock-crime paradigm) has the same columns.

Frames: the distributed clip folders
``root/Part_A_ME_clip/frame/spNO.1_a_120/<index>.jpg`` (``Part_A_MaE_clip``
for macro-expressions; folder ``<Subject>_<Filename>_<Onset>``), or the whole
recordings ``root/spNO.1/a/color/<index>.jpg`` (also under ``data/part_A/``,
``part_A/data/part_A/``, ``ME_A/``, ``ME_C/``, ``data/part_C/``; a recording
folder without a ``color`` folder is taken as the frames themselves).
``casme3-a`` looks for the clip folders first, the long-video adapters for
the recordings first.  The ``depth`` frames beside the colour ones are not
read: mexkit's stages work on RGB/grey frames only, so the depth modality is
ignored (a note is logged for each sheet read).

``casme3-a`` gives one sample per expression (recognition: crop with
``--unit clip``, the default for it); ``casme3-a-lv`` and ``casme3-c`` give
the same rows as intervals of long videos (spotting).  A macro-expression
sheet is recognised by its file name (``MaE``) or its lower-case ``sub, seq``
columns, and its rows are macro-expressions; ``--sheet macro=FILE`` adds the
part A macro sheet to an ME sheet for spotting.

References
----------
Li, J. et al. "CAS(ME)^3: a third generation facial spontaneous
micro-expression database with depth information and high ecological
validity", IEEE TPAMI 45 (2023).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from ..sheets import Row, Table, find_header, read_table
from .header import Columns, parse_rows, recording_intervals
from .registry import LoadRequest, register_dataset
from .rows import Sheet, subject_rule
from .sample import Entry, Sample
from .sources import Sources, resolve_sources

logger = logging.getLogger("mexkit")

CASME3_COLUMNS = Columns(subject=("subject", "sub"), clip=("filename", "seq"),
                         onset=("onset", "onsetframe"), apex=("apex", "apexframe"),
                         offset=("offset", "offsetframe"),
                         aus=("actionunits", "au", "aus"),
                         emotion=("emotion", "estimatedemotion"),
                         objective=("objectiveclass", "objectiveclasses"))
FPS = 30.0
_LAYOUTS = ("", "data/part_A", "part_A/data/part_A", "ME_A", "data/part_C", "part_C",
            "ME_C", "data")

# "spNO.1", "spno.01", "1" -> "spNO.1"
subject_casme3 = subject_rule(r"(?i)(?:spno\.?\s*)?0*(\d+)", lambda n: f"spNO.{n}")


def _is_macro_sheet(table: Table) -> bool:
    return "mae" in re.split(r"[^a-z]+", table.path.name.lower()) or (
        "seq" in table.keys and "filename" not in table.keys)


def _entries(path: Path, name: str, sh_name: str, *, macro: bool | None = None
             ) -> tuple[Sheet, list[Entry]]:
    table = read_table(path, CASME3_COLUMNS.required(),
                       expected="CAS(ME)^3 label sheet (Subject, Filename, Onset, Apex, "
                                "Offset, ...)")
    sh = Sheet(sh_name, table)
    kind = "macro" if (macro if macro is not None else _is_macro_sheet(table)) else "micro"
    entries = parse_rows(table, sh, CASME3_COLUMNS, subject_casme3, default_kind=kind)
    return sh, recording_intervals(entries)


def _recordings(root: Path, e: Entry) -> list[Path]:
    out = []
    for layout in _LAYOUTS:
        base = root / layout / e.subject / e.video if layout else root / e.subject / e.video
        out += [base / "color", base]
    return out


def _clips(root: Path, e: Entry) -> list[Path]:
    """The distributed clip folders: ``Part_A_ME_clip/frame/spNO.1_a_120/<n>.jpg``."""
    name = f"{e.subject}_{e.video}_{e.onset}"
    part = "MaE" if e.kind == "macro" else "ME"
    out = []
    for base in (root, root / "part_A", root / "data"):
        for top in (base / f"Part_A_{part}_clip", base / f"Part_A_{part}_clip" /
                    f"Part_A_{part}_clip"):
            out.append(top / "frame" / name)
    return out


def _note_depth(name: str, samples: list[Sample]) -> None:
    """One note per sheet read when depth frames lie beside the colour ones (not used)."""
    for s in samples:
        if not s.source:
            continue
        source = Path(s.source)
        depth = (source.parent / "depth" if source.name == "color"
                 else source.parent.parent / "depth" / source.name)
        if depth.is_dir():
            logger.info("%s: depth frames (%s, ...) are not used; mexkit reads the colour "
                        "frames only", name, depth)
            return


def _load(request: LoadRequest, *, short: bool) -> list[Sample]:
    name = request.name
    sh, entries = _entries(request.path, name, name)
    macro = (request.sheets or {}).get("macro")
    samples: list[Sample] = []
    src = Sources(name, request.root, request.fps)
    root = request.root

    def candidates(e: Entry) -> list[Path]:
        # clips first for recognition, whole recordings first for spotting
        return _clips(root, e) + _recordings(root, e) if short else (
            _recordings(root, e) + _clips(root, e))

    if macro is not None:
        msh, mentries = _entries(Path(macro), name, name, macro=True)
        samples += resolve_sources(mentries, msh, src, candidates, first_number=0,
                                   short=False)
    samples = resolve_sources(entries, sh, src, candidates, first_number=0,
                              short=False) + samples
    _note_depth(name, samples)
    return samples


def _casme3_file(path: Path) -> str:
    """``"a"``, ``"c"`` or ``""`` from a CAS(ME)^3 sheet's file name."""
    name = path.name.lower().replace("^", "").replace("(", "").replace(")", "")
    if "casme3" not in name and "cas_me_3" not in name:
        return ""
    m = re.search(r"part[ _-]?([abc])", name)
    return m.group(1) if m else ""


def _detect_a(book: Mapping[str, list[Row]], path: Path) -> bool:
    return _casme3_file(path) == "a" and _has_header(book)


def _detect_c(book: Mapping[str, list[Row]], path: Path) -> bool:
    return _casme3_file(path) == "c" and _has_header(book)


def _has_header(book: Mapping[str, list[Row]]) -> bool:
    return any(find_header(rows, CASME3_COLUMNS.required()) is not None
               for rows in book.values())


_SHEET_A = ("`cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (or the `MaE` sheet): `Subject, "
            "Filename, Onset, Apex, Offset, AU, Objective class, emotion`")
_LAYOUT = ("`Part_A_ME_clip/frame/spNO.1_a_120/<index>.jpg` or `spNO.1/a/color/<index>.jpg` "
           "(depth ignored)")


@register_dataset(
    "casme3-a", title="CAS(ME)^3 part A, one clip per expression", fps=FPS, long=False,
    detect=_detect_a, extra_sheets=("macro",),
    sheet=_SHEET_A, layout=_LAYOUT, reference="Li et al., IEEE TPAMI 2023")
def load_casme3_a(request: LoadRequest) -> list[Sample]:
    """Part A: each expression as a clip of its recording (onset..offset)."""
    return _load(request, short=True)


@register_dataset(
    "casme3-a-lv", title="CAS(ME)^3 part A long videos (spotting)", fps=FPS, long=True,
    extra_sheets=("macro",),
    sheet=_SHEET_A + "; `--sheet macro=MaE-sheet` adds the macro-expressions",
    layout=_LAYOUT, reference="Li et al., IEEE TPAMI 2023")
def load_casme3_a_lv(request: LoadRequest) -> list[Sample]:
    """Part A: the labelled intervals of each recording."""
    return _load(request, short=False)


@register_dataset(
    "casme3-c", title="CAS(ME)^3 part C long videos", fps=FPS, long=True, detect=_detect_c,
    sheet="`CAS(ME)3_part_C_ME.xlsx`: the part A columns", layout=_LAYOUT,
    reference="Li et al., IEEE TPAMI 2023")
def load_casme3_c(request: LoadRequest) -> list[Sample]:
    """Part C: the labelled intervals of each recording."""
    return _load(request, short=False)
