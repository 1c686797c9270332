"""mexkit's CPU optimizers against torch.optim's, step by step, and their start-up."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from mexkit.learn.optim import SGD, Adam, make_optimizer


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def _run(net: nn.Module, opt, steps: range, lrs: dict[int, float]) -> None:
    """Steps of a fixed regression problem, the learning rate changed at the given steps,
    one parameter left without a gradient in every third step (frozen for that step)."""
    for k in steps:
        gen = torch.Generator().manual_seed(k)          # step k's data, however started
        x = torch.randn(5, 2, 6, 6, generator=gen)
        y = torch.randn(5, 2, generator=gen)
        if k in lrs:
            for group in opt.param_groups:
                group["lr"] = lrs[k]
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(net(x), y).backward()
        if k % 3 == 2:
            net[0].bias.grad = None
        opt.step()


def _assert_same(a: nn.Module, b: nn.Module, opt_a, opt_b) -> None:
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for pid in sa["state"]:
        assert sa["state"][pid].keys() == sb["state"][pid].keys()
        for key, value in sa["state"][pid].items():
            other = sb["state"][pid][key]
            assert value.dtype == other.dtype and value.device == other.device
            assert torch.equal(value, other), (pid, key)
    assert sa["param_groups"] == sb["param_groups"]


@pytest.mark.parametrize("make", [
    lambda p: (Adam(p, lr=5e-3), torch.optim.Adam(p, lr=5e-3)),
    lambda p: (Adam(p, lr=1e-2, weight_decay=0.1), torch.optim.Adam(p, lr=1e-2, weight_decay=0.1)),
    lambda p: (SGD(p, lr=0.05), torch.optim.SGD(p, lr=0.05)),
    lambda p: (SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
               torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
], ids=["adam", "adam-weight-decay", "sgd", "sgd-momentum"])
def test_the_updates_are_torch_optims_bit_for_bit(make):
    a, b = _net(0), _net(0)
    ours, _ = make(list(a.parameters()))
    _, theirs = make(list(b.parameters()))
    lrs = {0: 5e-3, 9: 1e-3, 15: 2e-2}
    _run(a, ours, range(25), lrs)
    _run(b, theirs, range(25), lrs)
    _assert_same(a, b, ours, theirs)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_a_state_saved_by_one_continues_in_the_other(kind):
    """A checkpoint of torch's optimizer resumed by mexkit's (and the other way round)
    continues exactly as the uninterrupted run."""
    options = {"lr": 1e-2, "weight_decay": 1e-2}
    if kind == "sgd":
        options["momentum"] = 0.8
    ours_cls, torch_cls = (Adam, torch.optim.Adam) if kind == "adam" else (SGD, torch.optim.SGD)
    ref = _net(1)
    ref_opt = torch_cls(ref.parameters(), **options)
    _run(ref, ref_opt, range(20), {})
    for first, second in ((torch_cls, ours_cls), (ours_cls, torch_cls)):
        net = _net(1)
        opt = first(net.parameters(), **options)
        _run(net, opt, range(8), {})
        saved = opt.state_dict()
        resumed = second(net.parameters(), lr=123.0)   # hyperparameters come from the state
        resumed.load_state_dict(saved)
        _run(net, resumed, range(8, 20), {})
        for p, q in zip(net.parameters(), ref.parameters(), strict=True):
            assert torch.equal(p, q), (first.__module__, second.__module__)


def test_a_state_of_other_groups_or_options_is_refused():
    net = _net(2)
    opt = Adam(net.parameters())
    other = torch.optim.Adam(list(net.parameters())[:2])
    with pytest.raises(ValueError, match="size"):
        opt.load_state_dict(other.state_dict())
    amsgrad = torch.optim.Adam(net.parameters(), amsgrad=True)
    with pytest.raises(ValueError, match="amsgrad"):
        opt.load_state_dict(amsgrad.state_dict())


def test_make_optimizer_keeps_torchs_on_an_accelerator_only():
    params = list(_net(3).parameters())
    assert isinstance(make_optimizer("adam", params, lr=1e-3), Adam)
    assert isinstance(make_optimizer("sgd", params, lr=1e-3, momentum=0.9), SGD)
    meta = [nn.Parameter(torch.zeros(2, device="meta"))]
    assert isinstance(make_optimizer("adam", meta, lr=1e-3), torch.optim.Adam)


def test_training_on_the_cpu_does_not_load_torchs_compiler():
    """torch.optim's optimizers and torch.use_deterministic_algorithms import
    torch._dynamo / torch._inductor: about 1.2 s of CPU in every fold worker."""
    code = textwrap.dedent("""
        import sys, torch
        from torch.utils.data import TensorDataset
        from mexkit.learn.train import fit
        from mexkit.models.mean.network import MEAN
        data = TensorDataset(torch.randn(8, 3, 42, 42), torch.randint(0, 3, (8,)))
        fit(MEAN(3), data, epochs=2, batch_size=4, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() is False
        compiler = ("torch._dynamo", "torch._inductor")
        loaded = sorted(m for m in sys.modules if m.startswith(compiler))
        print(len(loaded), loaded[:3])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("0 "), out
