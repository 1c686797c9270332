"""``mexkit spot-eval`` (score interval files) and ``mexkit spot`` (apply a spotter)."""
from __future__ import annotations

import json

import click

from ._common import out

__all__ = ["spot_eval_cmd", "spot_cmd"]


@click.command("spot-eval", epilog="""\b
Examples:
  mexkit spot-eval --truth long-data/intervals.csv --pred spotted.csv
  mexkit spot-eval --truth truth.csv --pred spotted.csv --iou 0.5 --json
""")
@click.option("--truth", "truth", type=click.Path(dir_okay=False), required=True,
              help="Ground-truth interval CSV (subject, video, onset, offset; "
                   "type, emotion optional).")
@click.option("--pred", "pred", type=click.Path(dir_okay=False), required=True,
              help="Predicted interval CSV (subject, video, onset, offset; type, emotion, "
                   "confidence, apex optional).")
@click.option("--iou", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5,
              show_default=True, help="IoU a spotted interval needs to be a true positive.")
@click.option("--classes", default=None,
              help="Comma-separated emotion classes (so that absent classes show).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def spot_eval_cmd(truth: str, pred: str, iou: float, classes: str | None,
                  as_json: bool) -> int:
    """Score spotted intervals against ground truth, from mexkit or any other tool.

    Frames are 0-based and inclusive. Matching is one-to-one, greedy by
    confidence, at IoU >= 0.5; the table gives TP, FP, FN, precision, recall
    and F1 per expression type and overall, AP@[.5:.95] ranked by the
    confidences, the apex spotting rate (one truth per video), the analysis
    F1, UF1 and UAR of the true positives' emotions, and STRS. See
    docs/spotting.md for every convention.
    """
    from ..pipeline.spotting import format_spot_report, jsonable, score_interval_files

    report = score_interval_files(truth, pred, iou_threshold=iou,
                                  classes=classes.split(",") if classes else None)
    if as_json:
        out(json.dumps(jsonable(report), indent=2))
    else:
        out(format_spot_report(report))
    return 0


@click.command("spot", epilog="""\b
Examples:
  mexkit spot long.crop.flow-farneback.h5 --results run -o spotted.csv
  mexkit spot - --results run --p 0.6 --no-plots
""")
@click.argument("store", type=str)
@click.option("--results", "results_dir", type=click.Path(exists=True, file_okay=False),
              required=True,
              help="Results folder of `mexkit train STORE --model mean --final` on a "
                   "long-video store (holds spot_model.json).")
@click.option("--p", "p", type=click.FloatRange(0.0, 1.0), default=None,
              help="Peak threshold fraction of eq. 12 (default: the trained run's, 0.55).")
@click.option("--emotions", type=click.Path(dir_okay=False), default=None,
              help="Interval file whose emotion column labels the store's intervals "
                   "(for scoring only).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where the model runs: auto takes a GPU if torch sees one.")
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
def spot_cmd(store: str, results_dir: str, p: float | None, emotions: str | None, device: str,
             no_plots: bool, type_store: str | None, force: bool, output: str | None) -> int:
    """Spot expression intervals in every video of STORE (or '-') with a trained MEAN.

    STORE is a `mexkit flow --pairs gap --features mean` store of whole
    videos. Writes an interval CSV (subject, video, onset, offset, type,
    emotion, confidence, apex), the same as JSON, and a PNG per video, and
    prints the CSV's path. When the store's videos are annotated, the metric
    table goes to stderr.
    """
    from pathlib import Path

    from ..pipeline.spotting import format_spot_report, spot_store
    from ._common import err, resolve_input, settings

    path = resolve_input(store)
    if output is None:
        output = str(path.with_name(f"{path.name.split('.')[0]}.intervals.csv"))
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    csv_path, report = spot_store(path, results_dir, output, p=p, device=device,
                                  plots=not no_plots, emotions=emotions,
                                  type_stores=type_store, force=force)
    if report is not None and not settings().get("quiet"):
        err(format_spot_report(report))
    out(str(Path(csv_path).resolve()))
    return 0


def train_spotting_branch(path, out_dir, **kw) -> int:
    """`mexkit train --model mean` on a store of whole videos (called by cli/train.py).

    Runs MEAN's LOSO spot-then-recognize evaluation, prints the metric table on
    stderr and the path of results.json on stdout.
    """
    import json as _json
    from pathlib import Path

    from ..pipeline.spotting import format_spot_report, train_spotting
    from ._common import err, settings

    if out_dir is None:
        out_dir = Path(path).with_name(f"{Path(path).name.split('.')[0]}.mean-spot-loso")
    results = train_spotting(path, out_dir, **kw)
    if not settings().get("quiet"):
        err(format_spot_report(_json.loads(results.read_text())["metrics"]))
    out(str(results.resolve()))
    return 0
