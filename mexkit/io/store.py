"""HDF5 feature stores (schema v1): safe reading and crash-safe writing.

A store is one HDF5 file per stage output::

    /                      root attributes: mexkit_schema, stage, mexkit_version,
                           params (JSON), created (ISO 8601), upstream (JSON),
                           store_id, content_hash, failures (JSON)
    /samples/<quoted id>   one group per sample; attributes sample_id, subject,
                           clip, dataset, fps, label, emotion, onset, apex,
                           offset, cache_key, data_hash, ...; numeric datasets
                           (frames, landmarks, flow, pairs, strain, ...)

Datasets are chunked per frame, gzip-compressed with the shuffle filter and
carry fletcher32 checksums.  Only numeric arrays, strings and JSON text are
stored; never pickles.

The file starts with a 512-byte HDF5 *user block* (ignored by every HDF5
reader) that holds a magic line, the file length and the SHA-256 of all bytes
after the user block.  :func:`open_store` checks it before HDF5 parses a single
byte, so a truncated or bit-flipped store is refused with a :class:`StoreError`
instead of reaching the HDF5 C library.  Structural checks (no external or soft
links on any path component, no external storage, no virtual datasets, only
the gzip/lzf/shuffle/fletcher32 filters, no object, reference, opaque or
compound data) follow, still before any data is read.

Writing goes through :class:`StoreWriter`: every finished sample is written
to its own small file in a staging folder beside the output (temporary name,
fsync, rename), and the store is assembled from those into a temporary file
that is renamed into place.  A killed job therefore keeps its finished
samples, and a resumed job computes only the rest.  An existing store is never
opened for writing; a second writer on the same output is refused.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from .. import __version__
from ..errors import BusyError, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "Store",
    "SampleView",
    "StoreWriter",
    "open_store",
    "hash_arrays",
    "quote_id",
    "unquote_id",
]

logger = logging.getLogger("mexkit")

SCHEMA_VERSION = 1
USERBLOCK_SIZE = 512
_MAGIC = b"MEXKIT-STORE v1\n"
_HEADER_FMT = "length={length:d}\nsha256={digest}\n"
_ALLOWED_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
_NUMERIC_KINDS = "biuf"
_READ_BLOCK = 1 << 22
# HDF5 1.10 file format: checksummed metadata, readable by any HDF5 >= 1.10.
_LIBVER = ("v110", "v110")


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def quote_id(sample_id: str) -> str:
    """Return the HDF5 group name of a sample id (``/`` and ``%`` escaped)."""
    if not sample_id:
        raise StoreError("A sample id must not be empty.")
    return quote(sample_id, safe="-_+=,@~:")


def unquote_id(name: str) -> str:
    """Inverse of :func:`quote_id`."""
    return unquote(name)


def hash_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays``."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype.str).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _chunks_for(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(shape) == 0 or 0 in shape:
        return None
    if len(shape) == 1:
        return (min(shape[0], 65536),)
    return (1,) + tuple(shape[1:])


def _clean_attr(value: Any) -> Any:
    """Turn a Python value into something HDF5 stores without pickling."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (int, np.integer)):
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC_KINDS:
        return value
    # lists, dicts, tuples: JSON text with a marker prefix
    return "json:" + _canonical_json(value)


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if value.startswith("json:"):
            try:
                return json.loads(value[5:])
            except ValueError:
                return value
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------
# user block: length and checksum of the file
# --------------------------------------------------------------------------
def _seal(path: Path) -> str:
    """Write the checksum header into the user block of a closed file."""
    h = hashlib.sha256()
    with open(path, "r+b") as fh:
        fh.seek(USERBLOCK_SIZE)
        while True:
            block = fh.read(_READ_BLOCK)
            if not block:
                break
            h.update(block)
        length = fh.tell()
        digest = h.hexdigest()
        header = _MAGIC + _HEADER_FMT.format(length=length, digest=digest).encode()
        fh.seek(0)
        fh.write(header.ljust(USERBLOCK_SIZE, b"\0"))
        fh.flush()
        os.fsync(fh.fileno())
    return digest


def _check_seal(path: Path) -> str:
    """Verify the user-block checksum; return the digest or raise StoreError."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(USERBLOCK_SIZE)
            if len(head) < USERBLOCK_SIZE or not head.startswith(_MAGIC):
                raise StoreError(
                    f"{path}: not a mexkit store (no mexkit header; the file is "
                    "truncated, corrupt or was written by another program)."
                )
            try:
                text = head[len(_MAGIC):].split(b"\0", 1)[0].decode("ascii")
                fields = dict(line.split("=", 1) for line in text.splitlines() if line)
                length = int(fields["length"])
                digest = fields["sha256"]
            except (ValueError, KeyError, UnicodeDecodeError) as exc:
                raise StoreError(f"{path}: the mexkit header is corrupt.") from exc
            if length != size:
                raise StoreError(
                    f"{path}: the file is {size} bytes long but was written with "
                    f"{length} bytes (truncated or appended to)."
                )
            h = hashlib.sha256()
            while True:
                block = fh.read(_READ_BLOCK)
                if not block:
                    break
                h.update(block)
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"{path}: cannot read the file ({exc.strerror or exc}).") from exc
    if h.hexdigest() != digest:
        raise StoreError(f"{path}: checksum mismatch: the file is corrupt.")
    return digest


# --------------------------------------------------------------------------
# structural safety checks (run before any data is read)
# --------------------------------------------------------------------------
def _check_attrs(path: Path, obj: Any, where: str) -> None:
    import h5py

    for name in obj.attrs:
        dt = obj.attrs.get_id(name).dtype
        if dt.kind in _NUMERIC_KINDS:
            continue
        if h5py.check_string_dtype(dt) is not None:
            continue
        raise StoreError(
            f"{path}: attribute {name!r} of {where} has unsupported type {dt} "
            "(only numbers and strings are allowed; object, opaque and reference "
            "attributes are refused)."
        )


def _check_dataset(path: Path, ds: Any, where: str) -> None:
    import h5py

    dcpl = ds.id.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        raise StoreError(f"{path}: {where} is a virtual dataset, which is refused.")
    if dcpl.get_external_count() > 0:
        raise StoreError(f"{path}: {where} uses external storage, which is refused.")
    for i in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(i)[0]
        if code not in _ALLOWED_FILTERS:
            raise StoreError(
                f"{path}: {where} uses HDF5 filter {code}; only gzip, lzf, shuffle "
                "and fletcher32 are allowed."
            )
    if ds.dtype.kind not in _NUMERIC_KINDS or ds.dtype.fields is not None:
        raise StoreError(
            f"{path}: {where} has data type {ds.dtype}; only numeric datasets are allowed."
        )


def _check_structure(path: Path, root: Any) -> None:
    """Walk every link of the file; refuse anything that could run or read elsewhere."""
    import h5py

    seen: set[Any] = set()

    def walk(group: Any, prefix: str) -> None:
        key = h5py.h5o.get_info(group.id).addr
        if key in seen:
            raise StoreError(f"{path}: group {prefix or '/'} is linked twice (a cycle).")
        seen.add(key)
        _check_attrs(path, group, prefix or "/")
        for name in group:
            where = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise StoreError(
                    f"{path}: {where} is an external link to {link.filename!r}; "
                    "external links are refused."
                )
            if isinstance(link, h5py.SoftLink):
                raise StoreError(f"{path}: {where} is a soft link; links are refused.")
            obj = group[name]
            if isinstance(obj, h5py.Group):
                walk(obj, where)
            elif isinstance(obj, h5py.Dataset):
                _check_attrs(path, obj, where)
                _check_dataset(path, obj, where)
            else:
                raise StoreError(f"{path}: {where} is a {type(obj).__name__}, which is refused.")

    walk(root, "")


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------
def _guard(method: Any) -> Any:
    """Turn any h5py/HDF5 failure inside a read method into a StoreError."""
    import functools

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            path = getattr(self, "path", None) or getattr(self._store, "path", "?")
            raise StoreError(f"{path}: malformed store ({type(exc).__name__}: {exc}).") from exc

    return wrapper


class SampleView:
    """One sample of an open store: attributes and lazily read arrays."""

    def __init__(self, store: Store, group: Any) -> None:
        self._store = store
        self._group = group
        self.attrs: dict[str, Any] = {
            k: _decode_attr(group.attrs[k]) for k in group.attrs
        }
        self.sample_id: str = self.attrs.get("sample_id", unquote_id(group.name.split("/")[-1]))

    @_guard
    def keys(self) -> list[str]:
        """Names of the arrays of this sample."""
        return sorted(self._group.keys())

    @_guard
    def __contains__(self, name: str) -> bool:
        return name in self._group

    @_guard
    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._group[name].shape)

    @_guard
    def dtype(self, name: str) -> np.dtype:
        return self._group[name].dtype

    def read(self, name: str, index: Any = ...) -> np.ndarray:
        """Read array ``name`` (or a slice of it); checksums are verified."""
        if name not in self._group:
            raise StoreError(
                f"{self._store.path}: sample {self.sample_id!r} has no array {name!r} "
                f"(it has {', '.join(self.keys()) or 'none'})."
            )
        try:
            return np.asarray(self._group[name][index])
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"{self._store.path}: cannot read {name!r} of sample {self.sample_id!r}: {exc}"
            ) from exc

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(name)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self.keys()}


@dataclass
class Store:
    """An open, checked, read-only feature store.  Use :func:`open_store`."""

    path: Path
    _file: Any = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> int:
        return int(self.meta["mexkit_schema"])

    @property
    def stage(self) -> str:
        return str(self.meta.get("stage", ""))

    @property
    def params(self) -> dict[str, Any]:
        return self.meta.get("params", {})

    @property
    def upstream(self) -> list[dict[str, Any]]:
        return self.meta.get("upstream", [])

    @property
    def failures(self) -> dict[str, str]:
        return self.meta.get("failures", {})

    @property
    def store_id(self) -> str:
        return str(self.meta.get("store_id", ""))

    @property
    def content_hash(self) -> str:
        return str(self.meta.get("content_hash", ""))

    @property
    @_guard
    def sample_ids(self) -> list[str]:
        if "samples" not in self._file:
            return []
        return [unquote_id(n) for n in self._file["samples"]]

    def __len__(self) -> int:
        return len(self.sample_ids)

    @_guard
    def __contains__(self, sample_id: str) -> bool:
        return "samples" in self._file and quote_id(sample_id) in self._file["samples"]

    @_guard
    def __getitem__(self, sample_id: str) -> SampleView:
        if sample_id not in self:
            raise StoreError(f"{self.path}: no sample {sample_id!r} in this store.")
        return SampleView(self, self._file["samples"][quote_id(sample_id)])

    def __iter__(self) -> Iterator[SampleView]:
        for sid in self.sample_ids:
            yield self[sid]

    @_guard
    def cache_keys(self) -> dict[str, str]:
        return {s.sample_id: str(s.attrs.get("cache_key", "")) for s in self}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @_guard
    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: provenance, samples, arrays, failures."""
        arrays: dict[str, dict[str, Any]] = {}
        samples = []
        for s in self:
            samples.append(s.sample_id)
            for name in s.keys():
                entry = arrays.setdefault(name, {"dtype": str(s.dtype(name)), "shapes": {}})
                shape = "x".join(str(d) for d in s.shape(name))
                entry["shapes"][shape] = entry["shapes"].get(shape, 0) + 1
        return {
            "path": str(self.path),
            "schema": self.schema,
            "stage": self.stage,
            "mexkit_version": self.meta.get("mexkit_version"),
            "created": self.meta.get("created"),
            "store_id": self.store_id,
            "content_hash": self.content_hash,
            "params": self.params,
            "upstream": self.upstream,
            "n_samples": len(samples),
            "samples": samples,
            "arrays": arrays,
            "failures": self.failures,
        }


def open_store(path: str | os.PathLike[str], *, verify: bool = True) -> Store:
    """Open a feature store for reading, after checking that it is safe.

    Parameters
    ----------
    path : path-like
        The store file.
    verify : bool, default True
        Check the whole-file SHA-256 recorded in the user block before HDF5
        parses the file.  Structural safety checks run either way.

    Returns
    -------
    Store
        A read-only view; close it (or use it as a context manager).

    Raises
    ------
    StoreError
        For a missing, truncated, corrupt or unsafe file, a file that is not
        a mexkit store, or a store written by a newer schema.  No other
        exception type escapes.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store.")
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a store file.")
    if verify:
        _check_seal(path)
    try:
        import h5py

        fh = h5py.File(path, "r", locking=False)
    except Exception as exc:
        raise StoreError(f"{path}: not a readable HDF5 file ({exc}).") from exc
    try:
        _check_structure(path, fh)
        meta = {k: _decode_attr(fh.attrs[k]) for k in fh.attrs}
        if "mexkit_schema" not in meta:
            raise StoreError(f"{path}: not a mexkit store (no 'mexkit_schema' attribute).")
        try:
            schema = int(meta["mexkit_schema"])
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{path}: invalid mexkit_schema {meta['mexkit_schema']!r}.") from exc
        if schema > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written by a newer version of mexkit "
                f"({meta.get('mexkit_version', '?')}, store schema {schema}); this "
                f"version ({__version__}) reads schemas up to {SCHEMA_VERSION}. "
                "Upgrade mexkit."
            )
        for key in ("params", "upstream", "failures"):
            if isinstance(meta.get(key), str):
                try:
                    meta[key] = json.loads(meta[key])
                except ValueError as exc:
                    raise StoreError(f"{path}: root attribute {key!r} is not valid JSON.") from exc
        if "samples" in fh and not isinstance(fh["samples"], h5py.Group):
            raise StoreError(f"{path}: '/samples' is not a group.")
        return Store(path=path, _file=fh, meta=meta)
    except StoreError:
        fh.close()
        raise
    except Exception as exc:
        fh.close()
        raise StoreError(f"{path}: malformed store ({type(exc).__name__}: {exc}).") from exc


def validate_store(path: str | os.PathLike[str]) -> list[str]:
    """Return a list of problems with the store at ``path`` (empty when valid).

    Every check of :func:`open_store` runs, then every array is read in full
    (verifying its fletcher32 checksums), each sample's required attributes
    are checked, and the recorded content hash is recomputed.  Samples that
    failed when the store was made are not problems of the file; they are in
    ``Store.failures``.
    """
    problems: list[str] = []
    try:
        store = open_store(path)
    except StoreError as exc:
        return [str(exc)]
    with store:
        h = hashlib.sha256()
        for sid in sorted(store.sample_ids):
            try:
                s = store[sid]
                arrays = s.arrays()
            except StoreError as exc:
                problems.append(str(exc))
                continue
            for attr in ("sample_id", "cache_key", "data_hash"):
                if attr not in s.attrs:
                    problems.append(f"{path}: sample {sid!r} has no {attr!r} attribute.")
            if s.attrs.get("data_hash") != hash_arrays(arrays):
                problems.append(f"{path}: sample {sid!r}: data does not match its data_hash.")
            h.update(f"{sid}\0{s.attrs.get('data_hash', '')}\n".encode())
        if store.content_hash and h.hexdigest() != store.content_hash:
            problems.append(f"{path}: content hash does not match the samples.")
    return problems


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def _write_group(group: Any, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
                 compression: str) -> None:
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.dtype.kind not in _NUMERIC_KINDS:
            raise StoreError(f"array {name!r} has non-numeric dtype {a.dtype}; not storable.")
        kwargs: dict[str, Any] = {}
        chunks = _chunks_for(a.shape)
        if chunks is not None:
            kwargs.update(chunks=chunks, fletcher32=True, shuffle=True)
            if compression == "gzip":
                kwargs.update(compression="gzip", compression_opts=4)
            elif compression == "lzf":
                kwargs.update(compression="lzf")
        group.create_dataset(name, data=a, **kwargs)
    for key, value in attrs.items():
        clean = _clean_attr(value)
        if clean is not None:
            group.attrs[key] = clean


@dataclass
class _Finished:
    sample_id: str
    cache_key: str
    path: Path


class StoreWriter:
    """Crash-safe writer of one output store.

    Parameters
    ----------
    path : path-like
        The output store.  It is replaced atomically by :meth:`finalize`.
    stage : str
        Name of the stage that writes it (``"crop"``, ``"flow"``, ...).
    params : mapping
        The stage's parameters (stored as JSON with sorted keys).
    upstream : list of dict
        ``{"store_id", "content_hash", "stage", "path"}`` of each input store.
    compression : {"gzip", "lzf"}
        Dataset compression; gzip is readable everywhere.

    Notes
    -----
    Use it as a context manager.  On entry it takes an exclusive lock on the
    staging folder ``<path>.staging`` (a second writer gets
    :class:`BusyError`), removes temporary files left by a killed run, and
    indexes the samples already finished there or in an existing store.
    Workers call :func:`write_staged_sample` with :attr:`staging` (they never
    share an HDF5 file); :meth:`finalize` assembles the store.
    """

    def __init__(self, path: str | os.PathLike[str], *, stage: str,
                 params: Mapping[str, Any], upstream: Iterable[Mapping[str, Any]] = (),
                 compression: str = "gzip") -> None:
        if compression not in ("gzip", "lzf"):
            raise StoreError(f"unknown compression {compression!r}; use 'gzip' or 'lzf'.")
        self.path = Path(path)
        self.stage = stage
        self.params = dict(params)
        self.upstream = [dict(u) for u in upstream]
        self.compression = compression
        self.staging = self.path.with_name(self.path.name + ".staging")
        self._lock_fh: Any = None
        self._staged: dict[str, _Finished] = {}
        self._existing: dict[str, str] = {}

    # -- locking and discovery ------------------------------------------
    def __enter__(self) -> StoreWriter:
        if self.path.is_dir():
            raise StoreError(f"{self.path}: the output is a folder.")
        if not self.path.parent.exists():
            raise StoreError(f"{self.path}: the folder {self.path.parent} does not exist.")
        self.staging.mkdir(exist_ok=True)
        lock = open(self.staging / "lock", "a+b")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise BusyError(
                f"{self.path}: another mexkit process is writing this store "
                f"(lock held on {self.staging / 'lock'}); wait for it or choose another output."
            ) from exc
        self._lock_fh = lock
        self._clean_leftovers()
        self._index()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _clean_leftovers(self) -> None:
        n = 0
        for p in self.staging.glob(".tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
        for p in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
        if n:
            logger.info("removed %d temporary file(s) left by an interrupted run", n)

    def _index(self) -> None:
        if self.path.exists():
            try:
                with open_store(self.path) as old:
                    self._existing = old.cache_keys()
            except StoreError as exc:
                logger.warning("ignoring the existing output (%s); it will be replaced", exc)
                self._existing = {}
        for p in sorted(self.staging.glob("*.h5")):
            if p.name.startswith("."):
                continue
            try:
                sid, key = _read_staged_header(p)
            except StoreError as exc:
                logger.warning("removing unreadable staged sample %s (%s)", p.name, exc)
                p.unlink(missing_ok=True)
                continue
            self._staged[sid] = _Finished(sid, key, p)

    def finished(self, sample_id: str, cache_key: str) -> bool:
        """True if the sample is already done with this cache key."""
        st = self._staged.get(sample_id)
        if st is not None and st.cache_key == cache_key:
            return True
        return self._existing.get(sample_id) == cache_key

    def write_sample(self, sample_id: str, cache_key: str, arrays: Mapping[str, np.ndarray],
                     attrs: Mapping[str, Any]) -> Path:
        """Stage one finished sample (in this process)."""
        p = write_staged_sample(self.staging, sample_id, cache_key, arrays, attrs,
                                compression=self.compression)
        self._staged[sample_id] = _Finished(sample_id, cache_key, p)
        return p

    def register(self, sample_id: str, cache_key: str,
                 staged_path: str | os.PathLike[str]) -> None:
        """Record a sample that a worker staged."""
        self._staged[sample_id] = _Finished(sample_id, cache_key, Path(staged_path))

    # -- assembly ----------------------------------------------------------
    def finalize(self, sample_ids: Iterable[str], cache_keys: Mapping[str, str],
                 failures: Mapping[str, str] | None = None) -> Path:
        """Assemble the store from staged and existing samples, atomically.

        Parameters
        ----------
        sample_ids : iterable of str
            The samples the output must hold, in order.  Samples that failed
            are listed in ``failures`` instead.
        cache_keys : mapping
            The expected cache key of each sample.
        failures : mapping, optional
            ``sample_id -> one-line reason`` for the samples that failed.
        """
        import h5py

        failures = dict(failures or {})
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        old = None
        try:
            if any(self._existing.get(s) == cache_keys.get(s) for s in sample_ids):
                old = open_store(self.path)
            digest = hashlib.sha256()
            with h5py.File(tmp, "x", userblock_size=USERBLOCK_SIZE, libver=_LIBVER) as out:
                grp = out.create_group("samples")
                for sid in sorted(sample_ids):
                    if sid in failures:
                        continue
                    key = cache_keys[sid]
                    name = quote_id(sid)
                    staged = self._staged.get(sid)
                    if staged is not None and staged.cache_key == key:
                        with h5py.File(staged.path, "r", locking=False) as src:
                            src.copy(src["sample"], grp, name=name)
                    elif old is not None and self._existing.get(sid) == key:
                        old._file.copy(old._file["samples"][name], grp, name=name)
                    else:
                        raise StoreError(f"{self.path}: sample {sid!r} was neither computed "
                                         "nor found in the staging folder.")
                    digest.update(f"{sid}\0{grp[name].attrs.get('data_hash', '')}\n".encode())
                out.attrs["mexkit_schema"] = SCHEMA_VERSION
                out.attrs["stage"] = self.stage
                out.attrs["mexkit_version"] = __version__
                out.attrs["params"] = _canonical_json(self.params)
                out.attrs["upstream"] = _canonical_json(self.upstream)
                out.attrs["created"] = _now()
                out.attrs["store_id"] = uuid.uuid4().hex
                out.attrs["content_hash"] = digest.hexdigest()
                out.attrs["failures"] = _canonical_json(failures)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            if old is not None:
                old.close()
        _seal(tmp)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._remove_staging()
        return self.path

    def _remove_staging(self) -> None:
        for p in self.staging.iterdir():
            if p.name != "lock":
                p.unlink(missing_ok=True)
        # The lock file goes last; the lock itself is released in __exit__.
        with contextlib.suppress(OSError):
            (self.staging / "lock").unlink()
            self.staging.rmdir()


def staged_name(sample_id: str, cache_key: str) -> str:
    """File name of a staged sample (safe for any file system)."""
    return hashlib.sha256(sample_id.encode()).hexdigest()[:24] + f"-{cache_key[:16]}.h5"


def write_staged_sample(staging: str | os.PathLike[str], sample_id: str, cache_key: str,
                        arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *,
                        compression: str = "gzip") -> Path:
    """Write one finished sample into the staging folder, atomically.

    Safe to call from worker processes: each sample gets its own file,
    written under a temporary name, fsynced and renamed into place.
    """
    import h5py

    staging = Path(staging)
    final = staging / staged_name(sample_id, cache_key)
    tmp = staging / f".tmp-{os.getpid()}-{secrets.token_hex(6)}.h5"
    full_attrs = dict(attrs)
    full_attrs["sample_id"] = sample_id
    full_attrs["cache_key"] = cache_key
    full_attrs["data_hash"] = hash_arrays(arrays)
    try:
        with h5py.File(tmp, "x", libver=_LIBVER) as fh:
            fh.attrs["sample_id"] = sample_id
            fh.attrs["cache_key"] = cache_key
            _write_group(fh.create_group("sample"), arrays, full_attrs, compression)
        with open(tmp, "rb+") as fd:
            os.fsync(fd.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(staging)
    return final


def _read_staged_header(path: Path) -> tuple[str, str]:
    try:
        import h5py

        with h5py.File(path, "r", locking=False) as fh:
            sid = _decode_attr(fh.attrs["sample_id"])
            key = _decode_attr(fh.attrs["cache_key"])
            if "sample" not in fh:
                raise StoreError(f"{path}: no sample group")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{path}: {exc}") from exc
    return str(sid), str(key)


def remove_store(path: str | os.PathLike[str]) -> None:
    """Delete a store and its staging folder (used by tests and --force)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    staging = path.with_name(path.name + ".staging")
    if staging.exists():
        shutil.rmtree(staging)
