"""``mexkit inspect`` and ``mexkit validate``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..pipeline.inspect import format_summary, summarize, validate
from ._common import out, resolve_input

_LIMITS_HELP = ("Store size limits, e.g. 'max_array_bytes=1e10,max_ratio=1000' (default: "
                "$MEXKIT_STORE_LIMITS, else 4 GiB per array, 200,000 frames, 2^25 values "
                "per frame, ratio 100 beyond 16 MiB).")


@click.command("inspect", epilog="""\b
Examples:
  mexkit inspect demo.crop.flow-tvl1.h5
  mexkit inspect demo.crop.flow-tvl1.h5 --json --follow .
""")
@click.argument("store", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of text.")
@click.option("--follow", "follow", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Open the upstream stores recorded in STORE that lie inside this folder "
                   "(repeatable) to check they still match; nothing else is opened.")
@click.option("--limits", default=None, help=_LIMITS_HELP)
def inspect_cmd(store: str, as_json: bool, follow: tuple[Path, ...], limits: str | None
                ) -> int:
    """Summarise STORE: stage, parameters, provenance chain, samples, arrays, failures.

    Opening a store runs no code: it is checked (checksum, no external links,
    no foreign filters, no pickles, declared sizes within limits) before
    anything is read.  The upstream paths recorded in STORE are shown, never
    opened, unless they lie inside a folder named with --follow.
    """
    summary = summarize(resolve_input(store), limits_text=limits, follow=follow)
    out(json.dumps(summary, indent=2, sort_keys=True) if as_json else format_summary(summary))
    return 0


@click.command("validate", epilog="""\b
Examples:
  mexkit validate demo.crop.h5 && echo valid
""")
@click.argument("store", type=str)
@click.option("--limits", default=None, help=_LIMITS_HELP)
def validate_cmd(store: str, limits: str | None) -> int:
    """Check STORE thoroughly; exit 0 if it is valid, 1 with reasons otherwise.

    Verifies the file checksum and structure, reads every array (checking its
    fletcher32 checksums) in bounded blocks, each sample's data hash, the
    content hash over samples and their attributes, and the hash of the root
    attributes, and reports failed samples.
    """
    path = resolve_input(store)
    problems, failures = validate(path, limits_text=limits)
    for sid, msg in failures.items():
        out(f"note: sample {sid!r} failed when the store was made: {msg}")
    if problems:
        for p in problems:
            out(f"invalid: {p}")
        return 1
    out(f"valid: {path}")
    return 0
