"""``mexkit models``: the registered models, from the model and input registries.

Each model's inputs and the commands that make them, its paper's training
defaults, its options and its parameter count (3 classes), as rows, text or
the README's Markdown table.
"""
from __future__ import annotations

from typing import Any

from ..models.inputs import get_input
from ..models.registry import count_parameters, get_model, list_models

__all__ = ["model_rows", "format_models", "models_markdown"]


def model_rows() -> list[dict[str, Any]]:
    """One row per registered model (``mexkit models --json``)."""
    rows = []
    for spec in list_models():
        n_classes = 3
        net = get_model(spec.name, n_classes)
        rows.append({
            "name": spec.name,
            "reference": spec.reference,
            "module": spec.module,
            "inputs": {i.name: ["T" if d is None else d for d in i.shape]
                       for i in spec.inputs},
            "produced_by": {i.name: get_input(i.name).produced_by for i in spec.inputs},
            "defaults": dict(spec.defaults.as_fit_kwargs()),
            "protocol": spec.protocol,
            "scheme": spec.scheme,
            "augmentation": spec.defaults.augmentation,
            "options": {o.name: {"default": o.default, "help": o.help} for o in spec.options},
            "trainer": (f"{spec.trainer.__module__}:{spec.trainer.__qualname__}"
                        if spec.trainer else "standard"),
            "parameters_3_classes": count_parameters(net),
            "paper_reported": dict(spec.paper_reported),
        })
    return rows


def _shape(shape: list) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def format_models(rows: list[dict[str, Any]]) -> str:
    """The text ``mexkit models`` prints."""
    lines = []
    for r in rows:
        d = r["defaults"]
        lines.append(f"{r['name']}")
        lines.append(f"  paper      {r['reference']}")
        for name, shape in r["inputs"].items():
            lines.append(f"  input      {name} {_shape(shape)}: {r['produced_by'][name]}")
        balance = d["class_balance"] or "none"
        lines.append(f"  training   {d['optimizer']} lr {d['lr']}, {d['epochs']} epochs, batch "
                     f"{d['batch_size']}, loss {d['loss']}, balance {balance}, "
                     f"augment {r['augmentation'] or 'none'}; {r['protocol']}"
                     f"{', scheme ' + r['scheme'] if r['scheme'] else ''}")
        if r["options"]:
            lines.append("  options    " + ", ".join(f"--{k}" for k in r["options"]))
        paper = r["paper_reported"].get(3) or r["paper_reported"].get("3")
        extra = f" (paper: {paper})" if paper else ""
        lines.append(f"  parameters {r['parameters_3_classes']:,} for 3 classes{extra}")
    return "\n".join(lines)


def models_markdown(rows: list[dict[str, Any]]) -> str:
    """The README's table of models, from :func:`model_rows`."""
    lines = ["| model | inputs (made by) | paper defaults | parameters (3 classes) |",
             "|---|---|---|---|"]
    for r in rows:
        d = r["defaults"]
        inputs = "<br>".join(
            f"`{k}` {_shape(v)}: `{r['produced_by'][k].replace('|', chr(92) + '|')}`"
            for k, v in r["inputs"].items())
        train = (f"{d['optimizer']} {d['lr']}, {d['epochs']} epochs, {d['loss']}, "
                 f"{r['protocol']}")
        lines.append(f"| `{r['name']}` | {inputs} | {train} | "
                     f"{r['parameters_3_classes']:,} |")
    return "\n".join(lines)
