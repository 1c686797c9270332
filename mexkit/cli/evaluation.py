"""``mexkit evaluate`` (:mod:`mexkit.pipeline.evaluation`)."""
from __future__ import annotations

import json

import click

from ..pipeline.evaluation import evaluate_file, format_report, jsonable
from ._common import out, resolve_input


@click.command("evaluate", epilog="""\b
Examples:
  mexkit evaluate demo.mean-loso/results.json
  mexkit evaluate other-tool.csv --classes negative,positive,surprise
""")
@click.argument("source", type=str)
@click.option("--classes", default=None,
              help="Comma-separated classes of the scheme (so that absent classes show).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_cmd(source: str, classes: str | None, as_json: bool) -> int:
    """Print the metrics table of a results.json or of any predictions CSV.

    A predictions CSV needs the columns true and pred (fold and dataset are
    used when present), so other tools' outputs are scored the same way:
    accuracy, UF1 and UAR pooled over folds, per fold, and per class.
    """
    path = resolve_input(source, what="results or predictions file")
    results = evaluate_file(path, classes=classes.split(",") if classes else None)
    if as_json:
        out(json.dumps(jsonable(results), indent=2, sort_keys=True))
    else:
        out(format_report(results))
    return 0
