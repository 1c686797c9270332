"""MEXKIT_CHECKPOINT_SECONDS: the seconds between two checkpoints of a fold."""
from __future__ import annotations

import pytest

from mexkit.errors import ParameterError
from mexkit.learn.folds import CHECKPOINT_SECONDS
from mexkit.pipeline.training import _checkpoint_seconds


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("MEXKIT_CHECKPOINT_SECONDS", raising=False)
    assert _checkpoint_seconds() == CHECKPOINT_SECONDS == 5.0
    monkeypatch.setenv("MEXKIT_CHECKPOINT_SECONDS", "  ")
    assert _checkpoint_seconds() == CHECKPOINT_SECONDS


@pytest.mark.parametrize("text, seconds", [("0", 0.0), ("2.5", 2.5), (" 30 ", 30.0)])
def test_a_number_of_seconds_is_taken(monkeypatch, text, seconds):
    monkeypatch.setenv("MEXKIT_CHECKPOINT_SECONDS", text)
    assert _checkpoint_seconds() == seconds


@pytest.mark.parametrize("text", ["abc", "-1", "nan"])
def test_anything_else_is_refused_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv("MEXKIT_CHECKPOINT_SECONDS", text)
    with pytest.raises(ParameterError, match=f"MEXKIT_CHECKPOINT_SECONDS='{text}'"):
        _checkpoint_seconds()
