"""The store's file format and its safety checks.

What a store file is (schema v1, :mod:`mexkit.io.store` describes the layout),
and everything that decides whether a file may be trusted before any of its
data is read:

- the 512-byte HDF5 user block that seals the file: a magic line, the file
  length and the SHA-256 of every byte after the block (:func:`_seal`,
  :func:`_check_seal`);
- :class:`StoreLimits`, the bounds on what one array may declare;
- the structural checks (no external or soft links, no external storage, no
  virtual datasets, only the gzip/lzf/shuffle/fletcher32 filters, only
  numeric datasets and numeric or text attributes, bounded sizes and JSON
  nesting): :func:`_check_structure`;
- how attributes are encoded (numbers, text, ``json:`` text) and hashed
  (the content hash of ``hash_version`` 2 and the root ``attrs_hash``).

Reading (:mod:`.read`) and writing (:mod:`.write`) both build on this module.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from ...errors import StoreError

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
        Declared over stored bytes (default 100; real frames and flow
        compress by 1-10, zeros by ~1000, unwritten chunks infinitely).
    ratio_floor : int
        Bytes an array may declare beyond ``max_ratio`` times what it stores
        (default 16 MiB): an array may declare at most ``ratio_floor +
        max_ratio * stored`` bytes, at every size, and the arrays of one
        sample together the same bound over their stored bytes (and at most
        ``max_array_bytes``).  So what a stage allocates for a sample is
        bounded by what the file really holds: a 38 kB store cannot declare
        16,000 frames of zeros.
    """

    max_array_bytes: int = 4 << 30
    max_frames: int = 200_000
    max_frame_elements: int = 1 << 25
    max_ratio: float = 100.0
    ratio_floor: int = 16 << 20

    @classmethod
    def parse(cls, text: str) -> StoreLimits:
        """Limits from ``"max_array_bytes=8e9,max_ratio=1000"`` (unnamed fields keep defaults)."""

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


def _sample_digest_line(sid: str, group: Any, version: int,
                        attrs_hex: str | None = None) -> bytes:
    """One sample's line of the content hash (v1: id and data_hash; v2: every attribute).

    ``attrs_hex``, when given, is the v2 digest of the group's attributes, known
    already (:func:`attrs_digest`); otherwise they are read and hashed here.
    """
    data_hash = group.attrs.get("data_hash", "")
    if isinstance(data_hash, bytes):
        data_hash = data_hash.decode("utf-8", "replace")
    if version >= 2:
        if attrs_hex is None:
            h = hashlib.sha256()
            _hash_attrs(h, group)
            attrs_hex = h.hexdigest()
        return digest_line(sid, data_hash, attrs_hex)
    return f"{sid}\0{data_hash}\n".encode("utf-8", "surrogateescape")


def _value_attr_bytes(value: Any) -> bytes | None:
    """What :func:`_attr_bytes` gives for ``value`` once stored and read back, or None
    where that cannot be told from the value alone (``value`` as :func:`_clean_attr`
    returns it)."""
    if isinstance(value, str):
        # HDF5 ends a stored string at its first NUL; h5py stores UTF-8 text only
        if "\0" in value:
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return _attr_bytes(value)
    if isinstance(value, (np.generic, np.ndarray)):
        a = np.asarray(value)
        if (a.dtype.kind not in "biuf" or a.size == 0 or not a.dtype.isnative
                or a.dtype.itemsize > 8):
            return None
        return _attr_bytes(a)
    return None


def attrs_digest(attrs: Mapping[str, Any]) -> str | None:
    """The hex SHA-256 that :func:`_hash_attrs` computes over an object carrying
    ``attrs`` (values as :func:`_clean_attr` returns them, None dropped), from the
    values alone; None where some value's stored form cannot be told without
    reading it back (text with a NUL, an empty or foreign-endian array, ...)."""
    h = hashlib.sha256()
    for name in sorted(attrs):
        value = attrs[name]
        if value is None:
            continue
        raw = _value_attr_bytes(value)
        if raw is None:
            return None
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
        h.update(raw + b"\n")
    return h.hexdigest()


def digest_line(sid: str, data_hash: str, attrs_hex: str) -> bytes:
    """One sample's line of the content hash (version 2), from its parts."""
    return f"{sid}\0{data_hash}\0{attrs_hex}\n".encode("utf-8", "surrogateescape")


def _attrs_hash(root: Any) -> str:
    h = hashlib.sha256()
    _hash_attrs(h, root, skip=("attrs_hash",))
    return h.hexdigest()


# --------------------------------------------------------------------------
# user block: length and checksum of the file
# --------------------------------------------------------------------------
def seal_message(digest: str, length: int) -> bytes:
    """What a store's signature signs: its whole-file SHA-256 and length."""
    return f"mexkit-store-v1\0{digest}\0{length}".encode()


def _seal(path: Path, signer: Any = None) -> str:
    """Write the checksum header into the user block of a closed file.

    With ``signer`` (a :class:`mexkit.io.signing.Signer`), the header also
    holds its key id and its signature of :func:`seal_message`.
    """
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
        if signer is not None:
            header += (f"signer={signer.key_id}\n"
                       f"signature={signer.sign(seal_message(digest, length))}\n").encode()
        fh.seek(0)
        fh.write(header.ljust(USERBLOCK_SIZE, b"\0"))
        fh.flush()
        os.fsync(fh.fileno())
    return digest


def read_seal(path: Path) -> dict[str, str]:
    """The fields of a store's header (``length``, ``sha256``, ``signer``, ``signature``),
    unchecked; empty for a file without a mexkit header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(USERBLOCK_SIZE)
    except OSError:
        return {}
    if not head.startswith(_MAGIC):
        return {}
    text = head[len(_MAGIC):].split(b"\0", 1)[0].decode("ascii", "replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


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
def _read_attr(attr: Any, dtype: np.dtype) -> Any:
    """The value of an opened attribute (h5py's low-level ``AttrID``) as h5py 3's
    ``attrs[name]`` returns it, without opening it a second time."""
    import h5py  # start-up: h5py, only when a store is opened

    shape = attr.shape
    if shape is None:  # an empty dataspace
        return h5py.Empty(dtype)
    mtype = h5py.h5t.py_create(dtype)
    if dtype.subdtype is not None:  # an array type: numpy's view of it, as h5py
        dtype, subshape = dtype.subdtype
        shape = tuple(shape) + tuple(subshape)
    arr = np.zeros(shape, dtype=dtype)
    attr.read(arr, mtype=mtype)
    info = h5py.check_string_dtype(dtype)
    if info is not None and info.length is None:  # variable-length text: str, as h5py
        arr = np.array([b.decode("utf-8", "surrogateescape") for b in arr.flat],
                       dtype=dtype).reshape(arr.shape)
    return arr[()] if arr.ndim == 0 else arr


def _check_attrs(path: Path, oid: Any, count: int, where: str,
                 values: dict[str, Any] | None = None) -> None:
    """Refuse too many attributes, or one of a type mexkit never writes, on the
    object ``oid`` (h5py's low-level id) that carries ``count`` attributes; with
    ``values``, each attribute's raw value is read into it once it passed."""
    import h5py  # start-up: h5py, only when a store is opened

    if count > _MAX_ATTRS:
        raise StoreError(f"{path}: {where} carries {count} attributes (at most {_MAX_ATTRS} "
                         "are read); the store was not written by mexkit.")
    if not count:
        return
    raw_names: list[bytes] = []
    h5py.h5a.iterate(oid, raw_names.append)  # opening by name: half the time of by index
    for raw in raw_names:
        attr = h5py.h5a.open(oid, raw)
        name = raw.decode("utf-8", "surrogateescape")
        dt = attr.dtype
        if dt.kind in _NUMERIC_KINDS or h5py.check_string_dtype(dt) is not None:
            if values is not None:
                values[name] = _read_attr(attr, dt)
            continue
        raise StoreError(
            f"{path}: attribute {name!r} of {where} has unsupported type {dt} "
            "(only numbers and strings are allowed; object, opaque and reference "
            "attributes are refused)."
        )


def _check_size(path: Path, ds: Any, where: str, limits: StoreLimits) -> tuple[int, int]:
    """Refuse a dataset whose declared size is implausible, before reading it.

    Returns its declared and stored bytes.
    """
    shape = tuple(int(d) for d in ds.shape or ())
    declared = math.prod(shape) * ds.dtype.itemsize  # exact (Python integers)
    hint = ("; if the store is genuine, raise the limit (MEXKIT_STORE_LIMITS or "
            "--limits, e.g. max_array_bytes=1e10)")
    if declared > limits.max_array_bytes:
        raise StoreError(f"{path}: {where} declares {declared:,} bytes {shape}, more than the "
                         f"limit of {limits.max_array_bytes:,} bytes per array{hint}.")
    if len(shape) >= 1 and shape[0] > limits.max_frames:
        raise StoreError(f"{path}: {where} declares {shape[0]:,} frames {shape}, more than "
                         f"the limit of {limits.max_frames:,}{hint}.")
    per_frame = math.prod(shape[1:]) if len(shape) >= 2 else 1
    if per_frame > limits.max_frame_elements:
        raise StoreError(f"{path}: {where} declares {per_frame:,} values per frame {shape}, "
                         f"more than the limit of {limits.max_frame_elements:,}{hint}.")
    stored = int(ds.get_storage_size()) if declared > limits.ratio_floor else 0
    if declared > limits.ratio_floor + limits.max_ratio * stored:
        raise StoreError(
            f"{path}: {where} declares {declared:,} bytes {shape} but stores only "
            f"{stored:,} (ratio above {limits.max_ratio:g} beyond the first "
            f"{limits.ratio_floor:,} bytes): a decompression or fill-value bomb{hint}.")
    return declared, int(ds.get_storage_size())


def _check_group_size(path: Path, where: str, declared: int, stored: int,
                      limits: StoreLimits) -> None:
    """The arrays of one sample together: the bounds of one array over their sums."""
    hint = "; if the store is genuine, raise the limit (MEXKIT_STORE_LIMITS or --limits)"
    if declared > limits.max_array_bytes:
        raise StoreError(f"{path}: the arrays of {where} declare {declared:,} bytes together, "
                         f"more than the limit of {limits.max_array_bytes:,}{hint}.")
    if declared > limits.ratio_floor + limits.max_ratio * stored:
        raise StoreError(
            f"{path}: the arrays of {where} declare {declared:,} bytes together but store "
            f"only {stored:,} (ratio above {limits.max_ratio:g}): a decompression or "
            f"fill-value bomb{hint}.")


def _check_dataset(path: Path, ds: Any, where: str,
                   limits: StoreLimits | None = None) -> tuple[int, int]:
    import h5py  # start-up: h5py, only when a store is opened

    dcpl = ds.get_create_plist()
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
        return _check_size(path, ds, where, limits)
    return 0, 0


def _check_structure(path: Path, root: Any, limits: StoreLimits | None = DEFAULT_LIMITS,
                     sample_attrs: dict[str, dict[str, Any]] | None = None) -> None:
    """Walk every link of the file; refuse anything that could run or read elsewhere.

    Also refused: groups inside a sample (a sample holds arrays only), more
    attributes than mexkit writes, and datasets whose declared size breaks
    ``limits`` (``None``: no size limits).  With ``sample_attrs``, the raw
    attributes of each sample group are read into it (keyed by the group's
    name under ``/samples``) while they are checked, so that the store's
    sample views need not open them again.
    """
    import h5py  # start-up: h5py, only when a store is opened

    h5g, h5l, h5o = h5py.h5g, h5py.h5l, h5py.h5o
    seen: set[Any] = set()

    def walk(gid: Any, prefix: str) -> None:
        depth = prefix.count("/")
        if depth >= 3 and prefix.startswith("/samples/"):
            raise StoreError(f"{path}: {prefix} is a group inside sample "
                             f"{unquote_id(prefix.split('/')[2])!r}; a sample holds arrays "
                             "only.")
        info = h5o.get_info(gid)
        if info.addr in seen:
            raise StoreError(f"{path}: group {prefix or '/'} is linked twice (a cycle).")
        seen.add(info.addr)
        values = None
        if sample_attrs is not None and depth == 2 and prefix.startswith("/samples/"):
            values = sample_attrs[prefix[len("/samples/"):]] = {}
        _check_attrs(path, gid, info.num_attrs, prefix or "/", values)
        links: list[tuple[bytes, int]] = []
        gid.links.iterate(lambda raw, link: links.append((raw, link.type)), info=True)
        declared = stored = 0
        for raw, kind in links:
            where = f"{prefix}/{raw.decode('utf-8', 'surrogateescape')}"
            if kind == h5l.TYPE_EXTERNAL:
                filename = gid.links.get_val(raw)[0].decode("utf-8", "replace")
                raise StoreError(
                    f"{path}: {where} is an external link to {filename!r}; "
                    "external links are refused."
                )
            if kind == h5l.TYPE_SOFT:
                raise StoreError(f"{path}: {where} is a soft link; links are refused.")
            if kind != h5l.TYPE_HARD:
                raise StoreError(f"{path}: {where} is a user-defined link; links are refused.")
            member = h5o.get_info(gid, raw)
            if member.type == h5o.TYPE_GROUP:
                walk(h5g.open(gid, raw), where)
            elif member.type == h5o.TYPE_DATASET:
                if prefix == "/samples":
                    raise StoreError(f"{path}: {where} is an array where a sample group "
                                     "belongs.")
                ds = h5py.h5d.open(gid, raw)
                _check_attrs(path, ds, member.num_attrs, where)
                d, st = _check_dataset(path, ds, where, limits)
                declared, stored = declared + d, stored + st
            else:
                kind_name = "Datatype" if member.type == h5o.TYPE_NAMED_DATATYPE else "object"
                raise StoreError(f"{path}: {where} is a {kind_name}, which is refused.")
        if limits is not None and declared:
            _check_group_size(path, prefix or "/", declared, stored, limits)

    walk(root.id, "")  # a file's id is its root group's


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (sorted keys, no spaces) that stores
    hash and compare: equal values give equal text."""
    return _canonical_json(value)
