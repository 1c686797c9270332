"""Robust PCA by the inexact augmented Lagrange multiplier method.

Robust principal component analysis splits a matrix into a low-rank and a
sparse part, ``D = A + E``, by solving

    min ||A||_* + lambda ||E||_1   subject to   D = A + E.

PSN (after Wang et al. 2014) applies it to a clip whose columns are the
vectorised frames: the low-rank part holds the face's identity and is
discarded; the sparse part holds the subtle motion and is the network's input.
This module implements the inexact ALM solver of Lin, Chen and Ma (2010) for a
batch of clips at once, on CPU or CUDA, and the PSN chain (TIM to 150 frames,
RPCA, 16 uniformly sampled sparse frames). Numpy arrays on the CPU are solved
with numpy alone (torch is not imported: a ``mexkit rpca`` worker starts
without it); tensors, and any work on a GPU, with torch.
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from .._validate import check_ndim, check_range
from ..devices import check_device_name, cuda_possible, resolve_device
from ..errors import ConvergenceError, ParameterError
from .tim import tim

__all__ = [
    "RPCAResult",
    "rpca",
    "rpca_frames",
    "psn_sample_indices",
    "psn_chain",
]

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("mexkit")


@dataclass(frozen=True)
class RPCAResult:
    """Result of :func:`rpca`.

    Attributes
    ----------
    low_rank : ndarray or Tensor, shape like the input ``(m, n)`` or ``(B, m, n)``
        The low-rank part ``A``.
    sparse : ndarray or Tensor, shape like the input
        The sparse part ``E``.
    iterations : int or ndarray of int, shape () or (B,)
        Iterations run per matrix (0 for an all-zero matrix).
    residual : float or ndarray of float, shape () or (B,)
        Final ``||D - A - E||_F / ||D||_F`` per matrix.
    converged : bool or ndarray of bool, shape () or (B,)
        Whether the residual fell below ``tol`` within ``max_iter`` iterations.
    """

    low_rank: Any
    sparse: Any
    iterations: Any
    residual: Any
    converged: Any


def _resolve_device(device: Any, data: Any) -> torch.device:
    return resolve_device(device, like=data)


def _svt(m: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Singular value thresholding of ``m`` (b, p, q), q <= p, through the q x q Gram matrix.

    With ``m^T m = V diag(s^2) V^T`` and ``m = U diag(s) V^T``,
    ``U diag(max(s - tau, 0)) V^T = m V diag(max(s - tau, 0) / s) V^T``:
    one ``q x q`` eigendecomposition instead of an SVD of the ``p x q`` matrix.
    """
    import torch  # start-up: torch only for tensors and GPUs (numpy arrays: _ialm_numpy)

    gram = m.mT @ m
    w, v = torch.linalg.eigh(gram)                      # ascending eigenvalues
    s = w.clamp_min(0).sqrt()
    shrink = (s - tau[:, :, 0]).clamp_min(0)
    factor = torch.where(s > 0, shrink / torch.where(s > 0, s, torch.ones_like(s)),
                         torch.zeros_like(s))
    q = s.shape[-1]
    rank = int((shrink > 0).sum(dim=-1).max())
    if 2 * rank < q:
        # Only the top singular values survive: m V_r diag(f_r) V_r^T costs 4 p q r flops
        # instead of 2 p q^2.
        vr = v[:, :, q - rank:]
        return (m @ vr * factor[:, None, q - rank:]) @ vr.mT
    return m @ ((v * factor[:, None, :]) @ v.mT)


def _ialm(d: torch.Tensor, lam: float, tol: float, max_iter: int, rho: float
          ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Inexact ALM on a batch ``d`` (B, p, q) with q <= p. Returns A, E, iters, residual, ok."""
    import torch  # start-up: torch only for tensors and GPUs (numpy arrays: _ialm_numpy)

    batch = d.shape[0]
    low = torch.zeros_like(d)
    sparse = torch.zeros_like(d)
    iters = np.zeros(batch, dtype=np.int64)
    resid = np.zeros(batch, dtype=np.float64)
    ok = np.zeros(batch, dtype=bool)

    d_norm = torch.linalg.vector_norm(d, dim=(-2, -1))
    nonzero = (d_norm > 0).cpu().numpy()
    ok[~nonzero] = True                       # D = 0: A = E = 0 exactly, nothing to do
    idx = np.flatnonzero(nonzero)
    if idx.size == 0:
        return low, sparse, iters, resid, ok

    sel = torch.as_tensor(idx, device=d.device)
    dd = d[sel]
    dn = d_norm[sel][:, None, None]
    two = torch.linalg.eigvalsh(dd.mT @ dd)[:, -1].clamp_min(0).sqrt()[:, None, None]
    inf = dd.abs().amax(dim=(-2, -1))[:, None, None] / lam
    mu = 1.25 / two
    mu_bar = mu * 1e7
    # Scaled dual variable P = Y / mu with Y_0 = D / max(||D||_2, ||D||_inf / lambda).
    p = dd / torch.maximum(two, inf) / mu
    e = torch.zeros_like(dd)
    m = torch.empty_like(dd)                  # work buffers, reused in place: large
    c = torch.empty_like(dd)                  # allocations cost page faults on the CPU
    active = idx.copy()

    for it in range(1, max_iter + 1):
        inv = 1.0 / mu
        # A-step: singular value thresholding of D - E + Y / mu at 1 / mu.
        torch.sub(dd, e, out=m).add_(p)
        a = _svt(m, inv)
        # E-step: soft thresholding of T = D - A + Y / mu at lambda / mu.
        m.sub_(a).add_(e)                     # m now holds T
        torch.clamp(m, -lam * inv, lam * inv, out=c)
        torch.sub(m, c, out=e)
        # Y <- Y + mu (D - A - E) = mu * c: the new scaled dual is c * mu / mu_next,
        # and the constraint violation D - A - E is c - Y / mu.
        r = torch.linalg.vector_norm(torch.sub(c, p, out=m), dim=(-2, -1)) / dn[:, 0, 0]
        mu_next = torch.minimum(mu * rho, mu_bar)
        torch.mul(c, mu / mu_next, out=p)
        mu = mu_next

        r_host = r.cpu().numpy()
        done = r_host < tol
        if it == max_iter:
            done[:] = True
        if done.any():
            finished = active[done]
            keep = torch.as_tensor(np.flatnonzero(done), device=d.device)
            fin = torch.as_tensor(finished, device=d.device)
            low[fin] = a[keep]
            sparse[fin] = e[keep]
            iters[finished] = it
            resid[finished] = r_host[done]
            ok[finished] = r_host[done] < tol
            if done.all():
                break
            rest = torch.as_tensor(np.flatnonzero(~done), device=d.device)
            active = active[~done]
            dd, dn, e, p, mu, mu_bar = (x[rest] for x in (dd, dn, e, p, mu, mu_bar))
            m, c = torch.empty_like(dd), torch.empty_like(dd)
    return low, sparse, iters, resid, ok


def _svt_factor_numpy(m: np.ndarray, tau: float, eye: np.ndarray) -> np.ndarray:
    """``I - W`` with ``U diag(max(s - tau, 0)) V^T = m W``, ``m`` (p, q), q <= p.

    ``W = V diag(max(s - tau, 0) / s) V^T`` from the eigendecomposition of the
    q x q Gram matrix ``m^T m = V diag(s^2) V^T``, as :func:`_svt` computes it.
    """
    w, v = np.linalg.eigh(m.T @ m)                      # ascending eigenvalues
    s = np.sqrt(np.maximum(w, 0))
    factor = np.divide(np.maximum(s - tau, 0), s, out=np.zeros_like(s), where=s > 0)
    return eye - (v * factor) @ v.T


#: Rows of the ``p x q`` arrays that :func:`_ialm_numpy` updates at once: the product
#: ``C = M (I - W)`` and the element-wise steps of an iteration run block by block, so
#: that the arrays of a block (about 0.7 MB for q = 32 in float64) stay in the core's
#: cache between the steps instead of being read from memory again for each, and ``C``
#: is never a whole array (2.7 ms an iteration of 16,384 x 32 for the element-wise
#: steps on the whole arrays, 1.65 ms in blocks of 1024 rows; with the product in the
#: blocks too, blocks of 512 rows took about 15 % less time over bin/demo's 30 clips
#: than blocks of 1024, 128 rows more).  The values are the same (each row of ``C`` is
#: the same sum of products whatever the block).
_BLOCK_BYTES = 128 << 10


def _ialm_numpy(d: np.ndarray, lam: float, tol: float, max_iter: int, rho: float
                ) -> tuple[np.ndarray, np.ndarray, int, float, bool]:
    """Inexact ALM on one matrix ``d`` (p, q), q <= p, with numpy: what :func:`_ialm`
    computes for one matrix, in fewer passes over the matrix per iteration.

    Each iteration forms the Gram matrix of ``M = D - E + P`` (P = Y / mu) (a
    product over the whole matrix), then, block of rows by block of rows
    (:data:`_BLOCK_BYTES`): ``C = M (I - W)``, ``T = E + C`` (``= D - A + P`` with
    ``A = M W`` the thresholded matrix, never formed), ``c = clip(T, +-lam/mu)``,
    ``E = T - c``, the constraint violation ``D - A - E = c - P``, ``P = c mu /
    mu_next`` and the next ``M``.  ``A`` is formed once, at the end, as
    ``D - E - (c - P)``. Returns A, E, iterations, residual, converged.
    """
    low = np.zeros_like(d)
    dn = math.sqrt(float(np.dot(d.ravel(), d.ravel())))
    if dn == 0:                                         # D = 0: A = E = 0 exactly
        return low, np.zeros_like(d), 0, 0.0, True
    two = math.sqrt(max(float(np.linalg.eigvalsh(d.T @ d)[-1]), 0.0))
    inf = float(np.abs(d).max()) / lam
    mu = 1.25 / two
    mu_bar = mu * 1e7
    # Scaled dual variable P = Y / mu with Y_0 = D / max(||D||_2, ||D||_inf / lambda).
    p = d / max(two, inf) / mu
    e = np.zeros_like(d)
    m = np.subtract(d, e)                               # M = D - E + P
    m += p
    viol = np.empty_like(d)                             # work buffers, reused in place
    eye = np.eye(d.shape[1], dtype=d.dtype)
    rows = max(1, _BLOCK_BYTES // max(1, d.shape[1] * d.itemsize))
    blocks = [slice(i, i + rows) for i in range(0, d.shape[0], rows)]
    c = np.empty((min(rows, d.shape[0]), d.shape[1]), dtype=d.dtype)  # one block of C
    r = math.inf
    it = 0
    while it < max_iter:
        it += 1
        inv = 1.0 / mu
        mu_next = min(mu * rho, mu_bar)
        scale = mu / mu_next
        # A-step: singular value thresholding of M = D - E + Y / mu at 1 / mu.
        k = _svt_factor_numpy(m, inv, eye)
        for b in blocks:
            eb, pb, vb, mb = e[b], p[b], viol[b], m[b]
            cb = c[:len(eb)]
            np.matmul(mb, k, out=cb)                    # C = M (I - W), this block
            # E-step: soft thresholding of T = D - A + Y / mu = E + C at lambda / mu.
            eb += cb                                    # e now holds T
            np.clip(eb, -lam * inv, lam * inv, out=cb)
            eb -= cb                                    # E = T - clip(T)
            # Y <- Y + mu (D - A - E) = mu c; the violation D - A - E is c - P.
            np.subtract(cb, pb, out=vb)
            np.multiply(cb, scale, out=pb)
            np.subtract(d[b], eb, out=mb)               # the next M = D - E + P
            mb += pb
        r = math.sqrt(float(np.dot(viol.ravel(), viol.ravel()))) / dn
        mu = mu_next
        if r < tol:
            break
    np.subtract(d, e, out=low)
    low -= viol                                         # A = D - E - (D - A - E)
    return low, e, it, r, r < tol


def rpca(D: Any, *, lam: float | None = None, tol: float = 1e-7, max_iter: int = 500,
         rho: float = 1.5, device: Any = "auto", dtype: Any = None,
         raise_on_failure: bool = False) -> RPCAResult:
    """Split ``D`` into low-rank and sparse parts by robust PCA (inexact ALM).

    Solves ``min ||A||_* + lam ||E||_1`` subject to ``D = A + E`` for one
    matrix or a batch of matrices at once.

    Parameters
    ----------
    D : ndarray or Tensor, shape (m, n) or (B, m, n)
        Data matrices, e.g. ``m`` pixels by ``n`` frames (one column per
        vectorised frame).
    lam : float, optional
        Weight of the sparse term; ``1 / sqrt(max(m, n))`` by default.
    tol : float
        Stop when ``||D - A - E||_F / ||D||_F < tol`` (checked per matrix).
    max_iter : int
        Iteration limit per matrix.
    rho : float
        Growth factor of the penalty ``mu`` per iteration (``mu_0 =
        1.25 / ||D||_2``, capped at ``1e7 mu_0``), as in the reference code.
    device : "auto", str or torch.device
        Where to compute. ``"auto"``: the device of a CUDA input tensor, else
        CUDA when available, else the CPU. A numpy array on the CPU is solved
        with numpy, one BLAS thread, without importing torch (``"auto"``
        imports it only where an NVIDIA driver is present).
    dtype : torch.dtype, optional
        Computation dtype: ``torch.float32`` or ``torch.float64`` (None, the
        default: float64). In float32 the Gram matrix
        squares the condition number and the residual itself is computed to
        about 1e-7: on a 12544 x 150 face clip float32 needed 76 iterations
        instead of 39 to reach ``tol = 1e-7`` and was no faster on the CPU;
        other clips may not reach it at all.
    raise_on_failure : bool
        Raise :class:`~mexkit.errors.ConvergenceError` when a matrix does not
        reach ``tol``; otherwise report it in ``converged``.

    Returns
    -------
    RPCAResult
        ``low_rank`` and ``sparse`` of the input's shape, in ``dtype``: numpy
        arrays for a numpy input, tensors on the input's device for a tensor
        input. ``iterations``, ``residual``, ``converged`` are scalars for a
        2-D input and arrays of length ``B`` for a batch.

    Raises
    ------
    ParameterError
        For a bad shape, non-finite values or an invalid option.
    ConvergenceError
        With ``raise_on_failure=True``, naming the matrix, the iterations run
        and the residual reached.

    Notes
    -----
    Each iteration thresholds the singular values of ``D - E + Y/mu`` at
    ``1/mu`` (A-step), soft-thresholds ``D - A + Y/mu`` at ``lam/mu``
    (E-step), updates ``Y += mu (D - A - E)`` and ``mu *= rho`` (Algorithm 5
    of [1]_). Singular value thresholding uses the ``n x n`` Gram matrix and
    a symmetric eigendecomposition rather than an SVD of the ``m x n`` matrix
    (``n`` frames are far fewer than ``m`` pixels; the matrix is transposed
    internally when ``m < n``). Squaring the condition number there loses
    accuracy only on singular values far below the largest: on four of
    bin/demo's face clips (16384 x 32, singular values kept spanning up to
    2.7e6) the sparse part differs from that of the same iteration with a full
    SVD by at most 3.7e-9 (intensities in [0, 1]; float32, in which it is
    stored, rounds it at 3e-8), in the same number of iterations. A numpy input on the CPU
    is solved with numpy (:func:`_ialm_numpy`: the same iterates, with fewer
    passes over the matrix), a tensor or a GPU with torch. On a GPU the
    batch is solved together, and
    matrices that converge leave the batch, so each gets exactly the
    iterations it would get alone; on the CPU the matrices are solved one
    after the other. An all-zero matrix returns ``A = E = 0`` after 0
    iterations.

    References
    ----------
    .. [1] Z. Lin, M. Chen, Y. Ma, "The augmented Lagrange multiplier method
       for exact recovery of corrupted low-rank matrices", arXiv:1009.5055,
       2010.
    .. [2] E. J. Candes, X. Li, Y. Ma, J. Wright, "Robust principal component
       analysis?", Journal of the ACM 58(3), 2011.
    .. [3] S.-J. Wang, W.-J. Yan, G. Zhao, X. Fu, C.-G. Zhou, "Micro-expression
       recognition using robust principal component analysis and local
       spatiotemporal directional features", ECCV Workshops 2014.
    """
    check_ndim("D", D, (2, 3), "(m, n) or (B, m, n)")
    check_range("tol", tol, 0.0, low_open=True)
    check_range("rho", rho, 1.0, low_open=True)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ParameterError(
            f"Invalid value for the 'max_iter' parameter. It must be a positive integer, "
            f"but got {max_iter!r} instead."
        )
    precision = _precision(dtype)
    torch_module = sys.modules.get("torch")
    as_tensor = torch_module is not None and isinstance(D, torch_module.Tensor)
    if not as_tensor and _numpy_on_cpu(device):
        arr = _real_array(D)
        data = arr.astype(precision, copy=False)
        batched = data.ndim == 3
        if not batched:
            data = data[None]
        if not np.isfinite(data).all():
            raise ParameterError("Invalid value for the 'D' parameter: it contains NaN or inf.")
        _, m, n = data.shape
        lam = _check_lam(lam, m, n, D)
        transpose = m < n
        low, sparse = np.empty_like(data), np.empty_like(data)
        iters = np.zeros(len(data), dtype=np.int64)
        resid = np.zeros(len(data), dtype=np.float64)
        ok = np.zeros(len(data), dtype=bool)
        # One BLAS thread: the products are thin (p x q times q x q), and a second
        # thread spinning beside other work on a shared machine costs several times
        # the CPU it saves (30 demo clips: 34 s of CPU instead of 6 s on a busy 2-core
        # machine).
        with threadpool_limits(1, user_api="blas"):
            for i, matrix in enumerate(data):
                work = np.ascontiguousarray(matrix.T if transpose else matrix)
                a, e, iters[i], resid[i], ok[i] = _ialm_numpy(work, float(lam), float(tol),
                                                              int(max_iter), float(rho))
                low[i], sparse[i] = (a.T, e.T) if transpose else (a, e)
        return _result(low, sparse, iters, resid, ok, batched=batched, shape=(m, n), tol=tol,
                       raise_on_failure=raise_on_failure)

    import torch  # start-up: about 1.5 s of CPU, for tensors and GPUs only

    tdtype = getattr(torch, precision)
    out_device = D.device if as_tensor else None
    dev = _resolve_device(device, D)
    if as_tensor:
        data = D.detach().to(device=dev, dtype=tdtype)
    else:
        data = torch.as_tensor(_real_array(D)).to(device=dev, dtype=tdtype)
    batched = data.ndim == 3
    if not batched:
        data = data[None]
    if not bool(torch.isfinite(data).all()):
        raise ParameterError("Invalid value for the 'D' parameter: it contains NaN or inf.")
    _, m, n = data.shape
    lam = _check_lam(lam, m, n, D)

    transpose = m < n
    work = data.mT.contiguous() if transpose else data
    with torch.no_grad():
        if dev.type == "cpu" and work.shape[0] > 1:
            # On the CPU a batched matmul is no faster than one matrix at a time
            # (measured), and one at a time needs less memory.
            parts = [_ialm(work[i:i + 1], float(lam), float(tol), int(max_iter), float(rho))
                     for i in range(work.shape[0])]
            low = torch.cat([p[0] for p in parts])
            sparse = torch.cat([p[1] for p in parts])
            iters, resid, ok = (np.concatenate([p[k] for p in parts]) for k in (2, 3, 4))
        else:
            low, sparse, iters, resid, ok = _ialm(work, float(lam), float(tol),
                                                  int(max_iter), float(rho))
    if transpose:
        low, sparse = low.mT.contiguous(), sparse.mT.contiguous()
    if as_tensor:
        low, sparse = low.to(out_device), sparse.to(out_device)
    else:
        low, sparse = low.cpu().numpy(), sparse.cpu().numpy()
    return _result(low, sparse, iters, resid, ok, batched=batched, shape=(m, n), tol=tol,
                   raise_on_failure=raise_on_failure)


def _precision(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for a torch or numpy float dtype (None: float64)."""
    if dtype is None:
        return "float64"
    name = str(dtype).removeprefix("torch.")
    if type(dtype).__module__ == "torch" and name in ("float32", "float64"):
        return name
    raise ParameterError(
        f"Invalid value for the 'dtype' parameter. Allowed values are torch.float32, "
        f"torch.float64, but got {dtype!r} instead."
    )


def _numpy_on_cpu(device: Any) -> bool:
    """Whether ``device`` means the CPU, importing torch only where a GPU may be there."""
    name = check_device_name(device)
    if name == "cpu":
        return True
    if name != "auto":
        return False
    return not cuda_possible() or resolve_device("auto").type == "cpu"


def _real_array(D: Any) -> np.ndarray:
    arr = np.asarray(D)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ParameterError(
            f"Invalid dtype for the 'D' parameter: expected a real array, but got {arr.dtype}."
        )
    return arr


def _check_lam(lam: float | None, m: int, n: int, D: Any) -> float:
    if m == 0 or n == 0:
        raise ParameterError(f"Invalid shape for the 'D' parameter: got an empty matrix "
                             f"of shape {tuple(D.shape)!r}.")
    if lam is None:
        lam = 1.0 / math.sqrt(max(m, n))
    check_range("lam", lam, 0.0, low_open=True)
    return lam


def _result(low: Any, sparse: Any, iters: np.ndarray, resid: np.ndarray, ok: np.ndarray, *,
            batched: bool, shape: tuple[int, int], tol: float,
            raise_on_failure: bool) -> RPCAResult:
    """Report matrices that did not converge; scalars for a single matrix."""
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        where = f"matrix {bad} of the batch" if batched else "the matrix"
        msg = (f"RPCA did not converge for {where} of shape {shape}: residual "
               f"{resid[bad]:.3g} > tol {tol:g} after {iters[bad]} iterations "
               f"({int((~ok).sum())} of {len(ok)} failed)")
        if raise_on_failure:
            raise ConvergenceError(msg + ".")
        logger.warning("%s.", msg)
    if not batched:
        return RPCAResult(low_rank=low[0], sparse=sparse[0], iterations=int(iters[0]),
                          residual=float(resid[0]), converged=bool(ok[0]))
    return RPCAResult(low_rank=low, sparse=sparse, iterations=iters, residual=resid,
                      converged=ok)


def rpca_frames(frames: np.ndarray, *, lam: float | None = None, tol: float = 1e-7,
                max_iter: int = 500, rho: float = 1.5, device: Any = "auto",
                dtype: Any = None, raise_on_failure: bool = False
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Robust PCA of a clip with one column per vectorised frame.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, C)
        The clip, uint8 or float, in its own intensity units (RPCA is
        equivariant to scaling, so ``E`` comes out in the same units).
    lam, tol, max_iter, rho, device, dtype, raise_on_failure
        As in :func:`rpca`; ``D`` is the ``(H W C) x T`` matrix of the frames.

    Returns
    -------
    sparse : ndarray, float32, shape like ``frames``
        The sparse part ``E`` (the motion PSN keeps).
    low_rank : ndarray, float32, shape like ``frames``
        The low-rank part ``A`` (the identity PSN discards).
    info : dict
        ``iterations`` (int), ``residual`` (float), ``converged`` (bool) and
        ``lam`` (float): JSON-serialisable, for a store's attributes.

    References
    ----------
    .. [1] Z. Lin, M. Chen, Y. Ma, "The augmented Lagrange multiplier method
       for exact recovery of corrupted low-rank matrices", arXiv:1009.5055,
       2010.
    .. [2] S.-J. Wang et al., "Micro-expression recognition using robust
       principal component analysis and local spatiotemporal directional
       features", ECCV Workshops 2014.
    """
    check_ndim("frames", frames, (3, 4), "(T, H, W) or (T, H, W, C)")
    frames = np.asarray(frames)
    t = frames.shape[0]
    d = frames.reshape(t, -1).T
    if lam is None:
        lam = 1.0 / math.sqrt(max(d.shape))
    res = rpca(d, lam=lam, tol=tol, max_iter=max_iter, rho=rho, device=device, dtype=dtype,
               raise_on_failure=raise_on_failure)
    sparse = np.ascontiguousarray(res.sparse.T, dtype=np.float32).reshape(frames.shape)
    low = np.ascontiguousarray(res.low_rank.T, dtype=np.float32).reshape(frames.shape)
    info = {"iterations": res.iterations, "residual": res.residual,
            "converged": res.converged, "lam": float(lam)}
    return sparse, low, info


def psn_sample_indices(n: int = 150, k: int = 16) -> np.ndarray:
    """PSN's uniform sampling: ``k`` 0-based indices out of ``n`` frames.

    Takes every ``s = n // (k - 1)``-th frame from the first, ``k - 1`` of
    them, then the last frame. For ``n = 150, k = 16`` this is PSN's
    ``1, 11, 21, ..., 141, 150`` (1-based), i.e. ``0, 10, ..., 140, 149``.

    Parameters
    ----------
    n : int
        Number of frames in the clip (at least ``k``).
    k : int
        Number of frames to keep (at least 2).

    Returns
    -------
    indices : ndarray of int, shape (k,)
        Strictly increasing, first 0 and last ``n - 1``.

    References
    ----------
    .. [1] PSN: Parallel spatiotemporal network for micro-expression
       recognition (Section 4, normalisation on spatial and temporal domains).
    """
    for name, value in (("n", n), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ParameterError(f"Invalid value for the {name!r} parameter. It must be an "
                                 f"integer, but got {value!r} instead.")
    check_range("k", int(k), 2)
    check_range("n", int(n), int(k))
    step = n // (k - 1)
    return np.append(np.arange(k - 1, dtype=np.int64) * step, n - 1)


def psn_chain(frames: np.ndarray, *, n_tim: int = 150, k: int = 16, grid: str = "exact",
              lam: float | None = None, tol: float = 1e-7, max_iter: int = 500,
              device: Any = "auto", raise_on_failure: bool = True) -> np.ndarray:
    """PSN's spatial input: TIM to ``n_tim`` frames, RPCA, keep ``k`` sparse frames.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, C)
        The clip (PSN uses 112 x 112 crops), uint8 or float; ``T >= 2``.
    n_tim : int
        Length after temporal interpolation (150 in PSN).
    k : int
        Frames kept after RPCA (16 in PSN), see :func:`psn_sample_indices`.
    grid : {"exact", "demo"}
        TIM output grid, see :func:`mexkit.temporal.tim.tim`.
    lam, tol, max_iter, device
        RPCA options, see :func:`rpca`.
    raise_on_failure : bool
        Raise :class:`~mexkit.errors.ConvergenceError` when RPCA does not
        converge (PSN dropped such clips); with False, log a warning and
        return the last iterate.

    Returns
    -------
    sparse : ndarray, float32, shape (k, H, W) or (k, H, W, C)
        The sparse part at the sampled frames, in the input's intensity units.

    References
    ----------
    .. [1] PSN: Parallel spatiotemporal network for micro-expression recognition.
    .. [2] Z. Zhou, G. Zhao, M. Pietikainen, "Towards a practical lipreading
       system", CVPR 2011.
    .. [3] Z. Lin, M. Chen, Y. Ma, arXiv:1009.5055, 2010.
    """
    idx = psn_sample_indices(n_tim, k)
    clip = tim(frames, n_tim, grid=grid, dtype=np.float64)
    sparse, _, _ = rpca_frames(clip, lam=lam, tol=tol, max_iter=max_iter, device=device,
                               raise_on_failure=raise_on_failure)
    return np.ascontiguousarray(sparse[idx])
