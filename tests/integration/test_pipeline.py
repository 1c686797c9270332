"""End to end on synthetic data: crop -> flow -> train, through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store


def _run(*args):
    r = CliRunner().invoke(cli, ["-q", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


def _truth_in_crop(truth_flow: np.ndarray, M: np.ndarray, size: int) -> np.ndarray:
    """Map a frame-coordinate flow field into the crop: F_c(x_c) = A F(A^-1 (x_c - b))."""
    Minv = cv2.invertAffineTransform(M)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    mx = (Minv[0, 0] * xs + Minv[0, 1] * ys + Minv[0, 2]).astype(np.float32)
    my = (Minv[1, 0] * xs + Minv[1, 1] * ys + Minv[1, 2]).astype(np.float32)
    u = cv2.remap(truth_flow[0], mx, my, cv2.INTER_LINEAR)
    v = cv2.remap(truth_flow[1], mx, my, cv2.INTER_LINEAR)
    A = M[:, :2]
    return np.stack([A[0, 0] * u + A[0, 1] * v, A[1, 0] * u + A[1, 1] * v])


@pytest.fixture(scope="module")
def flow_stores(crop_store, tmp_path_factory):
    d = tmp_path_factory.mktemp("flow")
    ours = _run("flow", crop_store, "--pairs", "onset-apex", "--strain", "--features", "mean",
                "--method", "tvl1", "-o", d / "ours.h5")
    ref = _run("flow", crop_store, "--pairs", "onset-apex", "--method", "tvl1-opencv",
               "-o", d / "opencv.h5")
    return ours, ref


def test_tvl1_on_synth_frames_matches_opencv_accuracy(flow_stores, synth_dataset):
    ours, ref = flow_stores
    errs = {"ours": [], "opencv": [], "zero": []}
    with open_store(ours) as a, open_store(ref) as b:
        for sid in a.sample_ids:
            s = a[sid]
            onset, apex = s["pairs"][0]
            truth = np.load(synth_dataset / "truth" / s.attrs["subject"] /
                            f"{s.attrs['clip']}.npz", allow_pickle=False)["flow"]
            # truth fields are from frame 0; the pair is (onset, apex)
            field = truth[apex] - truth[onset]
            with open_store(a.upstream[0]["path"]) as crops:
                M = crops[sid]["transforms"][0]
            t = _truth_in_crop(field, M, 128)[:, 12:-12, 12:-12]
            for name, flow in (("ours", s["flow"][0]), ("opencv", b[sid]["flow"][0]),
                               ("zero", np.zeros_like(s["flow"][0]))):
                errs[name].append(np.linalg.norm(flow[:, 12:-12, 12:-12] - t, axis=0).mean())
    ours_epe, cv_epe, zero = (float(np.mean(errs[k])) for k in ("ours", "opencv", "zero"))
    assert ours_epe <= 1.10 * cv_epe, (ours_epe, cv_epe)
    assert ours_epe < 0.6 * zero  # the flow explains most of the true motion


def test_flow_store_carries_what_training_needs(flow_stores):
    ours, _ = flow_stores
    with open_store(ours) as s:
        assert s.stage == "flow" and s.params["pairs"] == "onset-apex"
        for sample in s:
            P = len(sample["pairs"])
            assert P == 1 and sample["flow"].shape == (1, 2, 128, 128)
            assert sample["strain"].shape == (1, 128, 128)
            assert sample["landmarks"].shape == (1, 68, 2)
            assert sample["pairs"][0, 0] == sample.attrs["onset"]
            assert sample["pairs"][0, 1] == sample.attrs["apex"]


def test_train_mean_loso_and_evaluate_predictions(flow_stores, tmp_path):
    ours, _ = flow_stores
    results = _run("train", ours, "--model", "mean", "--protocol", "loso", "--epochs", 5,
                   "-o", tmp_path / "run")
    doc = json.loads(Path(results).read_text())
    assert doc["config"]["model"] == "mean" and doc["n_samples"] == 6
    with open_store(ours) as store:
        subjects = {store[sid].attrs["subject"] for sid in store.sample_ids}
    import csv

    with open(tmp_path / "run" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # leave-one-subject-out: one fold per subject, each testing that subject only
    assert len(doc["per_fold"]) == len(subjects) == 2
    tested = {f: {r["subject"] for r in rows if r["fold"] == f} for f in doc["per_fold"]}
    assert all(len(v) == 1 for v in tested.values())
    assert set().union(*tested.values()) == subjects
    assert (tmp_path / "run" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "run" / "training.png").stat().st_size > 1000
    assert set(doc["training"]) == set(doc["per_fold"])
    for history in doc["training"].values():
        assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5]
        assert all(np.isfinite(e["loss"]) and 0 <= e["accuracy"] <= 1 for e in history)
    r = CliRunner().invoke(cli, ["evaluate", "--json", str(tmp_path / "run" / "predictions.csv")])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    for key in ("accuracy", "uf1", "uar"):
        a, b = again["pooled"][key], doc["pooled"][key]
        assert (a is None and b is None) or abs(a - b) < 1e-9
    # a second run finds every fold done and trains nothing
    r = CliRunner().invoke(cli, ["-v", "train", ours, "--model", "mean", "--epochs", "5",
                                 "-o", str(tmp_path / "run")])
    assert r.exit_code == 0 and "already done" in r.stderr
    assert json.loads(Path(results).read_text())["training"] == doc["training"]


def test_schedule_option_reaches_the_results(flow_stores, tmp_path):
    ours, _ = flow_stores
    results = _run("train", ours, "--model", "mean", "--epochs", 2, "--schedule", "step:1:0.5",
                   "-o", tmp_path / "run")
    doc = json.loads(Path(results).read_text())
    assert doc["config"]["schedule"] == {"kind": "step", "step_size": 1, "gamma": 0.5}
    r = CliRunner().invoke(cli, ["train", str(ours), "--model", "mean", "--schedule",
                                 "linear:3", "-o", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "Invalid learning-rate schedule 'linear:3'" in r.stderr
    assert not (tmp_path / "bad").exists()  # a refused command leaves no results folder


def test_missing_model_input_names_the_producing_command(crop_store, tmp_path):
    r = CliRunner().invoke(cli, ["train", str(crop_store), "--model", "mean", "--epochs", "1",
                                 "-o", str(tmp_path / "x")])
    assert r.exit_code == 1
    assert "mexkit flow --pairs onset-apex --features mean" in r.stderr


def test_shell_pipeline(synth_dataset, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    py = f"{sys.executable} -m mexkit"
    cmd = (f"set -o pipefail; cd {tmp_path} && "
           f"{py} -q crop --annotations {synth_dataset / 'samples.csv'} -o c.h5 "
           f"| {py} -q flow - --pairs onset-apex --features mean --method farneback "
           f"| {py} -q train - --model mean --epochs 2 --fold-jobs 1 -o run")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(tmp_path / "run" / "results.json")


def test_final_model_predicts_new_clips(flow_stores, tmp_path):
    ours, _ = flow_stores
    _run("train", ours, "--model", "mean", "--epochs", 3, "--final", "-o", tmp_path / "run")
    assert (tmp_path / "run" / "model.json").exists()
    out = _run("predict", ours, "--results", tmp_path / "run", "-o", tmp_path / "p.csv")
    r = CliRunner().invoke(cli, ["evaluate", "--json", out])
    assert r.exit_code == 0, r.output
    pooled = json.loads(r.stdout)["pooled"]
    import csv

    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    # every sample is scored: the true column is filled and the metrics agree with it
    assert all(row["true"] for row in rows)
    assert int(np.sum(pooled["confusion_matrix"])) == len(rows) == 6
    hits = sum(row["true"] == row["pred"] for row in rows)
    assert pooled["accuracy"] == pytest.approx(hits / len(rows))
    lines = Path(out).read_text().splitlines()
    assert lines[0].startswith("sample_id,subject,dataset,fold,true,pred,score_")
    assert len(lines) == 7


def test_mean_region_options_from_the_cli(crop_store, tmp_path):
    plain = _run("flow", crop_store, "--pairs", "onset-apex", "--method", "farneback",
                 "--features", "mean", "--mean-input", "paper", "-o", tmp_path / "plain.h5")
    soft = _run("flow", crop_store, "--pairs", "onset-apex", "--method", "farneback",
                "--features", "mean", "--mean-input", "paper", "--mask-eyes",
                "--remove-head-motion",
                "-o", tmp_path / "soft.h5")
    with open_store(plain) as a, open_store(soft) as b:
        assert b.params["mask_eyes"] and b.params["remove_head_motion"]
        for sid in a.sample_ids:
            ra, rb = a[sid]["mean_regions"], b[sid]["mean_regions"]
            assert ra.shape == rb.shape == (1, 3, 42, 42)
            # masked eye pixels are exactly zero in every channel of the top half
            assert (rb[0, :, :21] == 0).sum() > (ra[0, :, :21] == 0).sum()
            np.testing.assert_array_equal(a[sid]["flow"], b[sid]["flow"])  # stored flow raw


def _predictions(folder):
    import csv

    with open(Path(folder) / "predictions.csv", newline="") as fh:
        return {r["sample_id"]: r for r in csv.DictReader(fh)}


def test_fold_jobs_give_the_same_results(flow_stores, tmp_path):
    ours, _ = flow_stores
    _run("train", ours, "--model", "mean", "--epochs", 3, "-o", tmp_path / "one")
    _run("train", ours, "--model", "mean", "--epochs", 3, "--fold-jobs", 2,
         "-o", tmp_path / "two")
    a, b = _predictions(tmp_path / "one"), _predictions(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 6
    for sid, row in a.items():
        assert row["pred"] == b[sid]["pred"] and row["fold"] == b[sid]["fold"]
        for key in row:
            if key.startswith("score_"):
                assert abs(float(row[key]) - float(b[sid][key])) < 1e-4


def _fold_workers() -> list[int]:
    """Live loky worker processes of this process (the fold workers)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_bytes()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        if int(ppid) == os.getpid() and state != b"Z" and b"popen_loky_posix" in cmd:
            found.append(int(d))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the fold workers in /proc")
def test_a_fold_worker_killed_mid_training_is_trained_again(flow_stores, tmp_path,
                                                            monkeypatch):
    """A fold worker killed with SIGKILL after its first epoch: the run retries the folds
    it lost on a new pool (resuming their checkpoints) and finishes every fold."""
    import signal
    import threading
    import time

    ours, _ = flow_stores
    out = tmp_path / "run"
    killed: list[int] = []
    # a checkpoint after every epoch (the workers inherit the environment)
    monkeypatch.setenv("MEXKIT_CHECKPOINT_SECONDS", "0")

    def kill_a_worker_after_an_epoch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if any((out / "checkpoints").glob("*/*.safetensors")):
                workers = _fold_workers()
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed.append(workers[0])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_worker_after_an_epoch, daemon=True)
    killer.start()
    r = CliRunner().invoke(cli, ["train", str(ours), "--model", "mean", "--epochs", "4",
                                 "--fold-jobs", "2", "-o", str(out)])
    killer.join(10)
    assert killed, "no fold worker was killed"
    assert r.exit_code == 0, r.output
    assert "lost with a worker" in r.stderr and "training them again (1 of 2)" in r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["n_samples"] == 6 and len(doc["per_fold"]) == 2
    for history in doc["training"].values():
        assert [e["epoch"] for e in history][-1] == 4
    assert killed[0] not in _fold_workers()


@pytest.mark.slow  # DDP itself is tested fast in tests/unit/test_train.py
def test_same_train_command_under_torchrun(flow_stores, tmp_path):
    """DDP on CPU (gloo, loopback): the user's command only gains the launcher."""
    ours, _ = flow_stores
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2",
                        "-m", "mexkit", "-q", "train", ours, "--model", "mean", "--epochs", "2",
                        "--batch-size", "8", "-o", str(tmp_path / "ddp")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == str(tmp_path / "ddp" / "results.json")
    doc = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert doc["n_samples"] == 6 and len(doc["per_fold"]) == 2
    # the same global batch in one process: the same sample order and initialisation;
    # MEAN's batch norm sees 4 samples per process instead of 8 and its dropout masks
    # are drawn per process, so scores agree only within a tolerance
    _run("train", ours, "--model", "mean", "--epochs", 2, "--batch-size", 8,
         "-o", tmp_path / "single")
    one, two = _predictions(tmp_path / "single"), _predictions(tmp_path / "ddp")
    assert one.keys() == two.keys()
    diffs = [abs(float(row[k]) - float(two[sid][k])) for sid, row in one.items()
             for k in row if k.startswith("score_")]
    print("DDP vs one process: max score difference", max(diffs))
    assert max(diffs) < 0.02   # seen: 0.0028


@pytest.mark.slow
def test_atnet_chain_from_crop_to_results(synth_dataset, tmp_path):
    """ATNet's own chain: 224x224 RGB crops, TIM to 65 frames, 64 flows around the apex,
    direction-magnitude feature and apex frame; both streams and each one alone train."""
    crop = _run("crop", "--annotations", synth_dataset / "samples.csv", "--rgb", "--size",
                224, "-o", tmp_path / "a.crop.h5")
    tim = _run("tim", crop, "-n", 65, "-o", tmp_path / "a.tim.h5")
    flow = _run("flow", tim, "--pairs", "apex-window", "--method", "farneback", "--features",
                "dm", "--with-apex", "-o", tmp_path / "a.flow.h5")
    with open_store(flow) as s:
        n = len(s.sample_ids)
        sample = s[s.sample_ids[0]]
        assert sample["direction_magnitude"].shape == (64, 128)
        assert sample["apex_image"].shape == (224, 224, 3)
    for model in ("atnet", "atnet-temporal", "atnet-spatial"):
        results = _run("train", flow, "--model", model, "--epochs", 1, "--batch-size", 2,
                       "-o", tmp_path / model)
        doc = json.loads(Path(results).read_text())
        assert doc["config"]["model"] == model and doc["n_samples"] == n
        expected = {"atnet": ["apex_rgb", "direction_magnitude"],
                    "atnet-temporal": ["direction_magnitude"],
                    "atnet-spatial": ["apex_rgb"]}[model]
        assert doc["config"]["inputs"] == expected
        assert len((tmp_path / model / "predictions.csv").read_text().splitlines()) == n + 1
    # the fused model trained on all samples predicts new clips
    _run("train", flow, "--model", "atnet", "--epochs", 1, "--batch-size", 2, "--final",
         "-o", tmp_path / "atnet")
    out = _run("predict", flow, "--results", tmp_path / "atnet", "-o", tmp_path / "p.csv")
    lines = Path(out).read_text().splitlines()
    assert len(lines) == n + 1 and lines[0].startswith("sample_id,subject,dataset,fold,true,pred")
    # the MEAN store lacks ATNet's inputs: the error names the command that makes them
    r = CliRunner().invoke(cli, ["train", str(crop), "--model", "atnet", "--epochs", "1",
                                 "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "--with-apex" in r.stderr


def test_fold_jobs_auto_takes_the_cores_on_cpu_and_one_on_a_gpu(monkeypatch):
    from mexkit.errors import ParameterError
    from mexkit.pipeline import training

    class Samples:
        def __init__(self, size):
            self.size = size

        def nbytes(self):
            return self.size

    monkeypatch.setattr(training, "usable_cores", lambda: 4)
    monkeypatch.setattr(training, "_available_memory", lambda: 8 * 2**30)
    assert training._fold_jobs("auto", "cpu", Samples(2**20)) == 4
    assert training._fold_jobs("auto", "cuda:0", Samples(2**20)) == 1
    # the samples are copied into every worker: no more copies than half the memory holds
    assert training._fold_jobs("auto", "cpu", Samples(2 * 2**30)) == 2
    assert training._fold_jobs("auto", "cpu", Samples(16 * 2**30)) == 1
    assert training._fold_jobs(3, "cpu", Samples(16 * 2**30)) == 3  # the user's number
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert training._fold_jobs("auto", "cpu", Samples(1)) == 1  # torchrun spreads the folds
    for bad in (0, "zero", -2):
        with pytest.raises(ParameterError, match="fold_jobs"):
            training._fold_jobs(bad, "cpu", Samples(1))
    r = CliRunner().invoke(cli, ["train", "x.h5", "--fold-jobs", "0"])
    assert r.exit_code == 2 and "neither a positive integer nor 'auto'" in r.output


def test_results_imports_start_when_a_fold_worker_has_nothing_left(monkeypatch):
    # what writing the results imports (scikit-learn, matplotlib) loads on the core a
    # worker leaves idle, once: 5 folds on 2 workers leave one idle after the 4th result
    import types

    from mexkit.pipeline import training

    calls = []
    received = []

    def fake_map(func, chunks, *, jobs, backend):
        for (_job, item), in chunks:
            received.append(item[1])
            yield {"name": item[1], "rows": []}

    monkeypatch.setattr(training, "parallel_map", fake_map)
    monkeypatch.setattr(training, "_prefetch_results_imports",
                        lambda: calls.append(len(received)))
    job = training._FoldJob(base=types.SimpleNamespace(device="cpu"), table=None,
                            net_options={}, out=Path("."), progress=False, n_folds=5,
                            threads=0)
    pending = [(k, f"s{k}", None, None, "") for k in range(5)]
    assert sorted(training._train_folds(job, pending, 2, None)) == [f"s{k}" for k in range(5)]
    assert calls == [4, 5]  # from the 4th result on (the function itself runs once)
    calls.clear()
    training._train_folds(job, pending, 1, None)
    assert calls == []  # one fold at a time: no core is left idle


def test_results_imports_prefetched_once(monkeypatch):
    from mexkit.pipeline import training

    monkeypatch.setattr(training, "_PREFETCHED", [])
    training._prefetch_results_imports()
    training._prefetch_results_imports()
    assert len(training._PREFETCHED) == 1
    training._PREFETCHED[0].join(timeout=60)
    assert {"mexkit.learn.metrics", "matplotlib.pyplot"} <= set(sys.modules)


@pytest.mark.slow
def test_fold_workers_start_without_scikit_learn():
    # a loky fold worker imports this module to unpickle its fold: scikit-learn (more than
    # a second of CPU) is for the splits and the metrics of the main process only
    code = ("import sys, mexkit.pipeline.training\n"
            "print([m for m in ('sklearn', 'matplotlib') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_folds_trained_by_other_code_are_trained_again(flow_stores, tmp_path, monkeypatch):
    """A finished fold was kept after the model's code changed (e.g. PSN's initialisation)."""
    from mexkit.pipeline import training

    ours, _ = flow_stores
    args = ["-v", "train", str(ours), "--model", "mean", "--epochs", "1", "--fold-jobs", "1",
            "-o", str(tmp_path / "run")]
    assert CliRunner().invoke(cli, args).exit_code == 0
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "already done" in r.stderr
    monkeypatch.setattr(training, "_code_digest", lambda spec: "other code")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "already done" not in r.stderr


def test_a_fold_redone_on_other_data_trains_afresh(flow_stores, crop_store, tmp_path):
    """A fold whose samples changed was 'redone' by resuming the finished checkpoint of the
    earlier run in the same folder: its network, trained on the old data, was scored on
    the new samples (seen with `examples/akmnet_loso.sh` run again with other data)."""
    ours, _ = flow_stores
    other = _run("flow", crop_store, "--pairs", "onset-apex", "--features", "mean", "--method",
                 "farneback", "-o", tmp_path / "farneback.h5")

    def train(store, folder):
        r = CliRunner().invoke(cli, ["-q", "train", str(store), "--model", "mean", "--epochs",
                                     "2", "--fold-jobs", "1", "-o", str(folder)])
        assert r.exit_code == 0, r.output
        return json.loads((folder / "results.json").read_text())

    train(ours, tmp_path / "reused")
    again = train(other, tmp_path / "reused")
    fresh = train(other, tmp_path / "fresh")
    def curves(results):
        return {fold: [(r["epoch"], r["loss"], r["accuracy"]) for r in records]
                for fold, records in results["training"].items()}

    assert curves(again) == curves(fresh)  # two epochs each, on the new data
    assert (tmp_path / "reused" / "predictions.csv").read_text() == \
        (tmp_path / "fresh" / "predictions.csv").read_text()
    # only the current key's checkpoints are kept
    folders = sorted(p.name for p in (tmp_path / "reused" / "checkpoints").iterdir())
    assert folders == sorted(p.name for p in (tmp_path / "fresh" / "checkpoints").iterdir())


def test_stale_checkpoints_go_but_nothing_else(tmp_path):
    """A fold's checkpoints under an old key are removed; other files, other folds'
    checkpoints and whatever a link points at are kept."""
    from mexkit.pipeline.training import _checkpoint_dir

    root = tmp_path / "checkpoints"
    old = root / "synth-casme2_sub01-0123456789ab"
    old.mkdir(parents=True)
    (old / "train.safetensors").write_bytes(b"old network")
    mixed = root / "synth-casme2_sub01-ba9876543210"
    mixed.mkdir()
    (mixed / "train.safetensors").write_bytes(b"old network")
    (mixed / "notes.txt").write_text("mine")
    other_fold = root / "synth-casme2_sub02-0123456789ab"
    other_fold.mkdir()
    (other_fold / "train.safetensors").write_bytes(b"other fold")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.safetensors").write_bytes(b"precious")
    (root / "synth-casme2_sub01-aaaaaaaaaaaa").symlink_to(elsewhere)

    folder = _checkpoint_dir(tmp_path, "synth-casme2/sub01", "f" * 64)
    assert folder == root / ("synth-casme2_sub01-" + "f" * 12)
    assert not old.exists()
    assert not (mixed / "train.safetensors").exists()
    assert (mixed / "notes.txt").read_text() == "mine"
    assert (other_fold / "train.safetensors").read_bytes() == b"other fold"
    assert (elsewhere / "train.safetensors").read_bytes() == b"precious"
