"""Counts for ``mexkit samples``: :func:`summarize` and :func:`format_summary`."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..video import natural_key
from .rows import ReadReport
from .sample import Sample

__all__ = ["summarize", "format_summary", "has_source"]


def has_source(sample: Sample) -> bool:
    """Whether the sample's video or image folder is on disk.

    Adapters leave ``source=None`` for clips they could not find; the generic
    sheet keeps the path it names, found or not (the crop stage reports it),
    so the path is looked at here too.
    """
    return sample.source is not None and Path(sample.source).exists()


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts per dataset, subject, kind, emotion and label (JSON-ready).

    Returns
    -------
    dict
        ``n_samples``, ``n_subjects``, ``n_videos``, ``n_without_source``,
        ``datasets`` (per dataset: samples, subjects, videos, micro, macro,
        without_source, fps), ``subjects`` (dataset -> subject -> count),
        ``emotions`` and ``labels`` (dataset -> value -> count; ``""`` and
        ``None`` shown as ``"(none)"``).
    """
    datasets: dict[str, dict[str, Any]] = {}
    subjects: dict[str, Counter[str]] = defaultdict(Counter)
    emotions: dict[str, Counter[str]] = defaultdict(Counter)
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    videos: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        d = datasets.setdefault(s.dataset, {"samples": 0, "micro": 0, "macro": 0,
                                            "without_source": 0, "fps": set()})
        d["samples"] += 1
        d[s.kind if s.kind in ("micro", "macro") else "micro"] += 1
        d["without_source"] += not has_source(s)
        d["fps"].add(s.fps)
        subjects[s.dataset][s.subject] += 1
        emotions[s.dataset][s.emotion or "(none)"] += 1
        labels[s.dataset][s.label or "(none)"] += 1
        videos[s.dataset].add(s.video_id)
    for ds, d in datasets.items():
        d["subjects"] = len(subjects[ds])
        d["videos"] = len(videos[ds])
        d["fps"] = sorted(d["fps"])

    def plain(c: Mapping[str, Counter[str]], natural: bool = False) -> dict[str, dict[str, int]]:
        key = (lambda kv: natural_key(kv[0])) if natural else (lambda kv: (-kv[1], kv[0]))
        return {ds: dict(sorted(cnt.items(), key=key)) for ds, cnt in c.items()}

    return {
        "n_samples": len(samples),
        "n_subjects": sum(len(v) for v in subjects.values()),
        "n_videos": sum(len(v) for v in videos.values()),
        "n_without_source": sum(d["without_source"] for d in datasets.values()),
        "datasets": datasets,
        "subjects": plain(subjects, natural=True),
        "emotions": plain(emotions),
        "labels": plain(labels),
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for k, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _crosstab(title: str, counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    names = list(counts)
    values = list(dict.fromkeys(v for c in counts.values() for v in c))
    rows = [[v] + [counts[d].get(v, 0) for d in names] + [sum(counts[d].get(v, 0)
                                                             for d in names)]
            for v in values]
    return _table([title] + names + ["total"], rows)


def format_summary(summary: Mapping[str, Any], report: ReadReport | None = None) -> str:
    """A readable text report of :func:`summarize`'s result (for ``mexkit samples``).

    With ``report``, a last line counts the sheet rows read, repaired and
    skipped.
    """
    ds = summary["datasets"]
    lines = [f"{summary['n_samples']} samples, {summary['n_subjects']} subjects, "
             f"{summary['n_videos']} videos in {len(ds)} dataset(s)"]
    if summary["n_without_source"]:
        lines.append(f"{summary['n_without_source']} sample(s) have no frames on disk "
                     "(source not found)")
    lines.append("")
    rows = [[name, d["samples"], d["subjects"], d["videos"], d["micro"], d["macro"],
             d["without_source"], "/".join(f"{f:g}" for f in d["fps"] if f is not None) or "-"]
            for name, d in ds.items()]
    lines += _table(["dataset", "samples", "subjects", "videos", "micro", "macro",
                     "no source", "fps"], rows)
    lines.append("")
    lines += _crosstab("emotion", summary["emotions"])
    if any(set(c) != {"(none)"} for c in summary["labels"].values()):
        lines.append("")
        lines += _crosstab("label", summary["labels"])
    lines.append("")
    for name, subj in summary["subjects"].items():
        text = ", ".join(f"{s} {n}" for s, n in subj.items())
        lines.append(f"subjects ({name}, samples each): {text}")
    if report is not None:
        lines.append("")
        lines.append(report.summary_line())
    return "\n".join(lines)
