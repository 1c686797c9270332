"""Training, prediction, checkpoints, DDP and augmentation."""
from __future__ import annotations

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from mexkit.errors import ParameterError, StoreError
from mexkit.learn import train as train_mod
from mexkit.learn.augment import random_affine
from mexkit.learn.train import (
    fit,
    load_checkpoint,
    parse_schedule,
    predict,
    ratio_subsample,
    seed_everything,
)
from mexkit.models import paper_defaults
from mexkit.models.atnet.augment import ATNetAugment
from mexkit.models.mean.network import MEAN

torch.set_num_threads(2)


def _separable(rng, n=48):
    """Three classes; class c lights up a square of channel c (u, v or strain)."""
    y = np.arange(n) % 3
    x = rng.normal(0, 0.1, (n, 3, 42, 42)).astype(np.float32)
    for c in range(3):
        x[y == c, c, 8:34, 8:34] += 1.0
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


class Tiny(nn.Module):
    """A model without batch norm or dropout: DDP must match one process exactly."""

    def __init__(self, d=6, k=3):
        super().__init__()
        self.n_classes = k
        self.net = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, k))

    def forward(self, x):
        return self.net(x)


def _tiny_data(n=32, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return TensorDataset(x, y)


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- learning -------------------------------------------------------------------------
def test_mean_learns_a_separable_problem(rng):
    ds = _separable(rng)
    seed_everything(0)
    model = MEAN(3)
    history = fit(model, ds, epochs=25, optimizer="adam", lr=5e-3, batch_size=8, seed=1)
    assert len(history["epochs"]) == 25
    assert history["epochs"][-1]["loss"] < history["epochs"][0]["loss"]
    scores, preds = predict(model, ds, batch_size=32)
    assert scores.shape == (48, 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    assert (preds == ds.tensors[1].numpy()).mean() == 1.0


def test_frozen_trunk_and_unused_head_stay_put(rng):
    ds = _separable(rng, n=12)
    model = MEAN(3).freeze_shared()
    trunk = {k: v.clone() for k, v in model.streams.state_dict().items()}
    spot = {k: v.clone() for k, v in model.spot_head.state_dict().items()}
    recog = {k: v.clone() for k, v in model.recog_head.state_dict().items()}
    fit(model, ds, epochs=1, batch_size=6, lr=1e-2)
    assert _states_equal(trunk, model.streams.state_dict())  # BN statistics included
    assert _states_equal(spot, model.spot_head.state_dict())
    assert not _states_equal(recog, model.recog_head.state_dict())
    assert all(p.requires_grad for p in model.spot_head.parameters())  # restored


def test_spotting_head_regression(rng):
    ds = _separable(rng, n=12)
    targets = (ds.tensors[1] == 0).float()
    reg = TensorDataset(ds.tensors[0], targets)
    model = MEAN(3, head="spotting")
    history = fit(model, reg, epochs=3, loss="mse", batch_size=6)
    assert "accuracy" not in history["epochs"][0]
    scores, preds = predict(model, reg)
    assert scores.shape == (12,) and np.array_equal(scores, preds)
    with pytest.raises(ParameterError, match="loss='mse'"):
        fit(model, reg, epochs=1, loss="mse", class_balance="weights")


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    ds = _tiny_data()
    finals = []
    for loss in ("ce", "focal"):
        seed_everything(5)
        model = Tiny()
        fit(model, ds, epochs=3, loss=loss, focal_gamma=0.0, batch_size=8, lr=0.05,
            class_balance="weights")
        finals.append(model.state_dict())
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=1e-5, atol=1e-6)


class _Logged(Dataset):
    def __init__(self, labels):
        self.labels = list(labels)
        self.accessed = []

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.accessed.append(i)
        return torch.full((6,), float(self.labels[i])), self.labels[i]


def test_resampling_balances_classes(monkeypatch):
    # the DataLoader's path, whose item reads show the sampled order (the in-memory path
    # reads each item once and draws the same order: test_train_in_memory.py)
    monkeypatch.setattr(train_mod, "IN_MEMORY_BYTES", 0)
    labels = [0] * 270 + [1] * 30
    ds = _Logged(labels)
    fit(Tiny(), ds, epochs=1, batch_size=50, class_balance="resample")
    epoch = np.array(labels)[ds.accessed[-300:]]  # the last 300 accesses are the epoch
    assert abs((epoch == 1).mean() - 0.5) < 0.1  # 10 % of the data, about half the draws
    ds2 = _Logged(labels)
    fit(Tiny(), ds2, epochs=1, batch_size=50)
    assert sorted(ds2.accessed[-300:]) == list(range(300))  # a plain shuffle


def test_same_seed_same_weights_other_seed_other_weights():
    ds = _tiny_data()
    aug = lambda x, *, generator: x + 0.1 * torch.randn(x.shape, generator=generator)  # noqa: E731
    runs = []
    for seed in (3, 3, 4):
        seed_everything(0)
        model = Tiny()
        fit(model, ds, epochs=2, batch_size=8, seed=seed, augment=aug, lr=0.05)
        runs.append(model.state_dict())
    assert _states_equal(runs[0], runs[1])
    assert not _states_equal(runs[0], runs[2])


# -- checkpoints ------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [
    dict(optimizer="adam", lr=5e-3),
    dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-6,
         schedule={"kind": "step", "step_size": 2, "gamma": 0.1}),
], ids=["adam", "sgd-step"])
def test_resume_gives_the_uninterrupted_weights(rng, tmp_path, settings):
    ds = _separable(rng, n=16)
    seed_everything(0)
    straight = MEAN(3)
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    full = fit(straight, ds, epochs=4, batch_size=8, seed=2, **settings)

    ckpt = tmp_path / "run.safetensors"
    first = MEAN(3)
    first.load_state_dict(init)
    fit(first, ds, epochs=2, batch_size=8, seed=2, checkpoint_path=ckpt, **settings)
    second = MEAN(3)  # a fresh process would build a new, differently initialised model
    resumed = fit(second, ds, epochs=4, batch_size=8, seed=2, checkpoint_path=ckpt,
                  **settings)
    assert resumed["resumed_from"] == 2
    assert [r["epoch"] for r in resumed["epochs"]] == [1, 2, 3, 4]
    assert _states_equal(straight.state_dict(), second.state_dict())
    assert [r["loss"] for r in resumed["epochs"]] == [r["loss"] for r in full["epochs"]]
    if "schedule" in settings:
        assert [r["lr"] for r in full["epochs"]] == pytest.approx([0.05, 0.05, 0.005, 0.005])


def test_checkpoint_is_plain_safetensors(rng, tmp_path):
    ds = _separable(rng, n=8)
    ckpt = tmp_path / "ckpt.safetensors"
    model = MEAN(3)
    fit(model, ds, epochs=2, batch_size=4, seed=7, checkpoint_path=ckpt)
    with safe_open(str(ckpt), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "mexkit-checkpoint"
    doc = json.loads(meta["meta"])
    assert doc["epoch"] == 2 and doc["seed"] == 7 and doc["config"]["optimizer"] == "adam"
    tensors = load_file(str(ckpt))
    assert torch.equal(tensors["model.recog_head.5.weight"], model.recog_head[5].weight)
    assert any(k.startswith("optim.") and k.endswith(".exp_avg") for k in tensors)
    state, _, meta2 = load_checkpoint(ckpt)
    assert meta2["history"][-1]["epoch"] == 2 and set(state) == set(model.state_dict())
    # finished run: resuming with the same epochs trains nothing more
    again = fit(MEAN(3), ds, epochs=2, batch_size=4, seed=7, checkpoint_path=ckpt)
    assert again["resumed_from"] == 2 and len(again["epochs"]) == 2


def test_checkpoint_seconds_spaces_the_checkpoints_in_time(rng, tmp_path, monkeypatch):
    """A checkpoint is synced to disk (tens of ms) while a small network's epoch takes a few:
    with checkpoint_seconds one is written only once that long has passed since the last,
    and always after the last epoch; resuming from it still gives the uninterrupted run."""
    import mexkit.learn.train as train_module

    ds = _separable(rng, n=8)
    epochs_saved = []
    real_save = train_module.save_checkpoint

    def counting_save(path, model, opt, meta):
        epochs_saved.append(meta["epoch"])
        real_save(path, model, opt, meta)

    ticks = iter(range(0, 1000, 2))  # a clock that moves 2 s at every reading
    monkeypatch.setattr(train_module, "save_checkpoint", counting_save)
    monkeypatch.setattr(train_module, "_clock", lambda: float(next(ticks)))
    ckpt = tmp_path / "spaced.safetensors"
    seed_everything(0)
    init = MEAN(3)
    state0 = {k: v.clone() for k, v in init.state_dict().items()}
    fit(init, ds, epochs=6, batch_size=4, seed=1, checkpoint_path=ckpt, checkpoint_seconds=5)
    # readings: start 0; epochs 1..6 at 2, 4, 6 (6 - 0 >= 5: saved), 8, 10, 12 (the last)
    assert epochs_saved == [3, 6]
    epochs_saved.clear()
    fit(MEAN(3), ds, epochs=3, batch_size=4, seed=1, checkpoint_path=tmp_path / "every.sft",
        checkpoint_seconds=0)
    assert epochs_saved == [1, 2, 3]
    # a run killed after epoch 4 resumes from epoch 3 and ends where the straight run did
    straight = MEAN(3)
    straight.load_state_dict(state0)
    fit(straight, ds, epochs=6, batch_size=4, seed=1)
    ckpt3 = tmp_path / "three.safetensors"
    first = MEAN(3)
    first.load_state_dict(state0)
    fit(first, ds, epochs=3, batch_size=4, seed=1, checkpoint_path=ckpt3)
    resumed_model = MEAN(3)
    resumed = fit(resumed_model, ds, epochs=6, batch_size=4, seed=1, checkpoint_path=ckpt3,
                  checkpoint_seconds=5)
    assert resumed["resumed_from"] == 3
    assert _states_equal(straight.state_dict(), resumed_model.state_dict())
    with pytest.raises(ParameterError, match="checkpoint_seconds"):
        fit(MEAN(3), ds, epochs=1, batch_size=4, checkpoint_seconds=-1)


def test_checkpoint_with_other_settings_is_refused(rng, tmp_path):
    ds = _separable(rng, n=8)
    ckpt = tmp_path / "ckpt.safetensors"
    fit(MEAN(3), ds, epochs=1, batch_size=4, checkpoint_path=ckpt)
    with pytest.raises(ParameterError, match=r"lr: 0.0005 -> 0.001"):
        fit(MEAN(3), ds, epochs=2, batch_size=4, lr=1e-3, checkpoint_path=ckpt)
    fit(MEAN(3), ds, epochs=1, batch_size=4, lr=1e-3, checkpoint_path=ckpt, resume=False)
    bogus = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(bogus))
    with pytest.raises(StoreError, match="not a mexkit checkpoint"):
        load_checkpoint(bogus)


def test_bad_settings():
    ds = _tiny_data()
    with pytest.raises(ParameterError, match="'optimizer'"):
        fit(Tiny(), ds, epochs=1, optimizer="rmsprop")
    with pytest.raises(ParameterError, match="'epochs'"):
        fit(Tiny(), ds, epochs=0)
    with pytest.raises(ParameterError, match="step_size"):
        fit(Tiny(), ds, epochs=1, schedule={"kind": "step"})
    with pytest.raises(ParameterError, match="'class_balance'"):
        fit(Tiny(), ds, epochs=1, class_balance="oversample")


def test_paper_defaults_and_ratio_subsample():
    at = paper_defaults("atnet")
    assert (at["optimizer"], at["lr"], at["momentum"], at["weight_decay"], at["epochs"]) == (
        "sgd", 0.01, 0.9, 5e-6, 50)
    assert isinstance(at["augment"], ATNetAugment)
    mean = paper_defaults(MEAN(3))
    assert (mean["optimizer"], mean["lr"], mean["augment"]) == ("adam", 5e-4, None)
    assert paper_defaults("mean", stage="pretrain")["loss"] == "mse"
    with pytest.raises(ParameterError, match="not a registered model"):
        paper_defaults(Tiny())
    labels = np.array([0] * 100 + [1] * 5)
    keep = ratio_subsample(labels, ratio=8, seed=0)
    assert np.count_nonzero(labels[keep] == 1) == 5
    assert np.count_nonzero(labels[keep] == 0) == 40
    assert np.array_equal(keep, np.unique(keep))


# -- DDP ----------------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    seed_everything(0)
    model = Tiny()
    history = fit(model, _tiny_data(), epochs=3, optimizer="sgd", lr=0.1, batch_size=8,
                  seed=11, checkpoint_path=os.path.join(out_dir, "ckpt.safetensors"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(out_dir, f"rank{rank}.safetensors"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(history, f)


@pytest.mark.slow  # suite time: DDP takes two processes of torch
def test_ddp_two_processes_match_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert _states_equal(r0, r1)  # gradients were synchronised
    seed_everything(0)
    single = Tiny()
    hist = fit(single, _tiny_data(), epochs=3, optimizer="sgd", lr=0.1, batch_size=8, seed=11)
    for k, v in single.state_dict().items():  # a global batch of 8 = 2 x 4
        torch.testing.assert_close(r0[k], v, rtol=1e-5, atol=1e-6)
    ddp_hist = json.loads((tmp_path / "rank0.json").read_text())
    assert ddp_hist["world_size"] == 2
    assert [e["loss"] for e in ddp_hist["epochs"]] == pytest.approx(
        [e["loss"] for e in hist["epochs"]], rel=1e-5)
    state, _, meta = load_checkpoint(tmp_path / "ckpt.safetensors")  # written by rank 0
    assert meta["epoch"] == 3 and _states_equal(state, r0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt.safetensors", "rank0.json", "rank0.safetensors", "rank1.json",
        "rank1.safetensors"]


# -- augmentation ---------------------------------------------------------------------------
def test_random_shift_moves_by_whole_pixels_within_range():
    x = torch.zeros(16, 1, 40, 40)
    x[:, 0, 20, 18] = 1.0
    g = torch.Generator().manual_seed(0)
    y = random_affine(x, generator=g, max_rotation=0.0, max_shift=10, p=1.0,
                      padding_mode="zeros")
    shifts = set()
    for img in y[:, 0]:
        peak = torch.nonzero(img == img.max())
        assert peak.shape[0] == 1 and img.max() == pytest.approx(1.0, abs=1e-5)
        dy, dx = int(peak[0, 0]) - 20, int(peak[0, 1]) - 18
        assert abs(dx) <= 10 and abs(dy) <= 10
        shifts.add((dx, dy))
    assert len(shifts) > 8  # offsets vary from image to image
    again = random_affine(x, generator=torch.Generator().manual_seed(0), max_rotation=0.0,
                          max_shift=10, p=1.0, padding_mode="zeros")
    assert torch.equal(y, again)


def test_random_rotation_keeps_radius_and_bounds_angle():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    cx, cy, px, py = 31.5, 31.5, 51.5, 31.5  # a blob 20 px right of the centre
    blob = torch.exp(-((xx - px) ** 2 + (yy - py) ** 2) / 4.0)
    x = blob.expand(32, 1, 64, 64).contiguous()
    y = random_affine(x, generator=torch.Generator().manual_seed(1), max_rotation=5.0,
                      max_shift=0, p=1.0, padding_mode="zeros")
    angles = []
    for img in y[:, 0]:
        mx, my = (img * xx).sum() / img.sum(), (img * yy).sum() / img.sum()
        assert math.hypot(mx - cx, my - cy) == pytest.approx(20.0, abs=0.3)
        angles.append(math.degrees(math.atan2(my - cy, mx - cx)))
    assert max(abs(a) for a in angles) <= 5.05
    assert max(angles) - min(angles) > 3.0  # angles are drawn, not fixed


def test_augment_probability_and_dict_inputs():
    x = torch.rand(8, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_affine(x, generator=g, p=0.0), x)
    aug = ATNetAugment(max_shift=4)
    batch = {"apex_rgb": x, "direction_magnitude": torch.rand(8, 64, 128)}
    out = aug(batch, generator=torch.Generator().manual_seed(2))
    assert out["direction_magnitude"] is batch["direction_magnitude"]
    changed = [not torch.equal(a, b) for a, b in zip(out["apex_rgb"], x, strict=True)]
    assert 0 < sum(changed) < 8  # p = 0.5 per transform: some images, not all
    shifted = ATNetAugment(shift="intensity", max_rotation=0.0, p=1.0)(
        x, generator=torch.Generator().manual_seed(3))
    offsets = (shifted - x).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets))
    assert offsets[:, 0].abs().max() <= 10


@pytest.mark.parametrize("text, expected", [
    ("constant", {"kind": "constant"}),
    ("step:40", {"kind": "step", "step_size": 40, "gamma": 0.1}),
    ("step:5:0.5", {"kind": "step", "step_size": 5, "gamma": 0.5}),
    ("cosine", {"kind": "cosine", "eta_min": 0.0}),
    ("cosine:1e-6", {"kind": "cosine", "eta_min": 1e-6}),
])
def test_parse_schedule(text, expected):
    assert parse_schedule(text) == expected


@pytest.mark.parametrize("text", ["", "linear", "step", "step:0", "step:x", "step:10:0",
                                  "step:10:1.5", "cosine:-1", "constant:3", "step:1:2:3"])
def test_parse_schedule_refuses_bad_text(text):
    with pytest.raises(ParameterError, match="schedule|step_size|gamma|eta_min"):
        parse_schedule(text)


def test_parsed_step_schedule_sets_each_epochs_rate(rng):
    history = fit(MEAN(3), _separable(rng, n=8), epochs=5, batch_size=4, lr=1e-3,
                  schedule=parse_schedule("step:2:0.5"))
    assert [e["lr"] for e in history["epochs"]] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])


# -- start-up of a fold worker ------------------------------------------------------------
def test_class_weights_are_scikit_learns_balanced_weights():
    # computed without scikit-learn (a fold worker's start-up); scikit-learn is the reference
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0] * 7 + [2] * 3 + [3] * 11  # class 1 absent: weight 1
    ds = TensorDataset(torch.zeros(len(labels), 6), torch.tensor(labels))
    model = Tiny(k=4)
    config = {"class_balance": "weights"}
    weights, draws = train_mod._class_weights(config, ds, model, torch.device("cpu"))
    expected = np.ones(4)
    expected[[0, 2, 3]] = compute_class_weight("balanced", classes=np.array([0, 2, 3]),
                                               y=np.array(labels))
    assert draws is None
    np.testing.assert_array_equal(weights.numpy(), expected.astype(np.float32))
    _, draws = train_mod._class_weights({"class_balance": "resample"}, ds, model,
                                        torch.device("cpu"))
    np.testing.assert_array_equal(draws.numpy(), 1.0 / np.bincount(labels)[labels])


# -- per-epoch overhead (issue 32, item 5) -------------------------------------------------
class _DropoutTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.fc(self.drop(x))


def test_an_epoch_on_the_cpu_seeds_the_cpu_generator_only(monkeypatch):
    # torch.manual_seed also queues a seeding of every accelerator backend with a formatted
    # stack (2.5 ms an epoch, most of MEAN's per-epoch overhead); the dropout masks must
    # still be those of the seed torch.manual_seed gives
    calls = []
    real = torch.manual_seed

    def counted(seed):
        calls.append(seed)
        return real(seed)

    ds = _tiny_data()
    seed_everything(0)
    a = _DropoutTiny()
    fit(a, ds, epochs=3, batch_size=8, seed=5, lr=0.05)
    monkeypatch.setattr(torch, "manual_seed", counted)
    seed_everything(0)
    b = _DropoutTiny()
    fit(b, ds, epochs=3, batch_size=8, seed=5, lr=0.05)
    assert _states_equal(a.state_dict(), b.state_dict())
    # seed_everything twice (here and fit's start); no call per epoch
    assert len(calls) == 2

