"""``mexkit samples``: what mexkit understood of a dataset's annotation sheet."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import out
from .crop import load_samples


@click.command("samples")
@click.option("--dataset", default=None,
              help="casme, casme2, smic-hs, smic-vis, smic-nir, samm, casme-sq, samm-lv, "
                   "megc2019 or generic (default: detected from the sheet).")
@click.option("--annotations", required=True,
              help="Annotation sheet (xlsx/xls/csv), or '-' to read its path from stdin.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Dataset folder; without it only the sheet is read.")
@click.option("--scheme", default=None,
              help="Also apply a label scheme and report the samples outside it.")
@click.option("--list", "list_all", is_flag=True, help="List every sample, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (summary and samples).")
def samples_cmd(dataset: str | None, annotations: str, root: Path | None, scheme: str | None,
                list_all: bool, as_json: bool) -> int:
    """Print the parsed sample list with counts per subject and label.

    Works on the sheet alone (without the videos), so that what mexkit
    understood can be checked before a long job.
    """
    import dataclasses

    from ..io.datasets import format_summary, summarize

    samples, record = load_samples(dataset, annotations, root)
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
