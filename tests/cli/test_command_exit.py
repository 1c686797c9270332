"""The ``mexkit`` command ends its process at once when done (``mexkit.cli.run``), keeping
what the interpreter's exit does for a program: its status, every byte of its output, the
``atexit`` callbacks and the wait for non-daemon threads."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mexkit import __version__
from mexkit.cli import _exit_status


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=120)


def test_status_of_an_exit_code_is_the_interpreters(capsys):
    assert _exit_status(None) == 0
    assert _exit_status(0) == 0 and _exit_status(2) == 2 and _exit_status(130) == 130
    assert _exit_status(256 + 3) == 3  # what the operating system keeps of sys.exit(259)
    assert _exit_status("no such store") == 1
    assert capsys.readouterr().err == "no such store\n"


def test_atexit_callbacks_and_non_daemon_threads_still_run(tmp_path):
    # what the interpreter's exit does for a program: a thread that is not a daemon is
    # waited for, atexit callbacks run, then the command's output and status
    done = tmp_path / "thread-done"
    code = (
        "import atexit, pathlib, sys, threading, time\n"
        "from mexkit.cli import run\n"
        "target = pathlib.Path(sys.argv[1])\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    target.write_text('written')\n"
        "threading.Thread(target=late).start()\n"
        "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        "sys.argv = ['mexkit', '--version']\n"
        "run()\n"
        "print('never reached')\n")
    p = _python(code, str(done))
    assert p.returncode == 0, p.stderr
    assert __version__ in p.stdout and "never reached" not in p.stdout
    assert "atexit ran" in p.stderr
    assert done.read_text() == "written"


def bad_store(folder):
    bad = folder / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(2000))
    return bad


def test_statuses_and_messages_of_failing_commands_are_kept(tmp_path):
    missing = tmp_path / "missing.h5"
    p = subprocess.run([sys.executable, "-m", "mexkit", "inspect", str(missing)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and str(missing) in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "mexkit", "no-such-command"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no-such-command" in p.stderr
    p = subprocess.run([sys.executable, "-m", "mexkit", "validate", str(bad_store(tmp_path))],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stdout.startswith("invalid:")


def test_a_long_output_through_a_pipe_is_whole(tmp_path):
    # stdout is a pipe here (block-buffered): what is still in its buffer at the end is
    # written before the process ends
    from mexkit.pipeline.cache import cache_key
    from mexkit.pipeline.runner import Task, run_stage

    store = tmp_path / "many.crop.h5"
    n = 1000  # clips of 1 to 1000 frames: inspect lists every shape
    run_stage([Task(f"set/s{i // 10}/c{i}", cache_key("crop", 1, {}, str(i)),
                    {"subject": f"s{i // 10}"}, i) for i in range(n)],
              lambda t: ({"frames": np.zeros((t.payload + 1, 2, 2), np.uint8)}, {}),
              output=store, stage="crop", params={}, progress=False)
    with_main = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom mexkit.cli import main\n"
         "main(['inspect', '--json', sys.argv[1]])\n", str(store)],
        capture_output=True, text=True, timeout=120)
    with_run = subprocess.run([sys.executable, "-m", "mexkit", "inspect", "--json",
                               str(store)], capture_output=True, text=True, timeout=120)
    assert with_run.returncode == with_main.returncode == 0, with_run.stderr
    assert len(with_run.stdout) > 4 * 8192  # several of the stream's buffers
    assert with_run.stdout == with_main.stdout
    assert all(f'"{i + 1}x2x2": 1' in with_run.stdout for i in range(n))


@pytest.mark.parametrize("entry", ["mexkit.cli:run"])
def test_the_installed_command_is_run(entry):
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parents[2] / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert f"mexkit = {entry}" in scripts
