"""``mexkit flow`` and ``mexkit strain``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..pipeline import options
from ..pipeline.flow import PAIR_MODES, run_flow, run_strain
from ._common import device_option, jobs_options, output_option, run_stage_command


def _method_options(f: Any) -> Any:
    """Add one click option per flow-method option (generated from the registry)."""
    for opt, methods in reversed(options.flow_option_specs()):
        default = "none" if opt.default is None else opt.default
        where = ", ".join(methods)
        help_text = f"[{where}] {opt.help} Default: {default}."
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


def _method_help() -> str:
    return "; ".join(f"{name}: {summary.rstrip('.')}" for name, summary in
                     options.flow_method_summaries().items()) + "."


@click.command("flow", epilog="""\b
Examples:
  mexkit flow demo.crop.h5 --pairs onset-apex --features mean          # MEAN
  mexkit flow demo.crop.keyframes-adaptive.h5 --pairs keyframes --method farneback
""")
@click.argument("store", type=str)
@click.option("--method", type=click.Choice(options.flow_method_names()), default=None,
              help=_method_help() + " Default: tvl1, or tvl1-opencv for --features mean "
              "with --mean-input authors (the flow the authors' MEAN networks saw).")
@click.option("--pairs", type=click.Choice(PAIR_MODES), default="consecutive", show_default=True,
              help="Frame pairing: i,i+1; i,i+k (MEAN spotting); onset,apex (MEAN "
                   "recognition); onset,every frame; adjacent key frames (MERSiamC3D); 65 "
                   "frames around the apex (ATNet).")
@click.option("-k", "--gap", "k", type=click.IntRange(min=1), default=None,
              help="--pairs gap: the gap in frames (default: round(0.1 x fps)).")
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
@click.option("--mean-input", type=click.Choice(["authors", "paper"]), default="authors",
              show_default=True,
              help="--features mean: build MEAN's input as the authors' code does (u, v "
                   "through cartToPolar, backward-difference strain, each map min-max "
                   "normalised, eyebrow band and mouth from dlib's points on the first crop "
                   "frame, 42x21 each) or as mexkit reads the paper (unnormalised, central "
                   "differences, two 21x21 eye parts; --mask-eyes, --remove-head-motion).")
@click.option("--with-apex", is_flag=True,
              help="Also store the apex frame (ATNet's spatial input).")
@click.option("--no-apex", type=click.Choice(["middle", "max-diff", "fail"]),
              default="middle", show_default=True,
              help="When a clip has no apex annotation (SMIC): middle frame, frame most "
                   "different from onset, or fail the sample.")
@_method_options
@device_option("the flow is computed (methods with a device option)")
@click.option("--group", type=click.IntRange(min=1), default=None,
              help="Samples per chunk of work; their pairs are solved in batched calls "
                   "(default 64 with one job, 16 with more; the result does not change).")
@output_option
@jobs_options
def flow_cmd(store: str, method: str | None, pairs: str, k: int | None, window: int,
             strain: bool, features: str, mask_eyes: bool, remove_head_motion: bool,
             mean_input: str, with_apex: bool, no_apex: str, device: str, group: int | None,
             output: Path | None, jobs: int, backend: str, **method_options: Any):
    """Optical flow between frame pairs of each clip in STORE (or '-').

    Flow is stored as (P, 2, H, W) float32, channel 0 horizontal u, channel 1
    vertical v, in pixels of the stored crop, with the frame pairs (P, 2) and
    the landmarks of each pair's first frame.  Prints the output store's path.
    Each method's options are listed with the methods that take them in
    brackets; options that only change where or how fast the flow is computed
    (--device, --threads, --compile) are not part of the cache key.
    """
    feats = [f.strip() for f in features.split(",") if f.strip()]
    read = {"mean_input": mean_input, "mask_eyes": mask_eyes,
            "remove_head_motion": remove_head_motion}
    method = options.flow_method_for(method, feats, read)
    given = {name: value for name, value in method_options.items() if value is not None}
    given["device"] = device
    result_options, runtime = options.resolve_flow_options(method, given, jobs)
    return run_stage_command(
        store, output, "flow", run_flow, detail=method, method=method, pairs=pairs, k=k,
        window=window, strain=strain, features=feats, with_apex=with_apex, no_apex=no_apex,
        mask_eyes=mask_eyes, remove_head_motion=remove_head_motion, mean_input=mean_input,
        device=device, options=result_options, method_runtime=runtime, jobs=jobs,
        backend=backend, group=group)


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
    return run_stage_command(store, output, "strain", run_strain, components=components,
                             jobs=jobs, backend=backend)
