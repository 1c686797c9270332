"""mexkit from Python: docs/python.md's examples run as written, the 28-line example
trains a model that is not in mexkit through mexkit.torch, the dataset's folds are
mexkit train's, workers open the store themselves, and the API's stage functions are
the very functions the commands call."""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from mexkit.cli import cli

pd = pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python.md"
TESTED = re.compile(r"<!-- tested -->\n```python\n(.*?)```", re.S)


def _run(*args):
    r = CliRunner().invoke(cli, list(map(str, args)))
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def demo(crop_store, tmp_path_factory):
    """The files docs/python.md starts from: a crop store, its flow store, a MEAN run."""
    work = tmp_path_factory.mktemp("pydoc")
    shutil.copy(crop_store, work / "demo.crop.h5")
    _run("-q", "flow", work / "demo.crop.h5", "--pairs", "onset-apex", "--features", "mean",
         "-o", work / "demo.flow.h5")
    _run("-q", "train", work / "demo.flow.h5", "--model", "mean", "--epochs", "2", "-o",
         work / "demo.mean-loso")
    return work


def test_the_python_docs_run_as_written(demo, monkeypatch):
    blocks = TESTED.findall(DOC.read_text())
    assert len(blocks) == 4
    monkeypatch.chdir(demo)
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)    # noqa: S102
    ns = namespace
    import json
    # the stage ran from Python and wrote a flow store with strain
    assert Path(ns["done"].path).is_file() and not ns["done"].failures
    with ns["mx"].open_store(ns["done"].path) as s:
        assert s.stage == "flow" and "strain" in s[s.sample_ids[0]]
    assert Path(ns["run"].results).is_file() and "UF1" in ns["run"].report
    assert ns["metrics"]["pooled"]["uf1"] == json.loads(Path(ns["run"].results).read_text())[
        "pooled"]["uf1"]
    # the tables hold the store's samples and the run's metrics
    with ns["mx"].open_store("demo.flow.h5") as s:
        assert ns["samples"]["sample_id"].tolist() == s.sample_ids
        assert len(ns["pairs"]) == sum(s[i].shape("pairs")[0] for i in s.sample_ids)
    results = json.loads((demo / "demo.mean-loso" / "results.json").read_text())
    assert ns["pooled"].uf1 == results["pooled"]["uf1"]
    assert ns["pooled"].accuracy == results["pooled"]["accuracy"]
    assert len(ns["predictions"]) == results["n_samples"]
    # the dataset: one item per labelled sample, (3, 42, 42) MEAN regions
    assert len(ns["data"]) == results["n_samples"]
    assert tuple(ns["x"].shape[1:]) == (3, 42, 42)
    assert set(ns["mean_inputs"][0][0]) == {"mean_regions"}
    assert "UF1" in printed.getvalue()


def test_splits_are_mexkit_trains_folds(demo):
    from mexkit.torch import StoreDataset, splits

    data = StoreDataset(demo / "demo.flow.h5", model="mean")
    pred = pd.read_csv(demo / "demo.mean-loso" / "predictions.csv")
    want = {fold: set(rows["sample_id"]) for fold, rows in pred.groupby("fold")}
    got = {f.name: {data.sample_ids[i] for i in f.test} for f in splits(data)}
    assert got == want and len(want) >= 2
    for f in splits(data):
        assert not set(f.train) & set(f.test)
        assert {data.subjects[i] for i in f.test}.isdisjoint(
            {data.subjects[i] for i in f.train})         # leave one subject out


def test_loader_workers_open_the_store_themselves(demo):
    from mexkit.io.store import open_store
    from mexkit.torch import StoreDataset

    data = StoreDataset(demo / "demo.flow.h5", input="mean_regions")
    loader = DataLoader(data, batch_size=2, num_workers=2)
    xs, ys = zip(*loader, strict=True)
    assert data._items._store is None          # the main process never opened the file
    x, y = torch.cat(xs), torch.cat(ys)
    from mexkit.models.inputs import build_input

    with open_store(demo / "demo.flow.h5") as s:   # the same numbers, built in this process
        for i, sid in enumerate(data.sample_ids):
            assert np.array_equal(x[i].numpy(), build_input("mean_regions", s[sid]))
            assert data.classes[int(y[i])] == s[sid].attrs["label"]


def test_the_example_trains_a_model_not_in_mexkit(demo):
    script = ROOT / "examples" / "torch_dataset.py"
    assert len(script.read_text().splitlines()) < 30
    r = subprocess.run([sys.executable, str(script), str(demo / "demo.flow.h5"), "2"],
                       capture_output=True, text=True, timeout=600, cwd=demo)
    assert r.returncode == 0, r.stderr
    m = re.search(r"(\d+) samples, classes .*: LOSO accuracy (\d\.\d{3})", r.stdout)
    assert m, r.stdout
    assert 0.0 <= float(m.group(2)) <= 1.0 and int(m.group(1)) >= 4


def test_train_from_python_after_a_change_of_folder(demo, monkeypatch, tmp_path):
    """Relative paths name files of the caller's working folder, also when the fold
    workers of an earlier call (started in another folder) are reused."""
    import mexkit.api as mx

    mx.train(demo / "demo.flow.h5", tmp_path / "first", model="mean", epochs=1,
             fold_jobs=2)                     # starts the worker pool here
    monkeypatch.chdir(demo)
    run = mx.train("demo.flow.h5", "relative-run", model="mean", epochs=1, fold_jobs=2)
    assert Path(run.results) == demo / "relative-run" / "results.json"
    assert len(list((demo / "relative-run" / "folds").glob("*.json"))) >= 2


# api name -> (the command's module, the name it calls)
COMMAND_FUNCTIONS = {
    "synth": ("synth", "write_synthetic"), "flow": ("flow", "run_flow"),
    "strain": ("flow", "run_strain"), "tim": ("temporal", "run_tim"),
    "rpca": ("temporal", "run_rpca"), "keyframes": ("temporal", "run_keyframes"),
    "magnify": ("temporal", "run_magnify"), "merge": ("merge", "merge_stores"),
    "train": ("training", "train_model"), "predict": ("training", "predict_store"),
    "pretrain": ("pretraining", "pretrain_weights"), "evaluate": ("evaluation", "evaluate_file"),
    "spot": ("spot", "spot"), "spot_eval": ("spot_eval", "score_interval_files"),
    "inspect": ("inspect", "summarize"), "validate": ("inspect", "validate"),
    "show": ("show", "render"), "export": ("export", "export"),
}


def test_api_functions_are_the_commands_functions():
    import importlib

    import mexkit.api as mx

    assert set(COMMAND_FUNCTIONS) <= set(mx.__all__)
    for name, (module, attr) in COMMAND_FUNCTIONS.items():
        cli_module = importlib.import_module(f"mexkit.cli.{module}")
        assert getattr(mx, name) is getattr(cli_module, attr), name


def test_the_commands_pass_their_options_by_the_same_names(demo, monkeypatch):
    """`mexkit flow --pairs onset-apex --strain` calls mexkit.api.flow(pairs="onset-apex",
    strain=True); `mexkit tim -n 12` calls mexkit.api.tim(n_frames=12)."""
    import mexkit.cli.flow as cflow
    import mexkit.cli.temporal as ctemp

    calls = []

    def record(name):
        def fake(*args, **kwargs):
            calls.append((name, args, kwargs))
            raise SystemExit(0)
        return fake

    monkeypatch.setattr(cflow, "run_flow", record("flow"))
    monkeypatch.setattr(ctemp, "run_tim", record("tim"))
    CliRunner().invoke(cli, ["flow", str(demo / "demo.crop.h5"), "--pairs", "onset-apex",
                             "--strain", "-o", str(demo / "x.h5")])
    CliRunner().invoke(cli, ["tim", str(demo / "demo.crop.h5"), "-n", "12", "-o",
                             str(demo / "y.h5")])
    (n1, a1, k1), (n2, a2, k2) = calls
    assert n1 == "flow" and k1["pairs"] == "onset-apex" and k1["strain"] is True
    assert n2 == "tim" and k2["n_frames"] == 12
