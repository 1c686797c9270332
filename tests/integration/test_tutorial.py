"""docs/tutorial.md is tested: every `mexkit` command in it parses against the CLI
(so a renamed option or choice breaks this test), and the blocks marked
``<!-- tested -->`` run end to end on synthetic data (slow test)."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mexkit.cli import cli

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
GLOBAL_OPTIONS = {"-q", "--quiet", "-v", "-vv", "--verbose", "--debug"}
FENCE = re.compile(r"(<!-- tested -->\n)?```[a-z]*\n(.*?)```", re.S)
# --epochs N, and the --spot-epochs / --prior-epochs of a model's first stage
EPOCHS = re.compile(r"(?<![\w-])--((?:spot-|prior-)?epochs) \d+")


def blocks(text: str) -> list[tuple[bool, str]]:
    """Fenced code blocks of the tutorial as (tested, body)."""
    return [(bool(m.group(1)), m.group(2)) for m in FENCE.finditer(text)]


def command_lines(body: str) -> list[str]:
    """The shell lines of a block, continuation lines joined."""
    return [ln.strip() for ln in body.replace("\\\n", " ").splitlines() if ln.strip()]


def mexkit_commands(line: str) -> list[list[str]]:
    """Every `mexkit ...` command of a shell line (pipelines split), as argv without mexkit."""
    out = []
    for part in line.split("|"):
        argv = shlex.split(part)
        if argv[:1] == ["mexkit"]:
            out.append(argv[1:])
    return out


def tutorial_commands(tested_only: bool) -> list[list[str]]:
    text = TUTORIAL.read_text()
    cmds = []
    for tested, body in blocks(text):
        if tested_only and not tested:
            continue
        for line in command_lines(body):
            cmds.extend(mexkit_commands(line))
    return cmds


def _placeholders(command: click.Command, args: list[str], where: Path) -> None:
    """Create the files and folders that `args` name where the option requires them to exist."""
    opts = {o: p for p in command.params if isinstance(p, click.Option) for o in p.opts}
    positional = [p for p in command.params if isinstance(p, click.Argument)]
    i = 0
    values: list[tuple[click.Parameter, str]] = []
    while i < len(args):
        tok = args[i]
        if tok in opts:
            p = opts[tok]
            if p.is_flag or p.count:
                i += 1
                continue
            values.append((p, args[i + 1]))
            i += 2
        elif tok.startswith("-") and tok != "-":
            i += 1   # a flag of the pair form --x/--no-x, or an unknown option click will name
        else:
            if positional:
                p = positional[0]
                values.append((p, tok))
                if p.nargs == 1:
                    positional.pop(0)
            i += 1
    for p, value in values:
        t = p.type
        if value == "-" or not isinstance(t, click.Path) or not t.exists:
            continue
        path = where / value
        if not t.file_okay:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def parse(argv: list[str], where: Path) -> None:
    while argv and argv[0] in GLOBAL_OPTIONS:
        argv = argv[1:]
    name, args = argv[0], argv[1:]
    command = cli.get_command(None, name)
    assert command is not None, f"docs/tutorial.md: no command `mexkit {name}`"
    _placeholders(command, args, where)
    try:
        # parsing validates every option name, choice and range; nothing runs.  The
        # context is closed: options such as --shard hold a run setting until then, which
        # would otherwise stay in force for every later test
        with command.make_context(name, list(args)):
            pass
    except click.UsageError as exc:
        raise AssertionError(f"docs/tutorial.md: `mexkit {shlex.join(argv)}`: "
                             f"{exc.format_message()}") from exc


def test_the_tutorial_has_tested_blocks_for_each_system():
    cmds = tutorial_commands(tested_only=True)
    models = {a[a.index("--model") + 1] for a in cmds if a[0] == "train"}
    assert models == {"mean", "atnet", "mersiamc3d", "psn", "akmnet"}
    names = {a[0] for a in cmds}
    for needed in ("synth", "samples", "show", "inspect", "evaluate", "spot-eval"):
        assert needed in names, f"no tested `mexkit {needed}` in docs/tutorial.md"


@pytest.mark.parametrize("tested_only", [True, False], ids=["tested-blocks", "whole-file"])
def test_every_tutorial_command_parses(tested_only, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cmds = tutorial_commands(tested_only)
    assert len(cmds) >= (30 if tested_only else 55), len(cmds)
    for argv in cmds:
        parse(argv, tmp_path)


def test_a_renamed_option_is_caught(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="(?i)no such option"):
        parse(["flow", "x.h5", "--pair", "onset-apex"], tmp_path)
    with pytest.raises(AssertionError, match="(?i)not one of"):
        parse(["train", "x.h5", "--model", "means"], tmp_path)


def script_of_tested_blocks() -> str:
    """The tested blocks as one bash script, epochs cut to 1 (see the slow test)."""
    body = "\n".join(b for tested, b in blocks(TUTORIAL.read_text()) if tested)
    return "set -euo pipefail\nexport MPLBACKEND=Agg\n" + EPOCHS.sub(r"--\1 1", body)


def test_epochs_are_cut_to_one_in_the_script():
    script = script_of_tested_blocks()
    assert "--epochs 1 " in script and "--spot-epochs 1 " in script
    assert "--prior-epochs 1 " in script
    assert not re.search(r"--epochs (?!1\b)\d", script)


@pytest.mark.slow
def test_tutorial_runs_on_synthetic_data(tmp_path):
    """Runs every tested block of docs/tutorial.md, in order, as one bash script in a
    temporary folder. Every `--epochs N` (and `--spot-epochs N`, `--prior-epochs N`) is
    replaced by 1 so that the run takes minutes: the test checks that the commands work
    together, not the figures they print."""
    script = tmp_path / "tutorial.sh"
    script.write_text(script_of_tested_blocks())
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=3600)
    assert run.returncode == 0, run.stderr[-4000:]
    for folder in ("mean-loso", "atnet-loso", "mersiamc3d-loso", "psn-kfold", "akmnet-loso",
                   "spot-loso"):
        results = tmp_path / folder / "results.json"
        assert results.is_file(), f"{folder}: no results.json"
        assert json.loads(results.read_text())
    for png in ("crops.png", "crop.png", "flow.png", "tim.png", "keyframes.png", "sparse.png",
                "magnified.png"):
        assert (tmp_path / png).stat().st_size > 0, png
    assert (tmp_path / "spot-loso" / "intervals.csv").is_file()
