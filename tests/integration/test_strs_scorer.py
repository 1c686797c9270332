"""`mexkit spot-eval` against MEAN's STRS scorer: its CASME II files and its own code.

Needs the scorer's repository (``MEXKIT_STRS_REPO``: ``strs_metric.py``,
``data/gt.csv``, ``data/pred.csv``).  The comparison with the authors' code runs
their ``Evaluator`` unchanged in a subprocess; it needs a Python with the
scorer's requirements (pandas < 2, whose ``DataFrame.append`` the scorer calls,
and scikit-learn): ``MEXKIT_STRS_PYTHON`` names it (default: this Python), e.g.
``python3 -m venv /tmp/strs && /tmp/strs/bin/pip install 'numpy<2' 'pandas<2'
scikit-learn``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli

REPO = os.environ.get("MEXKIT_STRS_REPO")
PYTHON = os.environ.get("MEXKIT_STRS_PYTHON") or sys.executable


def _repo() -> Path:
    if not REPO:
        pytest.skip("MEXKIT_STRS_REPO is not set (the root of MEAN's STRS-Metric repository)")
    root = Path(REPO)
    for name in ("strs_metric.py", "data/gt.csv", "data/pred.csv"):
        if not (root / name).is_file():
            pytest.skip(f"MEXKIT_STRS_REPO={REPO} has no {name}")
    return root


def _spot_eval(truth: Path, pred: Path, *extra: str):
    r = CliRunner().invoke(cli, ["spot-eval", "--truth", str(truth), "--pred", str(pred),
                                 *extra])
    assert r.exit_code == 0, r.output
    return r


def test_casme2_files_give_the_papers_figures():
    """MEAN Tables 2 and 5 (CASME II): TP 159, F1 0.6516, AP 0.1180, ASR 0.8443,
    analysis precision 0.5983, recall 0.5872, F1 0.5927, STRS 0.3862."""
    root = _repo()
    gt, pred = root / "data" / "gt.csv", root / "data" / "pred.csv"
    r = _spot_eval(gt, pred, "--json")
    assert ("pred.csv: rows 5, 39, 109, 127, 149, 159, 169, 236 have a negative onset"
            in r.stderr)
    rep = json.loads(r.stdout)
    o = rep["spotting"]["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == (159, 85, 85)
    assert round(o["f1"], 4) == 0.6516
    assert round(rep["ap"]["ap"], 4) == 0.1180
    assert (rep["asr"]["hits"], rep["asr"]["videos"]) == (206, 244)
    assert round(rep["asr"]["asr"], 4) == 0.8443
    a = rep["analysis"]
    assert (a["n"], a["tp"], a["fp"], a["fn"]) == (159, 96, 63, 63)
    assert (round(a["precision"], 4), round(a["recall"], 4)) == (0.5983, 0.5872)
    assert round(a["f1"], 4) == 0.5927 and round(a["uar"], 4) == 0.5872
    assert round(rep["strs"], 4) == 0.3862
    text = _spot_eval(gt, pred).stdout
    assert text.splitlines()[2].split() == [
        "overall", "*", "159", "85", "85", "0.6516", "0.6516", "0.6516", "0.1180", "0.5927",
        "0.3862"]
    assert "ASR 0.8443 (206 of 244 videos" in text


DRIVER = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import pandas as pd
if not hasattr(pd.DataFrame, "append"):
    print(json.dumps({"skip": f"pandas {pd.__version__} has no DataFrame.append"}))
    sys.exit(0)
sys.path.insert(0, sys.argv[1])
from strs_metric import Evaluator
out = []
for pair in json.loads(sys.argv[2]):
    res = Evaluator().evaluate_STRS(pd.read_csv(pair[1]), pd.read_csv(pair[0]))
    out.append({k: float(v) for k, v in res.items()})
print(json.dumps(out))
"""


def _authors(root: Path, pairs: list[tuple[Path, Path]]) -> list[dict[str, float]]:
    probe = subprocess.run([PYTHON, "-c", "import pandas, sklearn"], capture_output=True,
                           text=True)
    if probe.returncode:
        pytest.skip(f"{PYTHON} cannot import pandas and scikit-learn (the STRS scorer's "
                    "requirements); set MEXKIT_STRS_PYTHON to a Python that has them")
    run = subprocess.run([PYTHON, "-c", DRIVER, str(root),
                          json.dumps([[str(g), str(p)] for g, p in pairs])],
                         capture_output=True, text=True, cwd=root, timeout=600)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    if isinstance(got, dict):
        pytest.skip(f"{PYTHON}: {got['skip']} (the STRS scorer needs pandas < 2)")
    return got


def _compare(theirs: dict[str, float], rep: dict) -> None:
    o, a = rep["spotting"]["overall"], rep["analysis"]
    assert (theirs["TP spotting"], theirs["FP spotting"], theirs["FN spotting"]) == (
        o["tp"], o["fp"], o["fn"])
    for name, key in (("Precision", "precision"), ("Recall", "recall"), ("F1-score", "f1")):
        assert theirs[f"{name} spotting"] == pytest.approx(o[key], abs=1e-12), name
    assert (theirs["TP analysis"], theirs["FP analysis"]) == (a["tp"], a["fp"])
    # the scorer's "FN analysis" counts the same rows as its FP (wrong predictions of a
    # listed class); mexkit's FN counts the truths recognised wrongly (sum of FN_c of
    # eq. 19); they differ when a prediction names an emotion outside the classes
    assert theirs["FN analysis"] == theirs["FP analysis"]
    assert a["fn"] == a["n"] - a["tp"] == a["fp"] + a["unlisted_predictions"]
    for name, key in (("Precision", "precision"), ("Recall", "recall"), ("F1-score", "f1"),
                      ("UF1", "uf1")):
        assert theirs[f"{name} analysis"] == pytest.approx(a[key], abs=1e-12), name
    # the one figure where the scorer departs from the paper: its "UAR" is the mean
    # per-class precision; mexkit's UAR is eq. 23's mean recall
    assert theirs["UAR analysis"] == pytest.approx(a["precision"], abs=1e-12)
    assert a["uar"] == pytest.approx(theirs["Recall analysis"], abs=1e-12)
    assert theirs["STRS"] == pytest.approx(rep["strs"], abs=1e-12)


def _random_short_videos(rng: np.random.Generator, folder: Path) -> tuple[Path, Path]:
    """One truth per video, every subject predicted, predictions only of known videos."""
    emotions = ["disgust", "happiness", "others", "repression", "surprise"]
    truth, pred = [], []
    for s in range(1, int(rng.integers(2, 6)) + 1):
        for v in range(int(rng.integers(1, 6))):
            on = int(rng.integers(0, 60))
            off = on + int(rng.integers(5, 60))
            emo = emotions[int(rng.integers(len(emotions)))]
            truth.append(f"{s},EP{v:02d},{on},{off},{emo}")
            for _ in range(int(rng.integers(1, 3))):
                k = int(rng.integers(5, 35))
                peak = on + int(rng.integers(-20, off - on + 20))
                guess = emo if rng.random() < 0.6 else emotions[int(rng.integers(5))]
                pred.append(f"{s},EP{v:02d},{peak - k},{peak + k},{guess}")
    g, p = folder / "gt.csv", folder / "pred.csv"
    g.write_text("subject,video,onset,offset,emotion\n" + "\n".join(truth) + "\n")
    p.write_text("subject,video,onset,offset,emotion\n" + "\n".join(pred) + "\n")
    return g, p


def _clear_of_documented_differences(rep: dict) -> bool:
    """Leave out the cases docs/fidelity.md (rows "MEAN scorer") lists where the scorer's
    code is degenerate."""
    a = rep["analysis"]
    if a is None or a["precision"] + a["recall"] == 0:
        return False                     # the scorer divides 0 by 0 (NaN)
    for c, row in a["per_class"].items():
        # a class that is every pair's truth and prediction: the scorer's 2x2 confusion
        # matrix collapses to 1x1 and it scores the class 0 instead of 1
        if row["support"] == a["n"] and a["confusion"][a["classes"].index(c)][
                a["classes"].index(c)] == a["n"]:
            return False
    return True


def test_every_figure_equals_the_authors_scorer(tmp_path):
    """The scorer's own code on its CASME II files and on 12 random short-video sets."""
    root = _repo()
    rng = np.random.default_rng(25)
    pairs = [(root / "data" / "gt.csv", root / "data" / "pred.csv")]
    for n in range(12):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        pairs.append(_random_short_videos(rng, folder))
    theirs = _authors(root, pairs)
    compared = 0
    for (g, p), res in zip(pairs, theirs, strict=True):
        rep = json.loads(_spot_eval(g, p, "--json").stdout)
        if not _clear_of_documented_differences(rep):
            continue
        _compare(res, rep)
        compared += 1
    assert compared >= 10
