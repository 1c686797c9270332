"""``mexkit spot-eval``: score interval files, from mexkit or any other tool.

This layer joins the pure pieces (:mod:`mexkit.spot`) with the interval file
(:mod:`mexkit.io.intervals`): both files are read, predictions for videos
without ground truth are named, and the report of
:func:`mexkit.spot.evaluate_intervals` becomes a table.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.intervals import read_intervals
from ..spot.metrics import Interval, evaluate_intervals
from ..spot.report import format_report
from .reports import jsonable

__all__ = ["score_interval_files", "score_intervals", "format_spot_report", "jsonable"]

logger = logging.getLogger("mexkit")


def score_intervals(truth: Sequence[Interval], pred: Sequence[Interval], *,
                    iou_threshold: float = 0.5, classes: Sequence[str] | None = None,
                    pred_rows: Sequence[int] | None = None, pred_name: str = "predictions"
                    ) -> dict[str, Any]:
    """:func:`mexkit.spot.evaluate_intervals` plus warnings about unknown videos.

    A prediction for a video that has no ground-truth interval is kept (it is
    a false positive) and one warning per such video names its first row.
    """
    known = {t.key for t in truth}
    unknown: dict[tuple[str, str], list[int]] = defaultdict(list)
    for k, p in enumerate(pred):
        if p.key not in known:
            unknown[p.key].append(pred_rows[k] if pred_rows is not None else k + 1)
    for (subject, video), rows in unknown.items():
        logger.warning("%s, row %d: video %s/%s has no ground-truth interval; its %d "
                       "interval(s) count as false positives", pred_name, rows[0], subject,
                       video, len(rows))
    report = evaluate_intervals(truth, pred, iou_threshold=iou_threshold, classes=classes)
    report["unknown_videos"] = sorted(f"{s}/{v}" for s, v in unknown)
    return report


def score_interval_files(truth_path: str | os.PathLike, pred_path: str | os.PathLike, *,
                         iou_threshold: float = 0.5, classes: Sequence[str] | None = None,
                         lenient: bool = False) -> dict[str, Any]:
    """Read two interval files and score the predictions against the truth.

    An invalid truth row is a :class:`~mexkit.errors.DatasetError` naming the
    rows (with ``lenient``, such rows are skipped with a warning); predicted
    intervals with a negative onset are kept and scored as written.
    """
    truth = read_intervals(truth_path, what="truth file", strict=not lenient)
    pred, rows = read_intervals(pred_path, what="prediction file", with_rows=True,
                                negative_onsets="keep")
    report = score_intervals(truth, pred, iou_threshold=iou_threshold, classes=classes,
                             pred_rows=rows, pred_name=Path(pred_path).name)
    report["truth_file"] = str(truth_path)
    report["pred_file"] = str(pred_path)
    return report


def format_spot_report(report: Mapping[str, Any]) -> str:
    """The metric table of :func:`score_intervals` (or a results.json's ``metrics``)."""
    return format_report(report)
