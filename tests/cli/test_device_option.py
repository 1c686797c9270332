"""One --device option on every command that runs torch code (issue 29, item 2).

Before, --device was declared seven times in three forms: only flow and
pretrain took 'cuda:N', and train, predict, spot and rpca refused it as an
invalid choice.
"""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mexkit.cli import COMMANDS, cli

#: Commands that run torch code.
DEVICE_COMMANDS = ("crop", "flow", "rpca", "train", "pretrain", "predict", "spot")


def _command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def _device(name: str) -> click.Option:
    (opt,) = [p for p in _command(name).params if p.name == "device"]
    return opt


def test_the_commands_with_a_device_option_are_those_that_run_torch():
    have = {n for n in COMMANDS if any(p.name == "device" for p in _command(n).params)}
    assert have == set(DEVICE_COMMANDS)


@pytest.mark.parametrize("name", DEVICE_COMMANDS)
def test_every_device_option_is_the_same_option(name):
    opt = _device(name)
    assert opt.type is click.STRING and opt.default == "auto"
    assert opt.metavar == "auto|cpu|cuda[:N]"
    assert opt.help.startswith("Where ") and opt.help.endswith(
        "auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N (GPU N).")


def _args(name, tmp_path, store):
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    return {
        "crop": ["crop", str(tmp_path)],
        "flow": ["flow", str(store), "-o", str(tmp_path / "out.h5")],
        "rpca": ["rpca", str(store), "-o", str(tmp_path / "out.h5")],
        "train": ["train", str(store), "--model", "psn", "-o", str(tmp_path / "out")],
        "pretrain": ["pretrain", str(store), "-o", str(tmp_path / "out.safetensors")],
        "predict": ["predict", str(store), "--results", str(results), "-o",
                    str(tmp_path / "out.csv")],
        "spot": ["spot", str(store), "--results", str(results), "-o",
                 str(tmp_path / "out.csv")],
    }[name]


@pytest.mark.parametrize("name", DEVICE_COMMANDS)
def test_a_missing_gpu_fails_once_with_exit_2_naming_it(name, tmp_path, small_store,
                                                          monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = CliRunner().invoke(cli, [*_args(name, tmp_path, small_store), "--device", "cuda:3"])
    assert r.exit_code == 2, r.output
    assert "'cuda:3' was asked for, but torch sees no CUDA device" in r.stderr
    assert r.stderr.count("error") == 1
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


@pytest.mark.parametrize("name", DEVICE_COMMANDS)
def test_a_misspelt_device_fails_with_exit_2(name, tmp_path, small_store):
    r = CliRunner().invoke(cli, [*_args(name, tmp_path, small_store), "--device", "gpu0"])
    assert r.exit_code == 2 and "'gpu0'" in r.stderr and "'cuda:N'" in r.stderr, r.output
