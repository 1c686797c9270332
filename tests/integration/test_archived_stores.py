"""Stores written by earlier versions of mexkit keep opening, validating and reading.

``tests/data/v<version>/`` holds one small store per stage, written by that
version with ``tools/make_archive_stores.sh``, and a manifest of what each
held (stage, content hash, arrays and their shapes). A change that stops
any of them from reading is a break of the store format.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mexkit.io.store import open_store, validate_store

DATA = Path(__file__).resolve().parents[1] / "data"
ARCHIVES = sorted(p for p in DATA.glob("v*/manifest.json"))
CASES = [(m.parent, name) for m in ARCHIVES for name in json.loads(m.read_text())]


def test_there_are_archived_stores():
    assert CASES, "tests/data/v*/ holds no archived stores"


@pytest.mark.parametrize(("folder", "name"), CASES, ids=lambda v: getattr(v, "name", v))
def test_archived_store_reads(folder, name):
    expected = json.loads((folder / "manifest.json").read_text())[name]
    path = folder / name
    assert validate_store(path) == []
    with open_store(path) as store:
        assert store.stage == expected["stage"]
        assert store.content_hash == expected["content_hash"]
        assert sorted(store.sample_ids) == sorted(expected["samples"])
        for sid, arrays in expected["samples"].items():
            sample = store[sid]
            assert sorted(sample.keys()) == sorted(arrays)
            for key, shape in arrays.items():
                data = sample.read(key)
                assert list(data.shape) == shape
                if data.dtype.kind == "f":
                    assert np.isfinite(data).all() or key in ("landmarks", "apex_used")
