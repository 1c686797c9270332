"""STSTNet: the shallow triple-stream network of the MEGC 2019 baseline (pure torch).

Three parallel 3x3 convolutions (3, 5 and 8 filters) read the same 28x28
image of onset-apex optical flow (u, v and optical strain); each stream is
ReLU, batch normalisation, 3x3 max-pooling with stride 3 and dropout; the 16
maps of 10x10 are concatenated, average-pooled 2x2 to 5x5 and flattened (400
values) into one fully connected layer.  Table I of [1]_ gives the layer
sizes; the authors' MATLAB network (``STSTNet.mat``: an image input layer
with ``zerocenter`` normalisation, 'same' padding) and PyTorch port
(``main.py``), both public, give the order inside a stream (convolution,
ReLU, batch norm, pooling, dropout) and the dropout.

Every layer after the convolutions acts channel by channel (ReLU, batch
norm, pooling, dropout), so the three streams are computed here as one
convolution of 3 + 5 + 8 = 16 filters whose channels 0-2, 3-7 and 8-15 are
the streams, with one batch norm over the 16 channels: the same function
and the same parameters as three separate streams concatenated (their order
is that of the concatenation, so the classifier's weights are laid out as in
the authors' networks), in one call per layer instead of three.
:func:`streams_state` turns the authors' per-stream PyTorch weights into this
layout.

The paper's convolutions keep the 28x28 size ('same' padding, 1 pixel); the
authors' PyTorch port pads 2 pixels (30x30 maps), which max-pooling brings to
the same 10x10.  ``padding=2`` reproduces the port, and with it the port's
published weights (a test loads them).  Parameters: 448 in the convolutions,
32 in batch normalisation, 1,203 in the classifier (3 classes): 1,683; the
paper's Table V states 1,670 (0.00167 million).

References
----------
.. [1] S.-T. Liong, Y. S. Gan, J. See, H.-Q. Khor, Y.-C. Huang, "Shallow
   Triple Stream Three-dimensional CNN (STSTNet) for Micro-expression
   Recognition", 14th IEEE International Conference on Automatic Face and
   Gesture Recognition (FG 2019), arXiv:1902.03634.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ...errors import ModelInputError, ParameterError

__all__ = ["STSTNet", "STREAM_FILTERS", "INITIALISATIONS", "streams_state"]

#: Filters of the three streams (Table I: C1-1, C1-2, C1-3).
STREAM_FILTERS = (3, 5, 8)
#: ``"matlab"``: what MATLAB R2018b (the authors' ``main.m``) starts from: weights drawn
#: from N(0, 0.01^2), biases 0; ``"torch"``: PyTorch's default initialisation (the
#: authors' port).
INITIALISATIONS = ("matlab", "torch")


class STSTNet(nn.Module):
    """The shallow triple-stream network [1]_.

    Parameters
    ----------
    n_classes : int
        Outputs of the classifier (3 for the MEGC 2019 composite).
    in_channels : int
        Channels of the input image (3: u, v, strain).
    padding : {1, 2}
        Zero padding of the 3x3 convolutions: 1 as the paper ('same'), 2 as
        the authors' PyTorch port.
    dropout : float
        Dropout after each stream's pooling (0.5 in the authors' code).
    size : int
        Side of the square input (28 in the paper).
    init : {"matlab", "torch"}
        Initial weights (:data:`INITIALISATIONS`).

    Notes
    -----
    ``forward(flow_image)`` takes ``(B, in_channels, size, size)`` float
    images and returns ``(B, n_classes)`` logits.  The buffer ``input_mean``
    (``(in_channels, size, size)``, zero unless set) is subtracted from every
    image first: MATLAB's ``zerocenter`` input layer, whose mean image is the
    training set's (set by the model's trainer).  Both of the authors'
    programs feed the 8-bit images' values (0..255) without rescaling; the
    PyTorch port reads the images with OpenCV, so its channels arrive as
    (strain, v, u).  The convolution runs in channels-last memory order
    (several times faster on a CPU for so few channels).

    References
    ----------
    .. [1] S.-T. Liong et al., "Shallow Triple Stream Three-dimensional CNN
       (STSTNet) for Micro-expression Recognition", FG 2019, Table I.
    """

    registry_name = "ststnet"

    def __init__(self, n_classes: int = 3, *, in_channels: int = 3, padding: int = 1,
                 dropout: float = 0.5, size: int = 28, init: str = "matlab") -> None:
        super().__init__()
        if n_classes < 1 or in_channels < 1:
            raise ParameterError(f"n_classes and in_channels must be positive, but got "
                                 f"{n_classes} and {in_channels}")
        if padding not in (1, 2):
            raise ParameterError(f"Invalid value for the 'padding' parameter. Allowed values "
                                 f"are 1, 2, but got {padding!r} instead.")
        if init not in INITIALISATIONS:
            raise ParameterError(f"Invalid value for the 'init' parameter. Allowed values "
                                 f"are {', '.join(INITIALISATIONS)}, but got {init!r} "
                                 "instead.")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout must be in [0, 1), but got {dropout}")
        pooled = (size + 2 * padding - 2 + 2 - 3) // 3 + 1  # conv 3x3, then pool 3/3 pad 1
        if pooled < 2:
            raise ParameterError(f"an input of {size}x{size} is too small for STSTNet")
        self.size = size
        self.in_channels = in_channels
        self.n_classes = n_classes
        width = sum(STREAM_FILTERS)
        self.conv = nn.Conv2d(in_channels, width, kernel_size=3, padding=padding)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2)
        side = pooled // 2
        self.fc = nn.Linear(width * side * side, n_classes)
        self.register_buffer("input_mean", torch.zeros(in_channels, size, size))
        if init == "matlab":
            for layer in (self.conv, self.fc):
                nn.init.normal_(layer.weight, 0.0, 0.01)
                nn.init.zeros_(layer.bias)

    def features(self, flow_image: torch.Tensor) -> torch.Tensor:
        """The 400 pooled values (``(B, 16 * 5 * 5)`` at 28x28) before the classifier,
        channel-major: stream 1's 3 maps, then stream 2's 5, then stream 3's 8."""
        if flow_image.ndim != 4 or flow_image.shape[1:] != (self.in_channels, self.size,
                                                            self.size):
            raise ModelInputError(f"STSTNet takes (B, {self.in_channels}, {self.size}, "
                                  f"{self.size}) images, but got {tuple(flow_image.shape)}")
        x = (flow_image - self.input_mean).contiguous(memory_format=torch.channels_last)
        x = self.dropout(self.pool(self.bn(torch.relu(self.conv(x)))))
        return self.avgpool(x).contiguous().flatten(1)

    def forward(self, flow_image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(flow_image))


def streams_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' PyTorch weights (``conv1``/``bn1`` ... ``conv3``/``bn3``, ``fc``: one
    convolution and batch norm per stream) in :class:`STSTNet`'s layout (the streams'
    channels side by side, in stream order).

    Raises
    ------
    ParameterError
        A stream is missing from ``state``.
    """
    parts: dict[str, list[tuple[int, torch.Tensor]]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(r"(conv|bn)([123])\.(.+)", key)
        if m is None:
            out[key] = value
            continue
        parts.setdefault(f"{m.group(1)}.{m.group(3)}", []).append((int(m.group(2)), value))
    for key, items in parts.items():
        if sorted(i for i, _ in items) != [1, 2, 3]:
            raise ParameterError(f"the authors' STSTNet weights hold {key} of streams "
                                 f"{sorted(i for i, _ in items)}, not of all three")
        values = [v for _, v in sorted(items, key=lambda t: t[0])]
        # num_batches_tracked is a count, the same in every stream's batch norm
        out[key] = values[0] if values[0].ndim == 0 else torch.cat(values)
    return out
