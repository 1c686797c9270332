"""Glue shared by the stages that read one store and write another.

A store-to-store stage is a pure function applied per sample.  This module
builds the tasks (one per input sample, keyed on the upstream sample's cache
key), opens the input store once per worker process, and hands the arrays to
the stage's compute function.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelInputError
from ..io.store import SampleView, Store, open_store
from .cache import cache_key
from .runner import StageResult, Task, run_stage

__all__ = [
    "upstream_entry",
    "store_tasks",
    "input_sample",
    "run_store_stage",
    "require_arrays",
    "SAMPLE_ATTRS",
]

logger = logging.getLogger("mexkit")

# Sample attributes carried from stage to stage.
SAMPLE_ATTRS = ("dataset", "subject", "clip", "video", "fps", "label", "emotion", "aus",
                "objective_class", "kind", "onset", "apex", "offset", "onset_frame",
                "apex_frame", "offset_frame", "source", "n_frames")

_OPEN: dict[str, Store] = {}


def upstream_entry(store: Store) -> dict[str, Any]:
    """The provenance record of an input store."""
    return {"stage": store.stage, "store_id": store.store_id,
            "content_hash": store.content_hash, "path": str(Path(store.path).resolve())}


def input_sample(path: str | Path, sample_id: str) -> SampleView:
    """Open (once per process) the input store and return one sample.

    The checksum was verified by the process that built the tasks, so
    workers skip it; the structural checks run again.
    """
    key = str(path)
    store = _OPEN.get(key)
    if store is None:
        store = open_store(path, verify=False)
        _OPEN[key] = store
    return store[sample_id]


def require_arrays(sample: SampleView, names: Sequence[str], *, stage: str,
                   producer: str) -> None:
    """Raise ModelInputError naming the command that produces missing arrays."""
    missing = [n for n in names if n not in sample]
    if missing:
        raise ModelInputError(
            f"sample {sample.sample_id!r} has no {', '.join(repr(m) for m in missing)} "
            f"(it has {', '.join(sample.keys()) or 'nothing'}); `mexkit {stage}` needs the "
            f"output of `{producer}`."
        )


def store_tasks(store: Store, *, stage: str, version: int | str, params: Mapping[str, Any],
                select: Callable[[SampleView], bool] | None = None,
                extra: Callable[[SampleView], Any] | None = None,
                payload_params: Mapping[str, Any] | None = None) -> list[Task]:
    """One task per sample of ``store``, keyed on the upstream cache key."""
    tasks = []
    for sid in store.sample_ids:
        s = store[sid]
        if select is not None and not select(s):
            continue
        attrs = {k: s.attrs[k] for k in SAMPLE_ATTRS if k in s.attrs}
        key = cache_key(stage, version, params, str(s.attrs.get("cache_key", "")))
        payload = {"input": str(store.path), "sample_id": sid,
                   "params": dict(payload_params if payload_params is not None else params)}
        if extra is not None:
            payload["extra"] = extra(s)
        tasks.append(Task(sid, key, attrs, payload))
    return tasks


def run_store_stage(input_path: str | Path, output: str | Path, *, stage: str,
                    version: int | str, params: Mapping[str, Any],
                    compute: Callable[[Task], tuple[Mapping, Mapping]], jobs: int = 1,
                    backend: str = "loky", progress: bool = True,
                    select: Callable[[SampleView], bool] | None = None,
                    group: int = 1,
                    payload_params: Mapping[str, Any] | None = None) -> StageResult:
    """Apply ``compute`` to every sample of the input store; write ``output``.

    ``payload_params`` (default: ``params``) are what ``compute`` receives;
    only ``params`` enter the cache key (e.g. the device does not).

    Samples that failed upstream stay failed: they are listed in the output
    store's failures with the upstream reason, so exit codes propagate down a
    pipeline.
    """
    with open_store(input_path) as store:
        tasks = store_tasks(store, stage=stage, version=version, params=params, select=select,
                            payload_params=payload_params)
        upstream = [upstream_entry(store)]
        upstream_failures = dict(store.failures)
    if not tasks and not upstream_failures:
        logger.warning("%s: the input store %s holds no samples", stage, input_path)
    result = run_stage(tasks, compute, output=output, stage=stage, params=params,
                       upstream=upstream, jobs=jobs, backend=backend, progress=progress,
                       extra_failures={sid: f"failed upstream: {msg}"
                                       for sid, msg in upstream_failures.items()},
                       group=group)
    return result
