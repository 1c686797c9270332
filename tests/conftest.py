from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).parents[1] / "bench"


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


@pytest.fixture(scope="session")
def bench_script():
    """``bench_script("gpu_check")``: the script bench/gpu_check.py loaded as a module
    (the scripts are run as ``python bench/NAME.py``, not installed); each is taken out
    of ``sys.modules`` at the end of the session."""
    loaded: list[str] = []

    def load(name: str):
        module_name = f"_bench_{name}"
        spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loaded.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield load
    for module_name in loaded:
        sys.modules.pop(module_name, None)
