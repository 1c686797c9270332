"""Workers never outlive the command that started them, however it ends.

A command killed with SIGKILL runs no clean-up of its own: the processes it
started (loky workers training folds, a local Ray instance's raylet and
agents, a local Dask cluster's nannies) would go on, holding memory and the
command's stderr.  :func:`ensure_reaper` starts, once per process, a small
guard process (plain ``python -S``, imports nothing of mexkit) that keeps a
list of this process's descendants, refreshed every half second from
``/proc``, and watches its own parent.  A normal exit says so on a pipe
(nothing is killed); when this process dies without a word (the guard is
handed to another parent), the guard ends every descendant it saw (each
checked by its start time, so a reused process id is never hit): SIGTERM,
then SIGKILL after two seconds.  Linux only (``/proc``); elsewhere it does
nothing.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading

__all__ = ["ensure_reaper", "stop_reaper"]

logger = logging.getLogger("mexkit")

_GUARD = r"""
import os, select, signal, sys, time
parent, me = int(sys.argv[1]), os.getpid()
def table():
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d, 'rb') as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(b')') + 2:].split()
        kids.setdefault(int(rest[1]), []).append((int(d), rest[19]))
    return kids
def below(roots, kids):
    out, todo = {}, list(roots)
    while todo:
        for pid, start in kids.get(todo.pop(), []):
            if pid != me and pid not in out:
                out[pid] = start
                todo.append(pid)
    return out
def started(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read()
        return data[data.rindex(b')') + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None
seen = {}
reading = True
while os.getppid() == parent:  # reparented: the command is gone
    ready = select.select([0], [], [], 0.5)[0] if reading else time.sleep(0.5)
    if ready:
        data = os.read(0, 64)
        if data.startswith(b'done'):
            sys.exit(0)
        if not data:
            reading = False
    seen.update(below([parent], table()))
seen.update(below(list(seen), table()))
for sig in (signal.SIGTERM, signal.SIGKILL):
    alive = 0
    for pid, start in seen.items():
        if started(pid) == start:
            try:
                os.kill(pid, sig)
                alive += 1
            except OSError:
                pass
    if not alive:
        break
    time.sleep(2.0)
"""

_LOCK = threading.Lock()
_REAPER: subprocess.Popen | None = None


def ensure_reaper() -> bool:
    """Start this process's guard (once); True if one is running."""
    global _REAPER
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return False
    with _LOCK:
        if _REAPER is not None and _REAPER.poll() is None:
            return True
        try:
            _REAPER = subprocess.Popen(
                [sys.executable, "-S", "-c", _GUARD, str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                close_fds=True, start_new_session=True)
        except OSError as exc:
            logger.debug("cannot start the worker guard: %s", exc)
            _REAPER = None
            return False
    atexit.register(stop_reaper)
    return True


def stop_reaper() -> None:
    """End the guard without killing anything (a normal end of this process)."""
    global _REAPER
    with _LOCK:
        proc, _REAPER = _REAPER, None
    if proc is None:
        return
    try:
        proc.stdin.write(b"done\n")
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
