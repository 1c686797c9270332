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
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .._validate import check_option, check_range
from ..errors import MexkitError, ParameterError
from ..io.store import StoreWriter, staged_name, write_staged_sample
from .cache import SampleCache, copy_from_store, reuse_index
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


class _Committer:
    """Finishes staged files (fsync, rename) in background threads.

    Writing a staged sample is CPU work under h5py's lock; its fsync is a
    wait for the disk (several milliseconds on a virtual disk), which the
    next samples need not wait for. Staged files are committed by a few
    threads, several fsyncs sharing the file system's journal commits; a
    chunk's outcomes are returned only once all its files are committed
    (:meth:`finish`), so a sample counts as staged exactly when it is on
    disk under its final name, as before. A run killed meanwhile leaves
    temporaries, removed by the next run, whose samples are computed again.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mexkit-commit")
        self._pending: dict[str, Any] = {}

    def __call__(self, tmp: Path, final: Path) -> None:
        from ..io.atomic import commit

        self._pending[str(final)] = self._pool.submit(commit, tmp, final)

    def finish(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Wait for every commit; a sample whose commit failed becomes a failure."""
        self._pool.shutdown(wait=True)
        done = []
        for out in outcomes:
            future = self._pending.get(out[2]) if out[0] == "ok" else None
            exc = future.exception() if future is not None else None
            if exc is not None:
                detail = traceback.format_exception(type(exc), exc, exc.__traceback__)
                out = ("failed", out[1], _one_line(exc), "".join(detail))
            done.append(out)
        return done


def _stage_one(task: Task, res: Any, staging: str, compression: str,
               cache: SampleCache | None, commit: _Committer | None = None) -> Outcome:
    """Stage one computed result (or record its exception).  Never raises.

    With ``commit`` (and no cache, which needs the file at once), the staged
    file's fsync and rename are left to it.
    """
    if isinstance(res, BaseException):
        detail = "" if isinstance(res, MexkitError) else "".join(
            traceback.format_exception(type(res), res, res.__traceback__))
        return ("failed", task.sample_id, _one_line(res), detail)
    try:
        arrays, extra = res
        attrs = dict(task.attrs)
        attrs.update(extra)
        p = write_staged_sample(staging, task.sample_id, task.cache_key, arrays, attrs,
                                compression=compression,
                                commit=commit if cache is None else None)
    except Exception as exc:
        detail = traceback.format_exc() if not isinstance(exc, MexkitError) else ""
        return ("failed", task.sample_id, _one_line(exc), detail)
    if cache is not None:
        cache.put(task.cache_key, p)
    return ("ok", task.sample_id, str(p), "")


def _compute_one(compute: Callable, task: Task) -> Any:
    try:
        return compute(task)
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
    except Exception as exc:
        rest = tasks[done:]
        if len(rest) == 1 and len(tasks) == 1:
            yield rest[0], exc
            return
        for t in rest:
            yield from _iter_batch(compute, [t])


def _run_chunk(compute: Callable, tasks: list[Task], staging: str, compression: str,
               batched_compute: bool, parent_pid: int, cache_dir: str | None
               ) -> list[Outcome]:
    """Compute and stage a chunk of samples, each staged as soon as it is done.

    Runs in a worker (or in the main process with one job); never raises for
    a sample's failure.  With a cache, samples found there are copied in
    instead of computed, and samples another job is computing are waited
    for (see :class:`~mexkit.pipeline.cache.SampleCache`).
    """
    watch_parent(parent_pid)
    cache = SampleCache(cache_dir) if cache_dir else None
    out: list[Outcome] = []
    claims: list[Any] = []
    todo: list[Task] = []
    waiting: list[Task] = []
    try:
        for t in tasks:
            if cache is None:
                todo.append(t)
                continue
            if cache.fetch(t.cache_key, t.sample_id, staging, compression) is not None:
                out.append(_cached_outcome(t, staging))
                continue
            claim = cache.claim(t.cache_key)
            if claim is None:  # another job is computing it
                waiting.append(t)
                continue
            claims.append(claim)
            if cache.fetch(t.cache_key, t.sample_id, staging, compression) is not None:
                out.append(_cached_outcome(t, staging))  # finished while we looked
                continue
            todo.append(t)
        out.extend(_compute_and_stage(compute, todo, staging, compression, batched_compute,
                                      cache))
    finally:
        for c in claims:
            c.release()
    for t in waiting:  # holding no claim now, so no two jobs wait on each other
        with cache.wait(t.cache_key):  # type: ignore[union-attr]
            if cache.fetch(t.cache_key, t.sample_id, staging,  # type: ignore[union-attr]
                           compression) is not None:
                out.append(_cached_outcome(t, staging))
            else:  # the other job failed on it: compute here
                out.extend(_compute_and_stage(compute, [t], staging, compression,
                                              batched_compute, cache))
    return out


def _cached_outcome(task: Task, staging: str) -> Outcome:
    p = Path(staging) / staged_name(task.sample_id, task.cache_key)
    return ("cached", task.sample_id, str(p), "")


def _compute_and_stage(compute: Callable, tasks: list[Task], staging: str, compression: str,
                       batched_compute: bool, cache: SampleCache | None) -> list[Outcome]:
    if not tasks:
        return []
    if batched_compute:
        pairs: Iterable[tuple[Task, Any]] = _iter_batch(compute, tasks)
    else:
        pairs = ((t, _compute_one(compute, t)) for t in tasks)
    committer = _Committer()
    outcomes: list[Outcome] = []
    try:
        for t, res in pairs:
            outcomes.append(_stage_one(t, res, staging, compression, cache, committer))
    finally:
        outcomes = committer.finish(outcomes)
    return outcomes


def run_stage(tasks: Sequence[Task], compute: Callable[..., Any], *,
              output: str | Path, stage: str, params: Mapping[str, Any],
              upstream: Iterable[Mapping[str, Any]] = (), jobs: int = 1, backend: str = "loky",
              progress: bool = True, compression: str = "gzip",
              extra_failures: Mapping[str, str] | None = None, group: int = 1,
              batched_compute: bool | None = None, retries: int | None = None,
              shard: tuple[int, int] | None = None, cache: str | Path | None = None,
              scheduler: str | None = None, address: str | None = None) -> StageResult:
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
    if shard is not None:
        tasks = [t for t in tasks if in_shard(t.sample_id, shard)]
        extra_failures = {sid: msg for sid, msg in (extra_failures or {}).items()
                          if in_shard(sid, shard)}
        logger.info("%s: shard %d of %d holds %d of %d sample(s)", stage, shard[0], shard[1],
                    len(tasks), len(ids))
        ids = [t.sample_id for t in tasks]
    cache_dir = str(SampleCache(cache).root) if cache else None
    start = time.perf_counter()
    output = Path(output)
    result = StageResult(path=output)
    keys = {t.sample_id: t.cache_key for t in tasks}
    extra = {sid: msg for sid, msg in (extra_failures or {}).items() if sid not in keys}
    if extra:
        # say which: a first stage (crop) has no earlier stage, only missing inputs
        upstream_failed = sum(str(m).startswith("failed upstream") for m in extra.values())
        why = [f"{n} {text}" for n, text in (
            (upstream_failed, "failed in an earlier stage"),
            (len(extra) - upstream_failed, "have no readable input")) if n]
        logger.warning("%s: %d sample(s) cannot be computed and are recorded as failed (%s)",
                       stage, len(extra), ", ".join(why))
    with StoreWriter(output, stage=stage, params=params, upstream=upstream,
                     compression=compression) as writer:
        todo = [t for t in tasks if not writer.finished(t.sample_id, t.cache_key)]
        result.skipped = len(tasks) - len(todo)
        if result.skipped:
            logger.info("%s: %d of %d sample(s) already done with the same inputs and "
                        "parameters; skipped", stage, result.skipped, len(tasks))
        if todo:
            logger.info("%s: computing %d sample(s)", stage, len(todo))
        staging = str(writer.staging)
        if reuse and todo:
            todo = _reuse(todo, reuse, staging, compression, writer, result)
        bar = progress_bar(len(todo), stage, enabled=progress)
        pending = {t.sample_id: t for t in todo}
        try:
            for attempt in range(retries + 1):
                if not pending:
                    break
                work = partial(_run_chunk, compute, staging=staging, compression=compression,
                               batched_compute=batched_compute, parent_pid=os.getpid(),
                               cache_dir=cache_dir)
                try:
                    for outcomes in parallel_map(work, chunked(list(pending.values()), group),
                                                 jobs=jobs, backend=backend,
                                                 scheduler=scheduler, address=address):
                        for status, sid, info, detail in outcomes:
                            pending.pop(sid, None)
                            _record(result, writer, keys, status, sid, info, detail)
                            bar.update(1)
                except Exception as exc:
                    if not (is_lost_worker(exc) or isinstance(exc, ClusterLostError)):
                        raise
                    # a worker, a node or the connection to the cluster was lost
                    reason = _one_line(exc)
                    # a lost worker may have staged samples it could not report
                    for sid in [s for s, t in pending.items()
                                if (Path(staging) / staged_name(s, t.cache_key)).exists()]:
                        _record(result, writer, keys, "ok", sid,
                                str(Path(staging) / staged_name(sid, keys[sid])), "")
                        pending.pop(sid)
                        bar.update(1)
                    if not pending:
                        break
                    if isinstance(exc, ClusterLostError):  # no worker to retry on
                        logger.error("%s: %d sample(s) not computed, %s; the finished ones "
                                     "are kept, re-run to compute the rest", stage,
                                     len(pending), reason)
                        for sid in pending:
                            result.failures[sid] = f"not computed: {reason}"
                        pending.clear()
                        break
                    if attempt < retries:
                        logger.warning("%s: %d sample(s) lost with a worker (%s); trying them "
                                       "again (%d of %d)", stage, len(pending), reason,
                                       attempt + 1, retries)
                        continue
                    for sid in pending:
                        result.failures[sid] = (f"lost with a worker after {retries + 1} "
                                                f"attempt(s): {reason}")
                        logger.error("sample %s failed: %s", sid, result.failures[sid])
                    pending.clear()
        finally:
            bar.close()
        result.failures.update(extra)
        writer.finalize(ids, keys, result.failures)
    result.seconds = time.perf_counter() - start
    logger.debug("%s: %d computed, %d skipped (cached), %d failed in %.1f s -> %s", stage,
                 result.computed, result.skipped, len(result.failures), result.seconds, output)
    return result


def _reuse(todo: list[Task], stores: Sequence[str], staging: str, compression: str,
           writer: StoreWriter, result: StageResult) -> list[Task]:
    """Copy the samples whose cache key a validated ``--reuse`` store holds; return the rest."""
    index = reuse_index(tuple(stores))
    rest = []
    for t in todo:
        hit = index.get(t.cache_key)
        if hit is None:
            rest.append(t)
            continue
        p = copy_from_store(hit[0], hit[1], t.sample_id, t.cache_key, staging, compression)
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
