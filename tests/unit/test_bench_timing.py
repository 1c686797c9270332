"""bench/_timing.py: the share of CPU time stolen by the hypervisor, as the benchmarks print it."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def timing(bench_script):
    return bench_script("_timing")


def test_stolen_share_is_stolen_ticks_over_all_ticks_between_two_readings(timing):
    # 30 of 1200 ticks stolen between the readings: 2.5 %
    assert timing.stolen_share((100, 10_000), (130, 11_200)) == \
        "CPU stolen by the hypervisor: 2.5 %"
    assert timing.stolen_share((5, 400), (5, 800)) == "CPU stolen by the hypervisor: 0.0 %"


def test_stolen_share_unknown_without_two_readings_or_time_between(timing):
    for before, after in [(None, (1, 2)), ((1, 2), None), ((1, 50), (1, 50))]:
        assert timing.stolen_share(before, after) == "CPU stolen by the hypervisor: unknown"


def test_cpu_ticks_reads_the_eighth_field_of_the_cpu_line(timing, monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 20 30 400 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(stat if path == "/proc/stat" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    # steal is the 8th number; the total sums user .. steal (guest time is inside user)
    assert timing.cpu_ticks() == (8, 10 + 20 + 30 + 400 + 5 + 6 + 7 + 8)
    stat.write_text("intr 1 2 3\n")
    assert timing.cpu_ticks() is None
