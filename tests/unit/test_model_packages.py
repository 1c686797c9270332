"""One package per model (issue 29, item 1): the network alone imports no training code,
hooks are functions (no dotted strings pointing up a layer), and nothing outside a
model's package names it."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mexkit
from mexkit.models import list_models

ROOT = Path(mexkit.__file__).parent
PACKAGES = sorted(p.name for p in (ROOT / "models").iterdir()
                  if p.is_dir() and (p / "spec.py").exists())


def test_every_registered_model_comes_from_a_package():
    assert PACKAGES == ["akmnet", "atnet", "htnet", "mean", "mersiamc3d", "psn", "ststnet"]
    for spec in list_models():
        assert spec.package.rpartition(".")[2] in PACKAGES, spec.name


def test_a_network_imports_without_training_code():
    code = ("import sys\n"
            f"for name in {PACKAGES!r}:\n"
            "    __import__(f'mexkit.models.{name}.network')\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('mexkit.learn', "
            "'mexkit.pipeline', 'mexkit.io', 'mexkit.models.registry', 'mexkit.cli', "
            "'sklearn', 'h5py')) or m.endswith(('.spec', '.training', '.inputs')))\n"
            "print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    assert r.stdout.strip() == "[]"


def test_hooks_are_functions_not_dotted_strings():
    for spec in list_models():
        for hook in (spec.trainer, spec.report):
            assert hook is None or callable(hook), spec.name
        for group in (spec.pretraining, spec.spotting):
            if group is not None:
                assert all(callable(getattr(group, f)) for f in
                           ("train", *(("frames", "check_image_size") if group is
                                       spec.pretraining else ("settings", "scores",
                                                              "classes", "build"))))
        if spec.published is not None:
            assert all(callable(getattr(spec.published, f)) for f in (
                "files", "load", "dataset", "true_label", "folds", "gap", "convert",
                "check_input"))
        assert spec.clip_run is None or callable(spec.clip_run)
    for path in (ROOT / "models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not (node.value.startswith("mexkit.") and ":" in node.value), path


def _imports(path: Path) -> set[str]:
    out = set()
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("name", PACKAGES)
def test_nothing_outside_a_package_imports_it(name):
    inside = ROOT / "models" / name
    for path in ROOT.rglob("*.py"):
        if inside in path.parents:
            continue
        hits = {m for m in _imports(path) if m == f"mexkit.models.{name}"
                or m.startswith(f"mexkit.models.{name}.")}
        assert not hits, f"{path.relative_to(ROOT)} imports {sorted(hits)}"


def _named_models(tree: ast.AST, names: set[str]) -> list[str]:
    """Model names a module compares with (``model == "mean"``) or looks up
    (``get_spec("mean")``, ``get_model(...)``, ``paper_defaults(...)``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for part in (node.left, *node.comparators):
                consts = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) \
                    else [part]
                found += [c.value for c in consts
                          if isinstance(c, ast.Constant) and c.value in names]
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(
                node.func, "attr", None)) in ("get_spec", "get_model", "paper_defaults"):
            found += [a.value for a in node.args
                      if isinstance(a, ast.Constant) and a.value in names]
    return found


def test_the_generic_layers_name_no_model():
    names = {s.name for s in list_models()}
    generic = [*(ROOT / "cli").glob("*.py"), *(ROOT / "learn").glob("*.py"),
               *(ROOT / "pipeline").glob("*.py")]
    for path in generic:
        found = _named_models(ast.parse(path.read_text()), names)
        assert not found, f"{path.relative_to(ROOT)} names {found}"
    # the check finds what it looks for
    assert _named_models(ast.parse('if model == "mean" or get_spec("psn"): pass'),
                         names) == ["mean", "psn"]
