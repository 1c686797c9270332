from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _signing_key(tmp_path_factory):
    """Stores and cache entries are signed with a key of the test session, not the
    user's own (~/.config/mexkit); child processes inherit it."""
    if "MEXKIT_KEY" not in os.environ:
        os.environ["MEXKIT_KEY"] = str(tmp_path_factory.mktemp("key") / "signing-key.pem")
    yield


@pytest.fixture
def rng():
    """A seeded generator, so that every test sees the same random data."""
    return np.random.default_rng(20261123)
