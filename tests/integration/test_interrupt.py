"""Ctrl-C that keeps work (issue 28, item 3).

A long video is one sample: its flow is computed and staged in pieces, so an interrupted
or killed run keeps every finished piece and a re-run computes only the others, with the
same result as an uninterrupted run.  A Ctrl-C is never lost (one raised inside a
finaliser used to be printed as "Exception ignored" and the run went on to its end), and
the command ends with status 130 soon after it, in every stage and backend (the slow
tests here; the figures under load come from `python bench/chaos.py --only interrupt`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mexkit.io.store import open_store
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage

ROOT = Path(__file__).resolve().parents[2]


def _video(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth random texture drifting by a sub-pixel amount per frame (real motion)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (size + 16, size + 16)), (0, 0), 2.0)
    out = []
    for t in range(n):
        M = np.float64([[1, 0, -8 + 0.3 * np.sin(t / 5)], [0, 1, -8 + 0.2 * t / n]])
        out.append(cv2.warpAffine(base, M, (size, size)))
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def long_store(path: Path, frames: int, *, samples: int = 1, size: int = 32) -> Path:
    """A crop store of whole 'videos' (one sample each), as `mexkit crop --unit video`
    writes them."""
    def compute(task):
        return {"frames": _video(frames, size, task.payload)}, {
            "subject": f"s{task.payload}", "fps": 25.0, "n_frames": frames}

    tasks = [Task(f"d/s{i}/v{i}", cache_key("crop", 1, {}, f"{i}-{frames}-{size}"), {}, i)
             for i in range(samples)]
    run_stage(tasks, compute, output=path, stage="crop", params={"size": size},
              progress=False)
    return path


def _arrays(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with open_store(path) as s:
        return {sid: {k: s[sid].read(k) for k in s[sid].keys()} for sid in s.sample_ids}


def test_a_long_video_is_staged_in_pieces_and_resumed(tmp_path, monkeypatch):
    """Interrupted half-way, a 1-sample run kept its finished pieces; the re-run solved only
    the other pairs, and the store equals an uninterrupted run's, array for array."""
    import mexkit.pipeline.flow as flow

    crop = long_store(tmp_path / "v.crop.h5", 61)          # 60 consecutive pairs
    monkeypatch.setattr(flow, "_STAGE_PIECE_PAIRS", 8)      # pieces of 8 pairs: 8 pieces
    ref = tmp_path / "ref.h5"
    flow.run_flow(crop, ref, method="farneback", strain=True, progress=False)

    solved: list[int] = []
    real = flow._flow_batch

    def counting(ref_, mov, opt):
        solved.append(len(ref_))
        return real(ref_, mov, opt)

    def interrupted(ref_, mov, opt):  # Ctrl-C once 30 pairs are solved
        if sum(solved) >= 30:
            raise KeyboardInterrupt
        return counting(ref_, mov, opt)

    out = tmp_path / "v.flow.h5"
    monkeypatch.setattr(flow, "_flow_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        flow.run_flow(crop, out, method="farneback", strain=True, progress=False)
    assert not out.exists()
    pieces = [p for p in (tmp_path / "v.flow.h5.staging").glob("*.h5")]
    assert len(pieces) >= 2, "finished pieces were not kept"
    kept_pairs = 8 * len(pieces)

    solved.clear()
    monkeypatch.setattr(flow, "_flow_batch", counting)
    r = flow.run_flow(crop, out, method="farneback", strain=True, progress=False)
    assert r.computed == 1 and not r.failures
    assert sum(solved) == 60 - kept_pairs            # only the pieces not kept
    a, b = _arrays(ref), _arrays(out)
    assert a.keys() == b.keys()
    for sid in a:
        assert a[sid].keys() == b[sid].keys()
        for k in a[sid]:
            np.testing.assert_array_equal(a[sid][k], b[sid][k], err_msg=f"{sid}/{k}")
    assert not (tmp_path / "v.flow.h5.staging").exists()   # the pieces went with it


def test_a_damaged_piece_is_computed_again(tmp_path, monkeypatch):
    import mexkit.pipeline.flow as flow

    crop = long_store(tmp_path / "v.crop.h5", 25)
    monkeypatch.setattr(flow, "_STAGE_PIECE_PAIRS", 8)
    calls = []
    real = flow._flow_batch

    def stop_after_two_pieces(ref_, mov, opt):
        if sum(calls) >= 16:
            raise KeyboardInterrupt
        calls.append(len(ref_))
        return real(ref_, mov, opt)

    out = tmp_path / "v.flow.h5"
    monkeypatch.setattr(flow, "_flow_batch", stop_after_two_pieces)
    with pytest.raises(KeyboardInterrupt):
        flow.run_flow(crop, out, method="farneback", progress=False)
    pieces = sorted((tmp_path / "v.flow.h5.staging").glob("*.h5"))
    assert len(pieces) == 2
    import h5py

    with h5py.File(pieces[0], "r+") as fh:               # one value changed on disk
        g = fh["sample"]["flow"]
        g[0, 0, 0, 0] = g[0, 0, 0, 0] + 1.0
    monkeypatch.setattr(flow, "_flow_batch", real)
    flow.run_flow(crop, out, method="farneback", progress=False)
    ref = tmp_path / "ref.h5"
    flow.run_flow(crop, ref, method="farneback", progress=False)
    np.testing.assert_array_equal(_arrays(out)["d/s0/v0"]["flow"],
                                  _arrays(ref)["d/s0/v0"]["flow"])


class _RaisesInFinaliser:
    """Sends this process SIGINT from its finaliser: the KeyboardInterrupt is raised
    inside ``__del__``, where Python prints "Exception ignored" and drops it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):   # bytecodes run here, so the handler runs here
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_lost_in_a_finaliser_still_stops_the_run(tmp_path):
    done = []

    def compute(task):
        if task.payload == 1:
            _RaisesInFinaliser()        # created and dropped: its __del__ runs here
        done.append(task.payload)
        return {"x": np.full((2, 2), task.payload, np.float32)}, {}

    tasks = [Task(f"d/s/c{i}", cache_key("toy", 1, {}, str(i)), {}, i) for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        run_stage(tasks, compute, output=tmp_path / "t.h5", stage="toy", params={},
                  progress=False)
    assert done == [0, 1]          # stopped after the sample during which Ctrl-C came
    staged = list((tmp_path / "t.h5.staging").glob("*.h5"))
    assert len(staged) == 2        # both finished samples kept


# -- the command: status 130, soon after Ctrl-C, finished pieces kept --------------------------
def _run_and_interrupt(args: list[str], staging: Path, *, group: bool, after: float = 1.0,
                       env: dict | None = None) -> tuple[int, float, str]:
    """Start `mexkit ARGS`, send SIGINT ``after`` s after its staging folder appears (to its
    process group, as a terminal does, or to the process); return status, seconds to exit
    and stderr."""
    p = subprocess.Popen([sys.executable, "-m", "mexkit", *args], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True, start_new_session=True,
                         cwd=staging.parent, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120
    while not staging.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(after)
    t0 = time.monotonic()
    if group:
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    return p.returncode, time.monotonic() - t0, err


@pytest.mark.parametrize("jobs, group", [("1", False), ("2", True)], ids=["j1", "j2-group"])
def test_ctrl_c_during_flow_of_a_long_video_ends_the_command(tmp_path, jobs, group):
    """Before: the command waited for the whole video's flow (33 s in the issue) and kept
    nothing of it.  Now it ends long before the video is done, with status 130."""
    # enough pairs that the run is far from done at the signal (two videos of 400 frames
    # of 48 px were done in 1.5 s, before it, once the native engine had come)
    crop = long_store(tmp_path / "v.crop.h5", 1500, samples=4, size=64)
    out = tmp_path / "v.flow.h5"
    rc, seconds, err = _run_and_interrupt(
        ["flow", str(crop), "--pairs", "consecutive", "-o", str(out), "-j", jobs],
        tmp_path / "v.flow.h5.staging", group=group, after=1.5)
    assert rc == 130, err
    assert "interrupted; finished samples are kept" in err
    # 0.2 s here at load 10 on 2 cores; the code before waited for the video in progress
    # (6-8 s with -j 1, 15 s with -j 2).  The bound is generous (a shared, loaded machine);
    # the command's watchdog ends it 1.5 s after SIGINT if its main thread is stuck.
    assert seconds < 4, f"{seconds:.1f} s after Ctrl-C"
    assert not out.exists()


STAGES = [
    ("crop-every", ["crop", "{sheet}", "--mode", "every", "-o", "{out}"]),
    ("flow-farneback", ["flow", "{crop}", "--method", "farneback", "-o", "{out}"]),
    ("flow-tvl1-opencv", ["flow", "{crop}", "--method", "tvl1-opencv", "-o", "{out}"]),
    ("tim", ["tim", "{crop}", "-n", "400", "-o", "{out}"]),
    ("rpca", ["rpca", "{crop}", "-o", "{out}"]),
    ("keyframes", ["keyframes", "{crop}", "--method", "adaptive", "-o", "{out}"]),
    ("magnify", ["magnify", "{crop}", "--alpha", "15", "-o", "{out}"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["loky", "threading", "dask", "ray"])
@pytest.mark.parametrize("name, argv", STAGES, ids=[s[0] for s in STAGES])
def test_ctrl_c_ends_every_stage_on_every_backend(tmp_path, name, argv, backend):
    if backend in ("dask", "ray"):
        pytest.importorskip("distributed" if backend == "dask" else "ray")
    if name == "crop-every":
        from mexkit.pipeline.synth import write_casme2_like

        write_casme2_like(tmp_path / "data", n_subjects=2, clips_per_class=2, fps=100.0,
                          seed=5, image_format="png")
    # enough work that no stage ends before the signal: four such videos took TIM and the
    # key frames under a second on an idle machine once they had been made faster
    crop = long_store(tmp_path / "v.crop.h5", 300, samples=32, size=64)
    out = tmp_path / "x.h5"
    args = [a.format(crop=crop, out=out, sheet=tmp_path / "data" / "samples.csv")
            for a in argv] + ["-j", "2", "--backend", backend]
    rc, seconds, err = _run_and_interrupt(args, tmp_path / "x.h5.staging", group=True,
                                          after=2.0 if backend in ("dask", "ray") else 1.0)
    assert rc == 130, err[-2000:]
    assert seconds < 5, f"{name} on {backend}: {seconds:.1f} s after Ctrl-C"
