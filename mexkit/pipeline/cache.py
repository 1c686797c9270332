"""Cache keys: what decides whether a sample must be computed again.

``cache_key = sha256(stage, algorithm version, parameters, upstream key)``
where the upstream key is the producing store's ``cache_key`` of the same
sample, or, for the first stage, a content hash of the input files.  Moving
or touching an input file therefore changes nothing; editing a pixel, a
parameter or the algorithm version changes exactly the affected samples.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..io.store import _canonical_json

__all__ = ["cache_key", "params_digest"]


def params_digest(params: Mapping[str, Any]) -> str:
    """Short SHA-256 of a parameter mapping in canonical JSON."""
    return hashlib.sha256(_canonical_json(dict(params)).encode()).hexdigest()[:16]


def cache_key(stage: str, version: str | int, params: Mapping[str, Any], upstream: str) -> str:
    """Return the cache key of one sample of one stage.

    Parameters
    ----------
    stage : str
        Stage name, e.g. ``"flow"``.
    version : str or int
        The algorithm version of the stage; bump it when results change.
    params : mapping
        Every parameter that changes the stage's output (JSON-serialisable).
    upstream : str
        The upstream sample's cache key, or the input files' content hash.
    """
    blob = json.dumps(
        {"stage": stage, "version": str(version),
         "params": json.loads(_canonical_json(dict(params))), "upstream": upstream},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
