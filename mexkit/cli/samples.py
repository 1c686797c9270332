"""``mexkit samples``: what mexkit understood of a dataset's annotation sheet."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import out
from .crop import dataset_options, load_samples


@click.command("samples")
@dataset_options
@click.option("--scheme", default=None,
              help="Also apply a label scheme and report the samples outside it.")
@click.option("--list", "list_all", is_flag=True, help="List every sample, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (summary and samples).")
def samples_cmd(dataset: str | None, annotations: str | None, root: Path | None,
                dataset_fps: float | None, sheets: tuple[str, ...], scheme: str | None,
                list_all: bool, as_json: bool) -> int:
    """Print the parsed sample list with counts per subject and label.

    Works on the sheet alone (without the videos), so that what mexkit
    understood can be checked before a long job.  Clips are looked for under
    --root, or beside the sheet; those not found are counted as "no source".
    """
    if annotations is None:
        raise click.UsageError("Missing option '--annotations'.")
    import dataclasses

    from ..io.datasets import format_summary, summarize

    samples, record = load_samples(dataset, annotations, root, dataset_fps, sheets)
    outside: list[tuple[str, str]] = []
    if scheme is not None:
        from ..labels import apply_scheme

        samples, outside = apply_scheme(samples, scheme, on_error="skip")
    summary = summarize(samples)
    if as_json:
        doc = {"annotations": record["path"], "summary": summary,
               "samples": [dataclasses.asdict(s) for s in samples],
               "outside_scheme": [{"sample_id": s, "reason": r} for s, r in outside]}
        out(json.dumps(doc, indent=2, default=str))
        return 0
    out(format_summary(summary))
    for sid, reason in outside:
        out(f"outside scheme {scheme}: {sid}: {reason}")
    if list_all:
        for s in samples:
            apex = "-" if s.apex is None else s.apex
            out(f"{s.sample_id}\t{s.subject}\t{s.onset}\t{apex}\t{s.offset}\t"
                f"{s.emotion or '-'}\t{s.label or '-'}\t{s.source or '(not found)'}")
    return 0
