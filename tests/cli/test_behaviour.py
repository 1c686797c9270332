"""Commands behave as people expect (issue 20, point 4): one exit-status rule,
global options after the subcommand, --jobs 0 refused, `samples` counting missing
sources, the default crop store name, and `mexkit synth` re-runnable as the
README writes it."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage

GENERIC = ["subject", "clip", "path", "fps", "onset", "apex", "offset", "label"]


def run(*args: str, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def frames(folder: Path, n: int, shape=(30, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        assert cv2.imwrite(str(folder / f"img{i + 1}.png"),
                           rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
    return folder


def sheet(path: Path, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([GENERIC, *rows])
    return path


@pytest.fixture
def unlabelled(tmp_path) -> Path:
    """A crop store of 6 samples without labels."""

    def compute(task):
        r = np.random.default_rng(task.payload)
        return {"frames": r.integers(0, 256, (3, 8, 8), dtype=np.uint8)}, {}

    path = tmp_path / "u.crop.h5"
    run_stage([Task(f"t/s{i % 3}/c{i}", cache_key("crop", 1, {}, str(i)),
                    {"subject": f"s{i % 3}"}, i) for i in range(6)],
              compute, output=path, stage="crop", params={"size": 8}, progress=False)
    return path


# -- exit status: 2 for a wrong command line, 1 for input that cannot be used ---------

@pytest.mark.slow  # imports torch and the model registry: 5-25 s
def test_exit_1_for_training_on_an_unlabelled_store(tmp_path, unlabelled):
    r = run("train", unlabelled, "--model", "mean", "-o", tmp_path / "run")
    assert r.exit_code == 1, r.output
    assert "0 labelled sample(s)" in r.stderr


def test_exit_1_for_input_that_cannot_be_used(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    r = run("evaluate", bad)
    assert r.exit_code == 1 and "'true' and 'pred'" in r.stderr
    notjson = tmp_path / "results.json"
    notjson.write_text("{")
    assert run("evaluate", notjson).exit_code == 1
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not a store")
    assert run("inspect", corrupt).exit_code == 1


def test_exit_2_for_a_wrong_command_line(tmp_path, unlabelled):
    assert run("no-such-command").exit_code == 2
    assert run("inspect", unlabelled, "--no-such-option").exit_code == 2
    assert run("inspect", tmp_path / "missing.h5").exit_code == 2
    assert run("tim", unlabelled, "-n", "x").exit_code == 2
    assert run("synth", tmp_path / "s", "--intensity", "1").exit_code == 2
    r = run("crop", "--annotations", sheet(tmp_path / "x.csv", []), tmp_path)
    assert r.exit_code == 2


def test_the_rule_is_written_where_users_read_it():
    import mexkit.cli

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for text in (mexkit.cli.__doc__, readme):
        assert "2: the command line is wrong" in text or "2 when the command line is wrong" \
            in text


@pytest.mark.parametrize("command", ["flow", "strain", "tim", "magnify", "crop"])
def test_jobs_0_is_refused(command, unlabelled):
    r = run(command, unlabelled, "-j", "0")
    assert r.exit_code == 2 and "-1 for one per CPU core" in r.output


# -- global options in either place ------------------------------------------------------

def test_global_options_after_the_subcommand(unlabelled, tmp_path):
    r = run("inspect", unlabelled, "-v")
    assert r.exit_code == 0, r.output
    r = run("inspect", tmp_path / "missing.h5", "--debug")
    assert r.exit_code == 2 and "Traceback" in r.stderr
    r = run("inspect", tmp_path / "missing.h5")
    assert "Traceback" not in r.stderr
    r = run("tim", unlabelled, "-n", "4", "-o", tmp_path / "t.h5", "-vv")
    assert r.exit_code == 0, r.output
    assert "mexkit: tim: computing" in r.stderr  # an info line, shown by -v
    r = run("tim", unlabelled, "-n", "4", "-o", tmp_path / "t2.h5", "-q")
    assert r.exit_code == 0 and "computed" not in r.stderr  # no summary line under -q


# -- samples counts sources missing on disk ------------------------------------------------

def test_samples_counts_paths_that_do_not_exist_as_no_source(tmp_path):
    frames(tmp_path / "d" / "a", 4)
    s = sheet(tmp_path / "d" / "samples.csv", [
        ["s1", "a", "a", 100, 0, 1, 3, "x"], ["s1", "b", "gone_b", 100, 0, 1, 3, "x"],
        ["s2", "c", "gone_c", 100, 0, 1, 3, "y"]])
    r = run("samples", "--annotations", s, "--list")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("does not exist") == 2
    assert "2 sample(s) have no frames on disk" in r.stdout
    header, _, row = r.stdout.splitlines()[3:6]
    assert header.split()[6:8] == ["no", "source"] and row.split()[6] == "2"
    assert "gone_b (not found)" in r.stdout
    r = run("samples", "--annotations", s, "--json")
    assert json.loads(r.stdout)["summary"]["n_without_source"] == 2


# -- the default crop store name ----------------------------------------------------------

def test_default_crop_store_is_named_after_the_dataset_in_the_current_folder(
        tmp_path, monkeypatch):
    frames(tmp_path / "demo-data" / "a", 4)
    s = sheet(tmp_path / "demo-data" / "samples.csv", [["s1", "a", "a", 100, 0, 1, 3, "x"]])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = run("crop", "--annotations", s, "--detector", "none")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(work / "demo-data.crop.h5")
    monkeypatch.chdir(tmp_path / "demo-data")  # a sheet in the current folder: its own name
    r = run("crop", "--annotations", "samples.csv", "--detector", "none")
    assert r.stdout.strip() == str(tmp_path / "demo-data" / "samples.crop.h5"), r.output
    r = run("crop", "--annotations", "samples.csv", "--root", tmp_path / "demo-data",
            "--detector", "none")
    assert r.stdout.strip() == str(tmp_path / "demo-data" / "demo-data.crop.h5"), r.output


# -- the README's first example runs twice ------------------------------------------------

def test_synth_runs_twice_as_written_and_names_the_flag(tmp_path):
    root = tmp_path / "demo-data"
    args = ["synth", root, "--subjects", "1", "--clips-per-class", "1", "--classes",
            "positive", "--seed", "0"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    stamp = (root / "samples.csv").stat().st_mtime_ns
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout
    assert (root / "samples.csv").stat().st_mtime_ns == stamp  # kept, not rewritten
    other = run(*args[:-1], "1")
    assert other.exit_code == 1
    assert "--overwrite" in other.stderr and "overwrite=True" not in other.stderr
    assert run(*args).exit_code == 0  # a refused run leaves the dataset usable
    assert run(*args[:-1], "1", "--overwrite").exit_code == 0


def test_synth_without_dense_flow_is_another_dataset(tmp_path):
    """A dataset written with --no-dense-flow lacks the per-frame flow: the default
    command does not take it for its own (it would read truth/*.npz["flow"]), and the
    lean one runs twice as written."""
    root = tmp_path / "lean"
    args = ["synth", root, "--subjects", "1", "--clips-per-class", "1", "--classes",
            "positive"]
    lean = run(*args, "--no-dense-flow")
    assert lean.exit_code == 0, lean.output
    assert run(*args, "--no-dense-flow").exit_code == 0
    (truth,) = (root / "truth").glob("*/*.npz")
    assert "flow" not in np.load(truth).files
    dense = run(*args)
    assert dense.exit_code == 1 and "--overwrite" in dense.stderr
    assert run(*args, "--overwrite").exit_code == 0
    assert "flow" in np.load(truth).files
    assert run(*args, "--dense-flow").exit_code == 0  # the default, said aloud


def test_a_first_stage_does_not_speak_of_an_earlier_stage(tmp_path):
    frames(tmp_path / "d" / "a", 4)
    s = sheet(tmp_path / "d" / "samples.csv", [
        ["s1", "a", "a", 100, 0, 1, 3, "x"], ["s1", "b", "gone_b", 100, 0, 1, 3, "x"],
        ["s2", "c", "gone_c", 100, 0, 1, 3, "y"]])
    r = run("crop", "--annotations", s, "--detector", "none", "-o", tmp_path / "x.crop.h5")
    assert r.exit_code == 1  # two samples failed
    assert "earlier stage" not in r.stderr
    assert "2 sample(s) cannot be computed and are recorded as failed (2 have no readable " \
           "input)" in r.stderr
