"""MERSiamC3D: a siamese 3D CNN trained in two stages on adaptive key-frame flow.

The network ([1]_, Sec. 3.2 and 4.1.2) is built around **SinC3D**, five
3x3x3 convolutions (32, 64, 128, 128, 256 filters, stride 1, ReLU), each
followed by max-pooling; the first pool is 2x2 in space and 1 in time so
that time is kept early, the others are 2x2x2. It is used twice:

- **prior learning** (:class:`SiameseC3D`, Fig. 3A): two clips go through
  the same SinC3D (one module, so the twin branches share every weight),
  a flatten and a dense layer; the L1 distance of the two embeddings goes
  through a sigmoid that says "same class" (1) or "different class" (0);
  binary cross-entropy;
- **target learning** (:class:`MERSiamC3D`, Fig. 3B): SinC3D initialised
  from prior learning with its first convolutions frozen, then flatten,
  dense, dropout and a softmax over the classes, trained with the focal
  loss of eq. 11 (:func:`mexkit.learn.losses.focal_loss`).

Input
-----
``keyframe_flow``, ``(B, 3, 10, 112, 112)`` float32: the 10 Farneback flow
fields between the 11 adaptive key frames of a clip ([1]_, Sec. 3.1), as
``(C, T, H, W)`` with the channels u (horizontal), v (vertical) and the
magnitude m = sqrt(u^2 + v^2), in pixels of the 112x112 face crop. The
paper feeds "the optical flow sequence" and defines exactly these three
quantities (eq. 5: V = [u, v], "the amplitude is m = sqrt(u^2 + v^2)");
it does not print the channel count, and the optical-flow images of the
methods it builds on ([1]_ refs. 27, 29, 35) stack such flow-derived maps
as a three-channel image, so u, v, m is the reading taken here.
``in_channels=2`` builds the u, v variant (the input builder then drops m).

Choices where the paper is silent
---------------------------------
- convolutions are zero-padded ("same"), as in C3D, and pooling rounds up
  (Keras ``padding="same"``): with floor rounding the 10 flow fields would
  reach a time length of 0 at the fifth pool (10, 10, 5, 2, 1, 0). The
  feature map for a ``(3, 10, 112, 112)`` input is ``256 x 1 x 4 x 4``
  (4,096 values);
- the dense layer has 512 units with ReLU in both stages (``dense``);
  dropout is 0.5 (``dropout``). Only the convolutions carry over from prior
  learning to target learning (Sec. 4.1.2: "the final convolutional layers
  parameters are kept"), the target dense layer starts afresh;
- eq. 8 as printed, ``sigmoid(sum_j |f1_j - f2_j|)``, is at least 0.5 and
  grows with the distance, so it could never say "same" (label 1) for close
  embeddings. It is read as the siamese network it follows (Koch et al.
  [2]_): ``p = sigmoid(sum_j w_j |f1_j - f2_j| + b)`` with a learned weight
  per dimension and a bias (:class:`SiameseHead`); training makes the
  weights negative where distance means "different".

References
----------
.. [1] S. Zhao, H. Tao, Y. Zhang, T. Xu, K. Zhang, Z. Hao, E. Chen, "A
   two-stage 3D CNN based learning method for spontaneous micro-expression
   recognition" (MERSiamC3D), 2021.
.. [2] G. Koch, R. Zemel, R. Salakhutdinov, "Siamese Neural Networks for
   One-shot Image Recognition", ICML Deep Learning Workshop 2015.
.. [3] D. Tran, L. Bourdev, R. Fergus, L. Torresani, M. Paluri, "Learning
   Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015 (C3D).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..._validate import check_int, check_range
from ...errors import ParameterError
from .._nn import check_input

__all__ = ["SinC3D", "SiameseHead", "SiameseC3D", "MERSiamC3D", "INPUT_NAME", "INPUT_SHAPE",
           "CONV_WIDTHS"]

INPUT_NAME = "keyframe_flow"
#: Per-sample input shape (channels u, v, m; 10 flow fields; 112 x 112).
INPUT_SHAPE = (3, 10, 112, 112)
#: Filters of the five convolutions of SinC3D ([1]_, Sec. 4.1.2).
CONV_WIDTHS = (32, 64, 128, 128, 256)


def _pooled(n: int, k: int) -> int:
    return int(math.ceil(n / k))


class SinC3D(nn.Module):
    """SinC3D: five 3x3x3 convolutions with ReLU and 3D max-pooling.

    ``(B, C, T, H, W)`` -> ``(B, 256, T', H', W')``. Each convolution has
    stride 1 and zero padding 1; pool 1 has kernel and stride (1, 2, 2)
    (time, height, width), pools 2-5 have (2, 2, 2); pooling rounds up.

    Parameters
    ----------
    in_channels : int
        Channels of the flow input (3: u, v, magnitude).

    Attributes
    ----------
    convs : torch.nn.ModuleList
        The five ``Conv3d`` layers, ``convs[0]`` being the paper's conv1.

    References
    ----------
    .. [1] Zhao et al., MERSiamC3D (2021), Sec. 3.2.1.1 and 4.1.2.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        widths = (int(in_channels), *CONV_WIDTHS)
        self.convs = nn.ModuleList(
            nn.Conv3d(widths[i], widths[i + 1], 3, stride=1, padding=1) for i in range(5))
        self.pools = nn.ModuleList(
            [nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2), ceil_mode=True)]
            + [nn.MaxPool3d(2, stride=2, ceil_mode=True) for _ in range(4)])
        _he_init(self)

    @staticmethod
    def output_shape(frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Shape ``(256, T', H', W')`` of the feature map for one clip."""
        t, h, w = int(frames), int(height), int(width)
        for i in range(5):
            t = t if i == 0 else _pooled(t, 2)
            h, w = _pooled(h, 2), _pooled(w, 2)
        return CONV_WIDTHS[-1], t, h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, pool in zip(self.convs, self.pools, strict=True):
            x = pool(F.relu(conv(x)))
        return x


class SiameseHead(nn.Module):
    """Weighted L1 similarity of two embeddings (eq. 8, read as in Koch et al.).

    ``logit = sum_j w_j |f1_j - f2_j| + b``; ``sigmoid(logit)`` is the
    probability that the two clips are of the same class.

    Parameters
    ----------
    dim : int
        Embedding dimension D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((int(dim),), -1.0 / math.sqrt(dim)))
        self.bias = nn.Parameter(torch.ones(1))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """``(B, D), (B, D) -> (B,)`` logits of "same class"."""
        return (f1 - f2).abs() @ self.weight + self.bias


def _check_resolution(resolution: int | None, size: int) -> int:
    if resolution is None:
        return size
    resolution = check_int("resolution", resolution, 16)
    if resolution > size:
        raise ParameterError(
            f"Invalid value for the 'resolution' parameter. It must be at most the input "
            f"size {size}, but got {resolution!r} instead."
        )
    return resolution


def _check_geometry(in_channels: int, frames: int, size: int) -> tuple[int, int, int]:
    check_int("in_channels", in_channels, 1)
    check_int("frames", frames, 1)
    check_int("size", size, 1)
    if size < 16:
        raise ParameterError(
            f"Invalid value for the 'size' parameter. It must be at least 16 (five 2x2 "
            f"poolings), but got {size!r} instead."
        )
    return int(in_channels), int(frames), int(size)


def _resample(x: torch.Tensor, work: int) -> torch.Tensor:
    """Area-resample flow ``(B, C, T, H, W)`` to ``work x work``.

    The vectors stay in pixels of the input crop (they are not shrunk with
    the grid), so the network sees flow of the same magnitude at any
    working resolution.
    """
    b, c, t, h, w = x.shape
    if (h, w) == (work, work):
        return x
    y = F.interpolate(x.reshape(b, c * t, h, w), size=(work, work), mode="area")
    return y.reshape(b, c, t, work, work)


def _he_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)


class MERSiamC3D(nn.Module):
    """MERSiamC3D's target-learning network: SinC3D, flatten, dense, dropout, softmax.

    Parameters
    ----------
    n_classes : int
        Number of classes (3 for the MEGC 2019 composite scheme).
    in_channels : int
        3 (u, v, magnitude) or 2 (u, v).
    frames, size : int
        Flow fields per clip (10) and crop side in pixels (112).
    resolution : int or None
        Side at which SinC3D works; None: ``size`` (the paper). A smaller
        value area-resamples each input first (flow rescaled to the new
        pixel size): about ``(size / resolution)^2`` times less computation,
        for CPU-only runs; not the paper's network.
    dense : int
        Units of the dense layer (512; the paper does not print it).
    dropout : float
        Dropout before the output layer (0.5).
    freeze : int
        How many of SinC3D's convolutions (from conv1) stay frozen during
        target learning (2, the paper's best, Table 7). Applied by
        :meth:`freeze_convs`, which the trainer calls after prior learning.

    Notes
    -----
    ``forward(keyframe_flow)``: ``(B, in_channels, frames, size, size)``
    float32 -> ``(B, n_classes)`` logits (the softmax of eq. 9 is applied
    by the loss and by prediction). float64 input is cast to float32.

    References
    ----------
    .. [1] Zhao et al., MERSiamC3D (2021), Sec. 3.2.2, Fig. 3B.
    """

    registry_name = "mersiamc3d"

    def __init__(self, n_classes: int = 3, *, in_channels: int = 3, frames: int = 10,
                 size: int = 112, resolution: int | None = None, dense: int = 512,
                 dropout: float = 0.5, freeze: int = 2) -> None:
        super().__init__()
        self.n_classes = check_int("n_classes", n_classes, 2)
        in_channels, frames, size = _check_geometry(in_channels, frames, size)
        self.input_shape = (in_channels, frames, size, size)
        self.freeze = check_int("freeze", freeze, 0)
        if self.freeze > 5:
            raise ParameterError(
                f"Invalid value for the 'freeze' parameter. SinC3D has 5 convolutions, so "
                f"at most 5 can be frozen, but got {freeze!r} instead."
            )
        self.resolution = _check_resolution(resolution, size)
        self.dense_units = check_int("dense", dense, 1)
        check_range("dropout", dropout, 0.0, 1.0, high_open=True)
        self.features = SinC3D(in_channels)
        flat = math.prod(SinC3D.output_shape(frames, self.resolution, self.resolution))
        self.dense = nn.Linear(flat, self.dense_units)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.dense_units, self.n_classes)
        _he_init(self.dense)

    def _input(self, keyframe_flow: torch.Tensor) -> torch.Tensor:
        x = check_input(self.registry_name, INPUT_NAME, keyframe_flow, self.input_shape)
        return _resample(x.to(self.classifier.weight.dtype), self.resolution)

    def forward(self, keyframe_flow: torch.Tensor) -> torch.Tensor:
        x = self.features(self._input(keyframe_flow)).flatten(1)
        x = self.dropout(F.relu(self.dense(x)))
        return self.classifier(x)

    def freeze_convs(self, n: int | None = None) -> list[str]:
        """Freeze conv1..conv``n`` of SinC3D (default: the ``freeze`` option).

        Sets ``requires_grad=False`` on their weights and biases and
        unfreezes the others. Returns the names of the frozen parameters.
        """
        n = self.freeze if n is None else check_int("n", n, 0)
        if n > 5:
            raise ParameterError(
                f"Invalid value for the 'n' parameter. SinC3D has 5 convolutions, but got "
                f"{n!r}."
            )
        frozen = []
        for i, conv in enumerate(self.features.convs):
            for name, p in conv.named_parameters():
                p.requires_grad_(i >= n)
                if i < n:
                    frozen.append(f"features.convs.{i}.{name}")
        return frozen


class SiameseC3D(nn.Module):
    """MERSiamC3D's prior-learning network (Fig. 3A): twin SinC3D branches.

    Parameters
    ----------
    features : SinC3D
        The SinC3D both branches use (one module: the twins share all
        weights). Pass the target network's ``features`` so that prior
        learning trains the convolutions target learning starts from.
    frames, size : int
        Geometry of each clip (10 flow fields, 112 x 112).
    resolution : int or None
        As for :class:`MERSiamC3D` (the target network's value).
    dense : int
        Embedding size D (512).

    Notes
    -----
    ``forward(first, second)``: two ``(B, C, frames, size, size)`` batches
    -> ``(B, 2)`` logits ``[0, s]`` with ``s`` the :class:`SiameseHead`
    logit, so that a softmax gives ``[1 - sigmoid(s), sigmoid(s)]``:
    cross-entropy on these two columns with target 1 for "same class" is
    exactly the binary cross-entropy of ``sigmoid(s)`` that the paper
    trains with, and the standard classification training loop applies.

    References
    ----------
    .. [1] Zhao et al., MERSiamC3D (2021), Sec. 3.2.1, eqs. 7-8.
    .. [2] Koch et al., ICML Deep Learning Workshop 2015.
    """

    registry_name = None  # not a recognition model: built by the MERSiamC3D trainer
    n_classes = 2

    def __init__(self, features: SinC3D, *, frames: int = 10, size: int = 112,
                 resolution: int | None = None, dense: int = 512) -> None:
        super().__init__()
        if not isinstance(features, SinC3D):
            raise ParameterError(
                f"Invalid value for the 'features' parameter: expected a SinC3D, but got "
                f"{type(features).__name__}."
            )
        in_channels = features.convs[0].in_channels
        in_channels, frames, size = _check_geometry(in_channels, frames, size)
        self.input_shape = (in_channels, frames, size, size)
        self.features = features
        self.resolution = _check_resolution(resolution, size)
        flat = math.prod(SinC3D.output_shape(frames, self.resolution, self.resolution))
        self.dense = nn.Linear(flat, check_int("dense", dense, 1))
        _he_init(self.dense)
        self.head = SiameseHead(self.dense.out_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, D)`` embedding (flatten, dense, ReLU)."""
        x = check_input("mersiamc3d (prior learning)", INPUT_NAME, x, self.input_shape)
        x = _resample(x.to(self.dense.weight.dtype), self.resolution)
        return F.relu(self.dense(self.features(x).flatten(1)))

    def similarity_logit(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """``(B,)`` logit of "same class" for each pair."""
        for name, x in (("first", first), ("second", second)):
            check_input("mersiamc3d (prior learning)", f"{INPUT_NAME} ({name} of each pair)",
                        x, self.input_shape)
        if first.shape[0] != second.shape[0]:
            raise ParameterError(
                f"The two sides of the pairs differ in batch size: {first.shape[0]} and "
                f"{second.shape[0]}."
            )
        b = first.shape[0]
        # One pass through the shared branch (no batch statistics: exactly two passes).
        both = self.embed(torch.cat([first, second.to(first.dtype)]))
        return self.head(both[:b], both[b:])

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        s = self.similarity_logit(first, second)
        return torch.stack([torch.zeros_like(s), s], dim=1)
