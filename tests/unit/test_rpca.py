from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from mexkit.errors import ConvergenceError, ParameterError
from mexkit.temporal.rpca import psn_chain, psn_sample_indices, rpca, rpca_frames


def low_rank_plus_sparse(rng, m, n, rank=2, fraction=0.05, amplitude=10.0):
    low = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    sparse = np.zeros((m, n))
    mask = rng.random((m, n)) < fraction
    sparse[mask] = rng.uniform(-amplitude, amplitude, mask.sum())
    return low, sparse


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("m,n", [(120, 50), (40, 90)])
def test_recovers_rank2_plus_5_percent_sparse(rng, m, n):
    low, sparse = low_rank_plus_sparse(rng, m, n)
    res = rpca(low + sparse, device="cpu")
    assert res.converged is True and isinstance(res.iterations, int)
    assert res.residual < 1e-7
    assert rel(res.low_rank, low) < 1e-5
    assert rel(res.sparse, sparse) < 1e-5
    assert np.linalg.matrix_rank(res.low_rank, tol=1e-6 * np.abs(low).max()) == 2
    assert res.low_rank.shape == (m, n) and res.low_rank.dtype == np.float64


def textbook_ialm(d, tol=1e-7):
    """The inexact ALM written plainly with numpy's full SVD (Lin, Chen, Ma 2010, Alg. 5)."""
    lam = 1 / np.sqrt(max(d.shape))
    norm2 = np.linalg.norm(d, 2)
    mu, y, e = 1.25 / norm2, d / max(norm2, np.abs(d).max() / lam), np.zeros_like(d)
    iterations = 0
    while iterations < 500:
        iterations += 1
        u, s, vt = np.linalg.svd(d - e + y / mu, full_matrices=False)
        a = (u * np.maximum(s - 1 / mu, 0)) @ vt
        t = d - a + y / mu
        e = np.sign(t) * np.maximum(np.abs(t) - lam / mu, 0)
        y = y + mu * (d - a - e)
        mu = min(mu * 1.5, 1.25e7 / norm2)
        if np.linalg.norm(d - a - e) / np.linalg.norm(d) < tol:
            break
    return a, e, iterations


def test_matches_textbook_ialm_with_full_svd(rng):
    d = rng.standard_normal((60, 25)) @ rng.standard_normal((25, 25)) * 0.1
    d[rng.random(d.shape) < 0.1] += 5.0
    a, e, iterations = textbook_ialm(d)
    res = rpca(d, device="cpu")
    assert res.iterations == iterations
    np.testing.assert_allclose(res.low_rank, a, atol=1e-6)
    np.testing.assert_allclose(res.sparse, e, atol=1e-6)


def face_like(rng, m=400, n=24):
    """A clip-like matrix: one dominant component (the mean face) 10^4 times the weakest
    of three others, 5 % sparse changes of up to 1, and a little dense noise: the
    singular values span 300 .. 2e-4, so thresholding keeps values 10^4 below the
    largest (the Gram matrix squares that spread)."""
    u = np.linalg.qr(rng.standard_normal((m, 4)))[0]
    v = np.linalg.qr(rng.standard_normal((n, 4)))[0]
    low = (u * [300.0, 3.0, 0.3, 0.03]) @ v.T
    sparse = np.where(rng.random((m, n)) < 0.05, rng.uniform(-1, 1, (m, n)), 0.0)
    return low + sparse + 1e-3 * rng.standard_normal((m, n))


def test_fast_path_matches_full_svd_reference_on_a_wide_spectrum(rng):
    # The numpy path (Gram matrix, fused updates) against the same iteration written
    # from the definition with a full SVD: the same stopping iteration, and both parts
    # equal to 1e-8 (measured: about 1e-9) although the values kept span 10^4.
    d = face_like(rng)
    a, e, iterations = textbook_ialm(d)
    res = rpca(d, device="cpu")
    assert isinstance(res.sparse, np.ndarray) and res.converged
    assert res.iterations == iterations
    np.testing.assert_allclose(res.sparse, e, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.low_rank, a, rtol=0, atol=1e-8)
    # the torch path (tensors, GPUs) computes the same iterates
    t = rpca(torch.from_numpy(d), device="cpu")
    assert t.iterations == iterations
    np.testing.assert_allclose(t.sparse.numpy(), res.sparse, rtol=0, atol=1e-9)


def test_numpy_path_in_float32_and_transposed(rng):
    d = face_like(rng, m=24, n=300)                     # fewer rows than columns
    res = rpca(d, device="cpu", dtype=torch.float32, tol=1e-5)
    assert res.sparse.dtype == np.float32 and res.sparse.shape == (24, 300)
    assert res.converged and rel(res.low_rank + res.sparse, d) < 1e-5
    a, e, _ = textbook_ialm(d, tol=1e-5)                # float64, stopped at 1e-5 too
    np.testing.assert_allclose(res.sparse, e, rtol=0, atol=1e-2)


def test_rpca_of_numpy_arrays_does_not_import_torch():
    # mexkit rpca's workers solve numpy arrays without torch (its import costs about
    # 1.5 s of CPU per process); "auto" needs it only where a GPU driver is present.
    code = ("import sys, numpy as np; from mexkit.devices import cuda_possible; "
            "from mexkit.temporal.rpca import rpca_frames; "
            "f = np.random.default_rng(0).uniform(0, 1, (8, 6, 5)); "
            "s, _, info = rpca_frames(f, device='cpu'); assert info['converged']; "
            "cuda_possible() or rpca_frames(f); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_batch_equals_one_by_one(rng):
    mats = []
    for fraction in (0.02, 0.05, 0.1):
        low, sparse = low_rank_plus_sparse(rng, 70, 30, fraction=fraction)
        mats.append(low + sparse)
    mats.append(np.zeros((70, 30)))
    batch = np.stack(mats)
    res = rpca(batch, device="cpu")
    assert res.low_rank.shape == batch.shape
    assert res.iterations.shape == (4,) and res.converged.all()
    assert res.iterations[3] == 0 and np.all(res.sparse[3] == 0)
    for i in range(3):
        single = rpca(batch[i], device="cpu")
        assert single.iterations == res.iterations[i]
        np.testing.assert_allclose(res.low_rank[i], single.low_rank, atol=1e-9)
        np.testing.assert_allclose(res.sparse[i], single.sparse, atol=1e-9)
    assert len(set(res.iterations[:3].tolist())) > 1   # clips really stop on their own


def test_batched_solver_drops_converged_matrices(rng):
    # The batched path (used on GPUs) run on the CPU: matrices that converge
    # leave the batch and must end exactly as when solved alone.
    from mexkit.temporal.rpca import _ialm

    mats = []
    for fraction in (0.02, 0.05, 0.1):
        low, sparse = low_rank_plus_sparse(rng, 70, 30, fraction=fraction)
        mats.append(low + sparse)
    mats.insert(1, np.zeros((70, 30)))
    batch = torch.from_numpy(np.stack(mats))
    lam = 1 / np.sqrt(70)
    low, sparse, iters, resid, ok = _ialm(batch, lam, 1e-7, 500, 1.5)
    assert ok.all() and iters[1] == 0 and len(set(iters[[0, 2, 3]].tolist())) > 1
    for i in (0, 2, 3):
        single = rpca(mats[i], device="cpu")
        assert iters[i] == single.iterations
        np.testing.assert_allclose(low[i].numpy(), single.low_rank, atol=1e-9)
        np.testing.assert_allclose(sparse[i].numpy(), single.sparse, atol=1e-9)
        assert resid[i] == pytest.approx(single.residual)


def test_scale_equivariance_and_torch_input(rng):
    low, sparse = low_rank_plus_sparse(rng, 50, 20)
    d = low + sparse
    a = rpca(d, device="cpu")
    b = rpca(torch.from_numpy(d * 255.0), device="cpu")
    assert isinstance(b.sparse, torch.Tensor) and b.sparse.device.type == "cpu"
    np.testing.assert_allclose(b.sparse.numpy(), 255.0 * a.sparse, atol=1e-6)
    assert b.iterations == a.iterations


def test_convergence_failure_reported_and_raised(rng, caplog):
    low, sparse = low_rank_plus_sparse(rng, 60, 20)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        res = rpca(low + sparse, max_iter=3, device="cpu")
    assert res.converged is False and res.iterations == 3 and res.residual > 1e-7
    assert "did not converge" in caplog.text
    with pytest.raises(ConvergenceError, match=r"after 3 iterations") as info:
        rpca(np.stack([low + sparse] * 2), max_iter=3, raise_on_failure=True, device="cpu")
    assert "residual" in str(info.value) and "matrix 0 of the batch" in str(info.value)


@pytest.mark.parametrize(
    "d,kwargs",
    [
        (np.zeros(5), {}),
        (np.full((4, 3), np.nan), {}),
        (np.ones((4, 3)), {"tol": 0}),
        (np.ones((4, 3)), {"rho": 1.0}),
        (np.ones((4, 3)), {"max_iter": 0}),
        (np.ones((4, 3)), {"lam": -1.0}),
        (np.ones((4, 3)), {"dtype": torch.int32}),
        (np.ones((4, 3)), {"device": "tpu9"}),
    ],
)
def test_bad_input_raises(d, kwargs):
    with pytest.raises(ParameterError):
        rpca(d, **kwargs)


def test_rpca_frames_separates_static_face_from_local_change(rng):
    # A static textured "face" plus a small square that brightens in a few frames:
    # the change must end up in the sparse part, the face in the low-rank part.
    face = rng.uniform(40, 200, (24, 20))
    frames = np.repeat(face[None], 16, axis=0)
    frames[6:9, 5:9, 5:9] += 60.0
    sparse, low, info = rpca_frames(frames.astype(np.uint8).astype(np.float64), device="cpu")
    assert sparse.shape == frames.shape and sparse.dtype == np.float32
    assert info["converged"] and info["residual"] < 1e-7
    assert info["lam"] == pytest.approx(1 / np.sqrt(24 * 20))
    json.dumps(info)
    inside = np.zeros(frames.shape, bool)
    inside[6:9, 5:9, 5:9] = True
    assert np.abs(sparse[inside]).mean() > 30.0
    assert np.abs(sparse[~inside]).mean() < 1.0
    np.testing.assert_allclose(low + sparse, frames.astype(np.uint8), atol=1e-3)


def test_psn_sample_indices():
    idx = psn_sample_indices()
    assert idx.tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 149]
    assert (idx + 1).tolist()[-2:] == [141, 150]          # the paper's 1-based numbering
    assert psn_sample_indices(16, 16).tolist() == list(range(16))
    small = psn_sample_indices(40, 8)
    assert small[0] == 0 and small[-1] == 39 and np.all(np.diff(small) > 0)
    with pytest.raises(ParameterError):
        psn_sample_indices(10, 16)
    with pytest.raises(ParameterError):
        psn_sample_indices(150, 1)


def test_psn_chain_shape_and_motion_location(rng):
    face = rng.uniform(40, 200, (12, 10))
    frames = np.repeat(face[None], 30, axis=0)
    frames[12:18, 3:6, 3:6] += 50.0                       # a brief local change
    out = psn_chain(frames.astype(np.uint8), n_tim=60, k=8, device="cpu")
    assert out.shape == (8, 12, 10) and out.dtype == np.float32
    energy = np.abs(out).sum(axis=0)
    assert energy[3:6, 3:6].mean() > 10 * np.delete(energy.ravel(), [
        r * 10 + c for r in range(3, 6) for c in range(3, 6)]).mean()


def whole_array_ialm(d, lam, tol, max_iter, rho):
    """The numpy iteration updating whole arrays, one step after the other (the form the
    solver had before it worked in blocks of rows): the reference of the blocked one."""
    dn = math.sqrt(float(np.dot(d.ravel(), d.ravel())))
    two = math.sqrt(max(float(np.linalg.eigvalsh(d.T @ d)[-1]), 0.0))
    mu = 1.25 / two
    mu_bar = mu * 1e7
    p = d / max(two, float(np.abs(d).max()) / lam) / mu
    e = np.zeros_like(d)
    eye = np.eye(d.shape[1], dtype=d.dtype)
    it, r = 0, np.inf
    while it < max_iter:
        it += 1
        inv = 1.0 / mu
        m = d - e + p
        w, v = np.linalg.eigh(m.T @ m)
        s = np.sqrt(np.maximum(w, 0))
        factor = np.divide(np.maximum(s - inv, 0), s, out=np.zeros_like(s), where=s > 0)
        t = e + m @ (eye - (v * factor) @ v.T)
        c = np.clip(t, -lam * inv, lam * inv)
        e = t - c
        viol = c - p
        r = math.sqrt(float(np.dot(viol.ravel(), viol.ravel()))) / dn
        mu_next = min(mu * rho, mu_bar)
        p = c * (mu / mu_next)
        mu = mu_next
        if r < tol:
            break
    return d - e - viol, e, it, r


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("block_bytes", [256 << 10, 4096])
def test_blocked_numpy_iteration_equals_the_whole_array_one_bit_for_bit(rng, monkeypatch,
                                                                        dtype, block_bytes):
    # issue 32, item 5: the element-wise steps run in blocks of rows (the arrays stay in
    # cache); the values must be those of the whole-array steps, to the last bit
    from mexkit.temporal import rpca as module

    monkeypatch.setattr(module, "_BLOCK_BYTES", block_bytes)
    d = face_like(rng, m=2500, n=32).astype(dtype)   # 2500 rows: a last, partial block
    lam = 1.0 / math.sqrt(2500)
    a, e, it, r, ok = module._ialm_numpy(d, lam, 1e-7, 500, 1.5)
    ra, re, rit, rr = whole_array_ialm(d, lam, 1e-7, 500, 1.5)
    assert ok and it == rit > 5 and r == rr
    assert a.dtype == e.dtype == dtype
    assert np.array_equal(a, ra) and np.array_equal(e, re)
