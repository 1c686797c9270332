"""The flow-method registry and the options ``mexkit flow`` generates from it."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.errors import ParameterError
from mexkit.motion import methods as registry
from mexkit.motion import tvl1 as tvl1_module
from mexkit.motion.methods import (
    FlowOption,
    compute_flow,
    flow_method,
    flow_methods,
    register_flow_method,
)


@pytest.fixture
def scratch_method():
    """Register a toy method for one test and remove it afterwards."""
    names = []

    def make(name: str = "toy-shift"):
        @register_flow_method(name, summary="Constant flow (a test method).", options=[
            FlowOption("shift", float, 1.5, "Horizontal flow in pixels (test).")])
        def toy(reference, moving, *, shift=1.5):
            ref = np.asarray(reference)
            flow = np.zeros((ref.shape[0], 2) + ref.shape[1:], np.float32)
            flow[:, 0] = shift
            return flow

        names.append(name)
        return toy

    yield make
    for name in names:
        registry._REGISTRY.pop(name, None)


def test_builtin_methods_are_registered_with_documented_options():
    assert flow_methods()[:3] == ["tvl1", "tvl1-opencv", "farneback"]
    for name in flow_methods():
        method = flow_method(name)
        assert method.summary
        for opt in method.options:
            assert opt.help.strip(), (name, opt.name)
    tvl1 = flow_method("tvl1")
    # the defaults are OpenCV DualTVL1's, and the help says where they come from
    assert tvl1.defaults()["lambda_"] == 0.15 and tvl1.defaults()["median_filtering"] == 5
    for name in ("tau", "lambda_", "theta", "epsilon", "nscales", "warps"):
        assert "OpenCV DualTVL1" in tvl1.option(name).help
    assert tvl1.option("lambda_").cli_flag == "--lambda"
    # every option is a keyword of the function it describes
    for name in flow_methods():
        method = flow_method(name)
        keywords = inspect.signature(method.function).parameters
        assert all(o.name in keywords for o in method.options), name


def test_unknown_method_and_bad_options_raise():
    with pytest.raises(ParameterError, match="tvl1-opencv"):
        flow_method("horn-schunck")
    tvl1 = flow_method("tvl1")
    with pytest.raises(ParameterError, match="no option 'winsize'"):
        tvl1.resolve({"winsize": 3})
    with pytest.raises(ParameterError, match="at least"):
        tvl1.resolve({"warps": 0})
    with pytest.raises(ParameterError, match="expected int"):
        tvl1.resolve({"warps": 2.5})
    with pytest.raises(ParameterError):
        tvl1.resolve({"border": "wrap"})
    assert tvl1.resolve({"warps": 3})["warps"] == 3


def test_result_options_leave_out_device_threads_and_compile():
    keyed = flow_method("tvl1").result_options({"threads": 3, "device": "cpu"})
    assert "threads" not in keyed and "device" not in keyed and "compile" not in keyed
    assert keyed["tau"] == 0.25 and keyed["border"] == "masked"


def test_a_new_method_is_one_decorated_function(scratch_method):
    scratch_method()
    assert "toy-shift" in flow_methods()
    frames = np.zeros((3, 8, 8), np.float32)
    flow = compute_flow("toy-shift", frames, frames, {"shift": 2.0})
    assert flow.shape == (3, 2, 8, 8) and np.all(flow[:, 0] == 2.0)
    assert np.all(compute_flow("toy-shift", frames, frames)[:, 0] == 1.5)


def test_a_name_cannot_be_taken_twice(scratch_method):
    scratch_method("toy-dup")
    with pytest.raises(ParameterError, match="already registered"):
        @register_flow_method("toy-dup", summary="another")
        def other(reference, moving):
            return None


def test_dispatch_matches_the_function(rng):
    ref = rng.uniform(0, 1, (2, 24, 24)).astype(np.float32)
    mov = np.roll(ref, 1, axis=2)
    direct = tvl1_module.tvl1_flow(ref, mov, warps=2, threads=1)
    via = compute_flow("tvl1", ref, mov, {"warps": 2, "threads": 1})
    np.testing.assert_array_equal(direct, via)


def test_tvl1_module_reads_no_environment_variable():
    # configuration comes in as arguments; mexkit.pipeline.options reads MEXKIT_TVL1_COMPILE
    assert "environ" not in inspect.getsource(tvl1_module)
    assert "getenv" not in inspect.getsource(tvl1_module)


def test_cli_options_come_from_the_registry(scratch_method):
    from mexkit.cli import flow as flow_cli

    result = CliRunner().invoke(flow_cli.flow_cmd, ["--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for flag in ("--tau", "--lambda", "--theta", "--epsilon", "--inner-iterations",
                 "--median-filtering", "--border", "--threads", "--winsize",
                 "--farneback-flags"):
        assert flag in text, flag
    assert "[tvl1, tvl1-opencv] Weight of the data term" in text
    for name in flow_methods():
        assert name in text


def test_flow_options_are_split_and_the_compile_variable_read(monkeypatch):
    # the command line's flow options are resolved in the pipeline (mexkit.pipeline.options)
    from mexkit.errors import ParameterError
    from mexkit.pipeline.options import resolve_flow_options

    monkeypatch.setenv("MEXKIT_TVL1_COMPILE", "0")
    keyed, runtime = resolve_flow_options("tvl1", {"tau": 0.2, "threads": 2}, 1)
    assert keyed["tau"] == 0.2 and "threads" not in keyed
    assert runtime == {"threads": 2, "compile": False}
    monkeypatch.delenv("MEXKIT_TVL1_COMPILE")
    _, runtime = resolve_flow_options("tvl1", {}, 2)
    # --jobs share out the cores between their workers
    assert runtime["threads"] == max(1, tvl1_module.default_threads() // 2)
    with pytest.raises(ParameterError, match="--winsize"):
        resolve_flow_options("tvl1", {"winsize": 5}, 1)
    with pytest.raises(ParameterError, match="--device"):
        resolve_flow_options("farneback", {"device": "cuda"}, 1)
    keyed, runtime = resolve_flow_options("farneback", {"winsize": 9, "device": "auto"}, 1)
    assert keyed["winsize"] == 9 and runtime == {}


def test_readme_table_of_flow_methods_is_the_registry():
    import re
    from pathlib import Path

    from mexkit.motion.methods import methods_markdown

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    match = re.search(r"<!-- flow-methods-table -->\n(.*?)\n<!-- /flow-methods-table -->",
                      text, re.S)
    assert match, "README.md lacks the flow-methods table markers"
    assert match.group(1).strip() == methods_markdown().strip(), (
        "README's flow-methods table is stale: paste methods_markdown()'s output")
