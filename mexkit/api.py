"""mexkit from Python: the functions behind the commands, and stores and results as data.

Every function here takes paths and options and returns values: nothing is
kept between calls (no current store, no session, no global settings).
Importing this module loads nothing heavy; each function loads what it needs
when called.  docs/python.md shows them at work (a test runs its examples).

Commands (the very functions the commands call, with the commands' options as
keyword arguments; ``help(mexkit.api.flow)`` shows them):

==================  =========================================================
:func:`synth`       ``mexkit synth``: a synthetic dataset; returns its root
:func:`flow`        ``mexkit flow``: optical flow, strain, features
:func:`strain`      ``mexkit strain``
:func:`tim`         ``mexkit tim``
:func:`rpca`        ``mexkit rpca``
:func:`keyframes`   ``mexkit keyframes``
:func:`magnify`     ``mexkit magnify``
:func:`merge`       ``mexkit merge``
:func:`train`       ``mexkit train``: returns the results file and the report
:func:`pretrain`    ``mexkit pretrain``
:func:`predict`     ``mexkit predict`` (returns the predictions CSV's path)
:func:`evaluate`    ``mexkit evaluate``: the metrics of a results or predictions file
:func:`spot`        ``mexkit spot``
:func:`spot_eval`   ``mexkit spot-eval``: the metric table of two interval files
:func:`inspect`     ``mexkit inspect``: a store's summary (dict)
:func:`validate`    ``mexkit validate``: the problems of a store (list)
:func:`show`        ``mexkit show``
:func:`export`      ``mexkit export`` (returns an ExportResult)
==================  =========================================================

The stages (``flow`` ... ``magnify``) write one store and return a
:class:`~mexkit.pipeline.runner.StageResult` whose ``path`` is that store.
``mexkit crop`` composes reading the sheet and cropping: from Python,
:func:`mexkit.pipeline.crop.read_annotations`, :func:`~mexkit.pipeline.crop.clips_from_samples`
and :func:`~mexkit.pipeline.crop.run_crop`, as the command does.

Data:

==========================  ====================================================
:func:`open_store`          a store, read-only: ``store[sample_id]``, iteration
:func:`iter_samples`        each sample's id, attributes and arrays (numpy)
:func:`samples_table`       one row per sample (pandas), as ``mexkit export``
:func:`frames_table`        one row per frame or frame pair (pandas)
:func:`read_results`        a results folder's tables (pandas)
:func:`read_predictions`    a predictions CSV (pandas)
==========================  ====================================================

The tables need pandas (``pip install 'mexkit[pandas]'``); everything else
needs nothing beyond mexkit.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ParameterError

if TYPE_CHECKING:  # loaded on first use by __getattr__ below (import mexkit.api stays light)
    from .io.store import open_store
    from .pipeline.evaluation import evaluate_file as evaluate
    from .pipeline.export import export
    from .pipeline.flow import run_flow as flow
    from .pipeline.flow import run_strain as strain
    from .pipeline.inspect import summarize as inspect
    from .pipeline.inspect import validate
    from .pipeline.merge import merge_stores as merge
    from .pipeline.pretraining import pretrain_weights as pretrain
    from .pipeline.show import render as show
    from .pipeline.spot import spot
    from .pipeline.spot_eval import score_interval_files as spot_eval
    from .pipeline.synth import write_synthetic as synth
    from .pipeline.temporal import run_keyframes as keyframes
    from .pipeline.temporal import run_magnify as magnify
    from .pipeline.temporal import run_rpca as rpca
    from .pipeline.temporal import run_tim as tim
    from .pipeline.training import predict_store as predict
    from .pipeline.training import train_model as train

__all__ = [
    "StoreSample",
    "evaluate",
    "export",
    "flow",
    "frames_table",
    "inspect",
    "iter_samples",
    "keyframes",
    "magnify",
    "merge",
    "open_store",
    "predict",
    "pretrain",
    "read_predictions",
    "read_results",
    "rpca",
    "samples_table",
    "show",
    "spot",
    "spot_eval",
    "strain",
    "synth",
    "tim",
    "train",
    "validate",
]

# name -> (module, attribute): the very function the command calls, loaded on first use
_FUNCTIONS = {
    "synth": ("mexkit.pipeline.synth", "write_synthetic"),
    "flow": ("mexkit.pipeline.flow", "run_flow"),
    "strain": ("mexkit.pipeline.flow", "run_strain"),
    "tim": ("mexkit.pipeline.temporal", "run_tim"),
    "rpca": ("mexkit.pipeline.temporal", "run_rpca"),
    "keyframes": ("mexkit.pipeline.temporal", "run_keyframes"),
    "magnify": ("mexkit.pipeline.temporal", "run_magnify"),
    "merge": ("mexkit.pipeline.merge", "merge_stores"),
    "train": ("mexkit.pipeline.training", "train_model"),
    "pretrain": ("mexkit.pipeline.pretraining", "pretrain_weights"),
    "predict": ("mexkit.pipeline.training", "predict_store"),
    "evaluate": ("mexkit.pipeline.evaluation", "evaluate_file"),
    "spot": ("mexkit.pipeline.spot", "spot"),
    "spot_eval": ("mexkit.pipeline.spot_eval", "score_interval_files"),
    "inspect": ("mexkit.pipeline.inspect", "summarize"),
    "validate": ("mexkit.pipeline.inspect", "validate"),
    "show": ("mexkit.pipeline.show", "render"),
    "export": ("mexkit.pipeline.export", "export"),
    "open_store": ("mexkit.io.store", "open_store"),
}


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        module, attr = _FUNCTIONS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mexkit.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FUNCTIONS))


@dataclass(frozen=True)
class StoreSample:
    """One sample of a store, read whole.

    Attributes
    ----------
    sample_id : str
    attrs : dict
        ``subject, clip, dataset, fps, label, emotion, onset, apex, offset``
        and what the stages recorded.
    arrays : dict of str to ndarray
        The arrays asked for (all by default): ``frames``, ``landmarks``,
        ``flow``, ``strain``, ...
    """

    sample_id: str
    attrs: dict[str, Any]
    arrays: dict[str, Any]


def iter_samples(store: str | os.PathLike[str], *, arrays: Sequence[str] | None = None
                 ) -> Iterator[StoreSample]:
    """Each sample of a store with its attributes and arrays, as numpy.

    Parameters
    ----------
    store : path-like
        A mexkit store (checked as :func:`open_store` checks it).
    arrays : sequence of str, optional
        The arrays to read (default: all of each sample); a sample without
        one of them has none under that name.

    Yields
    ------
    StoreSample
        One per sample, in the store's order; the file is open while the
        iteration runs and closed when it ends.

    Raises
    ------
    StoreError
        An unreadable or unsafe store.

    Examples
    --------
    >>> for s in iter_samples("demo.crop.h5", arrays=["landmarks"]):  # doctest: +SKIP
    ...     print(s.sample_id, s.attrs["label"], s.arrays["landmarks"].shape)
    """
    from .io.store import open_store  # start-up: import mexkit.api stays light

    with open_store(store) as s:
        for sample in s:
            names = sample.keys() if arrays is None else [n for n in arrays if n in sample]
            yield StoreSample(sample.sample_id, dict(sample.attrs),
                              {n: sample.read(n) for n in names})


def _pandas() -> Any:
    try:
        import pandas  # optional dependency (the pandas extra)
    except ImportError as exc:
        raise ParameterError("The tables of mexkit.api need pandas (pip install "
                             "'mexkit[pandas]').") from exc
    return pandas


def _frame(columns: dict[str, Any]) -> Any:
    pd = _pandas()
    return pd.DataFrame({k: list(v) if isinstance(v, list) else v for k, v in columns.items()})


def samples_table(store: str | os.PathLike[str]) -> Any:
    """One row per sample: id, attributes, array shapes (``mexkit export``'s ``samples``).

    Parameters
    ----------
    store : path-like

    Returns
    -------
    pandas.DataFrame
        Columns as docs/export.md lists them.
    """
    from .io.store import open_store  # start-up: import mexkit.api stays light
    from .pipeline.export import store_sample_table  # start-up: import mexkit.api stays light

    with open_store(store) as s:
        return _frame(store_sample_table(s))


def frames_table(store: str | os.PathLike[str]) -> Any:
    """One row per frame (or frame pair) of every sample (``mexkit export``'s ``frames``
    or ``pairs``): landmarks, flow statistics, per-frame values.

    Parameters
    ----------
    store : path-like

    Returns
    -------
    pandas.DataFrame
        Columns as docs/export.md lists them; ``attrs["table"]`` says
        ``"frames"`` or ``"pairs"``.
    """
    from .io.store import open_store  # start-up: import mexkit.api stays light
    from .pipeline.export import store_frame_table  # start-up: import mexkit.api stays light

    pd = _pandas()
    with open_store(store) as s:
        name, columns, blocks = store_frame_table(s)
        parts = [_frame(b) for b in blocks]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    out.attrs["table"] = name
    return out


def read_results(results_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The tables of a results folder of ``mexkit train``, as pandas DataFrames.

    Parameters
    ----------
    results_dir : path-like
        A folder holding ``results.json``.

    Returns
    -------
    dict of str to pandas.DataFrame
        Recognition: ``predictions``, ``metrics`` (pooled, per dataset, per
        fold, fold mean), ``per_class``, ``training``; spotting:
        ``intervals``, ``truth``, ``metrics`` (docs/export.md).

    Raises
    ------
    DatasetError
        No readable ``results.json``.
    """
    from .pipeline.export import results_tables  # start-up: import mexkit.api stays light

    return {name: _frame(cols) for name, cols in results_tables(results_dir).items()}


def read_predictions(path: str | os.PathLike[str]) -> Any:
    """A predictions CSV (mexkit's or any tool's) as a DataFrame, scores as floats.

    Parameters
    ----------
    path : path-like
        ``sample_id, subject, dataset, fold, true, pred, score_<class>...``
        (only ``true`` and ``pred`` are required).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DatasetError
        An unreadable file or one without ``true`` and ``pred``.
    """
    from .io.predictions import read_predictions as _read  # start-up: as above
    from .io.tables import normalise_column  # start-up: import mexkit.api stays light

    rows, classes = _read(path)
    for r in rows:
        for c in classes:
            v = r.get(f"score_{c}")
            r[f"score_{c}"] = float(v) if v not in (None, "") else None
    keys = list(rows[0]) if rows else ["true", "pred"]
    return _frame({k: normalise_column([r.get(k) for r in rows]) for k in keys})
