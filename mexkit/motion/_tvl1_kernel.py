"""Fused CPU kernel of mexkit's TV-L1: one pair, whole, in one native call (numba source).

This module is the *source* of the native TV-L1 engine. It is compiled by
numba (Python to LLVM IR) and LLVM (IR to machine code for this CPU) once per
machine, ahead of use, by :mod:`mexkit.motion._tvl1_native`, which saves the
machine code and later loads it with llvmlite alone: a ``mexkit flow`` process
never imports numba (importing numba and readying its typing registries costs
about half a second of CPU per process, more than a whole run of 64 pairs).

The kernel runs exactly the scheme of the numpy engine of
:mod:`mexkit.motion.tvl1` (OpenCV DualTVL1's: pyramid of bilinear resizes,
``warps`` warpings per level, passes of primal-dual iterations each after a
median filter, the same stopping rule per pair), with the same float32
arithmetic in the same order up to contraction into fused multiply-adds and
the order of the sums; what changes is how the work is laid out:

* **one pass over the field per iteration.** The primal step of row ``y``
  (thresholding and the update of ``u``, which reads the dual variable of rows
  ``y`` and ``y - 1``) is followed by the dual step of row ``y - 1`` (which
  reads the new ``u`` of rows ``y - 1`` and ``y``): every value is read and
  written once per iteration while it is in the L1 cache, instead of once per
  numpy call (about 25 calls per iteration);
* **the warping** resamples the second frame and its gradient bicubically
  (Keys, a = -0.75, taps clamped into the frame) at the exact positions
  ``x + u(x)``, as the torch engine does (OpenCV's ``remap``, which the numpy
  engine calls, rounds positions to 1/32 pixel), and forms the linearised
  data term in the same loop;
* **the median filter** (3 x 3 or 5 x 5, replicated border) sorts the columns
  of each window once for the whole row and then runs a pruned min/max
  selection network (Batcher's odd-even merges of the sorted columns, with
  every comparator removed that cannot change the median given those sorted
  columns, checked exhaustively on 0-1 inputs), vectorised across the row;
* **no allocation:** the caller passes one float32 workspace per thread
  (:func:`workspace_size`), reused by every level and every pair.

Each pair runs single-threaded (the parallelism is across pairs, as for the
numpy engine), and the native code holds no interpreter lock.

References
----------
.. [1] C. Zach, T. Pock, H. Bischof, "A duality based approach for realtime
   TV-L1 optical flow", DAGM 2007, LNCS 4713, pp. 214-223.
.. [2] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
   flow estimation", Image Processing On Line 3 (2013), pp. 137-150.
.. [3] K. E. Batcher, "Sorting networks and their applications", AFIPS Spring
   Joint Computer Conference 1968, pp. 307-314.
.. [4] R. Keys, "Cubic convolution interpolation for digital image
   processing", IEEE Trans. ASSP 29 (1981), pp. 1153-1160.
"""
from __future__ import annotations

import itertools

import numpy as np
from numba import carray, cfunc, njit, types

__all__ = ["ENTRY_SIGNATURE", "INT_FIELDS", "REAL_FIELDS", "entry", "median_network",
           "solve_pair", "workspace_size"]

# contraction into FMAs, sums in any order, reciprocals, approximate square roots and
# reciprocals refined to float precision (see _tvl1_native.build), no infinities (the
# kernel makes none: every divisor is at least FLT_EPSILON or 1): float rounding only
_FASTMATH = {"nsz", "contract", "reassoc", "arcp", "afn", "ninf"}
_JIT = {"nogil": True, "fastmath": _FASTMATH, "error_model": "numpy", "boundscheck": False}

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_HALF = np.float32(0.5)
_F255 = np.float32(255.0)
_FLT_EPSILON = np.float32(np.finfo(np.float32).eps)  # OpenCV's threshold on |grad I|^2
_A = np.float32(-0.75)  # Keys kernel parameter (OpenCV, torch)
_A2 = np.float32(-0.75 + 2.0)
_A3 = np.float32(-0.75 + 3.0)
_A5 = np.float32(-0.75 * 5.0)
_A8 = np.float32(-0.75 * 8.0)
_A4 = np.float32(-0.75 * 4.0)

#: Layout of the integer parameter array of :func:`solve_pair` (then ``h, w`` per level).
INT_FIELDS = ("height", "width", "warps", "outer", "inner", "median", "border", "levels")
#: Layout of the float64 parameter array of :func:`solve_pair`.
REAL_FIELDS = ("tau", "lambda_", "theta", "epsilon", "scale_step")
_BORDER_CODES = {"replicate": 0, "zero": 1, "masked": 2}


# --------------------------------------------------------------------------
# median selection networks (generated here, compiled into the kernel)


def _oddeven_merge(lo: int, n: int, r: int, out: list[tuple[int, int]]) -> None:
    """Batcher's odd-even merge of positions lo..lo+n-1 (two sorted halves), step r."""
    m = 2 * r
    if m < n:
        _oddeven_merge(lo, n, m, out)
        _oddeven_merge(lo + r, n, m, out)
        out.extend((i, i + r) for i in range(lo + r, lo + n - r, m))
    else:
        out.append((lo, lo + r))


def median_network(k: int) -> tuple[list[tuple[int, int, bool, bool]], int]:
    """Min/max network selecting the median of a k x k window whose columns are sorted.

    The k*k values are numbered column by column (value ``c * k + r`` is rank
    ``r`` of column ``c``, each column sorted ascending). The network merges
    the sorted columns with Batcher's odd-even merges (lists padded with +inf
    to a power of two), then drops every comparator that never exchanges its
    inputs for any input with sorted columns (checked on all 0-1 inputs with
    sorted columns, which by the 0-1 principle covers all real inputs), turns
    those that always exchange into relabelings, and keeps only what the
    median depends on.

    Returns
    -------
    list of (a, b, need_min, need_max)
        Comparators on value slots: ``a`` receives the minimum, ``b`` the
        maximum; a side that the median does not need is not computed.
    int
        The slot holding the median at the end.
    """
    n = k * k
    # every 0-1 input with sorted columns: c_z zeros then ones in column c
    combos = list(itertools.product(range(k + 1), repeat=k))
    full = (1 << len(combos)) - 1
    masks = [0] * n
    for bit, zeros in enumerate(combos):
        for c in range(k):
            for r in range(zeros[c], k):
                masks[c * k + r] |= 1 << bit
    network: list[tuple[int, int]] = []

    def merge(a: list[int], b: list[int]) -> list[int]:
        size = 1
        while size < max(len(a), len(b)):
            size *= 2
        padded = []
        for part in (a, b):
            part = list(part)
            while len(part) < size:
                masks.append(full)  # a +inf slot
                part.append(len(masks) - 1)
            padded.extend(part)
        steps: list[tuple[int, int]] = []
        _oddeven_merge(0, 2 * size, 1, steps)
        network.extend((padded[i], padded[j]) for i, j in steps)
        return padded[:len(a) + len(b)]  # the +inf values end up last

    cols = [list(range(c * k, (c + 1) * k)) for c in range(k)]
    if k == 3:
        merged = merge(merge(cols[0], cols[1]), cols[2])
    else:  # 5 x 5: (c0 c1)(c2 c3), then with c4, then together (fewest comparators kept)
        merged = merge(merge(merge(cols[0], cols[1]), cols[4]), merge(cols[2], cols[3]))
    target = merged[n // 2]
    # forward: drop comparators that never exchange; one that always exchanges only
    # swaps which variable holds which slot
    holder = list(range(len(masks)))  # slot -> variable holding its value
    ops: list[tuple[int, int]] = []
    for a, b in network:
        x, y = masks[a], masks[b]
        low, high = x & y, x | y
        if low == x and high == y:
            continue
        if low == y and high == x:
            masks[a], masks[b] = y, x
            holder[a], holder[b] = holder[b], holder[a]
            continue
        masks[a], masks[b] = low, high
        ops.append((holder[a], holder[b]))
    target_var = holder[target]
    # backward: keep what the median depends on
    needed = {target_var}
    pruned: list[tuple[int, int, bool, bool]] = []
    for a, b in reversed(ops):
        need_min, need_max = a in needed, b in needed
        if need_min or need_max:
            pruned.append((a, b, need_min, need_max))
            needed.update((a, b))
    pruned.reverse()
    if any(v >= n for v in needed):  # an +inf slot reaches the median: impossible
        raise AssertionError("median network reads a padding value")
    return pruned, target_var


def _sort_network(k: int) -> list[tuple[int, int]]:
    """Comparators sorting k = 3 or 5 values ascending (optimal networks)."""
    if k == 3:
        return [(0, 1), (1, 2), (0, 1)]
    return [(0, 1), (3, 4), (2, 4), (2, 3), (0, 3), (0, 2), (1, 4), (1, 3), (1, 2)]


def _median_source(k: int) -> str:
    """Source of ``_median_row{k}``: the median of each k x k window along one row.

    ``cols`` holds the sorted columns, rank r of padded column j at
    ``cols[r * stride + j]`` (j = x + k // 2 for column x); the window of
    output ``x`` covers padded columns x .. x + k - 1.
    """
    ops, target = median_network(k)
    lines = [f"def _median_row{k}(cols, stride, out, w):"]
    lines += [f"    c{r} = cols[{r} * stride:{r + 1} * stride]" for r in range(k)]
    lines.append("    for x in range(w):")
    for c in range(k):
        for r in range(k):
            lines.append(f"        v{c * k + r} = c{r}[x + {c}]")
    for a, b, need_min, need_max in ops:
        va, vb = f"v{a}", f"v{b}"
        if need_min and need_max:
            lines.append(f"        {va}, {vb} = min({va}, {vb}), max({va}, {vb})")
        elif need_min:
            lines.append(f"        {va} = min({va}, {vb})")
        else:
            lines.append(f"        {vb} = max({va}, {vb})")
    lines.append(f"        out[x] = v{target}")
    return "\n".join(lines) + "\n"


def _sort_source(k: int) -> str:
    """Source of ``_sort_columns{k}``: sort rows ``rows`` of ``plane`` column by column.

    Rank r of column x goes to ``cols[r * stride + x + k // 2]`` (the offset
    is written as a constant, so that the compiler sees that the index is
    never negative and vectorises the loop).
    """
    lines = [f"def _sort_columns{k}(plane, w, rows, cols, stride):"]
    lines += [f"    s{r} = plane[rows[{r}] * w:rows[{r}] * w + w]" for r in range(k)]
    lines += [f"    d{r} = cols[{r} * stride:{r + 1} * stride]" for r in range(k)]
    lines.append("    for x in range(w):")
    lines += [f"        v{r} = s{r}[x]" for r in range(k)]
    for a, b in _sort_network(k):
        lines.append(f"        v{a}, v{b} = min(v{a}, v{b}), max(v{a}, v{b})")
    lines += [f"        d{r}[x + {k // 2}] = v{r}" for r in range(k)]
    return "\n".join(lines) + "\n"


def _compile_generated() -> dict:
    namespace: dict = {}
    for k in (3, 5):
        exec(_median_source(k) + _sort_source(k), namespace)  # noqa: S102 - generated here
    return {name: njit(**_JIT, inline="always")(fn) for name, fn in namespace.items()
            if name.startswith(("_median_row", "_sort_columns"))}


_generated = _compile_generated()
_median_row3 = _generated["_median_row3"]
_median_row5 = _generated["_median_row5"]
_sort_columns3 = _generated["_sort_columns3"]
_sort_columns5 = _generated["_sort_columns5"]


# --------------------------------------------------------------------------
# building blocks on (h, w) planes stored row-major in flat arrays (no reshape:
# that would call into numba's runtime library, which the loaded build lacks)


@njit(**_JIT)
def _resize(src, h, w, dst, nh, nw, sy, sx):
    """Bilinear resize of ``src`` (h, w) into ``dst`` (nh, nw), OpenCV's INTER_LINEAR.

    Output pixel (i, j) reads the input at ``((j + 0.5) sx - 0.5, (i + 0.5)
    sy - 0.5)``, its two taps per axis clamped into the input (replicated
    border); each row is interpolated first, then the two rows.
    """
    for i in range(nh):
        pos = (i + 0.5) * sy - 0.5
        top = np.floor(pos)
        fy = np.float32(pos - top)
        a = min(max(int(top), 0), h - 1)
        b = min(max(int(top) + 1, 0), h - 1)
        ra = src[a * w:a * w + w]
        rb = src[b * w:b * w + w]
        out = dst[i * nw:i * nw + nw]
        for j in range(nw):
            pos_x = (j + 0.5) * sx - 0.5
            left = np.floor(pos_x)
            fx = np.float32(pos_x - left)
            c = min(max(int(left), 0), w - 1)
            d = min(max(int(left) + 1, 0), w - 1)
            top_v = ra[c] * (_F1 - fx) + ra[d] * fx
            bottom_v = rb[c] * (_F1 - fx) + rb[d] * fx
            out[j] = top_v * (_F1 - fy) + bottom_v * fy


@njit(**_JIT)
def _stack(img, h, w, stack):
    """The second frame ``img`` and its gradient as three planes: ``stack`` (3, h, w).

    The gradient is half the central difference, replicated border (as
    OpenCV).
    """
    n = h * w
    gx = stack[n:2 * n]
    gy = stack[2 * n:3 * n]
    for i in range(n):
        stack[i] = img[i]
    for y in range(h):
        row = img[y * w:y * w + w]
        yu = max(y - 1, 0)
        yd = min(y + 1, h - 1)
        up = img[yu * w:yu * w + w]
        down = img[yd * w:yd * w + w]
        ox = gx[y * w:y * w + w]
        oy = gy[y * w:y * w + w]
        ox[0] = (row[min(1, w - 1)] - row[0]) * _HALF
        for x in range(1, w - 1):
            ox[x] = (row[x + 1] - row[x - 1]) * _HALF
        ox[w - 1] = (row[w - 1] - row[max(w - 2, 0)]) * _HALF
        for x in range(w):
            oy[x] = (down[x] - up[x]) * _HALF


@njit(**_JIT, inline="always")
def _cubic(t):
    """Keys cubic convolution weights of the taps at -1, 0, 1, 2 for offset t in [0, 1)."""
    s = _F1 - t
    w1 = (_A2 * t - _A3) * t * t + _F1
    w2 = (_A2 * s - _A3) * s * s + _F1
    tp = t + _F1
    w0 = ((_A * tp - _A5) * tp + _A8) * tp - _A4
    w3 = _F1 - w0 - w1 - w2
    return w0, w1, w2, w3


@njit(**_JIT, inline="always")
def _tap_weight(weight, index, size, zero_border):
    """The weight of a tap at ``index``, zero outside [0, size) with a zero border."""
    if zero_border and (index < 0 or index >= size):
        return _F0
    return weight


@njit(**_JIT, inline="always")
def _warp_pixel(ref, stack, u0, u1, h, w, border, x, y, wgx, wgy, rc, ninv):
    """:func:`_warp` at one pixel, any position (taps clamped into the frame)."""
    n = h * w
    i = y * w + x
    f0 = u0[i]
    f1 = u1[i]
    map_x = np.float32(x) + f0
    map_y = np.float32(y) + f1
    mx = min(max(map_x, np.float32(-3.0)), np.float32(w + 2))
    my = min(max(map_y, np.float32(-3.0)), np.float32(h + 2))
    x0f = np.floor(mx)
    y0f = np.floor(my)
    wx0, wx1, wx2, wx3 = _cubic(mx - x0f)
    wy0, wy1, wy2, wy3 = _cubic(my - y0f)
    xi = int(x0f)
    yi = int(y0f)
    zero_border = border == 1
    wx0 = _tap_weight(wx0, xi - 1, w, zero_border)
    wx1 = _tap_weight(wx1, xi, w, zero_border)
    wx2 = _tap_weight(wx2, xi + 1, w, zero_border)
    wx3 = _tap_weight(wx3, xi + 2, w, zero_border)
    wy0 = _tap_weight(wy0, yi - 1, h, zero_border)
    wy1 = _tap_weight(wy1, yi, h, zero_border)
    wy2 = _tap_weight(wy2, yi + 1, h, zero_border)
    wy3 = _tap_weight(wy3, yi + 2, h, zero_border)
    c0 = min(max(xi - 1, 0), w - 1)
    c1 = min(max(xi, 0), w - 1)
    c2 = min(max(xi + 1, 0), w - 1)
    c3 = min(max(xi + 2, 0), w - 1)
    v = _F0
    vx = _F0
    vy = _F0
    for k in range(4):
        r = w * min(max(yi - 1 + k, 0), h - 1)
        wy = wy0 if k == 0 else (wy1 if k == 1 else (wy2 if k == 2 else wy3))
        v += (stack[r + c0] * wx0 + stack[r + c1] * wx1 + stack[r + c2] * wx2
              + stack[r + c3] * wx3) * wy
        r += n
        vx += (stack[r + c0] * wx0 + stack[r + c1] * wx1 + stack[r + c2] * wx2
               + stack[r + c3] * wx3) * wy
        r += n
        vy += (stack[r + c0] * wx0 + stack[r + c1] * wx1 + stack[r + c2] * wx2
               + stack[r + c3] * wx3) * wy
    if border == 2 and (map_x < _F0 or map_x > np.float32(w - 1) or map_y < _F0
                        or map_y > np.float32(h - 1)):
        vx = _F0
        vy = _F0
    wgx[i] = vx
    wgy[i] = vy
    rc[i] = v - vx * f0 - vy * f1 - ref[i]
    ninv[i] = -_F1 / max(vx * vx + vy * vy, _FLT_EPSILON)


@njit(**_JIT, inline="always")
def _warp_run(ref, stack, u0, u1, h, w, y, start, stop, dx, dy, wgx, wgy, rc, ninv):
    """:func:`_warp` on pixels ``start:stop`` of row ``y``, whose taps are all inside.

    There ``floor(x + u0) = x + dx`` and ``floor(y + u1) = y + dy`` for every
    pixel, so tap (k, j) of pixel x reads column ``x + dx - 1 + j`` of row
    ``y + dy - 1 + k``: each of the 48 taps is a contiguous run of memory
    along the row, read with vector loads.
    """
    n = h * w
    count = stop - start
    at = y * w + start
    f0s = u0[at:at + count]
    f1s = u1[at:at + count]
    refs = ref[at:at + count]
    og = wgx[at:at + count]
    oh = wgy[at:at + count]
    orc = rc[at:at + count]
    oni = ninv[at:at + count]
    # the tap rows of the three planes, shifted so that index t + j reads column
    # start + t + dx - 1 + j (never negative: the compiler sees it)
    c = start + dx - 1
    r0 = (y + dy - 1) * w + c
    r1 = r0 + w
    r2 = r1 + w
    r3 = r2 + w
    i0 = stack[r0:r0 + count + 3]
    i1 = stack[r1:r1 + count + 3]
    i2 = stack[r2:r2 + count + 3]
    i3 = stack[r3:r3 + count + 3]
    x0 = stack[n + r0:n + r0 + count + 3]
    x1 = stack[n + r1:n + r1 + count + 3]
    x2 = stack[n + r2:n + r2 + count + 3]
    x3 = stack[n + r3:n + r3 + count + 3]
    y0 = stack[2 * n + r0:2 * n + r0 + count + 3]
    y1 = stack[2 * n + r1:2 * n + r1 + count + 3]
    y2 = stack[2 * n + r2:2 * n + r2 + count + 3]
    y3 = stack[2 * n + r3:2 * n + r3 + count + 3]
    fdx = np.float32(dx)
    fy = np.float32(y)
    fy0 = np.float32(y + dy)
    for t in range(count):
        f0 = f0s[t]
        f1 = f1s[t]
        # the offsets of x + u(x) from its tap x + dx, y + dy, in [0, 1) (as in
        # _warp_pixel: no clamping is needed inside the frame)
        xf = np.float32(start + t)
        wx0, wx1, wx2, wx3 = _cubic((xf + f0) - (xf + fdx))
        wy0, wy1, wy2, wy3 = _cubic((fy + f1) - fy0)
        v = ((i0[t] * wx0 + i0[t + 1] * wx1 + i0[t + 2] * wx2 + i0[t + 3] * wx3) * wy0
             + (i1[t] * wx0 + i1[t + 1] * wx1 + i1[t + 2] * wx2 + i1[t + 3] * wx3) * wy1
             + (i2[t] * wx0 + i2[t + 1] * wx1 + i2[t + 2] * wx2 + i2[t + 3] * wx3) * wy2
             + (i3[t] * wx0 + i3[t + 1] * wx1 + i3[t + 2] * wx2 + i3[t + 3] * wx3) * wy3)
        vx = ((x0[t] * wx0 + x0[t + 1] * wx1 + x0[t + 2] * wx2 + x0[t + 3] * wx3) * wy0
              + (x1[t] * wx0 + x1[t + 1] * wx1 + x1[t + 2] * wx2 + x1[t + 3] * wx3) * wy1
              + (x2[t] * wx0 + x2[t + 1] * wx1 + x2[t + 2] * wx2 + x2[t + 3] * wx3) * wy2
              + (x3[t] * wx0 + x3[t + 1] * wx1 + x3[t + 2] * wx2 + x3[t + 3] * wx3) * wy3)
        vy = ((y0[t] * wx0 + y0[t + 1] * wx1 + y0[t + 2] * wx2 + y0[t + 3] * wx3) * wy0
              + (y1[t] * wx0 + y1[t + 1] * wx1 + y1[t + 2] * wx2 + y1[t + 3] * wx3) * wy1
              + (y2[t] * wx0 + y2[t + 1] * wx1 + y2[t + 2] * wx2 + y2[t + 3] * wx3) * wy2
              + (y3[t] * wx0 + y3[t + 1] * wx1 + y3[t + 2] * wx2 + y3[t + 3] * wx3) * wy3)
        og[t] = vx
        oh[t] = vy
        orc[t] = v - vx * f0 - vy * f1 - refs[t]
        oni[t] = -_F1 / max(vx * vx + vy * vy, _FLT_EPSILON)


@njit(**_JIT)
def _warp(ref, stack, u0, u1, h, w, border, wgx, wgy, rc, ninv, shift):
    """Linearise the data term around the flow (u0, u1): one warping.

    Resamples the second frame and its gradient (``stack``, see
    :func:`_stack`) bicubically at ``x + u(x)`` (positions clamped to [-3,
    size + 2], which only ever read the border; taps outside the frame read
    the nearest border pixel, or count zero when ``border`` is 1, "zero"),
    and writes the warped gradient ``wgx``, ``wgy`` (zero where ``border`` is
    2, "masked", and ``x + u(x)`` leaves the frame), the constant part of the
    residual ``rc = I1(x + u) - grad I1 . u - I0`` and ``ninv = -1 /
    max(|grad I1|^2, FLT_EPSILON)``.

    Along each row, pixels whose position ``x + u(x)`` has the same integer
    offset from ``x`` (runs, as the flow is smooth) and whose taps are all
    inside the frame are resampled together (:func:`_warp_run`); the others
    one by one (:func:`_warp_pixel`). ``shift`` is scratch (2 w).
    """
    lo = np.float32(-3.0)
    sx = shift[:w]
    sy = shift[w:2 * w]
    for y in range(h):
        ur0 = u0[y * w:y * w + w]
        ur1 = u1[y * w:y * w + w]
        fy = np.float32(y)
        for x in range(w):
            mx = min(max(np.float32(x) + ur0[x], lo), np.float32(w + 2))
            my = min(max(fy + ur1[x], lo), np.float32(h + 2))
            sx[x] = np.floor(mx) - np.float32(x)
            sy[x] = np.floor(my) - fy
        x = 0
        while x < w:
            dx = sx[x]
            dy = sy[x]
            end = x + 1
            while end < w and sx[end] == dx and sy[end] == dy:
                end += 1
            ix = int(dx)
            iy = int(dy)
            # the pixels of the run whose 4 x 4 taps are all inside the frame
            first = x
            last = x
            if y + iy - 1 >= 0 and y + iy + 2 <= h - 1:
                first = min(max(x, 1 - ix), end)
                last = max(min(end, w - 2 - ix), first)
            for p in range(x, first):
                _warp_pixel(ref, stack, u0, u1, h, w, border, p, y, wgx, wgy, rc, ninv)
            if last > first:
                _warp_run(ref, stack, u0, u1, h, w, y, first, last, ix, iy, wgx, wgy, rc,
                          ninv)
            for p in range(last, end):
                _warp_pixel(ref, stack, u0, u1, h, w, border, p, y, wgx, wgy, rc, ninv)
            x = end


@njit(**_JIT)
def _median(plane, h, w, k, cols, out):
    """In-place k x k median (k = 3 or 5) of ``plane`` (h, w), replicated border.

    ``cols`` holds 5 rows of ``w + 4`` values, ``out`` (h, w) a scratch plane.
    """
    pad = k // 2
    stride = w + 4
    for y in range(h):
        if k == 5:
            rows = (max(y - 2, 0), max(y - 1, 0), y, min(y + 1, h - 1), min(y + 2, h - 1))
            _sort_columns5(plane, w, rows, cols, stride)
        else:
            rows = (max(y - 1, 0), y, min(y + 1, h - 1), y, y)
            _sort_columns3(plane, w, rows, cols, stride)
        for r in range(k):
            at = r * stride
            for p in range(pad):
                cols[at + p] = cols[at + pad]
                cols[at + w + pad + p] = cols[at + w + pad - 1]
        if k == 5:
            _median_row5(cols, stride, out[y * w:y * w + w], w)
        else:
            _median_row3(cols, stride, out[y * w:y * w + w], w)
    for i in range(h * w):
        plane[i] = out[i]


@njit(**_JIT, inline="always")
def _primal_row(a0, a1, bx0, by0, bx1, by1, py0, py1, g0, g1, r, ni, lo, hi):
    """Thresholding and primal step of one row; returns the row's sum of change^2.

    ``a`` is the flow, ``bx``, ``by`` the dual variable of this row, ``py``
    the y part of the dual variable of the row above (zeros for the first
    row), ``g0``, ``g1``, ``r``, ``ni`` the linearised data term.
    """
    w = a0.shape[0]
    rho = (g0[0] * a0[0] + g1[0] * a1[0] + r[0]) * ni[0]
    rho = min(max(rho, lo), hi)
    c0 = rho * g0[0] + bx0[0] + by0[0] - py0[0]
    c1 = rho * g1[0] + bx1[0] + by1[0] - py1[0]
    err = c0 * c0 + c1 * c1
    a0[0] += c0
    a1[0] += c1
    for x in range(1, w):
        rho = (g0[x] * a0[x] + g1[x] * a1[x] + r[x]) * ni[x]
        rho = min(max(rho, lo), hi)
        c0 = rho * g0[x] + bx0[x] + by0[x] - bx0[x - 1] - py0[x]
        c1 = rho * g1[x] + bx1[x] + by1[x] - bx1[x - 1] - py1[x]
        err += c0 * c0 + c1 * c1
        a0[x] += c0
        a1[x] += c1
    return err


@njit(**_JIT, inline="always")
def _dual_row(a0, a1, n0, n1, bx0, by0, bx1, by1, tau, taut):
    """Dual step of one row: ``n`` is the flow of the row below (itself for the last row)."""
    w = a0.shape[0]
    for x in range(w - 1):
        dx0 = a0[x + 1] - a0[x]
        dy0 = n0[x] - a0[x]
        dx1 = a1[x + 1] - a1[x]
        dy1 = n1[x] - a1[x]
        d0 = np.sqrt(dx0 * dx0 + dy0 * dy0) * taut + _F1
        d1 = np.sqrt(dx1 * dx1 + dy1 * dy1) * taut + _F1
        bx0[x] = (bx0[x] + dx0 * tau) / d0
        by0[x] = (by0[x] + dy0 * tau) / d0
        bx1[x] = (bx1[x] + dx1 * tau) / d1
        by1[x] = (by1[x] + dy1 * tau) / d1
    last = w - 1  # no x difference on the last column
    dy0 = n0[last] - a0[last]
    dy1 = n1[last] - a1[last]
    d0 = np.sqrt(dy0 * dy0) * taut + _F1
    d1 = np.sqrt(dy1 * dy1) * taut + _F1
    bx0[last] = bx0[last] / d0
    by0[last] = (by0[last] + dy0 * tau) / d0
    bx1[last] = bx1[last] / d1
    by1[last] = (by1[last] + dy1 * tau) / d1


@njit(**_JIT)
def _iterate(u0, u1, qx0, qy0, qx1, qy1, gx, gy, rc, ninv, zero, h, w, l_t, tau, taut):
    """One primal-dual iteration in one pass over the field; returns sum of change^2.

    ``q = theta * p`` is the dual variable (x and y parts per flow
    component). The primal step of row y (thresholding, then ``u += step *
    grad I1 + div q`` with backward differences, ``q`` zero outside) is
    followed by the dual step of row y - 1 (``q = (q + tau grad u) / (1 +
    tau / theta |grad u|)``, forward differences, zero on the last column
    and row), so both read the values the numpy engine's whole-field steps
    read.
    """
    lo = -l_t
    total = 0.0
    z = zero[:w]
    total += _primal_row(u0[:w], u1[:w], qx0[:w], qy0[:w], qx1[:w], qy1[:w], z, z, gx[:w],
                         gy[:w], rc[:w], ninv[:w], lo, l_t)
    for y in range(1, h):
        a = y * w
        b = a + w
        p = a - w
        total += _primal_row(u0[a:b], u1[a:b], qx0[a:b], qy0[a:b], qx1[a:b], qy1[a:b],
                             qy0[p:a], qy1[p:a], gx[a:b], gy[a:b], rc[a:b], ninv[a:b], lo, l_t)
        _dual_row(u0[p:a], u1[p:a], u0[a:b], u1[a:b], qx0[p:a], qy0[p:a], qx1[p:a],
                  qy1[p:a], tau, taut)
    a = (h - 1) * w
    b = a + w
    _dual_row(u0[a:b], u1[a:b], u0[a:b], u1[a:b], qx0[a:b], qy0[a:b], qx1[a:b], qy1[a:b],
              tau, taut)
    return total


@njit(**_JIT)
def _solve_level(ref, img, u0, u1, q, data, stack, med, zero, cols, shift, h, w, warps,
                 outer, inner, median, border, l_t, tau, taut, tolerance):
    """Refine the flow (u0, u1) at one pyramid level, in place; returns iterations run.

    ``q`` (4 h w: x and y parts of each component), ``data`` (4 h w),
    ``stack`` (3 h w), ``med`` (h w) and ``shift`` (2 w) are scratch space.
    """
    n = h * w
    _stack(img, h, w, stack)
    for i in range(4 * n):
        q[i] = _F0
    qx0 = q[:n]
    qy0 = q[n:2 * n]
    qx1 = q[2 * n:3 * n]
    qy1 = q[3 * n:4 * n]
    gx = data[:n]
    gy = data[n:2 * n]
    rc = data[2 * n:3 * n]
    ninv = data[3 * n:4 * n]
    count = 0
    for _warp_i in range(warps):
        _warp(ref, stack, u0, u1, h, w, border, gx, gy, rc, ninv, shift)
        converged = False
        for _outer_i in range(outer):
            if median > 1:
                _median(u0, h, w, median, cols, med)
                _median(u1, h, w, median, cols, med)
            for _inner_i in range(inner):
                error = _iterate(u0, u1, qx0, qy0, qx1, qy1, gx, gy, rc, ninv, zero, h, w,
                                 l_t, tau, taut)
                count += 1
                if error <= tolerance:
                    converged = True
                    break
            if converged:
                break
    return count


def workspace_size(height: int, width: int, sizes: list[tuple[int, int]]) -> int:
    """float32 values of the workspace :func:`solve_pair` needs for these frames."""
    n = height * width
    pyramid = sum(h * w for h, w in sizes)
    # frames of every level (2), two flow buffers (2 x 2), q (4), data (4), frame and
    # gradient planes (3), median output (1); sorted columns (5 rows of width + 4), a
    # zero row, the warping's integer offsets (2 rows)
    return 2 * pyramid + 16 * n + 8 * (width + 4)


@njit(**_JIT)
def solve_pair(ref_in, mov_in, out, work, ints, reals):
    """Coarse-to-fine TV-L1 of one pair of (H, W) float32 frames in [0, 1].

    Parameters (arrays)
    -------------------
    ref_in, mov_in : float32 (H * W,)
        The two frames, row-major, intensities in [0, 1] (scaled by 255 here,
        as OpenCV and the numpy engine take float input).
    out : float32 (2 * H * W,)
        The flow (u then v, each row-major), written.
    work : float32
        At least :func:`workspace_size` values; any content.
    ints : int64
        ``INT_FIELDS`` then the ``(h, w)`` of every level, finest first.
    reals : float64
        ``REAL_FIELDS``.

    Returns
    -------
    int
        Primal-dual iterations run, all levels and warpings together.
    """
    height = ints[0]
    width = ints[1]
    warps = ints[2]
    outer = ints[3]
    inner = ints[4]
    median = ints[5]
    border = ints[6]
    levels = ints[7]
    tau64 = reals[0]
    theta64 = reals[2]
    epsilon = reals[3]
    scale_step = reals[4]
    tau = np.float32(tau64)
    taut = np.float32(tau64 / theta64)
    l_t = np.float32(reals[1] * theta64)
    step32 = np.float32(scale_step)
    shrink = 1.0 / scale_step
    n = height * width
    # the pyramid: each level's two frames, one level after the other, in [0, 255]
    for i in range(n):
        work[i] = ref_in[i] * _F255
        work[n + i] = mov_in[i] * _F255
    at = 0
    for s in range(1, levels):
        ph = ints[8 + 2 * (s - 1)]
        pw = ints[9 + 2 * (s - 1)]
        h = ints[8 + 2 * s]
        w = ints[9 + 2 * s]
        nxt = at + 2 * ph * pw
        m = ph * pw
        _resize(work[at:at + m], ph, pw, work[nxt:nxt + h * w], h, w, shrink, shrink)
        _resize(work[at + m:at + 2 * m], ph, pw, work[nxt + h * w:nxt + 2 * h * w], h, w,
                shrink, shrink)
        at = nxt
    base = at + 2 * ints[8 + 2 * (levels - 1)] * ints[9 + 2 * (levels - 1)]
    flow_a = base
    flow_b = base + 2 * n
    q_at = base + 4 * n
    data_at = q_at + 4 * n
    stack_at = data_at + 4 * n
    med_at = stack_at + 3 * n
    cols_at = med_at + n
    zero_at = cols_at + 5 * (width + 4)
    shift_at = zero_at + width + 4
    zero = work[zero_at:zero_at + width + 4]
    for x in range(width + 4):
        zero[x] = _F0
    cols = work[cols_at:cols_at + 5 * (width + 4)]
    shift = work[shift_at:shift_at + 2 * (width + 4)]
    total = 0
    cur = flow_a
    other = flow_b
    for s in range(levels - 1, -1, -1):
        h = ints[8 + 2 * s]
        w = ints[9 + 2 * s]
        m = h * w
        frames = 0
        for t in range(s):
            frames += 2 * ints[8 + 2 * t] * ints[9 + 2 * t]
        ref = work[frames:frames + m]
        img = work[frames + m:frames + 2 * m]
        u0 = work[cur:cur + m]
        u1 = work[cur + m:cur + 2 * m]
        if s == levels - 1:
            for i in range(m):
                u0[i] = _F0
                u1[i] = _F0
        total += _solve_level(ref, img, u0, u1, work[q_at:q_at + 4 * m],
                              work[data_at:data_at + 4 * m], work[stack_at:stack_at + 3 * m],
                              work[med_at:med_at + m], zero, cols, shift, h, w, warps, outer,
                              inner, median, border, l_t, tau, taut, epsilon * epsilon * h * w)
        if s > 0:
            nh = ints[8 + 2 * (s - 1)]
            nw = ints[9 + 2 * (s - 1)]
            nm = nh * nw
            v0 = work[other:other + nm]
            v1 = work[other + nm:other + 2 * nm]
            _resize(u0, h, w, v0, nh, nw, h / nh, w / nw)
            _resize(u1, h, w, v1, nh, nw, h / nh, w / nw)
            for i in range(nm):
                v0[i] = v0[i] / step32
                v1[i] = v1[i] / step32
            cur, other = other, cur
    for i in range(n):
        out[i] = work[cur + i]
        out[n + i] = work[cur + n + i]
    return total


_F32P = types.CPointer(types.float32)
_I64P = types.CPointer(types.int64)
_F64P = types.CPointer(types.float64)
#: C signature of :func:`entry`:
#: (ref, mov, out, work, work_size, ints, n_ints, reals) -> iterations
ENTRY_SIGNATURE = types.int64(_F32P, _F32P, _F32P, _F32P, types.int64, _I64P, types.int64, _F64P)


def _entry(ref, mov, out, work, work_size, ints, n_ints, reals):
    """C entry point of :func:`solve_pair` (raw pointers; see there)."""
    i = carray(ints, (n_ints,))
    height = i[0]
    width = i[1]
    n = height * width
    return solve_pair(carray(ref, (n,)), carray(mov, (n,)), carray(out, (2 * n,)),
                      carray(work, (work_size,)), i, carray(reals, (len(REAL_FIELDS),)))


def entry():
    """Compile the C entry point (numba ``cfunc``; tens of seconds) and return it."""
    return cfunc(ENTRY_SIGNATURE, nopython=True, fastmath=_FASTMATH, error_model="numpy",
                 boundscheck=False)(_entry)
