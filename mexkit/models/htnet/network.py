"""HTNet: the hierarchical transformer network of Wang et al. 2024 (pure torch).

HTNet [1]_ reads the same 28x28 onset-apex flow images as STSTNet, cut into
four 14x14 facial areas around landmarks of the apex face (left eye, left
lips, right eye, right lips) and put back together as one 28x28 image
(:func:`four_areas`).  The network cuts that image into 7x7 patches (a 4x4
grid of 256-d tokens) and runs three levels of transformer blocks, each
followed by an aggregation block (3x3 convolution, channel layer norm, 3x3
max-pooling with stride 2) that doubles the width and halves the grid:

========  ==========  =====  ======  ==============  ================
level     blocks of   width  heads   transformer     aggregation out
========  ==========  =====  ======  ==============  ================
2 (low)   4x4 cells   256    3       2 blocks        512 x 2x2
1         2x2 cells   512    6       2 blocks        1024 x 1x1
0 (high)  the whole   1024   12      10 blocks       (none)
========  ==========  =====  ======  ==============  ================

Self-attention runs inside each block of the grid only (low levels: local
areas; the top level: the whole face).  A transformer block is pre-norm
attention and a 1x1-convolution feed-forward (4x wider, GELU), each with a
residual; attention heads have ``width // heads`` channels each (85 here, so
the inner width is 255, 510, 1020), queries and keys scaled by
``1 / sqrt(85)``; a learned scalar position embedding per token is added
before each level.  The head is a channel layer norm, the mean over the grid
and one linear layer.  The layer sizes and settings are those of the
authors' ``Model.py`` and ``main_HTNet.py`` (image 28, patch 7, width 256,
3 heads, 3 levels, blocks (2, 2, 10), MLP ratio 4, no dropout), which a test
compares layer by layer (139,582,982 parameters for 3 classes).

With those settings every block of the grid holds a single token (4x4 tokens
in 4x4 blocks, then 2x2 in 2x2, then 1x1): each softmax runs over one key, so
attention passes each token's value projection through unchanged and the
areas meet only in the aggregation blocks' convolutions and pooling.  This is
a property of the published configuration, kept as it is; larger images
(``image_size=56``) give blocks of several tokens.

References
----------
.. [1] Z. Wang, K. Zhang, W. Luo, R. Sankaranarayana, "HTNet for
   micro-expression recognition", Neurocomputing 602 (2024) 128196,
   arXiv:2307.14637.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ModelInputError, ParameterError

__all__ = ["HTNet", "ChannelLayerNorm", "four_areas", "five_points", "DEFAULT_POINTS",
           "AREA"]

#: The points the official code uses when its detector finds no face in the
#: 28x28 apex face (left eye, right eye, nose, left and right mouth corners,
#: ``(x, y)`` in pixels of the 28x28 image).
DEFAULT_POINTS = np.array([[9.528073, 11.062551], [21.396168, 10.919773],
                           [15.380184, 17.380562], [10.255435, 22.121233],
                           [20.583706, 22.25584]], dtype=np.float32)
#: Side of one facial area.
AREA = 14


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """The five points of an MTCNN-style detector from iBUG-68 landmarks.

    Parameters
    ----------
    landmarks68 : ndarray, shape (68, 2)
        ``(x, y)`` landmarks (0-based iBUG numbering); NaN when no face was
        found.

    Returns
    -------
    ndarray, shape (5, 2), float32
        Left eye centre (mean of points 36-41), right eye centre (42-47), nose
        tip (30), left and right mouth corners (48, 54), in the image's
        left/right; :data:`DEFAULT_POINTS` when ``landmarks68`` is not finite.
    """
    lm = np.asarray(landmarks68, dtype=np.float32)
    if lm.shape != (68, 2):
        raise ParameterError(f"five_points takes (68, 2) landmarks, but got {lm.shape}")
    if not np.isfinite(lm).all():
        return DEFAULT_POINTS.copy()
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]
                    ).astype(np.float32)


def four_areas(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """HTNet's input: four 14x14 areas of a 28x28 flow image, put side by side.

    Parameters
    ----------
    image : ndarray, shape (C, 28, 28)
        The flow image (any channel order; float or integer).
    points : ndarray, shape (5, 2)
        Five ``(x, y)`` points as an MTCNN-style detector orders them (left
        eye, right eye, nose, left and right mouth corners) in pixels of the
        28x28 image.

    Returns
    -------
    ndarray, shape (C, 28, 28)
        ``[[A0, A1], [A3, A4]]``: area ``k`` is the 14x14 window of rows
        ``p_k[0] - 7 .. p_k[0] + 6`` and columns ``p_k[1] - 7 .. p_k[1] + 6``,
        with each point clamped to 7..21 and truncated to an integer.

    Notes
    -----
    The official code indexes the image's rows with a point's x coordinate
    and its columns with y, so that point 1 (the right eye as the detector
    names it, lying at the image's upper right) selects the lower-left
    window, the one the code calls the left lips; its names (left eye, left
    lips, right eye, right lips) fit the windows it actually takes, which
    this function reproduces.  The nose (point 2) is not used.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[1:] != (2 * AREA, 2 * AREA):
        raise ModelInputError(f"four_areas takes (C, 28, 28) images, but got {img.shape}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise ParameterError(f"four_areas takes 5 finite (x, y) points, but got {pts.tolist()}")
    p = np.clip(pts, AREA // 2, 3 * AREA // 2).astype(int)
    h = AREA // 2

    def area(k: int) -> np.ndarray:
        return img[:, p[k, 0] - h:p[k, 0] + h, p[k, 1] - h:p[k, 1] + h]

    top = np.concatenate([area(0), area(1)], axis=2)
    bottom = np.concatenate([area(3), area(4)], axis=2)
    return np.concatenate([top, bottom], axis=1)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of a ``(B, C, H, W)`` map (biased variance, eps 1e-5)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.g + self.b


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim // heads
        inner = self.dim_head * heads
        self.scale = self.dim_head ** -0.5
        self.norm = ChannelLayerNorm(dim)
        self.qkv = nn.Conv2d(dim, 3 * inner, 1, bias=False)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Sequential(nn.Conv2d(inner, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        # (b, heads * d, h, w) -> (b, heads, h * w, d): channels are head-major
        q, k, v = (t.reshape(b, self.heads, self.dim_head, h * w).transpose(2, 3)
                   for t in (q, k, v))
        attn = self.drop(torch.softmax(q @ k.transpose(2, 3) * self.scale, dim=-1))
        y = (attn @ v).transpose(2, 3).reshape(b, self.heads * self.dim_head, h, w)
        return self.out(y)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.net = nn.Sequential(nn.Conv2d(dim, dim * mult, 1), nn.GELU(), nn.Dropout(dropout),
                                 nn.Conv2d(dim * mult, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


class _Level(nn.Module):
    """Position embedding, then ``depth`` transformer blocks, within each block of the grid."""

    def __init__(self, dim: int, seq_len: int, depth: int, heads: int, mult: int,
                 dropout: float) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(seq_len))
        self.blocks = nn.ModuleList(
            nn.ModuleList([_Attention(dim, heads, dropout), _FeedForward(dim, mult, dropout)])
            for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x + self.pos[:h * w].reshape(1, 1, h, w)
        for attn, ff in self.blocks:
            x = attn(x) + x
            x = ff(x) + x
        return x


def _split_blocks(x: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, C, n*h, n*w)`` -> ``(B*n*n, C, h, w)``: each block of an n x n grid apart."""
    b, c, hh, ww = x.shape
    h, w = hh // n, ww // n
    return x.reshape(b, c, n, h, n, w).permute(0, 2, 4, 1, 3, 5).reshape(b * n * n, c, h, w)


def _merge_blocks(x: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`_split_blocks`."""
    bb, c, h, w = x.shape
    b = bb // (n * n)
    return x.reshape(b, n, n, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, n * h, n * w)


class HTNet(nn.Module):
    """Hierarchical transformer network [1]_ on the four facial areas.

    Parameters
    ----------
    n_classes : int
        Outputs (3 for the MEGC 2019 composite).
    image_size, patch_size : int
        Input side (28) and patch side (7): a 4x4 grid of tokens.
    dim : int
        Token width at the lowest level (256; doubled at each level up).
    heads : int
        Attention heads at the lowest level (3; doubled at each level up).
    levels : int
        Hierarchy levels (3).
    depths : int or sequence of int
        Transformer blocks per level, lowest first ((2, 2, 10)).
    mlp_mult : int
        Feed-forward expansion (4).
    channels : int
        Input channels (3).
    dropout : float
        Dropout in attention and feed-forward (0 in the official settings).

    Notes
    -----
    ``forward(facial_areas)`` takes ``(B, channels, image_size, image_size)``
    images (:func:`four_areas`; the official code feeds the 8-bit values,
    0..255, in OpenCV's BGR order) and returns ``(B, n_classes)`` logits.

    References
    ----------
    .. [1] Z. Wang et al., "HTNet for micro-expression recognition",
       Neurocomputing 602 (2024) 128196; the authors' ``Model.py``.
    """

    registry_name = "htnet"

    def __init__(self, n_classes: int = 3, *, image_size: int = 28, patch_size: int = 7,
                 dim: int = 256, heads: int = 3, levels: int = 3,
                 depths: int | Sequence[int] = (2, 2, 10), mlp_mult: int = 4,
                 channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ParameterError(f"image_size {image_size} is not a multiple of patch_size "
                             f"{patch_size}")
        depths = (depths,) * levels if isinstance(depths, int) else tuple(depths)
        if len(depths) != levels or min(depths) < 1 or levels < 1:
            raise ParameterError(f"depths must give one positive count per level ({levels}), "
                             f"but got {depths}")
        grid = image_size // patch_size
        top_blocks = 2 ** (levels - 1)
        if grid % top_blocks:
            raise ParameterError(f"a {grid}x{grid} token grid cannot be cut into "
                             f"{top_blocks}x{top_blocks} blocks")
        seq_len = (grid // top_blocks) ** 2
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        widths = [dim * 2 ** i for i in range(levels)]
        self.embed = nn.Conv2d(channels * patch_size ** 2, dim, 1)
        self.levels = nn.ModuleList()
        self.aggregates = nn.ModuleList()
        for i, width in enumerate(widths):
            self.levels.append(_Level(width, seq_len, depths[i], heads * 2 ** i, mlp_mult,
                                      dropout))
            last = i == levels - 1
            self.aggregates.append(nn.Identity() if last else nn.Sequential(
                nn.Conv2d(width, widths[i + 1], 3, padding=1), ChannelLayerNorm(widths[i + 1]),
                nn.MaxPool2d(3, stride=2, padding=1)))
        self.head_norm = ChannelLayerNorm(widths[-1])
        self.head = nn.Linear(widths[-1], n_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, p*p*C, H/p, W/p)``, each patch's pixels row-major,
        channels fastest (the official code's order)."""
        b, c, hh, ww = x.shape
        p = self.patch_size
        x = x.reshape(b, c, hh // p, p, ww // p, p).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(b, p * p * c, hh // p, ww // p)

    def forward(self, facial_areas: torch.Tensor) -> torch.Tensor:
        areas = facial_areas
        if areas.ndim != 4 or areas.shape[1:] != (self.channels, self.image_size,
                                                  self.image_size):
            raise ModelInputError(f"HTNet takes (B, {self.channels}, {self.image_size}, "
                             f"{self.image_size}) images, but got {tuple(areas.shape)}")
        x = self.embed(self.patches(areas))
        n_levels = len(self.levels)
        for i, (level, aggregate) in enumerate(zip(self.levels, self.aggregates,
                                                   strict=True)):
            n = 2 ** (n_levels - 1 - i)
            x = _merge_blocks(level(_split_blocks(x, n)), n)
            x = aggregate(x)
        return self.head(self.head_norm(x).mean(dim=(2, 3)))
