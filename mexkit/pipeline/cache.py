"""Cache keys: what decides whether a sample must be computed again.

``cache_key = sha256(stage, algorithm version, parameters, upstream key)``
where the upstream key is the producing store's ``cache_key`` of the same
sample, or, for the first stage, a content hash of the input files.  Moving
or touching an input file therefore changes nothing; editing a pixel, a
parameter or the algorithm version changes exactly the affected samples.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py

from ..errors import StoreError
from ..io.atomic import atomic_path
from ..io.store import (
    canonical_json,
    hash_arrays,
    open_store,
    validate_store,
    write_staged_sample,
)

__all__ = ["cache_key", "params_digest", "SampleCache", "CACHE_ENV", "reuse_index",
           "copy_from_store"]

logger = logging.getLogger("mexkit")

#: Environment variable naming the default shared cache folder (read by
#: :func:`mexkit.pipeline.options.run_setting` when a command gets no --cache).
CACHE_ENV = "MEXKIT_CACHE"


def params_digest(params: Mapping[str, Any]) -> str:
    """Short SHA-256 of a parameter mapping in canonical JSON."""
    return hashlib.sha256(canonical_json(dict(params)).encode()).hexdigest()[:16]


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
         "params": json.loads(canonical_json(dict(params))), "upstream": upstream},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


_KEY = re.compile(r"^[0-9a-f]{16,64}$")


class _Claim:
    """An exclusive lock on one cache key, held while this job computes it."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class SampleCache:
    """A content-addressed folder of finished samples, shared by many jobs.

    Each entry is one staged-sample file (the format workers stage, see
    :func:`mexkit.io.store.write_staged_sample`) at
    ``ROOT/<key[:2]>/<key>.h5``, where the key is the sample's cache key: the
    hash of the stage, its version, its parameters and the upstream sample's
    key.  Two runs, users or labs whose sample has the same key reuse the
    entry instead of computing it again.

    Safe for many writers at once: an entry is written under a temporary
    name and renamed into place (a reader sees the whole file or none), and
    a job takes an exclusive lock on ``<key>.lock`` before it computes a
    sample, so that two jobs on overlapping samples compute each sample once:
    the second waits for the first and then copies its result.  Entries are
    checked against their data hash when they are copied out.

    Parameters
    ----------
    root : path-like
        The cache folder (created if missing).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the cache folder {self.root}: {exc}") from exc
        if not self.root.is_dir():
            raise StoreError(f"the cache {self.root} is not a folder.")

    def _path(self, key: str, suffix: str = ".h5") -> Path:
        if not _KEY.match(key):
            raise StoreError(f"{self.root}: {key!r} is not a cache key.")
        return self.root / key[:2] / f"{key}{suffix}"

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def put(self, key: str, staged: str | os.PathLike[str]) -> Path:
        """Publish a staged sample under ``key`` (temporary name, then rename)."""
        final = self._path(key)
        final.parent.mkdir(exist_ok=True)
        with atomic_path(final) as tmp:
            shutil.copyfile(staged, tmp)
        return final

    def fetch(self, key: str, sample_id: str, staging: str | os.PathLike[str],
              compression: str = "gzip") -> Path | None:
        """Copy the entry for ``key`` into ``staging`` as ``sample_id``; None if absent.

        The arrays are checked against the entry's data hash; a damaged
        entry is reported, left alone and treated as absent.
        """
        src = self._path(key)
        if not src.is_file():
            return None
        try:
            with h5py.File(src, "r", locking=False) as fh:
                if str(fh.attrs.get("cache_key", "")) != key or "sample" not in fh:
                    raise StoreError("its cache key does not match its name")
                grp = fh["sample"]
                if any(not isinstance(grp[n], h5py.Dataset) for n in grp):
                    raise StoreError("it holds a group where an array belongs")
                arrays = {n: grp[n][()] for n in grp}
                attrs = {k: grp.attrs[k] for k in grp.attrs
                         if k not in ("sample_id", "cache_key", "data_hash")}
                expected = str(grp.attrs.get("data_hash", ""))
        except (OSError, KeyError, StoreError) as exc:
            logger.warning("cache entry %s is unreadable (%s); computing the sample", src, exc)
            return None
        if hash_arrays(arrays) != expected:
            logger.warning("cache entry %s does not match its data hash; computing the "
                           "sample", src)
            return None
        return write_staged_sample(staging, sample_id, key, arrays, attrs,
                                   compression=compression)

    def _lock_file(self, key: str) -> Any:
        path = self._path(key, ".lock")
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        return os.fdopen(fd, "r+b")

    def claim(self, key: str) -> _Claim | None:
        """Take the key for this job without waiting; None if another job holds it."""
        fh = self._lock_file(key)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return None
        return _Claim(fh)

    @contextlib.contextmanager
    def wait(self, key: str) -> Iterator[_Claim]:
        """Wait until no other job holds ``key``, then hold it for the block."""
        fh = self._lock_file(key)
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        claim = _Claim(fh)
        try:
            yield claim
        finally:
            claim.release()


def reuse_index(paths: list[str] | tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Index stores received from elsewhere by the cache keys of their samples.

    Each store must pass every check of ``mexkit validate`` first
    (:func:`mexkit.io.store.validate_store`: checksums, structure, data and
    content hashes); otherwise :class:`StoreError` names it.

    Returns
    -------
    dict
        ``cache_key -> (store path, sample id)``.
    """
    index: dict[str, tuple[str, str]] = {}
    for p in paths:
        problems = validate_store(p)
        if problems:
            raise StoreError(f"--reuse {p}: the store does not pass validation: {problems[0]}")
        with open_store(p) as s:
            for sid, key in s.cache_keys().items():
                if key:
                    index.setdefault(key, (str(p), sid))
    return index


def copy_from_store(path: str, source_id: str, sample_id: str, key: str,
                    staging: str | os.PathLike[str], compression: str = "gzip") -> Path:
    """Stage sample ``source_id`` of the store at ``path`` as ``sample_id`` (same key)."""
    with open_store(path) as s:
        view = s[source_id]
        arrays = view.arrays()
        if hash_arrays(arrays) != str(view.attrs.get("data_hash", "")):
            raise StoreError(f"--reuse {path}: sample {source_id!r} does not match its data "
                             "hash.")
        attrs = {k: v for k, v in view.attrs.items()
                 if k not in ("sample_id", "cache_key", "data_hash")}
    return write_staged_sample(staging, sample_id, key, arrays, attrs, compression=compression)
