"""``mexkit inspect`` and ``mexkit validate``."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import MexkitError
from ..io.store import StoreLimits, open_store, validate_store
from ..pipeline.stages import store_limits
from ._common import out, resolve_input


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    """True if ``path`` (links resolved) lies inside one of ``roots``."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return any(real == r or r in real.parents for r in roots)


def _provenance(upstream: list[dict[str, Any]], roots: Sequence[Path] = (), depth: int = 0,
                seen: set | None = None) -> list[dict[str, Any]]:
    """The recorded upstream chain; stores are opened only inside ``roots``.

    A path recorded in a store is text written by whoever made the store: it
    is shown, and opened only when it resolves (links followed) to a regular
    file inside one of the folders the user named with ``--follow``.  With
    no folder named nothing is opened.
    """
    seen = seen if seen is not None else set()
    chain = []
    for u in upstream if isinstance(upstream, list) else []:
        if not isinstance(u, dict):
            chain.append({"recorded": repr(u)[:200]})
            continue
        entry = dict(u)
        p = Path(str(u.get("path", "")))
        if not roots:
            entry["followed"] = False
        elif not (p.is_absolute() and _inside(p, roots)):
            entry["followed"] = False
            entry["found"] = None
        elif depth < 20 and p.resolve() not in seen and p.resolve().is_file():
            real = p.resolve()
            seen.add(real)
            entry["followed"] = True
            try:
                with open_store(real, verify=False, limits=store_limits()) as s:
                    entry["found"] = s.content_hash == u.get("content_hash")
                    entry["upstream"] = _provenance(s.upstream, roots, depth + 1, seen)
            except MexkitError:
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
    notes = summary.get("param_notes") or {}
    for k in sorted(params):
        note = f"  ({notes[k]})" if k in notes else ""
        lines.append(f"  {k} = {json.dumps(params[k])}{note}")
    if not params:
        lines.append("  (none)")

    def chain(items: list[dict[str, Any]], indent: int) -> None:
        for u in items:
            if not u.get("followed", False):
                state = ("  [not opened: outside the --follow folders]"
                         if "found" in u else "")
            else:
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


_LIMITS_HELP = ("Store size limits, e.g. 'max_array_bytes=1e10,max_ratio=1000' (default: "
                "$MEXKIT_STORE_LIMITS, else 4 GiB per array, 200,000 frames, 2^25 values "
                "per frame, ratio 100 above 256 MiB).")


def _limits(text: str | None) -> StoreLimits:
    return StoreLimits.parse(text) if text else store_limits()


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
    from ..pipeline.flow import param_notes

    path = resolve_input(store)
    with open_store(path, limits=_limits(limits)) as s:
        summary = s.summary()
        summary["param_notes"] = param_notes(s)
    roots = [f.resolve() for f in follow]
    summary["provenance"] = _provenance(summary["upstream"], roots)
    if as_json:
        out(json.dumps(summary, indent=2, sort_keys=True))
    else:
        out(_format(summary))
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
    problems = validate_store(path, limits=_limits(limits))
    failures: dict[str, str] = {}
    if not problems:
        with open_store(path, verify=False, limits=_limits(limits)) as s:
            failures = s.failures
    for sid, msg in failures.items():
        out(f"note: sample {sid!r} failed when the store was made: {msg}")
    if problems:
        for p in problems:
            out(f"invalid: {p}")
        return 1
    out(f"valid: {path}")
    return 0
