"""The MEGC 2019 optical-flow release through the CLI: import, then LOSO training of
STSTNet (and, marked slow, HTNet), with and without --select-on-test.

The release is built in miniature (tests/megc_release.py): 12 clips of 6 subjects
from the three datasets, random flow images, the bundled real face as every apex face.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from megc_release import make_release

from mexkit.cli import cli

ROOT = Path(__file__).parents[2]

ROWS = [("casme2", "sub01", "EP01_01", 0, "sub01_EP01_01.jpg"),
        ("casme2", "sub01", "EP01_02", 1, "sub01_EP01_02.jpg"),
        ("casme2", "sub02", "EP02_01", 2, "sub02_EP02_01.jpg"),
        ("casme2", "sub02", "EP02_02", 0, "sub02_EP02_02.jpg"),
        ("smic", "s01", "s01_ne_01", 0, "s01_s1_ne_01.jpg"),
        ("smic", "s01", "s01_po_01", 1, "s01_s1_po_01.jpg"),
        ("smic", "s02", "s02_sur_01", 2, "s02_s2_sur_01.jpg"),
        ("smic", "s02", "s02_po_01", 1, "s02_s2_po_01.jpg"),
        ("samm", "006", "006_1_2", 0, "006_006_1_2.jpg"),
        ("samm", "006", "006_1_3", 2, "006_006_1_3.jpg"),
        ("samm", "007", "007_3_1", 1, "007_007_3_1.jpg"),
        ("samm", "007", "007_3_2", 0, "007_007_3_2.jpg")]


def _run(*args):
    r = CliRunner().invoke(cli, ["-q", *map(str, args)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    root = tmp_path_factory.mktemp("release") / "HTNet"
    make_release(root, ROWS, face=True)
    return _run("import", root, "--dataset", "megc2019-flow", "-o", root.parent / "c.h5")


def test_ststnet_loso_honest_and_selected_on_test(composite, tmp_path):
    out = tmp_path / "ststnet-loso-e3"
    results = _run("train", composite, "--model", "ststnet", "--epochs", 3,
                   "--select-on-test", "--fold-jobs", 1, "-o", out)
    res = json.loads(Path(results).read_text())
    assert res["config"]["protocol"] == "loso" and res["config"]["epochs"] == 3
    assert len(res["per_fold"]) == 6
    assert set(res["per_dataset"]) == {"casme2", "smic-hs", "samm"}
    sel = res["selected_on_test"]
    assert sel["label"].startswith("SELECTED ON THE TEST FOLD")
    assert set(sel["per_dataset"]) == {"casme2", "smic-hs", "samm"}
    classes = res["pooled"]["classes"]
    honest = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    chosen = list(csv.DictReader(
        (out / "predictions-selected-on-test.csv").read_text().splitlines()))
    for fold, history in res["training"].items():
        rows = [r for r in honest if r["fold"] == fold]
        truth = [classes.index(r["true"]) for r in rows]
        # the honest predictions are the last epoch's network, as the monitor saw it
        assert [classes.index(r["pred"]) for r in rows] == history[-1]["monitor_pred"]
        # the selected epoch: best test accuracy, the later one on ties (by hand)
        acc = [sum(p == t for p, t in zip(h["monitor_pred"], truth, strict=True)) / len(truth)
               for h in history]
        want = max(range(len(acc)), key=lambda e: (acc[e], e)) + 1
        assert sel["epochs"][fold] == want
        picked = [classes.index(r["pred"]) for r in chosen if r["fold"] == fold]
        assert picked == history[want - 1]["monitor_pred"]
    # examples/composite_loso.sh prints both figures, the selected one labelled, beside the
    # published one and the epochs that ran
    table = subprocess.run(
        ["bash", str(ROOT / "examples" / "composite_loso.sh"), str(tmp_path), str(tmp_path)],
        env={**os.environ, "TABLE_ONLY": "1", "MODELS": "ststnet htnet",
             "EPOCHS_STSTNET": "3"}, capture_output=True, text=True, check=True).stdout
    row = next(ln for ln in table.splitlines() if ln.startswith("ststnet"))
    h, s = res["pooled"], sel["pooled"]
    assert row.split() == ["ststnet", f"{h['uf1']:.4f}/{h['uar']:.4f}",
                           f"{s['uf1']:.4f}/{s['uar']:.4f}", "0.7353/0.7605", "3", "-", "-"]
    assert "test-selected: SELECTED ON THE TEST FOLD" in table
    assert next(ln for ln in table.splitlines() if ln.startswith("htnet")).split()[1:3] == \
        ["not", "run"]
    # the same command without the flag keeps the folds and drops the selected figures
    again = json.loads(Path(_run("train", composite, "--model", "ststnet", "--epochs", 3,
                                 "--fold-jobs", 1, "-o", out)).read_text())
    assert "selected_on_test" not in again
    assert again["pooled"] == res["pooled"]


@pytest.mark.slow
def test_htnet_trains_one_epoch_on_the_four_areas(composite, tmp_path):
    results = _run("train", composite, "--model", "htnet", "--epochs", 1, "--fold-jobs", 1,
                   "--select-on-test", "-o", tmp_path / "ht")
    res = json.loads(Path(results).read_text())
    assert res["n_samples"] == 12 and len(res["per_fold"]) == 6
    assert res["parameters_as_paper_counts"] == 139_582_982


@pytest.mark.slow
def test_atnet_spatial_trains_on_the_apex_store(tmp_path):
    root = tmp_path / "HTNet"
    make_release(root, ROWS, face=True)
    apex = _run("import", root, "--dataset", "megc2019-flow", "--apex", "--no-landmarks",
                "-o", tmp_path / "apex.h5")
    results = _run("train", apex, "--model", "atnet-spatial", "--protocol", "loso",
                   "--epochs", 1, "--batch-size", 4, "--fold-jobs", 1, "--select-on-test",
                   "-o", tmp_path / "at")
    res = json.loads(Path(results).read_text())
    assert res["n_samples"] == 12 and len(res["per_fold"]) == 6
    assert set(res["selected_on_test"]["per_dataset"]) == {"casme2", "smic-hs", "samm"}
