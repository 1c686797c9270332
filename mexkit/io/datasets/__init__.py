"""Dataset adapters: one uniform list of :class:`Sample` from each ME dataset.

Every adapter reads a dataset's official annotation sheet as distributed
(see :mod:`mexkit.io.sheets`), finds each clip's frames under a root folder
when they are there, and returns one :class:`Sample` per annotated
expression.  Entry points: :func:`load_dataset` and :func:`detect_dataset`.

Adapters live one module per dataset family in this package and register
themselves with :func:`~mexkit.io.datasets.registry.register_dataset`;
every module here is imported with the package, so adding a dataset is one
new module.  :func:`dataset_names`, detection, the CLI's ``--dataset``
choices and the README's dataset table (:func:`markdown_table`) all come
from the registry.

Frame numbers and positions
    ``onset_frame``/``apex_frame``/``offset_frame`` are the sheet's frame
    numbers.  ``onset``/``apex``/``offset`` are 0-based positions in the clip
    that :attr:`Sample.source` points at: when the folder exists, the index
    of that frame number in the naturally sorted folder (a number the folder
    lacks takes the nearest frame, with a warning); for a video file, the
    frame number minus the dataset's first frame number (1 for the long-video
    sheets).  When only the sheet is given (``source`` is ``None``),
    positions are counted from the clip's first frame: the onset for short
    clips (``FirstF`` for SMIC-E) and the first frame number for long videos.

Rows that cannot be used as written
    are repaired where the repair is unambiguous, each with a warning naming
    the file, sheet and row: fractional frame numbers (rounded); onset 0 in
    a 1-based sheet (the first frame); apex ``-1``, ``0``, ``/``, empty or
    outside onset..offset (unknown); offset ``0`` or empty (estimated as
    ``apex + (apex - onset)``, as several public CAS(ME)^2 loaders do); the
    same sample id twice (``#2`` suffix).  Rows that cannot be repaired (no
    clip, non-numeric frames, onset after offset, unknown type, participant
    or video code) are skipped with a warning.  :func:`collect_report`
    counts rows read, repaired and skipped, and with ``strict=True`` turns
    every repair or skip into a :class:`~mexkit.errors.DatasetError`.
"""
from __future__ import annotations

import importlib
import pkgutil

from .loading import detect_dataset, load_dataset
from .registry import (
    DatasetAdapter,
    LoadRequest,
    adapters,
    dataset_names,
    get_adapter,
    markdown_table,
    register_dataset,
)
from .rows import ReadReport, collect_report, current_report
from .sample import Sample, group_by_video
from .summary import format_summary, summarize

__all__ = [
    "Sample",
    "ReadReport",
    "DatasetAdapter",
    "LoadRequest",
    "GENERIC_COLUMNS",
    "register_dataset",
    "adapters",
    "get_adapter",
    "dataset_names",
    "markdown_table",
    "load_dataset",
    "detect_dataset",
    "collect_report",
    "current_report",
    "group_by_video",
    "summarize",
    "format_summary",
    "write_generic_csv",
    "write_generic_rows",
]

# Import every module of the package: each adapter module registers itself
# (the generic sheet last, so that listings end with it).
for _info in pkgutil.iter_modules(__path__):
    if _info.name != "generic":
        importlib.import_module(f"{__name__}.{_info.name}")
del _info

from .generic import GENERIC_COLUMNS, write_generic_csv, write_generic_rows  # noqa: E402
