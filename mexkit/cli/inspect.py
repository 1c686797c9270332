"""``mexkit inspect`` and ``mexkit validate``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..io.store import open_store, validate_store
from ._common import out, resolve_input


def _provenance(upstream: list[dict[str, Any]], depth: int = 0, seen: set | None = None
                ) -> list[dict[str, Any]]:
    """Follow the upstream chain through stores that are still on disk."""
    seen = seen if seen is not None else set()
    chain = []
    for u in upstream:
        entry = dict(u)
        p = Path(str(u.get("path", "")))
        if depth < 20 and p.is_file() and str(p) not in seen:
            seen.add(str(p))
            try:
                with open_store(p, verify=False) as s:
                    entry["found"] = s.content_hash == u.get("content_hash")
                    entry["upstream"] = _provenance(s.upstream, depth + 1, seen)
            except Exception:
                entry["found"] = False
        chain.append(entry)
    return chain


def _format(summary: dict[str, Any]) -> str:
    lines = [
        f"store      {summary['path']}",
        f"stage      {summary['stage']}  (schema {summary['schema']}, mexkit "
        f"{summary['mexkit_version']}, created {summary['created']})",
        f"id         {summary['store_id']}",
        f"content    sha256:{summary['content_hash']}",
        "parameters",
    ]
    params = summary["params"] or {}
    for k in sorted(params):
        lines.append(f"  {k} = {json.dumps(params[k])}")
    if not params:
        lines.append("  (none)")

    def chain(items: list[dict[str, Any]], indent: int) -> None:
        for u in items:
            state = "" if u.get("found", True) else "  [not found or changed]"
            lines.append(f"{'  ' * indent}<- {u.get('stage', '?')}  {u.get('path', '?')}  "
                         f"sha256:{str(u.get('content_hash', ''))[:16]}{state}")
            chain(u.get("upstream", []), indent + 1)

    lines.append("provenance")
    if summary["upstream"]:
        chain(summary["provenance"], 1)
    else:
        lines.append("  (first stage)")
    lines.append(f"samples    {summary['n_samples']} stored, {len(summary['failures'])} failed")
    shown = summary["samples"][:10]
    for sid in shown:
        lines.append(f"  {sid}")
    if summary["n_samples"] > len(shown):
        lines.append(f"  ... and {summary['n_samples'] - len(shown)} more")
    lines.append("arrays")
    for name, info in sorted(summary["arrays"].items()):
        shapes = ", ".join(f"{s} (x{n})" if n > 1 else s for s, n in info["shapes"].items())
        lines.append(f"  {name:<14} {info['dtype']:<8} {shapes}")
    if summary["failures"]:
        lines.append("failures")
        for sid, msg in summary["failures"].items():
            lines.append(f"  {sid}: {msg}")
    return "\n".join(lines)


@click.command("inspect")
@click.argument("store", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of text.")
def inspect_cmd(store: str, as_json: bool) -> int:
    """Summarise STORE: stage, parameters, provenance chain, samples, arrays, failures.

    Opening a store runs no code: it is checked (checksum, no external links,
    no foreign filters, no pickles) before anything is read.
    """
    path = resolve_input(store)
    with open_store(path) as s:
        summary = s.summary()
    summary["provenance"] = _provenance(summary["upstream"])
    if as_json:
        out(json.dumps(summary, indent=2, sort_keys=True))
    else:
        out(_format(summary))
    return 0


@click.command("validate")
@click.argument("store", type=str)
def validate_cmd(store: str) -> int:
    """Check STORE thoroughly; exit 0 if it is valid, 1 with reasons otherwise.

    Verifies the file checksum and structure, reads every array (checking its
    fletcher32 checksums), each sample's data hash and the store's content
    hash, and reports failed samples.
    """
    path = resolve_input(store)
    problems = validate_store(path)
    failures: dict[str, str] = {}
    if not problems:
        with open_store(path, verify=False) as s:
            failures = s.failures
    for sid, msg in failures.items():
        out(f"note: sample {sid!r} failed when the store was made: {msg}")
    if problems:
        for p in problems:
            out(f"invalid: {p}")
        return 1
    out(f"valid: {path}")
    return 0
