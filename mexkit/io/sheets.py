"""Read annotation spreadsheets as the datasets distribute them.

Three formats, one result: rows of cells (``None``, ``str``, ``int``,
``float`` or ``bool``), with the spreadsheet's own 1-based row numbers kept so
that messages can point at "row 15".

- ``.xlsx`` / ``.xlsm`` through openpyxl (``read_only``, cached formula
  values); openpyxl's own warnings about unsupported extensions are logged
  at debug level instead of being raised;
- ``.xls`` through xlrd (numbers come back as floats there; integral floats
  are turned into ints so that every reader gives the same cells);
- ``.csv`` / ``.tsv`` / ``.txt`` through the :mod:`csv` module (UTF-8 with or
  without BOM; lines that are not UTF-8 are read as Windows-1252/Latin-1 with
  a warning naming them; the delimiter is sniffed among ``, ; TAB``).

:func:`escape_formula` is the one helper for every CSV mexkit writes: a text
cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
tab or carriage return first) gets a leading apostrophe;
:func:`unescape_formula` undoes it on reading.

:func:`find_header` locates the header row when it is not the first one
(SAMM and SAMM Long Videos put a title block above it) and :func:`read_table`
returns the rows below it as dictionaries keyed by normalised column names.
Sheets without a header (CAS(ME)^2) are read with :func:`read_rows`.
"""
from __future__ import annotations

import codecs
import contextlib
import contextvars
import csv
import io
import logging
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError

__all__ = [
    "Cell",
    "Row",
    "Table",
    "sheet_names",
    "read_rows",
    "read_workbook",
    "find_header",
    "read_table",
    "normalize_column",
    "cell_text",
    "escape_formula",
    "unescape_formula",
    "looks_like_sheet",
    "csv_encoding",
]

logger = logging.getLogger("mexkit")

Cell = Any  # None | str | int | float | bool

SPREADSHEET_EXTENSIONS = (".xlsx", ".xlsm", ".xls", ".csv", ".tsv", ".txt")


@dataclass(frozen=True)
class Row:
    """One sheet row: its 1-based number in the file and its cells."""

    number: int
    cells: tuple[Cell, ...]

    def is_blank(self) -> bool:
        """True when every cell is empty or whitespace."""
        return all(cell_text(c) == "" for c in self.cells)


@dataclass
class Table:
    """The rows below a header, keyed by normalised column name.

    Attributes
    ----------
    path : pathlib.Path
    sheet : str
        Sheet name (``""`` for CSV).
    header_row : int
        1-based number of the header row.
    columns : list of str
        The header cells as written (stripped).
    keys : list of str
        The normalised column names (see :func:`normalize_column`).
    rows : list of (int, dict)
        ``(row number, {key: cell})`` for each non-blank row below the header.
    """

    path: Path
    sheet: str
    header_row: int
    columns: list[str]
    keys: list[str]
    rows: list[tuple[int, dict[str, Cell]]] = field(default_factory=list)

    def where(self, row: int) -> str:
        """``"file.xlsx, sheet 'x', row 12"`` for messages."""
        sheet = f", sheet {self.sheet!r}" if self.sheet else ""
        return f"{self.path.name}{sheet}, row {row}"


def normalize_column(name: Cell) -> str:
    """Lower-case a header cell and drop everything but letters and digits.

    ``"OnsetFrame"``, ``"Onset Frame"`` and ``" onset_frame "`` all become
    ``"onsetframe"``; ``"Action Units"`` becomes ``"actionunits"``.
    """
    return re.sub(r"[^0-9a-z]+", "", cell_text(name).lower())


def cell_text(value: Cell) -> str:
    """A cell as stripped text (``""`` for empty; ints without ``.0``)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _clean(value: Any) -> Cell:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return str(value)  # dates, times: kept as text


def _suffix(path: Path) -> str:
    """The file's format as an extension; a file without a known one is told by its content."""
    suffix = path.suffix.lower()
    if suffix in SPREADSHEET_EXTENSIONS:
        if not path.is_file():
            raise DatasetError(f"annotation file {str(path)!r} does not exist")
        return suffix
    kind = _sniff(path) if path.is_file() else None
    if kind is None:
        raise DatasetError(f"cannot read annotation file {str(path)!r}: unknown extension "
                           f"{suffix!r} (expected one of {', '.join(SPREADSHEET_EXTENSIONS)})")
    return kind


# -- xlsx ------------------------------------------------------------------
def _open_xlsx(path: Path) -> Any:
    import openpyxl  # start-up: openpyxl is slow to import; only .xlsx sheets need it

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # openpyxl refuses other extensions by name; a file told by its content
            # (no extension) is handed over as bytes
            source = path if path.suffix.lower() in (".xlsx", ".xlsm") else io.BytesIO(
                path.read_bytes())
            wb = openpyxl.load_workbook(source, read_only=True, data_only=True)
        except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException ...
            raise DatasetError(f"cannot read spreadsheet {str(path)!r}: {exc}") from exc
    for w in caught:
        logger.debug("openpyxl on %s: %s", path.name, w.message)
    return wb


def _xlsx_sheets(path: Path) -> dict[str, list[Row]]:
    wb = _open_xlsx(path)
    try:
        out = {}
        for ws in wb.worksheets:
            # Writers other than Excel often store a wrong sheet dimension, which
            # read-only mode would trust and truncate the sheet to; ignore it.
            ws.reset_dimensions()
            rows = []
            for i, values in enumerate(ws.iter_rows(values_only=True), start=1):
                rows.append(Row(i, tuple(_clean(v) for v in values)))
            out[ws.title] = rows
        return out
    finally:
        wb.close()


# -- xls -------------------------------------------------------------------
def _xlrd_rows(sheet: Any) -> list[Row]:
    """Rows of an xlrd sheet: text stripped of nothing, numbers as int/float.

    xlrd cell types: 0 empty, 1 text, 2 number, 3 date (kept as its serial
    number), 4 boolean, 5 error (kept as ``None``), 6 blank.
    """
    rows = []
    for i in range(sheet.nrows):
        cells = []
        for c in sheet.row(i):
            if c.ctype in (0, 5, 6):
                cells.append(None)
            elif c.ctype == 4:
                cells.append(bool(c.value))
            else:
                cells.append(_clean(c.value))
        rows.append(Row(i + 1, tuple(cells)))
    return rows


def _xls_sheets(path: Path) -> dict[str, list[Row]]:
    import xlrd  # start-up: only .xls sheets need xlrd

    try:
        book = xlrd.open_workbook(str(path), on_demand=True)
    except Exception as exc:
        raise DatasetError(f"cannot read spreadsheet {str(path)!r}: {exc}") from exc
    try:
        return {name: _xlrd_rows(book.sheet_by_name(name)) for name in book.sheet_names()}
    finally:
        book.release_resources()


# -- csv -------------------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def escape_formula(value: Any) -> Any:
    """A cell value safe to write into a CSV that a spreadsheet may open.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    (which spreadsheets run as a formula) gets a leading apostrophe, unless
    it is a plain number such as ``-1`` or ``+0.5``; other values (numbers,
    ``None``) come back unchanged.

    Examples
    --------
    >>> escape_formula("=HYPERLINK(\"http://x\")")
    '\'=HYPERLINK("http://x")'
    >>> escape_formula("-0.25"), escape_formula(-3), escape_formula("sub01")
    ('-0.25', -3, 'sub01')
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        if not _NUMBER.fullmatch(value.strip()):
            return "'" + value
    return value


def unescape_formula(text: str) -> str:
    """Undo :func:`escape_formula` on a text cell read back."""
    if text.startswith("'") and text[1:].startswith(_FORMULA_START):
        return text[1:]
    return text


_ENCODING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mexkit_csv_encoding", default=None)


@contextlib.contextmanager
def csv_encoding(encoding: str | None) -> Iterator[None]:
    """Read CSV sheets in ``encoding`` inside the block (None: UTF-8, see the module notes).

    Raises
    ------
    DatasetError
        ``encoding`` is not a codec Python knows.
    """
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DatasetError(f"Invalid value for the 'encoding' parameter: {encoding!r} is "
                               "not a known text encoding (e.g. utf-8, cp1252, gbk).") from None
    token = _ENCODING.set(encoding)
    try:
        yield
    finally:
        _ENCODING.reset(token)


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM); lines that are not are decoded as cp1252 with a warning.

    Inside :func:`csv_encoding` the given encoding is used for the whole file.
    """
    encoding = _ENCODING.get()
    if encoding is not None:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise DatasetError(f"{path}: line {line} is not {encoding} text ({exc.reason}); "
                               "check the --encoding") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    bad = []
    out = []
    for i, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append(i)
            try:
                out.append(line.decode("cp1252"))
            except UnicodeDecodeError:
                out.append(line.decode("latin-1"))
    shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
    logger.warning("%s: %d line(s) are not UTF-8 (line %s); read as Windows-1252/Latin-1: "
                   "check their text, or name the sheet's encoding (--encoding)", path.name,
                   len(bad), shown)
    return "\n".join(out)


def _csv_rows(path: Path) -> list[Row]:
    raw = path.read_bytes()
    text = _decode(raw, path)
    sample = text[:8192]
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if path.suffix.lower() != ".tsv":
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        return [Row(i, tuple(_clean(v) for v in values))
                for i, values in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise DatasetError(f"cannot read CSV {str(path)!r}: {exc}") from exc


# -- public ----------------------------------------------------------------
def looks_like_sheet(path: str | Path) -> bool:
    """True when ``path`` is an annotation sheet rather than a video or image folder.

    Decided by the extension (``.xlsx``, ``.xlsm``, ``.xls``, ``.csv``,
    ``.tsv``, ``.txt``), else by the first bytes: an OLE2 workbook (``.xls``),
    a zip holding ``xl/workbook.xml`` (``.xlsx``), or short lines of text
    separated by commas, semicolons or tabs.
    """
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in SPREADSHEET_EXTENSIONS:
        return True
    return _sniff(path) is not None


def _sniff(path: Path) -> str | None:
    """``".xls"``, ``".xlsx"``, ``".csv"`` or None from a file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return ".xls"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                return ".xlsx" if "xl/workbook.xml" in zf.namelist() else None
        except (zipfile.BadZipFile, OSError):
            return None
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    lines = [ln for ln in text.splitlines()[:5] if ln.strip()]
    printable = all(ch.isprintable() or ch in "\t\r\n" for ch in text)
    if printable and lines and all(any(sep in ln for sep in (",", ";", "\t")) for ln in lines):
        return ".csv"
    return None


def read_workbook(path: str | Path) -> dict[str, list[Row]]:
    """All sheets of a spreadsheet, in workbook order, as rows of cells.

    A CSV file is one sheet named ``""``.

    Raises
    ------
    DatasetError
        Missing file, unknown extension, unreadable workbook.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx_sheets(path)
    if suffix == ".xls":
        return _xls_sheets(path)
    return {"": _csv_rows(path)}


def sheet_names(path: str | Path) -> list[str]:
    """Sheet names in workbook order (``[""]`` for CSV)."""
    return list(read_workbook(path))


def _select(book: Mapping[str, list[Row]], sheet: str | int | None,
            path: Path) -> tuple[str, list[Row]]:
    names = list(book)
    if sheet is None:
        sheet = 0
    if isinstance(sheet, int):
        if not 0 <= sheet < len(names):
            raise DatasetError(f"{path.name} has {len(names)} sheet(s); no sheet "
                               f"number {sheet}")
        return names[sheet], book[names[sheet]]
    if sheet not in book:
        raise DatasetError(f"{path.name} has no sheet {sheet!r} (sheets: "
                           f"{', '.join(repr(n) for n in names)})")
    return sheet, book[sheet]


def read_rows(path: str | Path, *, sheet: str | int | None = None) -> list[Row]:
    """Rows of one sheet (default: the first), including blank ones.

    Parameters
    ----------
    sheet : str or int, optional
        Sheet name or 0-based index.
    """
    return _select(read_workbook(path), sheet, Path(path))[1]


def find_header(rows: Sequence[Row], required: Iterable[Iterable[str] | str], *,
                max_scan: int = 60) -> int | None:
    """Index (into ``rows``) of the first row holding every required column.

    Parameters
    ----------
    rows : sequence of Row
    required : iterable
        Each item is a normalised column name or an iterable of
        alternatives (any one of them satisfies the item).
    max_scan : int
        How many rows to look at.

    Returns
    -------
    int or None
        ``None`` when no row within ``max_scan`` qualifies.
    """
    groups = [{req} if isinstance(req, str) else set(req) for req in required]
    for i, row in enumerate(rows[:max_scan]):
        keys = {normalize_column(c) for c in row.cells}
        if all(keys & g for g in groups):
            return i
    return None


def table_from_rows(path: str | Path, rows: Sequence[Row], header_index: int, *,
                    sheet: str = "") -> Table:
    """Build a :class:`Table` from rows and the index of the header row."""
    header = rows[header_index]
    columns = [cell_text(c) for c in header.cells]
    keys = [normalize_column(c) for c in header.cells]
    table = Table(Path(path), sheet, header.number, columns, keys)
    seen: dict[str, int] = {}
    for k in keys:
        if k:
            seen[k] = seen.get(k, 0) + 1
    dup = [k for k, n in seen.items() if n > 1]
    if dup:
        logger.warning("%s: the header repeats column(s) %s; the first of each is used",
                       table.where(header.number), ", ".join(repr(d) for d in dup))
    for row in rows[header_index + 1:]:
        if row.is_blank():
            continue
        record: dict[str, Cell] = {}
        for k, v in zip(keys, row.cells, strict=False):
            if k and k not in record:
                record[k] = v
        table.rows.append((row.number, record))
    return table


def read_table(path: str | Path, required: Iterable[Iterable[str] | str], *,
               sheet: str | int | None = None, max_scan: int = 60,
               expected: str = "") -> Table:
    """Read the table below the header row that holds the required columns.

    Parameters
    ----------
    path : str or Path
    required : iterable
        Normalised column names (or groups of alternatives) that identify
        the header row; see :func:`find_header`.
    sheet : str or int, optional
        Sheet name or index; by default the first sheet that has such a
        header.
    expected : str
        What the file should be, for the error message.

    Raises
    ------
    DatasetError
        No sheet holds a header with the required columns.
    """
    path = Path(path)
    required = [tuple([r]) if isinstance(r, str) else tuple(r) for r in required]
    book = read_workbook(path)
    if sheet is None:
        candidates: Mapping[str, list[Row]] = book
    else:
        name, rows = _select(book, sheet, path)
        candidates = {name: rows}
    for name, rows in candidates.items():
        idx = find_header(rows, required, max_scan=max_scan)
        if idx is not None:
            if idx > 0:
                logger.info("%s: header found on row %d", path.name, rows[idx].number)
            return table_from_rows(path, rows, idx, sheet=name)
    wanted = ", ".join("/".join(g) for g in required)
    raise DatasetError(f"{str(path)!r}{' (' + expected + ')' if expected else ''}: no header "
                       f"row with the columns {wanted} in the first {max_scan} rows of "
                       f"{'any sheet' if sheet is None else 'sheet ' + repr(sheet)}")
