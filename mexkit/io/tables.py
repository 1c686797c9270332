"""Tables for other tools: CSV (always) and Parquet (with pyarrow).

The one owner of mexkit's tabular output format (``mexkit export``).  A table
is a mapping of column name to column, in order; a column is a 1-D numpy
array of numbers or booleans, a list of ``str`` or a list of ``int`` (with
``None`` for an empty cell), all of one length.  :func:`normalise_column` turns a list of
attribute values of mixed Python types into one of these.

CSV: UTF-8, comma-separated, a header line, ``\\n`` line ends; an empty
cell is a missing value (``None`` or NaN); floats are written with Python's
shortest round-trip representation of their float64 value, so a reader gets
back exactly the number mexkit holds (a float32 value is widened to float64
first, exactly); booleans are ``true``/``false``; text that a spreadsheet
would run as a formula gets a leading apostrophe
(:func:`mexkit.io.sheets.escape_formula`).  pandas (``pd.read_csv``), R
(``read.csv``) and spreadsheets read it as it is.

Parquet: one file per table through pyarrow (``pip install
'mexkit[parquet]'``), typed columns (int64, float64, bool, string), and
optional key-value metadata in the file's schema.  Without pyarrow,
:func:`write_table` raises :class:`~mexkit.errors.ParameterError` naming the
extra to install.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from .atomic import atomic_open, write_with
from .sheets import escape_formula

__all__ = [
    "FORMATS",
    "have_parquet",
    "normalise_column",
    "table_length",
    "write_table",
    "TableWriter",
]

#: Formats :func:`write_table` writes, with their file suffixes.
FORMATS = {"csv": ".csv", "parquet": ".parquet"}



def have_parquet() -> bool:
    """Whether pyarrow (the ``parquet`` extra) is installed."""
    return importlib.util.find_spec("pyarrow") is not None


def _require_parquet() -> None:
    if not have_parquet():
        raise ParameterError(
            "Invalid value for the 'format' parameter: 'parquet' needs the pyarrow package "
            "(pip install 'mexkit[parquet]'); 'csv' needs nothing more.")


def normalise_column(values: Sequence[Any]) -> np.ndarray | list[str | None]:
    """One typed column from a list of Python values (e.g. sample attributes).

    Parameters
    ----------
    values : sequence
        Values of one column; ``None`` is a missing value.

    Returns
    -------
    column : ndarray or list
        All booleans: a bool array (``None`` is not allowed among them: the
        column is then text).  All integers: an int64 array, or a list of
        ``int`` and ``None`` when some are missing (an integer column with
        empty cells).  Numbers with at least one float: float64
        (missing as NaN).  Anything else: a list of text, lists and dicts
        written as JSON, missing values kept as ``None``.
    """
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present) \
            and len(present) == len(values):
        return np.array(values, dtype=bool)
    numeric = [v for v in present if isinstance(v, (int, float, np.integer, np.floating))
               and not isinstance(v, (bool, np.bool_))]
    if present and len(numeric) == len(present):
        if all(isinstance(v, (int, np.integer)) for v in present):
            if len(present) == len(values):
                return np.array(values, dtype=np.int64)
            return [None if v is None else int(v) for v in values]
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if not present:
        return [None] * len(values)
    return [None if v is None else _text(v) for v in values]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (np.generic,)):
        return str(value.item())
    return str(value)


def table_length(columns: Mapping[str, Any]) -> int:
    """The common length of a table's columns (0 for a table without columns).

    Raises
    ------
    ValueError
        Columns of different lengths (a bug in the caller).
    """
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")
    return next(iter(lengths.values()), 0)


def _csv_cells(col: Any) -> list[Any]:
    """A column as CSV cells (see the module notes)."""
    if isinstance(col, np.ndarray):
        if col.dtype == bool:
            return ["true" if v else "false" for v in col.tolist()]
        if col.dtype.kind == "f":
            return ["" if math.isnan(v) else repr(v) for v in col.astype(np.float64).tolist()]
        if col.dtype.kind in "iu":
            return col.tolist()
        col = col.tolist()
    return ["" if v is None else escape_formula(v) for v in col]


def _arrow_column(col: Any) -> Any:
    import pyarrow as pa  # optional dependency (the parquet extra)

    if isinstance(col, np.ndarray):
        if col.dtype.kind == "f":
            return pa.array(col.astype(np.float64), from_pandas=True)
        return pa.array(col)
    col = list(col)
    if any(isinstance(v, str) for v in col):
        return pa.array(col, type=pa.string())
    return pa.array(col)        # integers with empty cells (or no value at all)


class TableWriter:
    """Write one table in blocks of rows (so that a large store is never whole in memory).

    Parameters
    ----------
    path : path-like
        The file to write; it is written to a temporary name and renamed into
        place when :meth:`close` is called, so a reader never sees half a table.
    format : {"csv", "parquet"}
        File format.
    metadata : mapping of str to str, optional
        Parquet only: key-value metadata stored in the file's schema.

    Notes
    -----
    Every block must have the same columns, in the same order, as the first.
    A Parquet column takes the type its blocks share (a block whose cells are
    all empty takes it too; integers and floats together become float64).
    A table with no block at all is written with the columns given by
    :meth:`close` (``columns``), and no rows.
    """

    def __init__(self, path: str | os.PathLike[str], *, format: str,
                 metadata: Mapping[str, str] | None = None) -> None:
        if format not in FORMATS:
            raise ParameterError(f"Invalid value for the 'format' parameter. Allowed values "
                                 f"are {', '.join(map(repr, FORMATS))}, but got {format!r} "
                                 "instead.")
        if format == "parquet":
            _require_parquet()
        self.path = Path(path)
        self.format = format
        self.metadata = dict(metadata or {})
        self._names: list[str] | None = None
        self._blocks: list[Any] = []

    def write(self, columns: Mapping[str, Any]) -> None:
        """Add a block of rows (columns of one length)."""
        table_length(columns)
        names = list(columns)
        if self._names is None:
            self._names = names
        elif names != self._names:
            raise ValueError(f"{self.path.name}: a block has columns {names}, "
                             f"the table {self._names}")
        if self.format == "csv":
            self._blocks.append([_csv_cells(columns[n]) for n in names])
        else:
            import pyarrow as pa  # optional dependency (the parquet extra)

            self._blocks.append(pa.table({n: _arrow_column(columns[n]) for n in names}))

    def close(self, columns: Iterable[str] = ()) -> Path:
        """Write the file; ``columns`` names the header of a table that got no rows."""
        names = self._names if self._names is not None else list(columns)
        if self.format == "csv":
            with atomic_open(self.path, "w", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(names)
                for block in self._blocks:
                    w.writerows(zip(*block, strict=True))
            return self.path
        import pyarrow as pa  # optional dependency (the parquet extra)
        import pyarrow.parquet as pq  # optional dependency, as above

        if self._blocks:
            table = pa.concat_tables(_unify(self._blocks))
        else:
            table = pa.table({n: pa.array([], type=pa.string()) for n in names})
        if self.metadata:
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), **{k: str(v) for k, v in self.metadata.items()}})
        return write_with(self.path, lambda tmp: pq.write_table(table, tmp), suffix=".parquet")


def _unify(blocks: list[Any]) -> Any:
    """Blocks cast to one schema: per column the blocks' common type (null-only blocks
    take it; integers and floats together become float64; anything else text)."""
    import pyarrow as pa  # optional dependency (the parquet extra)

    fields = []
    for i, field in enumerate(blocks[0].schema):
        types = {b.schema.field(i).type for b in blocks} - {pa.null()}
        if not types:
            t = pa.null()
        elif len(types) == 1:
            t = types.pop()
        elif all(pa.types.is_integer(x) or pa.types.is_floating(x) for x in types):
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(field.name, t))
    schema = pa.schema(fields)
    return [b.cast(schema) if b.schema != schema else b for b in blocks]


def write_table(path: str | os.PathLike[str], columns: Mapping[str, Any], *, format: str,
                metadata: Mapping[str, str] | None = None) -> Path:
    """Write one table to ``path`` (atomically) as CSV or Parquet.

    Parameters
    ----------
    path : path-like
        Output file.
    columns : mapping
        Column name -> column (see the module notes).
    format : {"csv", "parquet"}
        File format; ``"parquet"`` needs pyarrow.
    metadata : mapping of str to str, optional
        Parquet only: key-value metadata stored in the file's schema.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ParameterError
        An unknown format, or ``"parquet"`` without pyarrow.
    """
    writer = TableWriter(path, format=format, metadata=metadata)
    if columns:
        writer.write(columns)
    return writer.close()
