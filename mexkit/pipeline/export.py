"""Stores and results as tables for pandas, R and spreadsheets (``mexkit export``).

A store becomes (docs/export.md lists every column):

``samples``
    One row per stored sample: ``sample_id``, every attribute of the sample
    (``subject, clip, dataset, fps, label, emotion, onset, apex, offset``
    first, then the others by name; lists and dicts as JSON text), and one
    ``shape_<array>`` column per array (``"2x128x128"``, the form ``mexkit
    inspect`` prints; empty when the sample has no such array).
``frames`` or ``pairs``
    One row per frame of a frame store (crop, TIM, RPCA, key frames,
    magnification), or per frame pair of a flow store: ``sample_id``, the
    row's position (``frame``; for pairs also ``pair`` and ``moving_frame``)
    and the dataset's own frame numbers where the store keeps them, then the
    per-frame data: landmarks as ``x_0 ... x_67, y_0 ... y_67``, flow
    statistics (``flow_u_mean, flow_v_mean, flow_magnitude_mean,
    flow_magnitude_max``), and for every other array with one entry per row:
    the value itself (1-D arrays), its values (``<name>_0 ...``, at most 8
    per row) or their mean (``<name>_mean``).
``failures``
    ``sample_id, error``: the samples that failed when the store was made.

A results folder of ``mexkit train`` becomes ``predictions`` (the
predictions CSV, typed), ``metrics`` (accuracy, UF1, UAR and n for the pooled
predictions, each dataset, each fold and the fold mean), ``per_class``
(precision, recall, F1, support and predicted count per class of each of
those) and ``training`` (one row per fold and epoch).  A results folder of
spotting (``mexkit train --model mean`` on a gap-flow store) becomes
``intervals``, ``truth``, ``frame_scores`` (one row per video, expression type
and frame: the network's score, the smoothed score and the threshold) and
``metrics`` (one row per expression type and overall).
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, ParameterError, StoreError
from ..io import tables as _tables
from ..io.intervals import intervals_to_records, read_intervals
from ..io.predictions import read_predictions
from ..io.store import StoreLimits, open_store
from ..io.tables import FORMATS, TableWriter, normalise_column, table_length

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "default_export_dir",
    "export",
    "export_results",
    "export_store",
    "results_tables",
    "store_frame_table",
    "store_sample_table",
]

#: Formats of ``mexkit export``.
EXPORT_FORMATS = tuple(FORMATS)

#: Attributes that come first in the samples table, in this order.
FIRST_ATTRIBUTES = ("subject", "clip", "dataset", "fps", "label", "emotion",
                    "onset", "apex", "offset")
#: Arrays that hold one thing per sample, never one entry per frame.
PER_SAMPLE_ARRAYS = ("apex_image",)
#: Arrays with more values per row than this are summarised by their mean.
MAX_VALUES_PER_ROW = 8
#: Landmark columns: x_0 ... x_67 then y_0 ... y_67 (OpenFace's naming).
N_LANDMARKS = 68


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote.

    Attributes
    ----------
    folder : Path
        The output folder.
    tables : dict of str to Path
        Table name -> file.
    """

    folder: Path
    tables: dict[str, Path]


# --------------------------------------------------------------------------- stores

def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def store_sample_table(store: Any) -> dict[str, Any]:
    """The ``samples`` table of an open store.

    Parameters
    ----------
    store : mexkit.io.store.Store
        An open store.

    Returns
    -------
    columns : dict
        Column name -> column (:mod:`mexkit.io.tables`), one row per sample
        in the store's order.
    """
    ids: list[str] = []
    attrs: list[dict[str, Any]] = []
    shapes: list[dict[str, str]] = []
    for s in store:
        ids.append(s.sample_id)
        attrs.append({k: v for k, v in s.attrs.items() if k != "sample_id"})
        shapes.append({name: _shape_text(s.shape(name)) for name in s.keys()})
    keys = {k for a in attrs for k in a}
    order = [k for k in FIRST_ATTRIBUTES if k in keys] + sorted(keys - set(FIRST_ATTRIBUTES))
    arrays = sorted({n for sh in shapes for n in sh})
    columns: dict[str, Any] = {"sample_id": list(ids)}
    for k in order:
        columns[k] = normalise_column([_plain(a.get(k)) for a in attrs])
    for n in arrays:
        columns[f"shape_{n}"] = [sh.get(n) for sh in shapes]
    return columns


def _plain(value: Any) -> Any:
    """A decoded attribute as a plain Python value (numpy scalars and arrays unwrapped)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _row_axis(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, int] | None:
    """``("pairs", P)`` or ``("frames", T)`` for a sample, None when it has no per-frame data."""
    p = shapes.get("pairs")
    if p is not None and len(p) == 2 and p[1] == 2:
        return "pairs", int(p[0])
    for name in ("frames", "frame_numbers", "landmarks", "sparse", "source_time"):
        if name in shapes and len(shapes[name]) >= 1:
            return "frames", int(shapes[name][0])
    return None


def _array_columns(name: str, shape: tuple[int, ...], dtype: np.dtype
                   ) -> list[tuple[str, str]]:
    """(column, kind) of the per-row columns an array of ``shape`` (row axis first) gives."""
    per_row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    if name == "landmarks" and shape[1:] == (N_LANDMARKS, 2):
        return ([(f"x_{i}", "float") for i in range(N_LANDMARKS)]
                + [(f"y_{i}", "float") for i in range(N_LANDMARKS)])
    if name == "flow" and len(shape) == 4 and shape[1] == 2:
        return [("flow_u_mean", "float"), ("flow_v_mean", "float"),
                ("flow_magnitude_mean", "float"), ("flow_magnitude_max", "float")]
    kind = "bool" if dtype.kind == "b" else "int" if dtype.kind in "iu" else "float"
    if len(shape) == 1:
        return [(name, kind)]
    if per_row <= MAX_VALUES_PER_ROW:
        return [(f"{name}_{i}", kind) for i in range(per_row)]
    return [(f"{name}_mean", "float")]


def _layout(sample: Any) -> tuple[str, int, list[tuple[str, str]]] | None:
    """Row kind, row count and the (column, kind) list of one sample's per-frame table."""
    shapes = {n: sample.shape(n) for n in sample.keys()}
    axis = _row_axis(shapes)
    if axis is None:
        return None
    kind, n = axis
    cols: list[tuple[str, str]] = [("sample_id", "text")]
    if kind == "pairs":
        cols += [("pair", "int"), ("frame", "int"), ("moving_frame", "int")]
        if "frame_numbers" in shapes:
            cols += [("frame_number", "int"), ("moving_frame_number", "int")]
    else:
        cols += [("frame", "int")]
        if "frame_numbers" in shapes and shapes["frame_numbers"][:1] == (n,):
            cols += [("frame_number", "int")]
    for name in sorted(shapes):
        shape = shapes[name]
        if name in ("pairs", "frame_numbers") or name in PER_SAMPLE_ARRAYS:
            continue
        if len(shape) >= 1 and shape[0] == n:
            cols += _array_columns(name, shape, sample.dtype(name))
    return kind, n, cols


def _values(sample: Any, kind: str, n: int, wanted: set[str]) -> dict[str, np.ndarray | list]:
    """The per-frame columns of one sample (only those in ``wanted``)."""
    out: dict[str, Any] = {"sample_id": [sample.sample_id] * n}
    names = sample.keys()
    numbers = sample.read("frame_numbers").astype(np.int64) if "frame_numbers" in names else None
    if kind == "pairs":
        pairs = sample.read("pairs").astype(np.int64).reshape(n, 2)
        out["pair"] = np.arange(n, dtype=np.int64)
        out["frame"], out["moving_frame"] = pairs[:, 0], pairs[:, 1]
        if numbers is not None:
            bad = np.flatnonzero(((pairs < 0) | (pairs >= len(numbers))).any(axis=1))
            if len(bad):
                raise StoreError(
                    f"{sample._store.path}: sample {sample.sample_id!r}: pair {int(bad[0])} "
                    f"{pairs[bad[0]].tolist()} lies outside its {len(numbers)} frame numbers.")
            out["frame_number"] = numbers[pairs[:, 0]]
            out["moving_frame_number"] = numbers[pairs[:, 1]]
    else:
        out["frame"] = np.arange(n, dtype=np.int64)
        if numbers is not None and len(numbers) == n:
            out["frame_number"] = numbers
    for name in names:
        if name in ("pairs", "frame_numbers") or name in PER_SAMPLE_ARRAYS:
            continue
        shape = sample.shape(name)
        if not (len(shape) >= 1 and shape[0] == n):
            continue
        cols = _array_columns(name, shape, sample.dtype(name))
        if not any(c in wanted for c, _ in cols):
            continue
        out.update(_array_values(name, sample, n))
    return out


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean of each row's finite values (NaN for a row with none), in float64."""
    a = a.reshape(len(a), -1).astype(np.float64)
    finite = np.isfinite(a)
    count = finite.sum(axis=1)
    total = np.where(finite, a, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanmax_rows(a: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    finite = np.isfinite(a)
    best = np.where(finite, a, -np.inf).max(axis=1) if a.shape[1] else np.full(len(a), -np.inf)
    return np.where(finite.any(axis=1), best, np.nan)


def _array_values(name: str, sample: Any, n: int) -> dict[str, np.ndarray]:
    """The per-row columns of one array (as :func:`_array_columns` names them)."""
    shape = sample.shape(name)
    dtype = sample.dtype(name)
    if name == "landmarks" and shape[1:] == (N_LANDMARKS, 2):
        lm = sample.read(name).astype(np.float64)
        out = {f"x_{i}": lm[:, i, 0] for i in range(N_LANDMARKS)}
        out.update({f"y_{i}": lm[:, i, 1] for i in range(N_LANDMARKS)})
        return out
    if name == "flow" and len(shape) == 4 and shape[1] == 2:
        u_mean = np.empty(n)
        v_mean = np.empty(n)
        mag_mean = np.empty(n)
        mag_max = np.empty(n)
        for p in range(n):       # one pair at a time: a long video's flow is large
            f = sample.read(name, p).astype(np.float64)
            u_mean[p], v_mean[p] = _nanmean_rows(f[0][None])[0], _nanmean_rows(f[1][None])[0]
            mag = np.hypot(f[0], f[1])[None]
            mag_mean[p], mag_max[p] = _nanmean_rows(mag)[0], _nanmax_rows(mag)[0]
        return {"flow_u_mean": u_mean, "flow_v_mean": v_mean,
                "flow_magnitude_mean": mag_mean, "flow_magnitude_max": mag_max}
    if len(shape) == 1:
        return {name: _typed(sample.read(name), dtype)}
    per_row = int(np.prod(shape[1:], dtype=np.int64))
    if per_row <= MAX_VALUES_PER_ROW:
        a = _typed(sample.read(name), dtype).reshape(n, per_row)
        return {f"{name}_{i}": a[:, i] for i in range(per_row)}
    means = np.empty(n)
    for r in range(n):
        means[r] = _nanmean_rows(sample.read(name, r)[None])[0]
    return {f"{name}_mean": means}


def _typed(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "b":
        return a.astype(bool)
    if dtype.kind in "iu":
        return a.astype(np.int64)
    return a.astype(np.float64)


def store_frame_table(store: Any) -> tuple[str, list[str], Iterator[dict[str, Any]]]:
    """The per-frame table of an open store, one block of rows per sample.

    Parameters
    ----------
    store : mexkit.io.store.Store
        An open store.

    Returns
    -------
    name : {"frames", "pairs"}
        ``"pairs"`` for a store of frame pairs (flow), else ``"frames"``.
    columns : list of str
        The table's columns (the union over samples; a sample without one
        of them has empty cells there).
    blocks : iterator of dict
        One mapping column -> column per sample with per-frame data, read
        when the iterator reaches it.
    """
    layouts: dict[str, tuple[str, int, list[tuple[str, str]]]] = {}
    order: list[str] = []
    kinds: dict[str, str] = {}
    present: dict[str, int] = {}
    for s in store:
        lay = _layout(s)
        if lay is None:
            continue
        layouts[s.sample_id] = lay
        for col, kind in lay[2]:
            if col not in kinds:
                order.append(col)
                kinds[col] = kind
            elif kinds[col] != kind:
                kinds[col] = "text" if "text" in (kind, kinds[col]) else "float"
            present[col] = present.get(col, 0) + 1
    # a column some samples lack is empty there: integers become floats (NaN)
    for col in order:
        if present[col] < len(layouts) and kinds[col] in ("int", "bool"):
            kinds[col] = "float"
    name = "pairs" if any(lay[0] == "pairs" for lay in layouts.values()) else "frames"
    if not order:
        order = ["sample_id", "frame"]
        kinds = {"sample_id": "text", "frame": "int"}

    def blocks() -> Iterator[dict[str, Any]]:
        for sid, (kind, n, _) in layouts.items():
            values = _values(store[sid], kind, n, set(order))
            block: dict[str, Any] = {}
            for col in order:
                block[col] = _as_kind(values.get(col), kinds[col], n)
            yield block

    return name, order, blocks()


def _as_kind(col: Any, kind: str, n: int) -> Any:
    if kind == "text":
        return [None] * n if col is None else [None if v is None else str(v) for v in col]
    if col is None:
        return np.full(n, np.nan)
    a = np.asarray(col)
    if kind == "float":
        return a.astype(np.float64)
    if kind == "int":
        return a.astype(np.int64)
    return a.astype(bool)


def export_store(store_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                 format: str = "csv", limits: StoreLimits | None = None) -> ExportResult:
    """Write a store's ``samples``, ``frames``/``pairs`` and ``failures`` tables.

    Parameters
    ----------
    store_path : path-like
        A mexkit store (opened with every check of
        :func:`mexkit.io.store.open_store`).
    out_dir : path-like
        Output folder (created); files ``<table>.csv`` or ``<table>.parquet``
        in it are replaced, nothing else there is touched.
    format : {"csv", "parquet"}
        ``"parquet"`` needs pyarrow (``pip install 'mexkit[parquet]'``).
    limits : StoreLimits, optional
        Bounds on the store's arrays (default: the stage default).

    Returns
    -------
    ExportResult
    """
    _check_format(format)
    out = _out_dir(out_dir)
    suffix = FORMATS[format]
    tables: dict[str, Path] = {}
    with open_store(store_path, limits=limits) as store:
        meta = {"mexkit": json.dumps({
            "stage": store.stage, "store_id": store.store_id,
            "content_hash": store.content_hash, "params": store.params,
            "source": str(Path(store_path))}, sort_keys=True, default=str)}
        w = TableWriter(out / f"samples{suffix}", format=format, metadata=meta)
        samples = store_sample_table(store)
        if len(store):
            w.write(samples)
        tables["samples"] = w.close(samples)
        name, columns, blocks = store_frame_table(store)
        w = TableWriter(out / f"{name}{suffix}", format=format, metadata=meta)
        for block in blocks:
            w.write(block)
        tables[name] = w.close(columns)
        failures = store.failures
        w = TableWriter(out / f"failures{suffix}", format=format, metadata=meta)
        if failures:
            w.write({"sample_id": [str(k) for k in failures],
                     "error": [str(v) for v in failures.values()]})
        tables["failures"] = w.close(["sample_id", "error"])
    return ExportResult(out, tables)


# --------------------------------------------------------------------------- results

def _read_results(results_dir: Path) -> dict[str, Any]:
    path = results_dir / "results.json"
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"{results_dir}: not a results folder (no readable results.json: "
                           f"{exc.strerror or exc}).") from exc
    try:
        results = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(results, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(results).__name__}.")
    return results


def _records_table(records: Sequence[Mapping[str, Any]], first: Sequence[str] = ()
                   ) -> dict[str, Any]:
    """Columns of a list of flat records (``first`` columns first, then the rest by name)."""
    keys = {k for r in records for k in r}
    order = [k for k in first if k in keys] + sorted(keys - set(first))
    return {k: normalise_column([_scalar(r.get(k)) for r in records]) for k in order}


def _scalar(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else v
    return v


def _metric_scopes(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    scopes: list[tuple[str, str, Mapping[str, Any]]] = []
    if isinstance(results.get("pooled"), dict):
        scopes.append(("pooled", "", results["pooled"]))
    for kind, key in (("dataset", "per_dataset"), ("fold", "per_fold")):
        for name, m in sorted((results.get(key) or {}).items()):
            if isinstance(m, dict):
                scopes.append((kind, str(name), m))
    if isinstance(results.get("fold_mean"), dict):
        scopes.append(("fold_mean", "", results["fold_mean"]))
    return scopes


def _recognition_tables(results_dir: Path, results: Mapping[str, Any]
                        ) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    pred = results_dir / "predictions.csv"
    if pred.is_file():
        rows, classes = read_predictions(pred)
        first = ["sample_id", "subject", "dataset", "fold", "true", "pred"]
        for r in rows:
            for c in classes:
                text = r.get(f"score_{c}")
                r[f"score_{c}"] = float(text) if text not in (None, "") else None
        tables["predictions"] = _records_table(rows, first + [f"score_{c}" for c in classes])
    metrics = []
    per_class = []
    for kind, name, m in _metric_scopes(results):
        metrics.append({"scope": kind, "name": name,
                        **{k: m.get(k) for k in ("n", "accuracy", "uf1", "uar")}})
        for cls, row in (m.get("per_class") or {}).items():
            if isinstance(row, dict):
                per_class.append({"scope": kind, "name": name, "class": cls,
                                  **{k: row.get(k) for k in
                                     ("support", "predicted", "precision", "recall", "f1")}})
    tables["metrics"] = _records_table(metrics, ("scope", "name", "n", "accuracy", "uf1", "uar"))
    tables["per_class"] = _records_table(
        per_class, ("scope", "name", "class", "support", "predicted", "precision", "recall",
                    "f1"))
    training = []
    for fold, records in sorted((results.get("training") or {}).items()):
        for rec in records if isinstance(records, list) else []:
            if isinstance(rec, dict):
                training.append({"fold": fold, **{k: v for k, v in rec.items()
                                                   if not isinstance(v, (dict, list))}})
    tables["training"] = _records_table(training, ("fold", "epoch"))
    return tables


def _number(text: str | None) -> int | float | None:
    if text in (None, ""):
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}_{k}" if prefix else str(k), v, out)
    elif not isinstance(value, list):
        out[prefix] = value


def _spotting_tables(results_dir: Path, results: Mapping[str, Any]
                     ) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for name in ("intervals", "truth"):
        path = results_dir / f"{name}.csv"
        if path.is_file():
            records = intervals_to_records(read_intervals(path, strict=False,
                                                          negative_onsets="keep"))
            tables[name] = _records_table(records, ("subject", "video", "onset", "offset"))
    path = results_dir / "frame_scores.csv"
    if path.is_file():
        with open(path, newline="") as fh:
            records = [{k: _number(v) if k in ("frame", "score", "smoothed", "threshold")
                        else v for k, v in r.items()} for r in csv.DictReader(fh)]
        tables["frame_scores"] = _records_table(records, ("subject", "video", "type",
                                                          "frame"))
    rows = []
    for row_name, row in ((results.get("metrics") or {}).get("by_type") or {}).items():
        flat: dict[str, Any] = {"type": row_name}
        _flatten("", row, flat)
        rows.append(flat)
    tables["metrics"] = _records_table(rows, ("type",))
    return tables


def results_tables(results_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The tables of a results folder of ``mexkit train`` (recognition or spotting).

    Parameters
    ----------
    results_dir : path-like
        A folder holding ``results.json`` (and ``predictions.csv`` or
        ``intervals.csv``).

    Returns
    -------
    tables : dict
        Table name -> columns (see the module notes).

    Raises
    ------
    DatasetError
        No readable ``results.json``, or an unreadable predictions or
        intervals file.
    """
    folder = Path(results_dir)
    results = _read_results(folder)
    if results.get("task") == "spot-then-recognize":
        return _spotting_tables(folder, results)
    return _recognition_tables(folder, results)


def export_results(results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                   format: str = "csv") -> ExportResult:
    """Write the tables of :func:`results_tables` to ``out_dir``.

    Parameters and the returned value as :func:`export_store`.
    """
    _check_format(format)
    tables = results_tables(results_dir)
    out = _out_dir(out_dir)
    meta = {"mexkit": json.dumps({"source": str(Path(results_dir))})}
    written: dict[str, Path] = {}
    for name, columns in tables.items():
        w = TableWriter(out / f"{name}{FORMATS[format]}", format=format, metadata=meta)
        if table_length(columns):
            w.write(columns)
        written[name] = w.close(columns)
    return ExportResult(out, written)


# --------------------------------------------------------------------------- both

def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ParameterError(f"Invalid value for the 'format' parameter. Allowed values are "
                             f"{', '.join(map(repr, FORMATS))}, but got {format!r} instead.")
    if format == "parquet":
        if not _tables.have_parquet():
            raise ParameterError(
                "Invalid value for the 'format' parameter: 'parquet' needs the pyarrow "
                "package (pip install 'mexkit[parquet]'); 'csv' needs nothing more.")


def _out_dir(out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"The output {str(out)!r} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def default_export_dir(source: str | os.PathLike[str]) -> Path:
    """``x.flow.h5`` -> ``x.flow.export``; a results folder ``run`` -> ``run.export``."""
    source = Path(source)
    name = source.name[:-3] if source.is_file() and source.name.endswith(".h5") else source.name
    return source.with_name(f"{name or 'mexkit'}.export")


def export(source: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
           format: str = "csv", limits: StoreLimits | None = None) -> ExportResult:
    """Export a store or a results folder as tables (see the module notes).

    Parameters
    ----------
    source : path-like
        A store file, or a results folder of ``mexkit train``.
    out_dir : path-like, optional
        Output folder; default :func:`default_export_dir`.
    format : {"csv", "parquet"}
        ``"parquet"`` needs pyarrow.
    limits : StoreLimits, optional
        Stores only: bounds on the arrays.

    Returns
    -------
    ExportResult

    Raises
    ------
    ParameterError
        A bad format, or an output that is not a folder.
    StoreError
        ``source`` is a file that is not a readable store.
    DatasetError
        ``source`` is a folder without a readable ``results.json``.
    """
    source = Path(source)
    _check_format(format)
    out = Path(out_dir) if out_dir is not None else default_export_dir(source)
    if source.is_dir():
        return export_results(source, out, format=format)
    if not source.exists():
        raise StoreError(f"{source}: no such store or results folder.")
    return export_store(source, out, format=format, limits=limits)
