"""What the command line offers, and how its raw values become settings.

The command modules (:mod:`mexkit.cli`) import the pipeline only; this module
gives them what they list and how the values they parse are resolved:

- the names and options of the registries (models, flow methods, dataset
  adapters, label schemes), for click's choices and generated options;
- the environment variables the commands read (``MEXKIT_CACHE``,
  ``MEXKIT_TVL1_COMPILE``; ``MEXKIT_STALL_TIMEOUT`` and
  ``MEXKIT_STORE_LIMITS`` are read where they are used, in
  :mod:`mexkit.pipeline.parallel` and :mod:`mexkit.pipeline.stages`);
- job and thread counts (``--jobs -1``, the cores shared among jobs);
- run settings held while a command runs (:func:`run_setting`).

Loading is lazy where it costs: the model registry (torch) is imported only
by the functions that list models, so that ``mexkit inspect`` starts
without torch.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from .. import _threads
from ..devices import usable_cores
from ..errors import ParameterError
from ..io.signing import TRUST_ENV
from ..io.store.write import no_space
from .cache import CACHE_ENV
from .parallel import STALL_ENV, configure, exit_on_interrupt, parse_shard
from .stages import flow_feature

__all__ = ["CACHE_ENV", "STALL_ENV", "COMPILE_ENV", "AUDIT_ENV", "TRUST_ENV", "n_jobs",
           "run_setting", "parse_shard", "no_space",
           "model_names", "pretrainable_models", "model_option_specs", "flow_method_names",
           "flow_method_summaries", "flow_option_specs", "flow_method_for",
           "resolve_flow_options",
           "dataset_names", "scheme_names", "FFMPEG_LOG_ENV", "command_started",
           "MALLOC_SETTINGS", "tune_allocator", "BLAS_THREADS_ENV", "limit_blas_threads"]

#: The share of reused samples recomputed and compared (``--audit``) when the command line
#: does not say.
AUDIT_ENV = "MEXKIT_AUDIT"
#: "0" (or false/no/off) switches the CUDA TV-L1 engine's torch.compile off when the
#: command line does not say (--compile/--no-compile).
COMPILE_ENV = "MEXKIT_TVL1_COMPILE"


# -- jobs and run settings ----------------------------------------------------------------
def n_jobs(jobs: int) -> int:
    """``--jobs``: -1 is one worker per CPU of the machine, any other value itself."""
    return os.cpu_count() or 1 if jobs == -1 else jobs


def run_setting(name: str, value: Any) -> contextlib.AbstractContextManager | None:
    """The context that holds one run setting (retries, shard, cache, ...) while a command
    runs (:func:`mexkit.pipeline.parallel.configure`); None when it is not set.

    Not given on the command line, ``cache`` is read from ``MEXKIT_CACHE``, ``trust``
    from ``MEXKIT_TRUST`` (key files separated by the path separator) and ``audit``
    from ``MEXKIT_AUDIT``.
    """
    if name == "cache" and value is None:
        value = os.environ.get(CACHE_ENV) or None
    if name == "trust" and not value:
        value = tuple(p for p in os.environ.get(TRUST_ENV, "").split(os.pathsep) if p)
    if name == "audit" and value is None:
        text = os.environ.get(AUDIT_ENV, "").strip()
        if text:
            try:
                value = float(text)
            except ValueError:
                raise ParameterError(f"Invalid value for {AUDIT_ENV}: {text!r}; give a share "
                                     "between 0 and 1.") from None
            if not 0 <= value <= 1:
                raise ParameterError(f"Invalid value for {AUDIT_ENV}: {text!r}; give a share "
                                     "between 0 and 1.")
    if value is None or value is False or value == ():
        return None
    return configure(**{name: value})


# -- models ---------------------------------------------------------------------------------
def model_names() -> list[str]:
    """The registered models (``mexkit train --model``)."""
    from ..models.registry import list_models  # torch: only the model commands need it

    return [s.name for s in list_models()]


def pretrainable_models() -> list[str]:
    """The models with a backbone to pre-train (``mexkit pretrain --model``)."""
    from .pretraining import pretrainable_models as able  # torch: only pretrain needs it

    return able()


def model_option_specs() -> list[tuple[str, Any, str, list[str]]]:
    """``(name, type, help, models)`` for every model option of the registry, one entry
    per option name (models that declare the same name share it).

    Raises
    ------
    ParameterError
        If two models declare an option of one name with different types.
    """
    from ..models.registry import list_models  # torch: only the model commands need it

    seen: dict[str, tuple[Any, list[str], str]] = {}
    for spec in list_models():
        for opt in spec.options:
            kind, owners, text = seen.get(opt.name, (opt.type, [], opt.help))
            if kind != opt.type:
                raise ParameterError(
                    f"Models declare the option --{opt.name} with different types "
                    f"({kind!r} and {opt.type!r}).")
            owners.append(spec.name)
            seen[opt.name] = (kind, owners, text)
    return [(name, kind, text, owners) for name, (kind, owners, text) in sorted(seen.items())]


# -- flow methods ---------------------------------------------------------------------------
def flow_method_names() -> list[str]:
    """The registered flow methods (``mexkit flow --method``)."""
    from ..motion.methods import flow_methods  # keeps `mexkit inspect`'s start-up light

    return flow_methods()


def flow_method_summaries() -> dict[str, str]:
    """Each flow method's one-line summary."""
    from ..motion.methods import flow_method, flow_methods  # start-up: as above

    return {name: flow_method(name).summary for name in flow_methods()}


def flow_option_specs() -> list[tuple[Any, list[str]]]:
    """Every flow method's options, one entry per option name, with the methods using it.

    ``device`` is left out: it is every command's one ``--device`` option.
    """
    from ..motion.methods import flow_method, flow_methods  # start-up: as above

    specs: dict[str, tuple[Any, list[str]]] = {}
    for name in flow_methods():
        for opt in flow_method(name).options:
            if opt.name == "device":
                continue
            held = specs.get(opt.name)
            if held is None:
                specs[opt.name] = (opt, [name])
            elif held[0] == opt:
                held[1].append(name)
            else:
                raise RuntimeError(  # a programming error in a method's registration
                    f"flow methods {held[1]} and {name!r} declare different options "
                    f"named {opt.name!r}")
    return list(specs.values())


def flow_method_for(method: str | None, features: list[str],
                    options: Mapping[str, Any]) -> str:
    """``mexkit flow --method``: the given method, else the one a chosen feature needs
    (:attr:`~mexkit.motion.feature_registry.FlowFeature.flow_method`; it may warn about a
    given one), else tvl1. ``options``: the flow stage's options the features read."""
    for name in features:
        choose = flow_feature(name).flow_method
        if choose is not None:
            method = choose(method, options) or method
    return method or "tvl1"


def resolve_flow_options(method: str, given: Mapping[str, Any], jobs: int
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options that change the flow, options that do not) of ``method``, checked.

    ``given`` holds the options given on the command line, ``device``
    included. Options of other methods are refused, ``compile`` not given
    comes from ``MEXKIT_TVL1_COMPILE``, and ``threads`` not given shares the
    usable cores among ``jobs`` workers.

    Raises
    ------
    ParameterError
        For options that do not apply to ``method``, naming them.
    """
    from ..motion.methods import flow_method  # start-up: as above

    given = dict(given)
    spec = flow_method(method)
    names = {o.name for o in spec.options}
    stray = [o.cli_flag for o, _ in flow_option_specs() if o.name in given and
             o.name not in names]
    if "device" not in names and given.pop("device", "auto") != "auto":
        stray.append("--device")
    if stray:
        raise ParameterError(f"{', '.join(stray)} do(es) not apply to --method {method}.")
    if "compile" in names and given.get("compile") is None:
        env = os.environ.get(COMPILE_ENV, "").strip().lower()
        if env in ("0", "false", "no", "off"):
            given["compile"] = False
    if "threads" in names and given.get("threads") is None and jobs > 1:
        # the cores are shared out between the --jobs workers
        given["threads"] = max(1, usable_cores() // jobs)
    values = spec.resolve(given)
    result = {o.name: values[o.name] for o in spec.options if o.affects_result}
    runtime = {o.name: values[o.name] for o in spec.options
               if not o.affects_result and o.name in given and o.name != "device"}
    return result, runtime


# -- datasets and label schemes -----------------------------------------------------------
def dataset_names() -> list[str]:
    """The registered dataset adapters (``--dataset``)."""
    from ..io.datasets import dataset_names as names  # start-up: the adapters' modules

    return names()


def scheme_names() -> list[str]:
    """The label schemes (``--scheme``)."""
    from ..labels import scheme_names as names  # start-up: only the commands that list them

    return names()


#: OpenCV's variable for FFmpeg's own log level; the command sets it to quiet unless
#: the user set it: FFmpeg's decoder messages ("moov atom not found") would come before
#: mexkit's one line naming the file and what is wrong with it (issue 28).
FFMPEG_LOG_ENV = "OPENCV_FFMPEG_LOGLEVEL"


#: glibc malloc's settings (its environment variables) that the command gives its process
#: and the processes it starts, unless the user set them.  By default glibc serves every
#: block above a threshold (128 KiB, raised to the largest block freed, at most 32 MiB)
#: with a fresh memory mapping and hands free memory at the top of its heap back to the
#: system above twice that: the arrays of a clip (megabytes, allocated and freed many
#: times a sample) then come as new pages, each page faulted in and zeroed by the kernel
#: again (a third of ``mexkit magnify``'s CPU time on 30 crops of 128 x 128).  Here
#: blocks up to 32 MiB come from the heap and up to 256 MiB of free heap is kept for
#: reuse; a process still ends with the same peak memory.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 256 << 20,
                   "MALLOC_TOP_PAD_": 16 << 20}
# mallopt's parameter numbers (glibc's malloc.h)
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}


def tune_allocator(environ: dict[str, str] | None = None, *, apply: bool = True) -> list[str]:
    """Set :data:`MALLOC_SETTINGS` in ``environ`` (default: this process's environment,
    which the worker processes a command starts inherit) where they are not set, and
    apply them to this process (glibc's ``mallopt``; glibc reads the variables only when
    a process starts).  Does nothing where the C library is not glibc.  Returns the
    names set."""
    env = os.environ if environ is None else environ
    try:
        glibc = bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        glibc = False
    if not glibc:
        return []
    changed = [name for name in MALLOC_SETTINGS if name not in env]
    for name in changed:
        env[name] = str(MALLOC_SETTINGS[name])
    if apply and changed:
        import ctypes  # start-up: a few ms, Linux only

        try:
            libc = ctypes.CDLL(None)
            for name in changed:
                libc.mallopt(_MALLOPT[name], MALLOC_SETTINGS[name])
        except (OSError, AttributeError):  # a libc without mallopt: the children still get it
            pass
    return changed


#: The command's numpy (OpenBLAS) runs one thread per process unless the user set this
#: variable: mexkit spreads work over processes (``-j``, fold workers), its matrix products
#: are small (TIM's 64 x 60 by 60 x 16,384), and OpenBLAS's idle threads spin between
#: calls: ``mexkit tim`` on the demo's 30 crops took 3.0 s of CPU with two threads
#: against 1.1 s with one, at the same wall time.
BLAS_THREADS_ENV = _threads.BLAS_THREADS_ENV  # set before numpy loads by the entry point


def limit_blas_threads(environ: dict[str, str] | None = None) -> bool:
    """One BLAS thread for this process (threadpoolctl: numpy is loaded by now) and, through
    :data:`BLAS_THREADS_ENV`, for the processes it starts, unless the variable is set in
    ``environ`` (default: this process's environment).  Returns whether it limited."""
    env = os.environ if environ is None else environ
    if BLAS_THREADS_ENV in env:
        return False
    env[BLAS_THREADS_ENV] = "1"
    if environ is None:
        from threadpoolctl import threadpool_limits  # start-up: 4 ms, the command only

        threadpool_limits(1, user_api="blas")
    return True


def command_started(*, interrupted_message: str) -> None:
    """What the ``mexkit`` command sets up for its process before any work: FFmpeg's
    messages off (:data:`FFMPEG_LOG_ENV`, set it to see them), glibc's allocator tuned
    for arrays of megabytes (:func:`tune_allocator`), one BLAS thread
    (:func:`limit_blas_threads`) and the Ctrl-C watchdog
    (:func:`mexkit.pipeline.parallel.exit_on_interrupt`: the process ends with status
    130 within 1.5 s of SIGINT even when its main thread is stuck in native code)."""
    os.environ.setdefault(FFMPEG_LOG_ENV, "-8")
    tune_allocator()
    limit_blas_threads()
    exit_on_interrupt(grace=1.5, message=interrupted_message)
