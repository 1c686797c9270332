"""Pre-trained weights files: their provenance, and the check against a store.

``mexkit pretrain`` (:mod:`mexkit.pipeline.pretraining`) writes a model's
backbone weights as safetensors with their provenance in the file's
metadata (``mexkit_stage`` = ``"pretrain"``, the model, classes, settings,
history, source store, and ``sources``: a short digest of each pre-training
clip's source path and of its frames; ``subjects``: each clip's dataset and
subject). ``mexkit train`` reads them here: it refuses weights that saw the
clips it is about to test on, and under a subject-independent protocol
(LOSO, CDE, HDE) weights that saw any clip of a subject it evaluates
(:func:`check_weights`), and keys each fold on the file's digest
(:func:`weights_digest`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ..errors import ParameterError, StoreError

logger = logging.getLogger("mexkit")

__all__ = ["read_weights_metadata", "check_weights", "weights_digest", "sample_sources",
           "sample_subject", "SUBJECT_PROTOCOLS"]

#: Protocols whose test folds are whole subjects: pre-training on any clip of an
#: evaluated subject would let the backbone know the test subject.
SUBJECT_PROTOCOLS = ("loso", "cde", "hde")


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


def sample_subject(attrs: Mapping[str, Any]) -> str:
    """A sample's subject as ``dataset/subject`` (who the person is, across stores)."""
    return f"{attrs.get('dataset') or ''}/{attrs.get('subject') or ''}"


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


def check_weights(path: str | os.PathLike, store: Any, *, protocol: str | None = None
                  ) -> dict[str, str]:
    """Refuse pre-trained weights that saw clips of ``store``; return their metadata.

    Parameters
    ----------
    path : path-like
        The ``--weights`` file.
    store : Store
        The store about to be trained and tested on.
    protocol : str, optional
        The evaluation protocol; under one of :data:`SUBJECT_PROTOCOLS`,
        weights that saw any clip of a subject of ``store`` are refused too.

    Raises
    ------
    ParameterError
        If the file is missing, or if it was written by ``mexkit pretrain``
        from clips that ``store`` also holds (same source path or same
        frames): their test folds would score frames the backbone was
        trained on; or, under a subject-independent protocol, from clips of
        a subject that ``store`` holds (same dataset and subject): a test
        subject would not be unseen.
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
    if protocol in SUBJECT_PROTOCOLS:
        if "subjects" not in meta:
            logger.warning("the weights %s do not say which subjects they were pre-trained "
                           "on (made by an earlier mexkit); make them again with `mexkit "
                           "pretrain` so that %s can check them", p, protocol)
            return meta
        seen_subjects = set(json.loads(meta["subjects"]))
        evaluated = sorted({sample_subject(store[sid].attrs) for sid in store.sample_ids}
                           & seen_subjects)
        if evaluated:
            more = f" and {len(evaluated) - 3} more" if len(evaluated) > 3 else ""
            raise ParameterError(
                f"The weights {str(p)!r} were pre-trained on clips of {len(evaluated)} "
                f"subject(s) that {protocol} evaluates in {str(store.path)!r} "
                f"({', '.join(evaluated[:3])}{more}): a test subject would not be unseen. "
                "Pre-train on a store of other subjects (`mexkit pretrain`; synthetic data: "
                "`mexkit synth --first-subject N` numbers them apart).")
    return meta
