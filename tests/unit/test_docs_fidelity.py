"""docs/fidelity.md (issue 25): every remaining difference between a paper, its authors'
code and mexkit is in ONE table with the columns model | topic | paper | authors' code |
mexkit, every row filled in, every system of mexkit's fidelity work in it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "fidelity.md"
COLUMNS = ["model", "topic", "paper", "authors' code", "mexkit"]
#: The systems whose differences the table must cover (the scorer as its own model).
SYSTEMS = {"MEAN", "MEAN scorer", "MERSiamC3D", "AKMNet", "PSN", "STSTNet", "HTNet"}


def _cells(line: str) -> list[str]:
    """The cells of one markdown table row (an escaped ``\\|`` stays inside its cell)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table of a markdown text as (header cells, body rows), the separator dropped."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    current: tuple[list[str], list[list[str]]] | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            current = None
            continue
        cells = _cells(line)
        if current is None:
            current = (cells, [])
            tables.append(current)
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            current[1].append(cells)
    return tables


def _difference_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """The tables that compare sources: a header naming the paper or the authors' code."""
    return [t for t in _tables(text)
            if {c.lower() for c in t[0]} & {"paper", "authors' code", "authors code"}]


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_parser_sees_tables_and_rows():
    doc = ("| a | b |\n|---|---|\n| 1 | `x \\| y` |\n\ntext\n\n"
           "| model | paper |\n|---|---|\n| M | p |\n| N | q |\n")
    tables = _tables(doc)
    assert [t[0] for t in tables] == [["a", "b"], ["model", "paper"]]
    assert tables[0][1] == [["1", "`x \\| y`"]]
    assert len(tables[1][1]) == 2
    assert len(_difference_tables(doc)) == 1


def test_exactly_one_difference_table_with_the_five_columns(text):
    tables = _difference_tables(text)
    assert len(tables) == 1, [t[0] for t in tables]
    assert tables[0][0] == COLUMNS


def test_every_row_has_five_filled_cells(text):
    (_, rows), = _difference_tables(text)
    assert len(rows) > 0
    for row in rows:
        assert len(row) == len(COLUMNS), row
        assert all(row), row


def test_every_system_is_in_the_model_column(text):
    (_, rows), = _difference_tables(text)
    models = {row[0] for row in rows}
    assert SYSTEMS <= models, SYSTEMS - models


def test_links_into_the_page_land_on_a_heading():
    """A link ``fidelity.md#anchor`` from the docs, README or CONTRIBUTING names one of the
    page's headings (GitHub's anchors: lower case, punctuation dropped, spaces to -)."""
    anchors = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    sources = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md",
               ROOT / "CONTRIBUTING.md"]
    for path in sources:
        if not path.exists():
            continue
        for anchor in re.findall(r"fidelity\.md#([\w-]+)", path.read_text(encoding="utf-8")):
            assert anchor in anchors, (path.name, anchor)
