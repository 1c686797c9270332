"""MERSiamC3D: SinC3D, siamese and target networks, focal loss, pairs, augmentation.

Kornia's shape: smoke, exception, cardinality (output shapes), feature
(numbers), gradients.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mexkit.errors import ModelInputError, ParameterError
from mexkit.learn.losses import alpha_from_counts, focal_loss
from mexkit.learn.protocols import loso
from mexkit.models.mersiamc3d.augment import KeyframeFlowAugment
from mexkit.models.mersiamc3d.network import INPUT_SHAPE, MERSiamC3D, SiameseC3D, SinC3D
from mexkit.models.mersiamc3d.training import (
    PairDataset,
    clip_pairs,
    count_pairs,
    epoch_pairs,
    split_pairs,
)

torch.set_num_threads(2)

SMALL = {"frames": 4, "size": 16}  # cheap geometry for most tests


def _clips(rng, b, shape=(3, 4, 16, 16)):
    return torch.from_numpy(rng.normal(size=(b, *shape)).astype(np.float32))


# -- networks ----------------------------------------------------------------------------
class TestSinC3D:
    def test_paper_geometry(self, rng):
        # 112x112: 56, 28, 14, 7, 4; time: 10 (kept by pool 1), 5, 3, 2, 1.
        assert SinC3D.output_shape(10, 112, 112) == (256, 1, 4, 4)
        net = SinC3D(3)
        assert [c.out_channels for c in net.convs] == [32, 64, 128, 128, 256]
        assert all(c.kernel_size == (3, 3, 3) and c.stride == (1, 1, 1) for c in net.convs)
        assert net.pools[0].kernel_size == (1, 2, 2)
        assert all(p.kernel_size == 2 for p in net.pools[1:])
        with torch.no_grad():
            out = net(_clips(rng, 1, INPUT_SHAPE))
        assert out.shape == (1, 256, 1, 4, 4)
        assert bool((out >= 0).all())  # ReLU before each pool

    def test_first_pool_keeps_time(self, rng):
        net = SinC3D(3)
        x = _clips(rng, 1, (3, 6, 16, 16))
        with torch.no_grad():
            y = net.pools[0](F.relu(net.convs[0](x)))
        assert y.shape == (1, 32, 6, 8, 8)


class TestMERSiamC3D:
    @pytest.mark.parametrize("batch", [1, 2, 5])
    def test_cardinality(self, rng, batch):
        model = MERSiamC3D(3, **SMALL).eval()
        assert model(_clips(rng, batch)).shape == (batch, 3)
        assert MERSiamC3D(5, **SMALL).eval()(_clips(rng, batch)).shape == (batch, 5)

    @pytest.mark.parametrize("batch", [1, 2])
    def test_paper_input(self, rng, batch):
        model = MERSiamC3D(3).eval()
        with torch.no_grad():
            assert model(_clips(rng, batch, INPUT_SHAPE)).shape == (batch, 3)

    def test_reduced_resolution_takes_the_paper_input(self, rng):
        model = MERSiamC3D(3, resolution=16).eval()
        assert model.dense.in_features == 256
        with torch.no_grad():
            assert model(_clips(rng, 2, INPUT_SHAPE)).shape == (2, 3)

    def test_float64_input_matches_float32(self, rng):
        model = MERSiamC3D(3, **SMALL).eval()
        x = _clips(rng, 2)
        torch.testing.assert_close(model(x.double()), model(x), rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("shape", [(2, 3, 10, 112, 111), (2, 2, 10, 112, 112),
                                       (3, 10, 112, 112), (0, 3, 10, 112, 112)])
    def test_wrong_shape_names_expected_shape(self, shape):
        with pytest.raises(ModelInputError, match=r"\(B, 3, 10, 112, 112\)") as info:
            MERSiamC3D(3)(torch.zeros(shape))
        assert "keyframe_flow" in str(info.value)

    @pytest.mark.parametrize("kw", [{"freeze": 6}, {"freeze": -1}, {"size": 8},
                                    {"resolution": 200}, {"dropout": 1.0}, {"dense": 0}])
    def test_bad_settings(self, kw):
        with pytest.raises(ParameterError):
            MERSiamC3D(3, **kw)

    def test_freeze_counts(self):
        model = MERSiamC3D(3, **SMALL)
        assert model.freeze == 2
        frozen = model.freeze_convs()
        assert frozen == ["features.convs.0.weight", "features.convs.0.bias",
                          "features.convs.1.weight", "features.convs.1.bias"]
        assert model.freeze_convs(0) == []
        assert all(p.requires_grad for p in model.parameters())


class TestSiamese:
    def test_branches_share_weights(self, rng):
        model = MERSiamC3D(3, **SMALL)
        siamese = SiameseC3D(model.features, **SMALL)
        assert siamese.features is model.features
        # each SinC3D weight appears once among the siamese network's parameters
        ids = [id(p) for p in siamese.parameters()]
        assert len(ids) == len(set(ids))
        assert {id(p) for p in model.features.parameters()} <= set(ids)
        a, b = _clips(rng, 3), _clips(rng, 3)
        with torch.no_grad():
            ab, ba = siamese(a, b), siamese(b, a)
            same = siamese(a, a)
        torch.testing.assert_close(ab, ba)  # one branch: symmetric in the pair
        torch.testing.assert_close(same[:, 1], siamese.head.bias.expand(3).detach())
        # a change to the target network's convolutions changes the siamese output
        with torch.no_grad():
            model.features.convs[0].weight.mul_(2.0)
            assert not torch.allclose(siamese(a, b), ab)

    @pytest.mark.parametrize("batch", [1, 4])
    def test_cardinality_and_bce(self, rng, batch):
        siamese = SiameseC3D(SinC3D(3), **SMALL)
        a, b = _clips(rng, batch), _clips(rng, batch)
        out = siamese(a, b)
        assert out.shape == (batch, 2)
        s = siamese.similarity_logit(a, b)
        assert s.shape == (batch,)
        torch.testing.assert_close(out.softmax(1)[:, 1], torch.sigmoid(s))
        target = torch.tensor([1, 0, 1, 0][:batch])
        torch.testing.assert_close(
            F.cross_entropy(out, target),
            F.binary_cross_entropy_with_logits(s, target.float()))

    def test_close_embeddings_can_mean_same(self, rng):
        # eq. 8 as printed is never below 0.5; the weighted form starts with negative
        # weights and a positive bias: close embeddings say "same", distant ones do not.
        siamese = SiameseC3D(SinC3D(3), **SMALL)
        f1 = torch.zeros(1, siamese.dense.out_features)
        with torch.no_grad():
            near = torch.sigmoid(siamese.head(f1, f1 + 0.01))
            far = torch.sigmoid(siamese.head(f1, f1 + 10.0))
        assert float(near) > 0.5 > float(far)

    def test_mismatched_sides(self, rng):
        siamese = SiameseC3D(SinC3D(3), **SMALL)
        with pytest.raises(ParameterError, match="batch size"):
            siamese(_clips(rng, 2), _clips(rng, 3))
        with pytest.raises(ModelInputError, match="second"):
            siamese(_clips(rng, 2), _clips(rng, 2, (3, 5, 16, 16)))
        with pytest.raises(ParameterError, match="SinC3D"):
            SiameseC3D(torch.nn.Linear(2, 2))


class TestGradients:
    def test_target_gradients_reach_trainable_and_spare_frozen(self, rng):
        torch.manual_seed(0)
        model = MERSiamC3D(3, dropout=0.0, **SMALL)
        frozen = set(model.freeze_convs(2))
        x = _clips(rng, 4)
        loss = focal_loss(model(x), torch.tensor([0, 1, 2, 1]))
        loss.backward()
        for name, p in model.named_parameters():
            if name in frozen:
                assert not p.requires_grad and p.grad is None, name
            else:
                assert p.grad is not None and float(p.grad.abs().sum()) > 0, name

    def test_siamese_gradients_reach_every_parameter(self, rng):
        torch.manual_seed(0)
        siamese = SiameseC3D(SinC3D(3), **SMALL)
        out = siamese(_clips(rng, 4), _clips(rng, 4))
        F.cross_entropy(out, torch.tensor([1, 0, 1, 0])).backward()
        for name, p in siamese.named_parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name

    def test_gradcheck_head(self):
        head = SiameseHead_double()
        f1 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
        f2 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(head, (f1, f2))


def SiameseHead_double():
    from mexkit.models.mersiamc3d.network import SiameseHead

    return SiameseHead(5).double()


# -- focal loss -----------------------------------------------------------------------------
class TestFocalLoss:
    def test_gamma_zero_alpha_one_is_cross_entropy(self, rng):
        logits = torch.from_numpy(rng.normal(size=(7, 4)) * 3).float()
        target = torch.from_numpy(rng.integers(0, 4, 7))
        ce = F.cross_entropy(logits, target)
        torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), ce)
        torch.testing.assert_close(focal_loss(logits, target, gamma=0.0, alpha=1.0), ce)
        torch.testing.assert_close(
            focal_loss(logits, target, gamma=0.0, alpha=[1.0] * 4, reduction="weighted"), ce)

    def test_gamma_zero_with_alpha_is_weighted_cross_entropy(self, rng):
        logits = torch.from_numpy(rng.normal(size=(9, 3))).float()
        target = torch.from_numpy(rng.integers(0, 3, 9))
        w = torch.tensor([1.0, 3.0, 0.5])
        torch.testing.assert_close(
            focal_loss(logits, target, gamma=0.0, alpha=w, reduction="weighted"),
            F.cross_entropy(logits, target, weight=w))

    def test_value_by_hand(self):
        logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        target = torch.tensor([0, 2])
        p = torch.softmax(logits, 1)[[0, 1], [0, 2]]
        alpha = torch.tensor([0.25, 1.0, 4.0])
        want = -alpha[target] * (1 - p) ** 2 * torch.log(p)
        torch.testing.assert_close(
            focal_loss(logits, target, alpha=alpha, gamma=2.0, reduction="none"), want)
        torch.testing.assert_close(focal_loss(logits, target, alpha=alpha), want.mean())
        torch.testing.assert_close(
            focal_loss(logits, target, alpha=alpha, reduction="sum"), want.sum())

    def test_focusing_down_weights_easy_samples(self):
        easy = torch.tensor([[6.0, 0.0, 0.0]])
        hard = torch.tensor([[0.5, 0.0, 0.0]])
        t = torch.tensor([0])
        ratio_easy = focal_loss(easy, t, gamma=2.0) / F.cross_entropy(easy, t)
        ratio_hard = focal_loss(hard, t, gamma=2.0) / F.cross_entropy(hard, t)
        assert float(ratio_easy) < 0.01 < float(ratio_hard)

    @pytest.mark.parametrize("kw", [{"gamma": -1.0}, {"alpha": [1.0, 2.0]},
                                    {"alpha": [1.0, -1.0, 1.0]}, {"reduction": "avg"}])
    def test_bad_arguments(self, kw):
        with pytest.raises(ParameterError):
            focal_loss(torch.zeros(2, 3), torch.tensor([0, 1]), **kw)

    def test_bad_targets(self):
        with pytest.raises(ParameterError, match=r"\[0, 3\)"):
            focal_loss(torch.zeros(2, 3), torch.tensor([0, 3]))

    def test_alpha_from_counts(self):
        # largest class -> 1, smallest -> the largest/smallest ratio (Sec. 5.2); absent -> 1
        np.testing.assert_allclose(alpha_from_counts([0] * 8 + [1] * 2 + [2] * 4, 4),
                                   [1.0, 4.0, 2.0, 1.0])
        with pytest.raises(ParameterError):
            alpha_from_counts([0, 5], 3)


# -- pairs (eq. 7) --------------------------------------------------------------------------
class TestPairs:
    def test_counts_follow_eq7(self, rng):
        y = rng.integers(0, 3, 23)
        same, different, total = count_pairs(y)
        n = len(y)
        counts = np.bincount(y)
        m = sum(c * (c - 1) + c * (n - c) for c in counts) / 2  # eq. 7 term by term
        assert total == m == n * (n - 1) / 2
        pairs = clip_pairs(np.arange(n), y)
        assert len(pairs) == total
        assert int(pairs[:, 2].sum()) == same and int((pairs[:, 2] == 0).sum()) == different
        assert bool((pairs[:, 0] < pairs[:, 1]).all())
        np.testing.assert_array_equal(pairs[:, 2], y[pairs[:, 0]] == y[pairs[:, 1]])

    def test_pairs_never_cross_the_loso_split(self, rng):
        subjects = np.repeat([f"s{i}" for i in range(5)], 6)
        labels = rng.integers(0, 3, subjects.size)
        for fold in loso(list(subjects)):
            pairs = clip_pairs(fold.train, labels)
            used = set(pairs[:, :2].ravel().tolist())
            assert used == set(np.asarray(fold.train).tolist())
            assert not used & set(np.asarray(fold.test).tolist())
            train, held = split_pairs(pairs, seed=3)
            for part in (train, held, epoch_pairs(train, epoch=2, max_pairs=10)):
                assert not set(part[:, :2].ravel().tolist()) & set(np.asarray(fold.test))

    def test_split_is_90_10_and_disjoint(self, rng):
        pairs = clip_pairs(np.arange(20), rng.integers(0, 3, 20))
        train, held = split_pairs(pairs, seed=1)
        assert len(held) == 19 and len(train) == 171  # 190 pairs
        rows = {tuple(r) for r in train} | {tuple(r) for r in held}
        assert len(rows) == 190
        again = split_pairs(pairs, seed=1)
        np.testing.assert_array_equal(again[1], held)

    def test_epoch_sampling(self, rng):
        y = np.repeat([0, 1, 2], 20)
        pairs = clip_pairs(np.arange(60), y)  # 1770 pairs, 570 same (32 %)
        assert epoch_pairs(pairs, epoch=0, max_pairs=0) is pairs
        e0 = epoch_pairs(pairs, epoch=0, seed=5, max_pairs=600)
        e1 = epoch_pairs(pairs, epoch=1, seed=5, max_pairs=600)
        assert len(e0) == len(e1) == 600
        assert not np.array_equal(e0, e1)
        np.testing.assert_array_equal(e0, epoch_pairs(pairs, epoch=0, seed=5, max_pairs=600))
        assert abs(e0[:, 2].mean() - 570 / 1770) < 0.06  # the ratio is kept
        bal = epoch_pairs(pairs, epoch=0, seed=5, max_pairs=600, balance=True)
        assert int(bal[:, 2].sum()) == 300

    def test_pair_dataset_items(self):
        class Clips(torch.utils.data.Dataset):
            def __len__(self):
                return 4

            def __getitem__(self, i):
                return {"keyframe_flow": torch.full((1,), float(i))}, i % 2

        ds = PairDataset(Clips(), clip_pairs([0, 1, 3], [0, 1, 0, 1]), "keyframe_flow")
        assert len(ds) == 3 and ds.labels == [0, 0, 1]
        inputs, same = ds[2]  # pair (1, 3), both class 1
        assert same == 1 and float(inputs["first"]) == 1.0 and float(inputs["second"]) == 3.0

    def test_bad_indices(self):
        with pytest.raises(ParameterError, match="repeat"):
            clip_pairs([1, 1, 2], [0, 1, 0])
        with pytest.raises(ParameterError, match="two"):
            clip_pairs([1], [0, 1])


# -- augmentation ------------------------------------------------------------------------
class TestAugment:
    def test_identity_variant(self, rng):
        aug = KeyframeFlowAugment()
        x = _clips(rng, 1, (3, 5, 16, 16))[0]
        assert torch.equal(aug.clip(x, crop=0, place=0, drop=0), x)

    @pytest.mark.parametrize("place", range(9))
    def test_crop_rescales_flow(self, place):
        aug = KeyframeFlowAugment()
        x = torch.zeros(3, 2, 20, 20)
        x[0], x[1] = 1.0, -2.0
        x[2] = torch.sqrt(x[0] ** 2 + x[1] ** 2)
        y = aug.clip(x, crop=4, place=place, drop=0)
        assert y.shape == x.shape
        torch.testing.assert_close(y[0], torch.full_like(y[0], 20 / 16))
        torch.testing.assert_close(y[1], torch.full_like(y[1], -2 * 20 / 16))
        torch.testing.assert_close(y[2], torch.sqrt(y[0] ** 2 + y[1] ** 2))

    def test_crop_places(self):
        aug = KeyframeFlowAugment(magnitude_channel=None)
        x = torch.zeros(2, 1, 12, 12)
        x[:, :, 0, 0] = 5.0  # a mark in the upper-left corner
        kept = aug.clip(x, crop=2, place=0, drop=0)       # upper-left window keeps it
        lost = aug.clip(x, crop=2, place=8, drop=0)       # lower-right window cuts it
        assert float(kept[0].abs().max()) > 0 and float(lost.abs().max()) == 0

    def test_frame_drop(self):
        aug = KeyframeFlowAugment()
        x = torch.arange(5.0).view(1, 5, 1, 1).expand(3, 5, 4, 4).clone()
        t = [aug.clip(x, crop=0, place=0, drop=d)[0, :, 0, 0].tolist() for d in range(4)]
        assert t == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 4], [0, 2, 3, 4, 4], [2, 3, 4, 4, 4]]

    def test_batches_seeded_and_keyed(self, rng):
        aug = KeyframeFlowAugment()
        x = _clips(rng, 6, (3, 4, 16, 16))
        batch = {"first": x, "second": x.clone(), "other": x}
        a = aug(batch, generator=torch.Generator().manual_seed(1))
        b = aug(batch, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a["first"], b["first"]) and a["other"] is x
        assert not torch.equal(a["first"], a["second"])  # sides drawn independently
        assert aug(x, generator=torch.Generator().manual_seed(1)).shape == x.shape
        with pytest.raises(ParameterError, match="B, C, T, H, W"):
            aug(x[0], generator=torch.Generator())


# -- registry entry and input ------------------------------------------------------------
class TestRegistry:
    def test_paper_defaults_and_options(self):
        from mexkit.models import get_model, get_spec
        from mexkit.models.mersiamc3d.training import fit_fold

        spec = get_spec("mersiamc3d")
        d = spec.defaults
        assert (d.optimizer, d.lr, d.momentum, d.epochs, d.loss) == ("sgd", 0.004, 0.9, 100,
                                                                     "focal")
        assert dict(d.schedule) == {"kind": "step", "step_size": 10, "gamma": 0.1}
        assert spec.input_names == ("keyframe_flow",)
        assert {o.name for o in spec.options} >= {"no-prior", "freeze", "pairs-per-epoch",
                                                  "prior-epochs", "resolution"}
        assert spec.trainer is fit_fold
        model = get_model("mersiamc3d", 3, freeze=3, resolution=16)
        assert model.freeze == 3 and model.resolution == 16

    def test_keyframe_flow_array(self, rng):
        from mexkit.models.mersiamc3d.inputs import keyframe_flow_array

        flow = rng.normal(size=(10, 2, 112, 112)).astype(np.float32)
        x = keyframe_flow_array(flow)
        assert x.shape == (3, 10, 112, 112) and x.dtype == np.float32
        np.testing.assert_array_equal(x[0], flow[:, 0])
        np.testing.assert_array_equal(x[1], flow[:, 1])
        np.testing.assert_allclose(x[2], np.hypot(flow[:, 0], flow[:, 1]), rtol=1e-6)
        # a 56x56 crop's flow: resized and its vectors doubled
        const = np.zeros((10, 2, 56, 56), np.float32)
        const[:, 0], const[:, 1] = 0.5, -0.25
        y = keyframe_flow_array(const, magnitude=False)
        assert y.shape == (2, 10, 112, 112)
        np.testing.assert_allclose(y[0], 1.0, rtol=1e-6)
        np.testing.assert_allclose(y[1], -0.5, rtol=1e-6)
