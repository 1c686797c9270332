"""Tasks for the loky pool tests: importable by name in loky's worker processes."""
from __future__ import annotations

import os
import time


def recycled_after_this(chunk):
    """Sleep, then have loky recycle this worker after its next tasks.

    loky ends a worker whose resident memory grew by more than
    ``_MAX_MEMORY_LEAK_SIZE`` bytes since its first task, checked after each
    task at most once a second; a threshold below any growth makes that
    happen without allocating 300 MB.
    """
    from joblib.externals.loky import process_executor

    process_executor._MAX_MEMORY_LEAK_SIZE = -(2 ** 62)
    time.sleep(1.2)
    return [(x, os.getpid()) for x in chunk]


def nap(chunk):
    time.sleep(0.2)
    return [(x, os.getpid()) for x in chunk]
