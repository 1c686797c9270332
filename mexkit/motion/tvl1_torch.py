"""Batched TV-L1 in torch: the CUDA engine of :func:`mexkit.motion.tvl1.tvl1_flow`.

The same coarse-to-fine scheme as the CPU solver of :mod:`mexkit.motion.tvl1`
(OpenCV DualTVL1's, described there), written for many pairs at once: every
pair of a batch keeps its own stopping rule (a converged pair is frozen, so
the result does not depend on the batch it runs in) and converged pairs are
dropped from the working set. The iteration (five per call on CUDA, two on
CPU) and the warping are compiled with :func:`torch.compile` (Triton on
CUDA, C++/OpenMP on CPU) with dynamic shapes, so one set of kernels serves
every pyramid level, frame size and batch size; ``compile=False`` runs the
same code eagerly. The median filter is a pruned min/max selection network
(Batcher's odd-even merge sort) compiled into one kernel on CUDA, and
OpenCV's ``medianBlur`` on CPU.

This engine is meant for the GPU. On CPU the compiled loops synchronise
their OpenMP threads several times per iteration, which stalls whenever
another process takes a core, and compiling costs tens of seconds in a
fresh process; :mod:`mexkit.motion.tvl1` therefore solves CPU pairs with its
own single-threaded solver per worker thread, and this module is imported
only when the CUDA engine (or ``engine="torch"``) is asked for.

Compiled kernels are cached by torch on disk (``TORCHINDUCTOR_CACHE_DIR``,
by default ``/tmp/torchinductor_<user>``); see the README for sharing it.

References
----------
.. [1] Zach, Pock and Bischof, DAGM 2007, and Sanchez Perez, Meinhardt-Llopis
   and Facciolo, IPOL 2013: the algorithm, as :mod:`mexkit.motion.tvl1` cites
   them.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .pyramid import coarse_to_fine

__all__ = ["solve", "remap", "median_select", "median_filter"]

logger = logging.getLogger("mexkit")

_FLT_EPSILON = float(np.finfo(np.float32).eps)  # OpenCV's threshold on |grad I|^2
_CUBIC_A = -0.75  # Keys kernel parameter used by OpenCV and torch
# indices are clamped in range by construction; the per-call checks only cost time
_COMPILE_OPTIONS = {"assert_indirect_indexing": False, "size_asserts": False}
# largest pixel count of one batch: the flat tap indices are int32
_MAX_INDEX = (1 << 31) - 1

# --------------------------------------------------------------------------
# small numerical building blocks (torch, any device)


def _linear_resize_matrix(n_in: int, n_out: int, scale: float, *, dtype: torch.dtype,
                          device: torch.device) -> torch.Tensor:
    """(n_out, n_in) matrix of 1-D bilinear interpolation, OpenCV style.

    Output sample ``i`` reads the input at ``(i + 0.5) * scale - 0.5`` with the
    two taps clamped into the input (a replicated border).
    """
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    left = np.floor(pos)
    frac = pos - left
    left = left.astype(np.int64)
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(mat, (rows, np.clip(left, 0, n_in - 1)), 1.0 - frac)
    np.add.at(mat, (rows, np.clip(left + 1, 0, n_in - 1)), frac)
    return torch.as_tensor(mat, dtype=dtype, device=device)


def _resize(images: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None
            ) -> torch.Tensor:
    """Bilinear resize of ``(..., h, w)`` to ``size`` as OpenCV's INTER_LINEAR.

    ``scale`` is (source pixels per output pixel) along y and x; ``None`` uses
    the size ratio (OpenCV's behaviour when an output size is given).
    """
    h, w = images.shape[-2:]
    nh, nw = size
    sy, sx = scale if scale is not None else (h / nh, w / nw)
    my = _linear_resize_matrix(h, nh, sy, dtype=images.dtype, device=images.device)
    mx = _linear_resize_matrix(w, nw, sx, dtype=images.dtype, device=images.device)
    return torch.matmul(torch.matmul(my, images), mx.T)


def _centered_gradient(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the central difference along x and y, replicated border (as OpenCV)."""
    padded = F.pad(images[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    gx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    gy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return gx, gy


def _cubic_weights(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Keys cubic convolution weights of the taps at -1, 0, 1, 2 for offset t."""
    a = _CUBIC_A
    s = 1.0 - t
    w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    w2 = ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0
    tp = t + 1.0
    w0 = ((a * tp - 5.0 * a) * tp + 8.0 * a) * tp - 4.0 * a
    w3 = 1.0 - w0 - w1 - w2
    return w0, w1, w2, w3


def _remap_bicubic(images: Sequence[torch.Tensor], map_x: torch.Tensor, map_y: torch.Tensor,
                   zero_border: bool) -> list[torch.Tensor]:
    """Sample each of ``images`` (n, h, w) at (map_x, map_y) (n, h, w) bicubically.

    Taps outside the image read the nearest border pixel, or zero when
    ``zero_border`` is true. The tap indices (int32) and weights are computed
    once and shared by the images.
    """
    n, h, w = map_x.shape
    # positions far outside only ever read the border (or zeros): clamping them
    # keeps every index in range whatever the flow
    map_x = map_x.clamp(-3.0, w + 2.0)
    map_y = map_y.clamp(-3.0, h + 2.0)
    x0f = torch.floor(map_x)
    y0f = torch.floor(map_y)
    wx = list(_cubic_weights(map_x - x0f))
    wy = list(_cubic_weights(map_y - y0f))
    x0 = x0f.to(torch.int32)
    y0 = y0f.to(torch.int32)
    base = (torch.arange(n, device=map_x.device, dtype=torch.int32) * (h * w))[:, None, None]
    cols = []
    rows = []
    for k in range(4):
        xk = x0 + (k - 1)
        yk = y0 + (k - 1)
        if zero_border:
            wx[k] = torch.where((xk >= 0) & (xk < w), wx[k], torch.zeros_like(wx[k]))
            wy[k] = torch.where((yk >= 0) & (yk < h), wy[k], torch.zeros_like(wy[k]))
        cols.append(xk.clamp(0, w - 1))
        rows.append(yk.clamp(0, h - 1) * w + base)
    out = []
    for image in images:
        flat = image.reshape(-1)
        acc = None
        for i in range(4):
            line = None
            for j in range(4):
                tap = flat[rows[i] + cols[j]] * wx[j]
                line = tap if line is None else line + tap
            term = line * wy[i]
            acc = term if acc is None else acc + term
        out.append(acc)
    return out


def _warp_data(reference: torch.Tensor, i1: torch.Tensor, i1x: torch.Tensor, i1y: torch.Tensor,
               u1: torch.Tensor, u2: torch.Tensor, border: int) -> list[torch.Tensor]:
    """Linearisation of the data term around the flow ``(u1, u2)`` (one warping).

    All tensors are (n, h, w): the first frame, the second frame and its
    centred gradient, the current flow. ``border`` is 0 (replicate), 1 (zero)
    or 2 (masked: replicate, and no data term where ``x + flow(x)`` falls
    outside the frame). Returns the warped gradient of the second frame along
    x and y and the constant part of the residual
    ``I1(x + u0) - grad I1(x + u0) . u0 - I0(x)`` (the squared gradient norm
    is recomputed in every iteration: cheaper than reading it).
    """
    _, h, w = u1.shape
    map_x = torch.arange(w, device=u1.device, dtype=u1.dtype)[None, None, :] + u1
    map_y = torch.arange(h, device=u1.device, dtype=u1.dtype)[None, :, None] + u2
    i1w, i1wx, i1wy = _remap_bicubic((i1, i1x, i1y), map_x, map_y, border == 1)
    if border == 2:
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        i1wx = torch.where(inside, i1wx, torch.zeros_like(i1wx))
        i1wy = torch.where(inside, i1wy, torch.zeros_like(i1wy))
    rho_c = i1w - i1wx * u1 - i1wy * u2 - reference
    return [i1wx, i1wy, rho_c]


def _primal_dual_step(u: list[torch.Tensor], p: list[torch.Tensor], data: list[torch.Tensor],
                      alive: torch.Tensor, l_t: float, theta: float, taut: float,
                      gamma: float) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """One TV-L1 iteration for a batch (thresholding, primal and dual update).

    ``u`` holds the flow components (n, h, w): u1, u2 and, when ``gamma`` >
    0, the illumination variable u3; ``p`` the dual variable, two (n, h, w)
    tensors (x and y) per component; ``data`` the three tensors of
    :func:`_warp_data`; ``alive`` (n,) bool. Pairs that are not alive keep
    their state. Returns the new ``u``, ``p`` and the summed squared change of
    ``u`` per pair (n,).

    Written component by component, so that the compiler fuses the primal and
    the dual update into one loop each, without temporaries.
    """
    i1wx, i1wy, rho_c = data
    grad = i1wx * i1wx + i1wy * i1wy
    rho = rho_c + i1wx * u[0] + i1wy * u[1]
    if len(u) == 3:
        rho = rho + gamma * u[2]
    # thresholding step (TH): minimiser of the linearised pointwise data term
    lg = l_t * grad
    safe_grad = torch.where(grad > _FLT_EPSILON, grad, torch.ones_like(grad))
    step = torch.where(grad > _FLT_EPSILON, -rho / safe_grad, torch.zeros_like(rho))
    step = torch.where(rho > lg, torch.full_like(rho, -l_t), step)
    step = torch.where(rho < -lg, torch.full_like(rho, l_t), step)
    directions: list[Any] = [i1wx, i1wy, gamma]
    keep = alive[:, None, None]
    new_u = []
    squares = None
    for c, comp in enumerate(u):
        # primal step: u = v + theta * div(p), backward differences, p = 0 outside
        px, py = p[2 * c], p[2 * c + 1]
        div = (px - F.pad(px[:, :, :-1], (1, 0))) + (py - F.pad(py[:, :-1, :], (0, 0, 1, 0)))
        value = torch.where(keep, comp + step * directions[c] + theta * div, comp)
        change = value - comp
        squares = change * change if squares is None else squares + change * change
        new_u.append(value)
    assert squares is not None
    # reduce rows first: the row sums fuse into the loop that computes u
    error = squares.sum(dim=2).sum(dim=1)
    new_p = []
    for c, value in enumerate(new_u):
        # dual step: forward differences, zero on the last column / row
        px, py = p[2 * c], p[2 * c + 1]
        ux = F.pad(value[:, :, 1:] - value[:, :, :-1], (0, 1))
        uy = F.pad(value[:, 1:, :] - value[:, :-1, :], (0, 0, 0, 1))
        inv = 1.0 / (1.0 + taut * torch.sqrt(ux * ux + uy * uy))
        new_p.append(torch.where(keep, (px + taut * ux) * inv, px))
        new_p.append(torch.where(keep, (py + taut * uy) * inv, py))
    return new_u, new_p, error


def _iterate(u: list[torch.Tensor], p: list[torch.Tensor], data: list[torch.Tensor],
             alive: torch.Tensor, tolerance: float, l_t: float, theta: float, taut: float,
             gamma: float, steps: int
             ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """``steps`` iterations; a pair stops (is frozen) once its change <= tolerance.

    Returns the new ``u``, ``p`` and ``alive``.
    """
    for _ in range(steps):
        u, p, error = _primal_dual_step(u, p, data, alive, l_t, theta, taut, gamma)
        alive = alive & (error > tolerance)
    return u, p, alive


# --------------------------------------------------------------------------
# median filter


def _oddeven_merge_network(n: int) -> list[tuple[int, int]]:
    """Comparators (low, high) of Batcher's odd-even merge sort for n = 2**k wires."""
    pairs: list[tuple[int, int]] = []
    block = 1
    while block < n:
        dist = block
        while dist >= 1:
            for j in range(dist % block, n - dist, 2 * dist):
                for i in range(min(dist, n - j - dist)):
                    a, b = i + j, i + j + dist
                    if a // (2 * block) == b // (2 * block):
                        pairs.append((a, b))
            dist //= 2
        block *= 2
    return pairs


@functools.lru_cache(maxsize=8)
def _median_network(count: int) -> tuple[tuple[tuple[int, int, bool, bool], ...], int, int, int]:
    """A min/max network that selects the median of ``count`` (odd) values.

    Batcher's network on the next power of two ``size``, the extra wires held
    at -inf (the first ``n_low``) and +inf (the last), in numbers that keep the
    median in place, with every comparator that cannot influence the median
    removed. Returns the comparators as (a, b, need_min, need_max), the wire
    of the median, ``size`` and ``n_low``.
    """
    size = 1
    while size < count:
        size *= 2
    n_low = (size - count) // 2
    target = n_low + count // 2
    needed = {target}
    kept: list[tuple[int, int, bool, bool]] = []
    for a, b in reversed(_oddeven_merge_network(size)):
        need_min, need_max = a in needed, b in needed
        if need_min or need_max:
            kept.append((a, b, need_min, need_max))
            needed.update((a, b))
    kept.reverse()
    return tuple(kept), target, size, n_low


def _median_select(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Elementwise median of an odd number of equally shaped tensors."""
    count = len(values)
    network, target, size, n_low = _median_network(count)
    low, high = "-inf", "+inf"
    wires: list[Any] = [low] * n_low + list(values) + [high] * (size - count - n_low)
    for a, b, need_min, need_max in network:
        x, y = wires[a], wires[b]
        # comparisons with a constant need no arithmetic
        if x is low or y is high:
            continue
        if x is high or y is low:
            wires[a], wires[b] = y, x
            continue
        wires[a] = torch.minimum(x, y) if need_min else None
        wires[b] = torch.maximum(x, y) if need_max else None
    return wires[target]


def _pad_replicate(u: list[torch.Tensor], radius: int) -> list[torch.Tensor]:
    return [F.pad(comp[:, None], (radius,) * 4, mode="replicate")[:, 0] for comp in u]


def _median_windows(padded: list[torch.Tensor], ksize: int) -> list[torch.Tensor]:
    """ksize x ksize median of each border-padded (n, h + k - 1, w + k - 1) tensor."""
    out = []
    for comp in padded:
        h = comp.shape[1] - ksize + 1
        w = comp.shape[2] - ksize + 1
        windows = [comp[:, dy:dy + h, dx:dx + w] for dy in range(ksize) for dx in range(ksize)]
        out.append(_median_select(windows))
    return out


def _median_filter_torch(u: list[torch.Tensor], ksize: int) -> list[torch.Tensor]:
    """ksize x ksize median of each (n, h, w) tensor, replicated border."""
    return _median_windows(_pad_replicate(u, ksize // 2), ksize)


def _median_filter_cv2(u: list[torch.Tensor], ksize: int) -> list[torch.Tensor]:
    """Same as :func:`_median_filter_torch` with OpenCV's medianBlur (CPU, float32)."""
    import cv2  # start-up: importing mexkit.motion does not load OpenCV

    out = []
    for comp in u:
        array = comp.contiguous().numpy()
        result = np.empty_like(array)
        for i in range(array.shape[0]):
            cv2.medianBlur(array[i], ksize, dst=result[i])
        out.append(torch.from_numpy(result))
    return out


def _median_filter_scipy(u: list[torch.Tensor], ksize: int) -> list[torch.Tensor]:
    """Same as :func:`_median_filter_torch` with scipy (CPU, any float dtype)."""
    from scipy import ndimage  # start-up: scipy.ndimage is slow to import; float64 only

    return [torch.from_numpy(ndimage.median_filter(comp.numpy(), size=(1, ksize, ksize),
                                                   mode="nearest")) for comp in u]


# --------------------------------------------------------------------------
# compiled kernels with an eager fallback


def _twice(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.cat([t, t]) for t in tensors]


class _Kernels:
    """The compute kernels, compiled with torch.compile when possible.

    Compiled graphs are shared by all calls in the process. Shapes are
    dynamic; a batch of one pair is padded with a frozen copy (size-one
    dimensions would be compiled again).
    """

    _lock = threading.Lock()
    _compiled: dict[str, Callable[..., Any]] = {}
    _broken: set[str] = set()  # device types on which compiling failed

    def __init__(self, device: torch.device, dtype: torch.dtype, use_compile: bool):
        self.device = device
        self.use_compile = use_compile
        # on CPU, OpenCV's SIMD median (float32 only) and scipy's median beat
        # the selection network, which is meant for the GPU
        self.cpu_median = None
        if device.type == "cpu":
            self.cpu_median = _median_filter_cv2 if dtype == torch.float32 else \
                _median_filter_scipy

    @classmethod
    def _get(cls, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        with cls._lock:
            compiled = cls._compiled.get(name)
            if compiled is None:
                compiled = torch.compile(fn, dynamic=True, options=_COMPILE_OPTIONS)
                cls._compiled[name] = compiled
        return compiled

    @property
    def compiling(self) -> bool:
        return self.use_compile and self.device.type not in _Kernels._broken

    def _run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self.compiling:
            try:
                with _TraceSettings():
                    return self._get(f"{name}:{self.device.type}", fn)(*args)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to compile
                with _Kernels._lock:
                    if self.device.type not in _Kernels._broken:
                        _Kernels._broken.add(self.device.type)
                        first = str(exc).splitlines()[0] if str(exc) else ""
                        logger.warning(
                            "torch.compile failed on %s (%s: %s); TV-L1 runs uncompiled "
                            "there (slower). Pass compile=False to skip compiling.",
                            self.device.type, type(exc).__name__, first,
                        )
        return fn(*args)

    def iterate(self, u: list[torch.Tensor], p: list[torch.Tensor], data: list[torch.Tensor],
                alive: torch.Tensor, tolerance: float, l_t: float, theta: float, taut: float,
                gamma: float, steps: int
                ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        fn = functools.partial(_iterate, steps=steps)
        if alive.shape[0] == 1 and self.compiling:
            alive2 = torch.cat([alive, torch.zeros_like(alive)])
            u, p, alive = self._run(f"iterate{steps}", fn, _twice(u), _twice(p), _twice(data),
                                    alive2, tolerance, l_t, theta, taut, gamma)
            return [t[:1] for t in u], [t[:1] for t in p], alive[:1]
        return self._run(f"iterate{steps}", fn, u, p, data, alive, tolerance, l_t, theta, taut,
                         gamma)

    def warp_data(self, reference: torch.Tensor, i1: torch.Tensor, i1x: torch.Tensor,
                  i1y: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor, border: int
                  ) -> list[torch.Tensor]:
        args = [reference, i1, i1x, i1y, u1, u2]
        if reference.shape[0] == 1 and self.compiling:
            data = self._run("warp", _warp_data, *_twice(args), border)
            return [t[:1] for t in data]
        return self._run("warp", _warp_data, *args, border)

    def median(self, u: list[torch.Tensor], ksize: int) -> list[torch.Tensor]:
        if self.cpu_median is not None:
            return self.cpu_median(u, ksize)
        # the border padding is materialised first, so that the compiled
        # selection network reads plain shifted windows
        padded = _pad_replicate(u, ksize // 2)
        if u[0].shape[0] == 1 and self.compiling:
            return [t[:1] for t in self._run(f"median{ksize}", _median_windows,
                                             _twice(padded), ksize)]
        return self._run(f"median{ksize}", _median_windows, padded, ksize)


class _TraceSettings:
    """Dynamo settings for mexkit's kernels, in force during their calls only.

    One shape symbol per dimension (no "duck shaping": equal sizes, say a
    batch of 2 and the 2 flow components, must not be tied together), and
    room for the few graph variants the kernels need (CPU and CUDA, float32
    and float64, with and without the illumination term share one code
    object each). The flags are only read while tracing; setting them directly
    costs far less per call than ``config.patch``.
    """

    def __enter__(self) -> None:
        import torch._dynamo.config as dynamo_config  # start-up: torch._dynamo is slow to import
        from torch.fx.experimental import _config as fx_config  # start-up: as torch._dynamo

        self._saved = (fx_config.use_duck_shape, dynamo_config.recompile_limit)
        fx_config.use_duck_shape = False
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)

    def __exit__(self, *exc: Any) -> None:
        import torch._dynamo.config as dynamo_config  # start-up: torch._dynamo is slow to import
        from torch.fx.experimental import _config as fx_config  # start-up: as torch._dynamo

        fx_config.use_duck_shape, dynamo_config.recompile_limit = self._saved


# --------------------------------------------------------------------------
# solver


def _select(tensors: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor]:
    return [t.index_select(0, index) for t in tensors]


def _solve_level(reference: torch.Tensor, moving: torch.Tensor, flow: list[torch.Tensor],
                 prm: Any, kernels: _Kernels, steps_per_call: int) -> list[torch.Tensor]:
    """Refine the flow components (n, h, w) at one pyramid level.

    The tensors of ``flow`` belong to the solver and may be modified in place.
    """
    n, h, w = reference.shape
    device = reference.device
    p = [torch.zeros_like(reference) for _ in range(2 * len(flow))]
    i1x, i1y = _centered_gradient(moving)
    tolerance = prm.epsilon * prm.epsilon * h * w
    l_t = prm.lambda_ * prm.theta
    taut = prm.tau / prm.theta
    border = {"replicate": 0, "zero": 1, "masked": 2}[prm.border]
    everyone = torch.arange(n, device=device)

    for _warp in range(prm.warps):
        data = kernels.warp_data(reference, moving, i1x, i1y, flow[0], flow[1], border)
        # working set: the pairs still iterating in this warping, in order
        idx, u_w, p_w, d_w = everyone, flow, p, data
        for _outer in range(prm.outer_iterations):
            if idx.numel() == 0:
                break
            if prm.median_filtering > 1:
                u_w = kernels.median(u_w, prm.median_filtering)
            alive = torch.ones(idx.numel(), dtype=torch.bool, device=device)
            n_work = idx.numel()
            done = 0
            while done < prm.inner_iterations:
                steps = min(steps_per_call, prm.inner_iterations - done)
                u_w, p_w, alive = kernels.iterate(u_w, p_w, d_w, alive, tolerance, l_t,
                                                  prm.theta, taut, prm.gamma, steps)
                done += steps
                if done >= prm.inner_iterations:
                    break
                n_alive = int(alive.sum())
                if n_alive == 0:
                    break
                if n_work - n_alive >= max(1, n_work // 4):
                    # drop the converged pairs (they are frozen) from the working set
                    _write_back(flow, p, idx, u_w, p_w, (~alive).nonzero()[:, 0])
                    keep = alive.nonzero()[:, 0]
                    idx, alive = idx[keep], alive[keep]
                    u_w, p_w, d_w = _select(u_w, keep), _select(p_w, keep), _select(d_w, keep)
                    n_work = n_alive
            # end of a pass: the converged pairs leave, the others start another pass
            keep = alive.nonzero()[:, 0]
            if keep.numel() < idx.numel():
                _write_back(flow, p, idx, u_w, p_w, (~alive).nonzero()[:, 0])
                idx = idx[keep]
                u_w, p_w, d_w = _select(u_w, keep), _select(p_w, keep), _select(d_w, keep)
        if idx.numel() == n:
            flow, p = u_w, p_w  # the working set is every pair, in order
        elif idx.numel():
            _write_back(flow, p, idx, u_w, p_w, None)
    return flow


def _write_back(flow: list[torch.Tensor], p: list[torch.Tensor], idx: torch.Tensor,
                u_w: list[torch.Tensor], p_w: list[torch.Tensor],
                sel: torch.Tensor | None) -> None:
    """Copy working-set pairs (all, or the positions ``sel``) into the full state."""
    if sel is not None:
        if sel.numel() == 0:
            return
        idx = idx[sel]
    for full, work in zip(flow + p, u_w + p_w, strict=True):
        full.index_copy_(0, idx, work if sel is None else work.index_select(0, sel))


def _solve_batch(reference: torch.Tensor, moving: torch.Tensor, prm: Any,
                 kernels: _Kernels, steps_per_call: int) -> torch.Tensor:
    """Coarse-to-fine TV-L1 for a batch of frames (n, H, W) scaled to [0, 255]."""
    n = reference.shape[0]
    channels = 3 if prm.gamma > 0 else 2

    def start(size: tuple[int, int]) -> list[torch.Tensor]:
        return [torch.zeros((n,) + size, dtype=reference.dtype, device=reference.device)
                for _ in range(channels)]

    def solve_level(ref: torch.Tensor, mov: torch.Tensor, flow: list[torch.Tensor]
                    ) -> list[torch.Tensor]:
        return _solve_level(ref.contiguous(), mov.contiguous(), flow, prm, kernels,
                            steps_per_call)

    def upsample(flow: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        # the illumination variable is resized but not rescaled (as OpenCV)
        return [_resize(comp, size, None) / (prm.scale_step if c < 2 else 1.0)
                for c, comp in enumerate(flow)]

    flow = coarse_to_fine(reference, moving, nscales=prm.nscales, scale_step=prm.scale_step,
                          resize=_resize, start=start, solve_level=solve_level,
                          upsample=upsample)
    return torch.stack(flow[:2], dim=1)


def _default_batch_size(device: torch.device, height: int, width: int) -> int:
    """Pairs per batch: about 2**18 pixels on CPU, 2**24 on CUDA.

    On CPU the working set of a batch (about 60 bytes per pixel) then stays in
    the caches, and the batch is a multiple of the thread count (the compiled
    loops share out whole pairs); on CUDA the batch fills the GPU.
    """
    pixels = max(1, height * width)
    if device.type != "cpu":
        return max(1, (1 << 24) // pixels)
    threads = max(1, torch.get_num_threads())
    batch = max(1, (1 << 18) // pixels)
    return max(threads, int(round(batch / threads)) * threads)


def _remap_bilinear(images: Sequence[torch.Tensor], map_x: torch.Tensor, map_y: torch.Tensor,
                    zero_border: bool) -> list[torch.Tensor]:
    """Bilinear counterpart of :func:`_remap_bicubic`."""
    n, h, w = map_x.shape
    map_x = map_x.clamp(-2.0, w + 1.0)
    map_y = map_y.clamp(-2.0, h + 1.0)
    x0f = torch.floor(map_x)
    y0f = torch.floor(map_y)
    tx, ty = map_x - x0f, map_y - y0f
    x0, y0 = x0f.to(torch.int64), y0f.to(torch.int64)
    base = (torch.arange(n, dtype=torch.int64) * (h * w))[:, None, None]
    taps = []
    for dy, wy in ((0, 1.0 - ty), (1, ty)):
        yi = y0 + dy
        if zero_border:
            wy = torch.where((yi >= 0) & (yi < h), wy, torch.zeros_like(wy))
        for dx, wx in ((0, 1.0 - tx), (1, tx)):
            xi = x0 + dx
            if zero_border:
                wx = torch.where((xi >= 0) & (xi < w), wx, torch.zeros_like(wx))
            taps.append((base + yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1), wx * wy))
    out = []
    for image in images:
        flat = image.reshape(-1)
        acc = None
        for index, weight in taps:
            term = flat[index] * weight
            acc = term if acc is None else acc + term
        out.append(acc)
    return out


# --------------------------------------------------------------------------
# public entry points (used by mexkit.motion.tvl1)


def median_select(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Elementwise median of an odd number of equally shaped tensors.

    The pruned selection network that the CUDA engine compiles (Batcher's
    odd-even merge sort).
    """
    return _median_select(values)


def median_filter(u: list[torch.Tensor], ksize: int) -> list[torch.Tensor]:
    """``ksize`` x ``ksize`` median of each (n, h, w) tensor, replicated border."""
    return _median_filter_torch(u, ksize)


def remap(images: Sequence[torch.Tensor], map_x: torch.Tensor, map_y: torch.Tensor, *,
          interpolation: str = "bicubic", zero_border: bool = False) -> list[torch.Tensor]:
    """Sample each (n, h, w) image at (map_x, map_y), bicubic (Keys) or bilinear.

    Taps outside the image read the nearest border pixel, or zero when
    ``zero_border`` is true.
    """
    fn = _remap_bicubic if interpolation == "bicubic" else _remap_bilinear
    return fn(images, map_x, map_y, zero_border)


def solve(reference: np.ndarray, moving: np.ndarray, prm: Any, *, device: torch.device,
          dtype: torch.dtype = torch.float32, batch_size: int | None = None,
          compile: bool = True) -> np.ndarray:
    """Batched TV-L1 of (P, H, W) frames in [0, 1]; returns (P, 2, H, W) float32.

    ``prm`` holds the checked parameters (:class:`mexkit.motion.tvl1.TVL1Params`).
    Batches hold about 2**18 pixels on CPU and 2**24 on CUDA unless
    ``batch_size`` is given.
    """
    ref, mov = torch.from_numpy(reference), torch.from_numpy(moving)
    n_pairs, height, width = ref.shape
    if batch_size is None:
        batch_size = _default_batch_size(device, height, width)
    batch_size = min(batch_size, max(1, _MAX_INDEX // (height * width)))
    kernels = _Kernels(device, dtype, bool(compile))
    # iterations per compiled call: fewer calls cost less Python overhead, more
    # let converged pairs run (frozen) a little longer before they are dropped
    steps_per_call = 2 if device.type == "cpu" else 5
    out = np.empty((n_pairs, 2, height, width), dtype=np.float32)
    scale = 255.0
    # batches of (nearly) equal size, at most batch_size pairs each
    n_batches = -(-n_pairs // batch_size)
    bounds = [(i * n_pairs) // n_batches for i in range(n_batches + 1)] if n_pairs else [0]
    with torch.no_grad():
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            r = ref[start:stop].to(device=device, dtype=dtype) * scale
            m = mov[start:stop].to(device=device, dtype=dtype) * scale
            flow = _solve_batch(r, m, prm, kernels, steps_per_call)
            out[start:stop] = flow.to(device="cpu", dtype=torch.float32).numpy()
    return out
