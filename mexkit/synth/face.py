"""Synthetic subjects: geometric and photometric variants of one real face.

The face is ``skimage.data.astronaut()`` (a public-domain NASA portrait bundled
with scikit-image). Its 68 iBUG landmarks were computed once with dlib (see
``tools/make_base_face.py`` in the repository) and ship as ``mexkit/data/base_face.json``,
so generating subjects needs no face detector.

A subject is defined by a seed. The seed draws

- geometry: face width (scale), in-plane rotation, aspect ratio, position in
  the frame and a smooth non-rigid warp of the face shape (jaw width, face
  length, eye spacing, brow height, nose length, mouth width and height),
  built from compactly supported bumps anchored at the landmarks;
- photometry: gain, gamma, colour balance and blur.

Coordinates: ``(x, y)`` in pixels with pixel centres at integer positions
(as OpenCV's ``remap`` and dlib use them). The subject map ``H`` sends a frame
position ``y`` to the astronaut position it shows,
``H(y) = C(y) + w(C(y))`` with ``C`` affine and ``w`` the shape warp. The
subject's landmarks are the exact preimages of the astronaut landmarks under
``H`` (solved by fixed-point iteration to 1e-9 px), so they are the ground
truth for the rendered geometry, as good as dlib's landmarks on the original
photograph.

Frames are rendered from a supersampled texture (``supersample`` texels per
pixel, covering the frame plus ``margin`` pixels on each side) by bilinear
interpolation at exact positions: OpenCV 5 ``remap`` with ``INTER_LINEAR`` on a
float 1-, 3- or 4-channel image does not round positions to 1/32 pixel (it does
for 2-channel images), and its bicubic kernel shifts a linear ramp by up to
0.05 px, so bicubic is used only where that does not matter (building the
texture from the photograph).

References
----------
.. [1] D. E. King, "Dlib-ml: A machine learning toolkit", JMLR 10, 1755-1758, 2009.
.. [2] V. Kazemi, J. Sullivan, "One millisecond face alignment with an ensemble
   of regression trees", CVPR 2014.
.. [3] S. van der Walt et al., "scikit-image: image processing in Python",
   PeerJ 2:e453, 2014 (``skimage.data.astronaut``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .._validate import check_range
from ..errors import ConvergenceError, DatasetError, ParameterError
from .au import BumpField, face_frame

__all__ = ["Subject", "base_face_record", "make_subject", "sample_texture"]

logger = logging.getLogger("mexkit")

#: Texels per frame pixel in a subject's texture.
SUPERSAMPLE = 2

# Shape modes of the subject warp: (anchors, direction (u, v) in the face frame,
# support radius in IOD). Each mode gets one random coefficient per subject.
_SHAPE_MODES: tuple[tuple[tuple[tuple[int, ...], tuple[float, float]], ...], ...] = (
    # jaw width
    (((3, 4), (-1.0, 0.0)), ((12, 13), (1.0, 0.0))),
    # face length (chin)
    (((7, 8, 9), (0.0, 1.0)),),
    # eye spacing
    (((36, 39), (-1.0, 0.0)), ((42, 45), (1.0, 0.0))),
    # brow height
    (((18, 19, 20), (0.0, -1.0)), ((23, 24, 25), (0.0, -1.0))),
    # nose length
    (((32, 33, 34), (0.0, 1.0)),),
    # mouth width
    (((48,), (-1.0, 0.0)), ((54,), (1.0, 0.0))),
    # mouth height
    (((51, 57, 62, 66), (0.0, 1.0)),),
)
_SHAPE_RADII = (0.8, 0.8, 0.55, 0.55, 0.5, 0.5, 0.5)


@functools.lru_cache(maxsize=1)
def base_face_record() -> dict:
    """The shipped base face record (landmarks of ``skimage.data.astronaut()``).

    Returns
    -------
    dict
        Keys include ``landmarks`` (68 x [x, y] in pixels of the 512 x 512
        image), ``image_sha256``, ``detector_rect_ltrb``, ``dlib_version``.
    """
    try:
        text = resources.files("mexkit").joinpath("data/base_face.json").read_text("utf-8")
        record = json.loads(text)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"Cannot read mexkit/data/base_face.json: {exc}") from exc
    lm = np.asarray(record.get("landmarks"), dtype=np.float64)
    if lm.shape != (68, 2):
        raise DatasetError(
            f"mexkit/data/base_face.json holds landmarks of shape {lm.shape!r}, not (68, 2)."
        )
    return record


def _astronaut_png() -> np.ndarray | None:
    """The astronaut PNG scikit-image bundles, decoded by OpenCV (RGB), or None.

    ``skimage.data.astronaut()`` reads the same file through ``skimage.io``,
    whose import (imageio, scipy.linalg) costs 0.3 s of CPU in every process
    that renders a subject; the decoded pixels are checked against the record's
    digest by the caller either way.
    """
    import importlib.util  # start-up: only where a subject is made

    spec = importlib.util.find_spec("skimage")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        bgr = cv2.imread(str(Path(folder) / "data" / "astronaut.png"), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return None


@functools.lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    expected = base_face_record()["image_sha256"]
    image = _astronaut_png()
    digest = (hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
              if image is not None else None)
    if digest != expected:  # not found, or decoded otherwise: scikit-image's own reader
        from skimage.data import astronaut  # start-up: see _astronaut_png

        image = astronaut()
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    if digest != expected:
        logger.warning(
            "skimage.data.astronaut() differs from the image the base face landmarks were "
            "computed on (sha256 %s); synthetic landmarks may be off.", digest[:12])
    image = image.astype(np.float32)
    image.setflags(write=False)
    return image


def _base_landmarks() -> np.ndarray:
    return np.asarray(base_face_record()["landmarks"], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Subject:
    """A synthetic subject: one neutral face image and its landmarks.

    Attributes
    ----------
    seed : int
        The seed that defines the subject.
    image : ndarray, shape (H, W, 3), uint8
        Neutral RGB frame (no sensor noise).
    landmarks : ndarray, shape (68, 2), float32
        iBUG-68 landmarks (x, y) of ``image``, pixels, 0-based order.
    params : dict
        The drawn parameters (``face_width``, ``rotation_deg``, ``aspect``,
        ``gain``, ``gamma``, ``colour`` (3 floats), ``blur``, ``shape`` (7
        floats), ``centre`` (x, y)).
    texture : ndarray, shape (Ht, Wt, 3), float32
        Supersampled RGB texture in [0, 255]; texel ``(i, j)`` shows frame
        position ``(j / supersample - margin, i / supersample - margin)``.
    margin : int
        Frame pixels covered by ``texture`` beyond each image border.
    supersample : int
        Texels per pixel.
    """

    seed: int
    image: np.ndarray
    landmarks: np.ndarray
    params: dict = field(repr=False)
    texture: np.ndarray = field(repr=False)
    margin: int = 0
    supersample: int = SUPERSAMPLE

    @property
    def shape(self) -> tuple[int, int]:
        """Frame size ``(H, W)``."""
        return self.image.shape[0], self.image.shape[1]


def sample_texture(subject: Subject, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of a subject's texture at frame positions.

    Parameters
    ----------
    subject : Subject
    x, y : ndarray, same shape S
        Frame positions (pixels); they must lie within ``margin`` pixels of
        the image.

    Returns
    -------
    ndarray, shape S + (3,), float32
        RGB values in [0, 255].
    """
    ss, m = subject.supersample, subject.margin
    mx = ((np.asarray(x, dtype=np.float64) + m) * ss).astype(np.float32)
    my = ((np.asarray(y, dtype=np.float64) + m) * ss).astype(np.float32)
    shape = mx.shape
    if mx.ndim != 2:
        mx, my = mx.reshape(1, -1), my.reshape(1, -1)
    out = cv2.remap(subject.texture, mx, my, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(shape + (3,))


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _invert_warp(warp: BumpField, targets: np.ndarray, *, tol: float = 1e-9,
                 max_iter: int = 200) -> np.ndarray:
    """Solve ``c + warp(c) = targets`` for ``c`` by fixed-point iteration."""
    c = targets - warp(targets)
    for _ in range(max_iter):
        new = targets - warp(c)
        step = float(np.abs(new - c).max()) if len(c) else 0.0
        c = new
        if step < tol:
            return c
    raise ConvergenceError(
        f"The subject shape warp could not be inverted (last step {step:.3g} px)."
    )


def _shape_warp(lm_a: np.ndarray, iod_a: float, eu_a: np.ndarray, ev_a: np.ndarray,
                shape_coef: np.ndarray) -> BumpField:
    """A subject's shape warp ``w`` in astronaut coordinates (bumps along the shape modes).

    Scaled down where needed so that the Jacobian norm of ``w`` stays at most
    0.3: ``id + w`` is then a gentle diffeomorphism.
    """
    centres, vectors, radii = [], [], []
    for coef, mode, rad in zip(shape_coef, _SHAPE_MODES, _SHAPE_RADII, strict=True):
        for anchors, (du, dv) in mode:
            centres.append(lm_a[list(anchors)].mean(axis=0))
            vectors.append(0.05 * iod_a * coef * (du * eu_a + dv * ev_a))
            radii.append((rad * iod_a, rad * iod_a))
    warp = BumpField(np.array(centres), np.array(vectors), np.array(radii), 0.0)
    # keep the warp a gentle diffeomorphism: Jacobian norm of w at most 0.3
    bx0, by0, bx1, by1 = warp.bbox()
    probe = warp.raster(np.floor(bx0), np.floor(by0), int(bx1 - bx0) + 3, int(by1 - by0) + 3)
    jx, jy = np.diff(probe, axis=1)[:-1], np.diff(probe, axis=0)[:, :-1]
    slope = float(np.sqrt((jx * jx).sum(-1) + (jy * jy).sum(-1)).max())
    if slope > 0.3:
        warp = warp.scaled(0.3 / slope)
    return warp


def _texture(warp: BumpField, lin_inv: np.ndarray, centre_a: np.ndarray,
             centre_f: np.ndarray, k: float, *, height: int, width: int, margin: int,
             blur: float, colour: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    """A subject's supersampled texture (read-only float32, 0-255).

    ``H = (id + w) o C`` (``C`` the affine map ``lin_inv`` from frame to
    astronaut coordinates) is evaluated on the supersampled grid, the
    anti-aliased astronaut is sampled there bicubically, then the photometry
    (blur, colour, gain, gamma) is applied.
    """
    ss = SUPERSAMPLE
    ht = (height - 1 + 2 * margin) * ss + 1
    wt = (width - 1 + 2 * margin) * ss + 1
    fx = np.arange(wt) / ss - margin
    fy = np.arange(ht) / ss - margin
    gx, gy = np.meshgrid(fx - centre_f[0], fy - centre_f[1])
    cx = lin_inv[0, 0] * gx + lin_inv[0, 1] * gy + centre_a[0]
    cy = lin_inv[1, 0] * gx + lin_inv[1, 1] * gy + centre_a[1]
    x0, y0, x1, y1 = warp.bbox()
    # raster of w in astronaut coordinates, sampled bicubically at C(y)
    step = 0.5
    wx0, wy0 = np.floor(x0) - 2, np.floor(y0) - 2
    wr = warp.raster(wx0, wy0, int((np.ceil(x1) + 2 - wx0) / step) + 1,
                     int((np.ceil(y1) + 2 - wy0) / step) + 1, step).astype(np.float32)
    # one plane at a time: OpenCV rounds positions to 1/32 px for 2-channel images
    mxw = ((cx - wx0) / step).astype(np.float32)
    myw = ((cy - wy0) / step).astype(np.float32)
    wmx, wmy = (cv2.remap(np.ascontiguousarray(wr[..., c]), mxw, myw, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0) for c in (0, 1))
    astro = _astronaut()
    sigma_a = 0.5 / k
    astro = cv2.GaussianBlur(astro, (0, 0), sigma_a)
    tex = cv2.remap(astro, (cx + wmx).astype(np.float32),
                    (cy + wmy).astype(np.float32), cv2.INTER_CUBIC,
                    borderMode=cv2.BORDER_REFLECT_101)
    if blur > 0.05:
        tex = cv2.GaussianBlur(tex, (0, 0), blur * ss)
    tex = np.clip(tex * colour.astype(np.float32) / 255.0, 0.0, 1.0)
    tex = np.clip(255.0 * gain * tex ** np.float32(gamma), 0.0, 255.0).astype(np.float32)
    tex = np.ascontiguousarray(tex)
    tex.setflags(write=False)
    return tex


def make_subject(seed: int, *, size: int | tuple[int, int] = 240,
                 face_width: float | None = None,
                 variation: float = 1.0, margin: int | None = None) -> Subject:
    """Draw a synthetic subject from the bundled real face.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed gives an identical subject.
    size : int or (int, int), optional
        Frame size in pixels, ``H = W = size`` or ``(H, W)``; default 240.
    face_width : float, optional
        Mean face width (jaw landmark 0 to 16) in pixels; default 7/12 of the
        smaller frame side (140 at 240 pixels); each subject's width varies by
        up to +-7 % (times ``variation``).
    variation : float, optional
        Scales every random variation about the middle of its range (0 gives
        the undistorted, upright base face with mid-range photometry), default 1.
    margin : int, optional
        Pixels of texture beyond each frame border (room for head motion);
        default ``max(8, min(H, W) // 10)``.

    Returns
    -------
    Subject
        Neutral image (H, W, 3) uint8, landmarks (68, 2) float32 and texture.

    References
    ----------
    .. [1] H. Wendland, Adv. Comput. Math. 4, 389-396, 1995 (warp kernel).
    """
    seed = int(seed)
    check_range("seed", seed, 0)
    height, width = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    check_range("size", min(height, width), 64)
    if face_width is None:
        face_width = 140.0 * min(height, width) / 240.0
    check_range("face_width", face_width, 0.2 * min(height, width), 0.65 * min(height, width))
    check_range("variation", variation, 0.0, 2.0)
    margin = max(8, min(height, width) // 10) if margin is None else int(margin)
    check_range("margin", margin, 0)
    rng = np.random.default_rng([seed, 0x5B1EC7])

    def u(lo: float, hi: float) -> float:
        mid = 0.5 * (lo + hi)
        return float(mid + variation * (rng.uniform(lo, hi) - mid))

    lm_a = _base_landmarks()
    origin_a, eu_a, ev_a, iod_a = face_frame(lm_a)
    astro_width = float(np.hypot(*(lm_a[16] - lm_a[0])))

    fw = face_width * u(0.93, 1.07)
    theta = np.deg2rad(u(-4.0, 4.0))
    aspect = u(0.94, 1.06)
    shift = np.array([u(-0.03, 0.03) * width, u(-0.03, 0.03) * height])
    shape_coef = np.clip(rng.standard_normal(len(_SHAPE_MODES)), -2.0, 2.0) * variation
    gain = u(0.85, 1.15)
    gamma = u(0.8, 1.25)
    colour = np.array([u(0.88, 1.12) for _ in range(3)])
    blur = u(0.0, 0.7)

    # Face centre in the astronaut: middle of the jaw width, half way between
    # the top of the forehead (estimated above the brows) and the chin.
    brow_top = lm_a[17:27, 1].min()
    chin = lm_a[8, 1]
    centre_a = np.array([0.5 * (lm_a[0, 0] + lm_a[16, 0]),
                         0.5 * (brow_top - 0.45 * (chin - brow_top) + chin)])
    k = fw / astro_width
    centre_f = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) + shift
    # forward affine F(a) = centre_f + k R diag(ax, 1/ax) (a - centre_a)
    ax = np.sqrt(aspect)
    lin = k * _rot(theta) @ np.diag([ax, 1.0 / ax])
    lin_inv = np.linalg.inv(lin)

    warp = _shape_warp(lm_a, iod_a, eu_a, ev_a, shape_coef)

    # Landmarks: preimages of the astronaut landmarks under H = (id + w) o C.
    c = _invert_warp(warp, lm_a)
    landmarks = (c - centre_a) @ lin.T + centre_f

    ss = SUPERSAMPLE
    tex = _texture(warp, lin_inv, centre_a, centre_f, k, height=height, width=width,
                   margin=margin, blur=blur, colour=colour, gain=gain, gamma=gamma)

    start = margin * ss
    image = tex[start:start + height * ss:ss, start:start + width * ss:ss]
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    image.setflags(write=False)
    lm32 = landmarks.astype(np.float32)
    lm32.setflags(write=False)
    params = {
        "face_width": fw, "rotation_deg": float(np.rad2deg(theta)), "aspect": aspect,
        "centre": [float(centre_f[0]), float(centre_f[1])], "shape": shape_coef.tolist(),
        "gain": gain, "gamma": gamma, "colour": colour.tolist(), "blur": blur,
    }
    inside = (lm32 >= 0).all() and (lm32 <= np.array([width - 1, height - 1])).all()
    if not inside:
        raise ParameterError(
            f"Subject {seed}: the face does not fit a {height}x{width} frame with "
            f"face_width={face_width!r}; use a larger 'size' or smaller 'face_width'."
        )
    return Subject(seed=seed, image=image, landmarks=lm32, params=params, texture=tex,
                   margin=margin, supersample=ss)
