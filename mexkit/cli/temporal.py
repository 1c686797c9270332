"""``mexkit tim``, ``mexkit rpca``, ``mexkit keyframes`` and ``mexkit magnify``."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.temporal import KEYFRAME_METHODS, run_keyframes, run_magnify, run_rpca, run_tim
from ._common import device_option, jobs_options, output_option, run_stage_command


@click.command("tim", epilog="""\b
Examples:
  mexkit tim demo.crop.h5 -n 64
  mexkit tim demo.crop.h5 -n 10 --float -o demo.tim10.h5
""")
@click.argument("store", type=str)
@click.option("-n", "--frames", "n_frames", type=click.IntRange(min=2), default=64,
              show_default=True, help="Output length (10, 16, 32, 64, 128, 150 are common).")
@click.option("--grid", type=click.Choice(["exact", "demo"]), default="exact",
              show_default=True,
              help="exact: first and last output frames are the input's (same length "
                   "reproduces the clip); demo: the reference demo's positions t/T.")
@click.option("--float", "keep_float", is_flag=True,
              help="Store float32 frames instead of rounding to uint8.")
@output_option
@jobs_options
def tim_cmd(store: str, n_frames: int, grid: str, keep_float: bool, output: Path | None,
            jobs: int, backend: str):
    """Temporal interpolation model (Zhou et al. 2011): resample clips to N frames.

    Clips whose frames are not linearly independent (repeated frames) use the
    limit of TIM on a vanishing perturbation, with a warning.
    """
    return run_stage_command(store, output, "tim", run_tim, detail=n_frames, jobs=jobs,
                             backend=backend, n_frames=n_frames, grid=grid,
                             keep_float=keep_float)


@click.command("rpca", epilog="""\b
Examples:
  mexkit rpca demo.crop.h5 --psn                  # PSN: TIM-150, RPCA, 16 frames
  mexkit rpca demo.crop.h5 --low-rank -o demo.rpca.h5
""")
@click.argument("store", type=str)
@click.option("--lambda", "lam", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sparsity weight (default 1/sqrt(max(m, n))).")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-7,
              show_default=True, help="Relative residual ||D - A - E||_F / ||D||_F.")
@click.option("--max-iter", type=click.IntRange(min=1), default=500, show_default=True,
              help="Most inexact-ALM iterations; a clip not converged by then fails.")
@click.option("--low-rank", is_flag=True, help="Also store the low-rank part A.")
@click.option("--psn", is_flag=True,
              help="PSN's chain: TIM to 150 frames, RPCA, 16 frames sampled uniformly.")
@click.option("--tim-frames", type=click.IntRange(min=2), default=150, show_default=True,
              help="--psn: TIM length before RPCA (150 in PSN).")
@click.option("--keep", type=click.IntRange(min=2), default=16, show_default=True,
              help="--psn: frames kept.")
@device_option("RPCA runs")
@output_option
@jobs_options
def rpca_cmd(store: str, lam: float | None, tol: float, max_iter: int, low_rank: bool,
             psn: bool, tim_frames: int, keep: int, device: str, output: Path | None,
             jobs: int, backend: str):
    """Robust PCA by inexact ALM (Lin, Chen, Ma 2010): store the sparse frames E.

    Columns are vectorised frames (intensities in [0, 1]); E, the motion that
    PSN keeps, is stored as `sparse`.  A clip that does not converge fails
    with its residual and iteration count.
    """
    return run_stage_command(store, output, "rpca", run_rpca, detail="psn" if psn else None,
                             jobs=jobs, backend=backend, lam=lam, tol=tol, max_iter=max_iter,
                             low_rank=low_rank, psn=psn, n_tim=tim_frames, k=keep,
                             device=device)


@click.command("keyframes", epilog="""\b
Examples:
  mexkit keyframes demo.crop.h5                   # MERSiamC3D's 11 adaptive frames
  mexkit keyframes demo.crop.h5 --method apex-window -n 65
""")
@click.argument("store", type=str)
@click.option("--method", type=click.Choice(KEYFRAME_METHODS),
              default="adaptive", show_default=True,
              help="MERSiamC3D's adaptive key frames (Algorithm 1, flow-based midpoint "
                   "synthesis), TAS (original frames at the same times), ATNet's apex "
                   "window, or uniform sampling.")
@click.option("-n", "--frames", "n_frames", type=click.IntRange(min=2), default=None,
              help="Key frames per clip (default 11; 65 for apex-window).")
@output_option
@jobs_options
def keyframes_cmd(store: str, method: str, n_frames: int | None, output: Path | None,
                  jobs: int, backend: str):
    """Key-frame clips; `mexkit flow --pairs keyframes` takes their adjacent pairs."""
    return run_stage_command(store, output, "keyframes", run_keyframes, detail=method,
                             jobs=jobs, backend=backend, method=method, n_frames=n_frames)


@click.command("magnify", epilog="""\b
Examples:
  mexkit magnify demo.crop.h5 --method riesz --alpha 15     # AKMNet
  mexkit magnify demo.crop.h5 --method eulerian --alpha 10 --high 0.3
""")
@click.argument("store", type=str)
@click.option("--method", type=click.Choice(["riesz", "eulerian"]), default="riesz",
              show_default=True,
              help="Phase-based with a Riesz pyramid (Wadhwa et al. 2014) or linear "
                   "Eulerian (Wu et al. 2012).")
@click.option("--alpha", type=click.FloatRange(min=0), default=15.0, show_default=True,
              help="Amplification (AKMNet: 15; public ME code: 10).")
@click.option("--low", type=click.FloatRange(min=0, min_open=True), default=0.05,
              show_default=True, help="Temporal band: r2 of the IIR filter, or a cut-off.")
@click.option("--high", type=click.FloatRange(min=0, min_open=True), default=0.4,
              show_default=True, help="Temporal band: r1 of the IIR filter, or a cut-off.")
@click.option("--filter", "temporal_filter", type=click.Choice(["iir", "ideal", "butterworth"]),
              default="iir", show_default=True,
              help="iir: low/high are Wu et al.'s r2, r1; ideal/butterworth: cut-offs in Hz.")
@output_option
@jobs_options
def magnify_cmd(store: str, method: str, alpha: float, low: float, high: float,
                temporal_filter: str, output: Path | None, jobs: int, backend: str):
    """Magnify the small motions of every clip in STORE (or '-')."""
    return run_stage_command(store, output, "magnify", run_magnify, detail=method, jobs=jobs,
                             backend=backend, method=method, alpha=alpha, low=low, high=high,
                             temporal_filter=temporal_filter)
