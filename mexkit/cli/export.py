"""``mexkit export``: a store or a results folder as CSV or Parquet tables."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.export import export
from ._common import out, resolve_input


@click.command("export", epilog="""\b
Examples:
  mexkit export demo.crop.flow-tvl1.h5
  mexkit export demo.crop.flow-tvl1.h5 --format parquet -o tables/
  mexkit export mean-loso
  mexkit flow demo.crop.h5 --pairs onset-apex | mexkit export -
Then in Python:  pandas.read_csv("demo.crop.flow-tvl1.export/pairs.csv")
Columns: docs/export.md.
""")
@click.argument("source", type=str)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True,
              help="Table format; parquet needs pyarrow (pip install 'mexkit[parquet]').")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: SOURCE's name with .export, e.g. "
                   "x.flow.h5 -> x.flow.export); its <table>.csv / .parquet files are "
                   "replaced, nothing else there is touched.")
def export_cmd(source: str, fmt: str, output: Path | None) -> int:
    """Write SOURCE as tables that pandas, R and spreadsheets read.

    SOURCE is a store (or - for a store path on stdin) or a results folder of
    mexkit train.  A store gives samples (one row per sample: its attributes
    and array shapes), frames or pairs (one row per frame or frame pair:
    landmarks, flow statistics, per-frame values) and failures; a results
    folder gives predictions, metrics (pooled, per dataset, per fold),
    per_class and training (per fold and epoch), or for spotting intervals,
    truth and metrics.  Prints the output folder.
    """
    path = resolve_input(source, what="store or results folder")
    result = export(path, output, format=fmt)
    out(str(result.folder))
    return 0
