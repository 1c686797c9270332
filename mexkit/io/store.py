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

Before any data is read, every dataset's declared size is compared with
:class:`StoreLimits` and with the bytes it really stores (decompression and
fill-value bombs are refused), attributes per object are bounded and JSON
attributes may not nest deeper than 64 levels.  The root ``content_hash``
(``hash_version`` 2) covers every sample's id, attributes and data hash and
the failures; ``attrs_hash`` covers the root attributes.  Stores without
``hash_version`` (written before) are checked as version 1.

Writing goes through :class:`StoreWriter`: every finished sample is written
to its own small file in a staging folder beside the output (temporary name,
fsync, rename: :mod:`mexkit.io.atomic`), and the store is assembled from
those into a temporary file that is renamed into place.  A killed job
therefore keeps its finished samples, and a resumed job computes only the
rest.  The staging folder is created by mexkit (mode 0700, with a marker
file); a link, another user's folder or a folder of other files is refused,
and only mexkit's own files are ever removed from it.  An existing store is
never opened for writing; a second writer on the same output is refused.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import stat as _stat
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from .. import __version__
from ..errors import BusyError, StoreError
from .atomic import atomic_path, is_temporary_of

__all__ = [
    "SCHEMA_VERSION",
    "HASH_VERSION",
    "StoreLimits",
    "DEFAULT_LIMITS",
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
# Version of the content hash: 1 covers sample ids and data hashes; 2 adds every
# sample attribute and the failures, and an ``attrs_hash`` over the root
# attributes.  Stores without ``hash_version`` are version 1 and still validate.
HASH_VERSION = 2
USERBLOCK_SIZE = 512
# Bounds on what an untrusted store may declare, checked before any data is read.
_MAX_ATTRS = 1024            # attributes on one group or dataset
_MAX_TEXT_ATTR = 16 << 20    # bytes of one text attribute
_MAX_JSON_DEPTH = 64         # nesting of a JSON attribute
_STAGING_MARKER = "MEXKIT-STAGING"
_MAGIC = b"MEXKIT-STORE v1\n"
_HEADER_FMT = "length={length:d}\nsha256={digest}\n"
_ALLOWED_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
_NUMERIC_KINDS = "biuf"
_READ_BLOCK = 1 << 22
# HDF5 1.10 file format: checksummed metadata, readable by any HDF5 >= 1.10.
_LIBVER = ("v110", "v110")


@dataclass(frozen=True)
class StoreLimits:
    """What one array of a store may declare before anything of it is read.

    A store's datasets declare their shape; HDF5 would allocate and fill that
    much memory on reading, whatever the file holds (a fill-value bomb
    declares gigabytes and writes no chunk; a gzip bomb compresses zeros
    1000:1).  :func:`open_store` compares each dataset's declaration with
    these limits and with the bytes actually stored, and refuses the store
    with one :class:`StoreError` before any array is read.

    Attributes
    ----------
    max_array_bytes : int
        Declared bytes of one array (default 4 GiB).
    max_frames : int
        Length of the first axis (frames or pairs per clip; default 200,000).
    max_frame_elements : int
        Elements per frame, the product of the other axes (default 2**25:
        a 4096 x 4096 two-channel flow field).
    max_ratio : float
        Declared over stored bytes, for arrays declaring more than
        ``ratio_floor`` bytes (default 100; real frames and flow compress by
        1-10, zeros by ~1000, unwritten chunks infinitely).
    ratio_floor : int
        Arrays declaring at most this many bytes skip the ratio test
        (default 256 MiB).
    """

    max_array_bytes: int = 4 << 30
    max_frames: int = 200_000
    max_frame_elements: int = 1 << 25
    max_ratio: float = 100.0
    ratio_floor: int = 256 << 20

    @classmethod
    def parse(cls, text: str) -> StoreLimits:
        """Limits from ``"max_array_bytes=8e9,max_ratio=1000"`` (unnamed fields keep defaults)."""
        from dataclasses import fields

        names = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise StoreError(
                    f"Invalid store limit {part!r}: expected NAME=VALUE with NAME one of "
                    f"{', '.join(names)}.")
            try:
                number = float(value)
            except ValueError as exc:
                raise StoreError(f"Invalid store limit {part!r}: {value!r} is not a number."
                                 ) from exc
            if not number > 0:
                raise StoreError(f"Invalid store limit {part!r}: it must be positive.")
            values[key] = number if key == "max_ratio" else int(number)
        return cls(**values)


DEFAULT_LIMITS = StoreLimits()


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


_JSON_STRING = None


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` in JSON text (strings skipped), without parsing."""
    import re

    global _JSON_STRING
    if _JSON_STRING is None:
        _JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
    raw = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "replace"), np.uint8)
    if raw.size == 0:
        return 0
    step = (np.isin(raw, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(raw, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(step).max(initial=0))


def _decode_attr(value: Any, where: str = "", name: str = "") -> Any:
    """An attribute as Python: numbers, text, or the JSON it holds.

    JSON text longer than the text limit or nested deeper than
    ``_MAX_JSON_DEPTH`` raises :class:`StoreError` naming ``where`` and
    ``name`` (a hostile store must not exhaust the recursion limit).
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if len(value) > _MAX_TEXT_ATTR:
            raise StoreError(f"{where}: attribute {name!r} is {len(value)} characters long "
                             f"(at most {_MAX_TEXT_ATTR} are read).")
        if value.startswith("json:"):
            depth = _json_depth(value[5:])
            if depth > _MAX_JSON_DEPTH:
                raise StoreError(f"{where}: attribute {name!r} holds JSON nested {depth} "
                                 f"levels deep (at most {_MAX_JSON_DEPTH} are read).")
            try:
                return json.loads(value[5:])
            except (ValueError, RecursionError):
                return value
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_attrs(obj: Any, where: str) -> dict[str, Any]:
    return {k: _decode_attr(obj.attrs[k], where, k) for k in obj.attrs}


def _attr_bytes(value: Any) -> bytes:
    """Canonical bytes of one stored attribute value (as h5py returns it)."""
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return b"b" + value
    a = np.asarray(value)
    if a.dtype.kind not in _NUMERIC_KINDS:  # e.g. an array of strings
        return b"o" + repr(a.tolist()).encode("utf-8", "surrogateescape")
    return b"n" + a.dtype.str.encode() + repr(a.shape).encode() + a.tobytes()


def _hash_attrs(h: Any, obj: Any, skip: tuple[str, ...] = ()) -> None:
    """Feed every attribute of ``obj`` (name and raw value, sorted) into ``h``."""
    for name in sorted(obj.attrs):
        if name in skip:
            continue
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
        h.update(_attr_bytes(obj.attrs[name]) + b"\n")


def _sample_digest_line(sid: str, group: Any, version: int) -> bytes:
    """One sample's line of the content hash (v1: id and data_hash; v2: every attribute)."""
    data_hash = group.attrs.get("data_hash", "")
    if isinstance(data_hash, bytes):
        data_hash = data_hash.decode("utf-8", "replace")
    line = f"{sid}\0{data_hash}"
    if version >= 2:
        h = hashlib.sha256()
        _hash_attrs(h, group)
        line += f"\0{h.hexdigest()}"
    return (line + "\n").encode("utf-8", "surrogateescape")


def _attrs_hash(root: Any) -> str:
    h = hashlib.sha256()
    _hash_attrs(h, root, skip=("attrs_hash",))
    return h.hexdigest()


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

    n = obj.id.get_num_attrs() if hasattr(obj.id, "get_num_attrs") else len(obj.attrs)
    if n > _MAX_ATTRS:
        raise StoreError(f"{path}: {where} carries {n} attributes (at most {_MAX_ATTRS} are "
                         "read); the store was not written by mexkit.")
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


def _check_size(path: Path, ds: Any, where: str, limits: StoreLimits) -> None:
    """Refuse a dataset whose declared size is implausible, before reading it."""
    shape = tuple(int(d) for d in ds.shape or ())
    declared = int(np.prod(shape, dtype=np.float64)) * ds.dtype.itemsize
    hint = ("; if the store is genuine, raise the limit (MEXKIT_STORE_LIMITS or "
            "--limits, e.g. max_array_bytes=1e10)")
    if declared > limits.max_array_bytes:
        raise StoreError(f"{path}: {where} declares {declared:,} bytes {shape}, more than the "
                         f"limit of {limits.max_array_bytes:,} bytes per array{hint}.")
    if len(shape) >= 1 and shape[0] > limits.max_frames:
        raise StoreError(f"{path}: {where} declares {shape[0]:,} frames {shape}, more than "
                         f"the limit of {limits.max_frames:,}{hint}.")
    per_frame = int(np.prod(shape[1:], dtype=np.float64)) if len(shape) >= 2 else 1
    if per_frame > limits.max_frame_elements:
        raise StoreError(f"{path}: {where} declares {per_frame:,} values per frame {shape}, "
                         f"more than the limit of {limits.max_frame_elements:,}{hint}.")
    if declared > limits.ratio_floor:
        stored = int(ds.id.get_storage_size())
        if declared > limits.max_ratio * stored:
            raise StoreError(
                f"{path}: {where} declares {declared:,} bytes {shape} but stores only "
                f"{stored:,} (ratio above {limits.max_ratio:g}): a decompression or "
                f"fill-value bomb{hint}.")


def _check_dataset(path: Path, ds: Any, where: str,
                   limits: StoreLimits | None = None) -> None:
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
    if limits is not None:
        _check_size(path, ds, where, limits)


def _check_structure(path: Path, root: Any, limits: StoreLimits | None = DEFAULT_LIMITS
                     ) -> None:
    """Walk every link of the file; refuse anything that could run or read elsewhere.

    Also refused: groups inside a sample (a sample holds arrays only), more
    attributes than mexkit writes, and datasets whose declared size breaks
    ``limits`` (``None``: no size limits).
    """
    import h5py

    seen: set[Any] = set()

    def walk(group: Any, prefix: str) -> None:
        depth = prefix.count("/")
        if depth >= 3 and prefix.startswith("/samples/"):
            raise StoreError(f"{path}: {prefix} is a group inside sample "
                             f"{unquote_id(prefix.split('/')[2])!r}; a sample holds arrays "
                             "only.")
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
                if prefix == "/samples":
                    raise StoreError(f"{path}: {where} is an array where a sample group "
                                     "belongs.")
                _check_attrs(path, obj, where)
                _check_dataset(path, obj, where, limits)
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
        fallback = unquote_id(group.name.split("/")[-1])
        self.attrs: dict[str, Any] = _decode_attrs(
            group, f"{store.path}: sample {fallback!r}")
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
        import h5py

        fh = h5py.File(path, "r", locking=False)
    except Exception as exc:
        raise StoreError(f"{path}: not a readable HDF5 file ({exc}).") from exc
    try:
        _check_structure(path, fh, limits or DEFAULT_LIMITS)
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
        return Store(path=path, _file=fh, meta=meta)
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


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def _write_group(group: Any, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
                 compression: str) -> None:
    if len(attrs) > _MAX_ATTRS:
        raise StoreError(f"{len(attrs)} attributes for one sample; a store holds at most "
                         f"{_MAX_ATTRS} (readers refuse more).")
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


# --------------------------------------------------------------------------
# the staging folder: made by mexkit, never a link, emptied of mexkit's files only
# --------------------------------------------------------------------------
def _ours(name: str) -> bool:
    """Names mexkit itself puts in a staging folder."""
    return (name in ("lock", _STAGING_MARKER) or name.endswith(".h5")
            or (name.startswith(".") and ".tmp-" in name))


def _refuse_foreign_dir(staging: Path, st: os.stat_result) -> None:
    if _stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(staging)
        except OSError:
            target = "?"
        raise StoreError(
            f"{staging}: the staging folder is a symbolic link (to {target!r}); mexkit "
            "never writes or deletes through a link. Remove the link or choose another "
            "output.")
    if not _stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{staging}: exists and is not a folder; mexkit needs this name for "
                         "its staging folder. Remove it or choose another output.")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise StoreError(f"{staging}: the staging folder belongs to another user (uid "
                         f"{st.st_uid}); mexkit uses only staging folders it made. Choose "
                         "another output.")
    if st.st_mode & _stat.S_IWOTH:
        raise StoreError(f"{staging}: the staging folder is writable by every user; mexkit "
                         "will not read or delete files there. Choose another output.")


def prepare_staging(staging: str | os.PathLike[str]) -> Path:
    """Create (or check) a staging folder that mexkit made and owns.

    A new folder is created with mode 0700 and a marker file.  An existing
    one is used only if it is a real folder (not a symbolic link), owned by
    this user, not writable by everyone, and either carries the marker or
    holds nothing but names mexkit writes (a staging folder of an older
    version).  Anything else raises :class:`StoreError` and nothing in it is
    touched.
    """
    staging = Path(staging)
    for _ in range(3):
        try:
            st = os.lstat(staging)
        except FileNotFoundError:
            try:
                os.mkdir(staging, 0o700)
            except FileExistsError:
                continue
            st = os.lstat(staging)
            _refuse_foreign_dir(staging, st)
            _write_marker(staging)
            return staging
        _refuse_foreign_dir(staging, st)
        marker = staging / _STAGING_MARKER
        if not marker.is_symlink() and marker.is_file():
            return staging
        foreign = sorted(p.name for p in staging.iterdir() if not _ours(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise StoreError(
                f"{staging}: this folder was not made by mexkit (no {_STAGING_MARKER} file) "
                f"and holds {len(foreign)} other file(s) ({shown}); mexkit will neither use "
                "nor empty it. Move it away or choose another output.")
        _write_marker(staging)
        return staging
    raise StoreError(f"{staging}: the staging folder keeps appearing and disappearing.")


def _write_marker(staging: Path) -> None:
    from .atomic import write_text

    write_text(staging / _STAGING_MARKER,
               "Staging folder of a mexkit store being written; mexkit removes it.\n")


def _remove_own(path: Path) -> bool:
    """Unlink ``path`` if it is a regular file or link of this user (never a folder)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if _stat.S_ISDIR(st.st_mode):
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        logger.warning("not removing %s: it belongs to another user", path)
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def _staged_files(staging: Path) -> list[Path]:
    out = []
    for p in sorted(staging.glob("*.h5")):
        if p.name.startswith(".") or p.is_symlink() or not p.is_file():
            continue
        out.append(p)
    return out


def _open_lock(staging: Path) -> Any:
    """Open and lock ``staging/lock`` exclusively; None if another process holds it."""
    path = staging / "lock"
    for _ in range(5):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        # The lock file may have been removed (by the previous writer, after its
        # store was finished) between our open and our lock: then we hold a lock
        # on a file nobody else can see; start again.
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:
            same = False
        if same:
            return os.fdopen(fd, "a+b")
        os.close(fd)
        prepare_staging(staging)
    raise StoreError(f"{path}: cannot take the lock (the file keeps being replaced).")


def _params_differ(old: Mapping[str, Any], stage: str, params: Mapping[str, Any]) -> str:
    """'' when the existing store was made by ``stage`` with ``params``; else a description."""
    if str(old.get("stage", "")) != stage:
        return f"stage {old.get('stage', '?')!r}"
    before = old.get("params") or {}
    if not isinstance(before, dict):
        return "unreadable parameters"
    now = json.loads(_canonical_json(dict(params)))
    keys = sorted(set(before) | set(now))
    diff = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys
            if before.get(k) != now.get(k)]
    return "; ".join(diff)


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
    Use it as a context manager.  On entry it prepares the staging folder
    ``<path>.staging`` (made by mexkit, mode 0700, never a link or another
    user's folder: see :func:`prepare_staging`), takes an exclusive lock in
    it (a second writer gets :class:`BusyError`), removes temporary files
    left by a killed run, and indexes the samples already finished there or
    in an existing store.  Workers call :func:`write_staged_sample` with
    :attr:`staging` (they never share an HDF5 file); :meth:`finalize`
    assembles the store.  On exit a staging folder that holds no finished
    sample is removed, so a refused or empty run leaves nothing behind.
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
        prepare_staging(self.staging)
        lock = _open_lock(self.staging)
        if lock is None:
            raise BusyError(
                f"{self.path}: another mexkit process is writing this store "
                f"(lock held on {self.staging / 'lock'}); wait for it or choose another output."
            )
        self._lock_fh = lock
        try:
            self._clean_leftovers()
            self._index()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock_fh is None:
            return
        # Nothing finished is kept here: remove the folder while still holding the lock.
        with contextlib.suppress(OSError):
            if self.staging.is_dir() and not self.staging.is_symlink() \
                    and not _staged_files(self.staging):
                self._remove_staging()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
        self._lock_fh.close()
        self._lock_fh = None

    def _clean_leftovers(self) -> None:
        n = 0
        for p in self.staging.iterdir():
            if p.name.startswith(".") and ".tmp-" in p.name:
                n += _remove_own(p)
        for p in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            if is_temporary_of(p, self.path):
                n += _remove_own(p)
        if n:
            logger.info("removed %d temporary file(s) left by an interrupted run", n)

    def _index(self) -> None:
        if self.path.exists():
            try:
                with open_store(self.path) as old:
                    self._existing = old.cache_keys()
                    what = _params_differ(old.meta, self.stage, self.params)
                if what:
                    logger.warning("%s: replacing a store made with other parameters (%s); "
                                   "its samples will be recomputed", self.path, what)
            except StoreError as exc:
                logger.warning("ignoring the existing output (%s); it will be replaced", exc)
                self._existing = {}
        for p in _staged_files(self.staging):
            try:
                sid, key = _read_staged_header(p)
            except StoreError as exc:
                logger.warning("removing unreadable staged sample %s (%s)", p.name, exc)
                _remove_own(p)
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

        Notes
        -----
        The content hash (version :data:`HASH_VERSION`) covers each sample's
        id, attributes and data hash and the failures; ``attrs_hash`` covers
        every root attribute.  Both are computed from what was written.
        """
        import h5py

        failures = dict(failures or {})
        sample_ids = list(sample_ids)
        old = None
        try:
            if any(self._existing.get(s) == cache_keys.get(s) for s in sample_ids):
                old = open_store(self.path)
            with atomic_path(self.path) as tmp:
                digest = hashlib.sha256()
                with h5py.File(tmp, "w", userblock_size=USERBLOCK_SIZE, libver=_LIBVER) as out:
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
                            raise StoreError(f"{self.path}: sample {sid!r} was neither "
                                             "computed nor found in the staging folder.")
                        digest.update(_sample_digest_line(sid, grp[name], HASH_VERSION))
                    out.attrs["mexkit_schema"] = SCHEMA_VERSION
                    out.attrs["hash_version"] = HASH_VERSION
                    out.attrs["stage"] = self.stage
                    out.attrs["mexkit_version"] = __version__
                    out.attrs["params"] = _canonical_json(self.params)
                    out.attrs["upstream"] = _canonical_json(self.upstream)
                    out.attrs["created"] = _now()
                    out.attrs["store_id"] = uuid.uuid4().hex
                    out.attrs["failures"] = _canonical_json(failures)
                    digest.update(b"failures\0" + _attr_bytes(out.attrs["failures"]))
                    out.attrs["content_hash"] = digest.hexdigest()
                    out.attrs["attrs_hash"] = _attrs_hash(out)
                _seal(tmp)
        finally:
            if old is not None:
                old.close()
        self._remove_staging()
        return self.path

    def _remove_staging(self) -> None:
        """Remove mexkit's own files from the staging folder, then the folder if empty."""
        if self.staging.is_symlink() or not self.staging.is_dir():
            return
        for p in self.staging.iterdir():
            if _ours(p.name) and p.name not in ("lock", _STAGING_MARKER):
                _remove_own(p)
        # The marker and the lock file go last; the lock itself is released in __exit__.
        _remove_own(self.staging / _STAGING_MARKER)
        _remove_own(self.staging / "lock")
        try:
            self.staging.rmdir()
        except OSError:
            left = sorted(p.name for p in self.staging.iterdir())
            logger.warning("%s: left in place; it holds files mexkit did not write (%s)",
                           self.staging, ", ".join(left[:3]))


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
    full_attrs = dict(attrs)
    full_attrs["sample_id"] = sample_id
    full_attrs["cache_key"] = cache_key
    full_attrs["data_hash"] = hash_arrays(arrays)
    with atomic_path(final) as tmp:
        with h5py.File(tmp, "w", libver=_LIBVER) as fh:
            fh.attrs["sample_id"] = sample_id
            fh.attrs["cache_key"] = cache_key
            _write_group(fh.create_group("sample"), arrays, full_attrs, compression)
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
    """Delete a store and mexkit's files in its staging folder (used by tests and --force).

    A staging folder that is a link or another user's is left alone.
    """
    path = Path(path)
    path.unlink(missing_ok=True)
    staging = path.with_name(path.name + ".staging")
    if staging.is_symlink() or not staging.is_dir():
        return
    for p in staging.iterdir():
        if _ours(p.name):
            _remove_own(p)
    with contextlib.suppress(OSError):
        staging.rmdir()


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (sorted keys, no spaces) that stores
    hash and compare: equal values give equal text."""
    return _canonical_json(value)
