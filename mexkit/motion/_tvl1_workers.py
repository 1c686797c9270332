"""Worker processes for the CPU TV-L1 engine: one pair at a time, no shared state.

The CPU engine of :mod:`mexkit.motion.tvl1` solves each pair from its first
iteration to its last with single-threaded numpy and OpenCV calls. Threads
doing that in one process still meet at the GIL between the many small array
operations of a 128 x 128 pair, so two threads were measured slower than one
on 2 cores. Here each worker is a separate Python process started with
``python -c`` running :func:`serve`, which

* is started by ``subprocess`` (fork and exec), so nothing of the parent is
  inherited: no lock held by another thread of the parent at fork time (the
  deadlock of ``fork``-started pools), and no re-import of the user's
  ``__main__`` script (what ``spawn`` and ``forkserver`` do, running an
  unguarded script's top-level code a second time);
* reads one request from its stdin, solves it, writes the answer to its
  stdout, and waits for the next, so the parent hands each worker the next
  unsolved pair as soon as it is free: a worker the operating system
  deschedules delays only its own pair;
* exits when its stdin closes, which happens when the parent exits or dies,
  so no worker outlives the job that started it.

Messages are pickles (protocol 5) framed by an 8-byte length. Workers are
started on first use and kept for the life of the process (a ``mexkit flow``
run solves many batches), one pool per worker count.
"""
from __future__ import annotations

import atexit
import importlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger("mexkit")

__all__ = ["ProcessPool", "WorkerLost", "NextItem", "get_pool", "processes_allowed",
           "shutdown_pools",
           "WORKERS_ENV"]

_HEADER = struct.Struct("<Q")


def _entry() -> str:
    """The worker's ``-c`` code (not ``-m``: this module is already imported by its package).

    A mexkit found outside the site directories (a source checkout on this
    process's path) is put first on the worker's path, so that both run the
    same code; a site directory is not, as it would then come before the
    standard library.
    """
    root = Path(__file__).resolve().parents[2]
    head = ""
    if root.name not in ("site-packages", "dist-packages"):
        head = f"import sys; sys.path.insert(0, {str(root)!r}); "
    return head + "from mexkit.motion._tvl1_workers import serve; serve()"


# set to 0 (or "threads") to keep the CPU engine's workers as threads of this process
WORKERS_ENV = "MEXKIT_TVL1_PROCESSES"


def processes_allowed() -> bool:
    """Whether the CPU engine may start worker processes (``MEXKIT_TVL1_PROCESSES``)."""
    value = os.environ.get(WORKERS_ENV, "").strip().lower()
    return value not in ("0", "false", "no", "off", "threads")


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=5)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            return None
        chunks.append(part)
        got += len(part)
    return b"".join(chunks)


def _receive(stream: BinaryIO) -> Any:
    """The next message, or raise EOFError when the other side has closed."""
    head = _read_exactly(stream, _HEADER.size)
    if head is None:
        raise EOFError
    body = _read_exactly(stream, _HEADER.unpack(head)[0])
    if body is None:
        raise EOFError
    return pickle.loads(body)


# -- Ctrl-C that Python swallowed -------------------------------------------------
# Python raises KeyboardInterrupt in whatever the main thread runs when SIGINT
# arrives; inside a weakref callback or a __del__ it is printed ("Exception ignored
# in ...") and lost, and the run went on to exit 0.  The handler below also records
# the interrupt, so that the map running at that moment stops and raises it again.
_INTERRUPTED = threading.Event()
_interrupted_at = [0.0]   # time.monotonic() of the last Ctrl-C
_HANDLER_LOCK = threading.Lock()
_handler_installed = False


def _watch_sigint() -> None:
    """Wrap the SIGINT handler (main thread only, once) so that it records Ctrl-C."""
    global _handler_installed

    if _handler_installed or threading.current_thread() is not threading.main_thread():
        return
    with _HANDLER_LOCK:
        if _handler_installed:
            return
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):  # SIG_IGN or SIG_DFL: the user's choice, kept
            _handler_installed = True
            return

        def handler(signum: int, frame: Any) -> Any:
            _interrupted_at[0] = time.monotonic()
            _INTERRUPTED.set()
            return previous(signum, frame)

        signal.signal(signal.SIGINT, handler)
        _handler_installed = True


class WorkerLost(RuntimeError):
    """A worker process ended (killed, out of memory) before answering."""


class _Worker:
    """One worker process and the pipes to it."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # one thread per worker: the parallelism is across workers
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = "1"
        # the worker imports the mexkit this process runs, never a ``mexkit`` folder in
        # the working directory (``python -c`` would put the directory first on its path)
        env["PYTHONSAFEPATH"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _entry()], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True)

    def call(self, request: Any) -> Any:
        try:
            _send(self.proc.stdin, request)
            status, value = _receive(self.proc.stdout)
        except (EOFError, BrokenPipeError, OSError) as exc:
            code = self.proc.poll()
            raise WorkerLost(f"TV-L1 worker process {self.proc.pid} ended"
                             + (f" with status {code}" if code is not None else "")) from exc
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.proc.stdout.close()
        except OSError:
            pass


class ProcessPool:
    """``n`` worker processes, each handed the next unsolved item as it frees up."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # one map at a time per pool

    def _ensure(self) -> None:
        self._workers = [w for w in self._workers if w.proc.poll() is None]
        while len(self._workers) < self.n:
            self._workers.append(_Worker())

    def start(self) -> None:
        """Start the workers that are not running (they import while the caller goes on)."""
        _watch_sigint()
        with self._lock:
            self._ensure()

    def map(self, func: Callable[..., Any], items: list[tuple], on_result: Callable[[int, Any],
            None]) -> None:
        """Call ``func(*item)`` in the workers for every item; ``on_result(i, value)``.

        ``func`` must be importable by name (a module-level function). A
        worker that dies loses only its current item: the others carry on,
        and the lost items are raised as :class:`WorkerLost` at the end
        (after every other item is done), so the caller can solve them
        itself. An exception raised by ``func`` stops the map and is raised.
        """
        name = (func.__module__, func.__qualname__)

        _watch_sigint()
        # a Ctrl-C of more than a second ago was raised (or handled) then; a fresh one
        # may have been lost between two maps of one run: this map raises it
        if time.monotonic() - _interrupted_at[0] > 1.0:
            _INTERRUPTED.clear()
        with self._lock:
            self._ensure()
            take = NextItem(range(len(items)))
            stop = threading.Event()
            errors: list[BaseException] = []
            lost: list[int] = []

            def drive(worker: _Worker) -> None:
                while not stop.is_set() and not _INTERRUPTED.is_set():
                    i = take()
                    if i is None:
                        return
                    try:
                        value = worker.call((name, items[i]))
                    except WorkerLost as exc:
                        logger.warning("%s; its pair is solved again in this process", exc)
                        with take.lock:
                            lost.append(i)
                        return
                    except BaseException as exc:  # func's own error: stop everything
                        errors.append(exc)
                        stop.set()
                        return
                    on_result(i, value)

            threads = [threading.Thread(target=drive, args=(w,), daemon=True,
                                        name=f"mexkit-tvl1-{k}")
                       for k, w in enumerate(self._workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if _INTERRUPTED.is_set():  # Ctrl-C during the map, even if Python lost it
                _INTERRUPTED.clear()
                raise KeyboardInterrupt
            if errors:
                raise errors[0]
            # items never handed out because every worker was lost, plus the lost ones
            left = sorted(lost + take.rest())
            if left:
                raise WorkerLost(f"{len(left)} item(s) not solved by the worker processes",
                                 left)

    def close(self) -> None:
        for w in self._workers:
            w.close()
        self._workers = []


class NextItem:
    """Hands out the items of ``order`` one at a time to the threads that call it."""

    def __init__(self, order: Iterable[int]) -> None:
        self._order = iter(order)
        self.lock = threading.Lock()

    def __call__(self) -> int | None:
        """The next item, or None when all are handed out."""
        with self.lock:
            return next(self._order, None)

    def rest(self) -> list[int]:
        """The items not handed out (all of them are, from now on)."""
        with self.lock:
            return list(self._order)


_POOLS: dict[int, ProcessPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(n: int) -> ProcessPool:
    """The process's pool of ``n`` workers, started on first use."""
    with _POOLS_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            pool = _POOLS[n] = ProcessPool(n)
        return pool


@atexit.register
def shutdown_pools() -> None:
    """Close every worker process (they also exit by themselves when this process dies)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def serve() -> None:
    """Worker main loop: answer requests on stdin until it closes."""

    # Ctrl-C reaches the whole process group: the parent decides what happens
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp = sys.stdin.buffer
    # keep the answer channel private: anything printed goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        import cv2  # start-up: mexkit.motion imports this module without OpenCV

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass
    cache: dict[tuple[str, str], Callable[..., Any]] = {}
    while True:
        try:
            (module, qualname), args = _receive(inp)
        except EOFError:
            return
        try:
            func = cache.get((module, qualname))
            if func is None:
                func = importlib.import_module(module)
                for part in qualname.split("."):
                    func = getattr(func, part)
                cache[(module, qualname)] = func
            result: tuple[str, Any] = ("ok", func(*args))
        except Exception as exc:
            result = ("error", exc)
        try:
            _send(out, result)
        except BrokenPipeError:
            return
        except Exception as exc:  # an answer that cannot be pickled: say why instead
            _send(out, ("error", RuntimeError(f"{module}.{qualname}: {exc!r}")))
