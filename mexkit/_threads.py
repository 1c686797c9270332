"""The ``mexkit`` command's BLAS threads, set before numpy is loaded.

OpenBLAS sizes its thread pool when numpy loads it: a pool of two threads started and
then limited (:func:`mexkit.pipeline.options.limit_blas_threads`, threadpoolctl) cost a
command about 0.1 s of CPU (``mexkit flow`` on 64 pairs: 1.74-1.80 s of CPU against
1.63-1.67 s with the variable set here). This module imports nothing but ``os``
and ``sys``, so the entry point can call it before anything loads numpy.
"""
from __future__ import annotations

import os
import sys

#: OpenBLAS's thread count; the command runs one unless the user set it
BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"


def one_blas_thread_before_numpy() -> bool:
    """Set :data:`BLAS_THREADS_ENV` to 1 unless it is set or numpy is loaded already
    (then :func:`~mexkit.pipeline.options.limit_blas_threads` limits the loaded
    library). Returns whether it set it."""
    if BLAS_THREADS_ENV in os.environ or "numpy" in sys.modules:
        return False
    os.environ[BLAS_THREADS_ENV] = "1"
    return True
