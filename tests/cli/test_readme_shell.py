"""The README's first example runs in a new shell after the set-up commands: the line
the README (and bin/demo) gives puts `mexkit` on PATH, and every command of the example
parses against the CLI; the slow test runs the example itself, as written."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mexkit.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
VENV_MEXKIT = ROOT / ".venv" / "bin" / "mexkit"


def _blocks() -> list[str]:
    return FENCE.findall(README)


def first_example() -> str:
    """The README's first code block, continuation lines joined."""
    return _blocks()[0].replace("\\\n", " ").strip()


def path_line() -> str:
    """The README's line that puts mexkit on PATH in a new shell."""
    lines = [ln.strip() for b in _blocks() for ln in b.splitlines()
             if ".venv/bin/activate" in ln]
    assert lines, "README.md no longer says how to put mexkit on PATH in a new shell"
    return lines[0]


def new_shell(script: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``script`` in a new non-login bash, with none of this process's PATH additions."""
    env = {"HOME": str(cwd), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "MPLBACKEND": "Agg"}
    for keep in ("TMPDIR", "OMP_NUM_THREADS"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    return subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c",
                           script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


needs_venv = pytest.mark.skipif(
    not VENV_MEXKIT.exists() or shutil.which("bash") is None,
    reason="the README's set-up (.venv/bin/mexkit, made by bin/setup) is not in this checkout")


@needs_venv
def test_the_readme_line_puts_mexkit_on_path_in_a_new_shell(tmp_path):
    # without it, a new shell has no mexkit (the reason for the line)
    assert new_shell("command -v mexkit || echo none", tmp_path, 30).stdout.strip() == "none"
    r = new_shell(f"cd {shlex.quote(str(ROOT))}\n{path_line()}\ncd {shlex.quote(str(tmp_path))}"
                  "\ncommand -v mexkit\nmexkit --version", tmp_path, 60)
    assert r.returncode == 0, r.stderr
    where, version = r.stdout.split("\n", 1)
    assert Path(where).resolve() == VENV_MEXKIT.resolve()
    assert "mexkit" in version


def test_bin_demo_prints_the_line_to_run():
    demo = (ROOT / "bin" / "demo").read_text()
    assert ".venv/bin/activate" in demo and "source" in demo


def test_every_command_of_the_first_example_parses():
    example = first_example()
    parts = [shlex.split(p) for p in example.split("|")]
    assert [p[0] for p in parts] == ["mexkit"] * len(parts) and len(parts) == 4
    for argv in parts:
        cmd = cli.get_command(None, argv[1])
        assert cmd is not None, argv
        cmd.make_context(argv[1], argv[2:])        # raises on an unknown option or choice


@pytest.mark.slow
@needs_venv
def test_the_first_example_runs_in_a_new_shell_as_written(tmp_path):
    """After the set-up, in a new shell: the README's line, then the first example."""
    script = (f"cd {shlex.quote(str(ROOT))}\n{path_line()}\ncd {shlex.quote(str(tmp_path))}\n"
              f"{first_example()}\n")
    r = new_shell(script, tmp_path, 1500)
    assert r.returncode == 0, r.stderr[-3000:]
    results = Path(r.stdout.strip().splitlines()[-1])
    assert results.name == "results.json" and results.is_file()


def _option_pairs(argv: list[str]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in zip(argv, argv[1:], strict=False) if a.startswith("--")}


def _demo_pipeline() -> str:
    text = (ROOT / "bin" / "demo").read_text()
    start = text.index("results=$(") + len("results=$(")
    body = text[start:text.index("\n  )\n", start)]
    return body.replace("\\\n", " ")


@pytest.mark.parametrize("where", ["README", "bin/demo"])
def test_the_flow_step_makes_what_the_trained_model_reads(where):
    """The flow command of the README's first example and of bin/demo carries the options
    that the model's inputs need (the input registry's `produced_by`)."""
    from mexkit.models.inputs import get_input
    from mexkit.models.registry import get_spec

    pipeline = first_example() if where == "README" else _demo_pipeline()
    parts = [shlex.split(p) for p in pipeline.split("|")]
    # a command's environment settings (VAR=value before it) are not its arguments
    parts = [p[next(i for i, a in enumerate(p) if not re.fullmatch(r"\w+=\S*", a)):]
             for p in parts]
    flow = next(p for p in parts if p[0] == "mexkit" and "flow" in p[1:3])
    train = next(p for p in parts if "train" in p[:3])
    model = train[train.index("--model") + 1]
    for name in get_spec(model).input_names:
        for command in get_input(name).produced_by.split("|"):
            need = shlex.split(command)
            if need[:2] == ["mexkit", "flow"]:
                assert _option_pairs(need) <= _option_pairs(flow), (where, name, need, flow)


@needs_venv
def test_bin_demo_ends_with_its_branch_when_synth_fails(tmp_path):
    """MEAN's branch starts before synth and waits for the crop store's path: when synth
    fails, the demo ends with an error at once and leaves none of that branch running."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "data").write_text("a file where synth's folder goes\n")
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([str(ROOT / "bin" / "demo"), str(out)], capture_output=True,
                       text=True, timeout=180, env=env)
    assert r.returncode != 0
    assert "synth" in r.stderr
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"still running: {left.stdout}"
    assert not (out / "mean-loso").exists()
