"""Crash-safe writing of a store.

Writing goes through :class:`StoreWriter`: every finished sample is written
to its own small file in a staging folder beside the output (temporary name,
fsync, rename: :mod:`mexkit.io.atomic`), and the store is assembled from
those into a temporary file that is renamed into place and sealed.  A killed
job therefore keeps its finished samples, and a resumed job computes only
the rest.  The staging folder is created by mexkit (mode 0700, with a marker
file); a link, another user's folder or a folder of other files is refused,
and only mexkit's own files are ever removed from it.  An existing store is
never opened for writing; a second writer on the same output is refused.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat as _stat
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...errors import BusyError, DiskFullError, ParameterError, StoreError
from ..atomic import atomic_path, create_temporary, is_temporary_of, temporary_name
from .chunks import GZIP_LEVEL, encodes_itself, write_array
from .format import (
    _LIBVER,
    _MAGIC,
    _MAX_ATTRS,
    _NUMERIC_KINDS,
    HASH_VERSION,
    SCHEMA_VERSION,
    USERBLOCK_SIZE,
    _attr_bytes,
    _attrs_hash,
    _canonical_json,
    _clean_attr,
    _decode_attr,
    _hash_attrs,
    _read_attr,
    _sample_digest_line,
    _seal,
    attrs_digest,
    hash_arrays,
    quote_id,
)
from .read import open_store

logger = logging.getLogger("mexkit")

_STAGING_MARKER = "MEXKIT-STAGING"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _chunks_for(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(shape) == 0 or 0 in shape:
        return None
    if len(shape) == 1:
        return (min(shape[0], 65536),)
    return (1,) + tuple(shape[1:])


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
        if encodes_itself(a, chunks, compression):  # the same filters, encoded faster
            write_array(group, name, a, chunks)  # type: ignore[arg-type]
            continue
        if chunks is not None:
            kwargs.update(chunks=chunks, fletcher32=True, shuffle=True)
            if compression == "gzip":
                kwargs.update(compression="gzip", compression_opts=GZIP_LEVEL)
            elif compression == "lzf":
                kwargs.update(compression="lzf")
        group.create_dataset(name, data=a, **kwargs)
    _set_attrs(group, attrs)


# HDF5 types of the attribute values mexkit writes, made once (h5py makes two per value)
_ATTR_TYPES: dict[Any, tuple[Any, Any]] = {}


def _set_attrs(obj: Any, attrs: Mapping[str, Any]) -> None:
    """Set the attributes of a new h5py object, as ``obj.attrs[key] = value`` does.

    Text, numbers and numeric arrays (all mexkit writes) are created through
    h5py's low-level calls with the types and dataspaces h5py would give them
    (a third of the time: h5py checks for an attribute to replace and builds
    its types again for every value); anything else goes through h5py.
    """
    import h5py  # start-up: h5py, only when a store is written

    oid = obj.id
    for key, value in attrs.items():
        clean = _clean_attr(value)
        if clean is None:
            continue
        if isinstance(clean, str):
            kind: Any = "text"
            data = np.array(clean, dtype=h5py.string_dtype())
        else:
            data = np.asarray(clean)
            kind = data.dtype
            if data.dtype.kind not in _NUMERIC_KINDS or data.size == 0:
                kind = None
        if kind is None or not key.isascii():
            obj.attrs[key] = clean
            continue
        types = _ATTR_TYPES.get(kind)
        if types is None:
            types = _ATTR_TYPES[kind] = (h5py.h5t.py_create(data.dtype, logical=True),
                                         h5py.h5t.py_create(data.dtype))
        attr = h5py.h5a.create(oid, key.encode("ascii"), types[0],
                               h5py.h5s.create_simple(data.shape))
        try:
            attr.write(data, mtype=types[1])
        finally:
            attr.close()


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

    A new folder is made under a temporary name (mode 0700), given its
    marker file and only then renamed into place, so that a staging folder
    without the marker was never made by mexkit.  An existing one is used
    only if it is a real folder (not a symbolic link), owned by this user,
    not writable by everyone, and carries the marker (a regular file).
    Anything else, a folder holding only ``.h5`` files included, raises
    :class:`StoreError` and nothing in it is touched.
    """
    staging = Path(staging)
    for _ in range(5):
        try:
            st = os.lstat(staging)
        except FileNotFoundError:
            if _make_staging(staging):
                return staging
            continue
        _refuse_foreign_dir(staging, st)
        marker = staging / _STAGING_MARKER
        try:
            mst = os.lstat(marker)
        except FileNotFoundError:
            mst = None
        if mst is not None and _stat.S_ISREG(mst.st_mode):
            return staging
        names = sorted(p.name for p in staging.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise StoreError(
            f"{staging}: this folder was not made by mexkit (no {_STAGING_MARKER} file)"
            + (f" and holds {len(names)} file(s) ({shown})" if names else "")
            + "; mexkit will neither use nor empty it. Move it away or choose another "
            "output.")
    raise StoreError(f"{staging}: the staging folder keeps appearing and disappearing.")


def _make_staging(staging: Path) -> bool:
    """Make ``staging`` with its marker, atomically; False if the name got taken meanwhile."""

    tmp = temporary_name(staging)
    os.mkdir(tmp, 0o700)
    try:
        _write_marker(tmp)
        if os.path.lexists(staging):
            return False
        os.rename(tmp, staging)
    except OSError:
        if not os.path.lexists(staging):
            raise
        return False
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            _remove_own(tmp / _STAGING_MARKER)
            with contextlib.suppress(OSError):
                os.rmdir(tmp)
    return True


def _write_marker(staging: Path) -> None:
    fd = os.open(staging / _STAGING_MARKER,
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("Staging folder of a mexkit store being written; mexkit removes it.\n")


def _empty_staging(folder: Path) -> None:
    """Remove mexkit's files from a marked staging folder (marker last), then the folder."""
    for p in folder.iterdir():
        if _ours(p.name) and p.name != _STAGING_MARKER:
            _remove_own(p)
    _remove_own(folder / _STAGING_MARKER)
    with contextlib.suppress(OSError):
        folder.rmdir()


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


def _is_mexkit_store(path: Path) -> bool:
    """True if the regular file at ``path`` starts with a mexkit store's header."""

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.read(fd, len(_MAGIC)) == _MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def check_output(path: str | os.PathLike[str], *,
                 inputs: Iterable[str | os.PathLike[str]] = (),
                 overwrite: bool = False) -> None:
    """Refuse an output that would replace an input of the run or a file mexkit did not write.

    Parameters
    ----------
    path : path-like
        The output store.
    inputs : iterable of path-like
        Every file or folder the run reads (input stores, sheets, videos,
        image folders, ``--reuse`` stores, parts).  An output that is one of
        them (the same file, whatever its name), or an existing non-store
        file inside an input folder, is always refused.
    overwrite : bool
        Replace an existing file that is not a mexkit store (``--overwrite``).
        Without it, only a missing file, an empty one or a mexkit store is
        replaced.

    Raises
    ------
    ParameterError
        Naming the output and why it is not replaced; nothing is touched.
    """

    path = Path(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise ParameterError(f"The output {str(path)!r} cannot be checked: {exc}") from exc
    if _stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path}: the output is a folder.")
    for inp in inputs:
        try:
            ist = os.stat(inp)
        except OSError:
            continue
        if (ist.st_dev, ist.st_ino) == (st.st_dev, st.st_ino):
            raise ParameterError(
                f"The output {str(path)!r} is an input of this run ({str(inp)!r}); it is "
                "never replaced. Choose another output (-o).")
    if not _stat.S_ISREG(st.st_mode):
        raise ParameterError(f"The output {str(path)!r} exists and is not a regular file; "
                             "mexkit does not replace it. Choose another output (-o).")
    if st.st_size == 0 or _is_mexkit_store(path):
        return
    parent = os.stat(path.parent)
    for inp in inputs:
        try:
            ist = os.stat(inp)
        except OSError:
            continue
        if _stat.S_ISDIR(ist.st_mode) and (ist.st_dev, ist.st_ino) == (parent.st_dev,
                                                                         parent.st_ino):
            raise ParameterError(
                f"The output {str(path)!r} is a file of the input folder {str(inp)!r}; it "
                "is never replaced. Choose another output (-o).")
    if overwrite:
        logger.warning("%s: replacing a file that is not a mexkit store (--overwrite)", path)
        return
    raise ParameterError(
        f"The output {str(path)!r} exists and is not a mexkit store (mexkit did not write "
        "it); it is not replaced. Choose another output (-o), or give --overwrite to "
        "replace it.")


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
    inputs : iterable of path-like
        Files and folders the run reads besides the upstream stores (whose
        ``path`` is taken from ``upstream``): the output is never one of them
        (:func:`check_output`).
    overwrite : bool
        Replace an existing output that is not a mexkit store.
    signer : mexkit.io.signing.Signer, optional
        Signs the finished store (its header records the key id and the
        signature of its checksum): see docs/sharing.md.
    meta : mapping, optional
        More root attributes (JSON), e.g. ``shard``: which shards of which
        sample set a partial store holds.

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
                 compression: str = "gzip", inputs: Iterable[str | os.PathLike[str]] = (),
                 overwrite: bool = False, signer: Any = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        if compression not in ("gzip", "lzf"):
            raise StoreError(f"unknown compression {compression!r}; use 'gzip' or 'lzf'.")
        self.path = Path(path)
        self.stage = stage
        self.params = dict(params)
        self.upstream = [dict(u) for u in upstream]
        self.compression = compression
        self.inputs = [str(p) for p in inputs]
        self.inputs += [str(u["path"]) for u in self.upstream if u.get("path")]
        self.overwrite = overwrite
        self.signer = signer
        self.meta = dict(meta or {})
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
        check_output(self.path, inputs=self.inputs, overwrite=self.overwrite)
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
        for p in self.path.parent.glob(f".{self.staging.name}.tmp-*"):
            # a staging folder being made or removed when a run was killed; only one
            # that carries the marker (and is this user's, not a link) is emptied
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if (is_temporary_of(p, self.staging) and _stat.S_ISDIR(st.st_mode)
                    and st.st_uid == os.getuid() and (p / _STAGING_MARKER).is_file()
                    and not (p / _STAGING_MARKER).is_symlink()):
                _empty_staging(p)
                n += 1
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
                                   "samples whose cache key changed will be recomputed",
                                   self.path, what)
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
        import h5py  # start-up: h5py, only when a store is opened

        # the output may have been replaced while the run went on
        check_output(self.path, inputs=self.inputs, overwrite=self.overwrite)
        failures = dict(failures or {})
        sample_ids = list(sample_ids)
        old = None
        need = sum(st.path.stat().st_size for sid, st in self._staged.items()
                   if sid in cache_keys and st.cache_key == cache_keys[sid]
                   and st.path.exists())
        if self.path.exists() and any(self._existing.get(s) == cache_keys.get(s)
                                      for s in sample_ids):
            need += self.path.stat().st_size
        ensure_room(self.path.parent, need + need // 8,
                    what=f"assembling the store {self.path.name}")
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
                            digest.update(_copy_staged(staged.path, sid, grp, name))
                        elif old is not None and self._existing.get(sid) == key:
                            old._file.copy(old._file["samples"][name], grp, name=name)
                            digest.update(_sample_digest_line(sid, grp[name], HASH_VERSION))
                        else:
                            raise StoreError(f"{self.path}: sample {sid!r} was neither "
                                             "computed nor found in the staging folder.")
                    out.attrs["mexkit_schema"] = SCHEMA_VERSION
                    out.attrs["hash_version"] = HASH_VERSION
                    out.attrs["stage"] = self.stage
                    out.attrs["mexkit_version"] = __version__
                    out.attrs["params"] = _canonical_json(self.params)
                    out.attrs["upstream"] = _canonical_json(self.upstream)
                    out.attrs["created"] = _now()
                    out.attrs["store_id"] = uuid.uuid4().hex
                    out.attrs["failures"] = _canonical_json(failures)
                    for name, value in sorted(self.meta.items()):
                        out.attrs[name] = _clean_attr(value)
                    digest.update(b"failures\0" + _attr_bytes(out.attrs["failures"]))
                    out.attrs["content_hash"] = digest.hexdigest()
                    out.attrs["attrs_hash"] = _attrs_hash(out)
                _seal(tmp, self.signer)
        except Exception as exc:
            if no_space(exc):
                raise disk_full(self.path.parent, need, "assembling the store "
                                f"{self.path.name}") from exc
            raise
        finally:
            if old is not None:
                old.close()
        self._remove_staging()
        return self.path

    def _remove_staging(self) -> None:
        """Remove the staging folder: mexkit's own files, the marker last, then the folder.

        The folder is first renamed to a temporary name (one atomic step), so a
        run killed while emptying it never leaves a folder without its marker
        under the staging name; the next run removes the temporary one.  A
        folder that holds files mexkit did not write keeps them, and its name.
        """
        if self.staging.is_symlink() or not self.staging.is_dir():
            return
        names = [p.name for p in self.staging.iterdir()]
        foreign = sorted(n for n in names if not _ours(n))
        if foreign:
            for n in names:
                if _ours(n) and n not in ("lock", _STAGING_MARKER):
                    _remove_own(self.staging / n)
            logger.warning("%s: left in place; it holds files mexkit did not write (%s)",
                           self.staging, ", ".join(foreign[:3]))
            return

        doomed = temporary_name(self.staging)
        try:
            os.rename(self.staging, doomed)
        except OSError:
            return
        _empty_staging(doomed)


# root attributes of a staged file: its sample's attribute digest (see finalize)
_DIGEST_ATTR = "attrs_sha256"
_DIGEST_VERSION_ATTR = "digest_version"


_READ_FAPL: list[Any] = []


def _copy_staged(path: Path, sid: str, grp: Any, name: str) -> bytes:
    """Copy the sample of staged file ``path`` into h5py group ``grp`` as ``name``;
    returns its line of the content hash.

    Through h5py's low-level calls (half the time of opening the file with h5py: its
    file objects cost more than the copy of a small sample). The file is opened
    without HDF5's file locking, as mexkit reads every store.
    """
    import h5py  # start-up: h5py, only when a store is written

    if not _READ_FAPL:
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
        if hasattr(fapl, "set_file_locking"):
            fapl.set_file_locking(False, True)
        _READ_FAPL.append(fapl)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=_READ_FAPL[0])
    try:
        h5py.h5o.copy(fid, b"sample", grp.id, name.encode("utf-8"))
        root = h5py.h5g.open(fid, b"/")
        found = {}
        for key in (_DIGEST_VERSION_ATTR, _DIGEST_ATTR):
            if h5py.h5a.exists(root, key.encode()):
                attr = h5py.h5a.open(root, key.encode())
                found[key] = _read_attr(attr, attr.dtype)
    finally:
        fid.close()
    return _staged_digest_line(sid, found, grp[name])


def _staged_digest_line(sid: str, src: Mapping[str, Any], copied: Any) -> bytes:
    """The content-hash line of a sample copied into ``copied`` from a staged file whose
    root attributes are ``src``.

    A staged file written by :func:`write_staged_sample` carries the digest of its
    sample's attributes; one without it (an older run's) is read back attribute by
    attribute, as before.
    """
    version = src.get(_DIGEST_VERSION_ATTR)
    attrs_hex = src.get(_DIGEST_ATTR)
    if version is None or int(version) != HASH_VERSION or not isinstance(attrs_hex, str):
        attrs_hex = None
    return _sample_digest_line(sid, copied, HASH_VERSION, attrs_hex)


def staged_name(sample_id: str, cache_key: str) -> str:
    """File name of a staged sample (safe for any file system)."""
    return hashlib.sha256(sample_id.encode()).hexdigest()[:24] + f"-{cache_key[:16]}.h5"


def write_staged_sample(staging: str | os.PathLike[str], sample_id: str, cache_key: str,
                        arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *,
                        compression: str = "gzip",
                        commit: Callable[[Path, Path], Any] | None = None) -> Path:
    """Write one finished sample into the staging folder, atomically.

    Safe to call from worker processes: each sample gets its own file,
    written under a temporary name, fsynced and renamed into place. With
    ``commit``, that last step (fsync and rename, :func:`mexkit.io.atomic.commit`)
    is handed to ``commit(tmp, final)``, which may run it later in another
    thread: the sample is staged once it has run.
    """
    import h5py  # start-up: h5py, only when a store is opened

    staging = Path(staging)
    final = staging / staged_name(sample_id, cache_key)
    full_attrs = dict(attrs)
    full_attrs["sample_id"] = sample_id
    full_attrs["cache_key"] = cache_key
    full_attrs["data_hash"] = hash_arrays(arrays)
    full_attrs = {k: _clean_attr(v) for k, v in full_attrs.items()}
    # built in memory, written by Python: a full disk is one clean OSError here, never
    # a failed write inside HDF5 (which crashed the process while closing the file)
    with h5py.File(f"mexkit-staged-{uuid.uuid4().hex}", "w", driver="core",
                   backing_store=False, libver=_LIBVER) as fh:
        _set_attrs(fh, {"sample_id": sample_id, "cache_key": cache_key})
        group = fh.create_group("sample")
        _write_group(group, arrays, full_attrs, compression)
        # the sample's share of the store's content hash, so that assembling the store
        # need not read every attribute back (from the values where their stored form
        # is certain, else read back here)
        attrs_hex = attrs_digest(full_attrs)
        if attrs_hex is None:
            h = hashlib.sha256()
            _hash_attrs(h, group)
            attrs_hex = h.hexdigest()
        _set_attrs(fh, {_DIGEST_ATTR: attrs_hex, _DIGEST_VERSION_ATTR: HASH_VERSION})
        fh.flush()
        image = fh.id.get_file_image()
    ensure_room(staging, len(image), what=f"staging sample {sample_id!r}")
    try:
        if commit is None:
            with atomic_path(final) as tmp:
                with open(tmp, "wb") as out:
                    out.write(image)
        else:
            tmp = create_temporary(final)
            try:
                with open(tmp, "wb") as out:
                    out.write(image)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            commit(tmp, final)
    except OSError as exc:
        if no_space(exc):
            raise disk_full(staging, len(image), f"staging sample {sample_id!r}") from exc
        raise
    return final


# --------------------------------------------------------------------------
# a full disk: one clear error, before HDF5 meets it
# --------------------------------------------------------------------------
_ROOM_MARGIN = 64 << 10  # bytes kept free beyond what a write needs (metadata, fsync)


def no_space(exc: BaseException) -> bool:
    """True if ``exc`` (an OSError, or HDF5's error text) says the device is full."""

    text = str(exc)
    return (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or "No space left on device" in text or "errno = 28" in text
            or "Disk quota exceeded" in text)


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes free for this user on the file system of ``folder``."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


def disk_full(folder: str | os.PathLike[str], need: int | None, what: str) -> StoreError:
    """The :class:`~mexkit.errors.DiskFullError` for ``folder``'s device (not raised)."""

    folder = Path(folder)
    try:
        free = f", {free_bytes(folder):,} bytes free"
    except OSError:
        free = ""
    needed = f", about {need:,} needed" if need else ""
    return DiskFullError(
        f"no space left on device {_mount_point(folder)} ({what} in {folder}{free}"
        f"{needed}); finished samples are kept and the earlier output is untouched: free "
        "some space or choose another output (-o), then run again")


def ensure_room(folder: str | os.PathLike[str], need: int, *, what: str) -> None:
    """Raise :class:`~mexkit.errors.DiskFullError` unless ``need`` bytes (plus a margin)
    are free on ``folder``'s file system."""
    try:
        free = free_bytes(folder)
    except OSError:
        return
    if free < need + _ROOM_MARGIN:
        raise disk_full(folder, need + _ROOM_MARGIN, what)


def _read_staged_header(path: Path) -> tuple[str, str]:
    try:
        import h5py  # start-up: h5py, only when a store is opened

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

    A staging folder that is a link, another user's or without mexkit's
    marker is left alone.
    """
    path = Path(path)
    path.unlink(missing_ok=True)
    staging = path.with_name(path.name + ".staging")
    if staging.is_symlink() or not staging.is_dir():
        return
    marker = staging / _STAGING_MARKER
    if marker.is_symlink() or not marker.is_file() or os.lstat(staging).st_uid != os.getuid():
        return
    _empty_staging(staging)
