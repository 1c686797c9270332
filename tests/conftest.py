from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded generator, so that every test sees the same random data."""
    return np.random.default_rng(20261123)
