"""Issue 30 item 15: a Ctrl-C that Python swallows in a weakref callback still ends a
TV-L1 worker map (the run then exits 130 instead of carrying on)."""
from __future__ import annotations

import signal
import threading
import time
import weakref

import pytest

from mexkit.motion._tvl1_workers import ProcessPool


class _Thing:
    pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_lost_in_a_weakref_callback_still_stops_the_map():
    pool = ProcessPool(1)
    old = signal.getsignal(signal.SIGINT)
    try:
        pool.start()   # from the main thread, as `mexkit flow` starts its workers
        handler = signal.getsignal(signal.SIGINT)
        outcome: dict[str, object] = {}
        done: list[int] = []
        running = threading.Event()

        def on_result(i, value):
            done.append(i)
            running.set()

        def run():
            try:
                pool.map(time.sleep, [(0.2,)] * 100, on_result)
                outcome["result"] = "finished"
            except BaseException as exc:  # noqa: BLE001 - what the map raised
                outcome["result"] = type(exc).__name__

        t = threading.Thread(target=run)
        t.start()
        # the Ctrl-C comes once the map is under way (a worker has answered), however
        # long the worker took to start; 100 items of 0.2 s leave it 20 s to arrive
        assert running.wait(120), "the worker never answered"
        # SIGINT delivered while the main thread runs a weakref callback: Python calls
        # the handler there, and the KeyboardInterrupt it raises is printed and lost
        thing = _Thing()
        watcher = weakref.ref(thing, lambda ref: handler(signal.SIGINT, None))
        del thing
        t.join(60)
        assert watcher() is None
        assert outcome.get("result") == "KeyboardInterrupt", outcome
        assert len(done) < 100
    finally:
        signal.signal(signal.SIGINT, old)
        pool.close()
