"""AKMNet: micro-expression recognition with adaptive key-frame mining.

Three modules, applied to a clip of any length T ([1]_, Fig. 1):

1. traversal processing: the ResNet-18 of Table II (5x5/2 first convolution
   with 64 filters, 3x3/2 max-pooling, two basic residual blocks per stage
   with 64, 128, 256 and 512 filters) turns each frame ``(3, 128, 128)``
   into ``P_t`` of shape ``(512, 4, 4)``; the same network serves every
   frame;
2. adaptive key-frame mining (Sec. III-B, eqs. 5-9): global spatial pooling
   ``p_t = mean(P_t)``, local self-attention ``alpha_t = sigmoid(w . p_t)``
   (eq. 5), the global vector ``g = sum_t alpha_t p_t`` (eq. 6), the
   correlation ``beta_t = cos(p_t, g)`` (eq. 7), and the key frames
   ``B_t = 1`` where ``beta_t`` is above the clip's mean beta (eq. 8).
   Training adds the GS-MMM loss (eqs. 10-12) through
   :meth:`AKMNet.regularization_loss`; the binary selection is trained by
   the alternative minimisation of eqs. 14-17 (a straight-through
   estimator: forward value ``B_t`` in {0, 1}, backward ``dB_t / dbeta_t = 1``
   on the key frames and 0 elsewhere);
3. spatio-temporal fusion (Sec. III-A, eqs. 1-3): a 2-layer bidirectional GRU
   shared over the 4x4 feature positions runs over the key frames only,
   its outputs (32 units per direction, C' = 64) are averaged over the key
   frames, the 64x4x4 map is flattened, dropout 0.5, a linear classifier.

Clips of different lengths share a batch: ``forward(magnified_clip,
magnified_clip_mask)`` takes the clips padded to ``(B, T_max, 3, H, W)`` and a boolean ``(B,
T_max)`` mask of the real frames. Padded frames never reach the backbone
(so they cannot touch batch-norm statistics either), the pooled means, the
attention sum, the mean beta, the selection, the losses or the GRU, whose
sequences are packed to each clip's own number of key frames. A padded clip
therefore gives the same output as the clip alone (in evaluation mode).

Choices where the paper is silent (documented here and in the registry):

- eq. 6's global vector is formed with the normalised weights ``alpha_t / sum
  alpha`` (computed as a softmax of ``log alpha_t``): eq. 7's cosine does not
  see that positive factor, but with the plain sum a saturated attention
  (``alpha_t`` about 0 on every frame, which large from-scratch features
  produce) left a global vector below the cosine's epsilon, every beta at 0
  and no gradient to recover from;
- a clip whose betas are all equal (a clip of one frame, or identical
  frames) has no beta strictly above its mean; its frame of highest beta
  (the first one on a tie) is then its only key frame, so that the GRU
  always sees at least one frame. The max-key frame is always a key frame;
- the maximum mean-margin term (eq. 11) needs key and non-key frames: a
  clip without non-key frames (one frame) contributes no MMM term; both
  terms are averaged over the clips of the batch;
- eq. 10 is applied to the straight-through ``B``: its forward value is the
  number of key frames, its gradient lowers the betas of the key frames;
- the GRU's 64 outputs are read as the concatenation of 32 forward and 32
  backward units (the paper's ``G`` is 64x4x4);
- ablations ([1]_, Table V): ``attention=False`` (AKMNet-s13) sets every
  ``alpha_t`` to 1 (uniform attention, the global vector is the plain sum);
  ``sparse=False`` (AKMNet-s12) keeps every real frame, each weighted by its
  ``beta_t`` (the paper: without sparse selection redundant frames are kept
  "with lower weights"), and has no GS-MMM loss; ``mining_loss=False`` keeps
  the selection but drops the GS-MMM loss;
- the ImageNet and AffectNet pre-training of the paper cannot be
  reproduced here: the backbone starts from He initialisation unless
  pre-trained weights are loaded with :meth:`AKMNet.load_backbone_state`
  (``mexkit train --weights``); ``mexkit pretrain`` makes such weights from
  the apex and onset/offset frames of a labelled store of other subjects
  (:func:`mexkit.models.akmnet.pretraining.pretrain_backbone`), the stand-in
  for the AffectNet stage.

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (submitted to IEEE TAC, 2021).
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
   Recognition", CVPR 2016.
.. [3] J. Chung, C. Gulcehre, K. Cho, Y. Bengio, "Empirical Evaluation of
   Gated Recurrent Neural Networks on Sequence Modeling", arXiv:1412.3555.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..._validate import check_range
from ...errors import ModelInputError, ParameterError
from .._nn import BasicBlock, init_resnet

__all__ = [
    "AKMNet",
    "AKMResNet18",
    "check_image_size",
    "PixelBiGRU",
    "Mining",
    "mine_key_frames",
    "gs_mmm_loss",
    "LAMBDA_GS",
    "LAMBDA_MMM",
    "MARGIN_C",
    "INPUT_NAME",
]

#: lambda_1 of eq. 12 (Sec. IV-B: "lambda_1 and lambda_2 are set to 0.1 and 1").
LAMBDA_GS = 0.1
#: lambda_2 of eq. 12 (Sec. IV-B).
LAMBDA_MMM = 1.0
#: C of eq. 11 (Sec. III-B: "C is set to 2 given that ... beta_t is within the
#: range of cosine function").
MARGIN_C = 2.0

_NAME = "akmnet"
#: The model input (and ``forward`` keyword); its mask is ``magnified_clip_mask``.
INPUT_NAME = "magnified_clip"


def check_image_size(image_size: Any) -> int:
    """Return the frame side the ResNet-18 sees if it is valid, else raise ParameterError.

    The backbone halves the side five times: the side must be a multiple of
    32 (128 in the paper, 4x4 feature maps).
    """
    if (isinstance(image_size, bool) or not isinstance(image_size, int)
            or image_size < 32 or image_size % 32):
        raise ParameterError(
            f"Invalid value for the 'image_size' parameter. It must be a multiple of 32 "
            f"(128 in the paper), but got {image_size!r} instead."
        )
    return image_size


# -- 1. traversal processing: ResNet-18 of Table II -------------------------------------
class AKMResNet18(nn.Module):
    """The ResNet-18 of AKMNet's Table II: ``(N, 3, H, W)`` -> ``(N, 512, H/32, W/32)``.

    conv1 5x5/2 (64) + BN + ReLU, max-pool 3x3/2, then two
    :class:`~mexkit.models._nn.BasicBlock` per stage (64, 128/2, 256/2,
    512/2). At 128x128 the stages output 64x64x64, 64x32x32, 128x16x16,
    256x8x8 and 512x4x4, as Table II lists. No global pooling and no
    classifier: the feature maps go to the key-frame mining.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 5, stride=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# Parameter names of torchvision's resnet18 that differ from ours (its basic blocks
# call the projection shortcut 'downsample'); applied by load_backbone_state.
def _torchvision_to_ours(key: str) -> str:
    return key.replace(".downsample.", ".shortcut.")


# -- 2. adaptive key-frame mining -------------------------------------------------------
@dataclass
class Mining:
    """Result of :func:`mine_key_frames` for a batch of padded clips.

    Attributes
    ----------
    alpha : torch.Tensor, (B, T)
        Local self-attention weights (eq. 5); 0 on padding.
    beta : torch.Tensor, (B, T)
        Cosine correlation with the global vector (eq. 7); 0 on padding.
    selected : torch.Tensor of bool, (B, T)
        The key frames (eq. 8, or every real frame when the sparse selection
        is off); never a padded frame.
    weights : torch.Tensor, (B, T)
        What multiplies each frame's features (eq. 9): the straight-through
        ``B`` (value 1 on key frames, 0 elsewhere, gradient 1 to ``beta`` on
        key frames: eqs. 16-17), or ``beta`` itself without sparse selection.
    mask : torch.Tensor of bool, (B, T)
        The real frames.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    selected: torch.Tensor
    weights: torch.Tensor
    mask: torch.Tensor

    @property
    def max_key(self) -> torch.Tensor:
        """Index of each clip's frame of highest beta, ``(B,)`` int64."""
        return self.beta.masked_fill(~self.mask, -torch.inf).argmax(dim=1)


def mine_key_frames(pooled: torch.Tensor, mask: torch.Tensor,
                    attention: nn.Module | None = None, *, sparse: bool = True) -> Mining:
    """Select the key frames of padded clips from their pooled frame features.

    Parameters
    ----------
    pooled : torch.Tensor, shape (B, T, C)
        Globally pooled frame features ``p_t``; values at padded positions
        are ignored (they may be anything finite).
    mask : torch.Tensor of bool, shape (B, T)
        True on real frames; every clip needs at least one.
    attention : torch.nn.Module or None
        Maps ``(..., C)`` to ``(..., 1)`` logits: ``alpha_t =
        sigmoid(attention(p_t))`` (eq. 5). None: uniform ``alpha_t = 1``
        (the paper's AKMNet-s13 ablation).
    sparse : bool
        Binary selection of the frames whose beta is above the clip's mean
        (eq. 8), trained straight-through (eqs. 14-17). False keeps every
        real frame, weighted by its beta (AKMNet-s12).

    Returns
    -------
    Mining

    Notes
    -----
    A clip without a beta strictly above its mean (one frame, or all
    betas equal) keeps its frame of highest beta as its only key frame.

    References
    ----------
    .. [1] M. Peng et al., "Recognizing Micro-Expression in Video Clip with
       Adaptive Key-Frame Mining", eqs. 5-9 and 14-17.
    """
    if pooled.ndim != 3 or mask.shape != pooled.shape[:2]:
        raise ModelInputError(
            f"mine_key_frames needs pooled features (B, T, C) and a mask (B, T), but got "
            f"{tuple(pooled.shape)} and {tuple(mask.shape)}."
        )
    mask = mask.to(torch.bool)
    valid = mask.to(pooled.dtype)
    p = pooled * valid[..., None]  # padded frames contribute exactly zero
    if attention is None:
        alpha = valid
        log_alpha = torch.zeros_like(valid)
    else:
        logit = attention(p)[..., 0]
        alpha = torch.sigmoid(logit) * valid                                # eq. 5
        log_alpha = F.logsigmoid(logit)
    # Eq. 6 up to a positive factor: g / sum(alpha) is built from the normalised weights
    # alpha_t / sum(alpha) = softmax(log alpha_t) over the real frames. Eq. 7 ignores the
    # factor, but a saturated attention (alpha_t ~ 0 on every frame) would otherwise give a
    # global vector below the cosine's eps, beta = 0 for all frames and no gradient.
    share = torch.softmax(log_alpha.masked_fill(~mask, -torch.inf), dim=1)
    g = (share[..., None] * p).sum(dim=1, keepdim=True)                     # eq. 6
    beta = F.cosine_similarity(p, g.expand_as(p), dim=-1, eps=1e-12) * valid  # eq. 7
    if not sparse:
        return Mining(alpha, beta, mask.clone(), beta, mask)
    n = valid.sum(dim=1, keepdim=True)
    mean_beta = beta.sum(dim=1, keepdim=True) / n
    with torch.no_grad():
        hard = (beta > mean_beta) & mask                                    # eq. 8
        best = beta.masked_fill(~mask, -torch.inf).argmax(dim=1)
        empty = ~hard.any(dim=1)
        hard[empty, best[empty]] = True
    hard_f = hard.to(beta.dtype)
    # Straight-through B (eqs. 16-17): forward value hard_f, gradient hard_f w.r.t. beta.
    weights = hard_f + (beta - beta.detach()) * hard_f
    return Mining(alpha, beta, hard, weights, mask)


def gs_mmm_loss(mining: Mining, *, lambda_gs: float = LAMBDA_GS,
                lambda_mmm: float = LAMBDA_MMM, margin: float = MARGIN_C) -> torch.Tensor:
    """The global sparsity and maximum mean-margin loss (eqs. 10-12).

    ``lambda_gs * max(0, sum(B) - 1) + lambda_mmm * (C - (mean beta of the
    key frames - mean beta of the other real frames))`` per clip, averaged
    over the batch (the MMM term over the clips that have non-key frames).

    Parameters
    ----------
    mining : Mining
        From :func:`mine_key_frames` with ``sparse=True``.
    lambda_gs, lambda_mmm : float
        lambda_1 and lambda_2 of eq. 12 (0.1 and 1, Sec. IV-B).
    margin : float
        C of eq. 11 (2, Sec. III-B).

    Returns
    -------
    torch.Tensor
        Scalar.

    References
    ----------
    .. [1] M. Peng et al., "Recognizing Micro-Expression in Video Clip with
       Adaptive Key-Frame Mining", eqs. 10-12 and Sec. IV-B.
    """
    sel = mining.selected.to(mining.beta.dtype)
    rest = (mining.mask & ~mining.selected).to(mining.beta.dtype)
    gs = torch.clamp(mining.weights.sum(dim=1) - 1.0, min=0.0)             # eq. 10
    n_key = sel.sum(dim=1)
    n_rest = rest.sum(dim=1)
    has_rest = n_rest > 0
    key_mean = (mining.beta * sel).sum(dim=1) / n_key.clamp(min=1)
    rest_mean = (mining.beta * rest).sum(dim=1) / n_rest.clamp(min=1)
    mmm = margin - (key_mean - rest_mean)                                   # eq. 11
    if bool(has_rest.any()):
        mmm_mean = mmm[has_rest].mean()
    else:
        mmm_mean = mmm.sum() * 0.0
    return lambda_gs * gs.mean() + lambda_mmm * mmm_mean                    # eq. 12


# -- 3. pixel-wise bidirectional GRU ------------------------------------------------------
class PixelBiGRU(nn.Module):
    """A bidirectional GRU shared over the feature positions (Fig. 2, eqs. 1-3).

    Parameters
    ----------
    in_channels : int
        C of the frame features (512).
    hidden : int
        Units per direction (32: the paper's C' = 64 outputs).
    layers : int
        Stacked layers (2).

    Notes
    -----
    ``forward(x, lengths)``: ``x`` ``(B, N, C, h, w)`` with clip ``b``'s
    sequence in ``x[b, :lengths[b]]`` (the rest is padding and is never
    read), ``lengths`` ``(B,)`` >= 1. Returns ``(B, 2 * hidden, h, w)``: at
    each position the GRU outputs averaged over the clip's steps.
    """

    def __init__(self, in_channels: int = 512, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.gru = nn.GRU(in_channels, hidden, num_layers=layers, bidirectional=True,
                          batch_first=True)
        self.out_channels = 2 * hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, n, c, h, w = x.shape
        seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, n, c)
        lens = lengths.to("cpu", torch.int64).repeat_interleave(h * w)
        packed = pack_padded_sequence(seq, lens, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=n)  # zeros past end
        mean = out.sum(dim=1) / lens.to(out.device, out.dtype)[:, None]
        return mean.reshape(b, h, w, self.out_channels).permute(0, 3, 1, 2)


def _gather_key_frames(features: torch.Tensor, mining: Mining
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Key-frame features in temporal order, packed to the front: eq. 9.

    Returns ``(B, N_max, C, h, w)`` (each key frame multiplied by its weight)
    and the number of key frames per clip ``(B,)``.
    """
    b, t = mining.selected.shape
    steps = torch.arange(t, device=features.device)
    # Key frames first, in temporal order; then the others (never read).
    key = (~mining.selected).to(torch.int64) * t + steps
    order = key.argsort(dim=1)
    lengths = mining.selected.sum(dim=1)
    n_max = int(lengths.max())
    idx = order[:, :n_max]
    w = torch.gather(mining.weights, 1, idx)
    gathered = features[torch.arange(b, device=features.device)[:, None], idx]
    return gathered * w[:, :, None, None, None], lengths


# -- the network ----------------------------------------------------------------------------
class AKMNet(nn.Module):
    """Adaptive key-frame mining network.

    Parameters
    ----------
    n_classes : int
        Number of classes (4 in the paper: positive, negative, surprise,
        others; 3 for SMIC).
    image_size : int
        Frame side the backbone sees, a multiple of 32 (128 in the paper:
        4x4 feature maps). Smaller sizes run faster on a CPU (64: 2x2 maps);
        frames of another side are resized to it (bilinear, antialiased).
    no_attention : bool
        Ablation AKMNet-s13: uniform ``alpha_t = 1`` instead of eq. 5.
    no_sparse : bool
        Ablation AKMNet-s12: every real frame, weighted by its beta, instead
        of the binary selection; no GS-MMM loss.
    no_mining_loss : bool
        Ablation: binary selection without the GS-MMM loss.
    dropout : float
        Before the classifier (0.5).
    gru_hidden : int
        GRU units per direction (32, i.e. C' = 64).
    lambda_gs, lambda_mmm, margin : float
        lambda_1, lambda_2 (0.1, 1; Sec. IV-B) and C (2; Sec. III-B).

    Notes
    -----
    ``forward(magnified_clip, magnified_clip_mask=None)``: ``magnified_clip``
    ``(B, T, 3, S, S)`` float (frames in [0, 1]; any side S >= 32, resized to
    ``image_size`` inside the model when it differs), ``magnified_clip_mask``
    ``(B, T)`` bool (None: every frame is real). Returns logits ``(B,
    n_classes)``. Pre-trained backbone weights are loaded with
    :meth:`load_backbone_state` (``mexkit train --weights``). In training mode the forward
    pass also stores the GS-MMM loss of the batch, which
    :meth:`regularization_loss` returns (:func:`mexkit.learn.train.fit` adds
    it to the classification loss, eq. 13).
    """

    registry_name = _NAME

    def __init__(self, n_classes: int = 4, *, image_size: int = 128,
                 no_attention: bool = False, no_sparse: bool = False,
                 no_mining_loss: bool = False, dropout: float = 0.5, gru_hidden: int = 32,
                 lambda_gs: float = LAMBDA_GS, lambda_mmm: float = LAMBDA_MMM,
                 margin: float = MARGIN_C) -> None:
        super().__init__()
        check_image_size(image_size)
        check_range("dropout", dropout, 0.0, 1.0)
        check_range("lambda_gs", lambda_gs, 0.0)
        check_range("lambda_mmm", lambda_mmm, 0.0)
        self.n_classes = int(n_classes)
        self.image_size = int(image_size)
        self.attention_enabled = not no_attention
        self.sparse = not no_sparse
        self.mining_loss_enabled = self.sparse and not no_mining_loss
        self.lambda_gs, self.lambda_mmm, self.margin = (float(lambda_gs), float(lambda_mmm),
                                                        float(margin))
        self.backbone = AKMResNet18()
        self.attention = nn.Linear(512, 1) if self.attention_enabled else None
        self.temporal = PixelBiGRU(512, int(gru_hidden), 2)
        side = self.image_size // 32
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.temporal.out_channels * side * side, self.n_classes)
        self._last_loss: torch.Tensor | None = None

    # -- input checks ----------------------------------------------------------------------
    def _check(self, clip: Any, clip_mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
        expected = "(B, T, 3, S, S) with S >= 32"
        if not isinstance(clip, torch.Tensor) or not torch.is_floating_point(clip):
            raise ModelInputError(
                f"Model {_NAME!r}: input {INPUT_NAME!r} must be a floating-point "
                f"torch.Tensor of shape {expected}, but got "
                f"{getattr(clip, 'dtype', type(clip).__name__)}."
            )
        if (clip.ndim != 5 or clip.shape[2] != 3 or clip.shape[3] != clip.shape[4]
                or clip.shape[3] < 32 or 0 in clip.shape[:2]):
            raise ModelInputError(
                f"Model {_NAME!r}: input {INPUT_NAME!r} must have shape {expected} and "
                f"B, T >= 1 (the paper's S is 128), but got shape {tuple(clip.shape)}."
            )
        b, t = clip.shape[:2]
        if clip_mask is None:
            mask = torch.ones((b, t), dtype=torch.bool, device=clip.device)
        else:
            if not isinstance(clip_mask, torch.Tensor) or tuple(clip_mask.shape) != (b, t):
                raise ModelInputError(
                    f"Model {_NAME!r}: {INPUT_NAME + '_mask'!r} must be a (B, T) = "
                    f"({b}, {t}) tensor, but got {tuple(getattr(clip_mask, 'shape', ()))}."
                )
            mask = clip_mask.to(device=clip.device, dtype=torch.bool)
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ModelInputError(
                f"Model {_NAME!r}: clips {empty} of the batch have no frame (their "
                f"{INPUT_NAME + '_mask'!r} rows are all False)."
            )
        return clip.to(self.classifier.weight.dtype), mask

    # -- stages -------------------------------------------------------------------------------
    def frame_features(self, clip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ResNet-18 features of the real frames, ``(B, T, 512, h, w)``, 0 on padding."""
        b, t = mask.shape
        real = clip[mask]
        if real.shape[-1] != self.image_size:
            real = F.interpolate(real, size=(self.image_size, self.image_size),
                                 mode="bilinear", align_corners=False, antialias=True)
        real = self.backbone(real)
        out = real.new_zeros((b, t) + tuple(real.shape[1:]))
        out[mask] = real
        return out

    def mine(self, features: torch.Tensor, mask: torch.Tensor) -> Mining:
        """Key-frame mining (eqs. 5-9) on features ``(B, T, 512, h, w)``."""
        pooled = features.mean(dim=(3, 4))
        return mine_key_frames(pooled, mask, self.attention, sparse=self.sparse)

    def forward_with_mining(self, magnified_clip: torch.Tensor,
                            magnified_clip_mask: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, Mining]:
        """Logits ``(B, n_classes)`` and the :class:`Mining` of the batch."""
        clip, mask = self._check(magnified_clip, magnified_clip_mask)
        features = self.frame_features(clip, mask)
        mining = self.mine(features, mask)
        keys, lengths = _gather_key_frames(features, mining)
        g = self.temporal(keys, lengths)
        logits = self.classifier(self.dropout(g.flatten(1)))
        return logits, mining

    def forward(self, magnified_clip: torch.Tensor,
                magnified_clip_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return class logits ``(B, n_classes)``."""
        logits, mining = self.forward_with_mining(magnified_clip, magnified_clip_mask)
        if self.training and self.mining_loss_enabled:
            self._last_loss = gs_mmm_loss(mining, lambda_gs=self.lambda_gs,
                                          lambda_mmm=self.lambda_mmm, margin=self.margin)
        else:
            self._last_loss = None
        return logits

    def regularization_loss(self) -> torch.Tensor:
        """The GS-MMM loss (eq. 12) of the last training forward pass (0 if none)."""
        if self._last_loss is None:
            return self.classifier.weight.new_zeros(())
        loss, self._last_loss = self._last_loss, None
        return loss

    @torch.no_grad()
    def predict_extras(self, magnified_clip: torch.Tensor,
                       magnified_clip_mask: torch.Tensor | None = None,
                       **_: Any) -> dict[str, list]:
        """Per clip: its key frames, max-key frame and betas (JSON-able).

        Returns
        -------
        dict
            ``key_frames`` (list of lists of 0-based frame indices in the
            clip), ``max_key_frame`` (list of int: the frame of highest
            beta), ``beta`` (list of lists of floats, one per real frame).
        """
        was = self.training
        self.eval()
        try:
            clip, mask = self._check(magnified_clip, magnified_clip_mask)
            mining = self.mine(self.frame_features(clip, mask), mask)
        finally:
            self.train(was)
        keys, maxk, betas = [], [], []
        for i in range(mask.shape[0]):
            real = mask[i].nonzero().flatten()
            sel = mining.selected[i, real].nonzero().flatten()
            keys.append([int(k) for k in sel.tolist()])
            beta = mining.beta[i, real]
            betas.append([round(float(v), 6) for v in beta.tolist()])
            maxk.append(int(beta.argmax()))
        return {"key_frames": keys, "max_key_frame": maxk, "beta": betas}

    def load_backbone_state(self, state: Mapping[str, torch.Tensor]) -> list[str]:
        """Load pre-trained ResNet-18 weights into the backbone.

        Parameters
        ----------
        state : mapping of str to torch.Tensor
            Either this backbone's keys (``conv1.weight``, ``layer1.0.conv1.weight``,
            ...; a ``backbone.`` prefix is removed) or torchvision's
            ``resnet18`` naming (``downsample`` for the shortcut); ``fc.*``
            entries are ignored. The first convolution must be 5x5
            (Table II): torchvision's 7x7 ``conv1.weight`` does not fit.

        Returns
        -------
        list of str
            Backbone parameters and buffers the state did not provide (they
            keep their initialisation).

        Raises
        ------
        ParameterError
            If an entry does not fit (unknown name or other shape), naming it.
        """
        own = self.backbone.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            k = key[len("backbone."):] if key.startswith("backbone.") else key
            k = _torchvision_to_ours(k)
            if k.startswith("fc."):
                continue
            if k not in own:
                raise ParameterError(
                    f"The pre-trained weights hold {key!r}, which AKMNet's ResNet-18 "
                    "(Table II) does not have."
                )
            if tuple(value.shape) != tuple(own[k].shape):
                raise ParameterError(
                    f"The pre-trained weight {key!r} has shape {tuple(value.shape)}, but "
                    f"AKMNet's ResNet-18 (Table II: conv1 5x5, 64) needs "
                    f"{tuple(own[k].shape)}."
                )
            mapped[k] = value
        missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
        self.backbone.load_state_dict(mapped, strict=False)
        return missing
