"""HTNet: smoke, exception, cardinality, feature (areas and counts by hand), gradients,
and the authors' ``Model.py`` layer by layer.

Most tests use a narrow network (width 16 instead of 256, one block per level); the
full published configuration (139.6 million parameters) is built only where its size
is the point.  The comparison with the authors' code needs a copy of their
repository (``MEXKIT_HTNET_REPO``) and ``einops`` (which their code imports), and
skips without them.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mexkit.errors import ModelInputError, ParameterError
from mexkit.models.htnet.network import DEFAULT_POINTS, HTNet, five_points, four_areas

torch.set_num_threads(2)

SMALL = {"dim": 16, "heads": 2, "depths": (1, 1, 1)}


# -- smoke and cardinality ----------------------------------------------------------------------
@pytest.mark.parametrize("b", [1, 3])
def test_output_shapes(rng, b):
    torch.manual_seed(0)
    net = HTNet(**SMALL).eval()
    x = torch.from_numpy(rng.uniform(0, 255, (b, 3, 28, 28)).astype(np.float32))
    with torch.no_grad():
        out = net(x)
    assert out.shape == (b, 3) and torch.isfinite(out).all()
    assert HTNet(5, **SMALL).head.out_features == 5


def test_grid_and_widths_by_level(rng):
    net = HTNet(**SMALL).eval()
    x = torch.rand(2, 3, 28, 28)
    shapes = []
    with torch.no_grad():
        h = net.embed(net.patches(x))
        shapes.append(tuple(h.shape[1:]))
        for agg in net.aggregates[:-1]:
            h = agg(h)
            shapes.append(tuple(h.shape[1:]))
    # 7x7 patches: a 4x4 grid of width 16; aggregation doubles the width, halves the grid
    assert shapes == [(16, 4, 4), (32, 2, 2), (64, 1, 1)]
    assert [lvl.blocks[0][0].heads for lvl in net.levels] == [2, 4, 8]


def test_published_configuration_parameter_count_by_hand():
    """Model.py's settings in main_HTNet.py: 139,582,982 parameters for 3 classes."""
    total = 147 * 256 + 256  # 7x7x3 patch pixels -> 256 (1x1 convolution)
    for i, depth in enumerate((2, 2, 10)):
        w, heads = 256 * 2 ** i, 3 * 2 ** i
        inner = (w // heads) * heads           # 255, 510, 1020
        attn = 2 * w + w * 3 * inner + inner * w + w
        ff = 2 * w + w * 4 * w + 4 * w + 4 * w * w + w
        total += 1 + depth * (attn + ff)       # one position embedding per token (1 token)
        if i < 2:
            total += w * 9 * 2 * w + 2 * w + 2 * 2 * w  # 3x3 conv, channel layer norm
    total += 2 * 1024 + 1024 * 3 + 3
    net = HTNet()
    assert sum(p.numel() for p in net.parameters()) == total == 139_582_982


# -- exceptions ---------------------------------------------------------------------------------
def test_bad_configurations_and_inputs_raise():
    with pytest.raises(ParameterError, match="multiple of patch_size"):
        HTNet(image_size=30)
    with pytest.raises(ParameterError, match="one positive count per level"):
        HTNet(depths=(2, 2))
    with pytest.raises(ParameterError, match="cannot be cut"):
        HTNet(image_size=21, patch_size=7)
    net = HTNet(**SMALL)
    with pytest.raises(ModelInputError, match=r"\(B, 3, 28, 28\)"):
        net(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ModelInputError):
        four_areas(np.zeros((3, 28, 27)), DEFAULT_POINTS)
    with pytest.raises(ParameterError):
        four_areas(np.zeros((3, 28, 28)), np.full((5, 2), np.nan))
    with pytest.raises(ParameterError):
        five_points(np.zeros((5, 2)))


# -- numbers: the facial areas -----------------------------------------------------------------
def test_four_areas_take_the_windows_of_the_official_code():
    """Each pixel holds 100 * row + column, so every window is recognisable."""
    img = (100 * np.arange(28)[:, None] + np.arange(28)[None, :]).astype(np.float32)
    img = np.stack([img, img + 10000, img + 20000])
    pts = np.array([[8.9, 10.2], [20.5, 9.7], [15, 17], [3.0, 25.0], [19.99, 21.0]])
    out = four_areas(img, pts)
    assert out.shape == (3, 28, 28)
    # points clamped to 7..21 and truncated: (8, 10), (20, 9), (7, 21), (19, 21);
    # the row index is the point's x, the column its y (as the official slicing)
    assert out[0, 0, 0] == 100 * (8 - 7) + (10 - 7)       # top left: point 0
    assert out[0, 0, 14] == 100 * (20 - 7) + (9 - 7)      # top right: point 1
    assert out[0, 14, 0] == 100 * (7 - 7) + (21 - 7)      # bottom left: point 3
    assert out[0, 27, 27] == 100 * (19 + 6) + (21 + 6)    # bottom right: point 4's last
    np.testing.assert_array_equal(out[2] - out[0], 20000)  # channels untouched


def test_default_points_give_the_official_fallback_windows():
    img = np.arange(3 * 28 * 28, dtype=np.float32).reshape(3, 28, 28)
    out = four_areas(img, DEFAULT_POINTS)
    # DEFAULT_POINTS truncated and clamped: (9, 11), (21, 10), (10, 21), (20, 21)
    np.testing.assert_array_equal(out[:, :14, :14], img[:, 2:16, 4:18])
    np.testing.assert_array_equal(out[:, :14, 14:], img[:, 14:28, 3:17])
    np.testing.assert_array_equal(out[:, 14:, :14], img[:, 3:17, 14:28])
    np.testing.assert_array_equal(out[:, 14:, 14:], img[:, 13:27, 14:28])


def test_five_points_from_68_landmarks():
    lm = np.zeros((68, 2), np.float32)
    lm[36:42] = [[2, 4]] * 3 + [[4, 6]] * 3      # left eye centre (3, 5)
    lm[42:48] = [[10, 4]] * 6
    lm[30] = [7, 9]
    lm[48] = [4, 12]
    lm[54] = [11, 12]
    np.testing.assert_allclose(five_points(lm), [[3, 5], [10, 4], [7, 9], [4, 12], [11, 12]])
    lm[5] = np.nan
    np.testing.assert_array_equal(five_points(lm), DEFAULT_POINTS)


def test_published_size_attends_to_one_token_per_block():
    """At 28x28 with 7x7 patches each block holds one token: the softmax is 1, so an
    attention layer is its value projection then its output convolution."""
    torch.manual_seed(0)
    net = HTNet(**SMALL).eval()
    attn = net.levels[0].blocks[0][0]
    x = torch.randn(4, 16, 1, 1)
    with torch.no_grad():
        v = attn.qkv(attn.norm(x)).chunk(3, dim=1)[2]
        torch.testing.assert_close(attn(x), attn.out(v))


def test_gradients_match_finite_differences(rng):
    torch.manual_seed(0)
    net = HTNet(image_size=14, dim=4, heads=1, levels=2, depths=1).double().eval()
    x = torch.from_numpy(rng.uniform(size=(2, 3, 14, 14))).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: net(t), (x,), eps=1e-6, atol=1e-5,
                                    fast_mode=True)


# -- the authors' Model.py ----------------------------------------------------------------------
def _official_module():
    repo = os.environ.get("MEXKIT_HTNET_REPO")
    if not repo:
        pytest.skip("MEXKIT_HTNET_REPO is not set (a local copy of the HTNet repository)")
    path = Path(repo) / "Model.py"
    if not path.is_file():
        pytest.skip(f"MEXKIT_HTNET_REPO={repo} holds no Model.py")
    pytest.importorskip("einops", reason="the authors' Model.py imports einops")
    spec = importlib.util.spec_from_file_location("htnet_authors_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _to_mexkit(state: dict) -> dict:
    """Model.py's parameter names -> mexkit's."""
    out = {}
    for k, v in state.items():
        k = k.replace("to_patch_embedding.1.", "embed.").replace("mlp_head.0.", "head_norm.")
        k = k.replace("mlp_head.2.", "head.")
        k = re.sub(r"^layers\.(\d+)\.1\.", r"aggregates.\1.", k)
        k = re.sub(r"^layers\.(\d+)\.0\.pos_emb", r"levels.\1.pos", k)
        k = re.sub(r"^layers\.(\d+)\.0\.layers\.", r"levels.\1.blocks.", k)
        k = k.replace(".fn.to_qkv.", ".qkv.").replace(".fn.to_out.", ".out.")
        out[k.replace(".fn.net.", ".net.")] = v
    return out


@pytest.mark.parametrize("config", [
    # main_HTNet.py's settings (two networks of 139.6M parameters: slow)
    pytest.param(dict(image_size=28, dim=256, heads=3, levels=3, depths=(2, 2, 10),
                      n_classes=3), marks=pytest.mark.slow),
    # a larger image, so that attention mixes several tokens per block
    dict(image_size=56, dim=24, heads=2, levels=3, depths=(1, 2, 1), n_classes=4),
])
def test_same_layers_and_outputs_as_the_authors_model(config):
    mod = _official_module()
    torch.manual_seed(0)
    theirs = mod.HTNet(image_size=config["image_size"], patch_size=7, dim=config["dim"],
                       heads=config["heads"], num_hierarchies=config["levels"],
                       block_repeats=config["depths"], num_classes=config["n_classes"]).eval()
    ours = HTNet(config["n_classes"], image_size=config["image_size"], dim=config["dim"],
                 heads=config["heads"], levels=config["levels"],
                 depths=config["depths"]).eval()
    state = _to_mexkit(theirs.state_dict())
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sum(p.numel() for p in theirs.parameters()) == \
        sum(p.numel() for p in ours.parameters())
    ours.load_state_dict(state)
    x = torch.rand(3, 3, config["image_size"], config["image_size"]) * 255
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
