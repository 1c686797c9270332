"""``mexkit samples``: what mexkit understood of a dataset's annotation sheet."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import out
from .crop import dataset_options, load_samples


@click.command("samples", epilog="""\b
Examples:
  mexkit samples --annotations CASME2-coding.xlsx --root CASME2_RAW
  mexkit samples --annotations SAMM_LongVideos_V2_Release.xlsx --strict --list
""")
@dataset_options
@click.option("--scheme", default=None,
              help="Also apply a label scheme and report the samples outside it.")
@click.option("--list", "list_all", is_flag=True, help="List every sample, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (summary and samples).")
@click.option("--strict", is_flag=True,
              help="Make every repaired or skipped sheet row an error (default: warn, "
                   "repair what is unambiguous, skip the rest).")
def samples_cmd(encoding: str | None, dataset: str | None, annotations: str | None,
                root: Path | None,
                dataset_fps: float | None, sheets: tuple[str, ...], scheme: str | None,
                list_all: bool, as_json: bool, strict: bool) -> int:
    """Print the parsed sample list with counts per subject and label.

    Works on the sheet alone (without the videos), so that what mexkit
    understood can be checked before a long job.  Clips are looked for under
    --root, or beside the sheet; those not found are counted as "no source".

    Rows that cannot be used as written are repaired where the repair is
    unambiguous or skipped, each with a warning naming file, sheet and row;
    the report ends with the rows read, repaired and skipped.  Exit status 0
    when no row was skipped, 1 otherwise.
    """
    if annotations is None:
        raise click.UsageError("Missing option '--annotations'.")
    import dataclasses

    from ..io.datasets import collect_report, format_summary, summarize
    from ..io.datasets.summary import has_source

    with collect_report(strict=strict) as report:
        samples, record = load_samples(dataset, annotations, root, dataset_fps, sheets,
                                       encoding)
    outside: list[tuple[str, str]] = []
    if scheme is not None:
        from ..labels import apply_scheme

        samples, outside = apply_scheme(samples, scheme, on_error="skip")
    summary = summarize(samples)
    if as_json:
        doc = {"annotations": record["path"], "summary": summary,
               "samples": [dataclasses.asdict(s) for s in samples],
               "outside_scheme": [{"sample_id": s, "reason": r} for s, r in outside],
               "rows": report.as_dict()}
        out(json.dumps(doc, indent=2, default=str))
        return 1 if report.skipped else 0
    out(format_summary(summary, report))
    for sid, reason in outside:
        out(f"outside scheme {scheme}: {sid}: {reason}")
    if list_all:
        for s in samples:
            apex = "-" if s.apex is None else s.apex
            where = s.source if has_source(s) else f"{s.source or ''} (not found)".lstrip()
            out(f"{s.sample_id}\t{s.subject}\t{s.onset}\t{apex}\t{s.offset}\t"
                f"{s.emotion or '-'}\t{s.label or '-'}\t"
                f"{where}")
    return 1 if report.skipped else 0
