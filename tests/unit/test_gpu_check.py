"""bench/gpu_check.py: without CUDA it says so and runs nothing; on the CPU its steps run."""
from __future__ import annotations

import re

import pytest


@pytest.fixture(scope="module")
def gpu_check(bench_script):
    return bench_script("gpu_check")


def test_without_cuda_it_says_so_and_runs_nothing(gpu_check, monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--work", str(tmp_path)]) == 2
    err = capsys.readouterr()
    assert "no CUDA device to check" in err.err and "'cuda' was asked for" in err.err
    assert err.out == "" and list(tmp_path.iterdir()) == []


def test_the_cpu_smoke_run_of_the_solver_steps(gpu_check, capsys, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--quick", "--only", "tvl1,rpca",
                           "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == ["step", "tvl1", "rpca", "all"]
    # the known translation is found to a tenth of a pixel, as the CPU engine finds it
    epe = float(re.search(r"EPE ([0-9.]+) px", out).group(1))
    gap = float(re.search(r"max \|GPU - CPU engine\| ([0-9.]+) px", out).group(1))
    assert epe < 0.1 and gap < 0.05
    assert "2 of 2 steps passed" in out and "load average" in out


@pytest.mark.slow  # every step on the CPU at small sizes: several minutes
def test_the_cpu_smoke_run_of_every_step(gpu_check, capsys, tmp_path):
    code = gpu_check.main(["--device", "cpu", "--quick", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    steps = [line.split("|")[1].strip() for line in out.splitlines()
             if line.startswith("| ")][1:-1]
    assert {"tvl1", "rpca", "flow", "train:mean", "train:psn", "predict", "spot"} <= set(steps)
