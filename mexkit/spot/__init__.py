"""Spotting: MEAN's post-processing (pseudo-labels, smoothing, peaks) and spotting metrics.

- :mod:`mexkit.spot.postprocess`: pseudo-labels, moving-average smoothing,
  peak detection, intervals, confidences and emotions of spotted intervals;
- :mod:`mexkit.spot.metrics`: one-to-one interval matching, spotting F1 overall
  and per type, AP@[.5:.95], apex spotting rate, analysis F1, UF1, UAR, STRS.

Pure numpy / scipy: no files, no printing.
"""
from __future__ import annotations

from .metrics import (
    CONVENTIONS,
    Interval,
    analysis_report,
    apex_spotting_rate,
    average_precision,
    evaluate_intervals,
    interval_iou,
    match_intervals,
    spotting_counts,
    spotting_report,
    strs,
)
from .postprocess import (
    KPRIME,
    Spot,
    interval_emotion,
    kprime_from_length,
    peak_interval,
    pseudo_labels,
    smooth_scores,
    spot_peaks,
    spot_video,
    threshold,
)

__all__ = [
    "CONVENTIONS",
    "Interval",
    "KPRIME",
    "Spot",
    "analysis_report",
    "apex_spotting_rate",
    "average_precision",
    "evaluate_intervals",
    "interval_emotion",
    "interval_iou",
    "kprime_from_length",
    "match_intervals",
    "peak_interval",
    "pseudo_labels",
    "smooth_scores",
    "spot_peaks",
    "spot_video",
    "spotting_counts",
    "spotting_report",
    "strs",
    "threshold",
]
