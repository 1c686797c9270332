"""Issue 30 item 14: a damaged checkpoint is named, and a resume trains it again."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import TensorDataset

from mexkit.errors import StoreError
from mexkit.io.checkpoints import DamagedCheckpointError, checkpoint_epoch, load_checkpoint
from mexkit.learn.train import fit, seed_everything


def _data(n=16):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = (rng.normal(0, 1, (n, 4)) + y[:, None]).astype(np.float32)
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def _net():
    return nn.Sequential(nn.Linear(4, 2))


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x07" * len(data))
    else:  # a valid header length pointing past the end
        path.write_bytes((10**9).to_bytes(8, "little") + data[8:])


@pytest.mark.parametrize("how", ["truncated", "garbage", "header"])
def test_damaged_checkpoint_is_named(tmp_path, how):
    ckpt = tmp_path / "train.safetensors"
    fit(_net(), _data(), epochs=1, batch_size=8, seed=0, checkpoint_path=ckpt)
    _damage(ckpt, how)
    with pytest.raises(StoreError, match="train.safetensors") as info:
        load_checkpoint(ckpt)
    assert isinstance(info.value, DamagedCheckpointError)
    assert checkpoint_epoch(ckpt) == 0


def test_resume_from_damaged_checkpoint_trains_again(tmp_path, caplog):
    ds = _data()
    seed_everything(0)
    straight = _net()
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    fit(straight, ds, epochs=3, batch_size=8, seed=1)
    ckpt = tmp_path / "train.safetensors"
    first = _net()
    first.load_state_dict(init)
    fit(first, ds, epochs=2, batch_size=8, seed=1, checkpoint_path=ckpt)
    _damage(ckpt, "truncated")
    again = _net()
    again.load_state_dict(init)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        out = fit(again, ds, epochs=3, batch_size=8, seed=1, checkpoint_path=ckpt)
    assert out["resumed_from"] is None
    assert [r["epoch"] for r in out["epochs"]] == [1, 2, 3]
    assert "train.safetensors" in caplog.text and "trained again" in caplog.text
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    assert checkpoint_epoch(ckpt) == 3


def test_predict_with_damaged_final_model_names_the_file(tmp_path):
    from mexkit.cli import cli
    from mexkit.pipeline.cache import cache_key
    from mexkit.pipeline.runner import Task, run_stage

    store = tmp_path / "s.h5"
    run_stage([Task("a/s/c", cache_key("x", 1, {}, "a"), {"label": "x"}, 0)],
              lambda t: ({"flow": np.zeros((1, 2, 4, 4), np.float32)}, {}), output=store,
              stage="flow", params={}, progress=False)
    results = tmp_path / "run"
    (results / "checkpoints").mkdir(parents=True)
    (results / "checkpoints" / "final.safetensors").write_bytes(b"\0" * 100)
    (results / "model.json").write_text(json.dumps({
        "model": "mean", "classes": ["a", "b", "c"], "inputs": ["mean_regions"],
        "model_options": {}, "checkpoint": "checkpoints/final.safetensors"}))
    r = CliRunner().invoke(cli, ["predict", str(store), "--results", str(results),
                                 "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 1, r.output
    assert "final.safetensors" in r.output and "internal error" not in r.output


def test_predict_never_replaces_its_input_store(tmp_path):
    from mexkit.cli import cli
    from mexkit.pipeline.cache import cache_key
    from mexkit.pipeline.runner import Task, run_stage

    store = tmp_path / "s.h5"
    run_stage([Task("a/s/c", cache_key("x", 1, {}, "a"), {"label": "x"}, 0)],
              lambda t: ({"flow": np.zeros((1, 2, 4, 4), np.float32)}, {}), output=store,
              stage="flow", params={}, progress=False)
    before = store.read_bytes()
    results = tmp_path / "run"
    results.mkdir()
    (results / "model.json").write_text("{}")
    r = CliRunner().invoke(cli, ["predict", str(store), "--results", str(results),
                                 "-o", str(store)])
    assert r.exit_code == 2 and "input of this run" in r.output, r.output
    assert store.read_bytes() == before
