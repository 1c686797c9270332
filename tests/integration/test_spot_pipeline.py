"""MEAN's spot-then-recognize pipeline on small gap-flow stores."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.intervals import read_intervals
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage
from mexkit.pipeline.spotting import is_spotting_store, load_spot_videos, spot_loso, spot_store

N_FRAMES, GAP = 70, 2
# (onset, offset, kind, emotion) per video; the features carry a pattern inside them
EVENTS = {
    ("s1", "v1"): [(10, 15, "micro", "pos"), (40, 59, "macro", "neg")],
    ("s2", "v1"): [(30, 35, "micro", "neg"), (5, 24, "macro", "pos")],
}


def _compute(task):
    (subject, video), seed = task.payload
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.05, size=(N_FRAMES - GAP, 3, 42, 42)).astype(np.float32)
    for on, off, kind, emo in EVENTS[(subject, video)]:
        x[on:off + 1, 0 if kind == "micro" else 1] += 1.0
        x[on:off + 1, 2] += 1.0 if emo == "pos" else -1.0
    pairs = np.stack([np.arange(N_FRAMES - GAP), np.arange(GAP, N_FRAMES)], axis=1)
    return {"mean_regions": x, "pairs": pairs.astype(np.int64)}, {}


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("spot") / "videos.flow.h5"
    tasks = []
    for k, (subject, video) in enumerate(EVENTS):
        intervals = [{"onset": on, "offset": off, "kind": kind, "label": None, "emotion": emo}
                     for on, off, kind, emo in EVENTS[(subject, video)]]
        attrs = {"subject": subject, "video": video, "clip": video, "fps": 20.0,
                 "n_frames": N_FRAMES, "pair_mode": "gap", "intervals": intervals,
                 "dataset": "test"}
        tasks.append(Task(f"test/{subject}/{video}", cache_key("flow", 1, {}, str(k)), attrs,
                          ((subject, video), k)))
    run_stage(tasks, _compute, output=path, stage="flow", params={"pairs": "gap"},
              progress=False)
    return path


def test_store_is_read_with_its_intervals(gap_store):
    assert is_spotting_store(gap_store)
    videos = load_spot_videos(gap_store)
    assert [(v.subject, v.n_frames, v.gap, v.features.shape) for v in videos] == [
        ("s1", 70, 2, (68, 3, 42, 42)), ("s2", 70, 2, (68, 3, 42, 42))]
    assert [(t.onset, t.offset, t.type, t.emotion) for t in videos[0].truth] == [
        (10, 15, "micro", "pos"), (40, 59, "macro", "neg")]


@pytest.mark.slow
def test_loso_writes_intervals_metrics_plots_and_a_final_model(gap_store, tmp_path):
    out = tmp_path / "res"
    results = spot_loso(gap_store, out, spot_epochs=2, recog_epochs=2, batch_size=64,
                        final=True)
    r = json.loads(results.read_text())
    assert r["kprime"] == {"macro": 10, "micro": 3}       # (20 + 1) // 2, (6 + 1) // 2
    assert r["types"] == ["macro", "micro"] and r["classes"] == ["neg", "pos"]
    m = r["metrics"]["spotting"]
    assert m["n_truth"] == 4 and set(m["per_type"]) == {"macro", "micro"}
    spotted = read_intervals(out / "intervals.csv")
    assert len(spotted) == m["n_pred"]
    assert all(iv.confidence is not None and iv.type in ("micro", "macro") for iv in spotted)
    assert len(read_intervals(out / "truth.csv")) == 4
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["s1_v1.png", "s2_v1.png"]
    assert json.loads((out / "spot_model.json").read_text())["types"]["micro"]["kprime"] == 3
    # the final models spot the same store; with its annotations the table is computed
    csv_path, report = spot_store(gap_store, out, tmp_path / "again.csv")
    assert csv_path.exists() and (tmp_path / "again.plots" / "s1_v1.png").exists()
    assert report["spotting"]["n_truth"] == 4


@pytest.mark.slow
def test_train_routes_a_gap_store_to_spotting_and_spot_applies_it(gap_store, tmp_path):
    r = CliRunner().invoke(cli, ["train", str(gap_store), "--model", "mean", "--epochs", "1",
                                 "--spot-epochs", "1", "--no-transfer", "--final",
                                 "--device", "cpu", "-o", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert res["task"] == "spot-then-recognize" and res["settings"]["transfer"] is False
    assert "overall" in r.stderr and "STRS" in r.stderr or "analysis" in r.stderr
    r = CliRunner().invoke(cli, ["spot", str(gap_store), "--results", str(tmp_path / "res"),
                                 "--device", "cpu", "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("p.csv")
    r = CliRunner().invoke(cli, ["train", str(gap_store), "--model", "mean", "--protocol",
                                 "kfold", "--device", "cpu", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "LOSO" in r.stderr


def test_spot_without_a_trained_model_is_a_one_line_error(gap_store, tmp_path):
    r = CliRunner().invoke(cli, ["spot", str(gap_store), "--results", str(tmp_path)])
    assert r.exit_code == 1 and "no spot_model.json" in r.stderr


def test_stages_carry_a_long_videos_intervals():
    # the flow stage copies these attributes from the crop store; without 'intervals' a
    # long video's annotations were lost after `mexkit crop`
    from mexkit.pipeline.stages import SAMPLE_ATTRS

    assert "intervals" in SAMPLE_ATTRS


@pytest.mark.slow
def test_cli_chain_on_synthetic_long_videos(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    r = runner.invoke(cli, ["synth", "--long", str(data), "--subjects", "2", "--seconds", "5",
                            "--fps", "25", "--size", "160", "--format", "png"])
    assert r.exit_code == 0, r.output
    sheet = r.stdout.strip()
    r = runner.invoke(cli, ["-q", "crop", "--annotations", sheet, "--dataset-fps", "25",
                            "-o", str(tmp_path / "v.crop.h5")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["-q", "flow", str(tmp_path / "v.crop.h5"), "--pairs", "gap",
                            "--features", "mean", "--method", "farneback",
                            "-o", str(tmp_path / "v.flow.h5")])
    assert r.exit_code == 0, r.output
    videos = load_spot_videos(tmp_path / "v.flow.h5", emotions=data / "intervals.csv")
    truth = read_intervals(data / "intervals.csv")
    assert sum(len(v.truth) for v in videos) == len(truth)
    assert all(t.emotion for v in videos for t in v.truth)
    r = runner.invoke(cli, ["train", str(tmp_path / "v.flow.h5"), "--model", "mean",
                            "--epochs", "1", "--spot-epochs", "1", "--device", "cpu",
                            "--emotions", str(data / "intervals.csv"),
                            "-o", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["spot-eval", "--truth", str(data / "intervals.csv"), "--pred",
                            str(tmp_path / "res" / "intervals.csv"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["spotting"]["n_truth"] == len(truth)
