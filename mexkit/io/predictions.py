"""The predictions CSV of recognition (DESIGN.md's exchange format).

One row per test sample: ``sample_id, subject, dataset, fold, true, pred``
and one ``score_<class>`` column per class. ``mexkit train`` and ``mexkit
predict`` write it; ``mexkit evaluate`` reads it, from mexkit or any other
tool (only ``true`` and ``pred`` are required).
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .atomic import write_text
from .sheets import escape_formula, unescape_formula

__all__ = ["PREDICTION_COLUMNS", "write_predictions", "read_predictions"]

PREDICTION_COLUMNS = ("sample_id", "subject", "dataset", "fold", "true", "pred")


def write_predictions(path: Path, rows: Sequence[Mapping[str, Any]], classes: Sequence[str],
                      *, extra: Sequence[str] = ()) -> None:
    """Write prediction rows as DESIGN.md's predictions CSV (atomically).

    ``extra`` columns (e.g. ``spot_score``) follow the per-class scores.
    """
    buf = io.StringIO()
    cols = list(PREDICTION_COLUMNS) + [
        f"score_{c}" for c in classes] + list(extra)
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else escape_formula(v))
                    for k, v in r.items()})
    write_text(path, buf.getvalue())


def read_predictions(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a predictions CSV (any tool's); return rows and the score classes."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            rows = [{k: unescape_formula(v) if isinstance(v, str) else v
                     for k, v in r.items()} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read the predictions CSV ({exc}).") from exc
    need = {"true", "pred"}
    if not need <= set(fields):
        raise DatasetError(
            f"{path}: a predictions CSV needs the columns 'true' and 'pred' (and usually "
            f"'fold'); it has {', '.join(fields) or 'none'}.")
    for i, r in enumerate(rows, start=2):
        if not r.get("true") or not r.get("pred"):
            raise DatasetError(f"{path}: row {i} has an empty 'true' or 'pred'.")
        r.setdefault("fold", "all")
        if not r.get("fold"):
            r["fold"] = "all"
    classes = [f[6:] for f in fields if f.startswith("score_")]
    return rows, classes


