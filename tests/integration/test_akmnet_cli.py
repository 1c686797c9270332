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

    from mexkit.models.akmnet.network import AKMResNet18

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
    from mexkit.models.akmnet.report import write_key_frame_plots

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


# -- mexkit pretrain: the stand-in for the paper's AffectNet stage -------------------------
def _pretrain(magnified, out, *extra):
    return _invoke("pretrain", magnified, "--image-size", 32, "--epochs", 1, "--batch-size",
                   8, "-o", out, *extra)


def _digest(path):
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_pretrain_writes_weights_with_their_provenance(magnified, tmp_path):
    from mexkit.models.akmnet.network import AKMNet
    from mexkit.pipeline.pretraining import read_weights_metadata

    out = tmp_path / "backbone.safetensors"
    r = _pretrain(magnified, out)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out.resolve())
    meta = read_weights_metadata(out)
    with open_store(magnified) as s:
        n_clips, content = len(s.sample_ids), s.content_hash
    assert meta["mexkit_stage"] == "pretrain" and meta["model"] == "akmnet"
    assert json.loads(meta["classes"]) == ["neutral", "negative", "positive", "surprise"]
    # three frames around each apex and the onset and offset frames of every clip
    assert int(meta["n_frames"]) == 5 * n_clips
    assert json.loads(meta["store"])["content_hash"] == content
    assert len(json.loads(meta["history"])) == 1
    assert len(json.loads(meta["sources"])) == 2 * n_clips  # source path and frames
    with open_store(magnified) as s:  # who was seen, for the LOSO subject guard
        subjects = sorted({f"{s[i].attrs['dataset']}/{s[i].attrs['subject']}"
                           for i in s.sample_ids})
    assert json.loads(meta["subjects"]) == subjects
    from safetensors.torch import load_file

    assert AKMNet(3, image_size=32).load_backbone_state(load_file(str(out))) == []

    # the same command again keeps the finished file
    before = (out.stat().st_mtime_ns, _digest(out))
    r = _pretrain(magnified, out)
    assert r.exit_code == 0 and (out.stat().st_mtime_ns, _digest(out)) == before
    # other settings do not replace it without --overwrite
    r = _pretrain(magnified, out, "--seed", 1)
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert _digest(out) == before[1]
    r = _pretrain(magnified, out, "--seed", 1, "--overwrite")
    assert r.exit_code == 0 and _digest(out) != before[1]


def test_pretrain_never_replaces_other_files(magnified, tmp_path):
    precious = tmp_path / "thesis.safetensors"
    precious.write_bytes(b"not weights")
    r = _pretrain(magnified, precious)
    assert r.exit_code == 2 and "did not write" in r.output
    assert precious.read_bytes() == b"not weights"
    before = _digest(magnified)
    r = _pretrain(magnified, magnified)
    assert r.exit_code == 2 and "input store itself" in r.output
    link = tmp_path / "link.safetensors"
    link.symlink_to(magnified)
    r = _pretrain(magnified, link, "--overwrite")
    assert r.exit_code == 2 and "input store itself" in r.output
    assert _digest(magnified) == before


def test_pretrain_refuses_bad_settings_before_any_work(magnified, tmp_path):
    out = tmp_path / "w.safetensors"
    r = _pretrain(magnified, out, "--image-size", 48)
    assert r.exit_code == 2 and "multiple of 32" in r.output
    if not torch.cuda.is_available():
        r = _pretrain(magnified, out, "--device", "cuda")
        assert r.exit_code == 2 and "cuda" in r.output.lower()
    assert not out.exists()


def test_train_refuses_weights_that_saw_its_clips(magnified, tmp_path):
    out = tmp_path / "leaky.safetensors"
    assert _pretrain(magnified, out).exit_code == 0
    res = tmp_path / "res"
    r = _invoke("train", magnified, "--model", "akmnet", "--scheme", "megc3", "--epochs", 1,
                "--image-size", 32, "--weights", out, "-o", res)
    assert r.exit_code == 2
    assert "pre-trained on" in r.output and "other subjects" in r.output
    assert not res.exists()  # refused before anything was written


def test_weights_file_enters_the_fold_key(tmp_path):
    """Folds trained from other weights under the same file name are not kept."""
    from safetensors.torch import save_file

    from mexkit.models import get_spec
    from mexkit.pipeline.training import _weights_entry

    class _NoSamples:
        sample_ids: list = []
        path = "x.h5"

    w = tmp_path / "w.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 5, 5)}, str(w))
    first = _weights_entry(get_spec("akmnet"), {"weights": str(w)}, _NoSamples())
    save_file({"conv1.weight": torch.ones(64, 3, 5, 5)}, str(w))
    second = _weights_entry(get_spec("akmnet"), {"weights": str(w)}, _NoSamples())
    assert first["weights_sha256"] != second["weights_sha256"]
    assert _weights_entry(get_spec("akmnet"), {"weights": ""}, _NoSamples()) == {}
