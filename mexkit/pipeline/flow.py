"""The flow and strain stages: frames in, optical flow (and strain, features) out."""
from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import check_option
from ..devices import check_device, cuda_possible
from ..errors import ParameterError
from ..motion.methods import flow_method
from ..motion.pairs import make_pairs
from ..motion.strain import optical_strain
from ..temporal.apex import apex_method, estimate_apex, resolve_apex
from .parallel import check_interrupt, wait_for
from .runner import StageResult, Task, batched, staged_pieces
from .stages import expect_arrays, flow_feature, input_sample, require_arrays, run_store_stage

__all__ = ["FLOW_VERSION", "STRAIN_VERSION", "run_flow", "run_strain", "PAIR_MODES",
           "flow_options"]

logger = logging.getLogger("mexkit")

FLOW_VERSION = 1
STRAIN_VERSION = 1
PAIR_MODES = ("consecutive", "gap", "onset-apex", "onset-all", "keyframes", "apex-window")
# Until the flow-method registry, every method's options were stored under this key.
_LEGACY_OPTIONS_KEY = "tvl1"


def flow_options(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The flow method and its options that a flow store's ``params`` record.

    A store keeps the method's options that change the flow under the
    method's own name (``{"method": "farneback", "farneback": {...}}``).
    Stores written before kept every method's options under ``"tvl1"``
    (``{"method": "farneback", "tvl1": {...}}``); both are read.
    """
    method = str(params.get("method", "tvl1"))
    key = method if method in params else _LEGACY_OPTIONS_KEY
    return method, dict(params.get(key) or {})


def _key_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a flow sample's cache key covers: ``params`` in the layout of earlier stores.

    The options move back under ``"tvl1"`` (where earlier stores kept every
    method's), so that samples and cache entries made before the options were
    stored under the method's name keep their keys and are reused.
    """
    method, options = flow_options(params)
    key = {k: v for k, v in params.items() if k != method}
    key[_LEGACY_OPTIONS_KEY] = options
    return key


def _grey(frames: np.ndarray) -> np.ndarray:
    if frames.ndim == 3:
        return frames
    import cv2  # start-up: OpenCV, only for colour frames

    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def _annotated(sample: Any) -> bool:
    return sample.attrs.get("onset") is not None


def _apex(sample: Any, frames: np.ndarray, onset: int, offset: int, how: str) -> int:
    apex = sample.attrs.get("apex")
    if apex is not None and apex >= 0:
        return int(apex)
    if how == "fail":
        raise ParameterError(
            f"sample {sample.sample_id!r} has no apex annotation; choose --no-apex auto, "
            "middle or max-diff to estimate one.")
    return resolve_apex(frames, onset, offset, None, method=how,
                        annotated=_annotated(sample))[0]


# -- what an unannotated clip was given (issue 20): said on stderr and in the store ---
_ANNOTATED_PAIRS = ("onset-apex", "onset-all", "apex-window")


def _annotation_sources(sample: Any, opt: Mapping[str, Any]) -> dict[str, str]:
    """``onset_source``/``apex_source`` attributes: "annotation", or what stood in."""

    a = sample.attrs
    apex = a.get("apex")
    how = "fail" if opt["no_apex"] == "fail" else apex_method(_annotated(sample), opt["no_apex"])
    return {"onset_source": "annotation" if a.get("onset") is not None else "first frame",
            "apex_source": "annotation" if apex is not None and apex >= 0 else how}


def _say_unannotated(sample: Any, onset: int, apex: int | None, opt: Mapping[str, Any]
                     ) -> None:
    src = _annotation_sources(sample, opt)
    what = {"middle": "the middle frame", "max-diff": "the frame most different from the "
            "onset"}.get(src["apex_source"], src["apex_source"])
    if src["onset_source"] != "annotation":
        logger.warning("flow: sample %s has no onset/apex annotation: onset taken as frame "
                       "%d, apex %s (%s; --no-apex %s)", sample.sample_id, onset,
                       "-" if apex is None else apex, what, opt["no_apex"])
    elif src["apex_source"] != "annotation" and apex is not None:
        logger.info("flow: sample %s has no apex annotation: apex %d (%s; --no-apex %s)",
                    sample.sample_id, apex, what, opt["no_apex"])


def _pairs(sample: Any, frames: np.ndarray, opt: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    T = len(frames)
    a = sample.attrs
    onset = int(a.get("onset", 0) or 0)
    offset = int(a.get("offset", T - 1) if a.get("offset") is not None else T - 1)
    offset = min(max(offset, onset), T - 1)
    mode = opt["pairs"]
    apex = None
    if mode in ("onset-apex", "apex-window") or opt["with_apex"]:
        apex = _apex(sample, frames, onset, offset, opt["no_apex"])
    if mode in _ANNOTATED_PAIRS or opt["with_apex"]:
        _say_unannotated(sample, onset, apex, opt)
    pairs = make_pairs(T, mode="consecutive" if mode == "keyframes" else mode, k=opt["k"],
                       fps=a.get("fps"), onset=onset, apex=apex, window=opt["window"])
    return np.asarray(pairs, dtype=np.int64), (-1 if apex is None else int(apex))


def param_notes(store: Any) -> dict[str, str]:
    """What a flow store's parameters do not say by themselves (``mexkit inspect``).

    ``k``: null means each video's own gap, 0.1 x its frame rate rounded half
    up (MEAN); the gaps the samples got are counted.  Options filed under
    ``tvl1`` by older stores belong to the store's method.
    """
    notes: dict[str, str] = {}
    if store.stage != "flow":
        return notes
    params = store.params or {}
    if params.get("pairs") == "gap":
        gaps: Counter[int] = Counter()
        for sid in store.sample_ids:
            sample = store[sid]
            gap = sample.attrs.get("gap")
            if gap is None and "pairs" in sample:
                pairs = sample.read("pairs")
                gap = int(pairs[0, 1] - pairs[0, 0]) if len(pairs) else None
            if gap is not None:
                gaps[int(gap)] += 1
        seen = ", ".join(f"{g} in {n} sample(s)" for g, n in sorted(gaps.items()))
        if params.get("k") is None:
            notes["k"] = ("each video's own gap: 0.1 x its frame rate, rounded half up "
                          f"(3 at 25 fps, 20 at 200 fps); here {seen or 'no sample'}")
        elif seen:
            notes["k"] = f"gap {seen}"
    method = params.get("method")
    if _LEGACY_OPTIONS_KEY in params and method not in (None, _LEGACY_OPTIONS_KEY) \
            and method not in params:
        notes[_LEGACY_OPTIONS_KEY] = (
            f"the options of {method!r} (stores made before each method's options were "
            f"stored under its own name filed every method's options under "
            f"{_LEGACY_OPTIONS_KEY!r})")
    return notes


def _interval_pairs(sample: Any, frames: np.ndarray, opt: Mapping[str, Any]) -> np.ndarray:
    """``(N, 4)`` onset, apex, offset, row of each annotated interval of a whole video:
    with ``--pairs gap`` and features, the flow stage also computes each interval's
    onset -> apex flow and its features (``interval_<array>``), on which MEAN's authors
    train recognition (``prepare_training.py``'s X2; the paper's k = apex - onset).

    A long video's intervals come from its ``intervals`` attribute, a clip's from its
    onset, apex and offset; an interval without an apex takes ``--no-apex``'s rule."""
    if opt["pairs"] != "gap" or not opt["features"]:
        return np.zeros((0, 4), dtype=np.int64)
    a = sample.attrs
    raw = a.get("intervals")
    if raw is None:
        raw = ([{"onset": a.get("onset"), "apex": a.get("apex"), "offset": a.get("offset")}]
               if a.get("onset") is not None and a.get("offset") is not None else [])
    T = len(frames)
    rows = []
    for r in raw:
        on, off, apex = r.get("onset"), r.get("offset"), r.get("apex")
        if on is None or off is None or not 0 <= int(on) <= int(off) or int(on) >= T - 1:
            continue
        on, off = int(on), min(int(off), T - 1)
        if apex is None or not on < int(apex) <= off:
            # an annotated interval: the rule every stage shares (issue 28)
            how = "middle" if opt["no_apex"] == "fail" else apex_method(True, opt["no_apex"])
            apex = max(estimate_apex(frames, on, off, method=how), on + 1) \
                if off > on else on + 1
        rows.append((on, min(int(apex), T - 1), off, len(rows)))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def _flow_batch(ref: np.ndarray, mov: np.ndarray, opt: Mapping[str, Any]) -> np.ndarray:
    name, options = flow_options(opt)
    method = flow_method(name)
    names = {o.name for o in method.options}
    given = {"device": opt["device"], **opt.get("method_runtime", {}), **options}
    return method(ref, mov, **{k: v for k, v in given.items() if k in names})


def _derived(flow: np.ndarray, landmarks: np.ndarray | None, opt: Mapping[str, Any],
             sid: str, first_frame: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Strain and the features (:mod:`mexkit.motion.feature_registry`) of one sample's flow."""
    features = [flow_feature(name) for name in opt["features"]]
    out: dict[str, np.ndarray] = {}
    inputs: dict[str, Any] = {"landmarks": landmarks, "first_frame": first_frame,
                              "sample_id": sid}
    if opt["strain"] or any("strain" in f.needs for f in features):
        inputs["strain"] = np.asarray(optical_strain(flow), dtype=np.float32)
        if opt["strain"]:
            out["strain"] = inputs["strain"]
    for feature in features:
        made = feature(flow, inputs=inputs, options=opt)
        if isinstance(made, Mapping):
            out.update(made)
        else:
            out[feature.array] = np.asarray(made, dtype=np.float32)
    return out


# Pairs solved in one call at most: a batch of short clips is solved together,
# a long video in pieces, so that samples finish (and are staged) steadily.
_MAX_BATCH_PAIRS = 64
# On the CPU, pieces of this many pairs: the next piece is solved while the
# results of the last one are written and the next samples read (the CPU
# engines' workers would otherwise wait for that I/O), at a small cost at the
# end of each piece, where the first worker done waits for the last.
_CPU_PIECE_PAIRS = 16
# A sample with more pairs than this (a long video) is solved and staged in
# pieces of this many pairs: a killed or interrupted run keeps every finished
# piece, and the next run computes only the others (issue 28).
_STAGE_PIECE_PAIRS = 256


def _piece_pairs(opt: Mapping[str, Any]) -> int:
    """Pairs per solver call: small pieces on the CPU, larger batches on a GPU."""

    device = str(opt.get("device", "auto"))
    if device.startswith("cuda") or (device == "auto" and cuda_possible()):
        return _MAX_BATCH_PAIRS
    return _CPU_PIECE_PAIRS


def _prepare(t: Task, opt: Mapping[str, Any]) -> tuple[Any, np.ndarray, np.ndarray, int,
                                                         np.ndarray, np.ndarray]:
    """The sample, its frames, every pair to solve (the stage's pairs, then each
    interval's onset -> apex pair), the apex, the grey frames, the intervals."""
    s = input_sample(t.payload["input"], t.sample_id, t.payload.get("identity"))
    require_arrays(s, ["frames"], stage="flow", producer="mexkit crop")
    frames = s.read("frames")
    pairs, apex = _pairs(s, frames, opt)
    intervals = _interval_pairs(s, frames, opt)
    if len(intervals):
        pairs = np.concatenate([pairs, intervals[:, :2]])
    return s, frames, pairs, apex, _grey(frames), intervals


def _finish(t: Task, prep: tuple, flow: np.ndarray, opt: Mapping[str, Any]
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    s, frames, pairs, apex, _, intervals = prep
    flow = np.asarray(flow, dtype=np.float32)  # the solver's own array: not copied again
    n = len(pairs) - len(intervals)
    flow, interval_flow, pairs = flow[:n], flow[n:], pairs[:n]
    arrays: dict[str, np.ndarray] = {"flow": flow, "pairs": pairs}
    landmarks = None
    if "landmarks" in s:
        landmarks = s.read("landmarks")[pairs[:, 0]].astype(np.float32)
        arrays["landmarks"] = landmarks
    if "frame_numbers" in s:
        arrays["frame_numbers"] = s.read("frame_numbers")
    arrays.update(_derived(flow, landmarks, opt, t.sample_id, prep[4][0]))
    if len(intervals):
        lm = (s.read("landmarks")[intervals[:, 0]].astype(np.float32)
              if "landmarks" in s else None)
        arrays["interval_pairs"] = intervals[:, :3]
        primary = {flow_feature(name).array for name in opt["features"]}
        arrays.update({f"interval_{k}": v for k, v in _derived(
            interval_flow, lm, {**opt, "strain": False}, t.sample_id, prep[4][0]).items()
            if k in primary})
    if opt["with_apex"]:
        arrays["apex_image"] = frames[apex]
    attrs = {"pair_mode": opt["pairs"], "flow_method": opt["method"]}
    for name in opt["features"]:  # the options a feature records (MEAN's input: mean_input)
        attrs.update({o: opt.get(o) for o in flow_feature(name).records})
    if opt["pairs"] == "gap" and len(pairs):
        attrs["gap"] = int(pairs[0, 1] - pairs[0, 0])  # k as resolved for this video
    if apex >= 0:
        attrs["apex_used"] = apex
    if opt["pairs"] in _ANNOTATED_PAIRS or opt["with_apex"]:
        attrs.update({k: v for k, v in _annotation_sources(s, opt).items()
                      if k == "onset_source" or apex >= 0})
    return arrays, attrs


class _Stopped(Exception):
    """The group was abandoned (interrupted): the background solve stops early."""


# Pairs per solver call when the solver runs in this thread (OpenCV's methods, the
# TV-L1 CPU engine with one worker): Ctrl-C is honoured between two calls.
_INLINE_SLICE = 4


def _solves_here(opt: Mapping[str, Any]) -> bool:
    """Whether the solver computes in the calling thread (native code in this process).

    OpenCV's methods do, and mexkit's TV-L1 on the CPU with one worker (or
    with worker processes switched off); its worker processes and its GPU
    engine leave the calling thread waiting in Python.
    """
    if flow_method(opt["method"]).start_workers is None:  # OpenCV's: no worker processes
        return True
    if _piece_pairs(opt) != _CPU_PIECE_PAIRS:  # the GPU engine
        return False
    from ..motion._tvl1_workers import processes_allowed  # start-up: TV-L1 only
    from ..motion.tvl1 import default_threads  # start-up: as above

    threads = opt.get("method_runtime", {}).get("threads") or default_threads()
    return int(threads) <= 1 or not processes_allowed()


def _solve_pairs(ref: np.ndarray, mov: np.ndarray, opt: Mapping[str, Any],
                 stop: threading.Event | None = None) -> np.ndarray:
    """Flow of ``ref[i] -> mov[i]`` in solver calls of at most ``_MAX_BATCH_PAIRS``
    (``_INLINE_SLICE`` where the solver runs in this thread), stopping between
    two calls at ``stop`` or Ctrl-C."""
    step = _INLINE_SLICE if _solves_here(opt) else _MAX_BATCH_PAIRS
    out = []
    for a in range(0, len(ref), step):
        if stop is not None and stop.is_set():
            raise _Stopped
        check_interrupt()
        out.append(_flow_batch(ref[a:a + step], mov[a:a + step], opt))
    return np.concatenate(out)


def _solve(batch: list[tuple[Task, tuple]], opt: Mapping[str, Any],
           stop: threading.Event | None = None) -> list[np.ndarray]:
    """Flow of every sample in ``batch``: one solver call per frame size, long ones in pieces."""
    out: list[np.ndarray | None] = [None] * len(batch)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, (_, prep) in enumerate(batch):
        by_shape.setdefault(prep[4].shape[1:], []).append(i)
    for members in by_shape.values():
        refs = [batch[i][1][4][batch[i][1][2][:, 0]] for i in members]
        movs = [batch[i][1][4][batch[i][1][2][:, 1]] for i in members]
        flows = _solve_pairs(np.concatenate(refs), np.concatenate(movs), opt, stop)
        parts = np.split(flows, np.cumsum([len(r) for r in refs])[:-1])
        for i, f in zip(members, parts, strict=True):
            out[i] = f
    return out  # type: ignore[return-value]


class _Background:
    """Runs the solver calls of one group, in order, in one daemon thread.

    Not a ThreadPoolExecutor: Python joins those at exit, so Ctrl-C waited
    for the piece being solved (a whole long video: 33 s in issue 28).  A
    set ``stop`` ends the thread's work at its next solver call and
    :meth:`close` waits for that a short while; a thread still waiting then
    (on the TV-L1 worker processes: Python code, safe to leave) is left
    behind at exit.  With ``inline`` (solvers that compute in the calling
    thread, :func:`_solves_here`: C++ code that a thread must not be in when
    the interpreter exits, or the process aborts) calls run in the caller's
    thread, in short slices with a check for Ctrl-C between them.
    """

    def __init__(self, *, inline: bool = False) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._inline = inline

    def submit(self, fn: Any, *args: Any) -> Future:
        fut: Future = Future()
        if self._inline:
            fut.set_running_or_notify_cancel()
            try:
                fut.set_result(fn(*args))
            except Exception as exc:  # KeyboardInterrupt goes up at once
                fut.set_exception(exc)
            return fut
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mexkit-flow", daemon=True)
            self._thread.start()
        self._queue.put((fut, fn, args))
        return fut

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to the thread waiting on the result
                fut.set_exception(exc)

    def close(self, *, wait: float = 1.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=wait)


def _long_sample(t: Task, prep: tuple, opt: Mapping[str, Any], bg: _Background,
                 stop: threading.Event) -> Any:
    """A long sample's flow in staged pieces of ``_STAGE_PIECE_PAIRS`` pairs.

    Pieces finished by an earlier run are read back; each new piece is staged
    as soon as it is solved (while the next one is being solved).  The result
    equals one solver pass over all pairs: every pair is solved alone.
    """

    pairs, grey = prep[2], prep[4]
    n = _STAGE_PIECE_PAIRS
    bounds = [(a, min(len(pairs), a + n)) for a in range(0, len(pairs), n)]
    store = staged_pieces(t, f"flow-{n}")
    flows: list[np.ndarray | None] = [None] * len(bounds)
    todo = []
    for i, (a, b) in enumerate(bounds):
        got = store.get(a, b) if store is not None else None
        if got is not None and got.get("flow") is not None and \
                got["flow"].shape == (b - a, 2, *grey.shape[1:3]):
            flows[i] = got["flow"]
        else:
            todo.append(i)
    if store is not None and len(todo) < len(bounds):
        logger.info("flow: sample %s: %d of %d pieces of %d pairs kept from an earlier run; "
                    "computing %d", t.sample_id, len(bounds) - len(todo), len(bounds), n,
                    len(todo))

    def keep(i: int, fut: Future) -> None:
        flows[i] = np.asarray(wait_for(fut), dtype=np.float32)
        if store is not None:
            store.put(*bounds[i], {"flow": flows[i]})

    waiting: tuple[int, Future] | None = None
    for i in todo:
        a, b = bounds[i]
        fut = bg.submit(_solve_pairs, grey[pairs[a:b, 0]], grey[pairs[a:b, 1]], opt, stop)
        if waiting is not None:  # staged while the next piece is solved
            keep(*waiting)
            waiting = None
        if fut.done():  # solved in this thread: staged at once
            keep(i, fut)
        else:
            waiting = (i, fut)
    if waiting is not None:
        keep(*waiting)
    return _finish(t, prep, np.concatenate(flows), opt)  # type: ignore[arg-type]


@batched
def _compute_group(tasks: list[Task]) -> Iterator[Any]:
    """Flow for a group of samples, batched; yields each sample's result in order.

    Consecutive samples are solved in one call while their pairs fit in a
    piece (:func:`_piece_pairs`); each piece is solved in a background thread
    while the next samples are read and the results of the previous piece are
    yielded (and so staged), so the solver's workers do not wait for the
    store. Each result is yielded as soon as its piece is solved, so an
    interrupted run keeps every finished sample.  A sample of more than
    ``_STAGE_PIECE_PAIRS`` pairs (a long video) is solved and staged in pieces
    of its own (:func:`_long_sample`).
    """
    opt = tasks[0].payload["params"]
    limit = _piece_pairs(opt)
    start_workers = flow_method(opt["method"]).start_workers
    if start_workers is not None and limit == _CPU_PIECE_PAIRS:
        # the native kernel is linked, or the workers import, while the first samples are
        # read; a method with an engine option starts that engine's workers
        runtime = opt.get("method_runtime", {})
        engine = {"engine": runtime["engine"]} if runtime.get("engine") else {}
        start_workers(runtime.get("threads"), **engine)
    stop = threading.Event()
    # a thread must never be left inside native code when the interpreter exits (the
    # process aborts): solvers computing in this thread run inline, between checks
    bg = _Background(inline=_solves_here(opt))

    def results(batch: list[tuple[Task, Any]], solved: Future | None) -> Iterator[Any]:
        flows = None
        if solved is not None:
            try:
                flows = iter(wait_for(solved))
            except Exception as exc:  # the batched call failed: each sample alone
                n_ready = sum(not isinstance(p, Exception) for _, p in batch)
                flows = None if n_ready > 1 else iter([exc])
        for t, prep in batch:
            if isinstance(prep, Exception):
                yield prep
                continue
            try:
                flow = next(flows) if flows is not None else _solve([(t, prep)], opt, stop)[0]
                yield flow if isinstance(flow, Exception) else _finish(t, prep, flow, opt)
            except Exception as exc:
                yield exc

    def submit(batch: list[tuple[Task, Any]]) -> Future | None:
        ready = [(t, p) for t, p in batch if not isinstance(p, Exception)]
        return bg.submit(_solve, ready, opt, stop) if ready else None

    try:
        previous: tuple[list, Future | None] | None = None
        batch: list[tuple[Task, Any]] = []
        n_pairs = 0
        for t in tasks:
            try:
                prep: Any = _prepare(t, opt)
                size = len(prep[2])
            except Exception as exc:
                prep, size = exc, 0
            if size > _STAGE_PIECE_PAIRS:
                if batch:  # the samples before it go first, in order
                    queued = (batch, submit(batch))
                    if previous is not None:
                        yield from results(*previous)
                    previous, batch, n_pairs = queued, [], 0
                if previous is not None:
                    yield from results(*previous)
                    previous = None
                try:
                    yield _long_sample(t, prep, opt, bg, stop)
                except Exception as exc:
                    yield exc
                continue
            if batch and n_pairs + size > limit:
                queued = (batch, submit(batch))
                if previous is not None:  # its results are staged while `queued` solves
                    yield from results(*previous)
                previous, batch, n_pairs = queued, [], 0
            batch.append((t, prep))
            n_pairs += size
        if batch:
            queued = (batch, submit(batch))
            if previous is not None:
                yield from results(*previous)
            previous = queued
        if previous is not None:
            yield from results(*previous)
    finally:  # interrupted or done: the background thread stops at its next solver call
        stop.set()
        from . import parallel  # (the module: a test may replace what it holds)

        bg.close(wait=0.0 if parallel._EXIT_ON_INTERRUPT else 0.5)


def _check_flow(task: Task, arrays: Mapping[str, Any]) -> None:
    """What the flow stage makes for ``task``: checked on cache and --reuse hits."""
    s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
    shape = s.shape("frames")
    T, H, W = shape[:3]
    opt = task.payload["params"]
    P = np.asarray(arrays.get("pairs", np.zeros((0, 2)))).shape[0]
    f32 = np.float32
    features = [flow_feature(name) for name in opt["features"]]
    per_pair = [f.array for f in features]
    spec = {"flow": (f32, (P, 2, H, W)), "pairs": (np.int64, (P, 2)),
            "landmarks": ((f32, "nan"), (P, 68, 2)), "frame_numbers": (np.int64, (T,)),
            "strain": (f32, (P, H, W)), "apex_image": (np.uint8, tuple(shape[1:])),
            "interval_pairs": (np.int64, (None, 3)),
            **{name: (f32, None) for f in features for name in (f.array, *f.extra_arrays)},
            **{f"interval_{f.array}": (f32, None) for f in features}}
    required = ["flow", "pairs"] + (["strain"] if opt["strain"] else []) + \
        (["apex_image"] if opt["with_apex"] else [])
    where = f"sample {task.sample_id!r}"
    expect_arrays(arrays, spec, required=required, where=where)
    pairs = np.asarray(arrays["pairs"])
    if P == 0 or pairs.min() < 0 or pairs.max() >= T:
        raise ParameterError(f"{where}: {P} pairs, frames {pairs.min(initial=0)}.."
                             f"{pairs.max(initial=0)} of a clip of {T}")
    for name in per_pair:
        if name in arrays and len(arrays[name]) != P:
            raise ParameterError(f"{where}: {name!r} has {len(arrays[name])} rows for {P} "
                                 "pairs")
    if np.abs(arrays["flow"]).max(initial=0) > 2 * max(H, W):
        raise ParameterError(f"{where}: flow of more than twice the frame size")


def _check_strain(task: Task, arrays: Mapping[str, Any]) -> None:
    s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
    P, _, H, W = s.shape("flow")
    spec = {name: (s.dtype(name), tuple(s.shape(name))) for name in s.keys()
            if name not in ("strain", "strain_components")}
    spec["strain"] = (np.float32, (P, H, W))
    spec["strain_components"] = (np.float32, (P, 3, H, W))
    for name in ("landmarks",):
        if name in spec:
            spec[name] = ((spec[name][0], "nan"), spec[name][1])
    required = [*(n for n in spec if n != "strain_components"),
                *(["strain_components"] if task.payload["params"]["components"] else [])]
    expect_arrays(arrays, spec, required=required, where=f"sample {task.sample_id!r}")


def run_flow(input_path: str | Path, output: str | Path, *, method: str = "tvl1",
             pairs: str = "consecutive", k: int | None = None, window: int = 65,
             strain: bool = False, features: Sequence[str] = (), with_apex: bool = False,
             no_apex: str = "auto", device: str = "auto", mask_eyes: bool = False,
             remove_head_motion: bool = False, mean_input: str = "authors",
             options: Mapping[str, Any] | None = None, jobs: int = 1, backend: str = "loky",
             group: int | None = None, progress: bool = True,
             method_runtime: Mapping[str, Any] | None = None) -> StageResult:
    """Optical flow between frame pairs of every clip of a crop (or key-frame) store.

    ``method`` is a name of :mod:`mexkit.motion.methods`' registry and
    ``features`` names of :mod:`mexkit.motion.feature_registry`'s. ``options``
    holds the method's options that change the flow, stored in the params
    under the method's name (:func:`flow_options` reads them back);
    ``method_runtime`` those that do not (threads, compile), kept out of the
    cache key with ``device``. ``group`` is the number of samples per chunk
    of work (default 64 with one job, so that reading, solving and writing
    overlap over many pieces; 16 with more, so that every job gets chunks);
    it does not change the result. ``no_apex`` is what a clip without apex
    gets (``"auto"``: the rule every stage shares,
    :func:`mexkit.temporal.apex.apex_method`).
    """
    flow_method(method)  # an unknown name fails here, listing the registered ones
    device = check_device(device)  # a GPU that is not there fails once, before any sample
    check_option("pairs", pairs, PAIR_MODES)
    check_option("no_apex", no_apex, ("auto", "middle", "max-diff", "fail"))
    # an unknown name fails here, listing the registered ones
    chosen = [flow_feature(f) for f in sorted(set(features))]
    # the stage's options that features read; a feature checks those it reads, and
    # records those of its records in the params (and so the cache key) and attrs
    feature_options = {"mask_eyes": mask_eyes, "remove_head_motion": remove_head_motion,
                       "mean_input": mean_input}
    for feature in chosen:
        if feature.check is not None:
            feature.check(feature_options)
    params = {"method": method, "pairs": pairs, "k": k, "window": window, "strain": strain,
              "features": sorted(set(features)), "with_apex": with_apex, "no_apex": no_apex,
              "mask_eyes": mask_eyes, "remove_head_motion": remove_head_motion}
    for feature in chosen:
        params.update({o: feature_options[o] for o in feature.records})
    if pairs == "gap" and features:
        # each annotated interval's onset -> apex features too (_interval_pairs); a key
        # of its own, so that gap stores made before are not taken as having them
        params["intervals"] = "onset-apex"
    if method in params or method in ("device", "method_runtime", "intervals", *feature_options):
        raise ParameterError(f"Flow method {method!r} has the name of a parameter of the "
                             "flow stage; its options could not be stored under its name.")
    params[method] = dict(options or {})
    if group is None:
        group = 64 if jobs == 1 else 16
    # the device changes where, not what, is computed: it stays out of the cache key
    compute_params = {**params, "device": device, "method_runtime": dict(method_runtime or {})}
    return run_store_stage(input_path, output, stage="flow", version=FLOW_VERSION,
                           params=params, compute=_compute_group, jobs=jobs, backend=backend,
                           progress=progress, group=group, payload_params=compute_params,
                           check=_check_flow, key_params=_key_params(params),
                           compare_params=_key_params)


def _compute_strain(task: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
    require_arrays(s, ["flow"], stage="strain", producer="mexkit flow")
    flow = s.read("flow")
    arrays = {k: s.read(k) for k in s.keys() if k not in ("strain", "strain_components")}
    if task.payload["params"]["components"]:
        mag, exx, eyy, exy = optical_strain(flow, components=True)
        arrays["strain_components"] = np.stack([exx, eyy, exy], axis=1).astype(np.float32)
    else:
        mag = optical_strain(flow)
    arrays["strain"] = np.asarray(mag, dtype=np.float32)
    return arrays, {}


def run_strain(input_path: str | Path, output: str | Path, *, components: bool = False,
               jobs: int = 1, backend: str = "loky", progress: bool = True) -> StageResult:
    """Optical strain of every flow field of a flow store (flow and pairs are kept)."""
    return run_store_stage(input_path, output, stage="strain", version=STRAIN_VERSION,
                           params={"components": components}, compute=_compute_strain,
                           jobs=jobs, backend=backend, progress=progress, check=_check_strain)
