"""README's MEAN recognition pipeline, as printed but on synthetic clips (issue 25, item 3):
crop --preset mean | flow --pairs gap --features mean | train --model mean runs the paper's
two-step training (spotting, then recognition on the frozen shared layers, on each clip's
onset -> apex input), each clip a short video spotted with its single highest peak."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def _readme_pipeline() -> list[list[str]]:
    """The README's MEAN recognition commands, one argument list per stage."""
    text = README.read_text()
    block = text[text.index("# MEAN recognition as the paper trains it"):]
    lines, cmd = [], ""
    for line in block.splitlines()[1:]:
        if line.startswith("#"):
            if cmd:
                break
            continue
        cmd += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            break
    lines = [part.split() for part in cmd.split("|")]
    assert [p[:2] for p in lines] == [["mexkit", "crop"], ["mexkit", "flow"],
                                      ["mexkit", "train"]]
    return lines


@pytest.mark.slow
def test_readme_mean_recognition_pipeline_runs_on_synthetic_clips(tmp_path):
    crop, flow, train = _readme_pipeline()
    # the dataset's own sheet and folder are replaced by `mexkit synth`'s; the rest as printed
    crop = ["crop", "--annotations", "-"] + [a for a in crop[2:] if not re.match(
        r"^(--dataset|casme2|--annotations|CASME2-coding.xlsx|--root|CASME2_RAW)$", a)]
    mexkit = [sys.executable, "-m", "mexkit", "-q"]
    synth = subprocess.run(mexkit + ["synth", str(tmp_path / "data"), "--subjects", "2",
                                     "--clips-per-class", "1"], capture_output=True,
                           text=True, check=True).stdout
    out = synth
    for stage in (crop, flow[1:], train[1:] + ["--epochs", "2", "--spot-epochs", "2"]):
        r = subprocess.run(mexkit + stage, input=out, capture_output=True, text=True,
                           cwd=tmp_path)
        assert r.returncode == 0, (stage, r.stderr[-2000:])
        out = r.stdout
    results = json.loads(Path(out.strip()).read_text())
    assert results["task"] == "spot-then-recognize" and results["long_videos"] is False
    assert results["settings"]["transfer"] is True and results["scheme"] == "casme2-5"
    assert results["classes"] == ["disgust", "happiness", "surprise"]
    assert results["metrics"]["spotting"]["n_truth"] == 6
    # recognition trained on one onset -> apex sample per clip of the other subject
    assert all(len(h["recognition"]) == 2 for h in results["histories"].values())
