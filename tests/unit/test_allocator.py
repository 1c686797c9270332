"""The mexkit command's allocator settings (issue 32, item 5: page faults of clip arrays)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mexkit.pipeline.options import MALLOC_SETTINGS, tune_allocator


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


glibc_only = pytest.mark.skipif(not _glibc(), reason="glibc's malloc variables only")


@glibc_only
def test_settings_go_to_the_environment_the_workers_inherit_and_keep_the_users():
    env = {"MALLOC_TRIM_THRESHOLD_": "12345"}
    changed = tune_allocator(env, apply=False)
    assert sorted(changed) == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"]
    assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"  # the user's value is kept
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert env["MALLOC_TOP_PAD_"] == str(16 << 20)
    assert tune_allocator(env, apply=False) == []  # nothing left to set


@glibc_only
def test_a_process_the_command_starts_sees_the_settings():
    # what a loky worker of `mexkit magnify -j 2` inherits: the command's environment
    code = ("import os, subprocess, sys\n"
            "from mexkit.pipeline.options import command_started\n"
            "command_started(interrupted_message='')\n"
            "child = 'import os; print(os.environ.get(\"MALLOC_MMAP_THRESHOLD_\"))'\n"
            "print(subprocess.run([sys.executable, '-c', child], capture_output=True,\n"
            "                     text=True).stdout.strip())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(MALLOC_SETTINGS["MALLOC_MMAP_THRESHOLD_"])
