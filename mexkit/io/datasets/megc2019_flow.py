"""The MEGC 2019 composite as its public optical-flow release distributes it.

STSTNet's authors published the three-class composite (SMIC-HS, CASME II,
SAMM: 442 clips of 68 subjects) already reduced to one small image per clip,
and HTNet's public repository ships the same images with its code.  A local
copy of that repository (``REPO``) holds:

``combined_3_class2_for_optical_flow.csv``
    the list: ``dataset, sub, filename_o, label, apex, imagename,
    sub_filename`` (label 0 negative, 1 positive, 2 surprise; ``apex`` and
    ``sub_filename`` empty);
``datasets/STSNet_whole_norm_u_v_os/<sub>_<filename_o> .png``
    per clip a 28x28 RGB image of the onset-apex optical flow: decoded as
    RGB, channel 0 is the horizontal flow u, 1 the vertical flow v, 2 the
    optical strain magnitude, each min-max normalised to 0..255 over the
    image (every image has 0 and 255 in every channel).  The images were
    written from an array ordered (u, v, strain); STSTNet's and HTNet's
    PyTorch code read them with OpenCV, whose BGR order hands the networks
    (strain, v, u).  The file names carry a space before ``.png``;
``datasets/combined_datasets_whole/<imagename>``
    the apex face of each clip, 224x224 RGB JPEG;
``datasets/three_norm_u_v_os/<subject>/{u_train,u_test}/<label>/<name>.png``
    the leave-one-subject-out split: the same flow images (pixel for pixel),
    the test subject's under ``u_test``.

:func:`read_release` reads the list, matches every row with its files
(names with stray spaces are matched with the spaces removed, and counted),
checks the split folders against the list, and warns once per missing or
extra file and per count that differs from the published composite (442
clips, 68 subjects, 250 negative / 109 positive / 83 surprise; SMIC 164,
CASME II 145, SAMM 133).  The registered loader turns the rows into
:class:`~mexkit.io.datasets.Sample` (``source``: the flow image); the
importer reads one sample's arrays for ``mexkit import``.

References
----------
.. [1] S.-T. Liong, Y. S. Gan, J. See, H.-Q. Khor, Y.-C. Huang, "Shallow
   Triple Stream Three-dimensional CNN (STSTNet) for Micro-expression
   Recognition", FG 2019 (the flow images and the LOSO split).
.. [2] Z. Wang, K. Zhang, W. Luo, R. Sankaranarayana, "HTNet for
   micro-expression recognition", Neurocomputing 602 (2024) 128196 (the
   repository that redistributes them with the apex faces).
.. [3] J. See et al., "MEGC 2019 - the second facial micro-expressions grand
   challenge", FG 2019 (the composite).
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DatasetError, MediaError
from ..sheets import Row, cell_text, find_header, normalize_column, read_workbook, table_from_rows
from .registry import Importer, LoadRequest, register_dataset
from .rows import Sheet, clean_text, get_cell
from .sample import Sample

__all__ = ["LIST_NAME", "FLOW_DIR", "APEX_DIR", "SPLIT_DIR", "EXPECTED", "Release",
           "ReleaseEntry", "read_release", "find_release_list", "import_sample"]

logger = logging.getLogger("mexkit")

LIST_NAME = "combined_3_class2_for_optical_flow.csv"
FLOW_DIR = Path("datasets") / "STSNet_whole_norm_u_v_os"
APEX_DIR = Path("datasets") / "combined_datasets_whole"
SPLIT_DIR = Path("datasets") / "three_norm_u_v_os"

#: The published composite (STSTNet Table II; MEGC 2019).
EXPECTED = {"clips": 442, "subjects": 68,
            "labels": {"negative": 250, "positive": 109, "surprise": 83},
            "datasets": {"smic-hs": 164, "casme2": 145, "samm": 133}}

COLUMNS = (("dataset", "database"), ("sub", "subject"), ("filenameo", "filename"),
           ("label",), ("imagename",))
_PARTS = {"casme2": "casme2", "casmeii": "casme2", "samm": "samm", "smic": "smic-hs",
          "smichs": "smic-hs"}
_FPS = {"casme2": 200.0, "samm": 200.0, "smic-hs": 100.0}
_LABELS = {"0": "negative", "1": "positive", "2": "surprise"}
_CODES = {v: k for k, v in _LABELS.items()}


def _key(name: str) -> str:
    """A file name with its whitespace removed (the release has ``'x .png'``)."""
    return re.sub(r"\s+", "", name)


@dataclass(frozen=True)
class ReleaseEntry:
    """One clip of the list, with its files.

    Attributes
    ----------
    row : int
        1-based row of the list.
    dataset, subject, clip, label : str
        As the list gives them (``dataset`` as mexkit names the parts:
        ``smic-hs``, ``casme2``, ``samm``; ``label`` as a name).
    flow_name : str
        The flow image's file name as distributed (spaces included).
    flow : Path or None
        The flow image, ``None`` when it is missing.
    apex : Path or None
        The apex face, ``None`` when it is missing.
    test_fold : str or None
        The subject folder of the split whose ``u_test`` holds the clip.
    """

    row: int
    dataset: str
    subject: str
    clip: str
    label: str
    flow_name: str
    flow: Path | None
    apex: Path | None
    test_fold: str | None

    @property
    def sample_id(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.clip}"


@dataclass
class Release:
    """A local copy of the release, as :func:`read_release` found it.

    Attributes
    ----------
    root : Path
    list_path : Path
    entries : list of ReleaseEntry
        In list order (rows that could not be used are left out, each with a
        warning).
    spaced_names : int
        Flow images whose file name has whitespace in it (matched without).
    missing, extra : list of str
        Files the list names that are absent; files present that no row
        names (relative to ``root``).
    split_problems : list of str
        Disagreements between the split folders and the list.
    count_problems : list of str
        Counts that differ from :data:`EXPECTED`.
    """

    root: Path
    list_path: Path
    entries: list[ReleaseEntry] = field(default_factory=list)
    spaced_names: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    split_problems: list[str] = field(default_factory=list)
    count_problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """Clips, subjects, labels and parts, as :data:`EXPECTED` states them."""
        return {"clips": len(self.entries),
                "subjects": len({(e.dataset, e.subject) for e in self.entries}),
                "labels": dict(Counter(e.label for e in self.entries)),
                "datasets": dict(Counter(e.dataset for e in self.entries))}

    def report(self) -> list[str]:
        """One line per finding (an empty list when the copy is as published)."""
        lines = [f"{self.spaced_names} flow image name(s) have a space before the "
                 "extension (e.g. '006_006_1_2 .png'); matched with the spaces removed"
                 ] if self.spaced_names else []
        lines += [f"missing: {m}" for m in self.missing]
        lines += [f"extra (no row names it): {x}" for x in self.extra]
        return lines + self.split_problems + self.count_problems


def find_release_list(root: str | os.PathLike[str]) -> Path:
    """The list file of a release copy at ``root``.

    Raises
    ------
    DatasetError
        ``root`` holds no ``combined_3_class2_for_optical_flow.csv``.
    """
    path = Path(root) / LIST_NAME
    if not path.is_file():
        raise DatasetError(f"megc2019-flow: {str(Path(root))!r} has no {LIST_NAME} (is it a "
                           "copy of the HTNet repository?)")
    return path


def _is_release_list(book: Mapping[str, list[Row]], path: Path) -> bool:
    # the same list also describes the composite's videos (``megc2019``): it is this
    # release only with the flow images beside it
    if not (path.parent / FLOW_DIR).is_dir():
        return False
    return any(find_header(rows, COLUMNS, max_scan=3) is not None for rows in book.values())


def _files(folder: Path) -> dict[str, str]:
    """Whitespace-free name -> name as distributed, for the files in ``folder``."""
    if not folder.is_dir():
        return {}
    return {_key(p.name): p.name for p in folder.iterdir() if p.is_file()}


def _split_index(split: Path) -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """Flow-name key -> [(subject folder, label folder)] of ``u_test``; subject folders."""
    tests: dict[str, list[tuple[str, str]]] = {}
    subjects: set[str] = set()
    if not split.is_dir():
        return tests, subjects
    for sub in sorted(p for p in split.iterdir() if p.is_dir()):
        subjects.add(sub.name)
        test = sub / "u_test"
        for lab in sorted(p for p in test.iterdir() if p.is_dir()) if test.is_dir() else ():
            for f in lab.iterdir():
                tests.setdefault(_key(f.name), []).append((sub.name, lab.name))
    return tests, subjects


def read_release(root: str | os.PathLike[str], list_path: str | os.PathLike[str] | None = None,
                 *, warn: bool = True) -> Release:
    """Read a local copy of the release and check it against the published composite.

    Parameters
    ----------
    root : path-like
        The repository's root folder.
    list_path : path-like, optional
        The list (default ``root/combined_3_class2_for_optical_flow.csv``).
    warn : bool
        Log a warning per missing or extra file, per split disagreement and
        per count that differs from :data:`EXPECTED`.

    Returns
    -------
    Release

    Raises
    ------
    DatasetError
        No list, or a list without the columns ``dataset, sub, filename_o,
        label, imagename``.
    """
    root = Path(root)
    path = Path(list_path) if list_path is not None else find_release_list(root)
    book = read_workbook(path)
    table = None
    for name, rows in book.items():
        idx = find_header(rows, COLUMNS)
        if idx is not None:
            table = table_from_rows(path, rows, idx, sheet=name)
            break
    if table is None:
        raise DatasetError(f"{str(path)!r} (megc2019-flow list): no header row with the "
                           "columns dataset, sub, filename_o, label, imagename")
    rel = Release(root=root, list_path=path)
    sh = Sheet("megc2019-flow", table)
    flows, apexes = _files(root / FLOW_DIR), _files(root / APEX_DIR)
    tests, split_subjects = _split_index(root / SPLIT_DIR)
    used_flow: set[str] = set()
    used_apex: set[str] = set()
    for row, rec in table.rows:
        with sh.row(row):
            ds = _PARTS.get(normalize_column(get_cell(rec, COLUMNS[0])))
            if ds is None:
                raise sh.error(row, f"dataset {clean_text(get_cell(rec, COLUMNS[0]))!r} is "
                                    "not one of casme2, samm, smic")
            subject = clean_text(get_cell(rec, COLUMNS[1]))
            clip = clean_text(get_cell(rec, COLUMNS[2]))
            code = cell_text(get_cell(rec, COLUMNS[3])).strip()
            if code.endswith(".0"):
                code = code[:-2]
            label = _LABELS.get(code)
            if not subject or not clip:
                raise sh.error(row, "no subject or no file name")
            if label is None:
                raise sh.error(row, f"label {code!r} is not 0, 1 or 2")
            flow_name = f"{subject}_{clip} .png"  # as the release names them
            key = _key(flow_name)
            found = flows.get(key)
            if found is not None:
                used_flow.add(key)
                rel.spaced_names += _key(found) != found
            else:
                rel.missing.append(str(FLOW_DIR / flow_name))
            apex_name = clean_text(get_cell(rec, COLUMNS[4]))
            apex = apexes.get(_key(apex_name)) if apex_name else None
            if apex is not None:
                used_apex.add(_key(apex_name))
            else:
                rel.missing.append(str(APEX_DIR / (apex_name or f"(row {row}: no imagename)")))
            folds = tests.get(key, [])
            if split_subjects:
                if not folds:
                    rel.split_problems.append(f"split: {flow_name!r} is in no u_test folder")
                elif len(folds) > 1:
                    rel.split_problems.append(f"split: {flow_name!r} is in {len(folds)} "
                                              "u_test folders")
                for fold, lab in folds:
                    if fold != subject:
                        rel.split_problems.append(f"split: {flow_name!r} (subject {subject}) "
                                                  f"is tested in fold {fold}")
                    if lab != _CODES[label]:
                        rel.split_problems.append(f"split: {flow_name!r} is under label "
                                                  f"{lab} in fold {fold}; the list says "
                                                  f"{_CODES[label]}")
            rel.entries.append(ReleaseEntry(
                row=row, dataset=ds, subject=subject, clip=clip, label=label,
                flow_name=found if found is not None else flow_name,
                flow=root / FLOW_DIR / found if found is not None else None,
                apex=root / APEX_DIR / apex if apex is not None else None,
                test_fold=folds[0][0] if len(folds) == 1 else None))
    rel.extra = [str(FLOW_DIR / n) for k, n in sorted(flows.items()) if k not in used_flow]
    rel.extra += [str(APEX_DIR / n) for k, n in sorted(apexes.items()) if k not in used_apex]
    if split_subjects:
        listed = {e.subject for e in rel.entries}
        rel.split_problems += [f"split: fold {s} has no clip in the list"
                               for s in sorted(split_subjects - listed)]
        rel.split_problems += [f"split: subject {s} has no fold folder"
                               for s in sorted(listed - split_subjects)]
    else:
        rel.split_problems.append(f"split: no folder {SPLIT_DIR} (folds taken from the list's "
                                  "subjects)")
    got = rel.counts()
    for what in ("clips", "subjects"):
        if got[what] != EXPECTED[what]:
            rel.count_problems.append(f"count: {got[what]} {what}, the published composite "
                                      f"has {EXPECTED[what]}")
    for what in ("labels", "datasets"):
        for k, n in EXPECTED[what].items():
            if got[what].get(k, 0) != n:
                rel.count_problems.append(f"count: {got[what].get(k, 0)} {k}, the published "
                                          f"composite has {n}")
    if warn:
        for line in rel.report():
            logger.warning("megc2019-flow: %s", line)
    return rel


def _sample(e: ReleaseEntry, where: str) -> Sample:
    return Sample(sample_id=e.sample_id, dataset=e.dataset, subject=e.subject, clip=e.clip,
                  source=None if e.flow is None else str(e.flow), fps=_FPS[e.dataset],
                  onset=None, apex=None, offset=None, onset_frame=None, apex_frame=None,
                  offset_frame=None, emotion=e.label, video=e.clip, label=e.label,
                  n_frames=None, origin=where)


def _entries(root: Path, sheet: Path | None) -> list[tuple[Sample, dict[str, str]]]:
    rel = read_release(root, sheet)
    return [(_sample(e, f"{rel.list_path.name}, row {e.row}"),
             {k: str(v) for k, v in (("flow", e.flow), ("apex", e.apex)) if v is not None})
            for e in rel.entries]


#: ``flow_units`` of the imported maps (``mexkit show`` draws them as the release's image).
FLOW_UNITS = "per-clip min-max normalised to 0..255 (not pixels)"


def import_sample(files: Mapping[str, str], variant: str, sample_id: str
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any],
                             tuple[np.ndarray, float] | None]:
    """One clip's arrays as distributed.

    Parameters
    ----------
    files : mapping
        ``{"flow": path, "apex": path}`` (a role is absent when its file is).
    variant : {"flow", "apex"}
        ``"flow"``: ``flow`` ``(1, 2, 28, 28)`` float32 (u, v) and ``strain``
        ``(1, 28, 28)`` float32, in the release's units (each map min-max
        normalised to 0..255 over the clip, so not pixels; the values are the
        image's integers); ``"apex"``: ``apex_image`` ``(224, 224, 3)`` and
        ``frames`` ``(1, 224, 224, 3)``, uint8 RGB.
    sample_id : str
        For messages.

    Returns
    -------
    arrays : dict
    attrs : dict
        ``flow_units`` (:data:`FLOW_UNITS`) for the flow maps.
    face : (image, scale) or None
        The apex face, in which the pipeline finds the landmarks, and the
        factor to the stored arrays' pixels (28/224 for the flow maps).

    Raises
    ------
    MediaError
        The file is missing, unreadable, or not of the published shape.
    """
    flow = _read_rgb(files.get("flow"), sample_id, "flow") if variant == "flow" else None
    apex = _read_rgb(files.get("apex"), sample_id, "apex")
    if apex.ndim != 3 or apex.shape[0] != apex.shape[1]:
        raise MediaError(f"{files['apex']!r} (sample {sample_id!r}): an apex face of shape "
                         f"{apex.shape}, the release's are square")
    if flow is None:
        return {"apex_image": apex, "frames": apex[None].copy()}, {}, (apex, 1.0)
    if flow.shape != (28, 28, 3):
        raise MediaError(f"{files['flow']!r} (sample {sample_id!r}): a flow image of shape "
                         f"{flow.shape}, the release's are (28, 28, 3)")
    maps = flow.astype(np.float32).transpose(2, 0, 1)
    return ({"flow": maps[None, :2].copy(), "strain": maps[None, 2].copy()},
            {"flow_units": FLOW_UNITS}, (apex, flow.shape[1] / apex.shape[1]))


def _read_rgb(path: str | None, sample_id: str, role: str) -> np.ndarray:
    from PIL import Image  # only an import reads images: listing the release needs no PIL

    if path is None:
        raise MediaError(f"sample {sample_id!r}: its {role} image is missing from the release")
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except OSError as exc:
        raise MediaError(f"{path!r} (sample {sample_id!r}): unreadable image: {exc}") from None


@register_dataset(
    "megc2019-flow", title="MEGC 2019 composite, optical-flow release (STSTNet, HTNet)",
    fps=None, long=False, detect=_is_release_list,
    sheet=f"`{LIST_NAME}` (`dataset, sub, filename_o, label, imagename`; labels 0/1/2)",
    layout="`datasets/STSNet_whole_norm_u_v_os/<sub>_<clip> .png` (28x28 u, v, strain), "
           "`datasets/combined_datasets_whole/` (224x224 apex faces), "
           "`datasets/three_norm_u_v_os/` (LOSO split); read by `mexkit import`",
    reference="Liong et al., FG 2019; Wang et al., Neurocomputing 2024", takes_fps=False,
    default_sheet=LIST_NAME,
    importer=Importer(
        variants={"flow": "flow (u, v) and strain maps of 28x28 as distributed, landmarks "
                          "of the apex face scaled to them",
                  "apex": "the 224x224 apex face (apex_image, frames) and its landmarks"},
        entries=_entries, read=import_sample))
def load_megc2019_flow(request: LoadRequest) -> list[Sample]:
    """The release's list as samples whose ``source`` is the flow image."""
    path = request.path
    root = request.root
    if path.is_dir():  # the repository itself given as the sheet
        root, path = path, find_release_list(path)
    rel = read_release(root, path)
    return [_sample(e, f"{path.name}, row {e.row}") for e in rel.entries]
