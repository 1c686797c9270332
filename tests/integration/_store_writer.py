"""A stage run that the crash test kills at random moments.

Usage: python _store_writer.py OUTPUT N_SAMPLES

Prints ``computed <id>`` when it starts computing a sample and ``staged <id>``
once the sample is safely staged, so the test knows what was finished.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage


def arrays_for(i: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(1000 + i)
    return {"frames": r.integers(0, 256, (6, 24, 24), dtype=np.uint8),
            "flow": r.normal(size=(5, 2, 24, 24)).astype(np.float32)}


def compute(task: Task):
    print(f"computed {task.sample_id}", flush=True)
    time.sleep(0.01 + 0.02 * (task.payload % 3))
    return arrays_for(task.payload), {"index": task.payload}


def tasks(n: int) -> list[Task]:
    return [Task(f"crash/s{i % 4}/c{i:03d}", cache_key("crash", 1, {}, str(i)),
                 {"subject": f"s{i % 4}", "clip": f"c{i:03d}"}, i) for i in range(n)]


class _Staged:
    """Wraps the writer's register() to report staged samples."""


if __name__ == "__main__":
    out, n = sys.argv[1], int(sys.argv[2])
    import mexkit.io.store as store

    original = store.StoreWriter.register

    def register(self, sid, key, path):
        original(self, sid, key, path)
        print(f"staged {sid}", flush=True)

    store.StoreWriter.register = register
    run_stage(tasks(n), compute, output=out, stage="crash", params={}, progress=False)
    print("finished", flush=True)
