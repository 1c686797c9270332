from __future__ import annotations

import numpy as np
import pytest

from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage


def _compute(task):
    r = np.random.default_rng(task.payload)
    return {"frames": r.integers(0, 256, (3, 8, 8), dtype=np.uint8)}, {}


@pytest.fixture
def small_store(tmp_path):
    """A store of 40 samples, one of them failed."""

    def compute(task):
        if task.payload == 7:
            raise ValueError("sample seven is broken")
        return _compute(task)

    path = tmp_path / "small.crop.h5"
    tasks = [Task(f"t/s{i % 5}/c{i:02d}", cache_key("crop", 1, {}, str(i)),
                  {"subject": f"s{i % 5}"}, i) for i in range(40)]
    run_stage(tasks, compute, output=path, stage="crop", params={"size": 8}, progress=False)
    return path
