"""Small stage functions for the runner's tests (module-level, so workers can import them).

Each task's payload is a dict: ``value`` (an int), and optionally ``sleep``
(seconds), ``fail`` (raise a ParameterError), ``die_once`` (a marker path:
the first worker to see it missing creates it and exits abruptly, as a
killed worker does) and ``log`` (a folder where each computation leaves a
file named after the sample and the process, to count computations).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from mexkit.errors import ParameterError
from mexkit.pipeline.runner import Task, batched


def _one(task: Task) -> tuple[dict, dict]:
    p = task.payload
    if p.get("log"):
        name = task.sample_id.replace("/", "_")
        (Path(p["log"]) / f"{name}.{os.getpid()}.{time.monotonic_ns()}").touch()
    if p.get("pidfile"):
        with open(p["pidfile"], "a") as fh:
            fh.write(f"{os.getpid()}\n")
    if p.get("die_once"):
        marker = Path(p["die_once"])
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os._exit(3)
    if p.get("sleep"):
        time.sleep(p["sleep"])
    if p.get("fail"):
        raise ParameterError(f"sample {task.sample_id!r}: told to fail")
    v = int(p["value"])
    return {"x": np.full((2, 3), v, np.float32)}, {"value": v}


def square(task: Task) -> tuple[dict, dict]:
    """One sample at a time."""
    return _one(task)


@batched
def square_batch(tasks: list[Task]):
    """A batched compute that yields each sample's result in order."""
    for t in tasks:
        try:
            yield _one(t)
        except ParameterError as exc:
            yield exc


def tasks(n: int, **payload) -> list[Task]:
    return [Task(f"s{i:03d}", f"{i:016x}", {"subject": f"sub{i % 3}"},
                 {"value": i, **payload}) for i in range(n)]
