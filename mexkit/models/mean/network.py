"""MEAN: the shallow multi-stream, multi-output Micro-Expression Analysis Network.

Three streams take the horizontal flow ``u``, the vertical flow ``v`` and the
optical strain magnitude of a 42x42 MEAN-region image (left eye and brow,
right eye and brow, mouth; see :mod:`mexkit.face`). Each stream is a 5x5
convolution with 'same' padding (3, 3 and 8 filters), ReLU, batch
normalisation, 3x3 max-pooling with stride 3 (42 -> 14) and dropout 0.3; the
three outputs are concatenated (14 channels of 14x14). These are the *shared*
layers. Two task heads follow, each a 5x5 'same' convolution with 8 filters,
ReLU, 2x2 max-pooling (14 -> 7), flatten (392), dropout 0.2 and a dense
layer:

- spotting: one linear output, trained with MSE against IoU pseudo-labels;
- recognition: ``n_classes`` outputs; :meth:`MEAN.forward` returns logits and
  softmax is applied by the loss or by :func:`mexkit.learn.train.predict`.

Training is two-step (inductive transfer): the spotting head is trained with
the shared layers, then the shared layers are frozen
(:meth:`MEAN.freeze_shared`) and the recognition head is trained.

Layer order, dropout rates, L2 kernel penalties (0.001 on the stream
convolutions, 0.1 on the head convolutions), Glorot-uniform initialisation
and Keras' batch-norm constants (momentum 0.99, epsilon 0.001) follow the
authors' public Keras code, since the paper does not give them.

Parameter count
---------------
The paper's 7,608 parameters (3 classes) are the whole two-head network as
Keras counts it, batch-norm moving mean and variance included::

    stream u       conv 5*5*1*3 + 3 = 78     BN 4*3 = 12
    stream v       conv 5*5*1*3 + 3 = 78     BN 4*3 = 12
    stream strain  conv 5*5*1*8 + 8 = 208    BN 4*8 = 32   shared = 420
    spotting head  conv 5*5*14*8 + 8 = 2808  dense 392*1 + 1 = 393
    recog. head    conv 5*5*14*8 + 8 = 2808  dense 392*3 + 3 = 1179
    total          420 + 2808 + 393 + 2808 + 1179 = 7608

(in general ``6429 + 393 * n_classes``). PyTorch's own count leaves out the
28 moving statistics (2 x 14 channels): 7,580. See :func:`mexkit.models.registry.count_parameters`.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Processing: Image Communication 110 (2023) 116875.
.. [2] G.-B. Liong, J. See, L.-K. Wong, "Shallow optical flow three-stream
   CNN for macro- and micro-expression spotting from long videos", ICIP
   2021, pp. 2643-2647.
"""
from __future__ import annotations

import torch
from torch import nn

from ..._validate import check_option
from .._nn import check_input

__all__ = ["MEAN", "MEAN_INPUT_SHAPE"]

MEAN_INPUT_SHAPE = (3, 42, 42)
_STREAM_FILTERS = (3, 3, 8)
_HEADS = ("recognition", "spotting")


def _stream(filters: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, filters, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01),
        nn.MaxPool2d(kernel_size=3, stride=3),
        nn.Dropout(dropout),
    )


def _head(in_channels: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(8 * 7 * 7, outputs),
    )


class MEAN(nn.Module):
    """MEAN with its shared three-stream trunk and both task heads.

    Parameters
    ----------
    n_classes : int
        Number of emotion classes of the recognition head (3 in the paper).
    head : {"recognition", "spotting"}
        The head :meth:`forward` uses unless told otherwise.
    stream_dropout, head_dropout : float
        Dropout after each stream's pooling and before each dense layer
        (0.3 and 0.2 in the public code).
    l2_stream, l2_head : float
        L2 kernel penalties returned by :meth:`regularization_loss`
        (Keras ``l2(0.001)`` and ``l2(0.1)`` in the public code); 0 disables.

    Notes
    -----
    Input ``mean_regions``: ``(B, 3, 42, 42)`` float32, channels u, v,
    strain (pixels per frame pair, strain dimensionless).
    Output: ``(B, n_classes)`` logits (recognition) or ``(B,)`` scores
    (spotting).
    """

    registry_name = "mean"
    #: :meth:`train` sets modules' training flags and nothing else (mexkit.learn.train
    #: may then set the flags directly)
    train_sets_flags_only = True

    def __init__(self, n_classes: int = 3, *, head: str = "recognition",
                 stream_dropout: float = 0.3, head_dropout: float = 0.2,
                 l2_stream: float = 1e-3, l2_head: float = 0.1) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.head = check_option("head", head, _HEADS)
        self.l2_stream = float(l2_stream)
        self.l2_head = float(l2_head)
        self.streams = nn.ModuleList(_stream(f, stream_dropout) for f in _STREAM_FILTERS)
        shared_channels = sum(_STREAM_FILTERS)
        self.spot_head = _head(shared_channels, 1, head_dropout)
        self.recog_head = _head(shared_channels, self.n_classes, head_dropout)
        self._shared_frozen = False
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    # -- layers -------------------------------------------------------------
    def shared(self, mean_regions: torch.Tensor) -> torch.Tensor:
        """Run the shared trunk: ``(B, 3, 42, 42)`` -> ``(B, 14, 14, 14)``."""
        x = self._check(mean_regions)
        return torch.cat(
            [stream(x[:, i:i + 1]) for i, stream in enumerate(self.streams)], dim=1
        )

    def forward(self, mean_regions: torch.Tensor, *, head: str | None = None) -> torch.Tensor:
        """Return recognition logits ``(B, n_classes)`` or spotting scores ``(B,)``."""
        head = self.head if head is None else check_option("head", head, _HEADS)
        z = self.shared(mean_regions)
        if head == "spotting":
            return self.spot_head(z).squeeze(1)
        return self.recog_head(z)

    def forward_both(self, mean_regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(spotting scores (B,), recognition logits (B, n_classes))``."""
        z = self.shared(mean_regions)
        return self.spot_head(z).squeeze(1), self.recog_head(z)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input("mean", "mean_regions", x, MEAN_INPUT_SHAPE)
        ref = self.spot_head[0].weight
        return x.to(dtype=ref.dtype)

    # -- inductive transfer -------------------------------------------------
    def freeze_shared(self, frozen: bool = True) -> MEAN:
        """Freeze (or unfreeze) the shared layers for the recognition stage.

        Frozen layers get ``requires_grad=False`` and their batch
        normalisation stays in inference mode (moving statistics fixed) even
        when the model is in training mode, as a non-trainable Keras layer
        behaves.
        """
        self._shared_frozen = bool(frozen)
        for p in self.streams.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)
        return self

    @property
    def shared_frozen(self) -> bool:
        """Whether :meth:`freeze_shared` is in effect."""
        return self._shared_frozen

    def train(self, mode: bool = True) -> MEAN:
        super().train(mode)
        if self._shared_frozen:
            for m in self.streams.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def regularization_loss(self) -> torch.Tensor:
        """L2 kernel penalty of the trainable convolutions of the active head.

        ``l2_stream * sum(w**2)`` over the stream kernels (when not frozen)
        plus ``l2_head * sum(w**2)`` over the active head's convolution
        kernel; :func:`mexkit.learn.train.fit` adds it to the loss, as Keras
        adds kernel regularisers.
        """
        ref = self.spot_head[0].weight
        total = ref.new_zeros(())
        if self.l2_stream and not self._shared_frozen:
            for stream in self.streams:
                total = total + self.l2_stream * stream[0].weight.pow(2).sum()
        head = self.spot_head if self.head == "spotting" else self.recog_head
        if self.l2_head and head[0].weight.requires_grad:
            total = total + self.l2_head * head[0].weight.pow(2).sum()
        return total
