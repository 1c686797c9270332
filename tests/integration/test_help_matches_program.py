"""What the help and the docs say agrees with what the program does (issue 28, item 8):
the gap k at a frame rate, what `inspect` shows for a gap store's k and for Farneback's
options, what `crop -o` names by default, and one default for `flow --threads`."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.motion.pairs import make_pairs

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def _flat(text: str) -> str:
    return " ".join(text.split())


def _mean_gap(fps: float) -> int:
    """MEAN's k: a tenth of the frame rate, rounded half up (2.5 -> 3)."""
    return max(1, math.floor(0.1 * fps + 0.5))


def test_every_stated_gap_is_the_one_flow_takes():
    """The tutorial said k is 2 at 25 fps; flow takes 3 (0.1 x 25 = 2.5, rounded half up)."""
    texts = {p.name: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    texts["flow --help"] = CliRunner().invoke(cli, ["flow", "--help"]).output
    claims = [(where, int(m[1]), float(m[2])) for where, text in texts.items()
              for m in re.finditer(r"\b(\d+) at (\d+(?:\.\d+)?) fps", _flat(text))]
    for where, k, fps in claims:
        taken = int(make_pairs(40, mode="gap", fps=fps)[0, 1])   # pairs (0, k), (1, 1 + k) ...
        assert k == taken == _mean_gap(fps), f"{where}: says {k} at {fps} fps, flow takes " \
                                             f"{taken}"
    assert {w for w, *_ in claims} >= {"tutorial.md", "README.md", "flow --help"}, claims


def test_inspect_explains_a_null_k_with_the_gaps_taken(crop_store, tmp_path):
    """`k = null` was shown with nothing to say what gap the samples got."""
    flow = run("-q", "flow", crop_store, "--pairs", "gap", "--method", "farneback",
               "-o", tmp_path / "g.h5").stdout.strip()
    text = run("inspect", flow).stdout
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("k = ")]
    n = json.loads(run("inspect", flow, "--json").stdout)["n_samples"]
    # the crop store's clips are filmed at 100 fps: a tenth of that is 10 frames
    assert line.strip().startswith("k = null") and f"10 in {n} sample(s)" in line, line


def test_inspect_files_farneback_options_under_the_method(crop_store, tmp_path):
    """Farneback's parameters were filed under the key `tvl1`."""
    flow = run("-q", "flow", crop_store, "--pairs", "onset-apex", "--method", "farneback",
               "--winsize", "21", "-o", tmp_path / "f.h5").stdout.strip()
    params = json.loads(run("inspect", flow, "--json").stdout)["params"]
    assert "tvl1" not in params
    assert params["method"] == "farneback" and params["farneback"]["winsize"] == 21
    assert "tau" not in params["farneback"]


def _option_help(command: str, flag: str) -> str:
    text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith(flag))
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].strip().startswith("-")), len(lines))
    return _flat(" ".join(lines[start:end]))


def test_crop_output_help_describes_crops_names():
    """`crop -o` described flow's naming (x.crop.h5 -> x.crop.flow-tvl1.h5)."""
    text = _option_help("crop", "-o, --output")
    assert "flow" not in text and ".crop.h5" in text


def test_flow_threads_has_one_default():
    """`flow --threads` said "Default: 0 ..." in its text and "Default: none." after it."""
    text = _option_help("flow", "--threads")
    assert text.lower().count("default") == 1, text
