"""``mexkit synth``: a synthetic micro-expression dataset with ground truth."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.synth import write_synthetic
from ._common import out


@click.command("synth", epilog="""\b
Examples:
  mexkit synth demo-data                   # CASME II-like clips; prints samples.csv
  mexkit synth long-data --long --seconds 20 --subjects 2
""")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--subjects", type=click.IntRange(min=1), default=4, show_default=True,
              help="Synthetic subjects (distinct faces drawn from one real photograph).")
@click.option("--first-subject", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of the first subject (sub05 for 5). Faces depend on --seed and "
                   "the number: other numbers give other subjects, e.g. a pre-training set "
                   "(`mexkit pretrain`) of subjects never evaluated.")
@click.option("--clips-per-class", type=click.IntRange(min=1), default=2, show_default=True,
              help="Clips of each class per subject (short clips).")
@click.option("--classes", default="negative,positive,surprise", show_default=True,
              help="Comma-separated classes (negative, positive, surprise).")
@click.option("--fps", type=click.FloatRange(min=1), default=None,
              help="Frame rate (default: 100 for clips, 50 for --long; CASME II uses 200).")
@click.option("--size", type=click.IntRange(min=160), default=240, show_default=True,
              help="Frame side in pixels.")
@click.option("--format", "image_format", type=click.Choice(["jpg", "png"]), default="jpg",
              show_default=True, help="png keeps frames exactly equal to the ground truth.")
@click.option("--noise", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Sensor noise sigma in grey levels.")
@click.option("--intensity", default="0.3,2.0", show_default=True,
              help="Range of peak displacement of the micro-expressions, in pixels.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of every random choice: the same seed writes the same dataset.")
@click.option("--long", "long_videos", is_flag=True,
              help="SAMM-LV-like long videos (MEs, macro-expressions, blinks, head motion).")
@click.option("--videos-per-subject", type=click.IntRange(min=1), default=1, show_default=True,
              help="--long: videos of each subject.")
@click.option("--seconds", type=click.FloatRange(min=1), default=12.0, show_default=True,
              help="Length of each long video.")
@click.option("--dense-flow/--no-dense-flow", default=None,
              help="Store every frame's true flow in ROOT/truth (default: for clips, not "
                   "for --long). Without it the truth files keep the factors the flow is "
                   "made of (expression field, activation, head motion); the frames are "
                   "the same.")
@click.option("--overwrite", is_flag=True, help="Replace an existing synthetic dataset.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Subjects written at once, in worker processes (short clips; the files "
                   "are the same for any number).")
def synth_cmd(root: Path, subjects: int, first_subject: int, clips_per_class: int,
              classes: str,
              fps: float | None, size: int, image_format: str, noise: float, intensity: str,
              seed: int,
              long_videos: bool, videos_per_subject: int, seconds: float,
              dense_flow: bool | None, overwrite: bool, jobs: int) -> int:
    """Write a synthetic ME dataset with known onset/apex/offset and motion to ROOT.

    Faces come from a real photograph (scikit-image's astronaut), varied into
    distinct subjects.  Each micro-expression is a low-intensity local
    deformation shaped like its class's action units (surprise AU1+2,
    positive AU12, negative AU4 or AU9).  The true displacement field of every
    frame is saved under ROOT/truth (clips; --no-dense-flow keeps only its
    factors).  Short clips are laid out like CASME II
    (CASME2-coding.xlsx) plus the generic samples.csv, whose path is printed;
    with --long, the videos are laid out like SAMM Long Videos and the
    SAMM-LV sheet's path is printed.  SAMM-LV's published frame rate is 200
    fps: crop synthetic long videos made at another rate with --dataset-fps.

    Running the same command again keeps the dataset it wrote (same options)
    and prints its sheet's path, so that pipelines starting with `mexkit
    synth` can be run again to resume; a dataset written otherwise is
    replaced only with --overwrite.
    """
    try:
        lo, hi = (float(v) for v in intensity.split(","))
    except ValueError:
        raise click.BadParameter(f"takes two numbers LO,HI in pixels, but got {intensity!r}.",
                                 param_hint="'--intensity'") from None
    out(str(write_synthetic(
        root, subjects=subjects, clips_per_class=clips_per_class, classes=classes, fps=fps,
        size=size, image_format=image_format, noise=noise, intensity=(lo, hi), seed=seed,
        long_videos=long_videos, videos_per_subject=videos_per_subject, seconds=seconds,
        overwrite=overwrite, jobs=jobs, first_subject=first_subject,
        dense_flow=dense_flow)))
    return 0
