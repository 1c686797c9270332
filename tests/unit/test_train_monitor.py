"""The test-fold curve of training.png watches training without changing it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mexkit.learn.train import fit


class _DS(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y
        self.labels = list(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _net():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
                               torch.nn.Linear(8, 2))


def test_monitor_records_held_out_loss_and_leaves_training_unchanged(rng):
    x = torch.from_numpy(rng.normal(size=(16, 4)).astype(np.float32))
    y = [int(v > 0) for v in x[:, 0]]
    held_x = torch.from_numpy(rng.normal(size=(6, 4)).astype(np.float32))
    held_y = [int(v > 0) for v in held_x[:, 0]]
    plain, watched = _net(), _net()
    a = fit(plain, _DS(x, y), epochs=3, batch_size=8, lr=0.05, optimizer="sgd")
    b = fit(watched, _DS(x, y), epochs=3, batch_size=8, lr=0.05, optimizer="sgd",
            monitor=_DS(held_x, held_y))
    for pa, pb in zip(plain.parameters(), watched.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert [r["loss"] for r in a["epochs"]] == [r["loss"] for r in b["epochs"]]
    last = b["epochs"][-1]
    # the recorded held-out loss is the cross-entropy of the final model, in eval mode
    watched.eval()
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(watched(held_x), torch.tensor(held_y))
        acc = float((watched(held_x).argmax(1) == torch.tensor(held_y)).float().mean())
        pred = watched(held_x).argmax(1).tolist()
    assert last["monitor_loss"] == pytest.approx(float(want), rel=1e-5)
    assert last["monitor_accuracy"] == pytest.approx(acc)
    # each held-out sample's predicted class, in the dataset's order (--select-on-test)
    assert last["monitor_pred"] == pred


def _modes(model):
    return [(name, m.training) for name, m in model.named_modules()]


def test_monitor_evaluates_in_eval_mode_and_gives_each_module_its_mode_back():
    """MEAN with frozen shared layers keeps their batch norm in evaluation mode while it
    trains: after the monitor every module has the mode it had (those batch norms still
    in evaluation mode, the rest training), and during it every module evaluated."""
    from mexkit.learn.train import _monitor
    from mexkit.models.mean.network import MEAN

    model = MEAN(3).freeze_shared(True)
    model.train()
    before = _modes(model)
    norms = {name for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert len(norms) == 3 and {t for name, t in before if name in norms} == {False}
    assert any(t for _, t in before)
    seen = []
    for m in model.modules():
        m.register_forward_hook(lambda mod, i, o: seen.append(mod.training))
    x = torch.randn(5, 3, 42, 42)
    result = _monitor(model, _DS(x, [0, 1, 2, 0, 1]), "ce", torch.device("cpu"), None)
    assert _modes(model) == before
    assert seen and not any(seen)
    model.eval()
    with torch.no_grad():
        want = model(x).argmax(1).tolist()
    assert result["monitor_pred"] == want


def test_a_train_override_doing_more_than_flags_is_called():
    """A model whose ``train`` does more than set the modes' flags is switched with its own
    ``eval()`` and ``train()``."""
    from mexkit.learn.train import _evaluation_mode, _restore_modes

    class Counting(torch.nn.Sequential):
        calls: list = []

        def train(self, mode=True):
            Counting.calls.append(mode)
            return super().train(mode)

    model = Counting(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    model.train()
    Counting.calls.clear()
    modes = _evaluation_mode(model)
    assert Counting.calls == [False] and not any(m.training for m in model.modules())
    _restore_modes(modes)
    assert all(m.training for m in model.modules())


def test_mean_trains_the_same_watched_or_not(rng):
    """The monitor switches MEAN's modes after every epoch: its training is unchanged."""
    from mexkit.models.mean.network import MEAN

    x = torch.from_numpy(rng.normal(size=(12, 3, 42, 42)).astype(np.float32))
    y = [i % 3 for i in range(12)]
    nets = []
    for monitor in (None, _DS(x[:4], y[:4])):
        torch.manual_seed(0)
        net = MEAN(3)
        fit(net, _DS(x, y), epochs=3, batch_size=6, lr=1e-3, monitor=monitor)
        nets.append(net)
    for pa, pb in zip(nets[0].state_dict().values(), nets[1].state_dict().values(),
                      strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
