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


def _last_lines_without_and_with_a_user_blas_setting(code: str) -> tuple[str, str]:
    """The last line ``code`` prints in a fresh interpreter without OPENBLAS_NUM_THREADS,
    then with the user's OPENBLAS_NUM_THREADS=2."""
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    lines = []
    for env in (base, {**base, "OPENBLAS_NUM_THREADS": "2"}):
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True)
        lines.append(r.stdout.strip().splitlines()[-1])
    return lines[0], lines[1]


def test_the_command_line_runs_numpy_on_one_blas_thread_unless_the_user_chose():
    # issue 32, item 5: OpenBLAS's second thread spun between TIM's small products
    # (3.0 s of CPU for `mexkit tim` on 30 crops instead of 1.1 s); the command limits its
    # own process and, through the environment, the processes it starts; a user's value
    # is kept
    code = ("import subprocess, sys, threadpoolctl\n"
            "from mexkit.pipeline.options import command_started\n"
            "command_started(interrupted_message='')\n"
            "def blas():\n"
            "    return [p['num_threads'] for p in threadpoolctl.threadpool_info()\n"
            "            if p['user_api'] == 'blas']\n"
            "child = ('import numpy, threadpoolctl; print([p[\"num_threads\"] for p in '\n"
            "         'threadpoolctl.threadpool_info() if p[\"user_api\"] == \"blas\"])')\n"
            "out = subprocess.run([sys.executable, '-c', child], capture_output=True,\n"
            "                     text=True).stdout.strip()\n"
            "print(blas(), out)")
    out, chosen = _last_lines_without_and_with_a_user_blas_setting(code)
    assert out == "[1] [1]"
    assert chosen == "[2] [2]"


def test_the_command_sets_one_blas_thread_before_numpy_loads():
    # issue 32: limiting OpenBLAS after numpy had started its pool of threads cost every
    # command about 0.1 s of CPU; the entry point sets the variable first, and no
    # threadpoolctl is needed then
    code = ("import os, sys\nfrom mexkit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "limited_late = 'threadpoolctl' in sys.modules\n"
            "import threadpoolctl\n"
            "print([p['num_threads'] for p in threadpoolctl.threadpool_info()\n"
            "       if p['user_api'] == 'blas'], os.environ['OPENBLAS_NUM_THREADS'],\n"
            "      limited_late)")
    out, chosen = _last_lines_without_and_with_a_user_blas_setting(code)
    assert out == "[1] 1 False"
    assert chosen == "[2] 2 False"
