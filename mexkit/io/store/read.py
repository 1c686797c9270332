"""Reading a store: :func:`open_store` checks a file before HDF5 parses it and
returns a read-only :class:`Store`; :func:`validate_store` reads every array
and recomputes every hash.

No exception type other than :class:`~mexkit.errors.StoreError` escapes
from opening or reading a store: HDF5's own failures are wrapped.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...errors import StoreError
from .format import (
    _MAX_JSON_DEPTH,
    _READ_BLOCK,
    DEFAULT_LIMITS,
    HASH_VERSION,
    SCHEMA_VERSION,
    StoreLimits,
    _attr_bytes,
    _attrs_hash,
    _check_seal,
    _check_structure,
    _decode_attr,
    _decode_attrs,
    _json_depth,
    _sample_digest_line,
    quote_id,
    read_seal,
    seal_message,
    unquote_id,
)


def _guard(method: Any) -> Any:
    """Turn any h5py/HDF5 failure inside a read method into a StoreError."""

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


def _read_whole(group: Any, name: str) -> np.ndarray:
    """Dataset ``name`` of h5py ``group`` whole, as ``group[name][...]`` reads it.

    Through h5py's low-level calls (a third of the time for the small arrays a
    stage reads per sample: h5py's selection machinery costs more than the read);
    filters and checksums are applied by HDF5 as for any read.
    """
    import h5py  # start-up: h5py, only when a store is opened

    ds = h5py.h5d.open(group.id, name.encode("utf-8"))
    shape = ds.shape
    if shape is None or 0 in shape:  # an empty dataspace or array: h5py's way
        return np.asarray(group[name][...])
    out = np.empty(shape, dtype=ds.dtype)
    ds.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


class SampleView:
    """One sample of an open store: attributes and lazily read arrays."""

    def __init__(self, store: Store, group: Any, raw: dict[str, Any] | None = None) -> None:
        self._store = store
        self._group = group
        fallback = unquote_id(group.name.split("/")[-1])
        where = f"{store.path}: sample {fallback!r}"
        # raw: the attributes as read while the store was checked (open_store)
        self.attrs: dict[str, Any] = (_decode_attrs(group, where) if raw is None else
                                      {k: _decode_attr(v, where, k) for k, v in raw.items()})
        self.sample_id: str = self.attrs.get("sample_id", fallback)

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
            if index is Ellipsis:  # the whole array: HDF5's read without h5py's selection
                return _read_whole(self._group, name)
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
    # sample views made so far: their attributes are decoded once per open store
    _views: dict[str, SampleView] = field(default_factory=dict, repr=False, compare=False)
    # each sample group's raw attributes, read by the structural check (by group name)
    _raw_attrs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False,
                                                  compare=False)

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

    def signed_by(self, trusted: Any) -> str:
        """'' if the file is signed by a key of ``trusted`` (a
        :class:`mexkit.io.signing.TrustedKeys`) and its signature matches its
        checksum, else why not.  The checksum itself is checked by
        :func:`open_store` (``verify=True``) and :func:`validate_store`."""

        seal = read_seal(self.path)
        try:
            message = seal_message(seal.get("sha256", ""), int(seal.get("length", "-1")))
        except ValueError:
            return "its header is corrupt"
        return trusted.check(seal.get("signer", ""), message, seal.get("signature", ""))

    @property
    def signer(self) -> str:
        """Key id of the key that signed the store ('' if unsigned)."""

        return read_seal(self.path).get("signer", "")

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
        view = self._views.get(sample_id)
        if view is not None:
            return view
        if sample_id not in self:
            raise StoreError(f"{self.path}: no sample {sample_id!r} in this store.")
        name = quote_id(sample_id)
        view = self._views[sample_id] = SampleView(
            self, self._file["samples"][name], self._raw_attrs.pop(name, None))
        return view

    def __iter__(self) -> Iterator[SampleView]:
        for sid in self.sample_ids:
            yield self[sid]

    @_guard
    def cache_keys(self) -> dict[str, str]:
        return {s.sample_id: str(s.attrs.get("cache_key", "")) for s in self}

    def close(self) -> None:
        self._views.clear()
        self._raw_attrs.clear()
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
            "signer": self.signer,
            "shard": self.shard,
        }

    @property
    def shard(self) -> dict[str, Any] | None:
        """For a partial store (a ``--shard`` part, or ``merge --partial``): ``shards``
        (the indices it holds), ``count`` and ``samples`` (the whole run's sample ids);
        None for a complete store."""
        value = self.meta.get("shard")
        return value if isinstance(value, dict) else None


def open_store(path: str | os.PathLike[str], *, verify: bool = True,
               limits: StoreLimits | None = None) -> Store:
    """Open a feature store for reading, after checking that it is safe.

    Parameters
    ----------
    path : path-like
        The store file.
    verify : bool, default True
        Check the whole-file SHA-256 recorded in the user block before HDF5
        parses the file.  Structural safety checks run either way.
    limits : StoreLimits, optional
        Bounds on what each array may declare (default :data:`DEFAULT_LIMITS`);
        checked for every dataset before anything is read.

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
        import h5py  # start-up: h5py, only when a store is opened

        fh = h5py.File(path, "r", locking=False)
    except Exception as exc:
        raise StoreError(f"{path}: not a readable HDF5 file ({exc}).") from exc
    try:
        raw_attrs: dict[str, dict[str, Any]] = {}
        _check_structure(path, fh, limits or DEFAULT_LIMITS, raw_attrs)
        meta = _decode_attrs(fh, f"{path}: root")
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
                if _json_depth(meta[key]) > _MAX_JSON_DEPTH:
                    raise StoreError(f"{path}: root attribute {key!r} holds JSON nested "
                                     f"more than {_MAX_JSON_DEPTH} levels deep.")
                try:
                    meta[key] = json.loads(meta[key])
                except (ValueError, RecursionError) as exc:
                    raise StoreError(f"{path}: root attribute {key!r} is not valid JSON.") from exc
        if "samples" in fh and not isinstance(fh["samples"], h5py.Group):
            raise StoreError(f"{path}: '/samples' is not a group.")
        return Store(path=path, _file=fh, meta=meta, _raw_attrs=raw_attrs)
    except StoreError:
        fh.close()
        raise
    except Exception as exc:
        fh.close()
        raise StoreError(f"{path}: malformed store ({type(exc).__name__}: {exc}).") from exc


def _hash_dataset(h: Any, name: str, ds: Any, block_bytes: int = _READ_BLOCK * 16) -> None:
    """Feed one dataset into ``h`` as :func:`hash_arrays` would, reading bounded blocks."""
    h.update(name.encode())
    h.update(str(ds.dtype.str).encode())
    h.update(repr(tuple(ds.shape)).encode())
    if ds.size == 0:
        return
    if ds.ndim == 0:
        h.update(np.ascontiguousarray(ds[()]).tobytes())
        return
    row = max(1, int(np.prod(ds.shape[1:], dtype=np.float64)) * ds.dtype.itemsize)
    step = max(1, block_bytes // row)
    for start in range(0, ds.shape[0], step):
        h.update(np.ascontiguousarray(ds[start:start + step]).tobytes())


def validate_store(path: str | os.PathLike[str], *,
                   limits: StoreLimits | None = None) -> list[str]:
    """Return a list of problems with the store at ``path`` (empty when valid).

    Every check of :func:`open_store` runs (``limits`` as there), then every
    array is read in bounded blocks (verifying its fletcher32 checksums and
    its sample's data hash), each sample's required attributes are checked,
    and the recorded content hash is recomputed: over sample ids and data
    hashes for stores of hash version 1, and also over every attribute (and
    the root attributes' own hash) for version 2.  Samples that failed when
    the store was made are not problems of the file; they are in
    ``Store.failures``.
    """
    problems: list[str] = []
    try:
        store = open_store(path, limits=limits)
    except StoreError as exc:
        return [str(exc)]
    with store:
        try:
            version = int(store.meta.get("hash_version", 1))
        except (TypeError, ValueError):
            return [f"{path}: invalid hash_version {store.meta.get('hash_version')!r}."]
        if version > HASH_VERSION:
            return [f"{path}: content hash version {version} was written by a newer mexkit "
                    f"(this one checks up to {HASH_VERSION})."]
        h = hashlib.sha256()
        samples = store._file["samples"] if "samples" in store._file else {}
        for sid in sorted(store.sample_ids):
            group = samples[quote_id(sid)]
            h.update(_sample_digest_line(sid, group, version))
            try:
                s = store[sid]
            except StoreError as exc:
                problems.append(str(exc))
                continue
            for attr in ("sample_id", "cache_key", "data_hash"):
                if attr not in s.attrs:
                    problems.append(f"{path}: sample {sid!r} has no {attr!r} attribute.")
            dh = hashlib.sha256()
            try:
                for name in sorted(group):
                    _hash_dataset(dh, name, group[name])
            except Exception as exc:
                problems.append(f"{path}: cannot read sample {sid!r} "
                                f"({type(exc).__name__}: {exc}).")
                continue
            if s.attrs.get("data_hash") != dh.hexdigest():
                problems.append(f"{path}: sample {sid!r}: data does not match its data_hash.")
        if version >= 2:
            h.update(b"failures\0" + _attr_bytes(store._file.attrs.get("failures", "")))
        if store.content_hash and h.hexdigest() != store.content_hash:
            problems.append(f"{path}: content hash does not match the samples"
                            f"{' and their attributes' if version >= 2 else ''}.")
        if version >= 2 and store.meta.get("attrs_hash") != _attrs_hash(store._file):
            problems.append(f"{path}: the root attributes (stage, parameters, provenance, "
                            "failures) do not match their recorded hash.")
    return problems
