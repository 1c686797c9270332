"""``mexkit flow`` and ``mexkit strain``."""
from __future__ import annotations

from pathlib import Path

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


@click.command("flow")
@click.argument("store", type=str)
@click.option("--method", type=click.Choice(["tvl1", "tvl1-opencv", "farneback"]),
              default="tvl1", show_default=True,
              help="mexkit's batched TV-L1 (CPU or GPU), OpenCV's DualTVL1 (reference), or "
                   "OpenCV's Farneback (MERSiamC3D).")
@click.option("--pairs", type=click.Choice(["consecutive", "gap", "onset-apex", "onset-all",
                                            "keyframes", "apex-window"]),
              default="consecutive", show_default=True,
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
@click.option("--with-apex", is_flag=True,
              help="Also store the apex frame (ATNet's spatial input).")
@click.option("--no-apex", type=click.Choice(["middle", "max-diff", "fail"]),
              default="middle", show_default=True,
              help="When a clip has no apex annotation (SMIC): middle frame, frame most "
                   "different from onset, or fail the sample.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="For --method tvl1.")
@click.option("--tau", type=float, default=0.25, show_default=True)
@click.option("--lambda", "lambda_", type=float, default=0.15, show_default=True)
@click.option("--theta", type=float, default=0.3, show_default=True)
@click.option("--nscales", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--warps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--epsilon", type=float, default=0.01, show_default=True)
@click.option("--group", type=click.IntRange(min=1), default=16, show_default=True,
              help="Samples whose pairs are solved in one batched call.")
@output_option
@jobs_options
def flow_cmd(store: str, method: str, pairs: str, k: int | None, window: int, strain: bool,
             features: str, mask_eyes: bool, remove_head_motion: bool, with_apex: bool,
             no_apex: str, device: str, tau: float,
             lambda_: float, theta: float, nscales: int, warps: int, epsilon: float,
             group: int, output: Path | None, jobs: int, backend: str):
    """Optical flow between frame pairs of each clip in STORE (or '-').

    Flow is stored as (P, 2, H, W) float32, channel 0 horizontal u, channel 1
    vertical v, in pixels of the stored crop, with the frame pairs (P, 2) and
    the landmarks of each pair's first frame.  Prints the output store's path.
    """
    from ..pipeline.flow import run_flow

    path = resolve_input(store)
    output = output or default_output(path, "flow")
    feats = [f.strip() for f in features.split(",") if f.strip()]
    tvl1 = {"tau": tau, "lambda_": lambda_, "theta": theta, "nscales": nscales,
            "warps": warps, "epsilon": epsilon}
    result = run_flow(path, output, method=method, pairs=pairs, k=k, window=window,
                      strain=strain, features=feats, with_apex=with_apex, no_apex=no_apex,
                      mask_eyes=mask_eyes, remove_head_motion=remove_head_motion,
                      device=device, tvl1=tvl1, jobs=n_jobs(jobs), backend=backend,
                      group=group, progress=settings().get("progress", True))
    out(str(Path(output).resolve()))
    return result


@click.command("strain")
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
