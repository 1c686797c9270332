"""Cache keys: what decides whether a sample must be computed again.

``cache_key = sha256(stage, algorithm version, parameters, upstream key)``
where the upstream key is the producing store's ``cache_key`` of the same
sample, or, for the first stage, a content hash of the input files.  Moving
or touching an input file therefore changes nothing; editing a pixel, a
parameter or the algorithm version changes exactly the affected samples.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py

from ..errors import StoreError
from ..io.atomic import atomic_path
from ..io.signing import trusted_keys
from ..io.store import canonical_json, hash_arrays, open_store, validate_store, write_staged_sample
from ..io.store.format import _check_structure, _decode_attrs, _hash_attrs
from .limits import store_limits

__all__ = ["cache_key", "params_digest", "SampleCache", "CACHE_ENV", "reuse_index",
           "copy_from_store", "INPUT_ATTRS", "merge_attrs", "entry_message"]

logger = logging.getLogger("mexkit")

#: Environment variable naming the default shared cache folder (read by the CLI).
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


#: Sample attributes that always come from the run's own input, never from a cache
#: entry or a reused store: who the sample is and what it is labelled.
INPUT_ATTRS = ("dataset", "subject", "clip", "video", "label", "emotion", "aus",
               "objective_class", "kind", "source", "intervals", "onset_frame",
               "apex_frame", "offset_frame")
# attributes every staged sample carries about itself
_OWN_ATTRS = ("sample_id", "cache_key", "data_hash")


def entry_message(key: str, group: Any) -> bytes:
    """What a cache entry's signature signs: its key, data hash and every attribute."""

    h = hashlib.sha256()
    _hash_attrs(h, group)
    data_hash = group.attrs.get("data_hash", "")
    if isinstance(data_hash, bytes):
        data_hash = data_hash.decode("utf-8", "replace")
    return f"mexkit-cache-entry-v1\0{key}\0{data_hash}\0{h.hexdigest()}".encode()


def merge_attrs(entry: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A reused sample's attributes: what the stage computed (from the entry) and who the
    sample is (:data:`INPUT_ATTRS`, from the run's own input only)."""
    out = {k: v for k, v in entry.items() if k not in INPUT_ATTRS and k not in _OWN_ATTRS}
    out.update({k: v for k, v in inputs.items() if k in INPUT_ATTRS})
    return out


def _no_space(exc: BaseException) -> bool:

    text = str(exc)
    return (getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in text
            or "errno = 28" in text)


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
    the second waits for the first and then copies its result.

    Shared by users: prefix folders take the cache folder's permissions
    (a group-owned folder with the setgid bit, mode 2775, gives the group's
    users one cache), and a lock needs only read access to its file.

    Trusted only as far as its signatures go (docs/sharing.md): an entry is
    used only if it is signed by a key of ``trusted``, passes the store's
    structural checks and size limits, matches its data hash and passes the
    stage's ``check`` of its arrays; its sample attributes of
    :data:`INPUT_ATTRS` are replaced by the run's own.  A bad entry is
    skipped with a warning and the sample computed, never fatal.  A full
    disk under the cache stops writing to it, not the run.

    Parameters
    ----------
    root : path-like
        The cache folder (created if missing).
    trusted : TrustedKeys, optional
        The keys whose entries are used, and the key new entries are signed
        with (None: own key and nothing else, from the default key file).
    limits : StoreLimits, optional
        Size limits of an entry's arrays (default: the store limits in force).
    """

    def __init__(self, root: str | os.PathLike[str], *, trusted: Any = None,
                 limits: Any = None) -> None:
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the cache folder {self.root}: {exc}") from exc
        if not self.root.is_dir():
            raise StoreError(f"the cache {self.root} is not a folder.")
        self._trusted = trusted
        self._limits = limits
        self._signer: Any = False  # not loaded yet
        self.writable = True
        self.skipped: dict[str, str] = {}  # entry path -> why it was not used

    @property
    def trusted(self) -> Any:
        if self._trusted is None:

            self._trusted = trusted_keys()
        return self._trusted

    def _path(self, key: str, suffix: str = ".h5") -> Path:
        if not _KEY.match(key):
            raise StoreError(f"{self.root}: {key!r} is not a cache key.")
        return self.root / key[:2] / f"{key}{suffix}"

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def _prefix(self, key: str) -> Path:
        """The prefix folder of ``key``, made with the cache folder's permissions."""
        folder = self._path(key).parent
        if not folder.is_dir():
            try:
                os.mkdir(folder)
            except FileExistsError:
                pass
            else:  # umask would take the group's write bit: copy the root's mode
                with contextlib.suppress(OSError):
                    os.chmod(folder, stat.S_IMODE(os.stat(self.root).st_mode))
        return folder

    def put(self, key: str, staged: str | os.PathLike[str]) -> Path | None:
        """Publish a staged sample under ``key``, signed (temporary name, then rename).

        Returns None, and writes nothing, when this run has no signing key or
        the cache cannot be written (a full disk turns writing off for the
        rest of this cache object's life; the run goes on).
        """


        if not self.writable:
            return None
        if self._signer is False:
            self._signer = self.trusted.signer()
        if self._signer is None:
            return None
        final = self._path(key)
        try:
            self._prefix(key)
            with atomic_path(final) as tmp:
                shutil.copyfile(staged, tmp)
                with h5py.File(tmp, "r+", locking=False) as fh:
                    fh.attrs["signer"] = self._signer.key_id
                    fh.attrs["signature"] = self._signer.sign(entry_message(key, fh["sample"]))
                with contextlib.suppress(OSError):
                    os.chmod(tmp, 0o644)  # readable by the cache's other users
        except Exception as exc:
            if _no_space(exc):
                self.writable = False
                logger.warning("the cache %s is full (no space left on its device); nothing "
                               "more is written to it in this run", self.root)
            else:
                logger.warning("cannot write cache entry %s (%s); the run goes on", final,
                               _short(exc))
            return None
        return final

    def fetch(self, key: str, sample_id: str, staging: str | os.PathLike[str],
              compression: str = "gzip", *, attrs: Mapping[str, Any] | None = None,
              check: Any = None) -> Path | None:
        """Copy the entry for ``key`` into ``staging`` as ``sample_id``; None if absent.

        ``attrs`` are the sample's attributes from the run's own input (those of
        :data:`INPUT_ATTRS` replace the entry's); ``check(arrays)`` raises for
        arrays the stage cannot have produced.  An entry that fails any check
        is reported, left alone and treated as absent.
        """
        src = self._path(key)
        if not src.is_file():
            return None
        try:
            arrays, entry_attrs = self.read(key)
            if check is not None:
                check(arrays)
        except Exception as exc:  # never fatal: the sample is computed instead
            why = _short(exc)
            self.skipped[str(src)] = why
            logger.warning("cache entry %s not used (%s); computing the sample", src, why)
            return None

        return write_staged_sample(staging, sample_id, key, arrays,
                                   merge_attrs(entry_attrs, attrs or {}),
                                   compression=compression)

    def read(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The arrays and attributes of the entry for ``key``, after every check.

        Raises
        ------
        StoreError
            The entry is not signed by a trusted key, breaks the store's
            structural checks or size limits, or does not match its data hash.
        """


        src = self._path(key)
        try:
            with h5py.File(src, "r", locking=False) as fh:
                _check_structure(src, fh, self._limits or store_limits())
                if str(fh.attrs.get("cache_key", "")) != key or "sample" not in fh:
                    raise StoreError("its cache key does not match its name")
                grp = fh["sample"]
                if not isinstance(grp, h5py.Group):
                    raise StoreError("it holds no sample group")
                why = self.trusted.check(str(fh.attrs.get("signer", "")),
                                         entry_message(key, grp),
                                         str(fh.attrs.get("signature", "")))
                if why:
                    raise StoreError(why)
                arrays = {n: grp[n][()] for n in grp}
                attrs = _decode_attrs(grp, f"{src}: sample")
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"unreadable ({_short(exc)})") from exc
        if hash_arrays(arrays) != str(attrs.get("data_hash", "")):
            raise StoreError("it does not match its data hash")
        return arrays, attrs

    def _lock_file(self, key: str) -> Any:
        path = self._path(key, ".lock")
        self._prefix(key)
        # read access is enough for flock: a lock file made by another user of the
        # group (mode 0644 under the usual umask) still serves everyone
        flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, os.O_RDONLY | flags, 0o666)
        except PermissionError as exc:
            raise StoreError(
                f"{path}: cannot open the cache's lock file ({exc.strerror}); a cache shared "
                "by several users needs a group-owned folder with the setgid bit (chmod "
                "2775), see docs/sharing.md.") from exc
        return os.fdopen(fd, "rb")

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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, StoreError) and text else \
        f"{type(exc).__name__}: {text}".rstrip(": ")


def reuse_index(paths: list[str] | tuple[str, ...], trusted: Any = None
                ) -> dict[str, tuple[str, str]]:
    """Index stores received from elsewhere by the cache keys of their samples.

    Each store must pass every check of ``mexkit validate`` first
    (:func:`mexkit.io.store.validate_store`: checksums, structure, data and
    content hashes) and be signed by a key of ``trusted`` (default: this
    run's own key only); otherwise :class:`StoreError` names it.

    Returns
    -------
    dict
        ``cache_key -> (store path, sample id)``.
    """

    if trusted is None:

        trusted = trusted_keys()
    index: dict[str, tuple[str, str]] = {}
    for p in paths:
        problems = validate_store(p)
        if problems:
            raise StoreError(f"--reuse {p}: the store does not pass validation: {problems[0]}")
        with open_store(p) as s:
            why = s.signed_by(trusted)
            if why:
                raise StoreError(f"--reuse {p}: the store is refused: {why} (trust its "
                                 "maker's public key with --trust KEYFILE; docs/sharing.md).")
            for sid, key in s.cache_keys().items():
                if key:
                    index.setdefault(key, (str(p), sid))
    return index


def read_from_store(path: str, source_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Arrays and attributes of sample ``source_id`` of a ``--reuse`` store, checked
    against its data hash."""

    with open_store(path) as s:
        view = s[source_id]
        arrays = view.arrays()
        if hash_arrays(arrays) != str(view.attrs.get("data_hash", "")):
            raise StoreError(f"--reuse {path}: sample {source_id!r} does not match its data "
                             "hash.")
        return arrays, dict(view.attrs)


def copy_from_store(path: str, source_id: str, sample_id: str, key: str,
                    staging: str | os.PathLike[str], compression: str = "gzip", *,
                    attrs: Mapping[str, Any] | None = None, check: Any = None) -> Path:
    """Stage sample ``source_id`` of the store at ``path`` as ``sample_id`` (same key).

    ``attrs`` are the sample's attributes from the run's own input (those of
    :data:`INPUT_ATTRS` replace the store's); ``check(arrays)`` raises for
    arrays the stage cannot have produced (the store is then refused).
    """

    arrays, stored = read_from_store(path, source_id)
    if check is not None:
        try:
            check(arrays)
        except Exception as exc:
            raise StoreError(f"--reuse {path}: sample {source_id!r} is refused: "
                             f"{_short(exc)}") from exc
    return write_staged_sample(staging, sample_id, key, arrays,
                               merge_attrs(stored, attrs or {}), compression=compression)
