"""Entry points over the registry: :func:`detect_dataset` and :func:`load_dataset`."""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..._validate import check_range
from ...errors import DatasetError, ParameterError
from ..sheets import Row, find_header, normalize_column, read_workbook
from .registry import LoadRequest, adapters, dataset_names, get_adapter
from .rows import collect_report, current_report
from .sample import Sample

__all__ = ["detect_dataset", "detect_in_book", "load_dataset"]

logger = logging.getLogger("mexkit")


def detect_in_book(book: Mapping[str, list[Row]], path: Path) -> list[str]:
    """Names of every registered dataset whose signature the workbook fits.

    An adapter's own ``detect`` test is tried first (sheets without a
    header, or datasets told apart by their file name); when one fits, the
    header columns are not looked at.  Otherwise every adapter's header
    columns (required, and none of the forbidden ones) are tried on each
    sheet; when several adapters with the same columns fit (SMIC's
    modalities), a name token in the file name (``HS``, ``VIS``, ``NIR``)
    picks among them.
    """
    special = [a.name for a in adapters() if a.detect is not None and a.detect(book, path)]
    if special:
        return special
    found: list[str] = []
    by_columns: dict[tuple[tuple[str, ...], ...], list[str]] = {}
    for a in adapters():
        if not a.columns:
            continue
        for rows in book.values():
            idx = find_header(rows, a.columns)
            if idx is None:
                continue
            keys = {normalize_column(c) for c in rows[idx].cells}
            if not keys & set(a.forbidden):
                by_columns.setdefault(a.columns, []).append(a.name)
                break
    tokens = set(re.split(r"[^a-z0-9]+", path.stem.lower()))
    for names in by_columns.values():
        if len(names) > 1:
            hinted = [n for n in names if n.split("-")[-1] in tokens]
            names = hinted if len(hinted) == 1 else names
        found.extend(names)
    return list(dict.fromkeys(found))


def detect_dataset(annotations: str | os.PathLike[str]) -> str:
    """Tell which dataset an annotation sheet belongs to.

    Returns
    -------
    str
        A name from :func:`~mexkit.io.datasets.dataset_names`.

    Raises
    ------
    DatasetError
        No dataset fits, or several do (the message lists them).
    """
    path = Path(annotations)
    found = detect_in_book(read_workbook(path), path)
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(f"cannot tell which dataset {str(path)!r} belongs to: no known "
                           "header or sheet layout; name it (one of "
                           f"{', '.join(dataset_names())})")
    raise DatasetError(f"{str(path)!r} fits several datasets: {', '.join(found)}; name the "
                       "one you mean")


def load_dataset(name: str | None, annotations: str | os.PathLike[str], *,
                 root: str | os.PathLike[str] | None = None, fps: float | None = None,
                 sheets: Mapping[str, str | os.PathLike[str]] | None = None,
                 strict: bool | None = None) -> list[Sample]:
    """Read a dataset's annotation sheet into a list of :class:`Sample`.

    Parameters
    ----------
    name : str or None
        One of :func:`~mexkit.io.datasets.dataset_names`, or ``None``/``"auto"``
        to :func:`detect_dataset`.
    annotations : str or path-like
        The annotation sheet (xlsx, xls or csv) as distributed.
    root : str or path-like, optional
        Folder holding the clips in the dataset's layout; default: the
        sheet's folder.  Clips not found there keep ``source=None`` and
        positions counted from the sheet (one warning).  Not used by
        ``generic``, whose paths are relative to the CSV.
    fps : float, optional
        Frame rate of the clips when it differs from the dataset's published
        one; not for datasets whose sheet gives it (``generic``) or whose
        parts differ (``megc2019``).
    sheets : mapping, optional
        Other sheets, for the adapters that take them (``extra_sheets``):
        ``megc2019``'s parts' own sheets, e.g. ``{"casme2":
        "CASME2-coding.xlsx", "samm": ..., "smic-hs": ...}``; CAS(ME)^3's
        macro-expression sheet ``{"macro": ...}``.
    strict : bool, optional
        Any repaired or skipped row raises (default: the active
        :func:`~mexkit.io.datasets.collect_report`'s setting, else False).

    Returns
    -------
    list of Sample
        In sheet order; sample ids unique.  Rows that could not be used are
        left out with a warning naming file, sheet, row and reason.

    Raises
    ------
    DatasetError
        Unknown name, unreadable sheet, no header, or (strict) a repaired or
        skipped row.
    MediaError
        A clip folder that exists but holds no images or mis-numbered ones.
    """
    if strict is not None and strict != current_report().strict:
        with collect_report(strict=strict) as report:
            samples = load_dataset(name, annotations, root=root, fps=fps, sheets=sheets)
        outer = current_report()
        outer.rows += report.rows
        outer.repaired.update(report.repaired)
        outer.skipped.update(report.skipped)
        return samples
    path = Path(annotations)
    if name in (None, "auto"):
        name = detect_dataset(path)
        logger.info("%s: detected dataset %r", path.name, name)
    adapter = get_adapter(name)
    if sheets:
        if not adapter.extra_sheets:
            users = [a.name for a in adapters() if a.extra_sheets]
            raise DatasetError(f"the 'sheets' argument is for {', '.join(users)}, not "
                               f"{name!r}")
        if name != "megc2019":  # megc2019 accepts spellings of its parts' names
            unknown = sorted(set(sheets) - set(adapter.extra_sheets))
            if unknown:
                raise DatasetError(f"{name}: unknown sheet key(s) {', '.join(unknown)} "
                                   f"(allowed: {', '.join(adapter.extra_sheets)})")
    if fps is not None:
        if not adapter.takes_fps:
            raise ParameterError(f"the 'fps' argument does not apply to {name!r}")
        check_range("fps", float(fps), 0.0, low_open=True)
    rate = float(fps) if fps is not None else adapter.fps
    if name == "generic" and root is not None:
        logger.warning("generic: paths are relative to the CSV's folder (%s); root %s is "
                       "not used", path.parent, root)
        root = None
    base = Path(root) if root is not None else path.parent
    if root is not None and not base.is_dir():
        raise DatasetError(f"{name}: root folder {str(base)!r} does not exist")
    return adapter.loader(LoadRequest(name=name, path=path, root=base, fps=rate,
                                      sheets=sheets))
