"""TV-L1 optical flow of many frame pairs: a pair-parallel CPU solver and a batched GPU one.

This is mexkit's own implementation of the duality-based TV-L1 optical flow of
Zach, Pock and Bischof (2007) with the numerical details of Sanchez,
Meinhardt-Llopis and Facciolo (IPOL 2013), organised exactly as OpenCV's
``cv2.optflow.DualTVL1OpticalFlow`` runs it with its default parameters:

* the input is taken as intensities in [0, 1] and multiplied by 255 (OpenCV
  converts float input that way, so ``lambda_`` has the same meaning);
* a pyramid of plain bilinear resizes by ``scale_step`` (no presmoothing), at
  most ``nscales`` levels and none smaller than 16 pixels; the coarsest level
  starts from zero flow and each finer level from the bilinear upsampling of
  the coarser flow divided by ``scale_step``;
* per level the dual variable is reset to zero and ``warps`` warpings are made;
  each warping resamples the second frame and its centred gradient at
  ``x + flow(x)`` with bicubic interpolation (Keys kernel, a = -0.75);
* per warping up to ``outer_iterations`` passes of up to ``inner_iterations``
  primal-dual iterations; each pass starts with a ``median_filtering`` x
  ``median_filtering`` median filter of the flow; a pair stops iterating in
  the current warping as soon as the summed squared change of its flow in one
  iteration is at most ``epsilon**2 * area``.

Three engines run this scheme:

* native (``engine="native"``, the default on the CPU once built): a fused
  kernel (:mod:`mexkit.motion._tvl1_kernel`, numba source) compiled once per
  machine to machine code and loaded without numba
  (:mod:`mexkit.motion._tvl1_native`): a whole pair in one call, one pass over
  the field per primal-dual iteration, the warping and the median filter in
  the same code, one workspace per thread reused from pair to pair. The call
  holds no interpreter lock, so its workers are threads of this process,
  each taking the next unsolved pair (a worker that the operating system
  deschedules delays only its own pair). It runs float32 frames without the
  illumination term (``gamma=0``); other settings run on the numpy engine.
  ``bin/setup`` builds it at install time; where no build matches the
  machine (a fresh install from a wheel, another CPU model), ``engine="auto"``
  starts one in the background and uses the numpy engine meanwhile.
* CPU (``engine="numpy"``): every worker takes one pair
  at a time and solves it from its first iteration to its last with
  single-threaded numpy and OpenCV calls (in-place array operations on the
  pair's own buffers, one bicubic ``cv2.remap`` per warping, OpenCV's
  ``medianBlur``). With more than one worker the workers are separate
  processes (:mod:`mexkit.motion._tvl1_workers`, started once per process
  with ``python -c`` and kept), each handed the next unsolved pair as soon as
  it is free: a worker that the operating system deschedules delays only its
  own pair, nobody waits for it, and there is no interpreter lock to share,
  so N workers never do less work per second than one. (Threads of one
  process were tried first: between the many small array operations of a
  128 x 128 pair they queue for the GIL, and 2 threads measured below 1.)
  ``MEXKIT_TVL1_PROCESSES=0`` keeps the workers as threads of this process;
  pairs of a worker process that dies are solved again here. Nothing is
  compiled: the first pair in a fresh process costs what every other pair
  costs, plus about 0.2 s to start the worker processes once.
* CUDA (``engine="torch"``, the default there): all pairs of a batch iterate
  together in kernels compiled with ``torch.compile``
  (:mod:`mexkit.motion.tvl1_torch`), which pays off on a GPU.

The engines give the same flow up to float rounding (each pair keeps its own
stopping rule, so the result does not depend on the batch or thread it runs
in; the native and torch engines sample the bicubic warping at the exact
positions, OpenCV's ``remap`` in the numpy engine at 1/32 pixel).

Speed: ``bench/bench_flow.py`` prints pairs per second against OpenCV's
DualTVL1 at an equal or lower endpoint error; the README lists the measured
figures with the machine's load and the worker count.

Differences from OpenCV, on purpose:

* near and beyond the frame border (``border="masked"``, the default): the
  bicubic taps that fall outside the frame read the nearest border pixel, and
  where ``x + flow(x)`` itself falls outside the frame the data term is
  switched off, so that the flow there is filled in by the total-variation
  regulariser from the inside. OpenCV reads zeros outside the frame
  (``border="zero"``), which puts false edges into the warped frame;
  ``border="replicate"`` keeps the data term everywhere. On smooth synthetic
  motion of a real photograph, "masked" lowers the mean endpoint error in
  the 6-pixel frame border by a quarter to a third and overall by about 10 %
  (interior unchanged).

The flow convention is OpenCV's: ``reference(x) ~ moving(x + flow(x))``, with
channel 0 the horizontal component ``u`` (x, to the right) and channel 1 the
vertical component ``v`` (y, downwards), in pixels.

References
----------
.. [1] C. Zach, T. Pock, H. Bischof, "A duality based approach for realtime
   TV-L1 optical flow", DAGM 2007, LNCS 4713, pp. 214-223.
.. [2] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
   flow estimation", Image Processing On Line 3 (2013), pp. 137-150.
.. [3] OpenCV contrib, module ``optflow``, ``DualTVL1OpticalFlow``.
"""
from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import check_int, check_option, check_range
from ..devices import check_device_name, cuda_possible, resolve_device, usable_cores
from ..errors import ParameterError
from ._flowarray import as_frame_pair
from ._tvl1_workers import NextItem, WorkerLost, get_pool, processes_allowed
from .methods import FlowOption, register_flow_method
from .pyramid import coarse_to_fine, pyramid_sizes

__all__ = ["tvl1_flow", "TVL1Params", "make_params", "TVL1_OPTIONS", "default_threads",
           "start_cpu_workers"]

logger = logging.getLogger("mexkit")

_FLT_EPSILON = float(np.finfo(np.float32).eps)  # OpenCV's threshold on |grad I|^2
_BORDERS = ("masked", "replicate", "zero")
_ENGINES = ("auto", "native", "numpy", "torch")

_OPENCV_DEFAULT = ("OpenCV DualTVL1's default, as MEAN and SOFTNet run it; Zach et al. "
                   "2007, Sanchez et al. IPOL 2013")

#: The options of the TV-L1 solvers (shared by ``tvl1`` and ``tvl1-opencv``).
TVL1_OPTIONS = (
    FlowOption("tau", float, 0.25, f"Time step of the dual update ({_OPENCV_DEFAULT}).",
               minimum=1e-12),
    FlowOption("lambda_", float, 0.15,
               f"Weight of the data term against total variation, for intensities "
               f"0-255 ({_OPENCV_DEFAULT}).", minimum=1e-12),
    FlowOption("theta", float, 0.3,
               f"Coupling of the flow and its auxiliary variable ({_OPENCV_DEFAULT}).",
               minimum=1e-12),
    FlowOption("nscales", int, 5, f"Most pyramid levels ({_OPENCV_DEFAULT}).", minimum=1),
    FlowOption("warps", int, 5, f"Warpings per pyramid level ({_OPENCV_DEFAULT}).",
               minimum=1),
    FlowOption("epsilon", float, 0.01,
               f"Stopping threshold: a warping ends when the summed squared flow change "
               f"of one iteration is at most epsilon^2 x area ({_OPENCV_DEFAULT}).",
               minimum=0.0),
    FlowOption("inner_iterations", int, 30,
               f"Iterations per pass ({_OPENCV_DEFAULT}).", minimum=1),
    FlowOption("outer_iterations", int, 10,
               f"Passes per warping, each after a median filter ({_OPENCV_DEFAULT}).",
               minimum=1),
    FlowOption("scale_step", float, 0.8,
               f"Zoom factor between pyramid levels, in (0, 1) ({_OPENCV_DEFAULT}; the "
               f"IPOL paper uses 0.5).", minimum=1e-12),
    FlowOption("gamma", float, 0.0,
               f"Weight of the illumination-change variable, 0 = off ({_OPENCV_DEFAULT}).",
               minimum=0.0),
    FlowOption("median_filtering", int, 5,
               f"Median filter size applied to the flow at each pass; 1 or 0 = none "
               f"({_OPENCV_DEFAULT}).", choices=(5, 3, 1, 0)),
)

_MEXKIT_OPTIONS = TVL1_OPTIONS + (
    FlowOption("border", str, "masked",
               "Frame border when warping: 'masked' drops the data term where x + flow(x) "
               "leaves the frame (mexkit's default, lower error at the border), 'zero' "
               "reads zeros outside as OpenCV does, 'replicate' the border pixels.",
               choices=_BORDERS),
    FlowOption("device", str, "auto", "Where to compute: 'cpu', 'cuda', 'cuda:N' (GPU N), or "
               "'auto', which takes CUDA when torch sees a GPU (and the NVIDIA driver is "
               "present), else the CPU.", affects_result=False),
    FlowOption("threads", int, None, "CPU workers, each solving whole pairs on its own "
               "(worker processes when more than one). Default: the CPU cores this process "
               "may use, shared out between the --jobs workers.", minimum=1,
               affects_result=False),
    FlowOption("compile", bool, True, "CUDA engine: run torch.compile'd kernels (off: the "
               "same code uncompiled).", affects_result=False),
    FlowOption("engine", str, "auto", "Solver: 'native' (the compiled CPU kernel, built once "
               "per machine), 'numpy' (numpy and OpenCV calls), 'torch' (batched, for CUDA), "
               "or 'auto': torch on CUDA, else native when built for this machine (else numpy, "
               "while it is built in the background). Same flow up to float rounding.",
               choices=("auto", "native", "numpy", "torch"), affects_result=False),
)


# --------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class TVL1Params:
    """Checked TV-L1 parameters (see :func:`tvl1_flow` for their meaning)."""

    tau: float
    lambda_: float
    theta: float
    nscales: int
    warps: int
    epsilon: float
    inner_iterations: int
    outer_iterations: int
    scale_step: float
    gamma: float
    median_filtering: int
    border: str


def _check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(
            f"Invalid value for the {name!r} parameter. It must be a number, "
            f"but got {value!r} instead."
        )
    value = float(value)
    if not math.isfinite(value):
        raise ParameterError(
            f"Invalid value for the {name!r} parameter. It must be finite, "
            f"but got {value!r} instead."
        )
    check_range(name, value, low, high, low_open=low_open, high_open=high_open)
    return value


def make_params(*, tau: Any = 0.25, lambda_: Any = 0.15, theta: Any = 0.3, nscales: Any = 5,
                warps: Any = 5, epsilon: Any = 0.01, inner_iterations: Any = 30,
                outer_iterations: Any = 10, scale_step: Any = 0.8, gamma: Any = 0.0,
                median_filtering: Any = 5, border: Any = "masked") -> TVL1Params:
    """Check TV-L1 parameters and return them as a :class:`TVL1Params`.

    Raises
    ------
    ParameterError
        For a value of the wrong type or out of range (the message names it).
    """
    return TVL1Params(
        tau=_check_float("tau", tau, 0.0, low_open=True),
        lambda_=_check_float("lambda_", lambda_, 0.0, low_open=True),
        theta=_check_float("theta", theta, 0.0, low_open=True),
        nscales=check_int("nscales", nscales, 1),
        warps=check_int("warps", warps, 1),
        epsilon=_check_float("epsilon", epsilon, 0.0),
        inner_iterations=check_int("inner_iterations", inner_iterations, 1),
        outer_iterations=check_int("outer_iterations", outer_iterations, 1),
        scale_step=_check_float("scale_step", scale_step, 0.0, 1.0, low_open=True,
                                high_open=True),
        gamma=_check_float("gamma", gamma, 0.0),
        median_filtering=int(check_option("median_filtering", median_filtering,
                                          (0, 1, 3, 5))),
        border=check_option("border", border, _BORDERS),
    )


def default_threads() -> int:
    """CPU workers by default: the cores this process may run on."""
    return usable_cores()


# --------------------------------------------------------------------------
# CPU engine: one pair per call, single-threaded numpy and OpenCV


def _linear_taps(n_in: int, n_out: int, scale: float, dtype: np.dtype
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left/right source index and weight of 1-D bilinear resizing, OpenCV style.

    Output sample ``i`` reads the input at ``(i + 0.5) * scale - 0.5`` with the
    two taps clamped into the input (a replicated border).
    """
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    left = np.floor(pos)
    frac = (pos - left).astype(dtype)
    left = left.astype(np.intp)
    return np.clip(left, 0, n_in - 1), np.clip(left + 1, 0, n_in - 1), frac


def _resize(image: np.ndarray, size: tuple[int, int], scale: tuple[float, float] | None
            ) -> np.ndarray:
    """Bilinear resize of ``(..., h, w)`` to ``size`` as OpenCV's INTER_LINEAR.

    ``scale`` is (source pixels per output pixel) along y and x; ``None`` uses
    the size ratio (OpenCV's behaviour when an output size is given).
    OpenCV's ``resize`` does the float32 work (single-threaded at these
    sizes); the numpy formula below is the reference and the float64 path.
    """
    h, w = image.shape[-2:]
    nh, nw = size
    if image.dtype == np.float32:
        import cv2  # start-up: importing mexkit.motion does not load OpenCV

        planes = image.reshape((-1, h, w))
        if scale is None:
            out = [cv2.resize(p, (nw, nh), interpolation=cv2.INTER_LINEAR) for p in planes]
        else:
            out = [cv2.resize(p, None, fx=1.0 / scale[1], fy=1.0 / scale[0],
                              interpolation=cv2.INTER_LINEAR) for p in planes]
        if out[0].shape == (nh, nw):
            return np.stack(out).reshape(image.shape[:-2] + (nh, nw))
    sy, sx = scale if scale is not None else (h / nh, w / nw)
    a, b, f = _linear_taps(h, nh, sy, image.dtype)
    rows = image[..., a, :] * (1 - f)[:, None] + image[..., b, :] * f[:, None]
    a, b, f = _linear_taps(w, nw, sx, image.dtype)
    return np.ascontiguousarray(rows[..., a] * (1 - f) + rows[..., b] * f)


def _moving_stack(moving: np.ndarray) -> np.ndarray:
    """(h, w, 3): the second frame and its centred gradient along x and y.

    Half the central difference, replicated border (as OpenCV).
    """
    padded = np.pad(moving, 1, mode="edge")
    stack = np.empty(moving.shape + (3,), moving.dtype)
    stack[..., 0] = moving
    np.subtract(padded[1:-1, 2:], padded[1:-1, :-2], out=stack[..., 1])
    np.subtract(padded[2:, 1:-1], padded[:-2, 1:-1], out=stack[..., 2])
    stack[..., 1:] *= 0.5
    return stack


def _warp_data(reference: np.ndarray, stack: np.ndarray, u: np.ndarray, border: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """Linearisation of the data term around the flow ``u`` (one warping).

    ``reference`` (h, w) is the first frame, ``stack`` (h, w, 3) the second
    frame and its gradient (:func:`_moving_stack`), ``u`` (C, h, w) the flow.
    The stack is resampled at ``x + u(x)`` bicubically (Keys, a = -0.75, exact
    sub-pixel positions) by OpenCV's ``remap``, in float32 (the positions are
    float32 in any case). Returns the warped gradient
    (2, h, w), zero where ``border`` is "masked" and ``x + u(x)`` leaves the
    frame, and the constant part of the residual
    ``I1(x + u0) - grad I1(x + u0) . u0 - I0(x)``.
    """
    import cv2  # start-up: importing mexkit.motion does not load OpenCV

    h, w = reference.shape
    map_x = np.arange(w, dtype=np.float32)[None, :] + u[0]
    map_y = np.arange(h, dtype=np.float32)[:, None] + u[1]
    # far-away positions only read the border (or zeros): clamping keeps them finite
    mx = np.clip(map_x, -3.0, w + 2.0).astype(np.float32, copy=False)
    my = np.clip(map_y, -3.0, h + 2.0).astype(np.float32, copy=False)
    if stack.dtype != np.float32:
        # OpenCV's float64 remap does not use the same bicubic kernel: resample in float32
        stack = stack.astype(np.float32)
    if border == "zero":
        warped = cv2.remap(stack, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0.0, 0.0, 0.0, 0.0))
    else:
        warped = cv2.remap(stack, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    warped = warped.astype(reference.dtype, copy=False)
    grad = np.ascontiguousarray(np.moveaxis(warped[..., 1:], -1, 0))
    if border == "masked":
        outside = (map_x < 0) | (map_x > w - 1) | (map_y < 0) | (map_y > h - 1)
        grad[:, outside] = 0
    rho_c = warped[..., 0] - grad[0] * u[0] - grad[1] * u[1] - reference
    return grad, rho_c


def _median(u: np.ndarray, ksize: int, scratch: np.ndarray) -> None:
    """In-place ksize x ksize median of each (h, w) plane of ``u``, replicated border."""
    if u.dtype == np.float32:
        import cv2  # start-up: importing mexkit.motion does not load OpenCV

        for plane in u:
            cv2.medianBlur(plane, ksize, dst=scratch)
            plane[...] = scratch
    else:  # OpenCV's 5 x 5 median takes float32 only
        from scipy import ndimage  # start-up: scipy.ndimage is slow to import; float64 only

        for plane in u:
            ndimage.median_filter(plane, size=ksize, mode="nearest", output=scratch)
            plane[...] = scratch


def _solve_level(reference: np.ndarray, moving: np.ndarray, u: np.ndarray,
                 prm: TVL1Params) -> np.ndarray:
    """Refine the flow ``u`` (C, h, w) at one pyramid level, in place.

    The primal-dual iteration of Zach et al. written as in-place numpy
    operations on contiguous buffers. The dual variable is stored multiplied
    by ``theta`` (``q = theta * p``), so that the primal step reads ``u = v +
    div q`` and the dual step ``q = (q + tau grad u) / (1 + tau/theta |grad
    u|)``. Its x component is zero in the last column and its y component in
    the last row (the forward differences are zero there), so both backward
    differences of the divergence are plain shifts of the flattened arrays.
    """
    h, w = reference.shape
    dt = reference.dtype
    comps = u.shape[0]
    stack = _moving_stack(moving)
    tolerance = prm.epsilon * prm.epsilon * h * w
    l_t = prm.lambda_ * prm.theta
    taut = prm.tau / prm.theta
    lo, hi = dt.type(-l_t), dt.type(l_t)
    q = np.zeros((2, comps, h, w), dt)     # theta * dual variable: x and y parts
    grad_u = np.zeros((2, comps, h, w), dt)  # forward differences of u
    squares = np.empty((2, comps, h, w), dt)
    norm = np.empty((comps, h, w), dt)
    change = np.empty((comps, h, w), dt)
    prod = np.empty((comps, h, w), dt)
    slope = np.empty((comps, h, w), dt)  # the warped gradient (and gamma) per component
    rho = np.empty((h, w), dt)
    neg_inv = np.empty((h, w), dt)
    scratch = np.empty((h, w), dt)
    uf, qx, qy, cf = u.reshape(-1), q[0].reshape(-1), q[1].reshape(-1), change.reshape(-1)
    gx, gy = grad_u[0].reshape(-1), grad_u[1].reshape(-1)
    if comps == 3:
        slope[2] = prm.gamma
    for _warp in range(prm.warps):
        grad_i1, rho_c = _warp_data(reference, stack, u, prm.border)
        slope[:2] = grad_i1
        # -1 / |grad I1|^2 (clamped as OpenCV's threshold): the thresholding
        # step is clip(-rho / |grad I1|^2, -lambda theta, lambda theta)
        np.multiply(grad_i1[0], grad_i1[0], out=neg_inv)
        neg_inv += grad_i1[1] * grad_i1[1]
        np.maximum(neg_inv, _FLT_EPSILON, out=neg_inv)
        np.divide(-1.0, neg_inv, out=neg_inv)
        error = math.inf
        for _outer in range(prm.outer_iterations):
            if prm.median_filtering > 1:
                _median(u, prm.median_filtering, scratch)
            for _inner in range(prm.inner_iterations):
                # thresholding step: rho = rho_c + grad I1 . u (+ gamma u3)
                np.multiply(slope, u, out=prod)
                np.add(prod[0], prod[1], out=rho)
                if comps == 3:
                    rho += prod[2]
                rho += rho_c
                rho *= neg_inv
                np.maximum(rho, lo, out=rho)
                np.minimum(rho, hi, out=rho)
                # primal step: change = step * grad I1 + div q
                np.multiply(slope, rho, out=change)
                change += q[0]
                change += q[1]
                cf[1:] -= qx[:-1]
                cf[w:] -= qy[:-w]
                error = float(np.einsum("i,i->", cf, cf))
                u += change
                # dual step
                np.subtract(uf[1:], uf[:-1], out=gx[:-1])
                grad_u[0, :, :, -1] = 0
                np.subtract(uf[w:], uf[:-w], out=gy[:-w])
                grad_u[1, :, -1, :] = 0
                np.multiply(grad_u, grad_u, out=squares)
                np.add(squares[0], squares[1], out=norm)
                np.sqrt(norm, out=norm)
                norm *= taut
                norm += 1.0
                grad_u *= prm.tau
                q += grad_u
                q /= norm
                if error <= tolerance:
                    break
            if error <= tolerance:
                break
    return u


def _solve_pair(reference: np.ndarray, moving: np.ndarray, prm: TVL1Params) -> np.ndarray:
    """Coarse-to-fine TV-L1 of one pair of (H, W) frames scaled to [0, 255]."""
    comps = 3 if prm.gamma > 0 else 2

    def upsample(u: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        # the illumination variable is resized but not rescaled (as OpenCV)
        u = _resize(u, size, None)
        u[:2] /= prm.scale_step
        return u

    u = coarse_to_fine(
        reference, moving, nscales=prm.nscales, scale_step=prm.scale_step, resize=_resize,
        start=lambda size: np.zeros((comps,) + size, reference.dtype),
        solve_level=lambda ref, mov, u: _solve_level(ref, mov, u, prm), upsample=upsample)
    return u[:2]


def _run_workers(work: Callable[[], None], workers: int) -> None:
    """Run ``work`` in this thread (one worker) or in ``workers`` threads, re-raising the
    first error; each call of ``work`` takes pairs until none are left."""
    if workers <= 1:
        work()
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mexkit-tvl1") as pool:
        futures = [pool.submit(work) for _ in range(workers)]
        for future in futures:
            future.result()


def _solve_scaled(reference: np.ndarray, moving: np.ndarray, prm: TVL1Params,
                  dtype: np.dtype) -> np.ndarray:
    """Flow of one pair of (H, W) frames in [0, 1] (what a worker process runs)."""
    ref = reference.astype(dtype) * dtype.type(255.0)
    mov = moving.astype(dtype) * dtype.type(255.0)
    return _solve_pair(ref, mov, prm)


def _solve_pairs_threads(reference: np.ndarray, moving: np.ndarray, prm: TVL1Params,
                         dtype: np.dtype, threads: int, out: np.ndarray,
                         which: list[int]) -> None:
    """Flow of pairs ``which`` into ``out``, ``threads`` threads taking the next pair."""
    take = NextItem(which)
    failed = threading.Event()

    def work() -> None:
        while not failed.is_set():
            i = take()
            if i is None:
                return
            try:
                out[i] = _solve_scaled(reference[i], moving[i], prm, dtype)
            except BaseException:
                failed.set()
                raise

    _run_workers(work, min(threads, len(which)))


def start_cpu_workers(threads: int | None = None, *, engine: str = "auto") -> None:
    """Ready the CPU engine now, ahead of the first batch.

    With the native kernel (``engine`` "auto" or "native"), links it into
    this process (its workers are threads: nothing to start); where no build
    matches this machine, "auto" starts one in the background
    (:func:`mexkit.motion._tvl1_native.build_in_background`). Otherwise starts
    the numpy engine's worker processes, so that their start (about 0.2 s of
    imports, in the workers) overlaps the caller's reading of its first
    frames; nothing when one worker is asked for or processes are switched
    off (``MEXKIT_TVL1_PROCESSES=0``); a start that fails is left to the
    first batch, which then falls back to threads.
    """
    check_option("engine", engine, _ENGINES)
    n = default_threads() if threads is None else check_int("threads", threads, 1)
    if engine in ("auto", "native"):
        from . import _tvl1_native as native  # start-up: the native engine, only when chosen

        if native.load() is not None:
            return
        if engine == "auto":
            native.build_in_background()
    if engine in ("auto", "numpy") and n > 1 and processes_allowed():
        try:
            get_pool(n).start()
        except OSError:
            pass


def _solve_pairs(reference: np.ndarray, moving: np.ndarray, prm: TVL1Params,
                 dtype: np.dtype, threads: int, kernel: Any = None) -> np.ndarray:
    """Flow of every pair, ``threads`` workers each taking the next unsolved pair.

    With the native ``kernel`` the workers are threads of this process (the
    kernel holds no interpreter lock). Otherwise, with more than one worker
    and more than one pair, the workers are processes
    (:mod:`mexkit.motion._tvl1_workers`) unless ``MEXKIT_TVL1_PROCESSES=0``;
    pairs a lost worker process did not finish, or all pairs if processes
    cannot be started, are solved by threads here.
    """
    n_pairs = reference.shape[0]
    out = np.empty((n_pairs, 2) + reference.shape[1:], dtype=np.float32)
    todo = list(range(n_pairs))
    if kernel is not None:
        _solve_pairs_native(reference, moving, prm, kernel, threads, out)
        return out
    if threads > 1 and n_pairs > 1 and processes_allowed():
        def keep(i: int, flow: np.ndarray) -> None:
            out[i] = flow

        try:
            get_pool(threads).map(_solve_scaled, [(reference[i], moving[i], prm, dtype)
                                                  for i in todo], keep)
            return out
        except WorkerLost as exc:
            todo = exc.args[1] if len(exc.args) > 1 else todo
        except OSError as exc:  # no processes here (sandbox, fd limit): threads instead
            logger.warning("TV-L1 worker processes could not start (%s); using threads", exc)
    _solve_pairs_threads(reference, moving, prm, dtype, threads, out, todo)
    return out


def _solve_pairs_native(reference: np.ndarray, moving: np.ndarray, prm: TVL1Params,
                        kernel: Any, threads: int, out: np.ndarray) -> None:
    """Flow of every pair into ``out`` with the native kernel, ``threads`` threads."""
    height, width = reference.shape[1:]
    sizes = pyramid_sizes(height, width, nscales=prm.nscales, scale_step=prm.scale_step)
    lock = threading.Lock()
    order = iter(range(reference.shape[0]))
    failed = threading.Event()

    def work() -> None:
        while not failed.is_set():
            with lock:
                i = next(order, None)
            if i is None:
                return
            try:
                out[i] = kernel.solve(reference[i], moving[i], prm, sizes)[0]
            except BaseException:
                failed.set()
                raise

    _run_workers(work, min(threads, reference.shape[0]))


def _native_kernel(prm: TVL1Params, dtype: np.dtype, engine: str) -> Any:
    """The native kernel for these settings, or None (the numpy engine runs).

    "native" insists: settings it does not run and a kernel that cannot be
    built or loaded are errors, and a missing build is made here (compiling,
    once per machine). "auto" takes the kernel when it is built for this
    machine, else starts a build in the background and returns None.
    """
    if engine == "numpy":
        return None
    from . import _tvl1_native as native  # start-up: the native engine, only when chosen

    supported = dtype == np.float32 and prm.gamma == 0
    if engine == "auto":
        if not supported:
            return None
        kernel = native.load()
        if kernel is None:
            native.build_in_background()
        return kernel
    if not supported:
        raise ParameterError(
            f"engine='native' computes in float32 without the illumination term, but got "
            f"dtype={dtype.name!r} and gamma={prm.gamma!r}; use engine='numpy' or 'auto'.")
    if not native.enabled():
        raise ParameterError(f"engine='native' is switched off ({native.NATIVE_ENV}=0); "
                             "use engine='numpy' or 'auto'.")
    kernel = native.load()
    if kernel is None:
        try:
            native.build()
        except ImportError as exc:
            raise ParameterError(f"engine='native' needs numba to build its kernel once on "
                                 f"this machine ({exc}); use engine='numpy' or 'auto'.") from exc
        kernel = native.load()
    if kernel is None:
        raise ParameterError(f"engine='native': the kernel could not be loaded "
                             f"({native.status()['error']}); use engine='numpy' or 'auto'.")
    return kernel


# --------------------------------------------------------------------------
# engine choice


def _cuda_possible() -> bool:
    """Whether asking torch about CUDA can say yes, without importing torch needlessly."""
    return "torch" in sys.modules or cuda_possible()


def _numpy_dtype(dtype: Any) -> np.dtype:
    name = str(dtype).replace("torch.", "")
    check_option("dtype", name, ("float32", "float64"))
    return np.dtype(name)


@register_flow_method(
    "tvl1", options=_MEXKIT_OPTIONS, start_workers=start_cpu_workers,
    summary="mexkit's TV-L1 (Zach et al. 2007; OpenCV DualTVL1's scheme and defaults): "
            "whole pairs per CPU thread in a compiled kernel, or batched on a GPU.")
def tvl1_flow(reference: Any, moving: Any, *, tau: float = 0.25, lambda_: float = 0.15,
              theta: float = 0.3, nscales: int = 5, warps: int = 5, epsilon: float = 0.01,
              inner_iterations: int = 30, outer_iterations: int = 10,
              scale_step: float = 0.8, gamma: float = 0.0, median_filtering: int = 5,
              border: str = "masked", device: Any = "auto", threads: int | None = None,
              dtype: Any = "float32", engine: str = "auto", batch_size: int | None = None,
              compile: bool = True) -> np.ndarray:
    """TV-L1 optical flow of many frame pairs (OpenCV DualTVL1's scheme).

    Parameters
    ----------
    reference : array_like, shape (P, H, W) or (H, W)
        First frames ``I0``; uint8 (0-255) or float (0-1, as OpenCV takes
        float input). A numpy array or a torch tensor.
    moving : array_like, same shape as `reference`
        Second frames ``I1``.
    tau : float
        Time step of the dual update (0.25).
    lambda_ : float
        Weight of the data term relative to the total variation, for
        intensities in 0-255 (0.15).
    theta : float
        Coupling between the flow and its auxiliary variable (0.3).
    nscales : int
        Maximum number of pyramid levels (5).
    warps : int
        Warpings per level (5).
    epsilon : float
        Stopping threshold: a pair stops iterating in a warping when the sum
        over pixels of its squared flow change is at most
        ``epsilon**2 * area`` (0.01).
    inner_iterations, outer_iterations : int
        Iterations per pass and passes per warping (30 and 10).
    scale_step : float
        Zoom factor between pyramid levels, in (0, 1) (0.8).
    gamma : float
        Weight of the illumination variable (0 switches it off, as OpenCV's
        default).
    median_filtering : {5, 3, 1, 0}
        Size of the median filter applied to the flow at the start of every
        pass (1 or 0: none).
    border : {"masked", "replicate", "zero"}
        Frame border handling when warping: "masked" (default) replicates
        the border pixels and drops the data term where ``x + flow(x)`` is
        outside the frame; "replicate" only replicates; "zero" reads zeros
        outside (as OpenCV). See the module docstring.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
        Where to compute; "auto" takes CUDA when torch sees a GPU (torch is
        not even imported when no NVIDIA driver is installed).
    threads : int, optional
        CPU engines: workers, each solving whole pairs; threads with the
        native engine, processes with the numpy engine when more than one
        (see the module docstring; default: the cores this process may run
        on, :func:`default_threads`).
    dtype : {"float32", "float64"} or torch dtype
        Computation precision (the result is float32 either way).
    engine : {"auto", "native", "numpy", "torch"}
        "native" is the compiled CPU kernel (float32, ``gamma`` 0; built on
        first use when missing), "numpy" the CPU engine of numpy and OpenCV
        calls, "torch" the batched engine of :mod:`mexkit.motion.tvl1_torch`;
        "auto" takes "torch" on CUDA, and on the CPU "native" where it is
        built for this machine and runs these settings, else "numpy" (and
        starts the native build in the background). See the module
        docstring.
    batch_size : int, optional
        Torch engine: pairs solved together (default about 2**24 pixels per
        batch on CUDA, 2**18 on CPU).
    compile : bool
        Torch engine: use ``torch.compile`` kernels (default). Compiling
        costs some seconds once per process, cached on disk by torch.

    Returns
    -------
    numpy.ndarray, float32, shape (P, 2, H, W) or (2, H, W)
        Flow in pixels, channel 0 horizontal (u), channel 1 vertical (v), such
        that ``reference(x) ~ moving(x + flow(x))``. A 2-D input gives a 3-D
        output.

    Raises
    ------
    ParameterError
        For frames of different or unsupported shapes or dtypes, non-finite
        values, or parameter values out of range.

    Notes
    -----
    The algorithm, its defaults and the deliberate differences from OpenCV
    are described in the module docstring. Results agree with OpenCV's to a
    few hundredths of a pixel on smooth motion; the mean endpoint error
    against a known flow is typically equal or lower.

    References
    ----------
    .. [1] C. Zach, T. Pock, H. Bischof, "A duality based approach for
       realtime TV-L1 optical flow", DAGM 2007.
    .. [2] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
       flow estimation", IPOL 3 (2013), pp. 137-150.
    """
    prm = make_params(tau=tau, lambda_=lambda_, theta=theta, nscales=nscales, warps=warps,
                      epsilon=epsilon, inner_iterations=inner_iterations,
                      outer_iterations=outer_iterations, scale_step=scale_step, gamma=gamma,
                      median_filtering=median_filtering, border=border)
    check_option("engine", engine, _ENGINES)
    np_dtype = _numpy_dtype(dtype)
    if threads is not None:
        threads = check_int("threads", threads, 1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1)
    device = check_device_name(device)
    dev = None
    on_cpu = device == "cpu" or (device == "auto" and not _cuda_possible())
    if not on_cpu or engine == "torch":
        dev = resolve_device(device)
        on_cpu = dev.type == "cpu"
    ref, mov, single = as_frame_pair(reference, moving, dtype=None)
    if on_cpu and engine != "torch":
        flow = _solve_pairs(ref, mov, prm, np_dtype,
                            default_threads() if threads is None else threads,
                            _native_kernel(prm, np_dtype, engine))
    else:
        import torch  # start-up: torch, only for the torch engine

        from .tvl1_torch import solve  # start-up: tvl1_torch imports torch

        flow = solve(ref, mov, prm, device=dev, batch_size=batch_size, compile=compile,
                     dtype=torch.float64 if np_dtype == np.float64 else torch.float32)
    return flow[0] if single else flow
