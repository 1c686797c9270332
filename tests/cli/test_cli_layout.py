"""The command line's layout (issue 29, item 5): one rule for which command lives in
which module (written at the top of mexkit/cli/__init__.py), the CLI imports only the
pipeline (and errors), environment variables are read in the pipeline, and `mexkit
inspect` starts without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mexkit.cli
from mexkit.cli import COMMANDS

CLI = Path(mexkit.cli.__file__).parent


def _is_module(name: str) -> bool:
    path = Path(mexkit.__file__).parent.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """The mexkit modules (or names of mexkit) a CLI module imports, relative imports
    resolved: ``from ..pipeline import options`` is ``mexkit.pipeline.options``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["mexkit", "cli"][:3 - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("mexkit"):
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                out.add(full if _is_module(full) or not _is_module(module) else module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mexkit"))
    return out


def test_the_rule_is_written_at_the_top_of_the_cli_package():
    assert "Which command lives where, one rule" in mexkit.cli.__doc__.split("\n\n")[1]


def test_each_command_lives_beside_the_pipeline_module_it_drives():
    for name, (module, _, _) in COMMANDS.items():
        own = module.rpartition(".")[2]
        imported = _imports(CLI / f"{own}.py")
        assert f"mexkit.pipeline.{own}" in imported, (name, imported)


def test_the_cli_imports_only_the_pipeline_and_errors():
    modules = {m.rpartition(".")[2] for m, _, _ in COMMANDS.values()}
    for path in CLI.glob("*.py"):
        own = path.stem
        allowed = {"mexkit.errors", "mexkit.pipeline.options", f"mexkit.pipeline.{own}",
                   "mexkit.cli._common"}
        if path.name == "__init__.py":
            # the root package, for __version__; the entry point's BLAS setting, which
            # must come before pipeline.options' imports load numpy
            allowed |= {"mexkit", "mexkit._threads"}
        bad = _imports(path) - allowed
        assert not bad, f"cli/{path.name} imports {sorted(bad)}"
        assert own in modules | {"__init__", "_common"}, f"cli/{path.name} holds no command"


def test_the_cli_reads_no_environment_variable():
    for path in CLI.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                        ), path.name
            assert not (isinstance(node, ast.keyword) and node.arg == "envvar"), path.name


def test_inspect_does_not_import_torch(tmp_path):
    from mexkit.pipeline.cache import cache_key
    from mexkit.pipeline.runner import Task, run_stage

    store = tmp_path / "s.crop.h5"
    run_stage([Task("a", cache_key("crop", 1, {}, "a"), {}, 1)],
              lambda t: ({"frames": __import__("numpy").zeros((2, 4, 4), "uint8")}, {}),
              output=store, stage="crop", params={}, progress=False)
    code = ("import sys\nfrom mexkit.cli import main\n"
            "try:\n    main(['inspect', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True,
                       text=True, timeout=120)
    assert "stage      crop" in r.stdout
    assert r.stderr.strip().splitlines()[-1] == "False"
