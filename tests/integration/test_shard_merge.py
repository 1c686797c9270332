"""Sharded runs (--shard I/N), `mexkit merge`, and the shared cache (--cache)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import _toy_stage as toy
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.errors import StoreError
from mexkit.io.store import open_store, validate_store
from mexkit.pipeline.merge import merge_stores
from mexkit.pipeline.parallel import configure
from mexkit.pipeline.runner import run_stage

FLOW = ["flow", "--method", "farneback", "--pairs", "onset-apex"]


def _content(path: Path) -> dict:
    with open_store(path) as s:
        return {sid: {k: v.tolist() for k, v in s[sid].arrays().items()}
                for sid in s.sample_ids}


def _invoke(*args: str) -> object:
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def test_flow_shards_merge_into_the_plain_run(crop_store, tmp_path):
    plain = tmp_path / "plain.h5"
    assert _invoke(*FLOW, crop_store, "-o", plain).exit_code == 0
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.h5"
        r = _invoke(*FLOW, crop_store, "--shard", f"{i}/3", "-o", part)
        assert r.exit_code == 0, r.output
        parts.append(part)
    sizes = [len(open_store(p).sample_ids) for p in parts]
    assert sum(sizes) == 6  # each sample in exactly one shard
    merged = tmp_path / "merged.h5"
    r = _invoke("merge", *parts, "-o", merged)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(merged.resolve())
    assert validate_store(merged) == []
    assert _content(merged) == _content(plain)
    with open_store(merged) as m, open_store(plain) as p:
        assert m.stage == p.stage and m.params == p.params
        assert m.cache_keys() == p.cache_keys()


def test_crop_shards_merge_into_the_plain_crop(crop_store, synth_dataset, tmp_path):
    parts = []
    for i in range(2):
        part = tmp_path / f"crop{i}.h5"
        r = _invoke("crop", "--annotations", synth_dataset / "samples.csv", "--shard",
                    f"{i}/2", "-o", part)
        assert r.exit_code == 0, r.output
        parts.append(part)
    r = _invoke("merge", *parts, "-o", tmp_path / "crop.h5")
    assert r.exit_code == 0, r.output
    assert _content(tmp_path / "crop.h5") == _content(crop_store)


def _toy_part(path: Path, shard: tuple[int, int], params: dict, n: int = 9) -> Path:
    with configure(shard=shard):
        run_stage(toy.tasks(n), toy.square, output=path, stage="toy", params=params,
                  progress=False)
    return path


def test_merge_refuses_parts_of_other_runs_naming_the_part(tmp_path):
    a = _toy_part(tmp_path / "a.h5", (0, 2), {"k": 1})
    b = _toy_part(tmp_path / "b.h5", (1, 2), {"k": 2})
    r = _invoke("merge", a, b, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and str(b) in r.output and "params" in r.output
    assert not (tmp_path / "m.h5").exists()


def test_merge_refuses_a_damaged_part(tmp_path):
    a = _toy_part(tmp_path / "a.h5", (0, 2), {})
    b = _toy_part(tmp_path / "b.h5", (1, 2), {})
    data = bytearray(b.read_bytes())
    data[len(data) // 2] ^= 0xFF
    b.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="b.h5"):
        merge_stores([a, b], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_merge_keeps_failures_that_no_part_computed(tmp_path):
    tasks = toy.tasks(6)
    tasks[1].payload["fail"] = True
    with configure(shard=(0, 1)):
        run_stage(tasks, toy.square, output=tmp_path / "a.h5", stage="toy", params={},
                  progress=False)
    m = merge_stores([tmp_path / "a.h5"], tmp_path / "m.h5")
    assert m.computed == 5 and list(m.failures) == ["s001"]


@pytest.mark.slow  # three interpreters that import torch: 20-40 s on 2 shared cores
def test_slurm_array_shards_as_parallel_processes(crop_store, tmp_path):
    procs = []
    for i in range(3):
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_MIN="0",
                   SLURM_ARRAY_TASK_COUNT="3")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "mexkit", "-q", *FLOW, str(crop_store), "--shard", "auto",
             "-o", str(tmp_path / f"part{i}.h5")], env=env, stdout=subprocess.PIPE))
    outs = [Path(p.communicate(timeout=300)[0].decode().strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    r = _invoke("merge", *outs, "-o", tmp_path / "merged.h5")
    assert r.exit_code == 0, r.output
    plain = tmp_path / "plain.h5"
    assert _invoke(*FLOW, crop_store, "-o", plain).exit_code == 0
    assert _content(tmp_path / "merged.h5") == _content(plain)


def test_cache_is_reused_by_another_output(crop_store, tmp_path):
    cache = tmp_path / "cache"
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    assert _invoke(*FLOW, crop_store, "--cache", cache, "-o", first).exit_code == 0
    assert len(list(cache.glob("*/*.h5"))) == 6
    r = CliRunner().invoke(cli, [*FLOW, str(crop_store), "-o", str(second)],
                           env={"MEXKIT_CACHE": str(cache)})
    assert r.exit_code == 0, r.output
    assert "0 computed, 6 skipped" in r.output
    assert _content(first) == _content(second)


def test_two_concurrent_jobs_on_overlapping_samples_compute_each_sample_once(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "log"
    log.mkdir()
    every = toy.tasks(12, sleep=0.2, log=str(log))
    # b walks the overlap the other way, so both jobs reach the same samples at once
    jobs = {"a": every[:8], "b": every[4:][::-1]}
    results = {}

    def run(name):
        with configure(cache=str(cache)):
            results[name] = run_stage(jobs[name], toy.square, output=tmp_path / f"{name}.h5",
                                      stage="toy", params={}, progress=False)

    threads = [threading.Thread(target=run, args=(n,)) for n in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    computed = sorted(p.name.split(".")[0] for p in log.iterdir())
    assert computed == [f"s{i:03d}" for i in range(12)]  # each sample once
    assert results["a"].computed + results["b"].computed == 12
    assert results["a"].from_cache + results["b"].from_cache == 4
    plain = tmp_path / "plain.h5"
    run_stage(toy.tasks(12), toy.square, output=plain, stage="toy", params={},
              progress=False)
    want = _content(plain)
    for name, tasks in jobs.items():
        got = _content(tmp_path / f"{name}.h5")
        assert got == {t.sample_id: want[t.sample_id] for t in tasks}


def test_a_damaged_cache_entry_is_computed_again(tmp_path):
    cache = tmp_path / "cache"
    with configure(cache=str(cache)):
        run_stage(toy.tasks(2), toy.square, output=tmp_path / "a.h5", stage="toy",
                  params={}, progress=False)
    entry = sorted(cache.glob("*/*.h5"))[0]
    import h5py

    with h5py.File(entry, "r+") as fh:
        name = next(iter(fh["sample"]))
        fh["sample"][name][...] = 99  # data no longer matches its hash
    with configure(cache=str(cache)):
        r = run_stage(toy.tasks(2), toy.square, output=tmp_path / "b.h5", stage="toy",
                      params={}, progress=False)
    assert r.computed == 1 and r.from_cache == 1
    assert np.all(open_store(tmp_path / "b.h5")["s000"]["x"] < 99)


def test_a_claimed_key_is_not_claimed_twice(tmp_path):
    from mexkit.pipeline.cache import SampleCache

    cache = SampleCache(tmp_path / "c")
    first = cache.claim("ab" * 16)
    assert first is not None and cache.claim("ab" * 16) is None
    first.release()
    again = cache.claim("ab" * 16)
    assert again is not None
    again.release()
    with pytest.raises(StoreError):
        cache.claim("../../etc/passwd")


def test_reuse_seeds_a_run_from_a_validated_store(crop_store, tmp_path):
    theirs, ours = tmp_path / "theirs.h5", tmp_path / "ours.h5"
    assert _invoke(*FLOW, crop_store, "-o", theirs).exit_code == 0
    r = CliRunner().invoke(cli, [*FLOW, str(crop_store), "--reuse", str(theirs), "-o",
                                 str(ours)])
    assert r.exit_code == 0, r.output
    assert "0 computed, 6 skipped" in r.output
    assert _content(ours) == _content(theirs)
    # a damaged store is refused before anything is copied, naming it
    bad = tmp_path / "bad.h5"
    data = bytearray(theirs.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    r = _invoke(*FLOW, crop_store, "--reuse", bad, "-o", tmp_path / "x.h5")
    assert r.exit_code == 1 and "bad.h5" in r.output
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow  # three interpreters that import torch, started by submitit: 20-40 s
def test_submitit_example_runs_the_shards_as_local_processes(crop_store, tmp_path):
    pytest.importorskip("submitit")
    script = Path(__file__).parents[2] / "examples" / "submitit_shards.py"
    merged = tmp_path / "merged.h5"
    done = subprocess.run(
        [sys.executable, str(script), "--shards", "3", "--parts", str(tmp_path / "parts"),
         "--cluster", "local", "-o", str(merged), "--", *FLOW, str(crop_store)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "submitted 3 task(s) to local" in done.stderr
    parts = sorted((tmp_path / "parts").glob("part*.h5"))
    assert len(parts) == 3 and sum(len(open_store(p).sample_ids) for p in parts) == 6
    plain = tmp_path / "plain.h5"
    assert _invoke(*FLOW, crop_store, "-o", plain).exit_code == 0
    assert validate_store(merged) == []
    assert _content(merged) == _content(plain)


def test_submitit_example_stops_on_a_shard_that_cannot_run(crop_store, tmp_path):
    pytest.importorskip("submitit")
    script = Path(__file__).parents[2] / "examples" / "submitit_shards.py"
    done = subprocess.run(
        [sys.executable, str(script), "--shards", "2", "--parts", str(tmp_path / "parts"),
         "--cluster", "debug", "-o", str(tmp_path / "m.h5"), "--", *FLOW, str(crop_store),
         "--group", "0"], capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "shard 0/2 exited with status 2" in done.stderr
    assert not (tmp_path / "m.h5").exists()
