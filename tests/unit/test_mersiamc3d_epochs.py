"""MERSiamC3D's epochs are the paper's (issue 25, item 6).

Sec. 4.1.2: prior learning trains on the 90 % of the clip pairs (eq. 7: N (N - 1) / 2 for
N training clips), the augmentation gives "36 times more data combined with original
samples", SGD lr / 10 every 10 epochs. Before, prior learning drew 4,096 pairs per epoch
and target learning saw each clip once per epoch, so the schedule's 10 epochs were far
fewer steps than the paper's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mexkit.learn.folds import FoldContext
from mexkit.models import get_model, get_spec, paper_defaults
from mexkit.models.mersiamc3d.training import fit_fold
from mexkit.pipeline.reports import format_report


class _Bar:
    def callback(self, info):
        pass

    def close(self):
        pass


class _Clips(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"keyframe_flow": self.x[i]}, int(self.y[i])


def _ctx(tmp_path: Path, rng, n_train: int, options: dict) -> FoldContext:
    n = n_train + 2
    y = np.arange(n) % 3
    x = torch.from_numpy(rng.normal(0, 1, (n, 3, 10, 112, 112)).astype(np.float32))
    kw = paper_defaults("mersiamc3d")
    kw.update(epochs=1, batch_size=8, collate_fn=None)
    return FoldContext(model=get_model("mersiamc3d", 3, resolution=16),
                       spec=get_spec("mersiamc3d"), dataset=_Clips(x, y),
                       train=np.arange(n_train), labels=y, classes=["a", "b", "c"],
                       subjects=["s"] * n, fit_kwargs=kw, options=options, device="cpu",
                       seed=0, deterministic=True, checkpoint_dir=tmp_path,
                       progress=lambda stage, epochs: _Bar())


def _record_fit(monkeypatch):
    """fit replaced by a recorder of the dataset each stage is given (one epoch's)."""
    seen = []

    def fake_fit(model, dataset, *, epochs, batch_size, **kw):
        seen.append((len(dataset), batch_size))
        return {"epochs": [{"epoch": e + 1, "loss": 0.0} for e in range(epochs)]}

    from mexkit.learn import folds
    from mexkit.models.mersiamc3d import training

    monkeypatch.setattr(training, "fit", fake_fit)
    monkeypatch.setattr(folds, "fit", fake_fit)
    monkeypatch.setattr(training, "_holdout_accuracy", lambda *a, **k: None)
    return seen


def test_an_epoch_is_every_training_pair_then_the_36_fold_augmented_set(tmp_path, rng,
                                                                        monkeypatch):
    seen = _record_fit(monkeypatch)
    ctx = _ctx(tmp_path, rng, 7, {"resolution": 16})
    records = fit_fold(ctx)
    # the datasets fit was given: the 19 training pairs, then 7 clips x 36
    assert seen == [(19, 8), (252, 8)]
    prior = [r for r in records if r["stage"] == "prior"]
    target = [r for r in records if r["stage"] == "target"]
    # 7 clips -> 21 pairs; 10 % held out: floor(2.1) = 2; 19 pairs per epoch, batch 8
    assert (prior[0]["samples"], prior[0]["steps"]) == (19, 3)
    assert prior[-1]["pairs_train"] == 19 and prior[-1]["pairs_per_epoch"] == 19
    # 7 clips x 36 = 252 samples per epoch, batch 8 -> 32 steps
    assert (target[0]["samples"], target[0]["steps"]) == (252, 32)
    # mexkit train's report says so
    report = format_report({"pooled": {"accuracy": 1.0, "uf1": 1.0, "uar": 1.0,
                                       "confusion_matrix": [[1]], "classes": ["a"],
                                       "per_class": {"a": {"precision": 1, "recall": 1,
                                                           "f1": 1, "support": 1}}},
                            "training": {"fold1": records}})
    assert ("training (fold1): prior 1 epochs x 3 steps (19 samples per epoch); target 1 "
            "epochs x 32 steps (252 samples per epoch)") in report


def test_quick_runs_keep_their_options(tmp_path, rng, monkeypatch):
    seen = _record_fit(monkeypatch)
    ctx = _ctx(tmp_path, rng, 5, {"resolution": 16, "pairs_per_epoch": 4,
                                  "copies_per_epoch": 1})
    records = fit_fold(ctx)
    assert seen == [(4, 8), (5, 8)]
    prior = [r for r in records if r["stage"] == "prior"]
    target = [r for r in records if r["stage"] == "target"]
    assert (prior[0]["samples"], prior[0]["steps"]) == (4, 1)
    assert (target[0]["samples"], target[0]["steps"]) == (5, 1)


def test_the_registry_defaults_are_the_papers():
    options = {o.name: o.default for o in get_spec("mersiamc3d").options}
    assert options["pairs-per-epoch"] == 0 and options["copies-per-epoch"] == 36
