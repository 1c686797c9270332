"""CONTRIBUTING.md's recipe for a model holds: one new package, nothing else edited.

A throwaway model package (network, input, trainer hook, report hook, spec)
is written to a temporary folder that is added to ``mexkit.models``' search
path, so that no file of the repository changes; the registry finds it,
``mexkit models`` lists it, and ``mexkit train`` trains and tests it under
LOSO with its own option, trainer and report.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage

PACKAGE = {
    "__init__.py": '"""Tinynet: a throwaway model that tests the recipe."""\n',
    "network.py": '''
        """Tinynet's network (pure torch)."""
        import torch
        from torch import nn


        class Tiny(nn.Module):
            registry_name = "tinynet"

            def __init__(self, n_classes, *, tiny_width=4):
                super().__init__()
                self.width = tiny_width
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, tiny_width), nn.ReLU(),
                                         nn.Linear(tiny_width, n_classes))

            def forward(self, tiny_mean_frame):
                return self.net(tiny_mean_frame)
    ''',
    "inputs.py": '''
        """Tinynet's input: the clip's mean frame."""
        import numpy as np

        from mexkit.models.inputs import missing_input, register_input


        @register_input("tiny_mean_frame", shape=(8, 8), needs=("frames",),
                        produced_by="mexkit crop --size 16", description="mean frame")
        def tiny_mean_frame(sample):
            if "frames" not in sample:
                raise missing_input(sample, "tiny_mean_frame", ("frames",))
            return sample.read("frames").astype(np.float32).mean(axis=0) / 255.0
    ''',
    "training.py": '''
        """Tinynet's hooks: a trainer that tags its stage, a report."""
        import csv


        def fit_fold(ctx):
            return ctx.fit(ctx.model, ctx.train, stage="tiny")


        def report(results_dir):
            with open(results_dir / "predictions.csv", newline="") as f:
                rows = [r for r in csv.DictReader(x for x in f if not x.startswith("#"))]
            path = results_dir / "tiny-report.txt"
            path.write_text(f"{len(rows)} predictions\\n")
            return [path]
    ''',
    "published.py": '''
        """Tinynet's published networks: a .npz of its four arrays (a foreign format)."""
        from pathlib import Path

        import numpy as np
        import torch

        from mexkit.errors import ParameterError, StoreError
        from mexkit.io.checkpoints import save_checkpoint
        from mexkit.models.registry import PublishedNet, PublishedNetworks

        from .network import Tiny


        def files(path, need):
            p = Path(path)
            if p.suffix != ".npz":
                raise ParameterError(f"{p} is not a tinynet .npz")
            return {0: p}, p.parent


        def _outputs(net, x):
            with torch.no_grad():
                return None, torch.softmax(net(x.float() / 255.0), dim=1)


        def load(path):
            try:
                a = np.load(path)
                w1, b1, w2, b2 = (torch.from_numpy(a[k]) for k in ("w1", "b1", "w2", "b2"))
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(f"{path}: not a tinynet file ({exc})") from None
            net = Tiny(w2.shape[0], tiny_width=w1.shape[0])
            net.load_state_dict({"net.1.weight": w1, "net.1.bias": b1, "net.3.weight": w2,
                                 "net.3.bias": b2})
            net.eval()
            return PublishedNet(module=net, kind="recog", n_classes=w2.shape[0],
                                has_spot=False, has_recog=True, outputs=_outputs,
                                source=str(path))


        def convert(path, output, classes):
            save_checkpoint(Path(output), load(path).module, None,
                            {"model": "tinynet", "classes": list(classes)})
            return Path(output)


        PUBLISHED = PublishedNetworks(
            title="tinynet .npz", files=files, load=load, dataset=lambda path: None,
            true_label=lambda attrs, classes, scheme: attrs.get("label"),
            folds=lambda subjects, eligible: {s: i + 1 for i, s in enumerate(sorted(set(
                subjects)))},
            input="frames", produced_by="mexkit crop --size 8", crop={"size": 8}, flow={},
            gap=lambda fps: 1, convert=convert)
    ''',
    "spec.py": '''
        """Tinynet's registry entry."""
        from mexkit.models.registry import (InputSpec, ModelOption, ModelSpec, TrainDefaults,
                                            count_parameters, register_model)

        from . import published, training
        from .network import Tiny

        register_model(ModelSpec(
            name="tinynet", constructor=Tiny,
            inputs=(InputSpec("tiny_mean_frame", (8, 8), "mean frame"),),
            defaults=TrainDefaults(optimizer="adam", lr=0.01, epochs=2, batch_size=4),
            paper_parameter_count=count_parameters, reference="a test",
            options=(ModelOption("tiny-width", int, 4, "hidden units"),),
            trainer=training.fit_fold, report=training.report, protocol="loso",
            published=published.PUBLISHED))
    ''',
}


@pytest.fixture
def package_root(tmp_path) -> Path:
    root = tmp_path / "extra_models"
    pkg = root / "tinynet"
    pkg.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (pkg / name).write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture
def store(tmp_path) -> Path:
    """Eight 8x8 clips of two subjects in two classes (bright or dark)."""

    def compute(task):
        label, seed = task.payload
        r = np.random.default_rng(seed)
        base = 200 if label == "bright" else 40
        return {"frames": (base + r.integers(0, 20, (3, 8, 8))).astype(np.uint8)}, {}

    tasks = []
    for i in range(8):
        subject, label = f"s{i % 2}", ("bright", "dark")[(i // 2) % 2]
        tasks.append(Task(f"t/{subject}/c{i}", cache_key("crop", 1, {}, str(i)),
                          {"subject": subject, "label": label, "dataset": "t"}, (label, i)))
    path = tmp_path / "tiny.crop.h5"
    run_stage(tasks, compute, output=path, stage="crop", params={"size": 8}, progress=False)
    return path


def _mexkit(root: Path, *args: str) -> subprocess.CompletedProcess:
    code = ("import sys, mexkit.models as m; m.__path__.append(sys.argv[1]); "
            "from mexkit.cli import main; main(sys.argv[2:])")
    return subprocess.run([sys.executable, "-c", code, str(root), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


# suite time (two interpreters with torch): the STSTNet and HTNet packages landed by the
# recipe, and test_model_packages checks every package
@pytest.mark.slow
def test_a_new_package_registers_lists_and_trains(package_root, store, tmp_path):
    listed = _mexkit(package_root, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert "tinynet" in rows and "mean" in rows  # found beside the built-in models
    assert rows["tinynet"]["produced_by"] == {"tiny_mean_frame": "mexkit crop --size 16"}
    assert rows["tinynet"]["parameters_3_classes"] == 64 * 4 + 4 + 4 * 3 + 3
    assert rows["tinynet"]["options"]["tiny-width"]["default"] == 4

    out = tmp_path / "run"
    r = _mexkit(package_root, "train", store, "--model", "tinynet", "--tiny-width", "6",
                "--fold-jobs", "1", "--device", "cpu", "-o", out)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == (out / "results.json").resolve()
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["model"] == "tinynet" and res["config"]["protocol"] == "loso"
    assert res["config"]["model_options"] == {"tiny_width": 6}
    # 64 * 6 + 6 + 6 * 2 + 2 parameters: the option reached the constructor
    assert res["parameters_as_paper_counts"] == 404
    # the trainer hook ran (its stage tag) in both LOSO folds, two epochs each
    assert sorted(res["training"]) == ["t/s0", "t/s1"]
    assert all([e["stage"] for e in h] == ["tiny", "tiny"] for h in res["training"].values())
    # the report hook wrote its file from the run's predictions
    assert (out / "tiny-report.txt").read_text() == "8 predictions\n"


@pytest.mark.slow  # suite time: option refusal is also checked in tests/cli
def test_an_option_of_the_new_model_is_refused_for_another(package_root, store, tmp_path):
    r = _mexkit(package_root, "train", store, "--model", "psn", "--tiny-width", "6",
                "-o", tmp_path / "x")
    assert r.returncode == 2 and "belongs to tinynet" in r.stderr


@pytest.mark.slow  # suite time: MEAN's published networks run in test_mean_weights_cli
def test_the_published_networks_hook_serves_any_model(package_root, store, tmp_path, rng):
    """`mexkit predict --weights` and `mexkit convert` are generic: a second model with a
    `published` hook (another file format) is found by the file, beside MEAN's."""
    w1, b1 = rng.normal(size=(4, 64)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    w2, b2 = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    net = tmp_path / "tiny.npz"
    np.savez(net, w1=w1, b1=b1, w2=w2, b2=b2)
    out = tmp_path / "pred.csv"
    r = _mexkit(package_root, "predict", store, "--weights", net, "--classes", "bright,dark",
                "-o", out)
    assert r.returncode == 0, r.stderr
    import csv

    from mexkit.io.store import open_store

    with open(out, newline="") as fh:
        rows = {row["sample_id"]: row for row in csv.DictReader(
            line for line in fh if not line.startswith("#"))}
    with open_store(store) as s:
        first = {sid: s[sid]["frames"][0].astype(np.float64) / 255.0 for sid in s.sample_ids}
    for sid, frame in first.items():  # Linear, ReLU, Linear, softmax, by hand
        h = np.maximum(w1 @ frame.ravel() + b1, 0)
        z = w2 @ h + b2
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        got = [float(rows[sid]["score_bright"]), float(rows[sid]["score_dark"])]
        np.testing.assert_allclose(got, p, atol=1e-5)
    st = tmp_path / "tiny.safetensors"
    r = _mexkit(package_root, "convert", net, "--classes", "bright,dark", "-o", st)
    assert r.returncode == 0, r.stderr
    from mexkit.io.checkpoints import load_checkpoint

    state, _, meta = load_checkpoint(st)
    assert meta["model"] == "tinynet" and np.array_equal(state["net.3.weight"].numpy(), w2)
