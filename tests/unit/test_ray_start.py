"""The local Ray instance of `--backend ray` is started from the main thread.

Started from another thread (to keep Ctrl-C responsive while Ray starts), Ray 2.60's
driver hung in its first call to the cluster's key-value store and exited after 60 s:
`mexkit flow ... --backend ray` failed on every run.  Whatever ray.init raises, the
token-authentication variables the session set are taken back.
"""
from __future__ import annotations

import os
import threading

import pytest

from mexkit.pipeline import parallel


class _Stop(Exception):
    pass


def test_a_local_ray_instance_starts_in_the_main_thread_and_restores_the_environment(
        monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    seen = []

    def init(**kwargs):
        seen.append((threading.current_thread() is threading.main_thread(),
                     os.environ.get("RAY_AUTH_MODE"), kwargs.get("num_cpus")))
        raise _Stop

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(_Stop):
        with parallel._ray_session(2, None):
            pass
    assert seen == [(True, "token", 2)]
    assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ
