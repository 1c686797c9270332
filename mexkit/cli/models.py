"""``mexkit models`` (:mod:`mexkit.pipeline.models`)."""
from __future__ import annotations

import json

import click

from ..pipeline.models import format_models, model_rows, models_markdown
from ._common import out


@click.command("models", epilog="""\b
Examples:
  mexkit models
  mexkit models --markdown > models.md
""")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.option("--markdown", is_flag=True, help="Print the README's table of models.")
def models_cmd(as_json: bool, markdown: bool) -> int:
    """List the models: inputs and the commands that make them, paper defaults,
    options and parameter counts (all from the model and input registries)."""
    rows = model_rows()
    if as_json:
        out(json.dumps(rows, indent=2, default=str))
    else:
        out(models_markdown(rows) if markdown else format_models(rows))
    return 0
