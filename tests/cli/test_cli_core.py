"""CLI conventions: stdout, stderr, exit codes, '-' input, broken pipes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from mexkit import __version__
from mexkit.cli import cli


def _run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_version_and_help():
    r = _run("--version")
    assert r.exit_code == 0 and __version__ in r.output
    r = _run("--help")
    assert r.exit_code == 0 and "inspect" in r.output and "validate" in r.output


def test_unknown_command_and_option_are_usage_errors():
    assert _run("no-such-command").exit_code == 2
    assert _run("inspect", "--no-such-option", "x").exit_code == 2


def test_inspect_text_and_json(small_store):
    r = _run("inspect", str(small_store))
    assert r.exit_code == 0, r.output
    assert "stage      crop" in r.stdout
    assert "39 stored, 1 failed" in r.stdout
    assert "sample seven is broken" in r.stdout
    doc = json.loads(_run("inspect", "--json", str(small_store)).stdout)
    assert doc["stage"] == "crop" and doc["n_samples"] == 39
    assert doc["params"] == {"size": 8}
    assert doc["arrays"]["frames"]["shapes"] == {"3x8x8": 39}


def test_input_from_stdin(small_store):
    r = _run("inspect", "--json", "-", input=f"{small_store}\n")
    assert r.exit_code == 0 and json.loads(r.stdout)["n_samples"] == 39
    r = _run("inspect", "-", input="")
    assert r.exit_code == 2 and "standard input held no path" in r.stderr


def test_missing_input_is_one_line_without_traceback(tmp_path):
    r = _run("inspect", str(tmp_path / "missing.h5"))
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "missing.h5" in r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_store_exit_1_and_debug_traceback(tmp_path, small_store):
    bad = tmp_path / "bad.h5"
    data = bytearray(small_store.read_bytes())
    data[-50] ^= 0xFF
    bad.write_bytes(bytes(data))
    r = _run("inspect", str(bad))
    assert r.exit_code == 1 and "checksum mismatch" in r.stderr and "Traceback" not in r.stderr
    r = _run("--debug", "inspect", str(bad))
    assert r.exit_code == 1 and "Traceback" in r.stderr


def test_validate_exit_codes(tmp_path, small_store):
    r = _run("validate", str(small_store))
    assert r.exit_code == 0 and r.stdout.strip().endswith(f"valid: {small_store}")
    assert "sample seven is broken" in r.stdout  # failures are reported as notes
    bad = tmp_path / "bad.h5"
    bad.write_bytes(small_store.read_bytes()[:1000])
    r = _run("validate", str(bad))
    assert r.exit_code == 1 and r.stdout.startswith("invalid:")


def test_broken_pipe_is_quiet(small_store):
    cmd = f"{sys.executable} -m mexkit inspect {small_store} | head -1"
    p = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert p.stdout.startswith("store ")
    assert p.stdout.count("\n") == 1
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr
    assert p.returncode == 0
