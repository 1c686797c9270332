"""``mexkit export``: stores and results folders as tables that pandas reads, with the
numbers that ``mexkit inspect --json`` and the store itself hold."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage

pd = pytest.importorskip("pandas")

N_PAIRS = (2, 3, 1)


def _flow_sample(task):
    """Flow sample i: pair p has u = i + p, v = 2 everywhere except one pixel (u = 10, v = 0)."""
    i = task.payload
    if i == 3:
        raise ValueError("no face in frame 0")
    n = N_PAIRS[i]
    flow = np.zeros((n, 2, 6, 5), np.float32)
    for p in range(n):
        flow[p, 0] = i + p
        flow[p, 1] = 2.0
        flow[p, :, 1, 2] = (10.0, 0.0)
    landmarks = np.stack([np.stack([np.arange(68) + 100 * p + i,
                                    np.arange(68) * 0.5 - p], axis=1)
                          for p in range(n)]).astype(np.float32)
    pairs = np.stack([np.arange(n), np.arange(n) + 2], axis=1).astype(np.int64)
    return ({"flow": flow, "pairs": pairs, "landmarks": landmarks,
             "frame_numbers": np.arange(n + 2, dtype=np.int64) + 40,
             "strain": np.full((n, 6, 5), 0.25 * (i + 1), np.float32),
             "apex_image": np.zeros((6, 5), np.uint8)},
            {"pair_mode": "consecutive"})


@pytest.fixture
def flow_store(tmp_path):
    path = tmp_path / "toy.flow.h5"
    attrs = [{"subject": "s1", "clip": "c0", "label": "surprise", "fps": 200.0, "onset": 0,
              "apex": 1, "offset": 3, "aus": "=1+2"},
             {"subject": "s1", "clip": "c1", "label": "positive", "fps": 200.0, "onset": 0,
              "apex": None, "offset": 4, "aus": "12"},
             {"subject": "s2", "clip": "c2", "label": "negative", "fps": 100.0, "onset": 2,
              "apex": 3, "offset": 5, "aus": "4"},
             {"subject": "s2", "clip": "c3", "label": "negative", "fps": 100.0, "onset": 0,
              "apex": 1, "offset": 2, "aus": "4"}]
    tasks = [Task(f"toy/{a['subject']}/{a['clip']}", cache_key("flow", 1, {}, str(i)), a, i)
             for i, a in enumerate(attrs)]
    run_stage(tasks, _flow_sample, output=path, stage="flow", params={"pairs": "toy"},
              progress=False)
    return path


def _run(*args):
    r = CliRunner().invoke(cli, list(map(str, args)))
    return r


def _inspect(path):
    r = _run("inspect", path, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_store_export_matches_inspect_and_the_arrays(flow_store, tmp_path):
    out = tmp_path / "tables"
    r = _run("export", flow_store, "-o", out)
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(out)
    summary = _inspect(flow_store)
    samples = pd.read_csv(out / "samples.csv")
    # one row per stored sample, in inspect's order, with inspect's shapes per array
    assert len(samples) == summary["n_samples"] == 3
    assert samples["sample_id"].tolist() == summary["samples"]
    for name, info in summary["arrays"].items():
        shapes = Counter(samples[f"shape_{name}"].dropna().astype(str))
        assert shapes == Counter(info["shapes"]), name
    failures = pd.read_csv(out / "failures.csv")
    assert dict(zip(failures["sample_id"], failures["error"], strict=True)) == \
        summary["failures"]
    assert "no face in frame 0" in failures["error"][0]
    # the attributes, as given to the stage
    by_id = samples.set_index("sample_id")
    assert by_id.loc["toy/s1/c0", "label"] == "surprise"
    assert by_id.loc["toy/s2/c2", "fps"] == 100.0
    assert by_id.loc["toy/s2/c2", "onset"] == 2
    assert np.isnan(by_id.loc["toy/s1/c1", "apex"])      # unknown apex: an empty cell
    assert by_id.loc["toy/s1/c0", "aus"] == "'=1+2"      # a spreadsheet would run '=1+2'
    assert by_id.loc["toy/s1/c0", "pair_mode"] == "consecutive"

    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) == sum(N_PAIRS)
    for i, sid in enumerate(["toy/s1/c0", "toy/s1/c1", "toy/s2/c2"]):
        rows = pairs[pairs["sample_id"] == sid]
        n = N_PAIRS[i]
        assert rows["pair"].tolist() == list(range(n))
        assert rows["frame"].tolist() == list(range(n))
        assert rows["moving_frame"].tolist() == [p + 2 for p in range(n)]
        assert rows["frame_number"].tolist() == [40 + p for p in range(n)]
        assert rows["moving_frame_number"].tolist() == [42 + p for p in range(n)]
        # 30 pixels: 29 with (u, v) = (i + p, 2), one with (10, 0)
        for p, (_, row) in enumerate(rows.iterrows()):
            u = i + p
            assert row["flow_u_mean"] == pytest.approx((29 * u + 10) / 30, abs=1e-12)
            assert row["flow_v_mean"] == pytest.approx(29 * 2 / 30, abs=1e-12)
            mag = np.hypot(u, 2.0)
            assert row["flow_magnitude_mean"] == pytest.approx((29 * mag + 10) / 30, abs=1e-9)
            assert row["flow_magnitude_max"] == pytest.approx(max(mag, 10.0), abs=1e-9)
            assert row["strain_mean"] == pytest.approx(0.25 * (i + 1))
            assert row["x_5"] == 5 + 100 * p + i and row["y_5"] == 2.5 - p
            assert row["x_67"] == 67 + 100 * p + i and row["y_67"] == 33.5 - p
    # a per-sample array gives no per-pair column
    assert not [c for c in pairs.columns if c.startswith("apex_image")]


def test_parquet_holds_the_csv_numbers(flow_store, tmp_path):
    pytest.importorskip("pyarrow")
    r1 = _run("export", flow_store, "-o", tmp_path / "c")
    r2 = _run("export", flow_store, "--format", "parquet", "-o", tmp_path / "p")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    for table in ("samples", "pairs", "failures"):
        c = pd.read_csv(tmp_path / "c" / f"{table}.csv")
        p = pd.read_parquet(tmp_path / "p" / f"{table}.parquet")
        assert list(c.columns) == list(p.columns)
        for col in c.columns:
            if c[col].dtype.kind in "fi":
                assert np.array_equal(c[col].to_numpy(np.float64), p[col].to_numpy(np.float64),
                                      equal_nan=True), (table, col)
            else:
                cells = [None if v is None or v != v else str(v) for v in p[col]]
                want = [None if v != v else str(v).removeprefix("'") for v in c[col]]
                assert cells == want, (table, col)
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(tmp_path / "p" / "pairs.parquet").metadata[b"mexkit"])
    assert meta["stage"] == "flow" and meta["content_hash"] == _inspect(flow_store)[
        "content_hash"]


def test_parquet_without_pyarrow_is_a_usage_error(flow_store, tmp_path, monkeypatch):
    import mexkit.io.tables as tables

    monkeypatch.setattr(tables, "have_parquet", lambda: False)
    r = _run("export", flow_store, "--format", "parquet", "-o", tmp_path / "p")
    assert r.exit_code == 2
    assert "pyarrow" in r.output and "mexkit[parquet]" in r.output
    assert not (tmp_path / "p").exists()


def test_default_output_folder_and_stdin(flow_store, tmp_path, monkeypatch):
    r = CliRunner().invoke(cli, ["export", "-"], input=f"{flow_store}\n")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(tmp_path / "toy.flow.export")
    assert (tmp_path / "toy.flow.export" / "pairs.csv").is_file()


def test_not_a_store_or_results_folder(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("not a store")
    r = _run("export", bad, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "x.h5" in r.output
    folder = tmp_path / "run"
    folder.mkdir()
    r = _run("export", folder)
    assert r.exit_code == 1 and "results.json" in r.output
    assert _run("export", tmp_path / "missing").exit_code == 2


def _write_results(folder):
    """A results folder written by hand: two folds of two classes."""
    folder.mkdir()
    (folder / "predictions.csv").write_text(
        "sample_id,subject,dataset,fold,true,pred,score_a,score_b\n"
        "d/s1/c1,s1,d,d/s1,a,a,0.900000,0.100000\n"
        "d/s1/c2,s1,d,d/s1,b,a,0.600000,0.400000\n"
        "d/s2/c3,s2,d,d/s2,b,b,0.250000,0.750000\n")

    def scope(n, acc, uf1, uar, per_class):
        return {"n": n, "accuracy": acc, "uf1": uf1, "uar": uar, "classes": ["a", "b"],
                "per_class": {c: dict(zip(("support", "predicted", "precision", "recall",
                                           "f1"), v, strict=True))
                              for c, v in per_class.items()}}

    results = {
        "pooled": scope(3, 2 / 3, 2 / 3, 0.75, {"a": (1, 2, 0.5, 1.0, 2 / 3),
                                                  "b": (2, 1, 1.0, 0.5, 2 / 3)}),
        "per_dataset": {"d": scope(3, 2 / 3, 2 / 3, 0.75, {"a": (1, 2, 0.5, 1.0, 2 / 3),
                                                            "b": (2, 1, 1.0, 0.5, 2 / 3)})},
        "per_fold": {"d/s1": scope(2, 0.5, 1 / 3, 0.5, {"a": (1, 2, 0.5, 1.0, 2 / 3),
                                                         "b": (1, 0, None, 0.0, 0.0)}),
                     "d/s2": scope(1, 1.0, 1.0, 1.0, {"b": (1, 1, 1.0, 1.0, 1.0)})},
        "fold_mean": {"accuracy": 0.75, "uf1": 2 / 3, "uar": 0.75},
        "training": {"d/s1": [{"epoch": 1, "loss": 0.7, "lr": 0.01},
                              {"epoch": 2, "loss": 0.5, "lr": 0.01}],
                     "d/s2": [{"epoch": 1, "loss": 0.6, "lr": 0.01}]},
    }
    (folder / "results.json").write_text(json.dumps(results))
    return results


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_results_export(tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    results = _write_results(tmp_path / "run")
    r = _run("export", tmp_path / "run", "--format", fmt)
    assert r.exit_code == 0, r.output
    out = tmp_path / "run.export"
    assert r.output.strip() == str(out)
    read = pd.read_csv if fmt == "csv" else pd.read_parquet

    pred = read(out / f"predictions.{fmt}")
    assert pred["sample_id"].tolist() == ["d/s1/c1", "d/s1/c2", "d/s2/c3"]
    assert pred["score_b"].tolist() == [0.1, 0.4, 0.75]
    assert pred["pred"].tolist() == ["a", "a", "b"]

    metrics = read(out / f"metrics.{fmt}")
    assert metrics["scope"].tolist() == ["pooled", "dataset", "fold", "fold", "fold_mean"]
    rows = {(s, "" if n != n else n): m for s, n, m in
            zip(metrics["scope"], metrics["name"], metrics.to_dict("records"), strict=True)}
    for (scope, name), want in [(("pooled", ""), results["pooled"]),
                                (("fold", "d/s1"), results["per_fold"]["d/s1"]),
                                (("fold", "d/s2"), results["per_fold"]["d/s2"]),
                                (("fold_mean", ""), results["fold_mean"])]:
        got = rows[(scope, name)]
        for k in ("accuracy", "uf1", "uar"):
            assert got[k] == want[k], (scope, name, k)
    assert np.isnan(rows[("fold_mean", "")]["n"]) and rows[("fold", "d/s1")]["n"] == 2

    per_class = read(out / f"per_class.{fmt}")
    s1b = per_class[(per_class["name"] == "d/s1") & (per_class["class"] == "b")].iloc[0]
    assert np.isnan(s1b["precision"]) and s1b["recall"] == 0.0 and s1b["support"] == 1
    assert len(per_class) == 2 + 2 + 2 + 1

    training = read(out / f"training.{fmt}")
    assert training["fold"].tolist() == ["d/s1", "d/s1", "d/s2"]
    assert training["loss"].tolist() == [0.7, 0.5, 0.6]


def test_spotting_results_export(tmp_path):
    run = tmp_path / "spot"
    run.mkdir()
    (run / "intervals.csv").write_text(
        "subject,video,onset,offset,type,emotion,confidence,apex\n"
        "s1,v1,-2,8,micro,,0.9,3\ns1,v1,40,60,macro,happy,0.5,50\n")
    (run / "truth.csv").write_text("subject,video,onset,offset\ns1,v1,0,9\n")
    from mexkit.io.tables import write_table
    from mexkit.pipeline.spotting import SpotVideo, frame_score_columns

    video = SpotVideo("d/s1/v1", "s1", "v1", 30.0, 6, 2, np.zeros((4, 1)), [])
    curves = {"micro": {"scores": [0.1, 0.9, 0.2, 0.05], "smoothed": [0.3, 0.4, 0.35, 0.1],
                        "threshold": 0.33},
              "macro": {"scores": [0.5, 0.6, 0.7, 0.8], "smoothed": [0.55, 0.6, 0.7, 0.75],
                        "threshold": 0.6}}
    write_table(run / "frame_scores.csv", frame_score_columns(video, curves), format="csv")
    report = {"micro": {"spotting": {"tp": 1, "fp": 0, "fn": 0, "f1": 1.0}, "strs": None},
              "overall": {"spotting": {"tp": 1, "fp": 1, "fn": 0, "f1": 2 / 3}, "strs": 0.5}}
    (run / "results.json").write_text(json.dumps(
        {"task": "spot-then-recognize", "metrics": {"by_type": report}}))
    r = _run("export", run, "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    iv = pd.read_csv(tmp_path / "o" / "intervals.csv")
    assert iv["onset"].tolist() == [-2, 40] and iv["type"].tolist() == ["micro", "macro"]
    m = pd.read_csv(tmp_path / "o" / "metrics.csv").set_index("type")
    assert m.loc["overall", "spotting_f1"] == 2 / 3 and m.loc["micro", "spotting_tp"] == 1
    assert m.loc["overall", "strs"] == 0.5 and np.isnan(m.loc["micro", "strs"])
    assert pd.read_csv(tmp_path / "o" / "truth.csv")["offset"].tolist() == [9]
    fs = pd.read_csv(tmp_path / "o" / "frame_scores.csv")
    micro = fs[fs["type"] == "micro"]
    assert micro["frame"].tolist() == [0, 1, 2, 3]
    assert micro["score"].tolist() == [0.1, 0.9, 0.2, 0.05]
    assert micro["smoothed"].tolist() == [0.3, 0.4, 0.35, 0.1]
    assert set(micro["threshold"]) == {0.33} and set(fs["video"]) == {"v1"}
    assert fs[fs["type"] == "macro"]["score"].tolist() == [0.5, 0.6, 0.7, 0.8]


def test_frame_scores_of_a_short_video_have_no_threshold():
    """A short video (a clip) is spotted at its highest peak, without a threshold: its
    frame scores were written with a crash (float(None)), which stopped the README's
    MEAN recognition pipeline (`train --model mean --scheme casme2-5` on clips)."""
    from mexkit.pipeline.spotting import SpotVideo, frame_score_columns

    video = SpotVideo("d/s1/v1", "s1", "v1", 30.0, 4, 1, np.zeros((3, 1)), [])
    cols = frame_score_columns(video, {"all": {"scores": [0.2, 0.7, 0.1],
                                               "smoothed": [0.3, 0.5, 0.2],
                                               "threshold": None}})
    assert cols["frame"].tolist() == [0, 1, 2] and cols["score"].tolist() == [0.2, 0.7, 0.1]
    assert np.isnan(cols["threshold"]).all()
