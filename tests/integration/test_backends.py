"""Every backend of the parallel map runs a grouped stage (flow) and gives the same store."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import _toy_stage as toy
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store
from mexkit.pipeline.runner import run_stage

FLOW = ["flow", "--method", "farneback", "--pairs", "onset-apex", "--group", "2"]


def _flow(crop_store: Path, out: Path, *extra: str) -> None:
    r = CliRunner().invoke(cli, ["-q", *FLOW, str(crop_store), "-o", str(out), *extra])
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def reference(crop_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    _flow(crop_store, out)
    return out


def _same(a: Path, b: Path) -> None:
    with open_store(a) as x, open_store(b) as y:
        assert x.sample_ids == y.sample_ids and len(x) == 6
        assert not x.failures and not y.failures
        for sid in x.sample_ids:
            np.testing.assert_array_equal(x[sid]["flow"], y[sid]["flow"])


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_local_backends_run_a_grouped_stage(crop_store, reference, tmp_path, backend):
    out = tmp_path / f"{backend}.h5"
    _flow(crop_store, out, "-j", "2", "--backend", backend)
    _same(reference, out)


@pytest.fixture
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                            dashboard_address=None) as client:
        yield client


def test_dask_runs_a_grouped_stage(crop_store, reference, tmp_path, dask_client):
    """`flow -j 2 --backend dask` failed with a raw 'Invalid backend' / 'create a Client'."""
    out = tmp_path / "dask.h5"
    _flow(crop_store, out, "-j", "2", "--backend", "dask")
    _same(reference, out)


def test_dask_scheduler_address(crop_store, reference, tmp_path, dask_client):
    out = tmp_path / "dask-address.h5"
    _flow(crop_store, out, "-j", "2", "--backend", "dask", "--scheduler",
          dask_client.scheduler.address)
    _same(reference, out)


def test_unreachable_scheduler_is_a_clear_error(crop_store, tmp_path):
    pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        r = CliRunner().invoke(cli, ["-q", *FLOW, str(crop_store), "-o",
                                     str(tmp_path / "x.h5"), "-j", "2", "--backend", "dask",
                                     "--scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == 2 and "Dask scheduler" in r.output


@pytest.mark.slow  # ray.init takes about 20 s on the 2 shared cores of the CI machine
def test_ray_runs_a_grouped_stage(crop_store, reference, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray.h5"
    _flow(crop_store, out, "-j", "2", "--backend", "ray")
    _same(reference, out)


@pytest.mark.slow  # a 2-process Dask cluster starts in 10-20 s on 2 shared cores
def test_dask_cluster_loses_a_worker_mid_run(tmp_path):
    """A killed Dask worker loses nothing finished; the rest is retried or recorded."""
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "k.h5"
    tasks = toy.tasks(16, sleep=0.5)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        staging = tmp_path / "k.h5.staging"
        killed = []

        def kill_one():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if staging.exists() and any(not p.name.startswith(".")
                                            for p in staging.glob("*.h5")):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pids[0], signal.SIGKILL)
                        killed.append(pids[0])
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one)
        killer.start()
        r = run_stage(tasks, toy.square, output=out, stage="toy", params={}, jobs=2,
                      backend="dask", scheduler=cluster.scheduler_address, progress=False)
        killer.join()
    assert killed, "no worker was killed during the run"
    assert r.computed + len(r.failures) == 16
    for msg in r.failures.values():
        assert "lost with a worker" in msg
    with open_store(out) as s:
        for sid in s.sample_ids:
            assert s[sid]["x"][0, 0] == int(sid[1:])
    r2 = run_stage(tasks, toy.square, output=out, stage="toy", params={}, progress=False)
    assert r2.computed == len(r.failures) and r2.skipped == r.computed
