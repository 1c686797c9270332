"""ATNet: the Apex-Time Network for cross-dataset micro-expression recognition.

Two streams:

- spatial: a ResNet-10 (a 7x7/2 stem with 64 filters and 3x3/2 max-pooling,
  then one basic residual block per stage with 64, 128, 256 and 512
  filters, global average pooling) on the apex frame, ``(B, 3, 224, 224)``
  -> 512-d;
- temporal: a 2-layer LSTM with 512 units over the average
  direction-magnitude feature, ``(B, 64, 128)`` (64 flow fields around the
  apex, 8x8 blocks x (mean magnitude, mean direction)) -> 512-d.

Both 512-d vectors are L2-normalised (eq. 7) and concatenated (1024),
followed by dropout 0.5 and a linear classifier. The paper also evaluates
each stream alone (Tables II and III): ``streams="spatial"`` and
``streams="temporal"`` build those variants (registered as
``atnet-spatial`` and ``atnet-temporal``).

Choices where the paper is silent:

- the temporal stream's 512-d output is the second LSTM layer's last hidden
  state (``temporal_pool="last"``); the authors' Caffe network averages the
  LSTM outputs over the 64 steps instead (``temporal_pool="mean"``);
- the ResNet-10 uses post-activation basic blocks (conv-BN-ReLU, as in He et
  al. 2016); the authors' Caffe ResNet-10 is a pre-activation variant with a
  batch-norm on the input image. The ImageNet and macro-expression
  pre-training of the paper is not reproduced (those weights are not
  published); the spatial stream starts from He initialisation;
- global average pooling is a plain mean over the feature map, which has a
  deterministic backward pass on CUDA (``AdaptiveAvgPool2d`` has not).

References
----------
.. [1] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A Novel Apex-Time
   Network for Cross-Dataset Micro-Expression Recognition", ACII 2019.
.. [2] M. Peng, Z. Wu, Z. Zhang, T. Chen, "From Macro to Micro Expression
   Recognition: Deep Learning on Small Datasets Using Transfer Learning",
   FG 2018 (the ResNet-10 spatial stream).
.. [3] K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
   Recognition", CVPR 2016.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..._validate import check_option
from ...errors import ModelInputError, ParameterError
from .._nn import BasicBlock, check_input, init_resnet

__all__ = ["ATNet", "ResNet10", "REGISTRY_NAMES"]

_STREAMS = ("both", "spatial", "temporal")
REGISTRY_NAMES = {"both": "atnet", "spatial": "atnet-spatial", "temporal": "atnet-temporal"}


class ResNet10(nn.Module):
    """ResNet-10 feature extractor: ``(B, 3, H, W)`` -> ``(B, 512)``.

    Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), one :class:`BasicBlock` per
    stage (64, 128/2, 256/2, 512/2), global average pooling. H and W of at
    least 32 work; ATNet uses 224.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.layers = nn.Sequential(
            BasicBlock(64, 64),
            BasicBlock(64, 128, 2),
            BasicBlock(128, 256, 2),
            BasicBlock(256, 512, 2),
        )
        init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x)).mean(dim=(2, 3))


class ATNet(nn.Module):
    """Apex-Time Network (spatial + temporal streams, L2-normalised fusion).

    Parameters
    ----------
    n_classes : int
        Number of classes (3 in the paper: negative, positive, surprise).
    streams : {"both", "spatial", "temporal"}
        Fusion (the paper's ATNet) or one stream alone.
    dropout : float
        Dropout after the concatenation (0.5 in the paper).
    hidden_size : int
        LSTM units per layer (512).
    image_size : int
        Apex frame side in pixels (224).
    seq_len, feature_dim : int
        Direction-magnitude feature shape (64 flow fields x 128 values).
    temporal_pool : {"last", "mean"}
        Temporal output: last hidden state of the second LSTM layer, or the
        mean of its outputs over time (the authors' Caffe network).

    Notes
    -----
    ``forward(apex_rgb, direction_magnitude)``: ``apex_rgb`` is ``(B, 3,
    image_size, image_size)`` float32 (any consistent intensity scaling;
    the batch statistics of the stem absorb it), ``direction_magnitude`` is
    ``(B, seq_len, feature_dim)`` float32. Returns ``(B, n_classes)``
    logits. A single-stream variant needs only its own input.
    """

    def __init__(self, n_classes: int = 3, *, streams: str = "both", dropout: float = 0.5,
                 hidden_size: int = 512, image_size: int = 224, seq_len: int = 64,
                 feature_dim: int = 128, temporal_pool: str = "last") -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.streams = check_option("streams", streams, _STREAMS)
        self.temporal_pool = check_option("temporal_pool", temporal_pool, ("last", "mean"))
        if image_size < 32:
            raise ParameterError(
                f"Invalid value for the 'image_size' parameter. It must be at least 32, "
                f"but got {image_size!r} instead."
            )
        self.registry_name = REGISTRY_NAMES[self.streams]
        self.image_shape = (3, int(image_size), int(image_size))
        self.sequence_shape = (int(seq_len), int(feature_dim))
        width = 0
        self.spatial: ResNet10 | None = None
        self.temporal: nn.LSTM | None = None
        if self.streams in ("both", "spatial"):
            self.spatial = ResNet10()
            width += 512
        if self.streams in ("both", "temporal"):
            self.temporal = nn.LSTM(feature_dim, hidden_size, num_layers=2, batch_first=True)
            width += hidden_size
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, self.n_classes)

    def _dtype(self) -> torch.dtype:
        return self.classifier.weight.dtype

    def _apex(self, apex_rgb: torch.Tensor) -> torch.Tensor:
        x = check_input(self.registry_name, "apex_rgb", apex_rgb, self.image_shape)
        return x.to(self._dtype())

    def _dm(self, direction_magnitude: torch.Tensor) -> torch.Tensor:
        x = check_input(self.registry_name, "direction_magnitude", direction_magnitude,
                        self.sequence_shape)
        return x.to(self._dtype())

    def spatial_features(self, apex_rgb: torch.Tensor) -> torch.Tensor:
        """L2-normalised spatial feature, ``(B, 512)``."""
        return F.normalize(self.spatial(self._apex(apex_rgb)), dim=1)

    def temporal_features(self, direction_magnitude: torch.Tensor) -> torch.Tensor:
        """L2-normalised temporal feature, ``(B, hidden_size)``."""
        out, _ = self.temporal(self._dm(direction_magnitude))
        h = out[:, -1] if self.temporal_pool == "last" else out.mean(dim=1)
        return F.normalize(h, dim=1)

    def forward(self, apex_rgb: torch.Tensor | None = None,
                direction_magnitude: torch.Tensor | None = None) -> torch.Tensor:
        """Return class logits ``(B, n_classes)``."""
        # Check every input before any computation.
        apex = self._apex(apex_rgb) if self.spatial is not None else None
        dm = self._dm(direction_magnitude) if self.temporal is not None else None
        if apex is not None and dm is not None and apex.shape[0] != dm.shape[0]:
            raise ModelInputError(
                f"Model {self.registry_name!r}: the inputs disagree on the batch size: "
                f"apex_rgb has {apex.shape[0]} samples, direction_magnitude {dm.shape[0]}."
            )
        parts = []
        if apex is not None:
            parts.append(self.spatial_features(apex))
        if dm is not None:
            parts.append(self.temporal_features(dm))
        z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.classifier(self.dropout(z))
