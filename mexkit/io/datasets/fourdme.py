"""4DME: spontaneous 4D micro-expressions with 2D grey, 2D colour, depth and 4D meshes.

The label sheet is one table with a header: subject, clip name, onset, apex
and offset frames of the 2D grey video (60 fps), AUs and emotion labels
(positive, negative, surprise, repression, others; a sample may carry two,
written ``Negative+Surprise``, which is kept as written).  Its columns are
matched by their names (``Subject``/``Participant``, ``Filename``/``Clip``/
``Video``, ``Onset``/``OnsetFrame``, ...); the sheet is recognised by
``4DME`` in its file name.  Frames: ``root/<subject>/<clip>/`` (also under
``2D_Grey/``, ``grey/``); only the 2D frames are read (4D meshes and depth
are another modality).

References
----------
Li, X. et al. "4DME: a spontaneous 4D micro-expression dataset with
multimodalities", IEEE TAC 14 (2023).
"""
from __future__ import annotations

from pathlib import Path

from .header import Columns, load_header_sheet, named_sheet
from .registry import LoadRequest, register_dataset
from .rows import subject_rule
from .sample import Entry, Sample

FOURDME_COLUMNS = Columns(subject=("subject", "participant", "sub", "subjectid"),
                          clip=("filename", "clip", "video", "sample", "clipname"),
                          onset=("onset", "onsetframe", "onsetf"),
                          apex=("apex", "apexframe", "apexf"),
                          offset=("offset", "offsetframe", "offsetf"),
                          aus=("actionunits", "au", "aus"),
                          emotion=("emotion", "emotions", "estimatedemotion", "label"),
                          kind=("type", "expressiontype"))
# "S1", "s01", "1" -> "S01"
subject_4dme = subject_rule(r"(?i)s?(?:ub(?:ject)?)?\s*0*(\d+)", lambda n: f"S{n:02d}")


@register_dataset(
    "4dme", title="4DME", fps=60.0, long=False, detect=named_sheet("4dme", FOURDME_COLUMNS),
    sheet="a `4DME` label sheet: `Subject, Filename, Onset, Apex, Offset, AU, Emotion` "
          "(names matched loosely; multi-labels kept)",
    layout="`S01/<clip>/*.jpg` (also under `2D_Grey/`)", reference="Li et al., IEEE TAC 2023")
def load_4dme(request: LoadRequest) -> list[Sample]:
    """The 4DME label sheet (2D grey frames)."""
    root = request.root

    def candidates(e: Entry) -> list[Path]:
        return [root / d / s / e.clip for d in ("", "2D_Grey", "grey", "2D")
                for s in dict.fromkeys((e.subject, e.subject.lower()))] + [root / e.clip]

    return load_header_sheet(request, FOURDME_COLUMNS, subject_4dme, candidates,
                             expected="4DME label sheet")
