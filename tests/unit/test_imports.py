"""Imports (issue 29, item 6): no import cycles, and an import inside a function only
where it keeps start-up fast or an optional dependency optional, saying so on its line."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mexkit

ROOT = Path(mexkit.__file__).parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in ROOT.rglob("*.py")}


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[:len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    return [n for n in names if n in MODULES]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, module, path.name == "__init__.py"):
                    if target != module and not module.startswith(target + "."):
                        graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    # function-level imports count: a cycle they hold together is still a cycle
    assert _cycles(_graph()) == []


def test_function_level_imports_say_why():
    missing = []
    for path in MODULES.values():
        rel = path.relative_to(ROOT).as_posix()
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    text = " ".join(lines[node.lineno - 1:node.end_lineno])
                    if "#" not in text:
                        missing.append(f"{rel}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert missing == []


def _fresh_python(code: str) -> str:
    """What ``code`` prints in a new interpreter (nothing imported before it)."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_start_up_reasons_hold():
    # the reason most function-level imports give: these modules import without the
    # heavy packages, so the commands that do not compute with them start fast
    light = ("mexkit.motion", "mexkit.io.store", "mexkit.io.sheets", "mexkit.io.signing",
             "mexkit.io.video", "mexkit.io.keras_h5", "mexkit.temporal.keyframes",
             "mexkit.api")
    heavy = ("cv2", "torch", "h5py", "openpyxl", "cryptography", "scipy.ndimage", "pyarrow",
             "pandas")
    code = (f"import sys\nimport {', '.join(light)}\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    assert _fresh_python(code) == "[]"


def test_temporal_and_synth_commands_start_without_what_they_do_not_use():
    # issue 32, item 5: a worker of mexkit rpca solves numpy arrays without torch (about
    # 1.5 s of CPU to import), mexkit magnify's default filter needs no scipy.signal
    # (about 1 s), mexkit synth's main process renders nothing (scipy.special, 0.3 s) and
    # its workers write no sheet (openpyxl, 0.1 s each)
    code = ("import sys\nimport mexkit.pipeline.synth\n"
            "synth = [m for m in ('torch', 'scipy.signal', 'scipy.special', 'openpyxl') "
            "if m in sys.modules]\n"
            "import mexkit.temporal.rpca, mexkit.temporal.magnify, mexkit.pipeline.temporal\n"
            "print(synth, [m for m in ('torch', 'scipy.signal') if m in sys.modules])")
    assert _fresh_python(code) == "[] []"


def test_a_synthetic_subject_is_made_without_skimage_io():
    # issue 32, item 5: every process rendering clips reads the astronaut photograph;
    # through skimage.io (imageio, scipy.linalg) that cost 0.3 s of CPU each
    code = ("import sys\nfrom mexkit.synth import make_subject\nmake_subject(1, size=160)\n"
            "print([m for m in ('skimage.io', 'imageio') if m in sys.modules])")
    assert _fresh_python(code) == "[]"


def test_a_models_flow_feature_loads_without_torch():
    # `mexkit flow --features mean` found MEAN's feature by importing every module of every
    # model package: torch and scikit-learn, seconds of start-up before its first pair
    code = ("import sys\nfrom mexkit.pipeline.stages import flow_feature\n"
            "f = flow_feature('mean')\n"
            "print(f.name, [m for m in ('torch', 'sklearn') if m in sys.modules])")
    assert _fresh_python(code) == "mean []"


def test_a_stage_without_a_progress_bar_does_not_import_tqdm():
    # issue 32: tqdm's import (about 20 ms, most of it importlib.metadata finding its
    # version) was part of every stage's start-up, though a pipe or -q shows no bar
    code = ("import sys\nimport mexkit.pipeline.runner, mexkit.pipeline.flow\n"
            "from mexkit.pipeline.parallel import progress_bar\n"
            "bar = progress_bar(3, 'flow', enabled=False)\nbar.update(1)\nbar.close()\n"
            "bar = progress_bar(3, 'flow')  # stderr is a pipe here\nbar.update(1)\n"
            "bar.close()\nprint('tqdm' in sys.modules)")
    assert _fresh_python(code) == "False"
