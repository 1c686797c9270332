"""The store size limits in force: the defaults, or as the environment sets them.

One place reads ``MEXKIT_STORE_LIMITS`` (``"max_array_bytes=1e10,max_ratio=1000"``;
worker processes inherit it): the stages, the shared cache and ``mexkit inspect`` /
``validate`` open stores with :func:`store_limits`.
"""
from __future__ import annotations

import os

from ..io.store import DEFAULT_LIMITS, StoreLimits

__all__ = ["LIMITS_ENV", "store_limits"]

LIMITS_ENV = "MEXKIT_STORE_LIMITS"


def store_limits() -> StoreLimits:
    """The store size limits: :data:`~mexkit.io.store.DEFAULT_LIMITS`, or as set in
    the environment variable ``MEXKIT_STORE_LIMITS`` (``"max_array_bytes=1e10,
    max_ratio=1000"``), which worker processes inherit."""
    text = os.environ.get(LIMITS_ENV, "").strip()
    return StoreLimits.parse(text) if text else DEFAULT_LIMITS
