"""Join the partial stores of a sharded run (``--shard I/N``) into one store."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ParameterError, StoreError
from ..io.signing import trusted_keys
from ..io.store import StoreWriter, hash_arrays, open_store, validate_store
from .parallel import current_config, in_shard
from .runner import StageResult

__all__ = ["merge_stores"]

logger = logging.getLogger("mexkit")

_OWN_ATTRS = ("sample_id", "cache_key", "data_hash")


def _upstream_ids(upstream: list[dict[str, Any]]) -> list[tuple[str, str]]:
    # the path may differ between machines; the content may not
    return [(str(u.get("stage", "")), str(u.get("content_hash", ""))) for u in upstream]


def _check_shards(records: dict[Path, dict[str, Any] | None], partial: bool
                  ) -> dict[str, Any] | None:
    """Check that the parts make a whole run; return the output's shard record.

    Every part of a sharded run records its shard index, the shard count and
    the whole run's sample ids.  The parts must agree on the count and the
    samples and hold every shard; otherwise :class:`StoreError` says which
    shards and how many samples are missing, unless ``partial``, when the
    output records the shards it holds (``inspect`` shows it).  Parts that
    record no shard (whole stores) are merged as they are.
    """
    given = {p: r for p, r in records.items() if r is not None}
    if not given:
        return None
    if len(given) != len(records):
        whole = next(p for p, r in records.items() if r is None)
        raise StoreError(f"part {whole} is a whole store while {next(iter(given))} is a "
                         "shard of a sharded run; merge the parts of one run.")
    first_path, first = next(iter(given.items()))
    held: set[int] = set()
    for p, r in given.items():
        try:
            count, samples = int(r["count"]), list(r["samples"])
            shards = {int(i) for i in r["shards"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"part {p}: its shard record is unreadable ({exc}).") from exc
        if count != int(first["count"]) or samples != list(first["samples"]):
            raise StoreError(
                f"part {p} is a shard of another run than {first_path} (shards of "
                f"{count} over {len(samples)} samples, not {first['count']} over "
                f"{len(first['samples'])}); merge the parts of one run.")
        if shards & held:
            raise StoreError(f"part {p} holds shard(s) {sorted(shards & held)} that another "
                             "part holds too; give each shard once.")
        held |= shards
    count = int(first["count"])
    missing = sorted(set(range(count)) - held)
    if not missing:
        return None
    lost = [sid for sid in first["samples"]
            if any(in_shard(sid, (i, count)) for i in missing)]
    what = (f"{len(held)} of {count} shards given: shard(s) "
            f"{', '.join(map(str, missing))} missing ({len(lost)} of "
            f"{len(first['samples'])} samples)")
    if not partial:
        raise StoreError(f"merge: {what}; give every part, or --partial to write an "
                         "incomplete store that says so.")
    logger.warning("merge: %s; the output is a partial store", what)
    return {"shards": sorted(held), "count": count, "samples": list(first["samples"]),
            "partial": True}


def _signer() -> Any:
    return trusted_keys(current_config().trust).signer()


def merge_stores(parts: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
                 progress: bool = True, partial: bool = False) -> StageResult:
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
    partial : bool
        Write the store even if shards of the run are missing; it records
        which shards it holds (``mexkit inspect`` shows it).

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
        sample, or (without ``partial``) a shard of the run is missing; the
        message names the part or the missing shards.
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
    records: dict[Path, dict[str, Any] | None] = {}
    for p in paths:
        problems = validate_store(p)
        if problems:
            raise StoreError(f"part {p}: {problems[0]}")
        with open_store(p) as s:
            records[p] = s.shard
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
    shard = _check_shards(records, partial)
    failures = {sid: msg for sid, msg in failures.items() if sid not in owner}
    keys = {sid: e[1] for sid, e in owner.items()}
    keys.update({sid: "" for sid in failures})  # failed: no key
    result = StageResult(path=output)
    with StoreWriter(output, stage=first["stage"], params=first["params"],
                     upstream=first["upstream_full"], inputs=paths,
                     overwrite=current_config().overwrite, signer=_signer(),
                     meta={"shard": shard} if shard else None) as writer:
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
