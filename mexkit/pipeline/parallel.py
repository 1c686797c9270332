"""The parallel map every stage uses, its run settings, and the progress bar.

One function, :func:`parallel_map`, runs a picklable ``func`` over a list of
chunks (lists of items) and yields each chunk's result as soon as it is
done.  With one job it is a plain loop in this process; with more, the
same chunks go to joblib's backend (loky processes, threads, a Dask cluster
or a Ray cluster).  Chunking is done once, by :func:`chunked`, whatever the
backend, so a batched solver sees the same groups everywhere (the shape of
MNE-Python's ``parallel_func``: callers write one loop for every backend).

Settings that a user gives once per command (retries, the cluster address,
the shard, the shared cache) are held by :func:`configure` for the duration
of a command and read by the stage runner through :func:`current_config`, so
every stage gets them without each command passing them by hand.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import logging
import math
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from .._validate import check_option, check_range
from ..errors import MexkitError, ParameterError
from .reaper import ensure_reaper

__all__ = [
    "BACKENDS",
    "STALL_ENV",
    "DEFAULT_STALL_TIMEOUT",
    "ClusterLostError",
    "ParallelConfig",
    "configure",
    "current_config",
    "chunked",
    "parallel_map",
    "stall_timeout",
    "backend_session",
    "watch_parent",
    "is_lost_worker",
    "LOKY_GRACE",
    "loky_pool_fault",
    "progress_bar",
    "parse_shard",
    "in_shard",
    "interrupt_guard",
    "check_interrupt",
    "exit_on_interrupt",
    "wait_for",
]

logger = logging.getLogger("mexkit")

#: joblib backends a stage can run on.
BACKENDS = ("loky", "threading", "dask", "ray")

#: Environment variable holding the stall guard's time (seconds; 0 turns it off).
STALL_ENV = "MEXKIT_STALL_TIMEOUT"
#: Seconds a cluster map waits with no worker alive and nothing finishing.
DEFAULT_STALL_TIMEOUT = 300.0
#: Seconds a loky map goes on once its worker pool can no longer finish work
#: (:func:`loky_pool_fault`) before it fails the map's unfinished tasks.
LOKY_GRACE = 5.0


class ClusterLostError(MexkitError):
    """A Dask or Ray cluster lost every worker and got none back in time.

    Raised by :func:`parallel_map` when, for the stall guard's time, no chunk
    finished and the cluster had no live worker; the stage runner then keeps
    every finished sample and records the rest as failed with this message.
    """

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """Run settings shared by every stage of one command.

    Attributes
    ----------
    retries : int
        How many more times samples lost with a worker (a killed process, a
        lost cluster node) are tried before they are recorded as failed.
    scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``) for
        ``backend="dask"``; None starts a local cluster for the run.
    address : str or None
        Address of a running Ray cluster (``host:6379`` or ``auto``) for
        ``backend="ray"``; None starts a local Ray instance for the run.
    shard : tuple of int or None
        ``(index, count)``: this job computes only the samples whose id falls
        in shard ``index`` of ``count`` (0-based; see :func:`in_shard`).
    cache : str or None
        A shared, content-addressed folder of finished samples
        (:class:`mexkit.pipeline.cache.SampleCache`).
    reuse : tuple of str
        Stores received from elsewhere: once they pass validation, their
        samples whose cache key matches are copied instead of computed.
    stall_timeout : float or None
        Seconds a Dask or Ray map goes on with no live worker and no chunk
        finishing before it stops with :class:`ClusterLostError`; 0 never
        stops; None reads ``MEXKIT_STALL_TIMEOUT``, else 300 s
        (:func:`stall_timeout`).
    overwrite : bool
        Replace an existing output file that is not a mexkit store, or a
        store made by another stage or with other parameters (``--overwrite``;
        an input of the run is never replaced).
    trust : tuple of str
        Public key files (``--trust``) whose cache entries and ``--reuse``
        stores this run uses, besides its own key's.
    audit : float
        Share of cache and ``--reuse`` hits recomputed and compared
        (``--audit``); any difference refuses the cache or store.
    """

    retries: int = 2
    scheduler: str | None = None
    address: str | None = None
    shard: tuple[int, int] | None = None
    cache: str | None = None
    reuse: tuple[str, ...] = ()
    stall_timeout: float | None = None
    overwrite: bool = False
    trust: tuple[str, ...] = ()
    audit: float = 0.0


_DEFAULT_CONFIG = ParallelConfig()
_CONFIG: contextvars.ContextVar[ParallelConfig | None] = contextvars.ContextVar(
    "mexkit_parallel_config", default=None)


def current_config() -> ParallelConfig:
    """The settings in force (defaults outside :func:`configure`)."""
    return _CONFIG.get() or _DEFAULT_CONFIG


@contextlib.contextmanager
def configure(**changes: Any) -> Iterator[ParallelConfig]:
    """Change some run settings for the duration of a ``with`` block.

    >>> with configure(retries=0, cache="/scratch/mexkit-cache"):
    ...     run_flow(...)  # doctest: +SKIP
    """
    cfg = dataclasses.replace(current_config(), **changes)
    check_range("retries", cfg.retries, 0)
    if cfg.stall_timeout is not None:
        check_range("stall_timeout", cfg.stall_timeout, 0)
    token = _CONFIG.set(cfg)
    try:
        yield cfg
    finally:
        _CONFIG.reset(token)


# ---------------------------------------------------------------------------
# sharding
# ---------------------------------------------------------------------------
_ARRAY_ENV = (
    # (task id, first id, task count) of each scheduler's array jobs
    ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"),
    ("SGE_TASK_ID", "SGE_TASK_FIRST", None),
    ("PBS_ARRAYID", None, None),
    ("PBS_ARRAY_INDEX", None, None),
)


def parse_shard(text: str | None, environ: dict[str, str] | None = None
                ) -> tuple[int, int] | None:
    """Parse ``--shard``: ``"I/N"`` (0-based), ``"auto"`` or ``"auto/N"``.

    ``auto`` reads the task id of a Slurm (``SLURM_ARRAY_TASK_ID``, minus
    ``SLURM_ARRAY_TASK_MIN``, count ``SLURM_ARRAY_TASK_COUNT``), SGE
    (``SGE_TASK_ID`` minus ``SGE_TASK_FIRST``, count from ``SGE_TASK_LAST``
    and ``SGE_TASK_STEPSIZE``) or PBS (``PBS_ARRAYID`` / ``PBS_ARRAY_INDEX``)
    array job; give the count as ``auto/N`` where the scheduler does not
    export it.
    """
    if text is None or text == "":
        return None
    env = os.environ if environ is None else environ
    head, _, tail = text.partition("/")
    count: int | None = None
    if tail:
        try:
            count = int(tail)
        except ValueError:
            count = None
        if count is None or count < 1:
            raise ParameterError(f"Invalid value for --shard: {text!r}; use I/N with N >= 1, "
                                 "e.g. 0/4, or auto.")
    if head == "auto":
        for id_var, first_var, count_var in _ARRAY_ENV:
            if id_var not in env:
                continue
            try:
                index = int(env[id_var]) - (int(env[first_var]) if first_var and
                                             first_var in env else 0)
                if count is None and count_var and count_var in env:
                    count = int(env[count_var])
                if count is None and id_var == "SGE_TASK_ID" and "SGE_TASK_LAST" in env:
                    step = int(env.get("SGE_TASK_STEPSIZE", "1") or 1)
                    first = int(env.get("SGE_TASK_FIRST", "1"))
                    index = (int(env[id_var]) - first) // step
                    count = (int(env["SGE_TASK_LAST"]) - first) // step + 1
            except ValueError as exc:
                raise ParameterError(f"--shard auto: {id_var}={env[id_var]!r} is not an "
                                     "integer.") from exc
            if count is None:
                raise ParameterError(f"--shard auto: {id_var} is set but the number of tasks "
                                     "is not; give it as --shard auto/N.")
            head = str(index)
            break
        else:
            raise ParameterError("--shard auto: no array-job task id in the environment "
                                 "(SLURM_ARRAY_TASK_ID, SGE_TASK_ID, PBS_ARRAYID).")
    try:
        index = int(head)
    except ValueError as exc:
        raise ParameterError(f"Invalid value for --shard: {text!r}; use I/N (0-based), "
                             "e.g. 0/4, or auto.") from exc
    if count is None:
        raise ParameterError(f"Invalid value for --shard: {text!r}; use I/N, e.g. 0/4.")
    if not 0 <= index < count:
        raise ParameterError(f"Invalid value for --shard: shard {index} of {count} does not "
                             f"exist (shards are numbered 0 to {count - 1}).")
    return index, count


def in_shard(sample_id: str, shard: tuple[int, int] | None) -> bool:
    """True if ``sample_id`` belongs to ``shard = (index, count)``.

    The shard of a sample is the SHA-256 of its id modulo ``count``: it
    depends on nothing else, so it is stable when samples are added or
    removed and the same on every machine.
    """
    if shard is None:
        return True
    index, count = shard
    h = int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "big")
    return h % count == index


# ---------------------------------------------------------------------------
# the map
# ---------------------------------------------------------------------------
def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """Split ``items`` into consecutive lists of at most ``size`` items."""
    check_range("size", size, 1)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


@contextlib.contextmanager
def backend_session(backend: str, jobs: int, *, scheduler: str | None = None,
                    address: str | None = None) -> Iterator[None]:
    """Set up joblib's ``backend`` for ``jobs`` workers for a ``with`` block.

    ``dask`` connects a client of its own to the scheduler of the Dask
    client already current in this process, else to ``scheduler`` (with
    the TLS settings of dask's configuration; a scheduler without TLS is
    used with a warning), else starts a local cluster of ``jobs``
    single-threaded worker processes that admits only this run (TLS with
    certificates made for the run; closed at the end).  ``ray`` connects to
    ``address``, else starts a local Ray instance with ``jobs`` CPUs (shut
    down at the end) unless Ray is already initialised; a local instance
    requires a token made for the run (Ray's token authentication), so other
    local users cannot use it.
    """
    with _session(backend, jobs, scheduler=scheduler, address=address):
        yield


# A session yields a probe: a callable giving the number of live workers of
# the cluster (None for the local backends, whose pools replace or report
# their own dead workers).
Probe = Callable[[], int]


@contextlib.contextmanager
def _session(backend: str, jobs: int, *, scheduler: str | None = None,
             address: str | None = None) -> Iterator[Probe | None]:
    import joblib  # start-up: every command imports this module; only a map of jobs needs it

    check_option("backend", backend, BACKENDS)
    if backend != "dask" and scheduler is not None:
        raise ParameterError("--scheduler is for --backend dask (Ray takes --address).")
    if backend != "ray" and address is not None:
        raise ParameterError("--address is for --backend ray (Dask takes --scheduler).")
    with contextlib.ExitStack() as stack:
        probe: Probe | None = None
        options: dict[str, Any] = {}
        if backend == "dask":
            client = stack.enter_context(_dask_client(jobs, scheduler))
            options["client"] = client
            probe = _dask_probe(client)
        elif backend == "ray":
            probe = stack.enter_context(_ray_session(jobs, address))
        stack.enter_context(joblib.parallel_config(backend=backend, n_jobs=jobs, **options))
        yield probe


def _watched(func: Callable[[Any], Any], parent_pid: int, chunk: Any) -> Any:
    """``func(chunk)`` in a worker that ends itself when ``parent_pid`` dies."""
    watch_parent(parent_pid)
    return func(chunk)


def _dask_probe(client: Any) -> Probe:
    def probe() -> int:
        return sum(client.nthreads().values())

    return probe


@contextlib.contextmanager
def _dask_client(jobs: int, scheduler: str | None) -> Iterator[Any]:
    """A client of the run's own (never the process's default one).

    Its own client lets a map that stops (the stall guard) release every task
    it submitted by closing it, without touching a client the caller holds.
    """
    try:
        import distributed  # optional dependency (the dask extra)
    except ImportError as exc:
        raise ParameterError("The 'dask' backend needs dask.distributed "
                             "(pip install 'dask[distributed]').") from exc
    security = None
    if scheduler is None:
        try:
            current = distributed.get_client()
        except ValueError:
            current = None
        if current is None:
            with _local_dask_cluster(jobs) as client:
                yield client
            return
        scheduler, security = current.scheduler.address, current.security
    elif _plain_address(scheduler):
        logger.warning("dask: the scheduler %s takes any client that can reach it (no TLS): "
                       "whoever can connect runs code as the workers' user; secure it with "
                       "TLS certificates (docs/sharing.md)", scheduler)
    try:  # waits for dask's distributed.comm.timeouts.connect
        client = distributed.Client(scheduler, security=security, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ParameterError(f"Cannot reach the Dask scheduler at {scheduler!r}: {exc}") from exc
    with client:
        yield client


def _kill_local_workers(cluster: Any) -> None:
    """SIGKILL the worker processes of a local Dask cluster this run started (Ctrl-C):
    their samples are staged or lost with them, as with a killed loky worker."""
    for name in ("distributed", "tornado", "asyncio"):  # the nannies' complaints about it
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(getattr(getattr(nanny, "process", None), "process", None), "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _plain_address(address: str) -> bool:
    """True for a Dask address without TLS (``tcp://``, ``ws://``, no protocol)."""
    return "://" not in address or address.split("://", 1)[0] in ("tcp", "ws", "inproc")


@contextlib.contextmanager
def _local_dask_cluster(jobs: int) -> Iterator[Any]:
    """A local Dask cluster that admits only this run.

    Scheduler, nannies and workers listen on 127.0.0.1 with TLS and require a
    client certificate signed by a certificate authority made for this run
    (:meth:`distributed.security.Security.temporary`: a new key pair in this
    process's memory, passed to the worker processes it starts).  Another
    user of the machine, who can reach the ports but holds no certificate, is
    refused at the TLS handshake and can submit nothing.
    """
    import distributed  # optional dependency (the dask extra)
    from distributed.security import Security  # optional dependency, as above

    try:
        security = Security.temporary()
    except ImportError as exc:  # pragma: no cover - cryptography is a dependency
        raise ParameterError("A local Dask cluster needs the 'cryptography' package for "
                             "its TLS certificates (pip install cryptography).") from exc
    logger.info("dask: starting a local cluster of %d worker process(es) (TLS, this run "
                "only)", jobs)
    # no dashboard, and the scheduler's HTTP server (health and metrics routes) on a free
    # port of 127.0.0.1: by default it takes 8787 and, when another cluster holds 8787,
    # warns and moves elsewhere
    with distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1", protocol="tls",
                                  security=security,
                                  scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}
                                  ) as cluster, \
            distributed.Client(cluster, security=security, set_as_default=False) as client:
        try:
            yield client
        except KeyboardInterrupt:
            # the nannies would give each busy worker 4 s to finish its task
            _kill_local_workers(cluster)
            raise


@contextlib.contextmanager
def _ray_session(jobs: int, address: str | None) -> Iterator[Probe]:
    try:
        import ray  # optional dependency (ray)
        from ray.util.joblib import register_ray  # optional dependency, as above
    except ImportError as exc:
        raise ParameterError("The 'ray' backend needs ray (pip install 'ray[default]').") from exc
    register_ray()

    def probe() -> int:
        return sum(1 for n in ray.nodes()
                   if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0)

    if ray.is_initialized():
        yield probe
        return
    before = _descendants(os.getpid())
    token = _ray_token() if address is None else {}
    try:
        # in this (the main) thread: Ray started from another thread hangs in its first
        # call to the cluster's key-value store (Ray 2.60: the driver gives up after 60 s
        # and exits).  Its start waits in native code that Ctrl-C reaches late; the
        # command's watchdog ends the process 1.5 s after a Ctrl-C the main thread misses
        kwargs: dict[str, Any] = (
            {"num_cpus": jobs, "include_dashboard": False, "log_to_driver": False}
            if address is None else {"address": address, "log_to_driver": False})
        ray.init(**kwargs)
    except ConnectionError as exc:
        _restore_ray_env(token)
        raise ParameterError(f"Cannot reach the Ray cluster at {address!r}: {exc}") from exc
    except KeyboardInterrupt:  # Ctrl-C while Ray starts: what it started goes
        if address is None:
            _kill(_local_ray_processes(before))
        _restore_ray_env(token)
        raise
    except BaseException:  # Ray did not start: the environment is as it was
        _restore_ray_env(token)
        raise
    started = _descendants(os.getpid()) - before
    _STARTED.update(started)
    try:
        yield probe
    except KeyboardInterrupt:
        if address is None and _EXIT_ON_INTERRUPT:
            # the mexkit command ends right after (status 130); ray.shutdown() would take
            # seconds: the local Ray processes this run started are killed instead (also
            # those that Ctrl-C's end of Ray's raylet has already orphaned)
            _kill(started | _local_ray_processes(before))
            raise
        ray.shutdown()
        raise
    else:
        ray.shutdown()
    finally:
        _STARTED.difference_update(started)
        _restore_ray_env(token)


def _descendants(pid: int) -> set[int]:
    """Process ids below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return set()
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().rsplit(b")", 1)[1].split()
            children.setdefault(int(stat[1]), []).append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _local_ray_processes(before: set[int]) -> set[int]:
    """The processes of the local Ray instance this process started: its descendants
    that were not there ``before``, and Ray's processes of this process group that
    lost their parent (Ray's agents outlive a raylet that Ctrl-C ended)."""
    me = os.getpid()
    out = _descendants(me) - before
    try:
        pgrp, names = os.getpgrp(), os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit() or int(name) in out or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                head, _, tail = fh.read().rpartition(b")")
            comm, stat = head.partition(b"(")[2], tail.split()
            # orphaned, in our process group, and named by Ray (its processes set
            # their titles: ray::DashboardAgent, ray::IDLE, raylet, gcs_server)
            if int(stat[1]) == 1 and int(stat[2]) == pgrp and (
                    comm.startswith(b"ray::") or comm in (b"raylet", b"gcs_server")):
                out.add(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _ray_token() -> dict[str, str | None]:
    """Turn on Ray's token authentication for the local instance this run starts.

    A random token in this process's environment (readable by this user
    only), inherited by the Ray processes it starts: a client without it,
    another local user's included, is refused.  Nothing is changed where
    ``RAY_AUTH_MODE`` is set already (the user's own choice).  Returns the
    variables to restore afterwards.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return {}
    before = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                                            "RAY_AUTH_TOKEN_PATH")}
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:  # Ray caches its configuration: refresh it (as Ray's own set-up does)
        from ray._raylet import Config  # optional dependency (ray)

        Config.initialize("")
    except Exception as exc:  # an older Ray without token authentication
        logger.warning("ray: cannot turn on token authentication (%s); the local Ray "
                       "instance admits any local client", exc)
    return before


def _restore_ray_env(saved: dict[str, str | None]) -> None:
    """Undo :func:`_ray_token`, Ray's cached configuration included (a later Ray start in
    this process, without the token, would otherwise still ask for one)."""
    if not saved:
        return
    _restore_env(saved)
    try:
        from ray._raylet import Config  # optional dependency (ray)

        Config.initialize("")
    except Exception:  # an older Ray: nothing was cached
        pass
    try:  # the token Ray's client read from the environment
        from ray._raylet import AuthenticationTokenLoader  # optional dependency (ray)

        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:  # an older Ray without token authentication
        pass


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def stall_timeout(value: float | None = None, *,
                  environ: dict[str, str] | None = None) -> float:
    """Seconds the stall guard of a cluster map waits (``math.inf``: off).

    Parameters
    ----------
    value : float, optional
        Seconds; 0 turns the guard off.  None takes the setting in force
        (``--stall-timeout``, :func:`configure`), else the environment
        variable ``MEXKIT_STALL_TIMEOUT``, else :data:`DEFAULT_STALL_TIMEOUT`
        (300 s).
    environ : mapping, optional
        Where to read ``MEXKIT_STALL_TIMEOUT`` (default ``os.environ``).
    """
    if value is None:
        value = current_config().stall_timeout
    if value is None:
        text = (os.environ if environ is None else environ).get(STALL_ENV, "").strip()
        if not text:
            return DEFAULT_STALL_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value >= 0:
            raise ParameterError(f"Invalid value for {STALL_ENV}: {text!r}; give seconds "
                                 ">= 0 (0 turns the stall guard off).")
    check_range("stall_timeout", value, 0)
    return math.inf if value == 0 else float(value)


def parallel_map(func: Callable[[list[T]], R], chunks: Iterable[list[T]], *, jobs: int = 1,
                 backend: str = "loky", scheduler: str | None = None,
                 address: str | None = None, stall: float | None = None) -> Iterator[R]:
    """Yield ``func(chunk)`` for every chunk, in the order they finish.

    Parameters
    ----------
    func : callable
        Takes one chunk (a list); must be picklable (a module-level function)
        for the process and cluster backends.
    chunks : iterable of list
        Usually from :func:`chunked`; the same chunks for every backend.
    jobs : int
        Workers.  One runs a plain loop in this process (no joblib at all).
    backend : {"loky", "threading", "dask", "ray"}
        joblib backend for ``jobs > 1`` (see :func:`backend_session`).
    scheduler, address : str, optional
        A running Dask scheduler or Ray cluster to use.
    stall : float, optional
        The stall guard's time in seconds for the dask and ray backends (0:
        off; default :func:`stall_timeout`).

    Raises
    ------
    ClusterLostError
        On a Dask or Ray cluster, when no chunk finished and no worker was
        alive for ``stall`` seconds (a cluster that lost every worker and
        got none back: Dask would wait for workers for ever).  The tasks
        still queued on the cluster are released.

    Notes
    -----
    An exception raised by ``func`` (or a lost worker) ends the iteration
    with that exception; chunks already yielded stay yielded.
    """
    check_range("jobs", jobs, 1)
    chunks = list(chunks)
    if jobs == 1 or (len(chunks) <= 1 and backend in ("loky", "threading")):
        for c in chunks:
            yield func(c)
        return
    import joblib  # start-up: as in _session; one job never needs it

    if backend != "threading":
        # whatever this process starts dies with it, even killed with SIGKILL
        ensure_reaper()
    if backend == "loky":  # each worker also ends itself within 0.25 s of our death
        func = functools.partial(_watched, func, os.getpid())
        _retire_stopped_pool()

    # Ray's joblib backend returns a list only (workers still stage each sample at once)
    order = "list" if backend == "ray" else "generator_unordered"
    limit = stall_timeout(stall)
    with contextlib.ExitStack() as stack:
        # exits in reverse: the session closes (releasing the cluster's tasks),
        # then the thread that waited on them is joined
        waiter = _Waiter()
        stack.push(waiter.exit)
        probe = stack.enter_context(_session(backend, jobs, scheduler=scheduler,
                                             address=address))
        par = joblib.Parallel(return_as=order)
        calls = (joblib.delayed(func)(c) for c in chunks)
        if backend == "loky":
            with _LokyWatch(par):
                yield from par(calls)
            return
        if probe is None or math.isinf(limit):
            yield from par(calls)
            return
        yield from waiter.run(par, calls, probe, limit, backend)


class _Waiter:
    """Runs a joblib map in a thread; the caller's thread watches the cluster.

    The map's results pass through a queue, so the calling thread is never
    blocked inside joblib and can stop when the cluster has had no live
    worker and nothing finished for ``limit`` seconds.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def run(self, par: Any, calls: Iterable[Any], probe: Probe, limit: float,
            backend: str) -> Iterator[Any]:
        results: queue.SimpleQueue = queue.SimpleQueue()

        def produce() -> None:
            try:
                for r in par(calls):
                    results.put((True, r))
            except BaseException as exc:  # handed to the calling thread
                results.put((False, exc))
            else:
                results.put((False, None))

        tick = min(1.0, limit / 4)
        last_alive = [time.monotonic()]

        def watch() -> None:  # probes in a thread of its own: a dead scheduler may block it
            while not self._stop.wait(tick):
                try:
                    alive = probe()
                except Exception as exc:
                    logger.debug("%s: cluster probe failed: %s", backend, exc)
                    alive = 0
                if alive:
                    last_alive[0] = time.monotonic()

        self._thread = threading.Thread(target=produce, name="mexkit-map", daemon=True)
        self._thread.start()
        threading.Thread(target=watch, name="mexkit-map-watch", daemon=True).start()
        last_done = time.monotonic()
        try:
            while True:
                check_interrupt()
                try:
                    ok, item = results.get(timeout=tick)
                except queue.Empty:
                    idle = time.monotonic() - max(last_done, last_alive[0])
                    if idle >= limit:
                        raise ClusterLostError(
                            f"the {backend.capitalize()} cluster lost all its workers: none "
                            f"alive and no sample finished for {limit:g} s "
                            f"(--stall-timeout / {STALL_ENV})") from None
                    continue
                if not ok:
                    if item is None:
                        return
                    raise item
                last_done = time.monotonic()
                yield item
        finally:
            self._stop.set()

    def exit(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        """Context-exit hook: join the map's thread, not waiting after Ctrl-C (it waits
        in Python on a cluster being torn down: safe to leave behind)."""
        self.join(timeout=0.0 if exc_type is KeyboardInterrupt else 10.0)
        return False

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                logger.debug("the cluster map's thread is still waiting on its cluster")


# ---------------------------------------------------------------------------
# the loky pool's guard
# ---------------------------------------------------------------------------
# joblib waits on the futures of loky's pool; only the pool's manager thread
# completes them (a result read from a worker, or TerminatedWorkerError when a
# worker dies).  That thread dies with any exception raised in it, and loky
# catches none: a warning it emits there (``A worker stopped while some jobs
# were given to the executor``, on a worker recycled for memory or ended by
# its idle timeout while tasks were queued) becomes an exception wherever
# warnings are errors (``-W error``, pytest's ``filterwarnings = error``), and
# so does a failed fork of a replacement worker.  The map then waited for
# ever on a pool with no manager, its last worker a zombie.  The guard below
# notices such a pool and does what its manager would have done.
def _loky_pool(par: Any) -> Any:
    """The loky executor a joblib ``Parallel`` runs on (None before it has one)."""
    return getattr(getattr(par, "_backend", None), "_workers", None)


def _has_ended(proc: Any) -> bool:
    """True once the process ``proc`` has ended (its sentinel is readable; not reaped)."""
    from multiprocessing.connection import wait  # start-up: only a loky map gets here

    sentinel = getattr(proc, "sentinel", None)
    if sentinel is None:
        return False
    try:
        return bool(wait([sentinel], timeout=0))
    except (OSError, ValueError):  # closed by loky meanwhile: it has seen the process end
        return False


def loky_pool_fault(pool: Any) -> str | None:
    """Why the loky executor ``pool`` can no longer finish work, or None.

    Two states that loky itself never reports, in which its futures would
    never complete: the pool's manager thread has ended although the pool is
    neither shut down nor marked broken, or a worker process has ended and is
    still counted among the pool's workers (the manager notices a dead worker
    within milliseconds, so one still counted means the manager is not
    working).  A pool that is shut down or broken is no fault: loky has
    completed its futures already.
    """
    manager = getattr(pool, "_executor_manager_thread", None)
    manager_ended = manager is not None and not manager.is_alive()
    flags = getattr(pool, "_flags", None)
    if flags is None or flags.broken is not None or flags.shutdown:
        return None
    if manager_ended:
        return "its manager thread has ended"
    for pid, proc in list((getattr(pool, "_processes", None) or {}).items()):
        if _has_ended(proc):
            return f"worker process {pid} has ended unnoticed"
    return None


def _stop_pool(pool: Any, fault: str, waited: float) -> bool:
    """Do what the pool's manager thread would have done for a lost worker.

    Marks the pool broken (joblib makes a new one for the next map), fails
    every unfinished task with loky's ``TerminatedWorkerError`` (so the map
    raises it, and :func:`is_lost_worker` counts it as a lost worker) and
    kills the pool's remaining workers.  Returns False if this loky has not
    the internals used here.
    """
    try:
        # start-up: as in _session, loky is imported by loky maps only
        from joblib.externals.loky.backend.utils import kill_process_tree  # (above)
        from joblib.externals.loky.process_executor import TerminatedWorkerError  # (above)

        error = TerminatedWorkerError(
            f"the loky worker pool stopped working ({fault}) and had not recovered "
            f"{waited:.0f} s later; its unfinished tasks are given up as lost with a worker")
        pool._flags.flag_as_broken(error)
        for item in list(pool._pending_work_items.values()):
            with contextlib.suppress(Exception):  # finished or cancelled meanwhile
                item.future.set_exception(error)
        for proc in list(pool._processes.values()):
            with contextlib.suppress(Exception):  # ended meanwhile
                kill_process_tree(proc)
        with contextlib.suppress(Exception):  # ends the queue's feeder thread
            pool._call_queue.close()
    except Exception as exc:  # another loky: nothing to stop the wait with
        logger.warning("loky: the worker pool stopped working (%s) and cannot be stopped "
                       "from here (%s: %s)", fault, type(exc).__name__, exc)
        return False
    logger.warning("loky: the worker pool stopped working (%s); its unfinished tasks are "
                   "given up as lost with a worker", fault)
    return True


def _retire_stopped_pool() -> None:
    """Stop joblib's reusable loky pool if its manager thread ended after an earlier map.

    Otherwise the next map would queue its tasks on it (or wait, resizing it,
    for tasks it will never finish).
    """
    from joblib.externals.loky import reusable_executor  # start-up: loky maps only

    pool = getattr(reusable_executor, "_executor", None)
    fault = None if pool is None else loky_pool_fault(pool)
    if fault is not None and "manager" in fault:
        _stop_pool(pool, fault, 0.0)


class _LokyWatch:
    """A thread that watches the loky pool of a map while the map runs.

    Every ``tick`` seconds it asks :func:`loky_pool_fault`; a fault that lasts
    ``grace`` seconds stops the pool (:func:`_stop_pool`): the map raises
    ``TerminatedWorkerError`` instead of waiting for ever, and the stage
    runner retries its samples on a new pool.
    """

    def __init__(self, par: Any, *, grace: float | None = None, tick: float = 0.5) -> None:
        self._par = par
        self._grace = LOKY_GRACE if grace is None else grace
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mexkit-loky-watch",
                                        daemon=True)

    def __enter__(self) -> _LokyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        since: float | None = None
        while not self._stop.wait(self._tick):
            pool = _loky_pool(self._par)
            fault = None if pool is None else loky_pool_fault(pool)
            if fault is None:
                since = None
                continue
            now = time.monotonic()
            since = now if since is None else since
            if now - since >= self._grace:
                _stop_pool(pool, fault, now - since)
                return


# What a lost worker, node or connection raises through joblib (by name: the
# cluster libraries are optional).  Not Ray's RaySystemError: it also stands for
# errors that a retry repeats (a stage module the workers cannot import).
_LOST = frozenset({
    "TerminatedWorkerError", "BrokenProcessPool", "KilledWorker", "CommClosedError",
    "FutureCancelledError", "CancelledError", "WorkerCrashedError", "RayActorError",
    "ActorDiedError", "NodeDiedError", "OwnerDiedError", "ObjectLostError",
    "LocalRayletDiedError",
})


def is_lost_worker(exc: BaseException) -> bool:
    """True if ``exc`` says a worker, node or connection was lost (worth a retry)."""
    if isinstance(exc, (ConnectionError, EOFError, TimeoutError)):
        return True
    return any(t.__name__ in _LOST for t in type(exc).__mro__)


# ---------------------------------------------------------------------------
# worker-side: stop with the parent
# ---------------------------------------------------------------------------
_WATCHING: set[int] = set()
_WATCH_LOCK = threading.Lock()


def watch_parent(parent_pid: int, *, interval: float = 0.25) -> bool:
    """Make this worker process exit when ``parent_pid`` (its parent) dies.

    Called at the start of every chunk a worker runs.  It does nothing in
    the parent itself (one job, threads) or in a process whose parent is
    another one (a Dask or Ray worker belongs to its cluster, not to the
    command); in a direct child (a loky worker) it starts, once, a daemon
    thread that ends the process within ``interval`` seconds of the parent's
    death, so killing only the main process of a ``-j N`` run stops its
    workers too.  Samples already staged are kept; the temporary file of the
    sample in progress is removed by the next run.

    Returns True if the watch is (now) running in this process.
    """
    if os.getpid() == parent_pid or os.getppid() != parent_pid:
        return False
    with _WATCH_LOCK:
        if parent_pid in _WATCHING:
            return True
        _WATCHING.add(parent_pid)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="mexkit-parent-watch", daemon=True).start()
    return True


# ---------------------------------------------------------------------------
# Ctrl-C: never lost, honoured at once
# ---------------------------------------------------------------------------
_INTERRUPTED = threading.Event()
# set by the mexkit command: after Ctrl-C the process ends at once (status 130), so
# clusters this run started are killed rather than shut down gracefully
_EXIT_ON_INTERRUPT = False


# processes of local clusters this process started (killed if it ends on Ctrl-C)
_STARTED: set[int] = set()


def exit_on_interrupt(*, grace: float = 1.5, message: str = "") -> None:
    """Make sure the process ends within ``grace`` seconds of Ctrl-C (the ``mexkit``
    command calls this once, in its main thread).

    Normally KeyboardInterrupt unwinds the stage (finished samples are kept) and the
    command exits with status 130.  But Python runs its SIGINT handler only when the
    main thread is back in Python code: a main thread blocked in native code (a
    cluster client waiting for a scheduler that the same Ctrl-C killed: Ray's does
    for 60 s) would not notice.  A watchdog thread learns of the signal at once
    (:func:`signal.set_wakeup_fd`) and, if the process is still there ``grace``
    seconds later, prints ``message``, kills the local cluster processes this run
    started and ends the process with status 130.  Nothing is lost: every finished
    sample or piece is already on disk, and the store's files are safe against a
    kill at any moment.
    """
    global _EXIT_ON_INTERRUPT
    _EXIT_ON_INTERRUPT = True
    if threading.current_thread() is not threading.main_thread():
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):  # pragma: no cover - not the main thread / no fds
        os.close(r)
        os.close(w)
        return

    def watch() -> None:
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGINT in data:
                time.sleep(grace)
                if message:
                    with contextlib.suppress(OSError, ValueError):
                        sys.stderr.write(message + "\n")
                        sys.stderr.flush()
                if _STARTED:
                    _kill(_STARTED | _local_ray_processes(set(_STARTED)))
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.flush()
                os._exit(130)

    threading.Thread(target=watch, name="mexkit-interrupt-watch", daemon=True).start()


@contextlib.contextmanager
def interrupt_guard() -> Iterator[None]:
    """Remember Ctrl-C (SIGINT) for the duration of a stage run.

    Python raises KeyboardInterrupt wherever the main thread happens to be;
    raised inside a finaliser or a weak-reference callback it is printed as
    "Exception ignored" and lost, and the run went on to its end (issue 28).
    Inside this block SIGINT also sets a flag that :func:`check_interrupt`
    turns into KeyboardInterrupt again at the runner's next check (after each
    finished sample, and while waiting for a solver), so an interrupt is
    never lost.  Installed in the main thread only, in front of the Python
    handler in force (Python's default, or one that wraps it, such as the
    TV-L1 worker pool's), which it then calls; a SIGINT that is ignored or
    left to the operating system is left so.  The flag is cleared on entry
    and on exit, so one run's Ctrl-C never reaches the next.
    """
    _INTERRUPTED.clear()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        try:
            yield
        finally:
            _INTERRUPTED.clear()
        return

    def on_sigint(signum: int, frame: Any) -> None:
        _INTERRUPTED.set()
        previous(signum, frame)  # Python's default raises KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        # the KeyboardInterrupt a finaliser swallowed: check_interrupt raises it again,
        # so Python's "Exception ignored in ..." traceback would only be noise
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _INTERRUPTED.is_set():
            return
        hook(unraisable)

    sys.unraisablehook = quiet
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        _INTERRUPTED.clear()


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came during this stage run (see
    :func:`interrupt_guard`), even if the first one was lost.

    Called in any thread of this process: the worker threads of the
    ``threading`` backend (which no signal reaches) stop at their next check
    too, so the main thread is not left waiting for their chunks.
    """
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def wait_for(future: Any, *, tick: float = 0.2) -> Any:
    """``future.result()``, waking every ``tick`` seconds to honour Ctrl-C."""
    while True:
        check_interrupt()
        try:
            return future.result(timeout=tick)
        except concurrent.futures.TimeoutError:
            continue


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------
def progress_bar(total: int, desc: str, *, unit: str = "sample", enabled: bool = True) -> Any:
    """A tqdm bar on stderr, shown only when stderr is a terminal.

    Parameters
    ----------
    total : int
        Number of steps.
    desc : str
        Label (the stage name).
    unit : str
        What one step is.
    enabled : bool
        False hides it (``--quiet``).
    """
    show = enabled and total > 0 and sys.stderr.isatty()
    if not show:  # a pipe or --quiet: no bar, and no tqdm import (start-up)
        return _NoBar()
    from tqdm import tqdm  # start-up: only where a bar is shown

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                leave=False)


class _NoBar:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
