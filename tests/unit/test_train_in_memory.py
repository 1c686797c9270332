"""fit's in-memory batches (small datasets collated once) train exactly as a DataLoader."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mexkit.learn import train as train_mod
from mexkit.learn.train import fit


class _DS(torch.utils.data.Dataset):
    def __init__(self, x, y, keyed=False):
        self.x, self.y, self.keyed = x, y, keyed
        self.labels = list(y)
        self.reads = 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        return ({"a": self.x[i, :2], "b": self.x[i, 2:]} if self.keyed else self.x[i]), self.y[i]


class _Net(torch.nn.Module):
    def __init__(self, keyed):
        super().__init__()
        torch.manual_seed(1)
        self.keyed = keyed
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
                                        torch.nn.Linear(8, 3))

    def forward(self, x=None, a=None, b=None):
        return self.body(torch.cat([a, b], 1) if self.keyed else x)


def _run(rng_seed, keyed, in_memory, monkeypatch, balance=None):
    rng = np.random.default_rng(rng_seed)
    x = torch.from_numpy(rng.normal(size=(19, 4)).astype(np.float32))  # 19 = 2x8 + 3
    y = [int(v > 0) + int(v > 1) for v in x[:, 0]]
    held = torch.from_numpy(rng.normal(size=(5, 4)).astype(np.float32))
    monkeypatch.setattr(train_mod, "IN_MEMORY_BYTES", (512 << 20) if in_memory else 0)
    ds = _DS(x, y, keyed)
    net = _Net(keyed)
    if keyed:  # dict inputs reach forward by keyword
        net.forward = lambda a, b: net.body(torch.cat([a, b], 1))
    out = fit(net, ds, epochs=4, batch_size=8, lr=0.05, optimizer="sgd",
              class_balance=balance, monitor=_DS(held, [0, 1, 2, 0, 1], keyed))
    return net, out, ds.reads


@pytest.mark.parametrize(("keyed", "balance"), [(False, None), (True, None),
                                               (False, "resample")])
def test_in_memory_batches_give_the_dataloaders_weights_and_history(monkeypatch, keyed,
                                                                     balance):
    net_a, a, reads_a = _run(0, keyed, True, monkeypatch, balance)
    net_b, b, reads_b = _run(0, keyed, False, monkeypatch, balance)
    for pa, pb in zip(net_a.parameters(), net_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a["epochs"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b["epochs"]]
    # items read once in all (plus one batch to find unused parameters), not once per epoch
    assert reads_a < 2 * 19 and reads_b >= 4 * 19


def test_a_collate_fn_keeps_the_item_by_item_path():
    ds = _DS(torch.zeros(4, 4), [0, 1, 0, 1])
    assert train_mod._InMemory.of(ds, lambda items: items, 0, torch.device("cpu")) is None
    assert train_mod._InMemory.of(ds, None, 2, torch.device("cpu")) is None
    held = train_mod._InMemory.of(ds, None, 0, torch.device("cpu"))
    assert held is not None and len(held) == 4
