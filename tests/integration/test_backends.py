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

#: the scheduler's HTTP server (health, metrics) on a free port: Dask's default 8787 may
#: be held by another cluster on the machine (Dask then warns, an error in this suite)
_FREE_HTTP_PORT = {"dashboard_address": "127.0.0.1:0"}
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


def _check_kept_and_resumed(r, tasks, out) -> None:
    """After a worker was killed: samples kept or failed as lost, a re-run finishes the rest."""
    assert r.computed + len(r.failures) == 16
    for msg in r.failures.values():
        assert "lost with a worker" in msg
    with open_store(out) as s:
        for sid in s.sample_ids:
            assert s[sid]["x"][0, 0] == int(sid[1:])
    r2 = run_stage(tasks, toy.square, output=out, stage="toy", params={}, progress=False)
    assert r2.computed == len(r.failures) and r2.skipped == r.computed


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_local_backends_run_a_grouped_stage(crop_store, reference, tmp_path, backend):
    out = tmp_path / f"{backend}.h5"
    _flow(crop_store, out, "-j", "2", "--backend", backend)
    _same(reference, out)


@pytest.fixture
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                            dashboard_address=None, scheduler_kwargs=_FREE_HTTP_PORT) as client:
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
                                  host="127.0.0.1", dashboard_address=None,
                                  scheduler_kwargs=_FREE_HTTP_PORT) as cluster, \
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
    _check_kept_and_resumed(r, tasks, out)


def _run_in_thread(limit_s: float, **kwargs):
    """run_stage in a thread; returns its result, or None if it is still waiting."""
    from mexkit.pipeline.parallel import configure

    box: dict = {}

    def target():
        with configure(stall_timeout=kwargs.pop("stall_timeout")):
            try:
                box["result"] = run_stage(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                box["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(limit_s)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _when_staged(staging: Path, action, deadline_s: float = 60) -> threading.Thread:
    """Call ``action()`` once a first sample is staged (in a thread)."""

    def wait():
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if staging.exists() and any(not p.name.startswith(".")
                                        for p in staging.glob("*.h5")):
                action()
                return
            time.sleep(0.02)

    th = threading.Thread(target=wait, daemon=True)
    th.start()
    return th


def _check_stopped_cleanly(r, out: Path, tasks) -> None:
    assert r is not None, "the stage waited for ever on a cluster without workers"
    assert r.failures and r.exit_code == 1
    assert r.computed + len(r.failures) == len(tasks)
    for msg in r.failures.values():
        assert "cluster lost all its workers" in msg, msg
    with open_store(out) as s:
        assert len(s.sample_ids) == r.computed and set(s.failures) == set(r.failures)
        for sid in s.sample_ids:
            assert s[sid]["x"][0, 0] == int(sid[1:])
    r2 = run_stage(tasks, toy.square, output=out, stage="toy", params={}, progress=False)
    assert r2.computed == len(r.failures) and r2.skipped == r.computed and not r2.failures


def test_dask_cluster_losing_every_worker_stops_cleanly(tmp_path):
    """A cluster left with no worker made the stage wait for ever (Dask waits for workers).

    The stall guard stops it: the finished samples are kept, the rest are
    recorded as failed with the reason, and a re-run computes only those.
    """
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "lost.h5"
    tasks = toy.tasks(12, sleep=0.2)
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None,
                                  scheduler_kwargs=_FREE_HTTP_PORT) as cluster:
        closer = _when_staged(tmp_path / "lost.h5.staging", lambda: cluster.scale(0))
        r = _run_in_thread(60, tasks=tasks, compute=toy.square, output=out, stage="toy",
                           params={}, jobs=2, backend="dask",
                           scheduler=cluster.scheduler_address, progress=False,
                           stall_timeout=1.0)
        closer.join(5)
    _check_stopped_cleanly(r, out, tasks)


@pytest.mark.slow  # starts two `dask worker` processes: 5-20 s on 2 shared cores
def test_dask_worker_processes_all_killed_stop_cleanly(tmp_path):
    """Two worker processes without a nanny, both killed with SIGKILL mid-run."""
    import subprocess
    import sys

    distributed = pytest.importorskip("distributed")
    out = tmp_path / "killed.h5"
    tasks = toy.tasks(16, sleep=0.3)
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None,
                                  scheduler_kwargs=_FREE_HTTP_PORT) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        workers = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
             "--no-nanny", "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            client.wait_for_workers(2, timeout=120)

            def kill_all():
                for w in workers:
                    w.kill()

            killer = _when_staged(tmp_path / "killed.h5.staging", kill_all)
            r = _run_in_thread(120, tasks=tasks, compute=toy.square, output=out,
                               stage="toy", params={}, jobs=2, backend="dask",
                               scheduler=cluster.scheduler_address, progress=False,
                               stall_timeout=3.0)
            killer.join(5)
        finally:
            for w in workers:
                w.kill()
                w.wait()
    _check_stopped_cleanly(r, out, tasks)


def test_stall_timeout_setting(monkeypatch):
    from mexkit.errors import ParameterError
    from mexkit.pipeline.parallel import DEFAULT_STALL_TIMEOUT, STALL_ENV, configure, stall_timeout

    monkeypatch.delenv(STALL_ENV, raising=False)
    assert stall_timeout() == DEFAULT_STALL_TIMEOUT == 300
    assert stall_timeout(environ={STALL_ENV: "12.5"}) == 12.5
    assert stall_timeout(environ={STALL_ENV: "0"}) == float("inf")
    with configure(stall_timeout=4.0):  # --stall-timeout wins over the environment
        assert stall_timeout(environ={STALL_ENV: "12.5"}) == 4.0
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ParameterError, match=STALL_ENV):
            stall_timeout(environ={STALL_ENV: bad})
    r = CliRunner().invoke(cli, ["flow", "--help"])
    assert "--stall-timeout" in r.output and STALL_ENV in r.output


@pytest.mark.slow  # ray.init takes 10-30 s on 2 shared cores
def test_ray_cluster_loses_a_worker_mid_run(tmp_path):
    """A killed Ray worker process loses nothing finished; the rest is retried or recorded."""
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray-k.h5"
    pidfile = tmp_path / "pids.txt"
    tasks = toy.tasks(16, sleep=0.5, pidfile=str(pidfile))
    # the workers import the toy stage from this folder
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(toy.__file__).parent)}})
    try:
        killed = []

        def kill_one():
            pid = int(pidfile.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        killer = _when_staged(tmp_path / "ray-k.h5.staging", kill_one, deadline_s=120)
        r = run_stage(tasks, toy.square, output=out, stage="toy", params={}, jobs=2,
                      backend="ray", progress=False)
        killer.join(5)
    finally:
        ray.shutdown()
    assert killed and killed[0] != os.getpid(), "no worker was killed during the run"
    _check_kept_and_resumed(r, tasks, out)


def test_ray_errors_that_a_retry_repeats_are_not_lost_workers():
    """A stage module Ray's workers could not import was retried, then called a lost worker."""
    E = pytest.importorskip("ray.exceptions")
    from mexkit.pipeline.parallel import is_lost_worker

    cannot_import = E.RayTaskError("run_batch", "tb", E.RaySystemError(
        "System error: No module named '_toy_stage'")).as_instanceof_cause()
    assert not is_lost_worker(cannot_import)
    assert is_lost_worker(E.ActorDiedError())
    assert is_lost_worker(E.RayTaskError("run_batch", "tb", E.WorkerCrashedError())
                          .as_instanceof_cause())
