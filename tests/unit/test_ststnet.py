"""STSTNet: smoke, exception, cardinality, feature (by hand), gradients; the authors' weights.

The last test loads the authors' published PyTorch weights (one network per
LOSO fold, trained 800 epochs) into mexkit's network and checks that it
predicts, subject by subject, what the authors' log file records.  It needs
a copy of the STSTNet repository (``MEXKIT_STSTNET_REPO``) and of the
release the images come from (``MEXKIT_HTNET_REPO``), and skips without them.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mexkit.errors import ModelInputError, ParameterError
from mexkit.models.ststnet.network import STREAM_FILTERS, STSTNet, streams_state

torch.set_num_threads(2)


def _images(rng, b):
    return torch.from_numpy(rng.integers(0, 256, (b, 3, 28, 28)).astype(np.float32))


# -- smoke and cardinality --------------------------------------------------------------------
@pytest.mark.parametrize("b", [1, 2, 5])
@pytest.mark.parametrize("padding", [1, 2])
def test_output_and_feature_shapes(rng, b, padding):
    net = STSTNet(padding=padding).eval()
    x = _images(rng, b)
    with torch.no_grad():
        assert net.features(x).shape == (b, 16 * 5 * 5)  # Table I: P2 5x5x16, FC 400
        out = net(x)
    assert out.shape == (b, 3) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_layer_sizes_follow_table_1(rng):
    net = STSTNet().eval()
    x = _images(rng, 2)
    with torch.no_grad():
        conv = net.conv(x)
        pooled = net.pool(net.bn(torch.relu(conv)))
    # the streams are channels 0-2, 3-7 and 8-15 of the one convolution
    edges = np.cumsum((0,) + STREAM_FILTERS)
    sizes = [((int(b - a),) + tuple(conv.shape[2:]), (int(b - a),) + tuple(pooled.shape[2:]))
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    # C1-k: 28x28xk ("same"), P1-k: 10x10xk
    assert sizes == [((k, 28, 28), (k, 10, 10)) for k in (3, 5, 8)]
    assert STREAM_FILTERS == (3, 5, 8)


def test_parameter_count_by_hand():
    net = STSTNet()
    conv = sum(k * (3 * 3 * 3 + 1) for k in (3, 5, 8))     # 448
    bn = 2 * 16                                              # 32
    fc = 400 * 3 + 3                                         # 1203
    assert sum(p.numel() for p in net.parameters()) == conv + bn + fc == 1683
    # padding changes no parameter (the authors' port pads 2)
    assert sum(p.numel() for p in STSTNet(padding=2).parameters()) == 1683
    assert STSTNet(7).fc.out_features == 7


# -- exceptions -------------------------------------------------------------------------------
def test_bad_options_and_inputs_raise():
    with pytest.raises(ParameterError, match="'padding'.*1, 2.*3"):
        STSTNet(padding=3)
    with pytest.raises(ParameterError, match="dropout"):
        STSTNet(dropout=1.0)
    with pytest.raises(ParameterError, match="positive"):
        STSTNet(0)
    net = STSTNet()
    with pytest.raises(ModelInputError, match=r"\(B, 3, 28, 28\).*\(2, 3, 32, 32\)"):
        net(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ModelInputError):
        net(torch.zeros(3, 28, 28))


# -- numbers ----------------------------------------------------------------------------------
def test_constant_streams_by_hand():
    """Zero kernels and biases b_k: every stream is the constant relu(b_k), batch norm
    (eval, mean m, var s2, weight g, bias c) maps it to g (relu(b) - m) / sqrt(s2 + eps) + c,
    pooling keeps constants, so the logits are W @ that constant vector + bias."""
    net = STSTNet(2).eval()
    biases = [1.5, -0.5, 2.0]
    want = []
    eps = net.bn.eps
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.copy_(torch.tensor([b for b, k in zip(biases, (3, 5, 8), strict=True)
                                          for _ in range(k)]))
        net.bn.running_mean.fill_(0.25)
        net.bn.running_var.fill_(4.0)
        net.bn.weight.fill_(2.0)
        net.bn.bias.fill_(0.1)
        for b, k in zip(biases, (3, 5, 8), strict=True):
            want += [2.0 * (max(b, 0.0) - 0.25) / np.sqrt(4.0 + eps) + 0.1] * (k * 25)
        w = torch.linspace(-1, 1, 800).reshape(2, 400)
        net.fc.weight.copy_(w)
        net.fc.bias.copy_(torch.tensor([0.3, -0.2]))
        out = net(torch.rand(1, 3, 28, 28) * 255)
    # features are channel-major: stream 1's 3x25 values, then stream 2's, then 3's
    expected = w.numpy().astype(np.float64) @ np.array(want) + np.array([0.3, -0.2])
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5, atol=1e-5)


class _ThreeStreams(nn.Module):
    """Table I written out as three separate streams (the layout of the authors' PyTorch
    port: conv, ReLU, batch norm, max-pool, dropout per stream; concatenation; average
    pooling; one dense layer), to check the fused network against."""

    def __init__(self, padding):
        super().__init__()
        for i, k in enumerate(STREAM_FILTERS, 1):
            setattr(self, f"conv{i}", nn.Conv2d(3, k, 3, padding=padding))
            setattr(self, f"bn{i}", nn.BatchNorm2d(k))
        self.fc = nn.Linear(400, 3)

    def forward(self, x):
        maps = [F.max_pool2d(getattr(self, f"bn{i}")(torch.relu(getattr(self, f"conv{i}")(x))),
                             3, 3, padding=1) for i in (1, 2, 3)]
        return self.fc(F.avg_pool2d(torch.cat(maps, 1), 2).flatten(1))


@pytest.mark.parametrize("padding", [1, 2])
def test_fused_streams_equal_three_separate_streams(rng, padding):
    torch.manual_seed(3)
    ref = _ThreeStreams(padding)
    with torch.no_grad():  # non-trivial batch-norm statistics
        for i in (1, 2, 3):
            bn = getattr(ref, f"bn{i}")
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    net = STSTNet(padding=padding, dropout=0.0)
    net.load_state_dict({**streams_state(ref.state_dict()),
                         "input_mean": torch.zeros(3, 28, 28)})
    x = _images(rng, 6) / 255
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5)
        # training mode: batch statistics, per stream as per fused channel
        torch.testing.assert_close(net.train()(x), ref.train()(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ParameterError, match="streams"):
        streams_state({k: v for k, v in ref.state_dict().items() if not k.startswith("bn3")})


def test_train_mode_drops_and_normalises_with_batch_statistics(rng):
    net = STSTNet()
    x = _images(rng, 8)
    torch.manual_seed(0)
    a = net.train()(x)
    torch.manual_seed(1)
    b = net(x)
    assert not torch.allclose(a, b)  # dropout differs between draws
    with torch.no_grad():
        e1, e2 = net.eval()(x), net(x)
    assert torch.equal(e1, e2)


def test_gradients_match_finite_differences(rng):
    torch.manual_seed(0)
    net = STSTNet(size=7).double().eval()  # 7x7 -> 3x3 pooled -> 1x1: every layer, small
    x = torch.from_numpy(rng.uniform(size=(2, 3, 7, 7))).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: net(t), (x,), eps=1e-6, atol=1e-5,
                                    fast_mode=True)
    loss = net.train()(x.detach()).square().sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# -- the authors' published weights -------------------------------------------------------------
def _repo(var: str, marker: str) -> Path:
    path = os.environ.get(var)
    if not path:
        pytest.skip(f"{var} is not set (a local copy of the authors' repository)")
    if not (Path(path) / marker).exists():
        pytest.skip(f"{var}={path} holds no {marker}")
    return Path(path)


def test_authors_weights_reproduce_their_logged_predictions():
    import cv2

    ststnet = _repo("MEXKIT_STSTNET_REPO", "STSTNet_python_logfile.txt")
    split = _repo("MEXKIT_HTNET_REPO", "datasets/three_norm_u_v_os") / \
        "datasets" / "three_norm_u_v_os"
    log = (ststnet / "STSTNet_python_logfile.txt").read_text()
    blocks = re.findall(r"Subject: (\S+)\s*\nPredicted\s*: \[([^\]]*)\]\s*\n"
                        r"Ground Truth: \[([^\]]*)\]", log)
    assert len(blocks) == 68
    pooled_true, pooled_pred = [], []
    for sub, pred, truth in blocks:
        net = STSTNet(padding=2).eval()
        state = torch.load(ststnet / "STSTNet_Weights" / f"{sub}.pth", map_location="cpu",
                           weights_only=True)
        # the port's three streams side by side; no mean image (the port subtracts none)
        net.load_state_dict({**streams_state(state), "input_mean": torch.zeros(3, 28, 28)})
        images, labels = [], []
        for lab in sorted(p for p in (split / sub / "u_test").iterdir()):
            for f in sorted(lab.iterdir()):
                images.append(cv2.imread(str(f)))  # BGR: strain, v, u; 0..255
                labels.append(int(lab.name))
        x = torch.from_numpy(np.stack(images).astype(np.float32)).permute(0, 3, 1, 2)
        with torch.no_grad():
            got = net(x).argmax(1).tolist()
        logged = list(zip([int(v) for v in truth.split(",")],
                          [int(v) for v in pred.split(",")], strict=True))
        # the log lists each fold in the order the folders were listed: compare the
        # (true, predicted) pairs as multisets
        assert Counter(zip(labels, got, strict=True)) == Counter(logged), sub
        pooled_true += labels
        pooled_pred += got
    # and the authors' final figures (README: UF1 0.7209, UAR 0.725), recomputed
    from sklearn.metrics import f1_score, recall_score

    assert f1_score(pooled_true, pooled_pred, average="macro") == pytest.approx(0.7209,
                                                                                abs=5e-5)
    assert recall_score(pooled_true, pooled_pred, average="macro") == pytest.approx(0.7250,
                                                                                    abs=5e-5)


def _authors_class(repo: Path) -> type:
    """The ``STSTNet`` class of the authors' ``main.py``, defined without running the
    script (its module level trains; only the class's source is executed)."""
    import ast

    source = (repo / "main.py").read_text()
    tree = ast.parse(source)
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "STSTNet"]
    namespace = {"nn": nn, "torch": torch}
    exec(compile(ast.Module([node], []), str(repo / "main.py"), "exec"), namespace)
    return namespace["STSTNet"]


def test_matches_the_authors_pytorch_network(rng):
    ststnet = _repo("MEXKIT_STSTNET_REPO", "main.py")
    torch.manual_seed(5)
    theirs = _authors_class(ststnet)()
    ours = STSTNet(padding=2, init="torch")
    # same parameters, layer by layer (streams side by side in ours)
    assert sum(p.numel() for p in theirs.parameters()) == \
        sum(p.numel() for p in ours.parameters()) == 1683
    ours.load_state_dict({**streams_state(theirs.state_dict()),
                          "input_mean": torch.zeros(3, 28, 28)})
    x = _images(rng, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-4)
        theirs.dropout.p = ours.dropout.p = 0.0  # batch statistics, no random masks
        torch.testing.assert_close(ours.train()(x), theirs.train()(x), rtol=1e-4, atol=1e-4)
