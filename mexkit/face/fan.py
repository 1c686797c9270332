"""The Face Alignment Network (2D-FAN) and the S3FD face detector, in mexkit.

mexkit runs FAN itself, on the weights the face-alignment package publishes
(``2DFAN4-11f355bf06.pth.tar`` and ``s3fd-619a316812.pth``, read from the torch
hub cache by :mod:`mexkit.face.landmarks`), so that the ``fan`` backend needs
no package beyond torch: face-alignment declares opencv-python, whose ``cv2``
would replace opencv-contrib's in the same environment.  The networks'
parameter names are those of the published state dicts, and every step below
gives what face-alignment 1.5 gives (a test compares the two on the same
weights when face-alignment's code is at hand, ``MEXKIT_FAN_REPO``).

Detection (S3FD [2]_): the RGB image, channels reversed to BGR, minus the mean
(104, 117, 123); VGG-16 features with L2-normalised conv3_3 / conv4_3 / conv5_3
(scales 10, 8, 5) and three extra layers give six detection levels of strides
4, 8, ..., 128, one square anchor of side 4 x stride per cell; a face score
(softmax; conv3_3's background is the maximum of three outputs) above 0.05
decodes the cell's box offsets with variances (0.1, 0.2); non-maximum
suppression at IoU 0.3 (areas with the ``+1`` pixel convention) and a score
above 0.5 keep the faces.

Landmarks (FAN [1]_, four stacked hourglasses): a face box ``(x0, y0, x1, y1)``
gives the centre ``((x0 + x1) / 2, (y0 + y1) / 2 - 0.12 (y1 - y0))`` and the
scale ``s = (x1 - x0 + y1 - y0) / 195``; the square of side ``200 s`` around
the centre (integer corners, zero outside the image) is resized to 256 x 256
(bilinear) and scaled to [0, 1].  The last hourglass's 68 heatmaps (64 x 64) of
the crop and of its mirror image (heatmaps mirrored back with the left-right
landmark pairs swapped) are added; each landmark is its heatmap's maximum,
moved a quarter pixel towards the larger neighbour on each axis, minus half a
pixel, and mapped back to the image, where face-alignment truncates it to a
whole pixel.  The centre and scale are computed in the box's float type
(mexkit passes float32 boxes, as face-alignment's detector gives them).
face-alignment 1.5.0 itself fails on float32 boxes under torch 2.13 (it
assigns a numpy float32 into a tensor); mexkit converts the value first.

References
----------
.. [1] A. Bulat, G. Tzimiropoulos, "How far are we from solving the 2D & 3D
   face alignment problem? (and a dataset of 230,000 3D facial landmarks)",
   ICCV 2017.
.. [2] S. Zhang, X. Zhu, Z. Lei, H. Shi, X. Wang, S. Z. Li, "S3FD: Single Shot
   Scale-invariant Face Detector", ICCV 2017.
.. [3] A. Newell, K. Yang, J. Deng, "Stacked hourglass networks for human pose
   estimation", ECCV 2016.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FAN",
    "S3FD",
    "MIRROR_68",
    "crop_face",
    "detect_faces",
    "fan_landmarks",
    "heatmap_peaks",
    "non_maximum_suppression",
    "s3fd_candidates",
]

#: Input side of FAN's crop, side of its heatmaps, and FAN's scale constants.
CROP_SIZE = 256
HEATMAP_SIZE = 64
_BOX_TO_SCALE = 195.0       # box width + height per unit of scale
_SCALE_TO_SIDE = 200.0      # crop side in image pixels per unit of scale
_CENTRE_SHIFT = 0.12        # the centre moves up by this fraction of the box height

#: iBUG-68 index of each landmark's mirror image (jaw, brows, nose, eyes, mouth).
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
    + list(range(35, 30, -1)) + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + list(range(54, 47, -1)) + list(range(59, 54, -1)) + list(range(64, 59, -1))
    + [67, 66, 65], dtype=np.int64)

_BGR_MEAN = (104.0, 117.0, 123.0)
_VARIANCES = (0.1, 0.2)
_CANDIDATE_SCORE = 0.05
_NMS_IOU = 0.3
_FACE_SCORE = 0.5


# --------------------------------------------------------------------------- FAN

def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class _Block(nn.Module):
    """FAN's residual block: three pre-activated 3x3 convolutions of 1/2, 1/4 and 1/4
    of the output channels, concatenated, plus the (1x1-projected) input."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3(cin, cout // 2)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout // 2), _conv3(cout // 2, cout // 4)
        self.bn3, self.conv3 = nn.BatchNorm2d(cout // 4), _conv3(cout // 4, cout // 4)
        self.downsample = None if cin == cout else nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.cat((a, b, c), 1) + skip


class _Hourglass(nn.Module):
    """One hourglass of ``depth`` levels: at each level a full-resolution branch and a
    branch through average pooling, the next level and nearest upsampling, added."""

    def __init__(self, depth: int = 4, features: int = 256) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", _Block(features, features))
            self.add_module(f"b2_{level}", _Block(features, features))
            self.add_module(f"b3_{level}", _Block(features, features))
        self.add_module("b2_plus_1", _Block(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        lower = (self._level(level - 1, lower) if level > 1
                 else self._modules["b2_plus_1"](lower))
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """Face Alignment Network [1]_: ``stacks`` hourglasses [3]_ giving 68 heatmaps.

    Parameters
    ----------
    stacks : int
        Number of stacked hourglasses (4 for the published 2D-FAN-4).

    Notes
    -----
    ``forward(x)`` takes ``(B, 3, 256, 256)`` RGB crops in [0, 1] and returns
    the last hourglass's heatmaps ``(B, 68, 64, 64)``.  Parameter names follow
    the published state dict, which loads with ``load_state_dict``.
    """

    def __init__(self, stacks: int = 4) -> None:
        super().__init__()
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = _Block(64, 128)
        self.conv3 = _Block(128, 128)
        self.conv4 = _Block(128, 256)
        for i in range(stacks):
            self.add_module(f"m{i}", _Hourglass(4, 256))
            self.add_module(f"top_m_{i}", _Block(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, 68, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(68, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        heatmaps = x
        for i in range(self.stacks):
            m = self._modules
            y = m[f"top_m_{i}"](m[f"m{i}"](x))
            y = F.relu(m[f"bn_end{i}"](m[f"conv_last{i}"](y)))
            heatmaps = m[f"l{i}"](y)
            if i < self.stacks - 1:
                x = x + m[f"bl{i}"](y) + m[f"al{i}"](heatmaps)
        return heatmaps


# --------------------------------------------------------------------------- S3FD

class _L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return x / norm * self.weight.view(1, -1, 1, 1)


_VGG = (("conv1", 3, 64, 2), ("conv2", 64, 128, 2), ("conv3", 128, 256, 3),
        ("conv4", 256, 512, 3), ("conv5", 512, 512, 3))
_HEADS = (("conv3_3_norm", 256), ("conv4_3_norm", 512), ("conv5_3_norm", 512),
          ("fc7", 1024), ("conv6_2", 512), ("conv7_2", 256))


class S3FD(nn.Module):
    """S3FD face detector [2]_ (VGG-16 backbone, six detection levels).

    Notes
    -----
    ``forward(x)`` takes ``(B, 3, H, W)`` BGR images minus the mean (104, 117,
    123) and returns, per level (strides 4, 8, 16, 32, 64, 128), the face
    scores ``(B, 2, h, w)`` (logits: background, face) and box offsets
    ``(B, 4, h, w)``, as a list ``[cls1, reg1, ..., cls6, reg6]``.  Parameter
    names follow the published state dict.
    """

    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout, n in _VGG:
            for k in range(1, n + 1):
                self.add_module(f"{name}_{k}", nn.Conv2d(cin if k == 1 else cout, cout, 3,
                                                         padding=1))
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=3)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.conv6_1 = nn.Conv2d(1024, 256, 1)
        self.conv6_2 = nn.Conv2d(256, 512, 3, stride=2, padding=1)
        self.conv7_1 = nn.Conv2d(512, 128, 1)
        self.conv7_2 = nn.Conv2d(128, 256, 3, stride=2, padding=1)
        self.conv3_3_norm = _L2Norm(256, 10)
        self.conv4_3_norm = _L2Norm(512, 8)
        self.conv5_3_norm = _L2Norm(512, 5)
        for name, channels in _HEADS:
            conf = 4 if name == "conv3_3_norm" else 2
            self.add_module(f"{name}_mbox_conf", nn.Conv2d(channels, conf, 3, padding=1))
            self.add_module(f"{name}_mbox_loc", nn.Conv2d(channels, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self._modules
        taps = {}
        for name, _, _, n in _VGG:
            for k in range(1, n + 1):
                x = F.relu(m[f"{name}_{k}"](x))
            if name in ("conv3", "conv4", "conv5"):
                taps[name] = x
            x = F.max_pool2d(x, 2, 2)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        fc7 = x
        x = F.relu(self.conv6_2(F.relu(self.conv6_1(x))))
        f6 = x
        f7 = F.relu(self.conv7_2(F.relu(self.conv7_1(x))))
        features = (self.conv3_3_norm(taps["conv3"]), self.conv4_3_norm(taps["conv4"]),
                    self.conv5_3_norm(taps["conv5"]), fc7, f6, f7)
        out: list[torch.Tensor] = []
        for (name, _), f in zip(_HEADS, features, strict=True):
            cls = m[f"{name}_mbox_conf"](f)
            if cls.shape[1] == 4:   # max-out background: the largest of three outputs
                cls = torch.cat([cls[:, :3].max(dim=1, keepdim=True).values, cls[:, 3:]], 1)
            out += [cls, m[f"{name}_mbox_loc"](f)]
        return out


def s3fd_candidates(outputs: Sequence[torch.Tensor], *,
                    threshold: float = _CANDIDATE_SCORE) -> list[np.ndarray]:
    """Decode S3FD's outputs into candidate boxes, per image.

    Parameters
    ----------
    outputs : list of Tensor
        :class:`S3FD`'s output for a batch.
    threshold : float
        Face probability above which a cell gives a candidate.

    Returns
    -------
    list of ndarray, shape (N, 5), float64
        Per image, ``(x0, y0, x1, y1, score)`` rows.
    """
    batch = outputs[0].shape[0]
    found: list[list[np.ndarray]] = [[] for _ in range(batch)]
    for level in range(len(outputs) // 2):
        prob = F.softmax(outputs[2 * level].float(), dim=1)[:, 1].cpu().numpy()
        loc = outputs[2 * level + 1].float().cpu().numpy()
        stride = 2 ** (level + 2)
        for b, y, x in zip(*np.nonzero(prob > threshold), strict=True):
            cx, cy, side = stride / 2 + x * stride, stride / 2 + y * stride, stride * 4.0
            d = loc[b, :, y, x]            # float32: the offsets are scaled in float32
            mx = cx + (d[0] * np.float32(_VARIANCES[0])) * side
            my = cy + (d[1] * np.float32(_VARIANCES[0])) * side
            w = side * float(np.exp(d[2] * np.float32(_VARIANCES[1])))
            h = side * float(np.exp(d[3] * np.float32(_VARIANCES[1])))
            x0, y0 = mx - w / 2, my - h / 2
            found[b].append(np.array([x0, y0, x0 + w, y0 + h, prob[b, y, x]], np.float64))
    return [np.array(f, dtype=np.float64).reshape(-1, 5) for f in found]


def non_maximum_suppression(boxes: np.ndarray, iou: float = _NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    Parameters
    ----------
    boxes : ndarray, shape (N, 5)
        ``(x0, y0, x1, y1, score)`` rows; areas and overlaps count whole pixels
        inclusively (``x1 - x0 + 1``), as S3FD's code does.
    iou : float
        A box overlapping a kept, better box by more than this is dropped.

    Returns
    -------
    ndarray of int
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0, x1, y1, score = (boxes[:, k] for k in range(5))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = score.argsort()[::-1]
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        order = rest[inter / (area[i] + area[rest] - inter) <= iou]
    return np.asarray(keep, dtype=np.int64)


@torch.no_grad()
def detect_faces(net: S3FD, images: np.ndarray, *, device: str | torch.device = "cpu"
                 ) -> list[np.ndarray]:
    """Faces in a batch of RGB images.

    Parameters
    ----------
    net : S3FD
        The detector, in eval mode, on ``device``.
    images : ndarray, shape (B, H, W, 3), uint8
        RGB images of one size.
    device : str or torch.device
        Where to run.

    Returns
    -------
    list of ndarray, shape (N, 5), float64
        Per image, the faces ``(x0, y0, x1, y1, score)`` with score above 0.5
        after non-maximum suppression, best first.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    x = x.flip(1) - torch.tensor(_BGR_MEAN, device=x.device).view(1, 3, 1, 1)
    out = []
    for boxes in s3fd_candidates(net(x)):
        boxes = boxes[non_maximum_suppression(boxes)]
        out.append(boxes[boxes[:, 4] > _FACE_SCORE])
    return out


# --------------------------------------------------------------------------- landmarks

def _as_boxes(boxes: object) -> np.ndarray:
    """Boxes as float32 or float64 (kept as given; other types become float64)."""
    a = np.asarray(boxes)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _box_frame(box: np.ndarray) -> tuple[np.ndarray, np.floating]:
    """Centre and scale of a face box, in the box's float type, as face-alignment
    computes them."""
    x0, y0, x1, y1 = _as_boxes(box)[:4]
    centre = np.array([x1 - (x1 - x0) / 2.0, y1 - (y1 - y0) / 2.0], dtype=x0.dtype)
    centre[1] = centre[1] - (y1 - y0) * _CENTRE_SHIFT
    return centre, (x1 - x0 + y1 - y0) / _BOX_TO_SCALE


def _crop_to_image_corner(point: tuple[float, float], centre: np.ndarray, scale: float,
                          resolution: float) -> np.ndarray:
    """Image pixel (integer, truncated) of a crop pixel: the crop's affine map inverted
    in float32, as face-alignment computes the crop's corners."""
    side = _SCALE_TO_SIDE * scale
    t = torch.eye(3)
    t[0, 0] = t[1, 1] = float(resolution / side)
    t[0, 2] = float(resolution * (-centre[0] / side + 0.5))
    t[1, 2] = float(resolution * (-centre[1] / side + 0.5))
    p = torch.linalg.inv(t) @ torch.tensor([point[0], point[1], 1.0])
    return p[:2].int().numpy().astype(np.int64)


def crop_face(image: np.ndarray, box: object) -> tuple[np.ndarray, np.ndarray, float]:
    """FAN's input crop of the face in ``box``.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB image.
    box : array_like
        ``(x0, y0, x1, y1)`` face box; the centre and scale are computed in its
        float type (float32 or float64; anything else as float64).

    Returns
    -------
    crop : ndarray, shape (256, 256, 3), uint8
    centre : ndarray, shape (2,)
        Centre of the crop in the image.
    scale : float
        The crop's side is ``200 * scale`` image pixels.
    """
    centre, scale = _box_frame(box)
    r = float(CROP_SIZE)
    ul = _crop_to_image_corner((1.0, 1.0), centre, scale, r)
    br = _crop_to_image_corner((r, r), centre, scale, r)
    h, w = image.shape[:2]
    out = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), dtype=np.uint8)
    # the overlap of the square [ul + 1, br] (1-based, inclusive) with the image
    nx = (max(1, -ul[0] + 1), min(br[0], w) - ul[0])
    ny = (max(1, -ul[1] + 1), min(br[1], h) - ul[1])
    ox = (max(1, ul[0] + 1), min(br[0], w))
    oy = (max(1, ul[1] + 1), min(br[1], h))
    out[ny[0] - 1:ny[1], nx[0] - 1:nx[1]] = image[oy[0] - 1:oy[1], ox[0] - 1:ox[1], :]
    crop = cv2.resize(out, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR)
    return crop, centre, scale


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """Landmark positions on FAN's heatmaps, in heatmap pixels.

    Parameters
    ----------
    heatmaps : ndarray, shape (B, 68, S, S)

    Returns
    -------
    ndarray, shape (B, 68, 2), float32
        ``(x, y)``: each heatmap's maximum, moved a quarter pixel towards the
        larger neighbour on each axis (away from the border), minus half a
        pixel.
    """
    b, c, hh, ww = heatmaps.shape
    flat = heatmaps.reshape(b, c, hh * ww)
    idx = flat.argmax(axis=-1)
    px, py = idx % ww, idx // ww
    pts = np.stack([px, py], axis=-1).astype(np.float32)
    inside = (px > 0) & (px < ww - 1) & (py > 0) & (py < hh - 1)
    bi, ci = np.nonzero(inside)
    x, y = px[bi, ci], py[bi, ci]
    hm = heatmaps[bi, ci]
    k = np.arange(len(bi))
    dx = hm[k, y, x + 1] - hm[k, y, x - 1]
    dy = hm[k, y + 1, x] - hm[k, y - 1, x]
    pts[bi, ci, 0] += np.sign(dx).astype(np.float32) * 0.25
    pts[bi, ci, 1] += np.sign(dy).astype(np.float32) * 0.25
    return pts + np.float32(0.5)


def _to_image(points: np.ndarray, centre: np.ndarray, scale: float, resolution: float
              ) -> np.ndarray:
    """Heatmap points to image pixels, truncated to integers as face-alignment does."""
    side = _SCALE_TO_SIDE * float(scale)
    t = np.eye(3)
    t[0, 0] = t[1, 1] = resolution / side
    t[0, 2] = resolution * (-float(centre[0]) / side + 0.5)
    t[1, 2] = resolution * (-float(centre[1]) / side + 0.5)
    inv = np.linalg.pinv(t)
    out = np.empty((len(points), 2), np.float32)
    for k, (x, y) in enumerate(points.astype(np.float64)):
        out[k] = np.dot(inv, np.array([x, y, 1.0]))[:2].astype(np.int32)
    return out


@torch.no_grad()
def fan_landmarks(net: FAN, image: np.ndarray, boxes: np.ndarray, *,
                  device: str | torch.device = "cpu", mirror: bool = True) -> np.ndarray:
    """The 68 landmarks of each face box of one image.

    Parameters
    ----------
    net : FAN
        The network, in eval mode, on ``device``.
    image : ndarray, shape (H, W, 3), uint8
        RGB image.
    boxes : ndarray, shape (N, 4) or (N, 5)
        Face boxes ``(x0, y0, x1, y1[, score])``, float32 or float64 (see
        :func:`crop_face`).
    device : str or torch.device
        Where to run.
    mirror : bool
        Add the heatmaps of the mirrored crop (face-alignment's default).

    Returns
    -------
    ndarray, shape (N, 68, 2), float32
        ``(x, y)`` in image pixels (whole pixels, as face-alignment gives them).
    """
    crops, frames = [], []
    boxes = _as_boxes(boxes)
    for box in boxes.reshape(len(boxes), -1):
        crop, centre, scale = crop_face(image, box)
        crops.append(crop.transpose(2, 0, 1).astype(np.float32) / 255.0)
        frames.append((centre, scale))
    if not crops:
        return np.zeros((0, 68, 2), np.float32)
    x = torch.from_numpy(np.stack(crops)).to(device)
    hm = net(x)
    if mirror:
        hm = hm + net(x.flip(-1))[:, torch.from_numpy(MIRROR_68).to(hm.device)].flip(-1)
    hm = hm.float().cpu().numpy()
    out = np.empty((len(crops), 68, 2), np.float32)
    for i, (centre, scale) in enumerate(frames):
        peaks = heatmap_peaks(hm[i:i + 1])[0]
        out[i] = _to_image(peaks, centre, scale, float(hm.shape[-1]))
    return out
