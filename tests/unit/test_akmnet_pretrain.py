"""AKMNet's backbone pre-training on still frames (the stand-in for the AffectNet stage)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mexkit.errors import ParameterError
from mexkit.models.akmnet.network import AKMNet, AKMResNet18
from mexkit.models.akmnet.pretraining import expression_frames, pretrain_backbone

torch.set_num_threads(2)


@pytest.mark.parametrize(("args", "expression", "neutral"), [
    ((9, 0, 4, 8), [3, 4, 5], [0, 8]),       # the usual clip
    ((9, 2, 2, 6), [2, 3], [6]),             # apex on the onset: nothing before it
    ((9, 0, 8, 8), [7, 8], [0]),             # apex on the last frame
    ((9, None, 4, None), [3, 4, 5], [0, 8]),  # onset/offset unknown: first and last frame
    ((9, 0, -1, 8), [], []),                 # apex unknown (SMIC, a '/' in a sheet)
    ((9, 0, None, 8), [], []),
    ((9, 0, 12, 8), [], []),                 # apex outside the clip
    ((1, 0, 0, 0), [0], []),                 # a one-frame clip has no rest frame
])
def test_expression_frames(args, expression, neutral):
    assert expression_frames(*args) == (expression, neutral)


def _frames(rng, n_per_class, side=32):
    """Rest faces (a smooth random pattern) and three 'expressions': a bright bar at one
    of three places; brightness, pattern and noise vary per frame."""
    yy, xx = np.mgrid[:side, :side] / side
    frames, targets = [], []
    places = [(slice(4, 8), slice(6, 26)), (slice(24, 28), slice(6, 26)),
              (slice(6, 26), slice(14, 18))]
    for cls in range(4):
        for _ in range(n_per_class):
            f = (0.4 + 0.1 * rng.normal() + 0.1 * np.sin(6 * xx + rng.uniform(0, 6))
                 * np.cos(5 * yy + rng.uniform(0, 6)) + 0.02 * rng.normal(size=(side, side)))
            if cls:
                f[places[cls - 1]] += 0.25
            frames.append(np.repeat(f[None], 3, axis=0))
            targets.append(cls)
    return (torch.from_numpy(np.asarray(frames, dtype=np.float32)),
            torch.tensor(targets, dtype=torch.int64))


def _accuracy(state, x, y, xt, yt):
    """Nearest-class-mean accuracy on (xt, yt) of the backbone's pooled features."""
    backbone = AKMResNet18()
    backbone.load_state_dict(state)
    backbone.eval()
    with torch.no_grad():
        fit = backbone(x).mean(dim=(2, 3))
        test = backbone(xt).mean(dim=(2, 3))
    centres = torch.stack([fit[y == c].mean(0) for c in range(4)])
    return float((torch.cdist(test, centres).argmin(1) == yt).float().mean())


@pytest.mark.slow  # suite time: pretrain runs from the CLI in test_akmnet_cli
def test_pretraining_learns_frames_of_unseen_draws(rng):
    x, y = _frames(rng, 8)
    xt, yt = _frames(rng, 8)
    torch.manual_seed(0)
    untrained = _accuracy(AKMResNet18().state_dict(), x, y, xt, yt)
    state, history = pretrain_backbone(x, y, 4, image_size=32, epochs=10, batch_size=8,
                                       seed=0)
    assert [r["epoch"] for r in history] == list(range(1, 11))
    assert history[-1]["loss"] < history[0]["loss"]
    # the pooled features of the pre-trained backbone sort new frames by class
    # (nearest class mean); those of its initialisation much less so (0.62 here)
    accuracy = _accuracy(state, x, y, xt, yt)
    assert accuracy >= 0.9 and accuracy >= untrained + 0.2
    # and AKMNet takes the weights as they are: nothing left at its initialisation
    assert AKMNet(3, image_size=32).load_backbone_state(state) == []


def test_pretraining_is_seeded(rng):
    x, y = _frames(rng, 3)
    a, ha = pretrain_backbone(x, y, 4, image_size=32, epochs=2, batch_size=4, seed=3)
    b, hb = pretrain_backbone(x, y, 4, image_size=32, epochs=2, batch_size=4, seed=3)
    assert ha == hb
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frames_of_another_side_are_resized(rng):
    """Frames of 64 pixels trained at 32 give the weights of the same frames given at 32."""
    x, y = _frames(rng, 2, side=64)
    big, _ = pretrain_backbone(x, y, 4, image_size=32, epochs=1, batch_size=4)
    small = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False,
                          antialias=True)
    same, _ = pretrain_backbone(small, y, 4, image_size=32, epochs=1, batch_size=4)
    assert all(torch.allclose(big[k].float(), same[k].float(), atol=1e-5) for k in big)


@pytest.mark.parametrize(("kw", "word"), [
    ({"image_size": 48}, "image_size"),
    ({"epochs": 0}, "epochs"),
    ({"lr": 0.0}, "lr"),
])
def test_bad_settings(rng, kw, word):
    x, y = _frames(rng, 1)
    with pytest.raises(ParameterError, match=word):
        pretrain_backbone(x, y, 4, **{"image_size": 32, **kw})


def test_bad_targets(rng):
    x, y = _frames(rng, 1)
    with pytest.raises(ParameterError, match="0..3"):
        pretrain_backbone(x, y + 1, 4, image_size=32, epochs=1)
    with pytest.raises(ParameterError, match=r"\(N, 3, S, S\)"):
        pretrain_backbone(x[:, :1], y, 4, image_size=32, epochs=1)
