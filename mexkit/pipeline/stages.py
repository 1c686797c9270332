"""Glue shared by the stages that read one store and write another.

A store-to-store stage is a pure function applied per sample.  This module
builds the tasks (one per input sample, keyed on the upstream sample's cache
key), checks before the output is touched that the input is what the stage
needs, opens the input store in each worker for the duration of a run (a
handle is reused only while the file on disk is the same file, unchanged, and
every handle is closed when the run ends), and hands the arrays to the
stage's compute function.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputChangedError, ModelInputError, ParameterError, StoreError
from ..io.store import SampleView, Store, open_store
from ..motion import feature_registry
from .cache import cache_key
from .limits import store_limits
from .runner import StageResult, Task, run_stage

__all__ = [
    "upstream_entry",
    "store_tasks",
    "input_sample",
    "run_store_stage",
    "require_arrays",
    "SAMPLE_ATTRS",
    "STAGE_INPUTS",
    "store_limits",
    "check_output_path",
    "check_stage_input",
    "close_inputs",
    "expect_arrays",
]

logger = logging.getLogger("mexkit")

# Sample attributes carried from stage to stage.
SAMPLE_ATTRS = ("dataset", "subject", "clip", "video", "fps", "label", "emotion", "aus",
                "objective_class", "kind", "onset", "apex", "offset", "onset_frame",
                "apex_frame", "offset_frame", "source", "n_frames", "intervals")

# The arrays each store-to-store stage reads, and the command that makes them:
# checked on every input sample before the output is touched.
STAGE_INPUTS: dict[str, tuple[tuple[str, ...], str]] = {
    "tim": (("frames",), "mexkit crop"),
    "rpca": (("frames",), "mexkit crop"),
    "keyframes": (("frames",), "mexkit crop"),
    "magnify": (("frames",), "mexkit crop"),
    "flow": (("frames",), "mexkit crop"),
    "strain": (("flow",), "mexkit flow"),
}

# Input stores open in this process: path -> (identity of the file, store).
_OPEN: dict[str, tuple[tuple[int, ...], Store]] = {}

def _identity(path: str | Path) -> tuple[int, ...]:
    """What tells two states of a file apart: device, inode, size, modification time."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _replaced(path: str | Path, now: Any, expected: Sequence[int]) -> str:
    return (f"{path}: the input store was replaced or changed during the run (it was "
            f"{tuple(expected)}, it is {now} as device, inode, size and modification "
            "time); the samples read from it would mix two stores. Run again once it "
            "stays the same")


def close_inputs() -> None:
    """Close every input store this process holds open (end of a run)."""
    while _OPEN:
        _, (_, store) = _OPEN.popitem()
        store.close()


def check_output_path(input_path: str | Path, output: str | Path) -> None:
    """Refuse an output that is the input itself (or its staging folder)."""
    src, dst = Path(input_path), Path(output)
    same = src.resolve() == dst.resolve()
    if not same and dst.exists():
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = False
    if same:
        raise ParameterError(
            f"The output {str(dst)!r} is the input store itself; choose another output "
            "(-o) so the input is not replaced.")


def upstream_entry(store: Store) -> dict[str, Any]:
    """The provenance record of an input store."""
    return {"stage": store.stage, "store_id": store.store_id,
            "content_hash": store.content_hash, "path": str(Path(store.path).resolve())}


def input_sample(path: str | Path, sample_id: str,
                 identity: Sequence[int] | None = None) -> SampleView:
    """Return one sample of an input store, opening the store if needed.

    A store stays open for the samples of one run; it is reopened when the
    file at ``path`` is no longer the one opened (replaced, rewritten, touched),
    and :func:`close_inputs` closes all at the end of a run.  The checksum was
    verified by the process that built the tasks, so workers skip it; the
    structural checks and size limits run again.

    ``identity`` is the file's identity when the run began (see
    :func:`run_store_stage`): a file that is no longer that one (another
    store moved over it, a rewrite) raises :class:`StoreError` instead of
    mixing two stores in one output.
    """
    key = str(path)
    try:
        ident = _identity(path)
    except OSError as exc:
        raise ModelInputError(f"{key}: the input store is gone ({exc.strerror or exc}).") \
            from exc
    if identity is not None and tuple(identity) != ident:
        raise InputChangedError(_replaced(path, ident, identity))
    held = _OPEN.get(key)
    if held is not None and held[0] != ident:
        _OPEN.pop(key)[1].close()
        held = None
    if held is None:
        held = (ident, open_store(path, verify=False, limits=store_limits()))
        _OPEN[key] = held
    return held[1][sample_id]


def flow_feature(name: str) -> Any:
    """The registered flow feature ``name`` (:mod:`mexkit.motion.feature_registry`).

    A name the registry does not know may be a feature that a model defines (MEAN's
    ``mean``, in ``mexkit/models/mean/features.py``): the model packages are loaded
    then, and the name looked up again.
    """
    if name not in feature_registry.flow_features():
        _load_model_features()
    if name not in feature_registry.flow_features():
        # start-up: the model packages load torch; only a model's own feature needs them
        from ..models.registry import load_model_packages  # start-up, as above

        load_model_packages()
    return feature_registry.flow_feature(name)


def _load_model_features() -> None:
    """Import the ``features`` module of every model package, and nothing else of them.

    A model's flow features (MEAN's ``mean``) are registered by its package's
    ``features.py``, which needs numpy and OpenCV only; the registry of models
    (:func:`~mexkit.models.registry.load_model_packages`) imports every module of
    every package, torch and scikit-learn with them: seconds of start-up that
    ``mexkit flow --features mean`` spent before its first pair.
    """
    import importlib  # start-up: only when a feature is not a built-in one
    import importlib.util  # start-up: as above
    import pkgutil  # start-up: as above

    models = importlib.import_module("mexkit.models")
    for info in pkgutil.iter_modules(models.__path__):
        if not info.ispkg or info.name.startswith("_"):
            continue
        name = f"{models.__name__}.{info.name}.features"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def _needs(stage: str, params: Mapping[str, Any] | None) -> tuple[tuple[str, ...], str]:
    need, producer = STAGE_INPUTS[stage]
    if stage == "flow":
        features = (params or {}).get("features") or ()
        if any("landmarks" in flow_feature(f).needs for f in features):
            need, producer = need + ("landmarks",), "mexkit crop with a landmark detector"
    return need, producer


def check_stage_input(store: Store, stage: str,
                      select: Callable[[SampleView], bool] | None = None,
                      params: Mapping[str, Any] | None = None) -> None:
    """Refuse an input store that no sample of ``stage`` could use, before any output exists.

    Every (selected) sample must hold the arrays of :data:`STAGE_INPUTS`
    (and the landmarks for ``flow`` with MEAN's region features); a store in
    which some samples lack them is refused as well, naming the first few,
    since it is not the output of the command the stage needs.  An empty
    store passes (its failures are carried over).
    """
    if stage not in STAGE_INPUTS:
        return
    need, producer = _needs(stage, params)
    lacking: list[str] = []
    n = 0
    for sid in store.sample_ids:
        s = store[sid]
        if select is not None and not select(s):
            continue
        n += 1
        if any(name not in s for name in need):
            lacking.append(sid)
    if not lacking:
        return
    shown = ", ".join(repr(x) for x in lacking[:3]) + (", ..." if len(lacking) > 3 else "")
    have = sorted(store[lacking[0]].keys())
    raise ParameterError(
        f"{store.path}: a {store.stage or 'unknown'} store cannot be the input of `mexkit "
        f"{stage}`: {len(lacking)} of {n} sample(s) ({shown}) have no "
        f"{', '.join(repr(x) for x in need)} (they have {', '.join(have) or 'nothing'}); "
        f"`mexkit {stage}` needs the output of `{producer}`. Nothing was written.")


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


def expect_arrays(arrays: Mapping[str, Any], spec: Mapping[str, tuple[Any, tuple]], *,
                  required: Sequence[str], where: str) -> None:
    """Check arrays a stage is said to have produced (a cache entry, a reused sample).

    Parameters
    ----------
    arrays : mapping
        Name -> array.
    spec : mapping
        Every name the stage may produce -> ``(dtypes, shape)``: ``dtypes``
        a dtype or a tuple of them; ``shape`` a tuple whose items are ints or
        None (any length), or None for any shape.  Float arrays must hold
        finite values, except those whose dtype entry is marked ``"nan"``
        (``(np.float32, "nan")``: landmarks of a frame without a face).
    required : sequence of str
        Names that must be there.
    where : str
        What is checked, for the message.

    Raises
    ------
    StoreError
        Naming the array and what is wrong with it.
    """
    missing = [n for n in required if n not in arrays]
    extra = sorted(set(arrays) - set(spec))
    if missing or extra:
        raise StoreError(f"{where}: arrays {sorted(arrays)}; the stage makes "
                         f"{sorted(spec)} ({', '.join(required)} always)")
    for name, a in arrays.items():
        kinds, shape = spec[name]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        nan_ok = "nan" in kinds
        dtypes = [np.dtype(k) for k in kinds if k != "nan"]
        a = np.asarray(a)
        if a.dtype not in dtypes:
            raise StoreError(f"{where}: array {name!r} is {a.dtype}, not "
                             f"{' or '.join(str(d) for d in dtypes)}")
        if shape is not None and (len(shape) != a.ndim or any(
                want is not None and want != got
                for want, got in zip(shape, a.shape, strict=False))):
            raise StoreError(f"{where}: array {name!r} has shape {a.shape}, not "
                             f"{tuple('*' if d is None else d for d in shape)}")
        if a.dtype.kind == "f" and a.size:
            bad = ~np.isfinite(a) & ~(np.isnan(a) if nan_ok else False)
            if bad.any():
                raise StoreError(f"{where}: array {name!r} holds {int(bad.sum())} "
                                 "non-finite value(s)")


def run_store_stage(input_path: str | Path, output: str | Path, *, stage: str,
                    version: int | str, params: Mapping[str, Any],
                    compute: Callable[[Task], tuple[Mapping, Mapping]], jobs: int = 1,
                    backend: str = "loky", progress: bool = True,
                    select: Callable[[SampleView], bool] | None = None,
                    group: int = 1,
                    payload_params: Mapping[str, Any] | None = None,
                    check: Callable[[Task, Mapping[str, Any]], None] | None = None,
                    key_params: Mapping[str, Any] | None = None,
                    compare_params: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None
                    = None) -> StageResult:
    """Apply ``compute`` to every sample of the input store; write ``output``.

    ``payload_params`` (default: ``params``) are what ``compute`` receives;
    only ``params`` enter the cache key (e.g. the device does not), or
    ``key_params`` where given: the same values in another layout, e.g. the
    one of earlier stores, so that their samples keep their keys; then
    ``compare_params`` maps a store's parameters to that layout when an
    existing output's parameters are compared with the run's.

    Samples that failed upstream stay failed: they are listed in the output
    store's failures with the upstream reason, so exit codes propagate down a
    pipeline.

    Before the output (or its staging folder) is touched, the input is
    checked: it must not be the output, must pass the store size limits
    (:func:`store_limits`), and its samples must hold what the stage reads
    (:func:`check_stage_input`).  A refused input raises
    :class:`~mexkit.errors.ParameterError` or :class:`~mexkit.errors.StoreError`
    and leaves an existing output as it was.
    """
    check_output_path(input_path, output)
    identity = _identity(input_path)
    store = open_store(input_path, limits=store_limits())
    # held open for the whole run: the samples read in this process come from this file
    _OPEN[str(input_path)] = (identity, store)
    try:
        check_stage_input(store, stage, select, params)
        tasks = store_tasks(store, stage=stage, version=version,
                            params=params if key_params is None else key_params,
                            select=select,
                            payload_params=params if payload_params is None else payload_params)
        upstream = [upstream_entry(store)]
        upstream_failures = dict(store.failures)
    except BaseException:
        close_inputs()
        raise
    if identity != _identity(input_path):  # changed while it was checked
        close_inputs()
        raise StoreError(_replaced(input_path, _identity(input_path), identity))
    for t in tasks:
        t.payload["identity"] = identity
    if not tasks and not upstream_failures:
        logger.warning("%s: the input store %s holds no samples", stage, input_path)

    def unchanged() -> None:
        try:
            now = _identity(input_path)
        except OSError as exc:
            raise StoreError(f"{input_path}: the input store went away during the run "
                             f"({exc.strerror or exc}); the output is not written.") from exc
        if now != identity:
            raise StoreError(_replaced(input_path, now, identity) + "; the output is not "
                             "written, the samples finished before are kept")

    try:
        result = run_stage(tasks, compute, output=output, stage=stage, params=params,
                           upstream=upstream, jobs=jobs, backend=backend, progress=progress,
                           extra_failures={sid: f"failed upstream: {msg}"
                                           for sid, msg in upstream_failures.items()},
                           group=group, check=check, before_finalize=unchanged,
                           compare_params=compare_params)
    finally:
        close_inputs()
    return result
