"""The ``mexkit`` command line.

Which command lives where, one rule: a command lives in ``mexkit/cli/<m>.py``,
where ``mexkit.pipeline.<m>`` is the pipeline module that does its work (``train``
and ``predict`` in ``cli/training.py`` beside ``pipeline/training.py``, ``spot-eval`` in
``cli/spot_eval.py``, ``convert`` in ``cli/published.py``, ``samples`` in
``cli/crop.py`` because ``pipeline/crop.py`` reads sheets for both). A command
module only parses options and calls that module; it imports nothing of mexkit but
that module, :mod:`mexkit.pipeline.options` (the registries' names and options,
environment variables, job counts) and :mod:`mexkit.errors`. What several commands
share (output helpers, the one ``--device`` option, the run options) is
``cli/_common.py``. :data:`COMMANDS` lists each command's module; a test checks the
rule.

Conventions (DESIGN.md): every stage reads a path or ``-`` (a store path on
stdin), writes one store and prints exactly its path on stdout; logs and
progress go to stderr.  A closed stdout (``mexkit ... | head -1``) ends
quietly.  The global options ``-v``, ``-q`` and ``--debug`` are taken before
or after the subcommand (``mexkit -v flow x.h5`` or ``mexkit flow x.h5 -v``).

Exit status, decided here, in one place, by one rule:

* 0: the command did everything it was asked (every sample succeeded);
* 1: the command ran but its input could not be used, or some samples
  failed (the others are kept, the failures recorded in the store): a store,
  sheet, video, results file or predictions CSV that is unreadable or holds
  the wrong thing (StoreError, DatasetError, MediaError, NoFaceError ...,
  every :class:`~mexkit.errors.MexkitError` but ParameterError), and
  internal errors;
* 2: the command line is wrong, nothing was read or written: an unknown
  command or option, a missing argument, a value of the wrong type or out of
  range, options that do not go together, an input path that does not exist
  (click's usage errors and :class:`~mexkit.errors.ParameterError`);
* 130: interrupted (finished samples are kept).
"""
from __future__ import annotations

import atexit
import importlib
import logging
import os
import stat
import sys
import threading
import traceback
from typing import Any

import click

from .. import __version__
from ..errors import MexkitError, ParameterError

__all__ = ["cli", "main", "run"]

# name -> (module, attribute, one-line help); loaded lazily so that
# `mexkit inspect` does not import torch.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("mexkit.cli.synth", "synth_cmd",
              "Write a synthetic ME dataset with ground-truth motion."),
    "samples": ("mexkit.cli.crop", "samples_cmd",
                "Show what mexkit reads from a dataset's annotation sheet."),
    "import": ("mexkit.cli.importing", "import_cmd",
               "Write a store from a release that arrives preprocessed (MEGC 2019 flow)."),
    "crop": ("mexkit.cli.crop", "crop_cmd",
             "Detect, align and crop faces (68-point landmarks)."),
    "flow": ("mexkit.cli.flow", "flow_cmd",
             "Optical flow (TV-L1 on CPU/GPU, OpenCV TV-L1, Farneback) with strain/features."),
    "strain": ("mexkit.cli.flow", "strain_cmd", "Optical strain magnitude of a flow store."),
    "tim": ("mexkit.cli.temporal", "tim_cmd", "Temporal interpolation model to N frames."),
    "rpca": ("mexkit.cli.temporal", "rpca_cmd",
             "Robust PCA sparse (identity-removed) frames; PSN's chain."),
    "keyframes": ("mexkit.cli.temporal", "keyframes_cmd",
                  "Adaptive key frames (MERSiamC3D), TAS, apex window, uniform."),
    "magnify": ("mexkit.cli.temporal", "magnify_cmd",
                "Eulerian or Riesz phase-based motion magnification."),
    "merge": ("mexkit.cli.merge", "merge_cmd", "Join the partial stores of a --shard run."),
    "show": ("mexkit.cli.show", "show_cmd",
             "Draw a store: crops, landmarks, flow, strain, sparse frames; a sheet or a GIF."),
    "inspect": ("mexkit.cli.inspect", "inspect_cmd",
                "Summarise a store: stage, provenance, samples."),
    "validate": ("mexkit.cli.inspect", "validate_cmd",
                 "Check a store; exit 0 if valid, 1 otherwise."),
    "export": ("mexkit.cli.export", "export_cmd",
               "Write a store or a results folder as CSV or Parquet tables."),
    "train": ("mexkit.cli.training", "train_cmd",
              "Train and evaluate a model under LOSO / k-fold / CDE / HDE."),
    "pretrain": ("mexkit.cli.pretraining", "pretrain_cmd",
                 "Pre-train a model's frame backbone on still frames (AKMNet's AffectNet stage)."),
    "evaluate": ("mexkit.cli.evaluation", "evaluate_cmd",
                 "Metrics table of a results file or any predictions CSV."),
    "predict": ("mexkit.cli.training", "predict_cmd",
                "Apply a trained model to the samples of a store."),
    "models": ("mexkit.cli.models", "models_cmd",
               "List the models, their inputs, defaults and parameter counts."),
    "spot-eval": ("mexkit.cli.spot_eval", "spot_eval_cmd",
                  "Score spotted intervals (F1, AP, STRS)."),
    "spot": ("mexkit.cli.spot", "spot_cmd",
             "Spot expression intervals with trained networks or the authors' published ones."),
    "convert": ("mexkit.cli.published", "convert_cmd",
                "Convert a network its authors published (MEAN's Keras files) into mexkit "
                "weights."),
}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"mexkit: error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"mexkit: warning: {msg}"
        return f"mexkit: {msg}"


def _setup_logging(verbose: int, quiet: bool, debug: bool) -> None:
    logger = logging.getLogger("mexkit")
    for h in list(logger.handlers):
        if getattr(h, "_mexkit", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._mexkit = True  # type: ignore[attr-defined]
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    if debug or verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    elif quiet:
        level = logging.ERROR
    else:
        level = logging.WARNING
    logger.setLevel(level)
    logging.captureWarnings(True)


def _silence_stdout() -> None:
    # Python's advice for SIGPIPE: point stdout at devnull so the interpreter's
    # final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class MexkitGroup(click.Group):
    """A group that loads subcommands lazily and maps errors to exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return _with_global_options(getattr(importlib.import_module(module), attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        def debug() -> bool:
            return bool((ctx.obj or {}).get("debug"))

        try:
            rv = super().invoke(ctx)
        except click.MissingParameter as exc:
            _hint_dash(exc)
            raise
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo(_INTERRUPTED, err=True)
            ctx.exit(130)
        except MexkitError as exc:
            if debug():
                traceback.print_exc(file=sys.stderr)
            click.echo(f"mexkit: error: {_first_line(exc)}", err=True)
            ctx.exit(2 if isinstance(exc, ParameterError) else 1)
        except Exception as exc:  # a bug: say so, in one line unless --debug
            from ..pipeline.options import no_space  # start-up: only when a command failed

            if no_space(exc):  # a full disk is not a bug: say where, in one line
                if debug():
                    traceback.print_exc(file=sys.stderr)
                where = getattr(exc, "filename", None)
                click.echo(f"mexkit: error: no space left on device"
                           f"{f' (writing {where})' if where else ''}: {_first_line(exc)}",
                           err=True)
                ctx.exit(1)
            if debug():
                traceback.print_exc(file=sys.stderr)
            else:
                click.echo(
                    f"mexkit: internal error: {type(exc).__name__}: {_first_line(exc)} "
                    "(run with --debug for the traceback)", err=True)
            ctx.exit(1)
        if hasattr(rv, "computed") and not (ctx.obj or {}).get("quiet"):
            click.echo(f"mexkit: {ctx.invoked_subcommand}: {rv.computed} computed, "
                       f"{rv.skipped} skipped (cached), {len(rv.failures)} failed "
                       f"in {rv.seconds:.1f} s", err=True)
        code = getattr(rv, "exit_code", rv if isinstance(rv, int) else 0)
        if code:
            ctx.exit(code)
        return rv


_INTERRUPTED = "mexkit: interrupted; finished samples are kept, re-run to resume."
_VERBOSE_HELP = "More log output on stderr (-vv for debug)."
_QUIET_HELP = "Only errors on stderr; no progress bars."
_DEBUG_HELP = "Show tracebacks for errors."


def _late_global(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A global option given after the subcommand: merge it into the root's settings."""
    if not value:
        return value
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if param.name == "verbose":
        obj["verbose"] = int(obj.get("verbose", 0)) + int(value)
    else:
        obj[str(param.name)] = True
    obj["progress"] = not obj.get("quiet")
    root.obj = obj
    _setup_logging(obj.get("verbose", 0), bool(obj.get("quiet")), bool(obj.get("debug")))
    return value


def _with_global_options(cmd: click.Command) -> click.Command:
    """Give ``cmd`` the group's -v/-q/--debug, so that they work after the subcommand."""
    if getattr(cmd, "_mexkit_globals", False):
        return cmd
    taken = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for decls, kw, text in ((("-v", "--verbose"), {"count": True}, _VERBOSE_HELP),
                            (("-q", "--quiet"), {"is_flag": True}, _QUIET_HELP),
                            (("--debug",), {"is_flag": True}, _DEBUG_HELP)):
        if not taken & set(decls):
            cmd.params.append(click.Option(list(decls), expose_value=False,
                                           callback=_late_global, help=text, **kw))
    cmd._mexkit_globals = True  # type: ignore[attr-defined]
    return cmd


def _hint_dash(exc: click.MissingParameter) -> None:
    """A missing STORE while a pipe feeds stdin: the '-' was forgotten; say so."""
    param = exc.param
    if not isinstance(param, click.Argument) or param.name not in ("store", "inputs"):
        return
    try:
        piped = sys.stdin is not None and stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    except (ValueError, OSError, AttributeError):  # closed, or not a real file (CliRunner)
        piped = False
    if piped:
        exc.message = ((exc.message + ". " if exc.message else "")
                       + "Standard input is a pipe: give '-' to read the store path the "
                         "previous command printed (e.g. mexkit crop ... | mexkit flow -).")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split("\n")) if text else type(exc).__name__


@click.group(cls=MexkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="mexkit")
@click.option("-v", "--verbose", count=True, help=_VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=_QUIET_HELP)
@click.option("--debug", is_flag=True, help=_DEBUG_HELP)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """mexkit: micro-expression preprocessing, feature stores and models.

    Each subcommand reads a dataset, a clip or a store (or '-' for a store
    path on stdin), writes one HDF5 store, and prints its path on stdout, so
    that commands chain in shell pipelines:

    \b
        mexkit synth data | mexkit crop --annotations - \\
          | mexkit flow - --pairs onset-apex --features mean \\
          | mexkit train - --model mean --protocol loso
    """
    ctx.obj = {"verbose": verbose, "quiet": quiet, "debug": debug,
               "progress": not quiet}
    _setup_logging(verbose, quiet, debug)


def _end_interrupted() -> None:
    """After Ctrl-C: end the process now, with status 130.

    The stage has already kept its finished samples (each is written as it
    finishes; the store's files are safe against a kill at any moment), its
    ``with`` blocks have run and its threads were asked to stop.  What is left
    of a normal exit can only delay it: a thread still inside native code
    (OpenCV, torch) makes the interpreter wait for it or abort, a cluster's
    shutdown takes seconds, and tearing down torch's modules under load takes
    a second more.  Worker processes end by themselves when this process
    does (TV-L1 workers at the end of their input, loky workers watch their
    parent, a local Ray's processes were killed).  Issue 28: within 2 s.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(130)


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv``, default ``sys.argv[1:]``); ends with SystemExit.

    The ``mexkit`` command itself is :func:`run`, which also ends the process at once
    afterwards.
    """
    from .._threads import one_blas_thread_before_numpy  # the entry point only: light

    one_blas_thread_before_numpy()  # before the imports below load numpy
    from ..pipeline.options import command_started  # the entry point only: light

    command_started(interrupted_message=_INTERRUPTED)
    try:
        cli.main(args=argv, prog_name="mexkit")
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
    except SystemExit as exc:
        if exc.code == 130:
            _end_interrupted()
        raise
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()


def _exit_status(code: Any) -> int:
    """The process status of ``sys.exit(code)``, as the interpreter gives it (a text
    ``code`` is printed to stderr, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except (OSError, ValueError):
        pass
    return 1


def _flush_streams() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, ValueError):
        pass
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def run() -> None:
    """The ``mexkit`` command (console script): :func:`main`, then the process ends at once.

    When the command is done, the process does what the interpreter's own exit
    does for the program (standard streams flushed; ``threading``'s exit
    callbacks and the wait for every non-daemon thread; the :mod:`atexit`
    callbacks: logging's flush, multiprocessing's, joblib's and tempfile's
    clean-up) and then ends with the command's status, without the rest:
    freeing some 400 modules one by one and the exit handlers of the C
    libraries (LLVM's static destructors, HDF5's library shutdown, torch's).
    That rest cost every command about 45 ms (``mexkit flow`` on 64 pairs runs
    in about 1 s) and does nothing a finished command needs: every store the
    command wrote is closed and renamed into place before it returns, and a
    file open for reading needs no closing.  An error that escapes :func:`main`
    (a bug: a traceback) takes the interpreter's normal way out.
    """
    try:
        main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    status = _exit_status(code)
    _flush_streams()
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # not CPython's threading module: the interpreter's own exit
        sys.exit(status)
    shutdown()
    atexit._run_exitfuncs()
    _flush_streams()
    os._exit(status)
