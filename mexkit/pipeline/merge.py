"""Join the partial stores of a sharded run (``--shard I/N``) into one store."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ParameterError, StoreError
from ..io.store import StoreWriter, hash_arrays, open_store, validate_store
from .runner import StageResult

__all__ = ["merge_stores"]

logger = logging.getLogger("mexkit")

_OWN_ATTRS = ("sample_id", "cache_key", "data_hash")


def _upstream_ids(upstream: list[dict[str, Any]]) -> list[tuple[str, str]]:
    # the path may differ between machines; the content may not
    return [(str(u.get("stage", "")), str(u.get("content_hash", ""))) for u in upstream]


def merge_stores(parts: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
                 progress: bool = True) -> StageResult:
    """Write one store holding every sample of ``parts``.

    Parameters
    ----------
    parts : sequence of path-like
        Stores of the same stage, parameters and upstream stores, usually the
        partial stores of a sharded run.  Each is validated first (checksum,
        every array against its data hash, content hash).
    output : path-like
        The merged store (written atomically; not one of the parts).
    progress : bool
        Unused; kept for the signature shared by the stages.

    Returns
    -------
    StageResult
        ``computed`` is the number of samples merged; ``failures`` holds the
        samples that failed in every part that lists them.

    Raises
    ------
    StoreError
        A part is invalid, or its stage, parameters or upstream stores differ
        from the first part's, or two parts hold different data for one
        sample; the message names the part.
    """
    start = time.perf_counter()
    if not parts:
        raise ParameterError("mexkit merge needs at least one part.")
    output = Path(output)
    paths = [Path(p) for p in parts]
    for p in paths:
        if p.exists() and output.exists() and os.path.samefile(p, output) or \
                p.resolve() == output.resolve():
            raise ParameterError(f"The output {str(output)!r} is one of the parts; choose "
                                 "another output (-o).")
    if len({p.resolve() for p in paths}) != len(paths):
        raise ParameterError("The same part is given twice.")
    first: dict[str, Any] | None = None
    owner: dict[str, tuple[Path, str, str]] = {}  # sid -> (part, cache key, data hash)
    failures: dict[str, str] = {}
    for p in paths:
        problems = validate_store(p)
        if problems:
            raise StoreError(f"part {p}: {problems[0]}")
        with open_store(p) as s:
            meta = {"stage": s.stage, "params": s.params, "upstream": _upstream_ids(s.upstream)}
            if first is None:
                first = {**meta, "path": p, "upstream_full": s.upstream}
            else:
                for what in ("stage", "params", "upstream"):
                    if meta[what] != first[what]:
                        raise StoreError(
                            f"part {p} has other {what} than {first['path']}: "
                            f"{meta[what]!r} instead of {first[what]!r}; parts of one run "
                            "share the stage, its parameters and its input stores.")
            for sid in s.sample_ids:
                attrs = s[sid].attrs
                entry = (p, str(attrs.get("cache_key", "")), str(attrs.get("data_hash", "")))
                if sid in owner and owner[sid][1:] != entry[1:]:
                    raise StoreError(f"part {p} and part {owner[sid][0]} hold different data "
                                     f"for sample {sid!r}.")
                owner.setdefault(sid, entry)
            for sid, msg in s.failures.items():
                failures.setdefault(sid, msg)
    assert first is not None
    failures = {sid: msg for sid, msg in failures.items() if sid not in owner}
    keys = {sid: e[1] for sid, e in owner.items()}
    keys.update({sid: "" for sid in failures})  # failed: no key
    result = StageResult(path=output)
    from .parallel import current_config

    with StoreWriter(output, stage=first["stage"], params=first["params"],
                     upstream=first["upstream_full"], inputs=paths,
                     overwrite=current_config().overwrite) as writer:
        by_part: dict[Path, list[str]] = {}
        for sid, (p, _, _) in owner.items():
            by_part.setdefault(p, []).append(sid)
        for p, sids in by_part.items():
            with open_store(p) as s:
                for sid in sorted(sids):
                    view = s[sid]
                    arrays = view.arrays()
                    if hash_arrays(arrays) != owner[sid][2]:
                        raise StoreError(f"part {p}: sample {sid!r} does not match its data "
                                         "hash.")
                    attrs = {k: v for k, v in view.attrs.items() if k not in _OWN_ATTRS}
                    writer.write_sample(sid, keys[sid], arrays, attrs)
                    result.computed += 1
        writer.finalize(sorted(set(owner) | set(failures)), keys, failures)
    result.failures = failures
    result.seconds = time.perf_counter() - start
    logger.info("merge: %d sample(s) and %d failure(s) from %d part(s) -> %s",
                result.computed, len(failures), len(paths), output)
    return result
