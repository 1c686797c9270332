"""``mexkit spot-eval``: score interval files, from mexkit or any other tool.

This layer joins the pure pieces (:mod:`mexkit.spot`) with the interval file
(:mod:`mexkit.io.intervals`): both files are read, predictions for videos
without ground truth are named, and the report of
:func:`mexkit.spot.evaluate_intervals` becomes a table.
"""
from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.intervals import read_intervals
from ..spot.metrics import Interval, evaluate_intervals
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
                         iou_threshold: float = 0.5,
                         classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Read two interval files and score the predictions against the truth."""
    truth = read_intervals(truth_path, what="truth file")
    pred, rows = read_intervals(pred_path, what="prediction file", with_rows=True)
    report = score_intervals(truth, pred, iou_threshold=iou_threshold, classes=classes,
                             pred_rows=rows, pred_name=Path(pred_path).name)
    report["truth_file"] = str(truth_path)
    report["pred_file"] = str(pred_path)
    return report


def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_spot_report(report: Mapping[str, Any]) -> str:
    """The metric table of :func:`score_intervals` (or a results.json's ``spotting``)."""
    sp = report["spotting"]
    lines = [f"spotting at IoU >= {sp['iou_threshold']:.2f} (one-to-one, greedy by "
             f"confidence): {sp['n_truth']} true, {sp['n_pred']} spotted intervals",
             f"{'type':<10}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>9}{'F1':>9}"]
    rows = list(sp["per_type"].items())
    if len(rows) != 1 or rows[0][0] != "untyped":
        rows = rows + [("overall", sp["overall"])]
    else:
        rows = [("overall", sp["overall"])]
    for name, r in rows:
        lines.append(f"{name:<10}{_f(r['tp']):>6}{_f(r['fp']):>6}{_f(r['fn']):>6}"
                     f"{_f(r['precision']):>11}{_f(r['recall']):>9}{_f(r['f1']):>9}")
    for note in sp.get("notes", []):
        lines.append(f"note: {note}")
    ap = report.get("ap")
    if ap:
        lines.append(f"AP@[.5:.95] {_f(ap['ap'])} (ranked by {ap['ranked_by']}; "
                     f"AP@.5 {_f(ap['per_threshold'].get('0.50'))})")
    asr = report.get("asr")
    if asr:
        lines.append(f"ASR {_f(asr['asr'])} ({asr['hits']} of {asr['videos']} videos, apex "
                     f"from the {asr['apex_from']})")
    an = report.get("analysis")
    if an:
        lines.append(f"analysis on {an['n']} true positives: accuracy {_f(an['accuracy'])}  "
                     f"precision {_f(an['precision'])}  recall {_f(an['recall'])}  "
                     f"F1 {_f(an['f1'])}  UF1 {_f(an['uf1'])}  UAR {_f(an['uar'])}")
        lines.append(f"STRS {_f(report.get('strs'))} (spotting F1 x analysis F1)")
    else:
        lines.append("analysis: no true positive with an emotion on both sides; no STRS")
    return "\n".join(lines)
