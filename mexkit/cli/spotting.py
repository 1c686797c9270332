"""``mexkit spot`` (:mod:`mexkit.pipeline.spotting`): apply trained spotting networks."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.spotting import format_spot_report, spot_store
from ._common import device_option, err, out, resolve_input, settings

__all__ = ["spot_cmd"]


@click.command("spot", epilog="""\b
Examples:
  mexkit spot long.crop.flow-farneback.h5 --results run -o spotted.csv
  mexkit spot - --results run --p 0.6 --no-plots
""")
@click.argument("store", type=str)
@click.option("--results", "results_dir", type=click.Path(exists=True, file_okay=False),
              required=True,
              help="Results folder of `mexkit train STORE --model NAME --final` on a "
                   "long-video store (holds spot_model.json).")
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
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Interval CSV to write (default: <store>.intervals.csv); a .json and a "
                   ".plots folder go beside it.")
def spot_cmd(store: str, results_dir: str, p: float | None, emotions: str | None, device: str,
             no_plots: bool, type_store: str | None, output: str | None) -> int:
    """Spot expression intervals in every video of STORE (or '-') with trained networks.

    The networks are those of `mexkit train --final` on a store of whole videos
    (MEAN's, for example); STORE is a store of the same kind (`mexkit flow --pairs
    gap --features mean` for MEAN). Writes an interval CSV (subject, video, onset, offset, type,
    emotion, confidence, apex), the same as JSON, and a PNG per video, and
    prints the CSV's path. When the store's videos are annotated, the metric
    table goes to stderr.
    """
    path = resolve_input(store)
    if output is None:
        output = str(path.with_name(f"{path.name.split('.')[0]}.intervals.csv"))
    csv_path, report = spot_store(path, results_dir, output, p=p, device=device,
                                  plots=not no_plots, emotions=emotions,
                                  type_stores=type_store)
    if report is not None and not settings().get("quiet"):
        err(format_spot_report(report))
    out(str(Path(csv_path).resolve()))
    return 0
