"""The temporal stages: TIM, RPCA (and PSN's chain), key frames, magnification.

Each reads a store with ``frames`` and writes a store with new ``frames``
(or ``sparse`` frames for RPCA), with landmarks and the onset/apex/offset
positions carried over to the new time axis.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .._validate import check_option
from ..devices import check_device
from ..errors import ConvergenceError
from ..temporal import keyframes as kf
from ..temporal.apex import resolve_apex
from ..temporal.interpolate import interpolate_midpoint
from ..temporal.tim import tim
from .runner import StageResult, Task
from .stages import expect_arrays, input_sample, require_arrays, run_store_stage

__all__ = ["run_tim", "run_rpca", "run_keyframes", "run_magnify", "KEYFRAME_METHODS"]

KEYFRAME_METHODS = ("adaptive", "tas", "apex-window", "uniform")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _frames(task: Task, stage: str) -> tuple[Any, np.ndarray]:
    s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
    require_arrays(s, ["frames"], stage=stage, producer="mexkit crop")
    return s, s.read("frames")


def _positions(s: Any, mapping: Any) -> dict[str, Any]:
    """onset/apex/offset on the new time axis (``mapping(position) -> new``)."""
    out: dict[str, Any] = {}
    for k in ("onset", "apex", "offset"):
        v = s.attrs.get(k)
        if v is not None and v >= 0:
            out[f"source_{k}"] = int(v)
            out[k] = int(mapping(int(v)))
    return out


def _landmarks(s: Any, index: np.ndarray) -> dict[str, np.ndarray]:
    if "landmarks" not in s:
        return {}
    lm = s.read("landmarks")
    return {"landmarks": lm[np.clip(np.rint(index).astype(int), 0, len(lm) - 1)]}


def _check_frames_stage(task: Task, arrays: Mapping[str, Any], n: int | None,
                        main: str = "frames", dtypes: Any = np.uint8,
                        more: Mapping[str, Any] | None = None) -> None:
    """The temporal stages' outputs: ``main`` of ``n`` frames (None: as many as the
    input) of the input's frame size, with landmarks and source times to match."""
    s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
    shape = tuple(s.shape("frames"))
    n = shape[0] if n is None else n
    frame = shape[1:3] if main != "frames" else shape[1:]
    spec = {main: (dtypes, (n, *frame)), "landmarks": ((np.float32, "nan"), (n, 68, 2)),
            "source_time": (np.float64, (n,)), **(more or {})}
    expect_arrays(arrays, spec, required=[main], where=f"sample {task.sample_id!r}")


def _check_tim(task: Task, arrays: Mapping[str, Any]) -> None:
    p = task.payload["params"]
    _check_frames_stage(task, arrays, p["n_frames"],
                        dtypes=np.float32 if p["float"] else np.uint8)


def _check_rpca(task: Task, arrays: Mapping[str, Any]) -> None:
    p = task.payload["params"]
    s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
    T, H, W = tuple(s.shape("frames"))[:3]
    n = p["k"] if p["psn"] else T
    _check_frames_stage(task, arrays, n, main="sparse", dtypes=np.float32, more={
        "low_rank": (np.float32, (T, H, W)), "tim_frames": (np.uint8, (n, H, W))})


def _check_keyframes(task: Task, arrays: Mapping[str, Any]) -> None:
    _check_frames_stage(task, arrays, task.payload["params"]["n_frames"])


def _check_magnify(task: Task, arrays: Mapping[str, Any]) -> None:
    _check_frames_stage(task, arrays, None)


# -- TIM ---------------------------------------------------------------------
def _compute_tim(task: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    p = task.payload["params"]
    s, frames = _frames(task, "tim")
    T, n = len(frames), p["n_frames"]
    out = tim(frames, n, grid=p["grid"])
    # input position t (0-based) on the output axis; exact grid: ends map to ends
    scale = (n - 1) / (T - 1)
    arrays = {"frames": out.astype(np.float32) if p["float"] else _to_uint8(out),
              "source_time": np.arange(n, dtype=np.float64) / scale}
    arrays.update(_landmarks(s, arrays["source_time"]))
    return arrays, {**_positions(s, lambda v: round(v * scale)), "n_frames": n}


def run_tim(input_path: str | Path, output: str | Path, *, n_frames: int = 64,
            grid: str = "exact", keep_float: bool = False, **kw: Any) -> StageResult:
    """Temporal interpolation model of every clip to ``n_frames`` frames."""
    params = {"n_frames": n_frames, "grid": grid, "float": keep_float}
    return run_store_stage(input_path, output, stage="tim", version=1, params=params,
                           compute=_compute_tim, check=_check_tim, **kw)


# -- RPCA --------------------------------------------------------------------
def _compute_rpca(task: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from ..temporal.rpca import (  # start-up: torch, which only RPCA needs
        psn_chain,
        psn_sample_indices,
        rpca_frames,
    )

    p = task.payload["params"]
    s, frames = _frames(task, "rpca")
    if frames.ndim == 4:
        frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    data = frames.astype(np.float64) / 255.0
    arrays: dict[str, np.ndarray] = {}
    attrs: dict[str, Any] = {}
    if p["psn"]:
        T = len(frames)
        sparse = psn_chain(data, n_tim=p["n_tim"], k=p["k"], lam=p["lam"], tol=p["tol"],
                           max_iter=p["max_iter"], device=p["device"])
        idx = psn_sample_indices(p["n_tim"], p["k"])
        time = idx * (T - 1) / (p["n_tim"] - 1)
        arrays["sparse"] = np.asarray(sparse, dtype=np.float32)
        # PSN's temporal sub-network takes the TIM-normalised frames themselves at the
        # same positions (uint8 grey; TIM is a few milliseconds, recomputed here).
        arrays["tim_frames"] = _to_uint8(tim(frames, p["n_tim"])[idx])
        arrays["source_time"] = time.astype(np.float64)
        arrays.update(_landmarks(s, time))
        attrs["n_frames"] = p["k"]
        return arrays, attrs
    sparse, low, info = rpca_frames(data, lam=p["lam"], tol=p["tol"], max_iter=p["max_iter"],
                                    device=p["device"])
    if not info.get("converged", True):
        raise ConvergenceError(
            f"RPCA of sample {task.sample_id!r} did not converge: residual "
            f"{info.get('residual'):.3g} after {info.get('iterations')} iterations "
            f"(tolerance {p['tol']:g}); raise --max-iter or --tol.")
    arrays["sparse"] = np.asarray(sparse, dtype=np.float32)
    if p["low_rank"]:
        arrays["low_rank"] = np.asarray(low, dtype=np.float32)
    if "landmarks" in s:
        arrays["landmarks"] = s.read("landmarks")
    attrs.update({"rpca_iterations": int(info.get("iterations", 0)),
                  "rpca_residual": float(info.get("residual", float("nan")))})
    for k in ("onset", "apex", "offset"):
        if s.attrs.get(k) is not None:
            attrs[k] = s.attrs[k]
    return arrays, attrs


def run_rpca(input_path: str | Path, output: str | Path, *, lam: float | None = None,
             tol: float = 1e-7, max_iter: int = 500, low_rank: bool = False, psn: bool = False,
             n_tim: int = 150, k: int = 16, device: str = "auto", **kw: Any) -> StageResult:
    """Robust PCA (inexact ALM) of every clip; stores the sparse part E."""
    device = check_device(device)  # a GPU that is not there fails once, before any sample
    params = {"lam": lam, "tol": tol, "max_iter": max_iter, "low_rank": low_rank, "psn": psn,
              "n_tim": n_tim if psn else None, "k": k if psn else None}
    if psn:
        params["tim_frames"] = True  # PSN stores also hold the 16 TIM frames (tim_frames)
    return run_store_stage(input_path, output, stage="rpca", version=1, params=params,
                           compute=_compute_rpca, payload_params={**params, "device": device},
                           check=_check_rpca, **kw)


# -- key frames --------------------------------------------------------------
def _compute_keyframes(task: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    p = task.payload["params"]
    s, frames = _frames(task, "keyframes")
    T = len(frames)
    a = s.attrs
    onset = int(a.get("onset", 0) or 0)
    offset = int(a["offset"]) if a.get("offset") is not None else T - 1
    apex = a.get("apex")
    apex = int(apex) if apex is not None and apex >= 0 else None
    method = p["method"]
    sources = _keyframe_sources(task.sample_id, frames, a, onset, apex, offset, method)
    apex = sources.pop("apex", apex)
    if apex is not None and method != "uniform":
        sources["apex_used"] = int(apex)  # in the input's frames, as `mexkit flow` records it
    if method == "adaptive":
        plan = kf.adaptive_plan(onset, apex, offset, n_frames=p["n_frames"])
        out = kf.build_keyframes(frames, plan, interpolator=interpolate_midpoint)
        time = np.array([k.time for k in plan], dtype=np.float64)
        out = _to_uint8(out)
    else:
        if method == "tas":
            idx = kf.tas_indices(onset, apex, offset, n_frames=p["n_frames"])
        elif method == "apex-window":
            idx = kf.apex_window(apex if apex is not None else (onset + offset) // 2, T,
                                 length=p["n_frames"])
        else:
            idx = kf.uniform_indices(T, p["n_frames"])
        out = frames[np.asarray(idx)]
        time = np.asarray(idx, dtype=np.float64)
    arrays = {"frames": out, "source_time": time}
    arrays.update(_landmarks(s, time))

    def mapping(v: int) -> int:
        return int(np.argmin(np.abs(time - v)))

    return arrays, {**_positions(s, mapping), "n_frames": len(out), "keyframe_method": method,
                    **sources}


def _keyframe_sources(sample_id: str, frames: np.ndarray, attrs: Any, onset: int,
                      apex: int | None, offset: int, method: str) -> dict[str, Any]:
    """Where onset and apex came from (issue 20), for the sample's attributes.

    The rule every stage shares (:func:`mexkit.temporal.apex.apex_method`): an
    annotated clip without apex (SMIC) keeps the papers' middle frame; a clip
    without any annotation gets the frame most different from its first frame,
    with a warning naming the sample.
    """
    out: dict[str, Any] = {
        "onset_source": "annotation" if attrs.get("onset") is not None else "first frame"}
    if method == "uniform":
        return out
    annotated = out["onset_source"] == "annotation"
    apex, how = resolve_apex(frames, onset, offset, apex, annotated=annotated)  # shared rule
    out.update(apex=apex, apex_source=how)
    if not annotated:
        logging.getLogger("mexkit").warning(
            "keyframes: sample %s has no onset/apex annotation: onset taken as frame %d, "
            "apex estimated as frame %d (the frame most different from the onset)",
            sample_id, onset, apex)
    return out


def run_keyframes(input_path: str | Path, output: str | Path, *, method: str = "adaptive",
                  n_frames: int | None = None, **kw: Any) -> StageResult:
    """Key-frame clips (MERSiamC3D adaptive / TAS, ATNet window, uniform)."""
    check_option("method", method, KEYFRAME_METHODS)
    if n_frames is None:
        n_frames = 65 if method == "apex-window" else 11
    params = {"method": method, "n_frames": n_frames}
    # version 2: synthesised frames from mexkit's TV-L1 instead of OpenCV's (on
    # bin/demo's clips a mean difference of 0.02 grey levels, 99 % of pixels within 1,
    # at most 16): version-1 samples are recomputed, not mixed in
    return run_store_stage(input_path, output, stage="keyframes", version=2, params=params,
                           compute=_compute_keyframes, check=_check_keyframes, **kw)


# -- magnification -----------------------------------------------------------
def _compute_magnify(task: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from ..temporal.magnify import magnify  # start-up: slow to import, only magnify needs it

    p: Mapping[str, Any] = task.payload["params"]
    s, frames = _frames(task, "magnify")
    fps = p["fps"] or s.attrs.get("fps")
    out, diag = magnify(frames, method=p["method"], alpha=p["alpha"], low=p["low"],
                        high=p["high"], temporal_filter=p["filter"],
                        fps=fps if p["filter"] != "iir" else None, diagnostics=True)
    arrays = {"frames": _to_uint8(out)}
    if "landmarks" in s:
        arrays["landmarks"] = s.read("landmarks")
    attrs = {k: s.attrs[k] for k in ("onset", "apex", "offset") if s.attrs.get(k) is not None}
    attrs.update(_magnify_check(task.sample_id, diag, p))
    return arrays, attrs


def _magnify_check(sample_id: str, diag: Any, p: Mapping[str, Any]) -> dict[str, Any]:
    """Warn, naming the sample, when magnification left its valid range; the frames
    concerned are recorded in the sample's attributes (``magnify_bad_frames``)."""
    bad = diag.bad_frames()
    if len(bad):
        lo, hi = diag.valid_range
        what = [f"up to {100 * float(diag.out_of_range.max()):.0f}% of the pixels outside "
                f"{lo:g}..{hi:g}"]
        if p["method"] == "riesz":
            what.append(f"{100 * float(diag.phase_over.max()):.0f}% of the structure "
                        "shifted past pi/2 in phase")
        logging.getLogger("mexkit").warning(
            "magnify: sample %s: %d of %d frame(s) from frame %d on are over-amplified "
            "(%s): the motion is too large for --alpha %g; lower --alpha or --high (now %g)",
            sample_id, len(bad), len(diag.out_of_range), int(bad[0]), ", ".join(what),
            p["alpha"], p["high"])
    return {"magnify_bad_frames": int(len(bad)),
            "magnify_first_bad_frame": int(bad[0]) if len(bad) else -1}


def run_magnify(input_path: str | Path, output: str | Path, *, method: str = "riesz",
                alpha: float = 15.0, low: float = 0.05, high: float = 0.4,
                temporal_filter: str = "iir", fps: float | None = None, **kw: Any
                ) -> StageResult:
    """Motion magnification of every clip (Eulerian or Riesz phase-based)."""
    params = {"method": method, "alpha": alpha, "low": low, "high": high,
              "filter": temporal_filter, "fps": fps}
    return run_store_stage(input_path, output, stage="magnify", version=1, params=params,
                           compute=_compute_magnify, check=_check_magnify, **kw)
