"""``mexkit flow`` and ``mexkit strain``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ._common import (
    default_output,
    jobs_options,
    n_jobs,
    out,
    output_option,
    resolve_input,
    settings,
)

#: Environment variable read here (not in the motion layer): "0" switches the
#: CUDA engine's torch.compile off when --compile/--no-compile is not given.
COMPILE_ENV = "MEXKIT_TVL1_COMPILE"


def _method_option_specs() -> list[tuple[Any, list[str]]]:
    """Every flow method's options, one entry per option name, with the methods using it."""
    from ..motion.methods import flow_method, flow_methods

    specs: dict[str, tuple[Any, list[str]]] = {}
    for name in flow_methods():
        for opt in flow_method(name).options:
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


def _method_options(f: Any) -> Any:
    """Add one click option per flow-method option (generated from the registry)."""
    for opt, methods in reversed(_method_option_specs()):
        where = ", ".join(methods)
        help_text = f"[{where}] {opt.help}"
        if opt.default is not None:  # an option without one says in its help what it does
            help_text += f" Default: {opt.default}."
        if opt.choices is not None and opt.type is not str:
            help_text += f" One of {', '.join(str(c) for c in opt.choices)}."
        if opt.type is bool:
            flag = opt.cli_flag
            decl = f"{flag}/--no-{flag[2:]}"
            f = click.option(decl, opt.name, default=None, help=help_text)(f)
            continue
        if opt.choices is not None and opt.type is str:
            kind: Any = click.Choice([str(c) for c in opt.choices])
        elif opt.type is int:
            kind = click.IntRange(min=None if opt.minimum is None else int(opt.minimum))
        else:
            kind = opt.type
        f = click.option(opt.cli_flag, opt.name, type=kind, default=None, help=help_text)(f)
    return f


def _split_method_options(method: str, given: dict[str, Any], jobs: int
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options that change the flow, options that do not) for ``method``, checked."""
    from ..motion.methods import flow_method

    spec = flow_method(method)
    names = {o.name for o in spec.options}
    stray = [o.cli_flag for o, _ in _method_option_specs() if o.name in given and
             o.name not in names]
    if stray:
        raise click.UsageError(f"{', '.join(stray)} do(es) not apply to --method {method}.")
    if "compile" in names and given.get("compile") is None:
        env = os.environ.get(COMPILE_ENV, "").strip().lower()
        if env in ("0", "false", "no", "off"):
            given["compile"] = False
    if "threads" in names and given.get("threads") is None and jobs > 1:
        from ..devices import usable_cores

        # the cores are shared out between the --jobs workers
        given["threads"] = max(1, usable_cores() // jobs)
    values = spec.resolve(given)
    result = {o.name: values[o.name] for o in spec.options if o.affects_result}
    runtime = {o.name: values[o.name] for o in spec.options
               if not o.affects_result and o.name in given and o.name != "device"}
    return result, runtime


def _method_help() -> str:
    from ..motion.methods import flow_method, flow_methods

    return "; ".join(f"{name}: {flow_method(name).summary.rstrip('.')}"
                     for name in flow_methods()) + "."


def _method_names() -> list[str]:
    from ..motion.methods import flow_methods

    return flow_methods()


@click.command("flow", epilog="""\b
Examples:
  mexkit flow demo.crop.h5 --pairs onset-apex --strain          # MEAN
  mexkit flow demo.crop.keyframes-adaptive.h5 --pairs keyframes --method farneback
""")
@click.argument("store", type=str)
@click.option("--method", type=click.Choice(_method_names()), default="tvl1",
              show_default=True, help=_method_help())
@click.option("--pairs", type=click.Choice(["consecutive", "gap", "onset-apex", "onset-all",
                                            "keyframes", "apex-window"]),
              default="consecutive", show_default=True,
              help="Frame pairing: i,i+1; i,i+k (MEAN spotting); onset,apex (MEAN "
                   "recognition); onset,every frame; adjacent key frames (MERSiamC3D); 65 "
                   "frames around the apex (ATNet).")
@click.option("-k", "--gap", "k", type=click.IntRange(min=1), default=None,
              help="--pairs gap: the gap in frames (default: each video's 0.1 x fps, "
                   "rounded half up as MEAN does: 3 at 25 fps, 2 at 23.976 fps, 20 at 200 "
                   "fps; each sample records its gap).")
@click.option("--window", type=click.IntRange(min=2), default=65, show_default=True,
              help="--pairs apex-window: frames in the window.")
@click.option("--strain", is_flag=True, help="Also store the optical strain magnitude.")
@click.option("--features", default="",
              help="Comma-separated: dm (ATNet direction-magnitude), hoof, mean (MEAN's "
                   "42x42 u, v, strain regions).")
@click.option("--mask-eyes", is_flag=True,
              help="--features mean: black out the eyes (landmarks 36-47, 15 px margin), "
                   "as SOFTNet does, so blinks do not count as motion.")
@click.option("--remove-head-motion", is_flag=True,
              help="--features mean: subtract the mean flow of an 11x11 box at the nose "
                   "(landmark 28) before the regions and their strain are taken.")
@click.option("--with-apex", is_flag=True,
              help="Also store the apex frame (ATNet's spatial input).")
@click.option("--no-apex", type=click.Choice(["auto", "middle", "max-diff", "fail"]),
              default="auto", show_default=True,
              help="When a clip has no apex annotation: auto, the rule every stage "
                   "shares (the middle frame of an annotated clip, as SMIC's in ATNet; the "
                   "frame most different from the first of a clip without annotation), "
                   "or always the middle frame, always the most different one, or fail "
                   "the sample. Each sample records which it got (apex_source).")
@_method_options
@click.option("--group", type=click.IntRange(min=1), default=None,
              help="Samples per chunk of work; their pairs are solved in batched calls "
                   "(default 64 with one job, 16 with more; the result does not change).")
@output_option
@jobs_options
def flow_cmd(store: str, method: str, pairs: str, k: int | None, window: int, strain: bool,
             features: str, mask_eyes: bool, remove_head_motion: bool, with_apex: bool,
             no_apex: str, group: int | None, output: Path | None, jobs: int, backend: str,
             **method_options: Any):
    """Optical flow between frame pairs of each clip in STORE (or '-').

    Flow is stored as (P, 2, H, W) float32, channel 0 horizontal u, channel 1
    vertical v, in pixels of the stored crop, with the frame pairs (P, 2) and
    the landmarks of each pair's first frame.  Prints the output store's path.
    Each method's options are listed with the methods that take them in
    brackets; options that only change where or how fast the flow is computed
    (--device, --threads, --compile) are not part of the cache key.
    """
    from ..pipeline.flow import run_flow

    path = resolve_input(store)
    output = output or default_output(path, "flow", method)
    feats = [f.strip() for f in features.split(",") if f.strip()]
    given = {name: value for name, value in method_options.items() if value is not None}
    device = given.get("device", "auto")
    if device not in ("auto", "cpu"):
        from ..devices import resolve_device

        resolve_device(device)  # a device that is not there fails once, before any sample
    jobs = n_jobs(jobs)
    result_options, runtime = _split_method_options(method, given, jobs)
    result = run_flow(path, output, method=method, pairs=pairs, k=k, window=window,
                      strain=strain, features=feats, with_apex=with_apex, no_apex=no_apex,
                      mask_eyes=mask_eyes, remove_head_motion=remove_head_motion,
                      device=device, method_options=result_options, method_runtime=runtime,
                      jobs=jobs, backend=backend, group=group,
                      progress=settings().get("progress", True))
    out(str(Path(output).resolve()))
    return result


@click.command("strain", epilog="""\b
Examples:
  mexkit strain demo.crop.flow-tvl1.h5
  mexkit strain demo.crop.flow-tvl1.h5 --components -o strain.h5
""")
@click.argument("store", type=str)
@click.option("--components", is_flag=True,
              help="Also store the strain tensor components exx, eyy, exy.")
@output_option
@jobs_options
def strain_cmd(store: str, components: bool, output: Path | None, jobs: int, backend: str):
    """Optical strain magnitude (MEAN eq. 3) of every flow field in STORE (or '-').

    sqrt(ux^2 + vy^2 + 1/2 (uy + vx)^2) with central differences inside the
    field and one-sided differences at its border.  The output keeps the flow.
    """
    from ..pipeline.flow import run_strain

    path = resolve_input(store)
    output = output or default_output(path, "strain")
    result = run_strain(path, output, components=components, jobs=n_jobs(jobs),
                        backend=backend, progress=settings().get("progress", True))
    out(str(Path(output).resolve()))
    return result
