"""The registries are the one source of what mexkit offers: models, their
inputs and options, and what the README and the CLI list."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.errors import ModelInputError, ParameterError
from mexkit.learn.data import collate_for, pad_collate
from mexkit.models.inputs import get_input, list_inputs, missing_input
from mexkit.models.registry import (
    InputSpec,
    get_spec,
    list_models,
    model_options,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _command_args(argv: list[str], placeholder: str) -> tuple[str, list[str]]:
    name, args = argv[0], list(argv[1:])
    if args[:1] == ["-"]:
        args = args[1:]
    return name, [placeholder, *args]   # the input a pipeline would feed


@pytest.mark.parametrize("feature", list_inputs(), ids=lambda f: f.name)
def test_every_input_names_a_real_command_line(feature, tmp_path):
    assert feature.commands, f"{feature.name}: produced_by names no mexkit command"
    placeholder = tmp_path / "input.h5"
    placeholder.write_bytes(b"")
    for argv in feature.commands:
        name, args = _command_args(argv, str(placeholder))
        command = cli.get_command(None, name)
        assert command is not None, f"{feature.name}: no command {name!r}"
        # parsing validates every option name and choice; nothing runs
        command.make_context(name, args)


def test_every_model_input_is_registered_with_the_same_shape():
    for spec in list_models():
        for inp in spec.inputs:
            assert get_input(inp.name).shape == inp.shape, (spec.name, inp.name)


def test_models_listed_by_the_cli_are_the_registry():
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    import json

    listed = [r["name"] for r in json.loads(result.output)]
    assert listed == [s.name for s in list_models()]
    train = cli.get_command(None, "train")
    choices = next(p for p in train.params if p.name == "model").type.choices
    assert list(choices) == listed


def test_readme_table_of_models_is_the_registry():
    text = README.read_text()
    match = re.search(r"<!-- models-table -->\n(.*?)\n<!-- /models-table -->", text, re.S)
    assert match, "README.md lacks the models table markers"
    result = CliRunner().invoke(cli, ["models", "--markdown"])
    assert result.exit_code == 0, result.output
    assert match.group(1).strip() == result.output.strip(), (
        "README's models table is stale: paste the output of `mexkit models --markdown`")


def test_model_options_defaults_and_refusal():
    mean = get_spec("mean")
    values = model_options(mean)
    assert set(values) == {o.keyword for o in mean.options}
    with pytest.raises(ParameterError, match="has no option '--no-such-thing'"):
        model_options(mean, {"no-such-thing": True})


def test_every_model_option_reaches_train_help():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for spec in list_models():
        for opt in spec.options:
            assert f"--{opt.name}" in result.output, (spec.name, opt.name)


def test_pad_collate_masks_padding():
    items = [({"clip": torch.ones(3, 2), "x": torch.zeros(4)}, 0),
             ({"clip": torch.full((1, 2), 2.0), "x": torch.ones(4)}, 1)]
    inputs, labels = pad_collate(items, ("clip",))
    assert inputs["clip"].shape == (2, 3, 2)
    assert inputs["clip_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert float(inputs["clip"][1, 1:].abs().sum()) == 0.0
    assert inputs["x"].shape == (2, 4) and labels.tolist() == [0, 1]
    assert collate_for((InputSpec("x", (4,), ""),)) is None
    assert collate_for((InputSpec("clip", (None, 2), ""),)) is not None


def test_missing_input_names_the_command(tmp_path):
    class Sample:
        sample_id = "s1"

        def keys(self):
            return ["frames"]

        def __contains__(self, name):
            return name == "frames"

    err = missing_input(Sample(), "mean_regions", ("flow",))
    assert isinstance(err, ModelInputError)
    assert "mexkit flow --pairs onset-apex --features mean" in str(err)
    with pytest.raises(ModelInputError, match="mexkit flow"):
        get_input("mean_regions").build(Sample())


def test_focal_alpha_balanced_matches_hand_computation():
    from mexkit.learn.train import fit

    x = torch.zeros(12, 4)
    y = [0] * 9 + [1] * 3

    class DS(torch.utils.data.Dataset):
        labels = y

        def __len__(self):
            return 12

        def __getitem__(self, i):
            return x[i], y[i]

    net = torch.nn.Linear(4, 2)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([1.0, 0.0]))
    net.n_classes = 2
    out = fit(net, DS(), epochs=1, batch_size=12, loss="focal", focal_alpha="balanced",
              focal_gamma=2.0, optimizer="sgd", lr=1e-12)
    p0 = np.exp(1) / (np.exp(1) + 1)
    p1 = 1 - p0
    l0 = -(1 - p0) ** 2 * np.log(p0)
    l1 = -(1 - p1) ** 2 * np.log(p1)
    w0, w1 = 12 / (2 * 9), 12 / (2 * 3)   # N / (C * N_c)
    want = (9 * w0 * l0 + 3 * w1 * l1) / (9 * w0 + 3 * w1)
    assert out["epochs"][0]["loss"] == pytest.approx(want, rel=1e-5)
    # the rare class weighs more than without alpha
    plain = (9 * l0 + 3 * l1) / 12
    assert want > plain
    with pytest.raises(ParameterError, match="focal_alpha"):
        fit(torch.nn.Linear(4, 2), DS(), epochs=1, loss="focal", focal_alpha=[-1, 1])
