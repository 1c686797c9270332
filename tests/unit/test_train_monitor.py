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
