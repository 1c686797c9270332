"""AKMNet's report on a finished run: beta and the key frames of a few test clips.

:func:`write_key_frame_plots` (the model's report hook) draws, for a few
test clips of each class of a finished run, beta over time with the
selected key frames and the max-key frame marked, from the run's
``predictions.json`` and ``predictions.csv``.

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (2021), eqs. 7-8.
"""
from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ...errors import StoreError

__all__ = ["plot_key_frames", "write_key_frame_plots"]


def plot_key_frames(path: str | os.PathLike, beta: Sequence[float],
                    key_frames: Sequence[int], max_key_frame: int, *, title: str = "",
                    truth: tuple[int, int] | None = None) -> Path:
    """Write a PNG of beta over a clip's frames with its key frames marked.

    Parameters
    ----------
    path : path-like
        Output PNG (written to a temporary name, then renamed).
    beta : sequence of float, length T
        Cosine correlation of each frame with the clip's global vector (eq. 7).
    key_frames : sequence of int
        0-based indices of the selected frames (eq. 8).
    max_key_frame : int
        The frame of highest beta.
    title : str
    truth : (int, int), optional
        A known frame range (e.g. the synthetic expression's) to shade.
    """
    import matplotlib  # start-up: only the report draws, and matplotlib is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up, as above; after the backend is chosen

    path = Path(path)
    t = list(range(len(beta)))
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    try:
        if truth is not None:
            ax.axvspan(truth[0] - 0.5, truth[1] + 0.5, color="0.9", label="known range")
        ax.plot(t, beta, "-", color="0.3", lw=1)
        mean = sum(beta) / max(len(beta), 1)
        ax.axhline(mean, color="0.6", ls=":", lw=1, label="mean beta")
        ax.plot(list(key_frames), [beta[k] for k in key_frames], "o", color="tab:red",
                ms=5, label="key frames")
        ax.plot([max_key_frame], [beta[max_key_frame]], "*", color="tab:orange", ms=12,
                label="max-key frame")
        ax.set_xlabel("frame")
        ax.set_ylabel("beta")
        ax.ticklabel_format(axis="y", useOffset=False)  # betas often differ in the 4th digit
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


def write_key_frame_plots(results_dir: str | os.PathLike, *, per_class: int = 3,
                          truth: dict[str, tuple[int, int]] | None = None) -> list[Path]:
    """Plot beta and the key frames of ``per_class`` test clips of each true class.

    Reads ``predictions.json`` (AKMNet's ``beta``, ``key_frames`` and
    ``max_key_frame`` per sample) and ``predictions.csv`` (true and predicted
    classes) in ``results_dir`` and writes ``key_frames/<sample>.png``.

    Parameters
    ----------
    results_dir : path-like
        A ``mexkit train --model akmnet`` results folder.
    per_class : int
        Clips plotted per true class (the first ones in sample order).
    truth : dict, optional
        A known frame range per sample id, shaded in the plot.

    Returns
    -------
    list of Path
        The PNG files written.

    Raises
    ------
    StoreError
        If the folder lacks AKMNet predictions.
    """
    results_dir = Path(results_dir)
    extras_path = results_dir / "predictions.json"
    csv_path = results_dir / "predictions.csv"
    if not extras_path.exists() or not csv_path.exists():
        raise StoreError(
            f"{str(results_dir)!r} holds no predictions.json and predictions.csv of an "
            "AKMNet run (`mexkit train --model akmnet` writes them)."
        )
    extras = json.loads(extras_path.read_text())
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(row for row in f if not row.startswith("#")))
    chosen: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda r: r["sample_id"]):
        e = extras.get(row["sample_id"])
        if e is None or "beta" not in e:
            continue
        bucket = chosen.setdefault(row["true"], [])
        if len(bucket) < per_class:
            bucket.append(row)
    written = []
    for cls in sorted(chosen):
        for row in chosen[cls]:
            sid = row["sample_id"]
            e = extras[sid]
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", sid).strip("_") + ".png"
            written.append(plot_key_frames(
                results_dir / "key_frames" / name, e["beta"], e["key_frames"],
                e["max_key_frame"], truth=(truth or {}).get(sid),
                title=f"{sid}: true {row['true']}, predicted {row['pred']}"))
    return written
