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
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._validate import check_option, check_range
from ..errors import MexkitError, ParameterError
from ..io.store import StoreWriter, write_staged_sample

__all__ = ["Task", "StageResult", "run_stage", "BACKENDS"]

logger = logging.getLogger("mexkit")

BACKENDS = ("loky", "threading", "dask", "ray")


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


def _work(compute: Callable[[Task], tuple[Mapping[str, Any], Mapping[str, Any]]], task: Task,
          staging: str, compression: str) -> tuple[str, str, str, str]:
    """Compute one sample and stage it.  Runs in a worker; never raises."""
    try:
        arrays, extra = compute(task)
        attrs = dict(task.attrs)
        attrs.update(extra)
        p = write_staged_sample(staging, task.sample_id, task.cache_key, arrays, attrs,
                                compression=compression)
        return ("ok", task.sample_id, str(p), "")
    except Exception as exc:  # one sample's failure must not cancel the others
        detail = traceback.format_exc() if not isinstance(exc, MexkitError) else ""
        return ("failed", task.sample_id, _one_line(exc), detail)


def _work_group(compute: Callable[[list[Task]], list[Any]], tasks: list[Task], staging: str,
                compression: str) -> list[tuple[str, str, str, str]]:
    """Compute a group of samples together (one batched call), stage each."""
    try:
        results = compute(tasks)
        if len(results) != len(tasks):
            raise RuntimeError(f"compute returned {len(results)} results for {len(tasks)} tasks")
    except Exception as exc:  # the whole group failed: retry one by one
        if len(tasks) == 1:
            detail = traceback.format_exc() if not isinstance(exc, MexkitError) else ""
            return [("failed", tasks[0].sample_id, _one_line(exc), detail)]
        out = []
        for t in tasks:
            out.extend(_work_group(compute, [t], staging, compression))
        return out
    out = []
    for task, res in zip(tasks, results, strict=True):
        if isinstance(res, BaseException):
            out.append(("failed", task.sample_id, _one_line(res), ""))
            continue
        out.append(_work(lambda _t, res=res: res, task, staging, compression))
    return out


def _iter_results(compute: Callable, todo: Sequence[Task], staging: str, compression: str,
                  jobs: int, backend: str, group: int = 1) -> Iterable[tuple[str, str, str, str]]:
    if group > 1:
        chunks = [list(todo[i:i + group]) for i in range(0, len(todo), group)]
        if jobs == 1 or len(chunks) <= 1:
            for c in chunks:
                yield from _work_group(compute, c, staging, compression)
            return
        import joblib

        with joblib.parallel_config(backend=backend, n_jobs=jobs):
            par = joblib.Parallel(return_as="generator_unordered")
            for res in par(joblib.delayed(_work_group)(compute, c, staging, compression)
                           for c in chunks):
                yield from res
        return
    if jobs == 1 or len(todo) <= 1:
        for t in todo:
            yield _work(compute, t, staging, compression)
        return
    import joblib

    if backend == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise ParameterError(
                "The 'dask' backend needs dask.distributed (pip install 'dask[distributed]') "
                "and a running Client."
            ) from exc
    if backend == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError as exc:
            raise ParameterError(
                "The 'ray' backend needs ray (pip install 'ray[default]')."
            ) from exc
        register_ray()
    with joblib.parallel_config(backend=backend, n_jobs=jobs):
        par = joblib.Parallel(return_as="generator_unordered")
        yield from par(joblib.delayed(_work)(compute, t, staging, compression) for t in todo)


def run_stage(tasks: Sequence[Task], compute: Callable[[Task], tuple[Mapping, Mapping]], *,
              output: str | Path, stage: str, params: Mapping[str, Any],
              upstream: Iterable[Mapping[str, Any]] = (), jobs: int = 1, backend: str = "loky",
              progress: bool = True, compression: str = "gzip",
              extra_failures: Mapping[str, str] | None = None, group: int = 1) -> StageResult:
    """Run ``compute`` over ``tasks`` and write the output store.

    Parameters
    ----------
    tasks : sequence of Task
        One per sample; sample ids must be unique.
    compute : callable
        ``compute(task) -> (arrays, attrs)``; must be picklable (a module-level
        function) for process backends.  Raise a :class:`MexkitError` for a
        sample that cannot be processed.
    output : path
        The output store.
    stage, params, upstream
        Provenance written into the store (see :class:`StoreWriter`).
    jobs : int
        Number of workers; 1 runs a plain loop in this process.
    backend : {"loky", "threading", "dask", "ray"}
        joblib backend for ``jobs > 1``.
    progress : bool
        Show a progress bar on stderr (only when stderr is a terminal).
    compression : {"gzip", "lzf"}
        Compression of the stored arrays.
    extra_failures : mapping, optional
        Samples that cannot be computed at all (e.g. failed upstream), with
        their reasons; they are recorded as failures of this stage too.
    group : int
        When above 1, ``compute`` takes a list of up to ``group`` tasks and
        returns one ``(arrays, attrs)`` or exception per task, so that a
        batched solver (TV-L1 on many pairs at once) sees several samples.
        If a whole group fails, its samples are retried one by one.

    Returns
    -------
    StageResult
        Counts of computed, skipped (cached) and failed samples.
    """
    check_option("backend", backend, BACKENDS)
    check_range("jobs", jobs, 1)
    ids = [t.sample_id for t in tasks]
    if len(set(ids)) != len(ids):
        dup = sorted({s for s in ids if ids.count(s) > 1})
        raise ParameterError(f"Duplicate sample ids: {', '.join(dup[:5])}.")
    start = time.perf_counter()
    output = Path(output)
    result = StageResult(path=output)
    keys = {t.sample_id: t.cache_key for t in tasks}
    extra = {sid: msg for sid, msg in (extra_failures or {}).items() if sid not in keys}
    if extra:
        logger.warning("%s: %d sample(s) failed in an earlier stage and are skipped",
                       stage, len(extra))
    with StoreWriter(output, stage=stage, params=params, upstream=upstream,
                     compression=compression) as writer:
        todo = [t for t in tasks if not writer.finished(t.sample_id, t.cache_key)]
        result.skipped = len(tasks) - len(todo)
        if result.skipped:
            logger.info("%s: %d of %d sample(s) already done with the same inputs and "
                        "parameters; skipped", stage, result.skipped, len(tasks))
        if todo:
            logger.info("%s: computing %d sample(s)", stage, len(todo))
        bar = _progress_bar(len(todo), stage, progress)
        try:
            for status, sid, info, detail in _iter_results(compute, todo, str(writer.staging),
                                                           compression, jobs, backend, group):
                if status == "ok":
                    writer.register(sid, keys[sid], info)
                    result.computed += 1
                else:
                    result.failures[sid] = info
                    logger.error("sample %s failed: %s", sid, info)
                    if detail:
                        logger.debug("%s", detail)
                bar.update(1)
        finally:
            bar.close()
        result.failures.update(extra)
        writer.finalize(ids, keys, result.failures)
    result.seconds = time.perf_counter() - start
    logger.debug("%s: %d computed, %d skipped (cached), %d failed in %.1f s -> %s", stage,
                 result.computed, result.skipped, len(result.failures), result.seconds, output)
    return result


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    show = enabled and total > 0 and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, disable=not show,
                dynamic_ncols=True, leave=False)
