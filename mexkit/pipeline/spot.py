"""``mexkit spot``: spotted intervals with a training run's networks or a model's published ones.

With ``results`` (a folder of ``mexkit train --final`` on whole videos) the
store's videos go to :func:`mexkit.pipeline.spotting.spot_store`; with
``weights`` (networks published by a model's authors) the store, video or image
folder goes to :func:`mexkit.pipeline.published.spot_with_weights`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..devices import resolve_device
from ..errors import ParameterError
from .published import spot_with_weights
from .spotting import format_spot_report, spot_store

__all__ = ["spot", "format_spot_report"]


def spot(input_path: str | os.PathLike, output: str | os.PathLike, *,
         results: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
         fold: str | None = None, per_subject: bool = False, subject_map: str | None = None,
         kprime: int | None = None, peaks: str | None = None,
         classes: Sequence[str] | None = None, gap: int | None = None,
         fps: float | None = None, p: float | None = None,
         emotions: str | os.PathLike | None = None, type_stores: str | None = None,
         device: str = "auto", plots: bool = True, progress: bool = True,
         crop: str | None = None) -> tuple[Path, dict[str, Any] | None]:
    """Spot every video of the input; the interval CSV's path and, for annotated videos,
    the metric report.

    Raises
    ------
    ParameterError
        Unless exactly one of ``results`` and ``weights`` is given, or for the
        options of ``weights`` without it.
    """
    if (results is None) == (weights is None):
        raise ParameterError("Give either --results or --weights.")
    mine = (fold, per_subject or None, subject_map, kprime, peaks, classes, gap, fps, crop)
    if weights is None and any(v is not None for v in mine):
        raise ParameterError("--fold, --per-subject, --subject-map, --kprime, --peaks, "
                             "--classes, --gap, --fps and --crop go with --weights.")
    device = str(resolve_device(device))  # a GPU that is not there fails before any work
    if weights is not None:
        return spot_with_weights(
            input_path, weights, output, fold=fold, per_subject=per_subject,
            subject_map=subject_map, kprime=kprime, p=0.55 if p is None else p, peaks=peaks,
            classes=classes, gap=gap, fps=fps, device=device, plots=plots, progress=progress,
            crop=crop or "authors")
    return spot_store(input_path, results, output, p=p, device=device, plots=plots,
                      emotions=emotions, type_stores=type_stores)
