"""PSN: smoke, exception, cardinality, feature (TPU by hand), gradients (kornia's shape)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mexkit.errors import ModelInputError, ParameterError
from mexkit.models.psn.network import (
    PSN,
    PSNSpatial,
    TemporalPerceptionUnit,
    fusion_parameter_counts,
    temporal_perception,
)

torch.set_num_threads(2)


# Most tests use 4 frames per clip instead of the paper's 16 to stay fast on 2 cores;
# every layer is the same (the classifier takes n_frames x 64 values).
T = 4


def _clips(rng, b=2, t=T, scale=0.05):
    sparse = torch.from_numpy(rng.normal(scale=scale, size=(b, t, 112, 112)).astype(np.float32))
    frames = torch.from_numpy(rng.uniform(size=(b, t, 112, 112)).astype(np.float32))
    return sparse, frames


@pytest.fixture(scope="module")
def psn():
    torch.manual_seed(0)
    return PSN(4, n_frames=T)


# -- cardinality -------------------------------------------------------------------------
class TestCardinality:
    @pytest.mark.parametrize("b", [1, 2, 3])
    def test_output_shape(self, psn, rng, b):
        sparse, frames = _clips(rng, b)
        with torch.no_grad():
            out = psn.eval()(psn_sparse=sparse, psn_frames=frames)
        assert out.shape == (b, 4) and out.dtype == torch.float32
        assert torch.isfinite(out).all()

    def test_paper_size_16_frames(self, rng):
        model = PSN(4).eval()
        assert model.classifier.in_features == 16 * 64
        sparse, frames = _clips(rng, 2, t=16)
        with torch.no_grad():
            assert model(psn_sparse=sparse, psn_frames=frames).shape == (2, 4)
        with pytest.raises(ModelInputError, match=r"\(B, 16, 112, 112\)"):
            model(psn_sparse=sparse[:, :T], psn_frames=frames[:, :T])

    def test_spatial_sub_network_follows_table_1(self, rng):
        net = PSNSpatial()
        x = torch.zeros(2, 1, 112, 112)
        sizes = []
        for layer in net.features:
            x = layer(x)
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
                sizes.append(tuple(x.shape[1:]))
        assert sizes == [(96, 54, 54), (96, 27, 27), (256, 14, 14), (256, 7, 7),
                         (384, 7, 7), (256, 7, 7), (256, 7, 7), (256, 4, 4)]
        kernels = [m.kernel_size for m in net.features if isinstance(m, torch.nn.Conv2d)]
        assert kernels == [(7, 7), (5, 5), (3, 3), (3, 3), (3, 3)]
        assert net.fc.out_features == 4096

    def test_per_frame_features(self, psn, rng):
        sparse, frames = _clips(rng, 2)
        with torch.no_grad():
            assert psn.spatial_features(sparse).shape == (2, T, 4096)
            assert psn.temporal_features(frames).shape == (2, T, 4096)

    def test_float64_input_matches_float32(self, psn, rng):
        sparse, frames = _clips(rng, 1)
        psn.eval()
        with torch.no_grad():
            ref = psn(psn_sparse=sparse, psn_frames=frames)
            out = psn(psn_sparse=sparse.double(), psn_frames=frames.double())
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


# -- exceptions --------------------------------------------------------------------------
class TestExceptions:
    @pytest.mark.parametrize("shape", [(1, T, 112, 111), (1, T + 1, 112, 112), (T, 112, 112),
                                       (0, T, 112, 112)])
    def test_wrong_shape_names_expected_shape(self, psn, shape, rng):
        _, frames = _clips(rng, 1)
        with pytest.raises(ModelInputError, match=r"\(B, 4, 112, 112\)") as info:
            psn(psn_sparse=torch.zeros(shape), psn_frames=frames)
        assert "psn_sparse" in str(info.value)

    def test_missing_or_mismatched_inputs(self, psn, rng):
        sparse, frames = _clips(rng, 2)
        with pytest.raises(ModelInputError, match="psn_frames"):
            psn(psn_sparse=sparse)
        with pytest.raises(ModelInputError, match="batch size"):
            psn(psn_sparse=sparse, psn_frames=frames[:1])
        with pytest.raises(ModelInputError, match="floating"):
            psn(psn_sparse=sparse.to(torch.uint8), psn_frames=frames)

    @pytest.mark.parametrize("kw", [{"streams": "spacial"}, {"fusion": "prod"},
                                    {"hidden_size": 0}, {"n_frames": 1}])
    def test_bad_options(self, kw):
        with pytest.raises(ParameterError):
            PSN(4, **kw)

    def test_bad_class_count(self):
        with pytest.raises(ParameterError, match="n_classes"):
            PSN(1)


# -- the Temporal Perception Unit against a hand computation ------------------------------
def _tiny_tpu(tp_one=False):
    tpu = TemporalPerceptionUnit(4, 2, 2, tp_one=tp_one).double()
    with torch.no_grad():
        tpu.input_weight.weight.copy_(torch.tensor([[0.5, -0.25, 0.0, 1.0],
                                                    [0.1, 0.2, -0.3, 0.4]]))
        tpu.input_weight.bias.copy_(torch.tensor([0.05, -0.1]))
        tpu.hidden_weight.weight.copy_(torch.tensor([[0.3, -0.2], [0.7, 0.1]]))
        tpu.perception_weight.weight.copy_(torch.tensor([[1.5, -0.5], [0.25, 2.0]]))
        tpu.perception_weight.bias.copy_(torch.tensor([0.2, -0.3]))
        tpu.output_weight.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.5]]))
        tpu.output_weight.bias.copy_(torch.tensor([0.0, 0.1]))
    return tpu


def _by_hand(tpu, x, tp_one=False):
    """Eqs. 7-9 and 4 written out with numpy, one step at a time."""
    WI = tpu.input_weight.weight.detach().numpy()
    bI = tpu.input_weight.bias.detach().numpy()
    WH = tpu.hidden_weight.weight.detach().numpy()
    W = tpu.perception_weight.weight.detach().numpy()
    b = tpu.perception_weight.bias.detach().numpy()
    WO = tpu.output_weight.weight.detach().numpy()
    bO = tpu.output_weight.bias.detach().numpy()
    h = np.zeros(2)
    ys, tps = [], []
    for t in range(len(x)):
        prev = x[t - 1] if t > 0 else x[0]
        d = x[t] - prev
        tp = 1.0 if tp_one else np.sqrt(np.mean((d - d.mean()) ** 2))
        h_tilde = np.tanh(WI @ x[t] + bI + WH @ h)
        h = np.tanh(W @ (tp * h_tilde) + b)
        ys.append(np.tanh(WO @ h + bO))
        tps.append(tp)
    return np.array(ys), np.array(tps)


class TestTemporalPerceptionUnit:
    def test_tp_by_hand(self):
        x = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 1.0, -1.0],
                           [1.0, -1.0, 1.0, 3.0]]])
        # differences: [1,-1,1,-1] (mean 0, std 1); [0,0,0,4] (mean 1, std sqrt(3))
        tp = temporal_perception(x)
        torch.testing.assert_close(tp, torch.tensor([[0.0, 1.0, float(np.sqrt(3.0))]]))

    @pytest.mark.parametrize("tp_one", [False, True])
    def test_outputs_match_hand_computation(self, tp_one):
        tpu = _tiny_tpu(tp_one)
        x = np.array([[0.2, 0.4, 0.1, 0.9], [0.3, 0.1, 0.8, 0.2], [0.9, 0.9, 0.0, 0.5]])
        y, _ = tpu(torch.from_numpy(x)[None])
        want, tps = _by_hand(tpu, x, tp_one)
        assert tps[0] == (1.0 if tp_one else 0.0) and (tps[1:] > 0.1).all()
        np.testing.assert_allclose(y[0].detach().numpy(), want, rtol=1e-12, atol=1e-12)

    def test_static_clip_has_tp_zero(self):
        tpu = _tiny_tpu()
        frame = np.array([0.2, 0.4, 0.1, 0.9])
        static = torch.from_numpy(np.tile(frame, (5, 1)))[None]
        assert temporal_perception(static).abs().max() == 0
        y, h = tpu(static)
        # tp = 0 removes the input: h_t = tanh(b), y_t = tanh(W_O tanh(b) + b_O) for every t,
        # whatever the frame holds.
        b = tpu.perception_weight.bias.detach().numpy()
        WO = tpu.output_weight.weight.detach().numpy()
        bO = tpu.output_weight.bias.detach().numpy()
        for t in range(5):
            np.testing.assert_allclose(h[0, t].detach().numpy(), np.tanh(b), atol=1e-15)
            np.testing.assert_allclose(y[0, t].detach().numpy(), np.tanh(WO @ np.tanh(b) + bO),
                                       atol=1e-15)
        y2, _ = tpu(torch.from_numpy(np.tile(frame[::-1] * 3, (5, 1)))[None])
        torch.testing.assert_close(y2, y)

    def test_static_clips_look_alike_to_the_temporal_network(self, rng):
        torch.manual_seed(1)
        model = PSN(3, streams="temporal", n_frames=T).eval()
        a = torch.from_numpy(rng.uniform(size=(1, 112, 112)).astype(np.float32)).repeat(T, 1, 1)
        b = torch.from_numpy(rng.uniform(size=(1, 112, 112)).astype(np.float32)).repeat(T, 1, 1)
        moving = a.clone()
        moving[2:] += 0.1 * torch.from_numpy(rng.normal(size=(112, 112)).astype(np.float32))
        with torch.no_grad():
            out = model(psn_frames=torch.stack([a, b, moving]))
        torch.testing.assert_close(out[0], out[1])
        assert not torch.allclose(out[0], out[2])


# -- fusion module and its parameter count ------------------------------------------------
def test_fusion_parameter_counts_reproduce_the_paper(psn):
    counts = fusion_parameter_counts(psn)
    # Sec. 3.4.2: 82,240 = 4 x (256 + 1) x 80 and 20,976,640 = 64 x (4096 + 1) x 80, both
    # per row of the 80-row batch matrix; the shared weights are 1,028 and 262,208.
    assert counts == {"conv": 1028, "dense": 262208, "paper_conv": 82240,
                      "paper_dense": 20976640}
    no_conv = PSN(4, no_conv=True, n_frames=T)
    assert sum(p.numel() for p in no_conv.fuse.parameters()) == 262208
    assert fusion_parameter_counts(no_conv) == counts


# -- initialisation ----------------------------------------------------------------------
def _spatial_signal(model, rng):
    """Spread of the input-dependent part of FC 4096 over that of sparse-like frames."""
    x = torch.from_numpy(rng.normal(scale=0.3, size=(2 * T, 1, 112, 112)).astype(np.float32))
    with torch.no_grad():
        part = model.spatial(x) - model.spatial(torch.zeros_like(x[:1]))
    return float(part.std() / x.std())


def test_sparse_signal_keeps_its_scale_through_the_spatial_network(rng):
    # The sparse frames (std ~0.3 grey levels) must reach FC 4096 at their own scale, not
    # a few percent of it, or the features are mostly the biases and training stalls.
    torch.manual_seed(0)
    assert PSN(4, n_frames=T).init == "he"
    assert _spatial_signal(PSN(4, n_frames=T), rng) > 0.5
    torch.manual_seed(0)
    assert _spatial_signal(PSN(4, n_frames=T, init="torch"), rng) < 0.1   # PyTorch default
    with pytest.raises(ParameterError, match="init"):
        PSN(4, init="xavier")


def test_he_initialisation_leaves_tpu_and_classifier_alone():
    torch.manual_seed(0)
    he = PSN(4, n_frames=T)
    torch.manual_seed(0)
    default = PSN(4, n_frames=T, init="torch")
    for name, p in default.named_parameters():
        same = torch.equal(p, dict(he.named_parameters())[name])
        assert same == name.startswith(("tpu.", "classifier.")), name
    assert all(not m.bias.detach().any() for m in he.spatial.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


# -- gradients ---------------------------------------------------------------------------
def test_gradients_reach_every_parameter(rng):
    torch.manual_seed(2)
    model = PSN(4, n_frames=T).train()
    sparse, frames = _clips(rng, 2)
    loss = torch.nn.functional.cross_entropy(model(psn_sparse=sparse, psn_frames=frames),
                                             torch.tensor([0, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_tpu_gradcheck():
    tpu = _tiny_tpu()
    x = torch.tensor(np.random.default_rng(3).uniform(size=(2, 4, 4)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: tpu(v)[0], (x,))


# -- ablations ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw, fused, needs", [
    ({"streams": "spatial"}, 4096, ("psn_sparse",)),
    ({"streams": "temporal"}, 4096, ("psn_frames",)),
    ({"tp_one": True}, 4096, ("psn_sparse", "psn_frames")),
    ({"fusion": "concat"}, 8192, ("psn_sparse", "psn_frames")),
    ({"no_conv": True}, 4096, ("psn_sparse", "psn_frames")),
], ids=["spatial", "temporal", "tp1", "concat", "no-conv"])
def test_each_ablation_builds_runs_and_learns(rng, kw, fused, needs):
    torch.manual_seed(4)
    model = PSN(3, n_frames=T, **kw).train()
    assert model.fused_width == fused
    if kw.get("fusion") == "concat":
        assert model.fuse.in_channels == 512
    if kw.get("no_conv"):
        assert isinstance(model.fuse, torch.nn.Linear)
    if kw.get("tp_one"):
        assert model.tpu.tp_one
    assert (model.spatial is None) == ("psn_sparse" not in needs)
    assert (model.tpu is None) == ("psn_frames" not in needs)
    sparse, frames = _clips(rng, 1)
    inputs = {"psn_sparse": sparse, "psn_frames": frames}
    out = model(**{k: inputs[k] for k in needs})
    assert out.shape == (1, 3)
    torch.nn.functional.cross_entropy(out, torch.tensor([1])).backward()
    assert model.classifier.weight.grad.abs().sum() > 0


# -- augmentation ------------------------------------------------------------------------
def test_augment_applies_one_transform_per_clip_to_both_inputs():
    from mexkit.learn.augment import get_augmentation
    from mexkit.models import get_spec

    aug = get_augmentation(get_spec("psn").defaults.augmentation)
    ramp = torch.arange(112, dtype=torch.float32).repeat(112, 1)      # x coordinate
    frames = ramp.expand(8, T, 112, 112).clone()
    batch = {"psn_sparse": frames.clone() * 2, "psn_frames": frames.clone()}
    out = aug(batch, generator=torch.Generator().manual_seed(5))
    assert set(out) == set(batch)
    changed = 0
    for b in range(8):
        s, f = out["psn_sparse"][b], out["psn_frames"][b]
        torch.testing.assert_close(s, 2 * f)                   # the same transform for both
        torch.testing.assert_close(f, f[:1].expand_as(f))      # and for every frame
        changed += not torch.equal(f, frames[b])
    assert 0 < changed < 8
    # a flip alone reverses the ramp
    flip_only = type(aug)(max_rotation=0.0, p=1.0)
    out = flip_only({"psn_frames": frames}, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["psn_frames"], frames.flip(-1))
