"""bench/chaos.py runs, holds and prints its counts (a short run of every trial)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.timeout(2000)   # the run's own limit is 1,800 s
def test_short_chaos_run_holds_and_prints_counts():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "chaos.py"), "--kills", "3",
                        "--fuzz", "12", "--train-kills", "1", "--interrupts", "3",
                        "--json"], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all trials held" in r.stdout
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert counts["crash"]["kills"] == 3 and counts["crash"].get("finished samples lost", 0) == 0
    assert sum(counts["fuzz"].values()) == 12
    assert set(counts["hostile"].values()) == {"refused"} and len(counts["hostile"]) == 19
    assert not any("FAILED" in v for v in counts["attacks"].values()), counts["attacks"]
    for case in ("interrupt", "interrupt-crop"):   # mexkit flow, then mexkit crop
        stops = counts[case]
        assert stops.get("finished pieces lost", 0) == 0, case
        assert stops.get("finished pieces computed again", 0) == 0, case
        assert stops.get("final store equal to the uninterrupted run") == 1, case
