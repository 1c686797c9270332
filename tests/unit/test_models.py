"""Models: smoke, exception, cardinality, parameter counts, gradients (kornia's shape)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from mexkit.errors import ModelInputError, ParameterError
from mexkit.models import (
    ModelSpec,
    count_parameters,
    get_model,
    get_spec,
    list_models,
    register_model,
)
from mexkit.models._nn import BasicBlock
from mexkit.models.atnet.network import ATNet, ResNet10
from mexkit.models.mean.network import MEAN

torch.set_num_threads(2)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def _regions(rng, b=2):
    return torch.from_numpy(rng.normal(size=(b, 3, 42, 42)).astype(np.float32))


# -- MEAN -------------------------------------------------------------------------------
class TestMEAN:
    def test_smoke_and_cardinality(self, rng):
        model = MEAN(3).eval()
        x = _regions(rng, 5)
        assert model(x).shape == (5, 3)
        assert model(x, head="spotting").shape == (5,)
        spot, logits = model.forward_both(x)
        assert spot.shape == (5,) and logits.shape == (5, 3)
        assert model.shared(x).shape == (5, 14, 14, 14)
        assert MEAN(5).eval()(x[:1]).shape == (1, 5)

    def test_float64_input_matches_float32(self, rng, dtype):
        model = MEAN(3).eval()
        x = _regions(rng, 3)
        ref = model(x)
        out = model(x.to(dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("shape", [(2, 3, 42, 41), (2, 2, 42, 42), (3, 42, 42),
                                       (0, 3, 42, 42)])
    def test_wrong_shape_names_expected_shape(self, shape):
        with pytest.raises(ModelInputError, match=r"\(B, 3, 42, 42\)") as info:
            MEAN(3)(torch.zeros(shape))
        assert "mean_regions" in str(info.value)

    def test_non_float_or_non_tensor_input(self):
        with pytest.raises(ModelInputError, match="floating"):
            MEAN(3)(torch.zeros((1, 3, 42, 42), dtype=torch.uint8))
        with pytest.raises(ModelInputError, match="torch.Tensor"):
            MEAN(3)(np.zeros((1, 3, 42, 42), np.float32))

    def test_unknown_head(self, rng):
        with pytest.raises(ParameterError, match="'head'"):
            MEAN(3, head="spot")
        with pytest.raises(ParameterError, match="'head'"):
            MEAN(3)(_regions(rng), head="both")

    def test_parameter_count_is_the_papers(self):
        # Paper, Sec. 4.3: "only 7608 parameters" for the 3-class network, counted by
        # Keras (moving mean and variance of the 3 + 3 + 8 batch-norm channels included):
        # streams 78+12 + 78+12 + 208+32 = 420; spotting head 2808 + 393;
        # recognition head 2808 + 1179; total 7608.
        model = MEAN(3)
        assert count_parameters(model, keras_style=True) == 7608
        spec = get_spec("mean")
        assert spec.paper_parameter_count(model) == spec.paper_reported[3] == 7608
        # PyTorch's own count leaves out the 2 x 14 moving statistics.
        assert count_parameters(model, keras_style=False) == 7608 - 28
        for n in (2, 4, 5, 7):
            assert count_parameters(MEAN(n)) == 6429 + 393 * n

    def test_freeze_shared_keeps_batchnorm_in_inference_mode(self, rng):
        model = MEAN(3).freeze_shared()
        assert model.shared_frozen
        assert all(not p.requires_grad for p in model.streams.parameters())
        assert all(p.requires_grad for p in model.recog_head.parameters())
        model.train()
        before = {k: v.clone() for k, v in model.streams.state_dict().items()}
        model(_regions(rng, 4) * 5 + 3)  # a training-mode pass with very different stats
        after = model.streams.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        # The trunk's trainable weights (convs 78 + 78 + 208, BN affine 6 + 6 + 16 = 392)
        # drop out of the trainable count.
        assert count_parameters(model, trainable_only=True) == 7580 - 392
        model.freeze_shared(False)
        assert all(p.requires_grad for p in model.streams.parameters())

    def test_regularization_follows_active_head_and_freezing(self):
        model = MEAN(3, l2_stream=1e-3, l2_head=0.1)
        streams = sum(1e-3 * s[0].weight.pow(2).sum() for s in model.streams)
        recog = 0.1 * model.recog_head[0].weight.pow(2).sum()
        spot = 0.1 * model.spot_head[0].weight.pow(2).sum()
        torch.testing.assert_close(model.regularization_loss(), streams + recog)
        model.head = "spotting"
        torch.testing.assert_close(model.regularization_loss(), streams + spot)
        model.head = "recognition"
        model.freeze_shared()
        torch.testing.assert_close(model.regularization_loss(), recog)

    def test_gradcheck_stream_kernel(self, rng):
        model = MEAN(3).double().eval()
        x = _regions(rng, 2).double()
        weight = model.streams[0][0].weight.detach().clone().requires_grad_(True)

        def logits(w):
            return torch.func.functional_call(model, {"streams.0.0.weight": w}, (x,))

        assert torch.autograd.gradcheck(logits, (weight,), eps=1e-6, atol=1e-5,
                                        fast_mode=True)


# -- ATNet ------------------------------------------------------------------------------
def _atnet_inputs(rng, b=2, size=64, t=8, d=16):
    apex = torch.from_numpy(rng.normal(size=(b, 3, size, size)).astype(np.float32))
    dm = torch.from_numpy(rng.normal(size=(b, t, d)).astype(np.float32))
    return apex, dm


class TestATNet:
    def test_smoke_default_sizes(self, rng):
        model = ATNet(3).eval()
        apex, dm = _atnet_inputs(rng, b=1, size=224, t=64, d=128)
        with torch.inference_mode():
            out = model(apex, dm)
        assert out.shape == (1, 3)
        assert torch.isfinite(out).all()

    @pytest.mark.parametrize("streams", ["both", "spatial", "temporal"])
    def test_cardinality_and_variants(self, rng, streams):
        model = ATNet(4, streams=streams, image_size=64, seq_len=8, feature_dim=16,
                      hidden_size=32).eval()
        apex, dm = _atnet_inputs(rng, b=3)
        kwargs = {"both": dict(apex_rgb=apex, direction_magnitude=dm),
                  "spatial": dict(apex_rgb=apex),
                  "temporal": dict(direction_magnitude=dm)}[streams]
        assert model(**kwargs).shape == (3, 4)
        width = {"both": 512 + 32, "spatial": 512, "temporal": 32}[streams]
        assert model.classifier.in_features == width

    def test_stream_features_are_unit_length(self, rng):
        model = ATNet(3, image_size=64, seq_len=8, feature_dim=16).eval()
        apex, dm = _atnet_inputs(rng)
        for feats in (model.spatial_features(apex * 100), model.temporal_features(dm * 100)):
            torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))

    def test_temporal_pool_mean_uses_all_steps(self, rng):
        # With 'last' the output is the final hidden state; with 'mean' an edit to the
        # final step moves the feature by about 1/T of what it does with 'last'.
        torch.manual_seed(0)
        last = ATNet(3, streams="temporal", seq_len=8, feature_dim=16, hidden_size=32).eval()
        mean = ATNet(3, streams="temporal", seq_len=8, feature_dim=16, hidden_size=32,
                     temporal_pool="mean").eval()
        mean.load_state_dict(last.state_dict())
        _, dm = _atnet_inputs(rng)
        edited = dm.clone()
        edited[:, -1] += 3.0
        d_last = (last.temporal_features(edited) - last.temporal_features(dm)).norm()
        d_mean = (mean.temporal_features(edited) - mean.temporal_features(dm)).norm()
        assert d_mean < d_last / 2

    def test_wrong_inputs(self, rng):
        model = ATNet(3)
        apex, dm = _atnet_inputs(rng, b=1, size=224, t=64, d=128)
        with pytest.raises(ModelInputError, match=r"\(B, 3, 224, 224\)"):
            model(apex[:, :, :200], dm)
        with pytest.raises(ModelInputError, match=r"\(B, 64, 128\)"):
            model(apex, dm[:, :, :64])
        with pytest.raises(ModelInputError, match="direction_magnitude.*not given"):
            model(apex_rgb=apex)
        with pytest.raises(ModelInputError, match="batch size"):
            model(apex, torch.cat([dm, dm]))
        with pytest.raises(ParameterError, match="'streams'"):
            ATNet(3, streams="fusion")

    def test_parameter_counts_by_hand(self):
        # ResNet-10 (no conv biases): stem 7*7*3*64 + BN 2*64 = 9536;
        # block 64: 2 * 3*3*64*64 + 2 BN*64*2 = 73984;
        # block 128: 3*3*64*128 + 3*3*128*128 + 64*128 (shortcut) + 3 BN * 2*128 = 230144;
        # block 256: 294912 + 589824 + 32768 + 1536 = 919040;
        # block 512: 1179648 + 2359296 + 131072 + 3072 = 3673088;  total 4905792.
        resnet = ResNet10()
        assert count_parameters(resnet, keras_style=False) == 4_905_792
        # Keras-style adds the BN moving statistics (as many again as BN weights+biases).
        bn = 2 * (64 + 64 + 64 + 128 + 128 + 128 + 256 + 256 + 256 + 512 + 512 + 512)
        assert count_parameters(resnet, keras_style=True) == 4_905_792 + bn
        # LSTM 512 units over 128 inputs, 2 layers, one bias vector per layer:
        # 4*512*(128+512+1) + 4*512*(512+512+1) = 1312768 + 2099200.
        model = ATNet(3)
        lstm_keras = 4 * 512 * (128 + 512 + 1) + 4 * 512 * (512 + 512 + 1)
        assert count_parameters(model.temporal, keras_style=True) == lstm_keras
        assert count_parameters(model.temporal, keras_style=False) == lstm_keras + 2 * 4 * 512
        assert count_parameters(model, keras_style=True) == (
            4_905_792 + bn + lstm_keras + 1024 * 3 + 3)

    def test_gradcheck_basic_block_and_lstm(self, rng):
        block = BasicBlock(2, 3, stride=2).double().eval()
        x = torch.from_numpy(rng.normal(size=(1, 2, 6, 6))).requires_grad_(True)
        assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
        model = ATNet(2, streams="temporal", seq_len=3, feature_dim=4,
                      hidden_size=5).double().eval()
        dm = torch.from_numpy(rng.normal(size=(2, 3, 4))).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda d: model(direction_magnitude=d), (dm,),
                                        eps=1e-6, atol=1e-5)


# -- registry -----------------------------------------------------------------------------
class TestRegistry:
    def test_builtin_models_and_inputs(self):
        names = [s.name for s in list_models()]
        assert {"mean", "atnet", "atnet-spatial", "atnet-temporal"} <= set(names)
        mean = get_spec("mean")
        assert [(i.name, i.shape) for i in mean.inputs] == [("mean_regions", (3, 42, 42))]
        from mexkit.models.inputs import get_input

        assert "--features mean" in get_input(mean.inputs[0].name).produced_by
        atnet = get_spec("atnet")
        assert [(i.name, i.shape) for i in atnet.inputs] == [
            ("apex_rgb", (3, 224, 224)), ("direction_magnitude", (64, 128))]
        assert get_spec("atnet-temporal").input_names == ("direction_magnitude",)

    def test_input_names_are_forward_keywords(self):
        for spec in list_models():
            model = spec.constructor(3)
            params = inspect.signature(model.forward).parameters
            assert set(spec.input_names) <= set(params), spec.name
            assert getattr(model, "registry_name", None) == spec.name

    def test_paper_defaults(self):
        mean = get_spec("mean")
        assert (mean.defaults.optimizer, mean.defaults.lr) == ("adam", 5e-4)
        assert mean.pretrain.loss == "mse" and mean.pretrain.epochs == 200
        assert mean.defaults.epochs == 800 and mean.defaults.augmentation is None
        at = get_spec("atnet").defaults
        assert (at.optimizer, at.lr, at.momentum, at.weight_decay, at.epochs) == (
            "sgd", 0.01, 0.9, 5e-6, 50)
        assert dict(at.schedule) == {"kind": "step", "step_size": 10, "gamma": 0.1}
        assert at.augmentation == "atnet"

    @pytest.mark.parametrize("name", ["mean", "atnet", "atnet-spatial", "atnet-temporal"])
    def test_each_model_trains_with_its_paper_defaults(self, name):
        # The paper settings of every registered model must run as they are: one epoch on
        # four random samples of the declared input shapes (a temporal-only ATNet once got
        # the spatial stream's image augmentation and failed on its missing image).
        from mexkit.learn.train import fit
        from mexkit.models import paper_defaults

        spec = get_spec(name)
        g = torch.Generator().manual_seed(0)
        data = [({i.name: torch.rand(i.shape, generator=g) for i in spec.inputs}, k % 3)
                for k in range(4)]
        kw = paper_defaults(name)
        kw.update(epochs=1, batch_size=2)
        history = fit(get_model(name, 3), data, **kw)
        assert len(history["epochs"]) == 1 and np.isfinite(history["epochs"][0]["loss"])
        assert (kw["augment"] is None) == (name in ("mean", "atnet-temporal"))

    def test_get_model(self):
        model = get_model("atnet-spatial", 5, image_size=64)
        assert isinstance(model, ATNet) and model.streams == "spatial"
        assert model.classifier.out_features == 5
        with pytest.raises(ParameterError, match="Allowed values are"):
            get_model("meam", 3)
        with pytest.raises(ParameterError, match="n_classes"):
            get_model("mean", 1)
        with pytest.raises(ParameterError, match="streams"):
            get_model("atnet-spatial", 3, streams="temporal")

    def test_register_refuses_silent_replacement(self):
        spec = get_spec("mean")
        clone = ModelSpec(name="mean", constructor=spec.constructor, inputs=spec.inputs,
                          defaults=spec.defaults,
                          paper_parameter_count=spec.paper_parameter_count,
                          reference=spec.reference)
        with pytest.raises(ParameterError, match="already registered"):
            register_model(clone)
        assert register_model(spec) is spec  # re-registering the same spec is harmless
