"""mexkit's OpenMP default: threads that wait sleep instead of spinning (unless told otherwise)."""
from __future__ import annotations

import os
import subprocess
import sys

CODE = "import mexkit, os; print(os.environ.get('OMP_WAIT_POLICY'))"


def _policy(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run([sys.executable, "-c", CODE], env={**base, **env},
                          capture_output=True, text=True, check=True).stdout.strip()


def test_import_sets_passive_waiting_unless_the_user_chose():
    assert _policy() == "PASSIVE"
    assert _policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_the_command_line_and_its_workers_get_it_before_torch_loads():
    # torch reads the variable when its OpenMP runtime starts: mexkit's entry point
    # must have set it by then
    code = ("import sys; from mexkit.cli import cli; import os; "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["PASSIVE", "False"]
