"""Writers of annotation sheets and frame folders shared by the dataset tests."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import openpyxl

TINY = np.zeros((4, 4, 3), np.uint8)


def write_xlsx(path: Path, book: dict[str, list[list]]) -> Path:
    """An .xlsx file with one sheet per entry of ``book`` (name -> rows)."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in book.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def frames(folder: Path, numbers, pattern: str) -> Path:
    """Tiny black frames named ``pattern.format(n)`` for each number ``n``."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        assert cv2.imwrite(str(folder / pattern.format(n)), TINY)
    return folder
