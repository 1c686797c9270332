"""``mexkit spot`` (:mod:`mexkit.pipeline.spot`): apply trained spotting networks."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.spot import format_spot_report, spot
from ._common import device_option, err, out, progress, resolve_input, settings

__all__ = ["spot_cmd"]


@click.command("spot", epilog="""\b
Examples:
  mexkit spot long.crop.flow-farneback.h5 --results run -o spotted.csv
  mexkit flow long.crop.h5 --method farneback --pairs gap --features mean \\
    | mexkit spot - --results run --p 0.6 --no-plots
  mexkit spot my_video.mp4 --weights MEAN_Weights/CASME_sq -o my_video.intervals.csv
  mexkit spot casme2.gap20.h5 --weights MEAN_Weights/CASME2/spot_recog --per-subject
""")
@click.argument("store", type=str)
@click.option("--results", "results_dir", type=click.Path(exists=True, file_okay=False),
              default=None,
              help="Results folder of `mexkit train STORE --model NAME --final` on a "
                   "long-video store (holds spot_model.json).")
@click.option("--weights", type=click.Path(exists=True), default=None,
              help="Networks a model's authors published, instead of --results (MEAN: a "
                   "folder of fold files sN.hdf5, spot_recog or spot, or "
                   "MEAN_Weights/<dataset>); all folds are averaged. STORE may then be a "
                   "video file or image folder: it is cropped and given the networks' input "
                   "as the authors' code builds it first.")
@click.option("--crop", "crop", type=click.Choice(["authors", "mexkit"]), default=None,
              help="--weights on a video: frame the face as the authors' code does "
                   "(default; MEAN: dlib's face box on the first frame, 128x128, JPEG read "
                   "back as grey: `mexkit crop --preset mean`), or with mexkit crop's "
                   "landmark alignment.")
@click.option("--fold", default=None, metavar="sN",
              help="--weights: use this one fold network instead of all of them.")
@click.option("--per-subject", is_flag=True,
              help="--weights: each video by its own subject's fold network (the authors' "
                   "LOSO numbering; docs/reproducing.md).")
@click.option("--subject-map", default=None, metavar="SUBJECT=sN,...|FILE",
              help="--per-subject: the fold file of each subject.")
@click.option("--kprime", type=click.IntRange(min=1), default=None,
              help="--weights: k' (default: the networks' dataset's, MEAN Table 1, scaled to "
                   "the video's frame rate).")
@click.option("--peaks", type=click.Choice(["all", "highest"]), default=None,
              help="--weights: every peak above the threshold (long videos) or the single "
                   "highest (short clips). Default: the networks' dataset's rule; all for a "
                   "video.")
@click.option("--classes", default=None, metavar="A,B,C",
              help="--weights: class names of the recognition outputs (default: from the "
                   "dataset folder in the path).")
@click.option("--gap", type=click.IntRange(min=1), default=None,
              help="--weights on a video: flow gap k (default: 0.1 x fps, rounded half up).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--weights on an image folder: its frame rate.")
@click.option("--p", "p", type=click.FloatRange(0.0, 1.0), default=None,
              help="Peak threshold fraction of eq. 12 (default: the trained run's, 0.55).")
@click.option("--emotions", type=click.Path(dir_okay=False), default=None,
              help="Interval file whose emotion column labels the store's intervals "
                   "(for scoring only).")
@device_option("the networks run")
@click.option("--no-plots", is_flag=True, help="Do not draw a PNG per video.")
@click.option("--type-store", "type_store", default=None, metavar="TYPE=STORE[,...]",
              help="Gap-flow store of the same videos for a type whose network was trained "
                   "on another flow gap (`mexkit train --type-store`).")
@click.option("--force", is_flag=True,
              help="Spot even when STORE's features were made otherwise than the model's "
                   "(flow gap, flow method or its options, --mask-eyes, "
                   "--remove-head-motion), with a warning naming both; refused otherwise.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Interval CSV to write (default: <store>.intervals.csv); a .json and a "
                   ".plots folder go beside it.")
def spot_cmd(store: str, results_dir: str | None, weights: str | None, crop: str | None,
             fold: str | None,
             per_subject: bool, subject_map: str | None, kprime: int | None,
             peaks: str | None, classes: str | None, gap: int | None, fps: float | None,
             p: float | None, emotions: str | None, device: str,
             no_plots: bool, type_store: str | None, force: bool, output: str | None) -> int:
    """Spot expression intervals in every video of STORE (or '-') with trained networks.

    The networks are those of `mexkit train --final` on a store of whole videos
    (--results; STORE is a store of the same kind, e.g. `mexkit flow --pairs gap
    --features mean` for MEAN), or networks a model's authors published (--weights,
    MEAN's; STORE may then be a video file or an image folder). Writes an interval CSV (subject,
    video, onset, offset, type, emotion, confidence, apex), the same as JSON, and a
    PNG per video, and prints the CSV's path. When the store's videos are annotated,
    the metric table goes to stderr.
    """
    path = resolve_input(store, what="store, video or image folder")
    if output is None:
        output = str(path.with_name(f"{path.name.split('.')[0]}.intervals.csv"))
    csv_path, report = spot(
        path, output, results=results_dir, weights=weights, fold=fold,
        per_subject=per_subject, subject_map=subject_map, kprime=kprime, peaks=peaks,
        classes=classes.split(",") if classes else None, gap=gap, fps=fps, p=p,
        emotions=emotions, type_stores=type_store, device=device, plots=not no_plots,
        force=force,
        progress=progress(), crop=crop)
    if report is not None and not settings().get("quiet"):
        err(format_spot_report(report))
    out(str(Path(csv_path).resolve()))
    return 0
