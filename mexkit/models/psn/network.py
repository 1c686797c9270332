"""PSN: the Parallel Spatiotemporal Network for micro-expression recognition.

Input
-----
Every clip is interpolated to 150 frames with TIM, decomposed by RPCA
(``D = A + E``) and 16 frames are kept (positions 1, 11, ..., 141, 150 of
the 150, 1-based), at 112 x 112 grey (``mexkit rpca --psn``). Two inputs
of shape ``(B, 16, 112, 112)`` enter the network:

- ``psn_sparse``, the sparse part ``E`` at the 16 positions (in grey
  levels), goes to the spatial sub-network;
- ``psn_frames``, the TIM-normalised grey frames themselves at the same 16
  positions (intensity in [0, 1]), goes to the temporal sub-network: the
  paper vectorises "the original frame image" as the TPU input ``x_t``, and
  its ``PSN_swap`` ablation, which exchanges the two inputs, fails "because
  the input of the spatial sub-network does not go through RPCA".

How the 16 frames enter the spatial sub-network: *one frame at a time*,
with weights shared over the frames, not stacked as 16 channels. The paper's
fusion (Sec. 2.3) reshapes both sub-networks' outputs to matrices of
``(samples x frames) x 4096`` rows ("a feature map of size 80 x 4096", i.e.
5 clips x 16 frames), which holds only if the spatial network yields one
4096-d vector per frame, as the TPU yields one output ``y_t`` per step.

Spatial sub-network (Table 1, an AlexNet with a 7x7 first kernel and 256
channels in conv4), on each ``(1, 112, 112)`` sparse frame::

    conv1 7x7x96,  pad 1, stride 2, ReLU   -> 96 x 54 x 54
    pool1 3x3 max, pad 1, stride 2         -> 96 x 27 x 27
    conv2 5x5x256, pad 2, stride 2, ReLU   -> 256 x 14 x 14
    pool2 3x3 max, pad 1, stride 2         -> 256 x 7 x 7
    conv3 3x3x384, pad 1, ReLU             -> 384 x 7 x 7
    conv4 3x3x256, pad 1, ReLU             -> 256 x 7 x 7
    conv5 3x3x256, pad 1, ReLU             -> 256 x 7 x 7
    pool5 3x3 max, pad 1, stride 2         -> 256 x 4 x 4  (4096 values)
    FC 4096, ReLU                          -> 4096

Temporal sub-network: the Temporal Perception Unit (eqs. 7-9 and 4), on
``x_t``, the vectorised frame (12,544 values), ``t = 0 .. 15``::

    h~_t = tanh(W_I x_t + W_H h_{t-1})
    tp_t = std(x_t - x_{t-1})
    h_t  = tanh(W (tp_t * h~_t))
    y_t  = tanh(W_O h_t)

then an FC layer of 4096 with ReLU on every ``y_t``. Biases, which the
paper omits "for simplicity", are kept (one on ``W_I x_t + W_H h_{t-1}``,
one each on ``W`` and ``W_O``). ``h_{-1} = 0``; ``x_{-1} = x_0``, so that
``tp_0 = 0`` (no motion before the first frame); ``std`` is the population
standard deviation over the 12,544 pixels (divisor ``n``).

Fusion (Sec. 2.3): the two ``(B x 16) x 4096`` matrices are added element
by element; each 4096-d row is reshaped to ``256 x 4 x 4`` and a 1x1
convolution with 4 output channels and ReLU gives ``4 x 4 x 4 = 64`` values
per frame; the 16 frames' 64 values are concatenated per clip (1024),
followed by dropout 0.5 ("dropout is implemented in the classifier") and
the fully-connected classifier. :meth:`PSN.forward` returns logits; the
softmax is in the loss (eq. 11) or in :func:`mexkit.learn.train.predict`.

The 82,240 and 20,976,640 parameters (Sec. 3.4.2)
-------------------------------------------------
The paper counts the 1x1 module as ``4 x (256 + 1) x 80 = 82,240`` and a
dense layer from the fused 4096 values to the same 64 outputs as
``64 x (4096 + 1) x 80 = 20,976,640``. Both are per-row counts multiplied
by the 80 rows of one batch (5 clips x 16 frames); the weights are shared
over the rows, so the layers really hold ``4 x 257 = 1,028`` and
``64 x 4097 = 262,208`` parameters. The ratio, 255, is the same either
way. :func:`fusion_parameter_counts` reproduces both pairs from a built
model; ``no_conv=True`` builds that dense 4096 -> 64 layer in place of the
1x1 convolution (the paper's ``PSN_no_conv``).

Ablations (Sec. 3.4.2, Fig. 7 and Table 9), as constructor options:
``streams="spatial"`` / ``"temporal"`` (``PSN_spatial``, ``PSN_temporal``:
one sub-network, no addition), ``tp_one=True`` (``PSN_tp1``: ``tp_t = 1``),
``fusion="concat"`` (CONCAT: 8192-d rows, reshaped to ``512 x 4 x 4``, the
1x1 convolution then has 512 input channels) and ``no_conv=True``.

Choices where the paper is silent: the TPU's hidden and output sizes
(``hidden_size=512`` for both); ReLU after the two FC-4096 layers and after
the 1x1 convolution (AlexNet puts ReLU after its FC layers); floor-mode
pooling (Caffe rounds pooling sizes up, which would give 256 x 5 x 5 after
pool5 instead of the 256 x 4 x 4 = 4096 the paper's reshape implies); no
local response normalisation (Table 1 lists none); the per-clip classifier
on the concatenated frames.

Initialisation (the paper gives none): He's normal initialisation [4]_ and
zero biases for every layer followed by a ReLU; the TPU and the classifier
keep PyTorch's defaults. The network has no normalisation layer, and under
PyTorch's default (uniform, gain ``1/sqrt(3)`` per layer) the sparse frames
(standard deviation about 0.3 grey levels on synthetic clips) reached the
FC 4096 output at about 4 % of their scale, no larger than the biases' part:
on one leave-one-subject-out fold of the 36 synthetic clips the training
accuracy was still 0.57 after 8 epochs (Adam 3e-4, cosine), against 1.0
after 6 epochs at Adam 1e-4 with He's initialisation. ``init="torch"``
keeps PyTorch's default.

The TPU's temporal perception coefficient is small on micro-expressions:
with ``x_t`` in [0, 1] intensity, ``tp_t`` is about 0.003 on the synthetic
clips (1.5-3 px of motion), so ``h_t`` is nearly ``tanh(b)`` and the
temporal sub-network's output hardly depends on the clip until ``W``
grows; the temporal stream alone (``streams="temporal"``) did not learn the
synthetic classes in 15 epochs, with the frames in [0, 1] or in grey levels.

References
----------
.. [1] J. Li, S.-J. Wang, Y. Wang, H. Zhou, X. Fu, "Parallel Spatiotemporal
   Network to Recognize Micro-Expression" (PSN).
.. [2] A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification
   with Deep Convolutional Neural Networks", NIPS 2012 (AlexNet).
.. [3] S.-J. Wang, W.-J. Yan, G. Zhao, X. Fu, C.-G. Zhou, "Micro-expression
   recognition using robust principal component analysis and local
   spatiotemporal directional features", ECCV Workshops 2014 (RPCA input).
.. [4] K. He, X. Zhang, S. Ren, J. Sun, "Delving Deep into Rectifiers:
   Surpassing Human-Level Performance on ImageNet Classification", ICCV 2015.
"""
from __future__ import annotations

import torch
from torch import nn

from ..._validate import check_int, check_option
from ...errors import ModelInputError

__all__ = [
    "PSN",
    "PSNSpatial",
    "TemporalPerceptionUnit",
    "PSN_FRAMES",
    "PSN_SIZE",
    "STREAMS",
    "FUSIONS",
    "fusion_parameter_counts",
    "temporal_perception",
]

PSN_FRAMES = 16
PSN_SIZE = 112
_FEATURES = 4096
_FUSED_CHANNELS = 256  # 4096 = 256 x 4 x 4
_FUSED_SIDE = 4
_CONV_OUT = 4          # 1x1 convolution output channels: 4 x 4 x 4 = 64 per frame
STREAMS = ("both", "spatial", "temporal")
FUSIONS = ("add", "concat")
_INITS = ("he", "torch")


def temporal_perception(x: torch.Tensor) -> torch.Tensor:
    """The temporal perception coefficients ``tp_t = std(x_t - x_{t-1})`` (eq. 7).

    Parameters
    ----------
    x : torch.Tensor, shape (B, T, D)
        Vectorised frames.

    Returns
    -------
    tp : torch.Tensor, shape (B, T)
        Population standard deviation (divisor ``D``) over the ``D`` values
        of each frame difference; ``tp[:, 0] = 0`` (``x_{-1} = x_0``).

    References
    ----------
    .. [1] PSN, Sec. 2.2, eq. 7.
    """
    diff = x[:, 1:] - x[:, :-1]
    tp = diff.std(dim=2, unbiased=False)
    return torch.cat([tp.new_zeros(x.shape[0], 1), tp], dim=1)


class TemporalPerceptionUnit(nn.Module):
    """The Temporal Perception Unit: an RNN whose hidden state is scaled by ``tp_t``.

    For ``t = 0 .. T-1``, with ``h_{-1} = 0``::

        h~_t = tanh(W_I x_t + W_H h_{t-1} + b_I)       (eq. 8)
        tp_t = std(x_t - x_{t-1})                       (eq. 7)
        h_t  = tanh(W (tp_t * h~_t) + b)                (eq. 9)
        y_t  = tanh(W_O h_t + b_O)                      (eq. 4)

    Parameters
    ----------
    input_size : int
        Length ``D`` of the vectorised frame.
    hidden_size : int
        Size of ``h~_t`` and ``h_t``.
    output_size : int
        Size of ``y_t``.
    tp_one : bool
        Use ``tp_t = 1`` for every step (the paper's ``PSN_tp1`` ablation).

    Attributes
    ----------
    input_weight : nn.Linear
        ``W_I`` and ``b_I``.
    hidden_weight : nn.Linear
        ``W_H`` (no bias).
    perception_weight : nn.Linear
        ``W`` and ``b`` of eq. 9.
    output_weight : nn.Linear
        ``W_O`` and ``b_O``.

    References
    ----------
    .. [1] PSN, Sec. 2.2, eqs. 4 and 7-9.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, *,
                 tp_one: bool = False) -> None:
        super().__init__()
        self.hidden_size = check_int("hidden_size", hidden_size, 1)
        self.tp_one = bool(tp_one)
        self.input_weight = nn.Linear(check_int("input_size", input_size, 1), hidden_size)
        self.hidden_weight = nn.Linear(hidden_size, hidden_size, bias=False)
        self.perception_weight = nn.Linear(hidden_size, hidden_size)
        self.output_weight = nn.Linear(hidden_size, check_int("output_size", output_size, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the unit over a sequence of vectorised frames ``x``, ``(B, T, D)``.

        Returns
        -------
        y : torch.Tensor, shape (B, T, output_size)
            The outputs ``y_t`` of every step.
        h : torch.Tensor, shape (B, T, hidden_size)
            The states ``h_t`` of every step.
        """
        if x.ndim != 3 or x.shape[1] < 1:
            raise ModelInputError(
                f"TemporalPerceptionUnit needs a (B, T, D) sequence with T >= 1, but got "
                f"shape {tuple(x.shape)}.")
        B, T, _ = x.shape
        if self.tp_one:
            tp = x.new_ones(B, T)
        else:
            tp = temporal_perception(x)
        drive = self.input_weight(x)  # W_I x_t + b_I for every step at once
        h = x.new_zeros(B, self.hidden_size)
        states = []
        for t in range(T):
            h_tilde = torch.tanh(drive[:, t] + self.hidden_weight(h))
            h = torch.tanh(self.perception_weight(tp[:, t, None] * h_tilde))
            states.append(h)
        hs = torch.stack(states, dim=1)
        return torch.tanh(self.output_weight(hs)), hs


class PSNSpatial(nn.Module):
    """PSN's spatial sub-network (Table 1) on single ``(1, 112, 112)`` frames.

    ``(N, 1, 112, 112)`` -> ``(N, 4096)``; see the module docstring for the
    layer sizes.

    References
    ----------
    .. [1] PSN, Sec. 2.1, Table 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 96, 7, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(96, 256, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.fc = nn.Linear(_FUSED_CHANNELS * _FUSED_SIDE * _FUSED_SIDE, _FEATURES)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 112, 112)`` -> ``(N, 4096)``."""
        z = self.features(frames).flatten(1)
        return torch.relu(self.fc(z))


class PSN(nn.Module):
    """The Parallel Spatiotemporal Network.

    Parameters
    ----------
    n_classes : int
        Number of classes (4 in the paper: positive, negative, surprise,
        others).
    streams : {"both", "spatial", "temporal"}
        Both sub-networks (PSN), or one of them alone (``PSN_spatial``,
        ``PSN_temporal``).
    fusion : {"add", "concat"}
        Element-wise addition (the paper's choice) or concatenation (Table 9).
    tp_one : bool
        ``tp_t = 1`` in the TPU (``PSN_tp1``).
    no_conv : bool
        Replace the 1x1 convolution by a dense layer from the fused row to
        the same 64 values (``PSN_no_conv``).
    hidden_size : int
        TPU hidden and output size (the paper gives none; 512).
    dropout : float
        Dropout before the classifier.
    n_frames : int
        Frames per clip (16 in the paper; the classifier takes ``n_frames x
        64`` values).
    init : {"he", "torch"}
        Initialisation of the layers followed by a ReLU (the spatial
        sub-network, the temporal FC 4096, the fusion layer): He's normal
        initialisation with zero biases, or PyTorch's default (uniform with
        gain ``1/sqrt(3)``, under which the sparse frames' signal shrinks to
        a few percent of its scale at the FC 4096 output; see the module
        docstring).

    Notes
    -----
    ``forward(psn_sparse=..., psn_frames=...)`` takes both inputs as
    ``(B, 16, 112, 112)`` float tensors; a single-stream model needs only its
    own. Returns logits ``(B, n_classes)``.

    References
    ----------
    .. [1] PSN, Secs. 2.1-2.3 and 3.4.2.
    """

    registry_name = "psn"

    def __init__(self, n_classes: int, *, streams: str = "both", fusion: str = "add",
                 tp_one: bool = False, no_conv: bool = False, hidden_size: int = 512,
                 dropout: float = 0.5, n_frames: int = PSN_FRAMES, init: str = "he") -> None:
        super().__init__()
        self.n_classes = check_int("n_classes", n_classes, 2)
        self.streams = check_option("streams", streams, STREAMS)
        self.fusion = check_option("fusion", fusion, FUSIONS)
        self.tp_one = bool(tp_one)
        self.no_conv = bool(no_conv)
        self.init = check_option("init", init, _INITS)
        self.n_frames = check_int("n_frames", n_frames, 2)
        self.frame_shape = (self.n_frames, PSN_SIZE, PSN_SIZE)
        self.spatial = PSNSpatial() if streams in ("both", "spatial") else None
        self.tpu: TemporalPerceptionUnit | None = None
        self.temporal_fc: nn.Linear | None = None
        if streams in ("both", "temporal"):
            hidden_size = check_int("hidden_size", hidden_size, 1)
            self.tpu = TemporalPerceptionUnit(PSN_SIZE * PSN_SIZE, hidden_size, hidden_size,
                                              tp_one=tp_one)
            self.temporal_fc = nn.Linear(hidden_size, _FEATURES)
        width = 2 * _FEATURES if (streams == "both" and fusion == "concat") else _FEATURES
        self.fused_width = width
        per_frame = _CONV_OUT * _FUSED_SIDE * _FUSED_SIDE
        if self.no_conv:
            self.fuse: nn.Module = nn.Linear(width, per_frame)
        else:
            self.fuse = nn.Conv2d(width // (_FUSED_SIDE * _FUSED_SIDE), _CONV_OUT, 1)
        self.dropout = nn.Dropout(float(dropout))
        self.classifier = nn.Linear(self.n_frames * per_frame, self.n_classes)
        if self.init == "he":
            self._he_init()

    def _he_init(self) -> None:
        """He initialisation of every layer followed by a ReLU; zero biases.

        The spatial convolutions and FC 4096, the temporal FC 4096 and the
        fusion layer get ``N(0, 2 / fan_in)`` weights (He et al. 2015), so
        that the sparse frames' signal keeps its scale through the ReLU
        stack. The TPU (tanh) and the classifier keep PyTorch's defaults.
        """
        layers = [m for m in (self.spatial, self.temporal_fc, self.fuse) if m is not None]
        for block in layers:
            for m in block.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(m.bias)

    def _check(self, name: str, x: torch.Tensor | None) -> torch.Tensor:
        expected = "(B, " + ", ".join(str(s) for s in self.frame_shape) + ")"
        if x is None:
            raise ModelInputError(
                f"Model {self.registry_name!r} ({self.streams}) needs the input {name!r} of "
                f"shape {expected}, but it was not given.")
        if not isinstance(x, torch.Tensor):
            raise ModelInputError(
                f"Model {self.registry_name!r}: input {name!r} must be a torch.Tensor of "
                f"shape {expected}, but got {type(x).__name__}.")
        if not torch.is_floating_point(x):
            raise ModelInputError(
                f"Model {self.registry_name!r}: input {name!r} must be floating point "
                f"(float32 or float64), but got dtype {x.dtype}.")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.frame_shape or x.shape[0] == 0:
            raise ModelInputError(
                f"Model {self.registry_name!r}: input {name!r} must have shape {expected} "
                f"with B >= 1, but got shape {tuple(x.shape)}.")
        return x.to(self.classifier.weight.dtype)

    def spatial_features(self, psn_sparse: torch.Tensor) -> torch.Tensor:
        """Per-frame spatial features ``(B, n_frames, 4096)`` of the sparse frames."""
        x = self._check("psn_sparse", psn_sparse)
        B, T = x.shape[:2]
        return self.spatial(x.reshape(B * T, 1, *x.shape[2:])).reshape(B, T, _FEATURES)

    def temporal_features(self, psn_frames: torch.Tensor) -> torch.Tensor:
        """Per-step temporal features ``(B, n_frames, 4096)``: TPU outputs, FC 4096."""
        x = self._check("psn_frames", psn_frames)
        y, _ = self.tpu(x.flatten(2))
        return torch.relu(self.temporal_fc(y))

    def forward(self, psn_sparse: torch.Tensor | None = None,
                psn_frames: torch.Tensor | None = None) -> torch.Tensor:
        """Return class logits ``(B, n_classes)``."""
        # Check every input before any computation.
        sparse = self._check("psn_sparse", psn_sparse) if self.spatial is not None else None
        frames = self._check("psn_frames", psn_frames) if self.tpu is not None else None
        if sparse is not None and frames is not None and sparse.shape[0] != frames.shape[0]:
            raise ModelInputError(
                f"Model {self.registry_name!r}: the inputs disagree on the batch size: "
                f"psn_sparse has {sparse.shape[0]} samples, psn_frames {frames.shape[0]}.")
        parts = []
        if sparse is not None:
            parts.append(self.spatial_features(sparse))
        if frames is not None:
            parts.append(self.temporal_features(frames))
        if len(parts) == 1:
            fused = parts[0]
        elif self.fusion == "add":
            fused = parts[0] + parts[1]                      # eq. 10
        else:
            fused = torch.cat(parts, dim=2)
        B, T, W = fused.shape
        rows = fused.reshape(B * T, W)
        if self.no_conv:
            z = self.fuse(rows)
        else:
            z = self.fuse(rows.reshape(B * T, W // _FUSED_SIDE ** 2, _FUSED_SIDE, _FUSED_SIDE))
        z = torch.relu(z).reshape(B, -1)
        return self.classifier(self.dropout(z))


def fusion_parameter_counts(model: PSN, *, rows: int = 80) -> dict[str, int]:
    """Parameters of the fusion module, counted as the paper does and as they are.

    Parameters
    ----------
    model : PSN
        A PSN built with the 1x1 convolution (``no_conv=False``) and additive
        fusion; its 1x1 layer is counted, and the dense alternative is sized
        for the same input and output.
    rows : int
        Rows of the fused feature matrix the paper multiplies by (80 = 5
        clips x 16 frames in one batch).

    Returns
    -------
    dict
        ``conv`` and ``dense``: the real parameter counts (1,028 and 262,208
        for the paper's sizes); ``paper_conv`` and ``paper_dense``: the same
        times ``rows`` (82,240 and 20,976,640).

    References
    ----------
    .. [1] PSN, Sec. 3.4.2 ("Weight reduction through convolution module").
    """
    rows = check_int("rows", rows, 1)
    if model.no_conv:
        dense = sum(p.numel() for p in model.fuse.parameters())
        out = model.fuse.out_features
        conv = _CONV_OUT * (model.fused_width // _FUSED_SIDE ** 2 + 1)
    else:
        conv = sum(p.numel() for p in model.fuse.parameters())
        out = model.fuse.out_channels * _FUSED_SIDE ** 2
        dense = out * (model.fused_width + 1)
    return {"conv": conv, "dense": dense, "paper_conv": conv * rows,
            "paper_dense": dense * rows}
