"""The stage runner: grouping, per-sample staging, lost workers, parent death, bad clips."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import _toy_stage as toy
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.errors import ParameterError
from mexkit.io.store import open_store
from mexkit.pipeline.parallel import chunked, configure, in_shard, parse_shard
from mexkit.pipeline.runner import run_stage

HERE = Path(__file__).parent


def _values(path: Path) -> dict[str, float]:
    with open_store(path) as s:
        return {sid: float(s[sid]["x"][0, 0]) for sid in s.sample_ids}


@pytest.mark.parametrize("compute", [toy.square, toy.square_batch])
@pytest.mark.parametrize("group", [1, 3])
def test_every_group_size_gives_the_same_store(tmp_path, compute, group):
    out = tmp_path / "g.h5"
    r = run_stage(toy.tasks(7), compute, output=out, stage="toy", params={}, group=group,
                  progress=False)
    assert r.computed == 7 and not r.failures
    assert _values(out) == {f"s{i:03d}": float(i) for i in range(7)}


def test_flow_group_1_computes_every_sample(crop_store, tmp_path):
    """`mexkit flow STORE --group 1` failed every sample ('Task' object is not subscriptable)."""
    one, many = tmp_path / "g1.h5", tmp_path / "g16.h5"
    for out, group in ((one, "1"), (many, "16")):
        r = CliRunner().invoke(cli, ["-q", "flow", str(crop_store), "--method", "farneback",
                                     "--pairs", "onset-apex", "--group", group, "-o", str(out)])
        assert r.exit_code == 0, r.output
    with open_store(one) as a, open_store(many) as b:
        assert a.sample_ids == b.sample_ids and len(a) == 6
        for sid in a.sample_ids:
            np.testing.assert_array_equal(a[sid]["flow"], b[sid]["flow"])


def test_flow_in_pieces_equals_one_sample_at_a_time(crop_store, tmp_path, monkeypatch):
    """Pieces give the flow of one sample at a time.  OpenCV's Farneback runs in the
    caller's thread (a thread inside OpenCV when the interpreter exits after Ctrl-C makes
    the process abort: issue 28); mexkit's TV-L1 waits on its workers in a background
    thread while the next samples are read."""
    import threading

    import mexkit.pipeline.flow as flow

    calls = []
    real = flow._flow_batch

    def spy(ref, mov, opt):
        calls.append((len(ref), threading.current_thread().name))
        return real(ref, mov, opt)

    one, pieces = tmp_path / "one.h5", tmp_path / "pieces.h5"
    flow.run_flow(crop_store, one, method="farneback", pairs="onset-apex", group=1,
                  progress=False)
    monkeypatch.setattr(flow, "_CPU_PIECE_PAIRS", 2)
    monkeypatch.setattr(flow, "_flow_batch", spy)
    r = flow.run_flow(crop_store, pieces, method="farneback", pairs="onset-apex",
                      device="cpu", progress=False)
    assert r.computed == 6 and not r.failures
    assert [n for n, _ in calls] == [2, 2, 2]
    assert all(name == threading.current_thread().name for _, name in calls)
    with open_store(one) as a, open_store(pieces) as b:
        assert a.sample_ids == b.sample_ids
        for sid in a.sample_ids:
            np.testing.assert_array_equal(a[sid]["flow"], b[sid]["flow"])


def test_interrupted_flow_keeps_samples_finished_before_the_interrupt(crop_store, tmp_path,
                                                                      monkeypatch):
    """With the default --group 16 an interrupted run had staged nothing."""
    import mexkit.pipeline.flow as flow

    with open_store(crop_store) as s:
        total = sum(s[sid].read("frames").shape[0] - 1 for sid in s.sample_ids)
    calls = []
    real = flow._flow_batch

    def flaky(ref, mov, opt):  # Ctrl-C once more than half of the pairs are solved
        if sum(calls) > total // 2:
            raise KeyboardInterrupt
        calls.append(len(ref))
        return real(ref, mov, opt)

    monkeypatch.setattr(flow, "_flow_batch", flaky)
    out = tmp_path / "f.h5"
    with pytest.raises(KeyboardInterrupt):
        flow.run_flow(crop_store, out, method="farneback", group=16, progress=False)
    staged = [p for p in (tmp_path / "f.h5.staging").glob("*.h5") if not p.name.startswith(".")]
    assert len(staged) >= 1  # what the first solver calls finished is on disk
    monkeypatch.setattr(flow, "_flow_batch", real)
    r = flow.run_flow(crop_store, out, method="farneback", group=16, progress=False)
    assert r.skipped == len(staged) and r.computed == 6 - len(staged) and not r.failures


def test_batched_compute_stages_each_sample_as_it_is_yielded(tmp_path):
    def stop_after_two(tasks):
        for t in tasks[:2]:
            yield toy.square(t)
        raise KeyboardInterrupt

    stop_after_two.batched = True
    out = tmp_path / "k.h5"
    with pytest.raises(KeyboardInterrupt):
        run_stage(toy.tasks(5), stop_after_two, output=out, stage="toy", params={}, group=5,
                  progress=False)
    r = run_stage(toy.tasks(5), toy.square_batch, output=out, stage="toy", params={}, group=5,
                  progress=False)
    assert (r.skipped, r.computed) == (2, 3)


def test_one_failure_in_a_batch_fails_alone(tmp_path):
    tasks = toy.tasks(4)
    tasks[2].payload["fail"] = True
    r = run_stage(tasks, toy.square_batch, output=tmp_path / "b.h5", stage="toy", params={},
                  group=4, progress=False)
    assert r.computed == 3 and list(r.failures) == ["s002"]
    assert "told to fail" in r.failures["s002"]


def test_a_lost_worker_is_retried(tmp_path):
    """A worker that dies (killed, out of memory) used to abort the whole run."""
    tasks = toy.tasks(6, die_once=str(tmp_path / "died"))
    out = tmp_path / "r.h5"
    r = run_stage(tasks, toy.square, output=out, stage="toy", params={}, jobs=2,
                  progress=False)
    assert (tmp_path / "died").exists()  # one worker did die
    assert r.computed == 6 and not r.failures
    assert _values(out) == {f"s{i:03d}": float(i) for i in range(6)}


def test_lost_samples_are_recorded_with_the_reason_when_retries_run_out(tmp_path):
    marker = tmp_path / "died"
    tasks = toy.tasks(4, die_once=str(marker))
    out = tmp_path / "r0.h5"
    with configure(retries=0):
        r = run_stage(tasks, toy.square, output=out, stage="toy", params={},
                      jobs=2, backend="loky", progress=False)
    assert marker.exists() and r.failures
    assert r.computed + len(r.failures) == 4
    assert all("lost with a worker after 1 attempt" in m for m in r.failures.values())
    with open_store(out) as s:
        assert set(s.failures) == set(r.failures)
    # a re-run computes only what is missing
    r2 = run_stage(tasks, toy.square, output=out, stage="toy", params={}, jobs=2,
                   progress=False)
    assert r2.computed == len(r.failures) and r2.skipped == r.computed and not r2.failures


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.slow  # suite time: test_reliability kills a command and counts its loky workers
def test_loky_workers_stop_when_the_main_process_is_killed(tmp_path):
    pidfile = tmp_path / "pids"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import _toy_stage as toy\n"
        "from mexkit.pipeline.runner import run_stage\n"
        f"t = toy.tasks(8, sleep=20, pidfile={str(pidfile)!r})\n"
        f"run_stage(t, toy.square, output={str(tmp_path / 'p.h5')!r}, stage='toy', params={{}},"
        " jobs=2, progress=False)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = {int(x) for x in pidfile.read_text().split()} if pidfile.exists() else set()
            if len(pids) >= 2:
                break
            time.sleep(0.1)
        assert len(pids) >= 2, "the workers did not start"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(3)
    alive = {p for p in pids if _state(p) not in ("gone", "Z")}
    for p in alive:  # do not leave them behind whatever the outcome
        os.kill(p, signal.SIGKILL)
    assert not alive, f"workers {sorted(alive)} outlived their parent"


def _same_samples(a: Path, b: Path) -> int:
    """Assert that two stores hold the same samples: arrays and attributes equal."""
    with open_store(a) as x, open_store(b) as y:
        assert sorted(x.sample_ids) == sorted(y.sample_ids)
        for sid in x.sample_ids:
            u, v = x[sid], y[sid]
            assert u.keys() == v.keys(), sid
            for name in u.keys():
                assert np.array_equal(u.read(name), v.read(name), equal_nan=True), (sid, name)
            assert u.attrs.keys() == v.attrs.keys(), sid
            for key in u.attrs:
                p, q = np.asarray(u.attrs[key]), np.asarray(v.attrs[key])
                assert np.array_equal(p, q, equal_nan=p.dtype.kind == "f"), (sid, key)
        return len(x.sample_ids)


def test_crop_in_threads_sharing_dlib_equals_one_job(synth_dataset, crop_store, tmp_path):
    """Threads shared one dlib detector and its scores differed from -j 1 in some samples;
    its calls now take turns (the shape predictor, stateless, is shared as it is), so a
    crop with --backend threading is the crop of one job, sample for sample."""
    out = tmp_path / "t.crop.h5"
    r = CliRunner().invoke(cli, ["-q", "crop", "--annotations",
                                 str(synth_dataset / "samples.csv"), "-j", "2", "--backend",
                                 "threading", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert _same_samples(out, crop_store) == 6


def test_crop_refuses_threading_with_fans_shared_detector(synth_dataset, tmp_path):
    r = CliRunner().invoke(cli, ["-q", "crop", "--annotations",
                                 str(synth_dataset / "samples.csv"), "--detector", "fan",
                                 "-j", "2", "--backend", "threading",
                                 "-o", str(tmp_path / "t.crop.h5")])
    assert r.exit_code == 2, r.output
    assert "threading" in r.output and "loky" in r.output and "'fan'" in r.output
    assert not (tmp_path / "t.crop.h5").exists()


def _write_bad_videos(root: Path, synth_dataset: Path) -> Path:
    import shutil

    import cv2

    src = sorted((synth_dataset / "sub01").iterdir())[0]
    shutil.copytree(src, root / "folder")
    frames = [cv2.imread(str(p)) for p in sorted(src.iterdir())]
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(root / "good.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 100, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    data = (root / "good.avi").read_bytes()
    (root / "trunc.avi").write_bytes(data[: len(data) // 3])
    (root / "empty.avi").write_bytes(b"")
    (root / "notes.avi").write_text("not a video\n")
    rows = ["subject,clip,path,fps,onset,apex,offset,label"]
    for i, name in enumerate(["folder", "good.avi", "trunc.avi", "empty.avi", "notes.avi"]):
        rows.append(f"sub{i},c{i},{name},100,0,5,12,positive")
    (root / "samples.csv").write_text("\n".join(rows) + "\n")
    return root / "samples.csv"


def test_bad_videos_fail_alone_in_crop(synth_dataset, tmp_path):
    """A truncated, empty or non-video file among good clips aborted crop with no store.

    The truncated video is counted by decoding (issue 28): its row, whose offset lies
    past the frames that decode, is skipped when the sheet is read, with a warning that
    names the file and its frames."""
    sheet = _write_bad_videos(tmp_path, synth_dataset)
    out = tmp_path / "bad.crop.h5"
    r = CliRunner().invoke(cli, ["crop", "--annotations", str(sheet), "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert re.search(r"clip 'c2': offset 12 but .*trunc.avi has \d+ frames.*row skipped",
                     r.stderr), r.stderr
    with open_store(out) as s:
        assert sorted(s[sid].attrs["subject"] for sid in s.sample_ids) == ["sub0", "sub1"]
        failed = {sid.split("/")[1]: msg for sid, msg in s.failures.items()}
        assert sorted(failed) == ["sub3", "sub4"]
        assert "empty.avi" in failed["sub3"] and "empty" in failed["sub3"]
        assert "notes.avi" in failed["sub4"]


def test_chunks_and_shards():
    assert chunked(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    ids = [f"d/s{i}/c{i}" for i in range(200)]
    parts = [[s for s in ids if in_shard(s, (i, 4))] for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(ids)  # every sample in exactly one shard
    assert all(25 < len(p) < 75 for p in parts)
    # stable when samples are added
    more = ids + [f"e/s{i}/c{i}" for i in range(50)]
    assert [s for s in more if in_shard(s, (1, 4)) and s in ids] == parts[1]
    assert parse_shard("2/5") == (2, 5)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1",
                                "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    assert parse_shard("auto", {"SGE_TASK_ID": "3", "SGE_TASK_FIRST": "1",
                                "SGE_TASK_LAST": "5", "SGE_TASK_STEPSIZE": "1"}) == (2, 5)
    assert parse_shard("auto/3", {"PBS_ARRAYID": "0"}) == (0, 3)
    for bad in ("5/5", "x/2", "1/0", "auto"):
        with pytest.raises(ParameterError):
            parse_shard(bad, {})
