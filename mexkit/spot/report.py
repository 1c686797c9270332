"""The spotting metric table as text (``mexkit spot-eval``, ``mexkit train --model mean``).

One table gives, side by side, each expression type (``micro``, ``macro``)
and the overall figures: TP, FP, FN, precision, recall, F1, AP@[.5:.95],
analysis F1 and STRS; the row comparable to MEAN's tables is marked and named
(MEAN's long-video figures, Tables 4-5, are micro-expression figures).
Then AP, ASR and the analysis of each row in detail.  Pure: takes the report
of :func:`mexkit.spot.metrics.evaluate_intervals` (or a results.json's
``metrics``) and returns text.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos",
   Signal Processing: Image Communication 2023, Tables 4-5, eqs. 13-24.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["format_report"]


def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _rows(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``by_type`` rows; a report written before they existed gets them from its fields."""
    if report.get("by_type"):
        return dict(report["by_type"])
    sp = report["spotting"]
    rows = {ty: {"spotting": r, "ap": None, "analysis": None, "strs": None}
            for ty, r in sp["per_type"].items() if ty != "untyped"}
    rows["overall"] = {"spotting": sp["overall"], "ap": (report.get("ap") or {}).get("ap"),
                       "analysis": report.get("analysis"), "strs": report.get("strs")}
    return rows


def _analysis_line(name: str, an: Mapping[str, Any]) -> str:
    classes = an.get("classes") or []
    extra = (f", {an['unlisted_predictions']} predicted outside them"
             if an.get("unlisted_predictions") else "")
    correct = an.get("tp")
    head = (f"{correct} correct, " if correct is not None else "")
    return (f"analysis ({name}) on {an['n']} true positives, {len(classes)} classes{extra}: "
            f"{head}accuracy {_f(an['accuracy'])}  precision {_f(an['precision'])}  "
            f"recall {_f(an['recall'])}  F1 {_f(an['f1'])}  UF1 {_f(an['uf1'])}  "
            f"UAR {_f(an['uar'])}")


def format_report(report: Mapping[str, Any]) -> str:
    """The metric table of an :func:`~mexkit.spot.metrics.evaluate_intervals` report."""
    sp = report["spotting"]
    rows = _rows(report)
    paper = (report.get("comparable_to_paper") or {}).get("row")
    lines = [f"spotting at IoU >= {sp['iou_threshold']:.2f} (one-to-one, greedy by "
             f"confidence): {sp['n_truth']} true, {sp['n_pred']} spotted intervals",
             f"{'type':<11}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>9}"
             f"{'F1':>9}{'AP@[.5:.95]':>13}{'analysis F1':>13}{'STRS':>9}"]
    for name, row in rows.items():
        r = row["spotting"]
        an = row.get("analysis")
        label = f"{name} *" if name == paper else name
        lines.append(f"{label:<11}{_f(r['tp']):>6}{_f(r['fp']):>6}{_f(r['fn']):>6}"
                     f"{_f(r['precision']):>11}{_f(r['recall']):>9}{_f(r['f1']):>9}"
                     f"{_f(row.get('ap')):>13}{_f(an['f1'] if an else None):>13}"
                     f"{_f(row.get('strs')):>9}")
    if paper:
        lines.append(f"* {paper}: {report['comparable_to_paper']['why']}")
    for note in sp.get("notes", []):
        lines.append(f"note: {note}")
    ap = report.get("ap")
    if ap:
        lines.append(f"AP@[.5:.95] {_f(ap['ap'])} overall (ranked by {ap['ranked_by']}; "
                     f"AP@.5 {_f(ap['per_threshold'].get('0.50'))})")
    asr = report.get("asr")
    if asr:
        lines.append(f"ASR {_f(asr['asr'])} ({asr['hits']} of {asr['videos']} videos, apex "
                     f"from the {asr['apex_from']}, strictly inside the truth as in eq. 13)")
    shown = False
    for name, row in rows.items():
        an = row.get("analysis")
        if an:
            lines.append(_analysis_line(name, an))
            shown = True
    if shown:
        lines.append(f"STRS {_f(report.get('strs'))} overall (spotting F1 x analysis F1, "
                     "eq. 24)")
    else:
        lines.append("analysis: no true positive whose truth has an emotion, or no "
                     "prediction with one; no STRS")
    return "\n".join(lines)
