"""Shared pieces of the subcommands: output helpers, options, input resolution.

Like every command module, this one imports nothing of mexkit below the CLI but the
pipeline (:mod:`mexkit.pipeline.options`) and :mod:`mexkit.errors`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ParameterError
from ..pipeline import options as pipeline_options

__all__ = [
    "out",
    "err",
    "resolve_input",
    "default_output",
    "jobs_options",
    "run_options",
    "output_option",
    "overwrite_option",
    "device_option",
    "settings",
    "progress",
    "run_stage_command",
]


def out(text: str) -> None:
    """Write one line to stdout (the only channel for results)."""
    click.echo(text, file=sys.stdout)


def err(text: str) -> None:
    """Write one line to stderr."""
    click.echo(text, file=sys.stderr)


def settings() -> dict[str, Any]:
    """The global options (verbosity, debug) of the running command."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None and ctx.parent is not None:
        ctx = ctx.parent
    return dict(ctx.obj or {}) if ctx is not None else {}


def progress() -> bool:
    """Whether the running command shows progress bars (not with ``-q``)."""
    return bool(settings().get("progress", True))


def resolve_input(value: str, *, what: str = "input store") -> Path:
    """Return the path named by ``value``; ``-`` reads it from stdin.

    With ``-`` the first non-empty line of standard input is the path (as the
    previous command in a pipeline printed it).
    """
    if value == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise ParameterError(f"The {what} is '-', but standard input is closed.")
        line = ""
        for raw in sys.stdin:
            line = raw.strip()
            if line:
                break
        if not line:
            raise ParameterError(
                f"The {what} is '-', but standard input held no path "
                "(did the previous command fail?)."
            )
        value = line
    path = Path(value)
    if not path.exists():
        raise ParameterError(f"The {what} {str(path)!r} does not exist.")
    return path


def default_output(source: Path, stage: str, detail: str | int | None = None) -> Path:
    """Default output store: the input's name, then the stage and its method.

    ``x.crop.h5`` -> ``x.crop.flow-tvl1.h5`` (``detail="tvl1"``);
    ``x.crop.keyframes-adaptive.h5`` -> ``x.crop.keyframes-adaptive.flow-tvl1.h5``;
    ``data/`` -> ``data.crop.h5`` (in the cwd).  The whole input name is kept,
    so two different chains, or two methods, never pick the same name; an
    output equal to the input is refused by the stage.
    """
    tag = stage
    if detail is not None and str(detail) != "":
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(detail))
        tag = f"{stage}-{safe}"
    name = source.name
    if source.is_file() and name.endswith(".h5"):
        return source.with_name(f"{name[:-3]}.{tag}.h5")
    base = source.resolve().name or "mexkit"
    base = base.split(".")[0] or "mexkit"
    return Path.cwd() / f"{base}.{tag}.h5"


def run_stage_command(store: str, output: Path | None, stage: str, run: Any, *,
                      detail: str | int | None = None, **kw: Any) -> Any:
    """A stage command's work: read STORE (or '-'), name the output if ``-o`` is not
    given (:func:`default_output`), call ``run(path, output, progress=..., **kw)`` (a
    pipeline function) and print the output store's path."""
    path = resolve_input(store)
    output = output or default_output(path, stage, detail)
    result = run(path, output, progress=progress(), **kw)
    out(str(Path(output).resolve()))
    return result


def overwrite_option(f: Any) -> Any:
    """--overwrite: replace an output that is not a mexkit store, or a store made by
    another stage or with other parameters."""
    return click.option(
        "--overwrite", is_flag=True, default=None, expose_value=False,
        callback=_run_setting("overwrite"),
        help="Replace the output even if it was made with other parameters or by another "
             "stage (the command otherwise stops, naming each parameter that differs; the "
             "same parameters resume it), or is not a mexkit store (mexkit never replaces a "
             "file it did not write otherwise, and never an input of the run).",
    )(f)


_OUTPUT_HELP = ("Output store (default: the input's name plus the stage and method, e.g. "
                "x.crop.h5 -> x.crop.flow-tvl1.h5).")


def output_option(f: Any = None, *, help: str = _OUTPUT_HELP) -> Any:
    """-o/--output and --overwrite; ``@output_option`` or ``@output_option(help=...)``."""
    def add(g: Any) -> Any:
        g = overwrite_option(g)
        return click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                            default=None, help=help)(g)

    return add if f is None else add(f)


def device_option(what: str) -> Any:
    """The one ``--device`` option of every command that runs torch code.

    The value is passed on as given; the pipeline checks it once, before any
    work (:func:`mexkit.devices.check_device`), so that a misspelt device or
    a GPU that is not there fails with exit status 2, naming it.
    """
    return click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
        help=f"Where {what}: auto (a GPU when torch sees one, else the CPU), cpu, cuda or "
             "cuda:N (GPU N).")


def _run_setting(name: str, convert: Any = None) -> Any:
    """A click callback that holds one run setting (retries, shard, ...) while the
    command runs (:func:`mexkit.pipeline.options.run_setting`)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        held = pipeline_options.run_setting(
            name, convert(value) if convert and value is not None else value)
        if held is not None:
            ctx.with_resource(held)
        return value

    return callback


def _files_option(name: str, metavar: str, text: str) -> Any:
    """A repeatable run option naming existing files (``--trust``, ``--reuse``)."""
    return click.option(f"--{name}", name, multiple=True, metavar=metavar,
                        expose_value=False, callback=_run_setting(name, tuple), help=text,
                        type=click.Path(exists=True, dir_okay=False, path_type=str))


def run_options(f: Any) -> Any:
    """--retries, --stall-timeout, --scheduler, --address, --shard, --reuse, --cache,
    --trust, --audit (see :func:`jobs_options`)."""
    f = click.option(
        "--audit", type=click.FloatRange(0, 1), default=None, metavar="FRACTION",
        expose_value=False, callback=_run_setting("audit"),
        help="Recompute this share (0-1) of the samples taken from --cache or --reuse and "
             f"compare; any difference refuses the cache or store, naming the entry "
             f"(env {pipeline_options.AUDIT_ENV}; default 0).",
    )(f)
    f = _files_option(
        "trust", "KEYFILE",
        "Use cache entries and --reuse stores signed by the ed25519 public key in KEYFILE "
        f"(repeatable; env {pipeline_options.TRUST_ENV}); entries of this run's own key "
        "(MEXKIT_KEY) are always trusted, any other is ignored (docs/sharing.md).")(f)
    cache_env = pipeline_options.CACHE_ENV
    f = click.option(
        "--cache", type=click.Path(file_okay=False, path_type=str), default=None,
        expose_value=False, callback=_run_setting("cache"),
        help=f"Shared folder of finished samples keyed by cache key (env {cache_env}): "
             "samples found there are copied, not computed; safe for many jobs at once.",
    )(f)
    f = _files_option(
        "reuse", "STORE",
        "A store received from elsewhere (repeatable): once it passes `mexkit validate`, "
        "its samples with the same cache key are copied, not computed.")(f)
    f = click.option(
        "--shard", default=None, metavar="I/N|auto", expose_value=False,
        callback=_run_setting("shard", pipeline_options.parse_shard),
        help="Compute only shard I of N (0-based, by sample id) into a partial store; "
             "'auto' reads a Slurm/SGE/PBS array task id. Join parts with `mexkit merge`.",
    )(f)
    f = click.option(
        "--address", default=None, metavar="ADDRESS", expose_value=False,
        callback=_run_setting("address"),
        help="--backend ray: a running Ray cluster (default: a local one for this run).",
    )(f)
    f = click.option(
        "--scheduler", default=None, metavar="ADDRESS", expose_value=False,
        callback=_run_setting("scheduler"),
        help="--backend dask: a running Dask scheduler, e.g. tcp://host:8786 (default: a "
             "local cluster for this run).",
    )(f)
    f = click.option(
        "--stall-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
        expose_value=False, callback=_run_setting("stall_timeout"),
        help="--backend dask/ray: stop when the cluster has had no live worker and no "
             "sample finished for this long, keeping the finished samples and recording "
             f"the rest as failed (env {pipeline_options.STALL_ENV}; default 300; 0: wait "
             "for ever).",
    )(f)
    f = click.option(
        "--retries", type=click.IntRange(min=0), default=2, show_default=True,
        expose_value=False, callback=_run_setting("retries"),
        help="Times samples lost with a worker are tried again before they are recorded "
             "as failed.",
    )(f)
    return f


def _jobs(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """``--jobs``: 0 is refused, -1 becomes one per CPU core (resolved by the pipeline)."""
    # 0 meant "all cores" without saying so; -1 is the one documented spelling
    if value == 0:
        raise click.BadParameter("0 workers cannot run anything; give 1 or more, or -1 for "
                                 "one per CPU core.", ctx=ctx, param=param)
    return pipeline_options.n_jobs(value)


def jobs_options(f: Any) -> Any:
    f = run_options(f)
    f = click.option(
        "--backend", type=click.Choice(["loky", "threading", "dask", "ray"]), default="loky",
        show_default=True, help="joblib backend for --jobs > 1 (dask/ray for clusters).",
    )(f)
    f = click.option(
        "-j", "--jobs", type=click.IntRange(min=-1), default=1, show_default=True,
        callback=_jobs,
        help="Parallel workers, 1 or more (-1: one per CPU core; 0 is refused).",
    )(f)
    return f
