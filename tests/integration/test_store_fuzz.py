"""Bit-flipped and truncated stores: only StoreError, never a crash or a hang."""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage

OK, STORE_ERROR, OTHER = 0, 3, 4


def _compute(task):
    r = np.random.default_rng(task.payload)
    return {"frames": r.integers(0, 256, (5, 20, 20), dtype=np.uint8),
            "flow": r.normal(size=(4, 2, 20, 20)).astype(np.float32)}, {"k": task.payload}


def _read_all(path: str, verify: bool) -> None:
    import os

    from mexkit.errors import StoreError
    from mexkit.io.store import open_store, validate_store

    try:
        with open_store(path, verify=verify) as s:
            for sample in s:
                sample.arrays()
                dict(sample.attrs)
            s.summary()
        validate_store(path)
    except StoreError:
        os._exit(STORE_ERROR)
    except BaseException:
        os._exit(OTHER)
    os._exit(OK)


def _variants(data: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:  # truncation
            b = b[: int(rng.integers(0, len(b)))]
        elif kind == 1:  # one bit anywhere
            pos = int(rng.integers(0, len(b)))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:  # a burst of random bytes
            pos = int(rng.integers(0, len(b) - 16))
            b[pos:pos + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        else:  # a flip in the header / superblock region
            pos = int(rng.integers(0, min(len(b), 2048)))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        out.append(bytes(b))
    return out


def _run(paths: list[Path], verify: bool) -> dict[str, int]:
    ctx = mp.get_context("fork")
    counts = {"ok": 0, "store_error": 0, "other": 0, "crash": 0, "hang": 0}
    for p in paths:
        proc = ctx.Process(target=_read_all, args=(str(p), verify))
        proc.start()
        proc.join(20)
        if proc.is_alive():
            proc.kill()
            proc.join()
            counts["hang"] += 1
        elif proc.exitcode == OK:
            counts["ok"] += 1
        elif proc.exitcode == STORE_ERROR:
            counts["store_error"] += 1
        elif proc.exitcode == OTHER:
            counts["other"] += 1
        else:
            counts["crash"] += 1
    return counts


#: damaged copies of the store per run (bench/chaos.py runs more)
VARIANTS = 80


@pytest.mark.parametrize("verify", [True, pytest.param(False, marks=pytest.mark.slow)],
                         ids=["checksum", "structure-only"])
def test_fuzzed_stores_only_raise_store_error(tmp_path, rng, verify):
    path = tmp_path / "good.h5"
    tasks = [Task(f"f/s{i}/c{i}", cache_key("fuzz", 1, {}, str(i)), {"subject": f"s{i}"}, i)
             for i in range(3)]
    run_stage(tasks, _compute, output=path, stage="fuzz", params={}, progress=False)
    data = path.read_bytes()
    paths = []
    for i, variant in enumerate(_variants(data, rng, VARIANTS)):
        p = tmp_path / f"v{i:03d}.h5"
        p.write_bytes(variant)
        paths.append(p)
    counts = _run(paths, verify=verify)
    assert counts["crash"] == 0 and counts["hang"] == 0 and counts["other"] == 0, counts
    assert counts["store_error"] + counts["ok"] == VARIANTS
    if verify:  # the whole-file checksum catches every change outside header padding
        assert counts["store_error"] >= 0.9 * VARIANTS
