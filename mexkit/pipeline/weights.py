"""Pre-trained weights files: their provenance, and the check against a store.

``mexkit pretrain`` (:mod:`mexkit.pipeline.pretraining`) writes a model's
backbone weights as safetensors with their provenance in the file's
metadata (``mexkit_stage`` = ``"pretrain"``, the model, classes, settings,
history, source store, and ``sources``: a short digest of each pre-training
clip's source path and of its frames). ``mexkit train`` reads them here: it
refuses weights that saw the clips it is about to test on
(:func:`check_weights`) and keys each fold on the file's digest
(:func:`weights_digest`).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ..errors import ParameterError, StoreError

__all__ = ["read_weights_metadata", "check_weights", "weights_digest", "sample_sources"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sample_sources(attrs: Mapping[str, Any]) -> list[str]:
    """Digests that identify a sample's clip: its source path and its frames' hash."""
    out = []
    source = attrs.get("source")
    if source:
        out.append("path:" + _digest(os.path.normpath(os.path.abspath(str(source)))))
    data = attrs.get("data_hash")
    if data:
        out.append("data:" + _digest(str(data)))
    return out


def read_weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a safetensors file (empty for a file without any).

    Raises
    ------
    StoreError
        If the file is missing or is not safetensors.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise StoreError(f"Cannot read the weights file {str(path)!r}: {exc}") from exc


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file (part of a training run's fold key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_weights(path: str | os.PathLike, store: Any) -> dict[str, str]:
    """Refuse pre-trained weights that saw clips of ``store``; return their metadata.

    Parameters
    ----------
    path : path-like
        The ``--weights`` file.
    store : Store
        The store about to be trained and tested on.

    Raises
    ------
    ParameterError
        If the file is missing, or if it was written by ``mexkit pretrain``
        from clips that ``store`` also holds (same source path or same
        frames): their test folds would score frames the backbone was
        trained on.
    StoreError
        If the file is not safetensors.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise ParameterError(f"The weights file {str(p)!r} {what} (--weights).")
    meta = read_weights_metadata(p)
    if meta.get("mexkit_stage") != "pretrain":
        return meta
    seen = set(json.loads(meta.get("sources", "[]")))
    shared = []
    for sid in store.sample_ids:
        if seen.intersection(sample_sources(store[sid].attrs)):
            shared.append(sid)
    if shared:
        more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
        raise ParameterError(
            f"The weights {str(p)!r} were pre-trained on {len(shared)} clip(s) of "
            f"{str(store.path)!r} ({', '.join(shared[:3])}{more}): their test folds would "
            "score frames the backbone has already learnt. Pre-train on a store of other "
            "subjects (`mexkit pretrain`).")
    return meta
