"""MEAN's spot-then-recognize pipeline on small gap-flow stores."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.errors import ParameterError
from mexkit.io.intervals import read_intervals
from mexkit.models import get_spec
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage
from mexkit.pipeline.spotting import (
    SpotVideo,
    is_spotting_store,
    load_spot_videos,
    parse_type_stores,
    spot_loso,
    spot_store,
    train_spotter,
)
from mexkit.spot.metrics import Interval

MEAN_SPOTTING = get_spec("mean").spotting
N_FRAMES, GAP = 70, 2
# (onset, offset, kind, emotion) per video; the features carry a pattern inside them
EVENTS = {
    ("s1", "v1"): [(10, 15, "micro", "pos"), (40, 59, "macro", "neg")],
    ("s2", "v1"): [(30, 35, "micro", "neg"), (5, 24, "macro", "pos")],
}


def _compute(task):
    (subject, video), seed, gap = task.payload
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.05, size=(N_FRAMES - gap, 3, 42, 42)).astype(np.float32)
    events = EVENTS[(subject, video)]
    # each interval's onset -> apex input, on which recognition trains (as `mexkit flow
    # --pairs gap --features mean` stores it: interval_pairs rows onset, apex, offset)
    bounds = np.array([(on, (on + off) // 2, off) for on, off, _, _ in events], np.int64)
    onset_apex = rng.normal(0, 0.05, size=(len(events), 3, 42, 42)).astype(np.float32)
    for k, (on, off, kind, emo) in enumerate(events):
        for a in (x[on:off + 1], onset_apex[k:k + 1]):
            a[:, 0 if kind == "micro" else 1] += 1.0
            a[:, 2] += 1.0 if emo == "pos" else -1.0
    pairs = np.stack([np.arange(N_FRAMES - gap), np.arange(gap, N_FRAMES)], axis=1)
    return {"mean_regions": x, "pairs": pairs.astype(np.int64), "interval_pairs": bounds,
            "interval_mean_regions": onset_apex}, {}


def _write_store(path, gap, videos=EVENTS):
    tasks = []
    for k, (subject, video) in enumerate(videos):
        intervals = [{"onset": on, "offset": off, "kind": kind, "label": None, "emotion": emo}
                     for on, off, kind, emo in EVENTS[(subject, video)]]
        attrs = {"subject": subject, "video": video, "clip": video, "fps": 20.0,
                 "n_frames": N_FRAMES, "pair_mode": "gap", "intervals": intervals,
                 "dataset": "test"}
        tasks.append(Task(f"test/{subject}/{video}", cache_key("flow", 1, {"gap": gap}, str(k)),
                          attrs, ((subject, video), k, gap)))
    run_stage(tasks, _compute, output=path, stage="flow", params={"pairs": "gap"},
              progress=False)
    return path


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory):
    return _write_store(tmp_path_factory.mktemp("spot") / "videos.flow.h5", GAP)


@pytest.fixture(scope="module")
def wide_gap_store(tmp_path_factory):
    # the same videos with flow of gap 5 (a macro-expression network's own gap)
    return _write_store(tmp_path_factory.mktemp("spot5") / "videos.gap5.flow.h5", 5)


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
    results = spot_loso(gap_store, out, options={"spot_epochs": 2}, epochs=2, batch_size=64,
                        final=True)
    r = json.loads(results.read_text())
    assert r["kprime"] == {"macro": 10, "micro": 3}       # (20 + 1) // 2, (6 + 1) // 2
    assert r["types"] == ["macro", "micro"] and r["classes"] == ["neg", "pos"]
    m = r["metrics"]["spotting"]
    assert m["n_truth"] == 4 and set(m["per_type"]) == {"macro", "micro"}
    # micro, macro and overall side by side, the micro row named as MEAN's (Tables 4-5)
    rows = r["metrics"]["by_type"]
    assert list(rows) == ["macro", "micro", "overall"]
    for row in rows.values():
        assert set(row) == {"spotting", "ap", "analysis", "strs"}
    assert rows["micro"]["spotting"] == m["per_type"]["micro"]
    assert r["metrics"]["comparable_to_paper"]["row"] == "micro"
    spotted = read_intervals(out / "intervals.csv")
    assert len(spotted) == m["n_pred"]
    assert all(iv.confidence is not None and iv.type in ("micro", "macro") for iv in spotted)
    assert len(read_intervals(out / "truth.csv")) == 4
    import csv

    with open(out / "frame_scores.csv", newline="") as fh:    # one row per type and pair
        rows = list(csv.DictReader(fh))
    videos = load_spot_videos(gap_store)
    assert len(rows) == 2 * sum(v.n_frames - v.gap for v in videos)
    assert {r["type"] for r in rows} == {"micro", "macro"}
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
    table = [line.split()[0] for line in r.stderr.splitlines()[2:5]]
    assert table == ["macro", "micro", "overall"], r.stderr
    assert any(line.startswith("micro *") for line in r.stderr.splitlines()), r.stderr
    assert "* micro: MEAN's long-video figures" in r.stderr
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


_SETTINGS = {"spot_epochs": 1, "recog_epochs": 1, "batch_size": 8, "lr": 5e-4, "ratio": 8.0,
             "transfer": True, "device": "cpu", "deterministic": True}


def _video(shift):
    x = np.random.default_rng(shift).normal(0, 0.05, (40, 3, 42, 42)).astype(np.float32)
    x[10 + shift:16 + shift] += 1.0
    return SpotVideo("s1/v1", "s1", "v1", 20.0, 42, 2, x,
                     [Interval("s1", "v1", 10 + shift, 15 + shift, type="micro")])


def test_a_folder_with_another_runs_checkpoints_trains_afresh(tmp_path):
    # the fold checkpoints were named by fold and type only: a second run in the same
    # results folder on other data (another store, flow method or intensity) resumed the
    # first run's finished networks and scored them on the new videos
    kw = {"spotting": MEAN_SPOTTING, "kind": "micro", "kprime": 3, "classes": [],
          "settings": _SETTINGS, "seed": 0,
          "ckpt_dir": tmp_path, "tag": "fold00-s1"}
    first = train_spotter([_video(0)], **kw)["spotter"].state_dict()
    other = train_spotter([_video(12)], **kw)["spotter"].state_dict()
    assert any(not torch.equal(first[k], other[k]) for k in first)
    # the same data resumes (a killed run continues where it stopped)
    again = train_spotter([_video(0)], **kw)["spotter"].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_type_store_option_is_parsed():
    assert parse_type_stores("macro=a.h5, micro = b.h5") == {"macro": "a.h5", "micro": "b.h5"}
    assert parse_type_stores("") == {} and parse_type_stores(None) == {}
    with pytest.raises(ParameterError, match="TYPE=STORE"):
        parse_type_stores("macro")


@pytest.mark.slow
def test_a_type_trains_and_spots_on_its_own_flow_gap(gap_store, wide_gap_store, tmp_path):
    out = tmp_path / "res"
    results = spot_loso(gap_store, out, options={"spot_epochs": 1}, epochs=1, batch_size=64,
                        type_stores={"macro": str(wide_gap_store)}, final=True, plots=False)
    r = json.loads(results.read_text())
    assert r["gap"] == {"macro": 5, "micro": 2}
    assert r["type_stores"] == {"macro": str(wide_gap_store)}
    assert r["metrics"]["spotting"]["n_truth"] == 4          # the truth of the main store
    model = json.loads((out / "spot_model.json").read_text())
    assert model["types"]["macro"]["gap"] == 5 and model["types"]["micro"]["gap"] == 2
    # spotting new videos needs the macro network's gap too
    with pytest.raises(ParameterError, match="gap 5"):
        spot_store(gap_store, out, tmp_path / "p.csv", plots=False)
    _, report = spot_store(gap_store, out, tmp_path / "p.csv", plots=False,
                           type_stores=f"macro={wide_gap_store}")
    assert report["spotting"]["n_truth"] == 4


def test_type_store_errors_name_the_type_or_the_video(gap_store, tmp_path):
    with pytest.raises(ParameterError, match="'blink' is not one of"):
        spot_loso(gap_store, tmp_path / "a", type_stores={"blink": str(gap_store)})
    partial = _write_store(tmp_path / "one.flow.h5", 5, videos=[("s1", "v1")])
    with pytest.raises(ParameterError, match="no video s2/v1"):
        spot_loso(gap_store, tmp_path / "b", type_stores={"macro": str(partial)})


def test_initial_weights_depend_on_the_seed_only(tmp_path):
    # MEAN was built from torch's global generator: a type's network started from whatever
    # the previous type's or fold's training had left there, so the same seed and data gave
    # other results after another type's data changed, or after a resumed run
    kw = {"spotting": MEAN_SPOTTING, "kind": "micro", "kprime": 3, "classes": [],
          "settings": _SETTINGS, "seed": 3,
          "ckpt_dir": None, "tag": "t"}
    torch.manual_seed(1)
    first = train_spotter([_video(0)], **kw)["spotter"].state_dict()
    torch.manual_seed(2)
    torch.rand(7)
    second = train_spotter([_video(0)], **kw)["spotter"].state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_type_store_reaches_the_train_and_spot_commands(gap_store, tmp_path):
    r = CliRunner().invoke(cli, ["train", str(gap_store), "--model", "mean", "--type-store",
                                 f"blink={gap_store}", "--device", "cpu",
                                 "-o", str(tmp_path / "r")])
    assert r.exit_code != 0 and "'blink' is not one of" in r.stderr
    assert "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["spot", "--help"])
    assert "--type-store" in r.output
