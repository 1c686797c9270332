"""Run one stage over many samples: caching, parallel workers, progress, failures.

This is the only place that combines IO, compute, caching and parallelism.
A stage is described by a list of :class:`Task` (one per sample) and a
picklable ``compute(task) -> (arrays, attrs)`` function.  Finished samples
are staged one file each by the worker that computed them, so a killed job
keeps them; :class:`~mexkit.io.store.StoreWriter` assembles the store at the
end.  One sample's failure is recorded and never cancels the others.
"""
from __future__ import annotations

import logging
import os
import random
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import check_option, check_range
from ..errors import DiskFullError, InputChangedError, MexkitError, ParameterError, StoreError
from ..io.signing import trusted_keys
from ..io.store import StoreWriter, staged_name, write_staged_sample
from .cache import INPUT_ATTRS, SampleCache, copy_from_store, read_from_store, reuse_index
from .parallel import (
    BACKENDS,
    ClusterLostError,
    chunked,
    current_config,
    in_shard,
    is_lost_worker,
    parallel_map,
    progress_bar,
    watch_parent,
)

__all__ = ["Task", "StageResult", "run_stage", "batched", "BACKENDS"]

# status, sample id, staged path or one-line reason, traceback
Outcome = tuple[str, str, str, str]

logger = logging.getLogger("mexkit")

# errors that stop the whole stage instead of failing one sample
_FATAL = (InputChangedError, DiskFullError)


@dataclass
class Task:
    """One sample's work.

    Attributes
    ----------
    sample_id : str
        Unique id of the sample in the output store.
    cache_key : str
        See :func:`mexkit.pipeline.cache.cache_key`.
    attrs : dict
        Metadata stored with the sample (subject, clip, label, ...).
    payload : object
        Whatever ``compute`` needs (picklable: paths, indices, options).
    """

    sample_id: str
    cache_key: str
    attrs: dict[str, Any] = field(default_factory=dict)
    payload: Any = None


@dataclass
class StageResult:
    """What a stage did; the CLI turns it into output and an exit code."""

    path: Path
    computed: int = 0
    skipped: int = 0
    from_cache: int = 0
    reused: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    if isinstance(exc, MexkitError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def batched(compute: Callable) -> Callable:
    """Mark ``compute`` as taking a list of tasks (see ``group`` in :func:`run_stage`)."""
    compute.batched = True  # type: ignore[attr-defined]
    return compute


def _stage_one(task: Task, res: Any, staging: str, compression: str,
               cache: SampleCache | None) -> Outcome:
    """Stage one computed result (or record its exception).  Never raises."""
    if isinstance(res, _FATAL):
        raise res
    if isinstance(res, BaseException):
        detail = "" if isinstance(res, MexkitError) else "".join(
            traceback.format_exception(type(res), res, res.__traceback__))
        return ("failed", task.sample_id, _one_line(res), detail)
    try:
        arrays, extra = res
        attrs = dict(task.attrs)
        attrs.update(extra)
        p = write_staged_sample(staging, task.sample_id, task.cache_key, arrays, attrs,
                                compression=compression)
    except _FATAL:
        raise
    except Exception as exc:
        detail = traceback.format_exc() if not isinstance(exc, MexkitError) else ""
        return ("failed", task.sample_id, _one_line(exc), detail)
    if cache is not None:
        cache.put(task.cache_key, p)
    return ("ok", task.sample_id, str(p), "")


def _compute_one(compute: Callable, task: Task) -> Any:
    try:
        return compute(task)
    except _FATAL:
        raise
    except Exception as exc:  # one sample's failure must not cancel the others
        return exc


def _iter_batch(compute: Callable, tasks: list[Task]) -> Iterator[tuple[Task, Any]]:
    """Results of a batched ``compute`` one task at a time, as it yields them.

    If the batch fails as a whole, the tasks it had not yet delivered are
    computed one by one, so one bad sample fails alone.
    """
    done = 0
    try:
        for res in compute(tasks):
            if done >= len(tasks):
                raise RuntimeError(f"compute returned more than {len(tasks)} results")
            yield tasks[done], res
            done += 1
        if done != len(tasks):
            raise RuntimeError(f"compute returned {done} results for {len(tasks)} tasks")
    except _FATAL:
        raise
    except Exception as exc:
        rest = tasks[done:]
        if len(rest) == 1 and len(tasks) == 1:
            yield rest[0], exc
            return
        for t in rest:
            yield from _iter_batch(compute, [t])


class CacheRefused(StoreError):
    """An audited cache entry or ``--reuse`` sample differs from its recomputation."""


def _differences(a: Mapping[str, Any], a_attrs: Mapping[str, Any], b: Mapping[str, Any],
                 b_attrs: Mapping[str, Any]) -> str:
    """'' if two results of one sample agree, else the first difference (one phrase).

    Integer arrays must be equal; float arrays equal to rounding (relative
    1e-4, absolute 1e-5, NaN where NaN); the computed attributes (all but who
    the sample is, :data:`~mexkit.pipeline.cache.INPUT_ATTRS`) equal.
    """
    if sorted(a) != sorted(b):
        return f"arrays {sorted(a)} instead of {sorted(b)}"
    for name in sorted(a):
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype != y.dtype or x.shape != y.shape:
            return f"{name!r} is {x.dtype} {x.shape} instead of {y.dtype} {y.shape}"
        if x.dtype.kind == "f":
            same = np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True)
        else:
            same = np.array_equal(x, y)
        if not same:
            diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
            return f"{name!r} differs by up to {float(np.nanmax(diff)):.4g}"
    skip = set(INPUT_ATTRS) | {"sample_id", "cache_key", "data_hash"}
    for k in sorted((set(a_attrs) | set(b_attrs)) - skip):
        u, v = a_attrs.get(k), b_attrs.get(k)
        if isinstance(u, float) and isinstance(v, float):
            if np.isclose(u, v, rtol=1e-4, atol=1e-6, equal_nan=True):
                continue
        if u != v:
            return f"attribute {k!r} is {u!r} instead of {v!r}"
    return ""


def _audit(compute: Callable, task: Task, batched_compute: bool, arrays: Mapping[str, Any],
           attrs: Mapping[str, Any], where: str) -> None:
    """Recompute ``task`` and raise :class:`CacheRefused` if it differs from what
    ``where`` (a cache entry or a reused store) holds."""
    res = next(_iter_batch(compute, [task]))[1] if batched_compute else \
        _compute_one(compute, task)
    if isinstance(res, BaseException):
        logger.warning("audit of sample %s: recomputing it failed (%s); not compared",
                       task.sample_id, _one_line(res))
        return
    fresh, extra = res
    fresh_attrs = {**task.attrs, **extra}
    why = _differences(arrays, attrs, fresh, fresh_attrs)
    if why:
        raise CacheRefused(f"{where} (sample {task.sample_id!r}) differs from its "
                           f"recomputation: {why}; it is refused (--audit)")
    logger.info("audit: sample %s from %s equals its recomputation", task.sample_id, where)


def _audited(audit: float) -> bool:
    return audit > 0 and random.SystemRandom().random() < audit


def _run_chunk(compute: Callable, tasks: list[Task], staging: str, compression: str,
               batched_compute: bool, parent_pid: int, cache_dir: str | None,
               trusted: Any = None, audit: float = 0.0, check: Callable | None = None
               ) -> list[Outcome]:
    """Compute and stage a chunk of samples, each staged as soon as it is done.

    Runs in a worker (or in the main process with one job); never raises for
    a sample's failure.  With a cache, samples found there (signed by a key
    of ``trusted``, passing ``check(task, arrays)``) are copied in instead of
    computed, a share ``audit`` of them recomputed and compared, and samples
    another job is computing are waited for (see
    :class:`~mexkit.pipeline.cache.SampleCache`).  An audited entry that
    differs raises :class:`CacheRefused` after removing what this chunk took
    from the cache.
    """
    watch_parent(parent_pid)
    cache = SampleCache(cache_dir, trusted=trusted) if cache_dir else None
    out: list[Outcome] = []
    claims: list[Any] = []
    todo: list[Task] = []
    waiting: list[Task] = []

    def fetch(t: Task) -> bool:
        assert cache is not None
        p = cache.fetch(t.cache_key, t.sample_id, staging, compression, attrs=t.attrs,
                        check=None if check is None else partial(check, t))
        if p is None:
            return False
        out.append(("cached", t.sample_id, str(p), ""))
        if _audited(audit):
            arrays, attrs = cache.read(t.cache_key)
            try:
                _audit(compute, t, batched_compute, arrays, attrs,
                       f"cache entry {cache._path(t.cache_key)}")
            except CacheRefused:
                for status, _, path, _ in out:
                    if status == "cached":
                        Path(path).unlink(missing_ok=True)
                raise
        return True

    try:
        for t in tasks:
            if cache is None:
                todo.append(t)
                continue
            if fetch(t):
                continue
            claim = cache.claim(t.cache_key)
            if claim is None:  # another job is computing it
                waiting.append(t)
                continue
            claims.append(claim)
            if fetch(t):
                continue  # finished while we looked
            todo.append(t)
        out.extend(_compute_and_stage(compute, todo, staging, compression, batched_compute,
                                      cache))
    finally:
        for c in claims:
            c.release()
    for t in waiting:  # holding no claim now, so no two jobs wait on each other
        with cache.wait(t.cache_key):  # type: ignore[union-attr]
            if not fetch(t):  # the other job failed on it: compute here
                out.extend(_compute_and_stage(compute, [t], staging, compression,
                                              batched_compute, cache))
    return out


def _compute_and_stage(compute: Callable, tasks: list[Task], staging: str, compression: str,
                       batched_compute: bool, cache: SampleCache | None) -> list[Outcome]:
    if not tasks:
        return []
    if batched_compute:
        pairs: Iterable[tuple[Task, Any]] = _iter_batch(compute, tasks)
    else:
        pairs = ((t, _compute_one(compute, t)) for t in tasks)
    return [_stage_one(t, res, staging, compression, cache) for t, res in pairs]


def _say_uncomputable(stage: str, extra: Mapping[str, str]) -> None:
    """Warn that ``extra`` samples are recorded as failed, and why, in counts."""
    # say which: a first stage (crop) has no earlier stage, only missing inputs
    upstream_failed = sum(str(m).startswith("failed upstream") for m in extra.values())
    why = [f"{n} {text}" for n, text in (
        (upstream_failed, "failed in an earlier stage"),
        (len(extra) - upstream_failed, "have no readable input")) if n]
    logger.warning("%s: %d sample(s) cannot be computed and are recorded as failed (%s)",
                   stage, len(extra), ", ".join(why))


@dataclass
class _Run:
    """One run of a stage: where its outcomes go (the writer, the result, the bar)."""

    stage: str
    writer: StoreWriter
    keys: Mapping[str, str]
    result: StageResult
    bar: Any

    def record(self, status: str, sid: str, info: str, detail: str) -> None:
        _record(self.result, self.writer, self.keys, status, sid, info, detail)
        self.bar.update(1)

    def after_loss(self, exc: BaseException, pending: dict[str, Task], attempt: int,
                   retries: int) -> bool:
        """After a lost worker or cluster: keep what it staged; True to try the rest again.

        Samples that the lost worker staged but could not report are
        recorded as done; the others are tried again while attempts remain
        (never after the whole cluster was lost), else recorded as failed.
        """
        reason = _one_line(exc)
        staging = Path(self.writer.staging)
        for sid in [s for s, t in pending.items()
                    if (staging / staged_name(s, t.cache_key)).exists()]:
            self.record("ok", sid, str(staging / staged_name(sid, self.keys[sid])), "")
            pending.pop(sid)
        if not pending:
            return False
        failures = self.result.failures
        if isinstance(exc, ClusterLostError):  # no worker to retry on
            logger.error("%s: %d sample(s) not computed, %s; the finished ones are kept, "
                         "re-run to compute the rest", self.stage, len(pending), reason)
            for sid in pending:
                failures[sid] = f"not computed: {reason}"
            pending.clear()
            return False
        if attempt < retries:
            logger.warning("%s: %d sample(s) lost with a worker (%s); trying them again "
                           "(%d of %d)", self.stage, len(pending), reason, attempt + 1,
                           retries)
            return True
        for sid in pending:
            failures[sid] = f"lost with a worker after {retries + 1} attempt(s): {reason}"
            logger.error("sample %s failed: %s", sid, failures[sid])
        pending.clear()
        return False


def _take_shard(tasks: Sequence[Task], extra_failures: Mapping[str, str] | None,
                shard: tuple[int, int], all_samples: Iterable[str] | None, stage: str
                ) -> tuple[list[Task], dict[str, str], dict[str, Any]]:
    """The tasks and failures of shard ``(index, count)``, and what the part records of
    it: which shard of which sample set it holds (merge checks that every shard is there)."""
    ids = [t.sample_id for t in tasks]
    record = {"shards": [shard[0]], "count": shard[1],
              "samples": sorted(set(ids) | set(extra_failures or {}) | set(all_samples or ()))}
    mine = [t for t in tasks if in_shard(t.sample_id, shard)]
    failures = {sid: msg for sid, msg in (extra_failures or {}).items() if in_shard(sid, shard)}
    logger.info("%s: shard %d of %d holds %d of %d sample(s)", stage, shard[0], shard[1],
                len(mine), len(ids))
    return mine, failures, record


def run_stage(tasks: Sequence[Task], compute: Callable[..., Any], *,
              output: str | Path, stage: str, params: Mapping[str, Any],
              upstream: Iterable[Mapping[str, Any]] = (), jobs: int = 1, backend: str = "loky",
              progress: bool = True, compression: str = "gzip",
              extra_failures: Mapping[str, str] | None = None, group: int = 1,
              batched_compute: bool | None = None, retries: int | None = None,
              shard: tuple[int, int] | None = None, cache: str | Path | None = None,
              scheduler: str | None = None, address: str | None = None,
              inputs: Iterable[str | Path] = (),
              check: Callable[[Task, Mapping[str, Any]], None] | None = None,
              before_finalize: Callable[[], None] | None = None,
              all_samples: Iterable[str] | None = None) -> StageResult:
    """Run ``compute`` over ``tasks`` and write the output store.

    Parameters
    ----------
    tasks : sequence of Task
        One per sample; sample ids must be unique.
    compute : callable
        ``compute(task) -> (arrays, attrs)``, or, for a batched compute
        (marked with :func:`batched`), ``compute(list_of_tasks)`` returning
        or yielding one ``(arrays, attrs)`` or exception per task, in order.
        Must be picklable (a module-level function) for process backends.
        Raise a :class:`MexkitError` for a sample that cannot be processed.
    output : path
        The output store.
    stage, params, upstream
        Provenance written into the store (see :class:`StoreWriter`).
    jobs : int
        Number of workers; 1 runs a plain loop in this process.
    backend : {"loky", "threading", "dask", "ray"}
        joblib backend for ``jobs > 1`` (see :mod:`mexkit.pipeline.parallel`).
    progress : bool
        Show a progress bar on stderr (only when stderr is a terminal).
    compression : {"gzip", "lzf"}
        Compression of the stored arrays.
    extra_failures : mapping, optional
        Samples that cannot be computed at all (e.g. failed upstream), with
        their reasons; they are recorded as failures of this stage too.
    group : int
        Samples per chunk sent to one worker (the same chunks for every
        backend).  A batched compute gets each chunk in one call, so that a
        batched solver (TV-L1 on many pairs at once) sees several samples;
        each sample is staged as soon as ``compute`` yields it.  If a batch
        fails as a whole, its samples are retried one by one.
    batched_compute : bool, optional
        Whether ``compute`` takes a list of tasks (default: whether it was
        marked with :func:`batched`).
    inputs : iterable of path
        Files and folders the stage reads besides its upstream stores (videos,
        image folders): the output never replaces one of them.
    check : callable, optional
        ``check(task, arrays)`` raises (a :class:`~mexkit.errors.MexkitError`)
        when ``arrays`` cannot be what ``compute`` makes for ``task`` (names,
        shapes, dtypes, value ranges); a picklable module-level function.
        Applied to every sample taken from the cache or a ``--reuse`` store
        before it is used (docs/sharing.md).
    all_samples : iterable of str, optional
        With a shard: the ids of the whole run's samples, where the caller
        left the other shards' samples out of ``tasks`` already (recorded in
        the part, so that merge can tell when a shard is missing).
    before_finalize : callable, optional
        Called once every sample is done, before the store is assembled; it
        raises to stop the run without writing the output (the staged samples
        are kept), e.g. when the input store changed during the run.
    retries, shard, cache, scheduler, address
        Default to the settings in force (:func:`mexkit.pipeline.parallel.configure`):
        how many more times samples lost with a worker are tried before they
        are recorded as failed; which shard ``(index, count)`` of the samples
        this job computes (the output then holds that shard only); a shared
        cache folder of finished samples; the Dask scheduler or Ray cluster.
        The stores to reuse samples from (``--reuse``) come from there too.

    Returns
    -------
    StageResult
        Counts of computed, skipped (cached) and failed samples.
    """
    cfg = current_config()
    retries = cfg.retries if retries is None else retries
    shard = cfg.shard if shard is None else shard
    cache = cfg.cache if cache is None else cache
    reuse = cfg.reuse
    scheduler = cfg.scheduler if scheduler is None else scheduler
    address = cfg.address if address is None else address
    if batched_compute is None:
        batched_compute = bool(getattr(compute, "batched", False))
    check_option("backend", backend, BACKENDS)
    check_range("jobs", jobs, 1)
    check_range("group", group, 1)
    check_range("retries", retries, 0)
    ids = [t.sample_id for t in tasks]
    if len(set(ids)) != len(ids):
        dup = sorted({s for s in ids if ids.count(s) > 1})
        raise ParameterError(f"Duplicate sample ids: {', '.join(dup[:5])}.")
    meta: dict[str, Any] = {}
    if shard is not None:
        tasks, extra_failures, meta["shard"] = _take_shard(tasks, extra_failures, shard,
                                                           all_samples, stage)
        ids = [t.sample_id for t in tasks]
    cache_dir = str(SampleCache(cache).root) if cache else None
    trusted = trusted_keys(cfg.trust)
    signer = trusted.signer()
    start = time.perf_counter()
    output = Path(output)
    result = StageResult(path=output)
    keys = {t.sample_id: t.cache_key for t in tasks}
    extra = {sid: msg for sid, msg in (extra_failures or {}).items() if sid not in keys}
    if extra:
        _say_uncomputable(stage, extra)
    with StoreWriter(output, stage=stage, params=params, upstream=upstream,
                     compression=compression, inputs=[*inputs, *reuse, *cfg.trust],
                     overwrite=cfg.overwrite, signer=signer, meta=meta) as writer:
        todo = [t for t in tasks if not writer.finished(t.sample_id, t.cache_key)]
        result.skipped = len(tasks) - len(todo)
        if result.skipped:
            logger.info("%s: %d of %d sample(s) already done with the same inputs and "
                        "parameters; skipped", stage, result.skipped, len(tasks))
        if todo:
            logger.info("%s: computing %d sample(s)", stage, len(todo))
        staging = str(writer.staging)
        if reuse and todo:
            todo = _reuse(todo, reuse, staging, compression, writer, result, trusted,
                          cfg.audit, check, compute, batched_compute)
        bar = progress_bar(len(todo), stage, enabled=progress)
        pending = {t.sample_id: t for t in todo}
        work = partial(_run_chunk, compute, staging=staging, compression=compression,
                       batched_compute=batched_compute, parent_pid=os.getpid(),
                       cache_dir=cache_dir, trusted=trusted, audit=cfg.audit, check=check)
        run = _Run(stage, writer, keys, result, bar)
        cached_here: list[str] = []
        try:
            for attempt in range(retries + 1):
                if not pending:
                    break
                try:
                    for outcomes in parallel_map(work, chunked(list(pending.values()), group),
                                                 jobs=jobs, backend=backend,
                                                 scheduler=scheduler, address=address):
                        for status, sid, info, detail in outcomes:
                            pending.pop(sid, None)
                            if status == "cached":
                                cached_here.append(sid)
                            run.record(status, sid, info, detail)
                except CacheRefused:
                    # nothing taken from a refused cache is kept for a resume
                    for sid in cached_here:
                        (Path(staging) / staged_name(sid, keys[sid])).unlink(missing_ok=True)
                    raise
                except Exception as exc:
                    if not (is_lost_worker(exc) or isinstance(exc, ClusterLostError)):
                        raise
                    # a worker, a node or the connection to the cluster was lost
                    if not run.after_loss(exc, pending, attempt, retries):
                        break
        finally:
            bar.close()
        result.failures.update(extra)
        if before_finalize is not None:
            before_finalize()
        writer.finalize(ids, keys, result.failures)
    result.seconds = time.perf_counter() - start
    logger.debug("%s: %d computed, %d skipped (cached), %d failed in %.1f s -> %s", stage,
                 result.computed, result.skipped, len(result.failures), result.seconds, output)
    return result


def _reuse(todo: list[Task], stores: Sequence[str], staging: str, compression: str,
           writer: StoreWriter, result: StageResult, trusted: Any = None,
           audit: float = 0.0, check: Callable | None = None, compute: Callable | None = None,
           batched_compute: bool = False) -> list[Task]:
    """Copy the samples whose cache key a validated, trusted ``--reuse`` store holds;
    return the rest.  A share ``audit`` of them is recomputed and compared first."""
    index = reuse_index(tuple(stores), trusted)
    rest = [t for t in todo if t.cache_key not in index]
    hits = [t for t in todo if t.cache_key in index]
    if compute is not None:  # audited before anything is copied
        for t in hits:
            if _audited(audit):
                hit = index[t.cache_key]
                arrays, attrs = read_from_store(hit[0], hit[1])
                _audit(compute, t, batched_compute, arrays, attrs,
                       f"--reuse {hit[0]}, sample {hit[1]!r},")
    for t in hits:
        hit = index[t.cache_key]
        p = copy_from_store(hit[0], hit[1], t.sample_id, t.cache_key, staging, compression,
                            attrs=t.attrs, check=None if check is None else partial(check, t))
        writer.register(t.sample_id, t.cache_key, str(p))
        result.skipped += 1
        result.reused += 1
    if len(rest) < len(todo):
        logger.info("reused %d sample(s) from %s", len(todo) - len(rest), ", ".join(stores))
    return rest


def _record(result: StageResult, writer: StoreWriter, keys: Mapping[str, str], status: str,
            sid: str, info: str, detail: str) -> None:
    if status in ("ok", "cached"):
        writer.register(sid, keys[sid], info)
        if status == "ok":
            result.computed += 1
        else:
            result.skipped += 1
            result.from_cache += 1
        return
    result.failures[sid] = info
    logger.error("sample %s failed: %s", sid, info)
    if detail:
        logger.debug("%s", detail)
