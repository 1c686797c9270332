"""Every example mexkit shows is checked against the program (issue 28, item 8): each
`mexkit` command in every `--help` epilog, in README.md and in docs/*.md parses against
the CLI (docs/tutorial.md's are checked by test_tutorial.py, whose helpers this reuses),
and (slow) every `--help` example runs on synthetic data (README.md's first pipeline, in a new
shell: test_readme_shell.py)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from test_tutorial import EPOCHS, command_lines, mexkit_commands, parse

from mexkit.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "tutorial.md")


def help_examples() -> list[tuple[str, str]]:
    """(command, example line) for every line of every epilog, continuations joined."""
    out = []
    for name in sorted(COMMANDS):
        cmd = cli.get_command(click.Context(cli), name)
        lines = (cmd.epilog or "").replace("\\\n", " ").splitlines()
        out.extend((name, ln.strip()) for ln in lines
                   if ln.strip().startswith("mexkit ") or "| mexkit" in ln)
    return out


def _shell_words(line: str) -> str:
    """A shell line without its comment."""
    return "" if line.lstrip().startswith("#") else line.split("  #")[0].strip()


def commands_of(line: str) -> list[list[str]]:
    """Every `mexkit ...` of a shell line (`&&`, `;` and pipes split, redirections cut)."""
    out = []
    for part in re.split(r"&&|;", _shell_words(line)):
        for argv in mexkit_commands(part):
            for stop in (">", ">>", "2>", "2>&1"):
                if stop in argv:
                    argv = argv[:argv.index(stop)]
            out.append(argv)
    return out


SHELL_FENCE = re.compile(r"```([a-z]*)\n(.*?)```", re.S)
# a usage synopsis (`mexkit export STORE [--format csv|parquet]`) shows the options, it is
# not a command to type
SYNOPSIS = re.compile(r"\s\[-")


def doc_commands(path: Path) -> list[list[str]]:
    """The `mexkit` commands of a document's shell blocks (not Python's, not synopses)."""
    cmds = []
    for m in SHELL_FENCE.finditer(path.read_text()):
        if m.group(1) not in ("", "sh", "bash", "shell", "console"):
            continue
        for line in command_lines(m.group(2)):
            if not SYNOPSIS.search(line):
                cmds.extend(commands_of(line))
    return cmds


def test_every_help_example_parses(tmp_path, monkeypatch):
    examples = help_examples()
    assert {name for name, _ in examples} == set(COMMANDS)
    for i, (_, line) in enumerate(examples):
        # each example line in a folder of its own: one example's input file may be
        # another's folder of the same name
        where = tmp_path / f"example{i}"
        where.mkdir()
        monkeypatch.chdir(where)
        for argv in commands_of(line):
            parse(argv, where)


@pytest.mark.parametrize("doc", ["README.md"] + [p.name for p in DOCS])
def test_every_readme_and_docs_example_parses(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # `--shard auto` reads an array job's task id (docs/scaling.md runs under Slurm)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    path = ROOT / doc if doc == "README.md" else ROOT / "docs" / doc
    cmds = doc_commands(path)
    if doc == "README.md":
        assert len(cmds) >= 15, len(cmds)
    for n, argv in enumerate(cmds):  # each in a folder of its own: placeholders differ
        where = tmp_path / f"c{n}"
        where.mkdir()
        monkeypatch.chdir(where)
        parse(argv, where)


def test_the_readme_lists_every_command():
    text = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `mexkit ([a-z-]+)", text, re.M))
    assert listed == set(COMMANDS), sorted(set(COMMANDS) ^ listed)


def test_a_pipe_without_dash_is_told_to_give_it(tmp_path):
    """`... | mexkit flow` (no '-') said only "Missing argument 'STORE'"."""
    r = subprocess.run(f"echo x.crop.h5 | {shlex.quote(sys.executable)} -m mexkit flow "
                       "--pairs onset-apex", shell=True, capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2
    assert "Missing argument 'STORE'" in r.stderr and "give '-'" in r.stderr


# -- slow: run the --help examples ------------------------------------------------------------
# Examples that cannot run here, and why (the parse test above still checks them).
NOT_RUN = {
    "mexkit crop clip.mp4 --detector fan --device cuda":
        "needs a GPU and FAN's weights in the torch hub cache",
}

# Examples that need the authors' published material: run when the variable names a
# fetched copy (linked into the examples' folder as the name they use), else left out.
NEEDS = {
    "MEAN_Weights": "MEXKIT_MEAN_REPO",         # MEAN's trained networks
    "smic_hs_s1.safetensors": "MEXKIT_MEAN_REPO",  # converted from them
    "HTNet": "MEXKIT_HTNET_REPO",              # the MEGC 2019 composite as flow images
    "composite.h5": "MEXKIT_HTNET_REPO",       # imported from it
}

# Made before the examples run, in a fresh folder: the stores and files they name.  Each
# command's examples then run in a copy of that folder (hard links: every mexkit output is
# written to a new file and renamed into place), so that one command's examples never see
# what another's left (a default output name made with other parameters is refused);
# `mexkit synth`'s run in an empty folder (its examples make the datasets SETUP made).
SETUP = """
set -euo pipefail
export MPLBACKEND=Agg
mexkit synth demo-data -q >/dev/null     # as the examples run it: they reuse it
ln -s demo-data/CASME2-coding.xlsx CASME2-coding.xlsx
ln -s demo-data CASME2_RAW
mexkit crop --annotations demo-data/samples.csv -o demo.crop.h5 -q >/dev/null
mexkit flow demo.crop.h5 --pairs onset-apex -q >/dev/null    # demo.crop.flow-tvl1.h5
# as bin/demo makes it: MEAN's input
mexkit flow demo.crop.h5 --pairs onset-apex --method tvl1 --strain --features mean \\
  -o demo.flow.h5 -q >/dev/null
cp demo.flow.h5 new.flow.h5
cp demo.flow.h5 casme2.flow.h5
mexkit keyframes demo.crop.h5 -o demo.crop.keyframes-adaptive.h5 -q >/dev/null
mexkit magnify demo.crop.h5 --alpha 15 -o demo.magnify.h5 -q >/dev/null
mexkit magnify demo.crop.h5 --alpha 15 -o casme2.mag.h5 -q >/dev/null
mexkit train demo.flow.h5 --model mean --epochs 1 -o demo.mean-loso -q >/dev/null
cp -r demo.mean-loso mean-loso
cp demo.mean-loso/predictions.csv other-tool.csv
cp demo-data/samples.csv data-samples.csv
mkdir -p data && cp -r demo-data/* data/
python - <<'PY'
# a video file of one synthetic clip (MPEG-4), for the examples given `my_video.mp4`
from pathlib import Path
import cv2
frames = sorted(p for p in Path("demo-data").glob("sub01/*/*") if p.suffix in (".jpg", ".png"))
frames = [f for f in frames if f.parent == frames[0].parent]
first = cv2.imread(str(frames[0]))
out = cv2.VideoWriter("my_video.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 30.0,
                      (first.shape[1], first.shape[0]))
for f in frames:
    out.write(cv2.imread(str(f)))
out.release()
PY
mexkit synth long-data --long --seconds 6 --subjects 2 --fps 25 --size 160 --format png -q \\
  >/dev/null
ln -s long-data/SAMM_LongVideos_V2_Release.xlsx SAMM_LongVideos_V2_Release.xlsx
mexkit crop --annotations long-data/SAMM_LongVideos_V2_Release.xlsx --dataset-fps 25 \\
  -o long.crop.h5 -q >/dev/null
mexkit flow long.crop.h5 --method farneback --pairs gap --features mean \\
  -o long.crop.flow-farneback.h5 -q >/dev/null
mexkit train long.crop.flow-farneback.h5 --model mean --epochs 1 --spot-epochs 1 --final \\
  --emotions long-data/intervals.csv -o run -q >/dev/null
mexkit spot long.crop.flow-farneback.h5 --results run -o spotted.csv --no-plots -q >/dev/null
cp long-data/intervals.csv truth.csv
# a truth sheet with an invalid row (no offset), for spot-eval --lenient
awk -F, 'BEGIN { OFS = "," } NR == 3 { $4 = "" } { print }' truth.csv > sheet-with-gaps.csv
if [ -n "${MEXKIT_MEAN_REPO:-}" ]; then
  ln -s "$MEXKIT_MEAN_REPO/MEAN_Weights" MEAN_Weights
  mexkit flow long.crop.h5 --pairs gap --gap 20 --features mean -o casme2.gap20.h5 -q >/dev/null
fi
if [ -n "${MEXKIT_HTNET_REPO:-}" ]; then
  ln -s "$MEXKIT_HTNET_REPO" HTNet
  mexkit import HTNet --dataset megc2019-flow -o composite.h5 -q >/dev/null
fi
"""

# Commands whose examples run in an empty folder.
FRESH = {"synth"}


def _runnable(line: str) -> str:
    line = _shell_words(line)
    line = EPOCHS.sub(r"--\1 1", line)
    # training examples run one epoch (they check the commands, not the figures)
    line = re.sub(r"(mexkit (?:train|pretrain) (?:(?!\|).)*?)(?=$|\|)",
                  lambda m: m.group(1) if "--epochs" in m.group(1)
                  else m.group(1).rstrip() + " --epochs 1 ", line)
    # pre-training's synthetic "other subjects": 3, not 16 (the command, not the figure)
    line = line.replace("--subjects 16", "--subjects 3")
    # PSN's ten stratified folds need ten clips of a class; the synthetic set has eight
    line = line.replace("--model psn", "--model psn --folds 4")
    # the authors number CASME II's 26 subjects; the synthetic store has four of its own
    if "MEAN_Weights/CASME2/recog --per-subject" in line:
        line += " --subject-map sub01=s1,sub02=s2,sub03=s3,sub04=s4"
    line = line.replace("--sample ID", "--sample {sid}")
    line = re.sub(r"(?<![\w-])data/samples.csv", "demo-data/samples.csv", line)
    return line


def example_script() -> tuple[str, list[str]]:
    """The shell script of SETUP and every runnable --help example, and the examples left
    out for want of the authors' material (each with the variable it needs)."""
    lines = ["set +e"]
    left_out = []
    folder = None
    for name, line in help_examples():
        if _shell_words(line) in NOT_RUN:
            continue
        need = sorted({var for mark, var in NEEDS.items() if mark in line
                       and not os.environ.get(var)})
        if need:
            left_out.append(f"{line}  (needs {', '.join(need)})")
            continue
        if name != folder:
            folder = name
            make = (f"mkdir ex-{name}" if name in FRESH
                    else f"cp -al setup ex-{name}")
            lines.append(f"cd \"$top\"; {make}; cd ex-{name}")
        said = shlex.quote(f">>> {name}: {line}")
        failed = shlex.quote(f"EXAMPLE FAILED: {line}")
        lines.append(f"echo {said} >&2\n( set -euo pipefail; {_runnable(line)} ) "
                     f"|| echo {failed} >&2")
    # a spotting store's id for `show --sample ID`: the demo's first crop sample
    body = "\n".join(lines).replace(
        "{sid}", "$(mexkit inspect demo.crop.h5 --json | python -c 'import json,sys; "
                 "print(json.load(sys.stdin)[\"samples\"][0])')")
    script = ('top=$PWD\nmkdir setup\ncd setup\n' + SETUP + 'cd "$top"\n' + body + "\n")
    return script, left_out


@pytest.mark.slow
@pytest.mark.timeout(3000)   # every example on synthetic data: over the default 10 minutes
def test_every_help_example_runs(tmp_path):
    """Every --help example runs (those that need the authors' material only where
    MEXKIT_MEAN_REPO / MEXKIT_HTNET_REPO name a fetched copy)."""
    script, left_out = example_script()
    (tmp_path / "examples.sh").write_text(script)
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run(["bash", "examples.sh"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=3000)
    assert run.returncode == 0, run.stderr[-5000:]
    failed = [ln for ln in run.stderr.splitlines() if ln.startswith("EXAMPLE FAILED")]
    assert not failed, "\n".join(failed) + "\n" + run.stderr[-5000:]
    assert (tmp_path / "ex-models" / "models.md").stat().st_size > 0
    assert (tmp_path / "ex-pretrain" / "backbone.safetensors").stat().st_size > 0
    if not left_out:  # every example ran, the authors' material included
        assert (tmp_path / "ex-convert" / "smic_hs_s1.safetensors").stat().st_size > 0
        assert (tmp_path / "ex-import" / "composite.h5").stat().st_size > 0
