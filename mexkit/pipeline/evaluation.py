"""``mexkit evaluate``: the metrics of a results file or of any predictions CSV.

A predictions CSV needs the columns ``true`` and ``pred`` (``fold`` and
``dataset`` are used when present), so other tools' outputs are scored the
same way as mexkit's: accuracy, UF1 and UAR pooled over folds, per fold and
per class (:func:`mexkit.learn.metrics.pooled_and_per_fold`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..io.predictions import read_predictions
from ..learn.metrics import pooled_and_per_fold
from .reports import format_report, jsonable

__all__ = ["evaluate_file", "format_report", "jsonable"]


def evaluate_file(path: str | Path, *, classes: Sequence[str] | None = None
                  ) -> dict[str, Any]:
    """The metrics of ``mexkit train``'s results.json, or of a predictions CSV.

    ``classes`` (CSV only) lists the classes of the scheme, so that absent
    ones show; by default the CSV's score columns name them.

    Raises
    ------
    DatasetError
        For a file that is not a readable results file or predictions CSV.
    """
    path = Path(path)
    if path.suffix == ".json":
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable results file ({exc}).") from exc
        if "pooled" not in results:
            raise DatasetError(f"{path}: not a mexkit results file (no 'pooled' metrics).")
        return results
    rows, score_classes = read_predictions(path)
    return pooled_and_per_fold(rows, classes=list(classes) if classes else
                               (score_classes or None))
