"""``mexkit inspect`` and ``mexkit validate``: what a store holds, and whether it is sound.

Opening a store runs no code: it is checked (checksum, no external links, no
foreign filters, no pickles, declared sizes within limits) before anything
is read (:mod:`mexkit.io.store`). The upstream paths recorded in a store are
text written by whoever made it: they are shown, and opened only inside the
folders the user names (:func:`summarize`'s ``follow``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MexkitError
from ..io.store import StoreLimits, open_store, validate_store
from .limits import store_limits

__all__ = ["summarize", "format_summary", "validate", "limits"]


def limits(text: str | None) -> StoreLimits:
    """``--limits``: ``"max_array_bytes=1e10,..."``, else ``MEXKIT_STORE_LIMITS``, else
    the defaults."""
    return StoreLimits.parse(text) if text else store_limits()


def summarize(path: str | Path, *, limits_text: str | None = None,
              follow: Sequence[Path] = ()) -> dict[str, Any]:
    """The store's summary, with its provenance chain (followed only inside ``follow``)."""
    from .flow import param_notes  # flow imports the runner: not at module level here

    with open_store(path, limits=limits(limits_text)) as s:
        summary = s.summary()
        summary["param_notes"] = param_notes(s)
    summary["provenance"] = _provenance(summary["upstream"], [Path(f).resolve()
                                                              for f in follow])
    return summary


def validate(path: str | Path, *, limits_text: str | None = None
             ) -> tuple[list[str], dict[str, str]]:
    """The problems a thorough check finds, and the samples that failed when the store
    was made (read only from a valid store)."""
    problems = validate_store(path, limits=limits(limits_text))
    failures: dict[str, str] = {}
    if not problems:
        with open_store(path, verify=False, limits=limits(limits_text)) as s:
            failures = s.failures
    return problems, failures


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


def format_summary(summary: dict[str, Any]) -> str:
    """The text ``mexkit inspect`` prints."""
    lines = [
        f"store      {summary['path']}",
        f"stage      {summary['stage']}  (schema {summary['schema']}, mexkit "
        f"{summary['mexkit_version']}, created {summary['created']})",
        f"id         {summary['store_id']}",
        f"content    sha256:{summary['content_hash']}",
        f"signed     {'by key ' + summary['signer'] if summary.get('signer') else 'no'}",
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
    shard = summary.get("shard")
    if shard:
        shards = ", ".join(str(i) for i in shard.get("shards", []))
        total = len(shard.get("samples", []))
        kind = "PARTIAL store" if shard.get("partial") else "one part of a sharded run"
        lines.append(f"partial    {kind}: shard(s) {shards} of {shard.get('count')}; "
                     f"{summary['n_samples'] + len(summary['failures'])} of {total} samples "
                     "of the run (mexkit merge joins the parts)")
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
