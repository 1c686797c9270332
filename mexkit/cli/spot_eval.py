"""``mexkit spot-eval`` (:mod:`mexkit.pipeline.spot_eval`)."""
from __future__ import annotations

import json

import click

from ..pipeline.spot_eval import format_spot_report, jsonable, score_interval_files
from ._common import out

__all__ = ["spot_eval_cmd"]


@click.command("spot-eval", epilog="""\b
Examples:
  mexkit spot-eval --truth long-data/intervals.csv --pred spotted.csv
  mexkit spot-eval --truth truth.csv --pred spotted.csv --iou 0.5 --json
  mexkit spot-eval --truth sheet-with-gaps.csv --pred spotted.csv --lenient
""")
@click.option("--truth", "truth", type=click.Path(dir_okay=False), required=True,
              help="Ground-truth interval CSV (subject, video, onset, offset; "
                   "type, emotion optional).")
@click.option("--pred", "pred", type=click.Path(dir_okay=False), required=True,
              help="Predicted interval CSV (subject, video, onset, offset; type, emotion, "
                   "confidence, apex optional).")
@click.option("--iou", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5,
              show_default=True, help="IoU a spotted interval needs to be a true positive.")
@click.option("--classes", default=None,
              help="Comma-separated emotion classes (so that absent classes show).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--lenient", is_flag=True,
              help="Skip invalid truth rows with a warning instead of refusing the file.")
def spot_eval_cmd(truth: str, pred: str, iou: float, classes: str | None,
                  as_json: bool, lenient: bool) -> int:
    """Score spotted intervals against ground truth, from mexkit or any other tool.

    Frames are 0-based and inclusive. Matching is one-to-one, greedy by
    confidence, at IoU >= 0.5; the table gives, per expression type (micro,
    macro) and overall side by side, TP, FP, FN, precision, recall, F1,
    AP@[.5:.95] ranked by the confidences, analysis F1 and STRS, and marks the
    row comparable to MEAN's tables (its long-video figures are
    micro-expression figures); then the apex spotting rate (one truth per
    video) and the analysis F1, UF1 and UAR of the true positives' emotions.
    An invalid truth row stops the command (exit 1, naming the rows) unless
    --lenient; a predicted interval with a negative onset is kept and scored
    as written, as MEAN's STRS scorer does. See docs/spotting.md for every
    convention.
    """
    report = score_interval_files(truth, pred, iou_threshold=iou,
                                  classes=classes.split(",") if classes else None,
                                  lenient=lenient)
    if as_json:
        out(json.dumps(jsonable(report), indent=2))
    else:
        out(format_spot_report(report))
    return 0
