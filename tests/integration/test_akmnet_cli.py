"""AKMNet through the CLI on synthetic data: crop --size 128 | magnify --alpha 15 | train."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store


def _invoke(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def _run(*args):
    r = _invoke(*args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


def test_models_lists_akmnet_with_its_parameter_count():
    out = _run("models")
    block = out[out.index("akmnet"):].split("\n\n")[0]
    assert "magnified_clip" in block and "mexkit magnify - --alpha 15" in block
    assert "--no-attention" in block and "--weights" in block and "--train-resize" in block
    assert "11,3" in block  # 11.3 M parameters (ResNet-18 + bi-GRU + classifier)


@pytest.fixture(scope="module")
def magnified(crop_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("akmnet") / "synth.mag.h5"
    return _run("magnify", crop_store, "--alpha", 15, "-o", out)


@pytest.mark.slow
def test_train_writes_key_frames(magnified, tmp_path):
    from safetensors.torch import save_file

    from mexkit.models.akmnet import AKMResNet18

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v for k, v in AKMResNet18().state_dict().items()}, str(weights))
    res = tmp_path / "res"
    _run("train", magnified, "--model", "akmnet", "--scheme", "megc3", "--epochs", 1,
         "--image-size", 32, "--weights", weights, "-o", res)
    extras = json.loads((res / "predictions.json").read_text())
    with open(res / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(r for r in f if not r.startswith("#")))
    with open_store(magnified) as s:
        lengths = {sid: s[sid].shape("frames")[0] for sid in s.sample_ids}
    assert set(extras) == {r["sample_id"] for r in rows} == set(lengths)
    for sid, e in extras.items():
        n = lengths[sid]
        assert len(e["beta"]) == n
        assert e["key_frames"] and all(0 <= k < n for k in e["key_frames"])
        assert e["key_frames"] == sorted(set(e["key_frames"]))
        assert e["max_key_frame"] in e["key_frames"]

    # mexkit train drew the key-frame pictures itself (the model's registry report)
    drawn = sorted((Path(res) / "key_frames").glob("*.png"))
    assert drawn and all(p.stat().st_size > 0 for p in drawn)
    from mexkit.learn.trainers.akmnet import write_key_frame_plots

    written = write_key_frame_plots(res, per_class=1)
    assert len(written) == 3 and all(p.stat().st_size > 0 for p in written)


@pytest.mark.slow
def test_bad_weights_file_is_one_line_error(magnified, tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00" * 16)
    r = _invoke("train", magnified, "--model", "akmnet", "--scheme", "megc3", "--epochs", 1,
                "--image-size", 32, "--weights", bad, "-o", tmp_path / "res")
    assert r.exit_code != 0
    assert "w.safetensors" in r.output and "Traceback" not in r.output
