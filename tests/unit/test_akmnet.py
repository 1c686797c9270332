"""AKMNet: smoke, exception, cardinality, feature and gradient tests (kornia's shape)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mexkit.errors import ModelInputError, ParameterError
from mexkit.models.akmnet.network import (
    LAMBDA_GS,
    LAMBDA_MMM,
    MARGIN_C,
    AKMNet,
    AKMResNet18,
    PixelBiGRU,
    gs_mmm_loss,
    mine_key_frames,
)

torch.set_num_threads(2)
SIZE = 32  # 1x1 feature maps: fast on a CPU; the 128 / 4x4 case is tested once


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def _clips(rng, b, t, size=SIZE):
    return torch.from_numpy(rng.normal(size=(b, t, 3, size, size)).astype(np.float32))


_MODELS: dict = {}


def _model(**kw):
    """One shared model per option set (built once: 11 M parameters), in eval mode."""
    key = tuple(sorted(kw.items()))
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = AKMNet(4, image_size=SIZE, **kw)
    return _MODELS[key].eval()


def _fresh_model(**kw):
    torch.manual_seed(0)
    return AKMNet(4, image_size=SIZE, **kw)


def _pad(clips):
    """Pad a list of (T_i, 3, H, W) clips with garbage; return clip batch and mask."""
    t = max(c.shape[0] for c in clips)
    batch = torch.full((len(clips), t) + tuple(clips[0].shape[1:]), 123.0)
    mask = torch.zeros((len(clips), t), dtype=torch.bool)
    for i, c in enumerate(clips):
        batch[i, :c.shape[0]] = c
        mask[i, :c.shape[0]] = True
    return batch, mask


# -- paper constants ------------------------------------------------------------------------
def test_loss_weights_are_the_papers():
    # Sec. IV-B: lambda_1 = 0.1, lambda_2 = 1; Sec. III-B: C = 2.
    assert (LAMBDA_GS, LAMBDA_MMM, MARGIN_C) == (0.1, 1.0, 2.0)


# -- cardinality ------------------------------------------------------------------------------
def test_backbone_is_table_ii():
    net = AKMResNet18().eval()
    x = torch.zeros(1, 3, 128, 128)
    assert net.conv1.kernel_size == (5, 5) and net.conv1.out_channels == 64
    shapes = []
    h = net.pool(net.bn1(net.conv1(x)))
    shapes.append(tuple(net.bn1(net.conv1(x)).shape[1:]))
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(64, 64, 64), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]


def test_paper_size_output():
    model = AKMNet(4).eval()
    assert model.classifier.in_features == 64 * 4 * 4
    assert model(torch.zeros(1, 2, 3, 128, 128)).shape == (1, 4)


@pytest.mark.parametrize(("b", "t"), [(1, 1), (1, 5), (3, 2), (2, 9)])
def test_output_shapes(rng, b, t):
    model = _model()
    assert model(_clips(rng, b, t)).shape == (b, 4)
    extras = model.predict_extras(magnified_clip=_clips(rng, b, t))
    assert len(extras["key_frames"]) == b and len(extras["beta"][0]) == t


def test_float64_input(rng, dtype):
    model = _model()
    x = _clips(rng, 2, 3)
    torch.testing.assert_close(model(x.to(dtype)), model(x), rtol=1e-5, atol=1e-5)


def test_pixel_gru_output():
    gru = PixelBiGRU(8, 4, 2)
    x = torch.randn(3, 5, 8, 2, 2)
    out = gru(x, torch.tensor([5, 1, 3]))
    assert out.shape == (3, 8, 2, 2)


# -- exceptions -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 3, 32, 16), (2, 3, 32, 32), (2, 0, 3, 32, 32),
                                   (1, 2, 3, 16, 16)])
def test_wrong_shape_names_expected_shape(shape):
    with pytest.raises(ModelInputError, match=r"magnified_clip.*\(B, T, 3, S, S\)"):
        _model()(torch.zeros(shape))


def test_other_frame_side_is_resized(rng):
    model = _model()
    x = _clips(rng, 2, 3, size=64)
    small = torch.nn.functional.interpolate(x.flatten(0, 1), size=(SIZE, SIZE),
                                            mode="bilinear", antialias=True)
    torch.testing.assert_close(model(x), model(small.reshape(2, 3, 3, SIZE, SIZE)))


def test_bad_mask_and_empty_clip():
    model = _model()
    with pytest.raises(ModelInputError, match="magnified_clip_mask"):
        model(torch.zeros(2, 3, 3, SIZE, SIZE), torch.ones(2, 4, dtype=torch.bool))
    mask = torch.tensor([[True, True, False], [False, False, False]])
    with pytest.raises(ModelInputError, match=r"clips \[1\]"):
        model(torch.zeros(2, 3, 3, SIZE, SIZE), mask)


def test_bad_options():
    with pytest.raises(ParameterError, match="image_size"):
        AKMNet(4, image_size=100)
    with pytest.raises(TypeError):
        AKMNet(4, weights="x.safetensors")  # a trainer option, not the network's


# -- padding --------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"no_attention": True}, {"no_sparse": True}])
def test_padded_equals_unpadded(rng, options):
    model = _model(**options)
    clips = [_clips(rng, 1, t)[0] for t in (6, 1, 3, 9)]
    batch, mask = _pad(clips)
    together = model(batch, mask)
    extras = model.predict_extras(magnified_clip=batch, magnified_clip_mask=mask)
    for i, c in enumerate(clips):
        alone = model(c[None])
        torch.testing.assert_close(together[i], alone[0], rtol=1e-4, atol=1e-5)
        single = model.predict_extras(magnified_clip=c[None])
        assert extras["key_frames"][i] == single["key_frames"][0]
        np.testing.assert_allclose(extras["beta"][i], single["beta"][0], atol=1e-5)


def test_selection_never_chooses_padding(rng):
    model = _model()
    clips = [_clips(rng, 1, t)[0] for t in (2, 7, 4)]
    batch, mask = _pad(clips)
    batch[~mask] = 1e3  # loud padding
    with torch.no_grad():
        feats = model.frame_features(batch, mask)
        mining = model.mine(feats, mask)
    assert float(feats[~mask].abs().max()) == 0.0
    assert not bool((mining.selected & ~mask).any())
    assert float(mining.beta[~mask].abs().max()) == 0.0
    assert float(mining.alpha[~mask].abs().max()) == 0.0
    assert bool((mining.max_key < mask.sum(1)).all())
    extras = model.predict_extras(magnified_clip=batch, magnified_clip_mask=mask)
    for keys, n in zip(extras["key_frames"], (2, 7, 4), strict=True):
        assert keys and max(keys) < n


# -- mining: numbers ---------------------------------------------------------------------------
def test_mining_follows_equations_5_to_8():
    torch.manual_seed(1)
    pooled = torch.randn(1, 5, 6)
    mask = torch.ones(1, 5, dtype=torch.bool)
    att = nn.Linear(6, 1)
    m = mine_key_frames(pooled, mask, att)
    alpha = torch.sigmoid(pooled[0] @ att.weight[0] + att.bias)           # eq. 5
    g = (alpha[:, None] * pooled[0]).sum(0)                               # eq. 6
    beta = pooled[0] @ g / (pooled[0].norm(dim=1) * g.norm())             # eq. 7
    torch.testing.assert_close(m.alpha[0], alpha)
    torch.testing.assert_close(m.beta[0], beta)
    assert m.selected[0].tolist() == (beta > beta.mean()).tolist()        # eq. 8
    assert m.weights[0].tolist() == (beta > beta.mean()).float().tolist()
    assert int(m.max_key[0]) == int(beta.argmax())


def test_uniform_attention_and_no_sparse():
    pooled = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    m = mine_key_frames(pooled, mask, None)
    assert m.alpha.tolist() == mask.float().tolist()
    g = pooled[0, :3].sum(0)
    torch.testing.assert_close(m.beta[0, :3], torch.cosine_similarity(pooled[0, :3], g[None]))
    dense = mine_key_frames(pooled, mask, None, sparse=False)
    assert dense.selected.tolist() == mask.tolist()
    torch.testing.assert_close(dense.weights, dense.beta)


def test_saturated_attention_keeps_beta():
    # beta (eq. 7) does not change when every alpha_t is scaled by one factor; an attention
    # saturated towards 0 (sigmoid underflows: large features, as in a from-scratch run)
    # must give the betas of uniform attention, not a global vector of 0 and beta = 0.
    pooled = torch.rand(2, 5, 8) * 400.0
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    att = nn.Linear(8, 1)
    with torch.no_grad():
        att.weight.zero_()
        att.bias.fill_(-200.0)
    saturated = mine_key_frames(pooled, mask, att)
    uniform = mine_key_frames(pooled, mask, None)
    torch.testing.assert_close(saturated.beta, uniform.beta)
    assert saturated.selected.tolist() == uniform.selected.tolist()
    # and the attention still gets a gradient when its logits differ between frames
    att2 = nn.Linear(8, 1)
    with torch.no_grad():
        att2.weight.normal_(0.0, 1.0)
        att2.bias.fill_(-500.0)
    m = mine_key_frames(pooled, mask, att2)
    m.beta[mask].sum().backward()
    assert torch.isfinite(att2.weight.grad).all() and float(att2.weight.grad.abs().sum()) > 0


def test_one_frame_and_tied_clips_keep_one_key_frame():
    pooled = torch.ones(2, 3, 4)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    m = mine_key_frames(pooled, mask, None)
    assert m.selected.sum(1).tolist() == [1, 1]
    assert m.selected[0, 0]


def test_gs_mmm_loss_numbers():
    # Clip 0: betas 0.9, 0.5, 0.1 -> key frame 0 (above the mean 0.5);
    # L_GS = max(0, 1 - 1) = 0, L_MMM = 2 - (0.9 - 0.3) = 1.4.
    # Clip 1: one frame -> L_GS = 0, no MMM term.
    pooled = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]],
                           [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    m = mine_key_frames(pooled, mask, None)
    m.beta = torch.tensor([[0.9, 0.5, 0.1], [1.0, 0.0, 0.0]])
    m.selected = torch.tensor([[True, False, False], [True, False, False]])
    m.weights = m.selected.float()
    loss = gs_mmm_loss(m)
    assert math.isclose(float(loss), 1.0 * 1.4, rel_tol=1e-6)
    m.weights = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # 3 key frames in clip 0
    assert math.isclose(float(gs_mmm_loss(m)), 0.1 * (2 + 0) / 2 + 1.4, rel_tol=1e-6)


# -- gradients ------------------------------------------------------------------------------
def test_straight_through_gradient_reaches_beta(rng):
    model = _fresh_model(no_mining_loss=True).eval()
    x, mask = _pad([_clips(rng, 1, t)[0] for t in (6, 4)])
    clip, mask = model._check(x, mask)
    feats = model.frame_features(clip, mask)
    mining = model.mine(feats, mask)
    mining.beta.retain_grad()
    from mexkit.models.akmnet.network import _gather_key_frames

    keys, lengths = _gather_key_frames(feats, mining)
    out = model.classifier(model.temporal(keys, lengths).flatten(1))
    out[:, 0].sum().backward()
    grad = mining.beta.grad
    assert float(grad[mining.selected].abs().min()) > 0           # eq. 17, key frames
    assert float(grad[~mining.selected].abs().max()) == 0.0       # eq. 17, the others
    # The attention weights get gradient only through beta (eqs. 5-7).
    assert float(model.attention.weight.grad.abs().sum()) > 0


def test_regularization_loss_after_training_forward(rng):
    model = _fresh_model().train()
    out = model(_clips(rng, 2, 5))
    reg = model.regularization_loss()
    assert reg.ndim == 0 and float(reg.detach()) > 0
    (out.sum() + reg).backward()
    assert float(model.regularization_loss()) == 0.0  # consumed
    model.eval()
    model(_clips(rng, 1, 3))
    assert float(model.regularization_loss()) == 0.0
    for opt in ({"no_mining_loss": True}, {"no_sparse": True}):
        m = _fresh_model(**opt).train()
        m(_clips(rng, 1, 4))
        assert float(m.regularization_loss()) == 0.0


def test_gradcheck_mining():
    pooled = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    att = nn.Linear(3, 1).double()

    def f(p):
        m = mine_key_frames(p, mask, att, sparse=False)
        return m.beta, m.alpha

    assert torch.autograd.gradcheck(f, (pooled,))


def test_load_backbone_state():
    model = _fresh_model()
    source = AKMResNet18()
    state = {f"backbone.{k}": v + 1 for k, v in source.state_dict().items()
             if k.endswith("weight")}
    state["layer2.0.downsample.0.weight"] = state.pop("backbone.layer2.0.shortcut.0.weight")
    state["fc.weight"] = torch.zeros(10, 512)
    missing = model.load_backbone_state(state)
    torch.testing.assert_close(model.backbone.conv1.weight, source.conv1.weight + 1)
    torch.testing.assert_close(model.backbone.layer2[0].shortcut[0].weight,
                               source.layer2[0].shortcut[0].weight + 1)
    assert "bn1.bias" in missing
    with pytest.raises(ParameterError, match=r"conv1\.weight.*\(64, 3, 7, 7\)"):
        model.load_backbone_state({"conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(ParameterError, match="head.weight"):
        model.load_backbone_state({"head.weight": torch.zeros(1)})


# -- registry, input, augmentation, trainer helpers ---------------------------------------
def test_registry_entry():
    from mexkit.models import get_spec

    spec = get_spec("akmnet")
    d = spec.defaults
    assert (d.optimizer, d.lr, d.epochs, d.batch_size, d.momentum, d.weight_decay) == (
        "sgd", 1e-3, 40, 8, 0.9, 5e-4)
    assert dict(d.schedule) == {"kind": "cosine", "eta_min": 1e-8}
    assert d.class_balance == "resample" and spec.protocol == "loso"
    assert spec.inputs[0].shape == (None, 3, 128, 128) and spec.inputs[0].variable
    assert {o.name for o in spec.options} >= {"no-attention", "no-sparse", "no-mining-loss",
                                               "weights", "train-resize"}


class _Sample:
    sample_id = "s1"

    def __init__(self, arrays):
        self.arrays = arrays

    def __contains__(self, name):
        return name in self.arrays

    def keys(self):
        return list(self.arrays)

    def read(self, name):
        return self.arrays[name]


def test_input_builder(rng):
    from mexkit.models.akmnet.inputs import magnified_clip

    grey = rng.integers(0, 256, size=(5, 128, 128), dtype=np.uint8)
    x = magnified_clip(_Sample({"frames": grey}))
    assert x.shape == (5, 3, 128, 128) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 1], grey / 255.0, atol=1e-7)
    rgb = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    assert magnified_clip(_Sample({"frames": rgb})).shape == (2, 3, 128, 128)
    with pytest.raises(ModelInputError, match="magnify"):
        magnified_clip(_Sample({"flow": grey}))
    with pytest.raises(ModelInputError, match="'s1'"):
        magnified_clip(_Sample({"frames": grey[:, :, :, None]}))


def test_augmentation_crops_each_clip_at_one_position():
    from mexkit.models.akmnet.augment import AKMNetAugment

    aug = AKMNetAugment()
    x = torch.rand(3, 4, 3, 128, 128)
    mask = torch.ones(3, 4, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    out = aug({"magnified_clip": x, "magnified_clip_mask": mask}, generator=gen)
    assert out["magnified_clip"].shape == x.shape and out["magnified_clip_mask"] is mask
    # Same draws with the same seed; the crop lies inside the 144x144 resize.
    again = aug({"magnified_clip": x, "magnified_clip_mask": mask},
                generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["magnified_clip"], again["magnified_clip"])
    const = torch.ones(1, 2, 3, 128, 128) * torch.tensor([0.2, 0.5, 0.8])[:, None, None]
    torch.testing.assert_close(aug(const, generator=gen), const)
    with pytest.raises(ParameterError, match="resize"):
        AKMNetAugment(resize=100)


def test_train_resize_option_sets_the_augmentation():
    from mexkit.models.akmnet.augment import augmentation_for

    assert repr(augmentation_for(None)) == repr(augmentation_for(144))
    assert augmentation_for(144).resize == 144 and augmentation_for(160).resize == 160
    assert augmentation_for(128) is None  # no resize, no crop
    with pytest.raises(ParameterError, match="train_resize.*100"):
        augmentation_for(100)


def test_load_weights_file(tmp_path):
    from safetensors.torch import save_file

    from mexkit.errors import StoreError
    from mexkit.models.akmnet.training import load_weights

    model = _fresh_model()
    state = {k: v.clone() + 0.5 for k, v in AKMResNet18().state_dict().items()
             if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp_path / "w.safetensors"))
    assert load_weights(model, tmp_path / "w.safetensors") == []
    torch.testing.assert_close(model.backbone.layer4[1].conv2.weight,
                               state["layer4.1.conv2.weight"])
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(StoreError, match="bad.safetensors"):
        load_weights(model, tmp_path / "bad.safetensors")


def test_key_frame_plots(tmp_path):
    import json

    from mexkit.models.akmnet.report import write_key_frame_plots

    rows = ["sample_id,subject,dataset,fold,true,pred,score_a,score_b"]
    extras = {}
    for i in range(5):
        sid = f"d/s{i}/clip{i}"
        rows.append(f"{sid},s{i},d,s{i},{'ab'[i % 2]},a,0.6,0.4")
        extras[sid] = {"beta": [0.1, 0.9, 0.8, 0.2], "key_frames": [1, 2],
                       "max_key_frame": 1}
    (tmp_path / "predictions.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "predictions.json").write_text(json.dumps(extras))
    written = write_key_frame_plots(tmp_path, per_class=2, truth={"d/s0/clip0": (1, 2)})
    assert len(written) == 4  # two of class a, two of class b
    assert all(p.exists() and p.read_bytes()[:4] == b"\x89PNG" for p in written)
