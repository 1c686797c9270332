"""One device resolver (mexkit.devices): spelling, presence, and what 'auto' means."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mexkit.devices import check_device, check_device_name, resolve_device
from mexkit.errors import ParameterError


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_every_spelling_is_accepted(name):
    assert check_device_name(name) == name


def test_none_means_auto():
    assert check_device_name(None) == "auto"


@pytest.mark.parametrize("name", ["gpu0", "cuda:", "CUDA", "cuda:x", "mps", "", 0])
def test_other_spellings_are_refused_naming_the_value(name):
    with pytest.raises(ParameterError) as info:
        check_device_name(name)
    assert repr(name) in str(info.value) and "'cuda:N'" in str(info.value)


def test_cpu_and_auto_are_checked_without_importing_torch():
    code = ("import sys\nfrom mexkit.devices import check_device\n"
            "check_device('cpu'); check_device('auto')\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    assert r.stdout.strip() == "False"


def test_a_missing_gpu_is_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="'cuda:1' was asked for, but torch sees no CUDA"):
        check_device("cuda:1")
    with pytest.raises(ParameterError, match="'cuda' was asked for"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_a_gpu_index_beyond_the_devices_is_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == "cuda:1"
    with pytest.raises(ParameterError, match=r"'cuda:2' was asked for, but torch sees 2 CUDA "
                                             r"device\(s\) \(cuda:0 to cuda:1\)"):
        check_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_auto_follows_data_on_a_gpu():
    import torch

    class OnGpu(torch.Tensor):
        @property
        def device(self):
            return torch.device("cuda", 3)

    like = torch.zeros(1).as_subclass(OnGpu)
    assert resolve_device("auto", like=like) == torch.device("cuda", 3)
    assert resolve_device("auto", like=torch.zeros(1)).type in ("cpu", "cuda")
