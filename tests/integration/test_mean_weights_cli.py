"""`mexkit predict|spot --weights`, `mexkit convert`, `train --model mean --weights` with
Keras-layout fixture files (known random weights) on small MEAN input stores."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _keras_mean import numpy_mean, random_weights, write_keras_file  # noqa: E402

CASME2 = ("disgust", "happiness", "others", "surprise", "repression")
# subject -> emotions of its clips; sub04 has only fear (not one of the authors' classes)
CLIPS = {"sub10": ["happiness", "others"], "sub02": ["disgust", "surprise"],
         "sub01": ["repression"], "sub04": ["fear"]}


def _compute(task):
    seed, pairs = task.payload
    rng = np.random.default_rng(seed)
    x = rng.random((pairs, 3, 42, 42)).astype(np.float32)
    p = np.stack([np.arange(pairs), np.arange(pairs) + 2], axis=1).astype(np.int64)
    return {"mean_regions": x, "pairs": p}, {}


def _store(path, clips=CLIPS, *, mode="onset-apex", pairs=1, mean_input="authors"):
    tasks, k = [], 0
    for subject, emotions in clips.items():
        for j, emo in enumerate(emotions):
            attrs = {"subject": subject, "clip": f"EP{j}", "video": f"EP{j}", "fps": 20.0,
                     "dataset": "casme2", "emotion": emo, "pair_mode": mode,
                     "mean_input": mean_input, "n_frames": pairs + 2}
            tasks.append(Task(f"casme2/{subject}/EP{j}", cache_key("flow", 1, {}, str(k)),
                              attrs, (k, pairs)))
            k += 1
    run_stage(tasks, _compute, output=path, stage="flow", params={"pairs": mode},
              progress=False)
    return path


def _inputs(path):
    from mexkit.io.store import open_store

    with open_store(path) as s:
        return {sid: s[sid]["mean_regions"] for sid in s.sample_ids}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """MEAN_Weights/CASME2/spot_recog with fold files s1..s3 (3 subjects used)."""
    root = tmp_path_factory.mktemp("w") / "MEAN_Weights" / "CASME2" / "spot_recog"
    root.mkdir(parents=True)
    rng = np.random.default_rng(5)
    weights = {}
    for n in (1, 2, 3):
        w = random_weights(rng, "spot_recog", 5)
        write_keras_file(root / f"s{n}.hdf5", w,
                         layout="full-model" if n == 2 else "weights-only")
        weights[n] = w
    return root, weights


def _run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_one_file(tmp_path, weights_dir):
    root, weights = weights_dir
    store = _store(tmp_path / "clips.flow.h5")
    out = tmp_path / "pred.csv"
    _run("predict", store, "--weights", root / "s2.hdf5", "-o", out)
    rows = _rows(out)
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["sample_id", "subject", "dataset", "fold", "true", "pred"] + [
        f"score_{c}" for c in CASME2] + ["spot_score"]
    x = _inputs(store)
    for r in rows:
        exp = numpy_mean(weights[2], x[r["sample_id"]][:1])
        got = np.array([float(r[f"score_{c}"]) for c in CASME2])
        np.testing.assert_allclose(got, exp["recog"][0], atol=2e-6)
        assert float(r["spot_score"]) == pytest.approx(exp["spot"][0], abs=1e-5)
        assert r["pred"] == CASME2[int(np.argmax(exp["recog"][0]))]
    trues = {r["sample_id"]: r["true"] for r in rows}
    assert trues["casme2/sub04/EP0"] == ""        # fear is not an authors' class
    assert trues["casme2/sub10/EP1"] == "others"


def test_predict_per_subject_uses_the_authors_numbering(tmp_path, weights_dir):
    root, weights = weights_dir
    store = _store(tmp_path / "clips.flow.h5")
    out = tmp_path / "pred.csv"
    _run("predict", store, "--weights", root, "--per-subject", "-o", out)
    rows = _rows(out)
    # natural order of the subjects with an authors' class: sub01 s1, sub02 s2, sub10 s3
    folds = {r["subject"]: r["fold"] for r in rows}
    assert folds == {"sub01": "s1", "sub02": "s2", "sub10": "s3"}
    x = _inputs(store)
    for r in rows:
        n = int(r["fold"][1:])
        exp = numpy_mean(weights[n], x[r["sample_id"]][:1])["recog"][0]
        np.testing.assert_allclose([float(r[f"score_{c}"]) for c in CASME2], exp, atol=2e-6)
    r = CliRunner().invoke(cli, ["evaluate", str(out)])
    assert r.exit_code == 0 and "UF1" in r.output


def test_per_subject_refuses_a_store_with_other_subjects_than_the_folds(tmp_path, weights_dir):
    root, _ = weights_dir
    store = _store(tmp_path / "few.flow.h5", {"sub01": ["happiness"]})
    r = CliRunner().invoke(cli, ["predict", str(store), "--weights", str(root),
                                 "--per-subject", "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 2 and "--subject-map" in r.output
    _run("predict", store, "--weights", root, "--per-subject", "--subject-map", "sub01=s3",
         "-o", tmp_path / "p.csv")
    assert _rows(tmp_path / "p.csv")[0]["fold"] == "s3"


def test_classes_option_and_a_path_without_dataset(tmp_path, rng):
    w = random_weights(rng, "recog", 3)
    write_keras_file(tmp_path / "net.hdf5", w)
    store = _store(tmp_path / "clips.flow.h5", {"s1": ["negative"]})
    r = CliRunner().invoke(cli, ["predict", str(store), "--weights", str(tmp_path / "net.hdf5"),
                                 "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 2 and "--classes" in r.output
    _run("predict", store, "--weights", tmp_path / "net.hdf5", "--classes", "a,b,c",
         "-o", tmp_path / "p.csv")
    assert "score_c" in (tmp_path / "p.csv").read_text().splitlines()[0]


def test_convert_then_train_from_the_authors_network(tmp_path, weights_dir):
    from mexkit.io.checkpoints import load_checkpoint
    from mexkit.models.mean.network import MEAN

    root, weights = weights_dir
    st = tmp_path / "s1.safetensors"
    _run("convert", root / "s1.hdf5", "-o", st)
    state, _, meta = load_checkpoint(st)
    assert meta["classes"] == list(CASME2) and meta["kind"] == "spot_recog"
    net = MEAN(5)
    net.load_state_dict(state)
    # a 4-subject store of two classes; the shared layers stay the file's
    clips = {f"sub{i:02d}": ["happiness", "surprise"] for i in range(1, 5)}
    store = _store(tmp_path / "train.flow.h5", clips)
    _run("-q", "train", store, "--model", "mean", "--weights", st, "--epochs", 2,
         "--scheme", "casme2-5", "--fold-jobs", 1, "--final", "-o", tmp_path / "run")
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["config"]["model_options"]["weights"] == str(st)
    final, _, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "final.safetensors")
    for k, v in state.items():
        if k.startswith("streams."):
            assert np.array_equal(final[k].numpy(), v.numpy()), k   # frozen
    # the recognition head started from the file's, its rows in the scheme's class order
    from mexkit.labels import get_scheme
    from mexkit.models.mean.training import load_mean_weights

    order = list(get_scheme("casme2-5").classes)
    fresh = MEAN(5)
    assert load_mean_weights(fresh, st, order) == ["shared", "recognition head",
                                                   "spotting head"]
    rows = [list(CASME2).index(c) for c in order]
    np.testing.assert_array_equal(fresh.recog_head[5].weight.detach().numpy(),
                                  state["recog_head.5.weight"].numpy()[rows])
    assert fresh.shared_frozen


def test_spot_with_the_fold_ensemble_on_a_gap_store(tmp_path, weights_dir):
    from mexkit.spot import smooth_scores

    root, weights = weights_dir
    store = _store(tmp_path / "videos.flow.h5", {"sub01": ["happiness"]}, mode="gap",
                   pairs=60)
    out = tmp_path / "spotted.csv"
    _run("-q", "spot", store, "--weights", root.parent, "--kprime", 4, "-o", out)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["folds"] == ["s1", "s2", "s3"]
    x = next(iter(_inputs(store).values()))
    outs = [numpy_mean(weights[n], x) for n in (1, 2, 3)]
    mean_spot = np.mean([o["spot"] for o in outs], axis=0)
    sm = smooth_scores(mean_spot, 4)
    rows = _rows(out)
    assert rows, "the highest peak of a CASME II clip is always spotted"
    assert int(rows[0]["apex"]) == 4 + int(np.argmax(sm[4:len(sm) - 4]))
    cls = np.mean([o["recog"] for o in outs], axis=0).argmax(1)
    apex = int(rows[0]["apex"])
    window = cls[apex - 4:apex]
    assert rows[0]["emotion"] == CASME2[int(np.argmax(np.bincount(window, minlength=5)))]
    assert (tmp_path / "spotted.plots").is_dir()
    _run("-q", "spot", store, "--weights", root, "--fold", "s2", "--kprime", 4, "--no-plots",
         "-o", tmp_path / "one.csv")
    assert json.loads((tmp_path / "one.json").read_text())["folds"] == ["s2"]


def test_flow_builds_the_authors_input_by_default(crop_store, tmp_path):
    from mexkit.io.store import open_store

    out = tmp_path / "f.h5"
    _run("-q", "flow", crop_store, "--pairs", "onset-apex", "--features", "mean", "-o", out)
    with open_store(out) as s:
        assert s.params["mean_input"] == "authors" and s.params["method"] == "tvl1-opencv"
        sid = s.sample_ids[0]
        x = s[sid]["mean_regions"]
        assert s[sid].attrs["mean_input"] == "authors" and s[sid]["mean_landmarks"].shape == (
            68, 2)
        # each channel normalised over the whole field before the boxes are cut
        assert x.min() >= 0 and x.max() <= 1


# -- issue 25, item 3: a store of clips trains recognition alone; results.json says so ----
def test_train_on_clips_records_the_no_transfer_ablation_and_warns_once(tmp_path,
                                                                          weights_dir):
    clips = {f"sub{i:02d}": ["happiness", "surprise"] for i in range(1, 4)}
    store = _store(tmp_path / "train.flow.h5", clips)
    r = CliRunner().invoke(cli, ["train", str(store), "--model", "mean", "--epochs", 1,
                                 "--scheme", "casme2-5", "--fold-jobs", 1, "--spot-epochs", 7,
                                 "-o", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    # what ran: the recognition network from scratch, no spotting stage, no transfer
    assert config["run"]["transfer"] is False and config["run"]["spotting_stage"] is False
    assert set(config["model_options"]) == {"weights"}   # no spot_epochs, no no_transfer
    assert r.stderr.count("without inductive transfer") == 1
    assert "--spot-epochs applies to spot-then-recognize" in r.stderr
    # with the authors' shared layers (--weights), transfer is what ran
    root, _ = weights_dir
    st = tmp_path / "s1.safetensors"
    _run("convert", root / "s1.hdf5", "-o", st)
    r = CliRunner().invoke(cli, ["train", str(store), "--model", "mean", "--epochs", 1,
                                 "--scheme", "casme2-5", "--fold-jobs", 1, "--weights", str(st),
                                 "-o", str(tmp_path / "run2")])
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "run2" / "results.json").read_text())["config"]
    assert config["run"]["transfer"] is True and "without inductive" not in r.stderr


def test_a_converted_recognition_network_loads_no_spotting_head(tmp_path, rng):
    """A `recog` file has no spotting head: the converted file's kind says so, and
    `train --weights` does not load the untrained head the conversion kept."""
    from mexkit.models.mean.network import MEAN
    from mexkit.models.mean.training import load_mean_weights

    root = tmp_path / "MEAN_Weights" / "CASME2" / "recog"
    root.mkdir(parents=True)
    write_keras_file(root / "s1.hdf5", random_weights(rng, "recog", 5))
    st = tmp_path / "r.safetensors"
    _run("convert", root / "s1.hdf5", "-o", st)
    assert load_mean_weights(MEAN(5), st, list(CASME2)) == ["shared", "recognition head"]


# -- issue 25, item 8: k-fold on too few clips names the way out ----------------------------
def test_kfold_on_too_few_clips_names_folds_and_loso(tmp_path):
    clips = {f"sub{i:02d}": ["happiness", "surprise"] for i in range(1, 4)}
    store = _store(tmp_path / "few.flow.h5", clips)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(store), "--model", "mean", "--protocol", "kfold",
                                 "--scheme", "casme2-5", "-o", str(out)])
    # 3 clips per class, 10 folds by default
    assert r.exit_code == 2 and "--folds 3 or fewer" in r.output
    assert "--protocol loso" in r.output and not out.exists()
