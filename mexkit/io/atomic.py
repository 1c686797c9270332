"""Atomic file writes: a temporary name in the same folder, fsync, rename.

Every file mexkit writes for others to read (stores, staged samples, sheets,
JSON reports, plots, checkpoints) goes through this module, so that a reader
sees either the old file or the complete new one, never a partial file, and a
killed writer leaves at most a hidden temporary that the next run removes.

Temporary names are ``.<final name>.tmp-<pid>-<random>`` in the folder of
the final file (a rename is atomic only within one file system).  They are
created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so an existing file or a link
planted under that name is never followed or overwritten.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "temporary_name",
    "is_temporary_of",
    "fsync_dir",
    "commit",
    "create_temporary",
    "atomic_path",
    "atomic_open",
    "write_bytes",
    "write_text",
    "write_json",
    "write_with",
]

_TMP_TAG = ".tmp-"


def temporary_name(path: str | os.PathLike[str], suffix: str = "") -> Path:
    """A fresh hidden temporary name beside ``path`` (not created).

    ``suffix`` is appended (e.g. ``".png"`` for writers that pick the format
    from the extension).
    """
    path = Path(path)
    return path.with_name(
        f".{path.name}{_TMP_TAG}{os.getpid()}-{secrets.token_hex(6)}{suffix}")


def is_temporary_of(candidate: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True if ``candidate`` is a temporary name made by :func:`temporary_name` for ``path``."""
    return Path(candidate).name.startswith(f".{Path(path).name}{_TMP_TAG}")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder so that a rename in it survives a power cut (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path) -> None:
    _fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def commit(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Finish an atomic write: fsync ``tmp``, rename it to ``path``, fsync the folder.

    For writers that fill a temporary of :func:`create_temporary` and
    commit it later (or in another thread, see
    :class:`mexkit.pipeline.runner`'s staging); on failure ``tmp`` is removed.
    """
    try:
        _commit(Path(tmp), Path(path))
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def create_temporary(path: str | os.PathLike[str], *, suffix: str = "") -> Path:
    """Create, empty and exclusively (no link followed), a temporary for ``path``."""
    tmp = temporary_name(path, suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o666)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path`` atomically.

    For libraries that insist on opening the file themselves (h5py,
    matplotlib, torch.save).  The temporary is created empty and exclusively
    (no link is followed) before it is yielded; it is removed if the block
    raises, and never left behind by this process.

    Examples
    --------
    >>> with atomic_path("plot.png", suffix=".png") as tmp:   # doctest: +SKIP
    ...     fig.savefig(tmp)
    """
    path = Path(path)
    tmp = create_temporary(path, suffix=suffix)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", *,
                encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path``.

    ``mode`` is ``"w"`` (text, with ``encoding`` and ``newline``) or
    ``"wb"``.  Use it for CSV (``newline=""``), JSON and any streamed text.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"Invalid value for the 'mode' parameter. Allowed values are 'w' "
                         f"and 'wb', but got {mode!r} instead.")
    with atomic_path(path) as tmp:
        if mode == "wb":
            with open(tmp, "wb") as fh:
                yield fh
                fh.flush()
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as fh:
                yield fh
                fh.flush()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return ``path``."""
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], value: Any, *, indent: int | None = 2,
               sort_keys: bool = True, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``value`` as JSON (UTF-8, trailing newline) to ``path`` atomically."""
    text = json.dumps(value, indent=indent, sort_keys=sort_keys, default=default)
    return write_text(path, text + "\n")


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any], *,
               suffix: str = "") -> Path:
    """Call ``writer(tmp)`` to fill a temporary file, then rename it to ``path``."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)
    return Path(path)
