"""MERSiamC3D through the CLI on synthetic data.

crop --size 112 | keyframes | flow --pairs keyframes --method farneback |
train --model mersiamc3d, with and without prior learning, at a reduced
resolution and a few epochs so that it stays a test (the key-frame stage
dominates: marked slow).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store

pytestmark = pytest.mark.slow


def _invoke(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def _run(*args):
    r = _invoke(*args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


@pytest.fixture(scope="module")
def keyframe_flow_store(synth_dataset, tmp_path_factory):
    d = tmp_path_factory.mktemp("mersiamc3d")
    crop = _run("crop", "--annotations", synth_dataset / "samples.csv", "--size", 112,
                "-o", d / "crop.h5")
    kf = _run("keyframes", crop, "--method", "adaptive", "-o", d / "kf.h5")
    return _run("flow", kf, "--pairs", "keyframes", "--method", "farneback",
                "-o", d / "flow.h5"), crop


_FAST = ("--resolution", 16, "--epochs", 2, "--batch-size", 2, "--pairs-per-epoch", 3,
         "--copies-per-epoch", 1)


def test_input_built_from_the_store(keyframe_flow_store):
    from mexkit.models.inputs import build_input

    flow, _ = keyframe_flow_store
    with open_store(flow) as s:
        sample = s[s.sample_ids[0]]
        x = build_input("keyframe_flow", sample)
        assert x.shape == (3, 10, 112, 112) and x.dtype == np.float32
        np.testing.assert_array_equal(x[:2], sample["flow"].transpose(1, 0, 2, 3))


def test_train_with_and_without_prior(keyframe_flow_store, tmp_path):
    flow, _ = keyframe_flow_store
    out = tmp_path / "with"
    _run("train", flow, "--model", "mersiamc3d", *_FAST, "-o", out)
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["loss"] == "focal"
    assert res["config"]["model_options"]["no_prior"] is False
    assert set(res["training"]) == {"synth-casme2/sub01", "synth-casme2/sub02"}
    for fold, records in res["training"].items():
        stages = [r["stage"] for r in records]
        assert stages == ["prior", "prior", "target", "target"], fold
        last_prior = records[1]
        # 3 training clips (one subject) -> 3 pairs, 90/10 split keeps them all for training
        assert last_prior["pairs_same"] + last_prior["pairs_different"] == 3
        # one checkpoint folder per fold, named by the fold and its key
        (ckpt,) = (out / "checkpoints").glob(fold.replace("/", "_") + "-*")
        assert (ckpt / "prior.safetensors").exists() and (ckpt / "target.safetensors").exists()
    assert 0.0 <= res["pooled"]["uf1"] <= 1.0

    out2 = tmp_path / "without"
    _run("train", flow, "--model", "mersiamc3d", *_FAST, "--no-prior", "--loss", "ce",
         "-o", out2)
    res2 = json.loads((out2 / "results.json").read_text())
    assert res2["config"]["loss"] == "ce"
    for records in res2["training"].values():
        assert {r["stage"] for r in records} == {"target"}


def test_other_pairing_is_refused_with_the_command(keyframe_flow_store, tmp_path):
    _, crop = keyframe_flow_store
    onset_apex = _run("flow", crop, "--pairs", "onset-apex", "--method", "farneback",
                      "-o", tmp_path / "oa.h5")
    r = _invoke("train", onset_apex, "--model", "mersiamc3d", *_FAST, "-o", tmp_path / "x")
    assert r.exit_code != 0
    assert "mexkit keyframes" in r.output and "keyframe_flow" in r.output
