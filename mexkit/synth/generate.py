"""Synthetic micro-expression clips and long videos with exact ground truth.

Ground-truth convention
-----------------------
``flow[t]`` is the *forward* displacement from frame 0 to frame ``t``: the
face point shown at pixel ``x`` of frame 0 is shown at ``x + flow[t](x)`` in
frame ``t``, so

    ``frame_t(x + flow_t(x)) = frame_0(x)``  (up to sensor noise and rounding),

with ``x = (column, row)`` in pixels (pixel centres at integer positions),
``flow`` of shape ``(T, 2, H, W)`` float32, channel 0 the horizontal component
``u`` (x), channel 1 the vertical component ``v`` (y), and ``flow[0] = 0``.
``landmarks[t] = landmarks[0] + flow_t`` evaluated exactly at the landmarks,
shape ``(T, 68, 2)`` float32 (x, y), iBUG-68, 0-based.

How frames are made
-------------------
The deformation of frame ``t`` is ``P_t(x) = M_t(x + S_t(x))``: ``S_t(x) =
sum_k a_k(t) D_k(x)`` is the sum of the expression fields ``D_k`` (action-unit
shaped, see :mod:`mexkit.synth.au`) weighted by their onset-apex-offset
activations ``a_k(t)`` in [0, 1], and ``M_t`` is a small rigid head motion
(rotation about the face centre plus translation; ``M_0`` is the identity).
``flow_t(x) = P_t(x) - x`` on the pixel grid.

Frame ``t`` is rendered by backward warping: for each pixel ``y`` the
preimage ``x = P_t^{-1}(y)`` is found as ``z = M_t^{-1}(y)`` followed by the
fixed-point iteration ``x <- z - S_t(x)`` (a contraction: every field is checked
to have a Lipschitz constant below 0.9), run until the step is below 5e-5 px
(float32 maps limit it to about 1e-5 px). ``S_t`` is looked up by bilinear
interpolation in a raster of the field supersampled 2-16 times (chosen from
the field's curvature and slope), so the inverse is accurate to a few 1e-4 px
(measured against the analytic field: at most 3.4e-4 px for micro- and
macro-expressions and blinks). The subject's texture is then sampled at ``x``
with OpenCV's ``remap`` (bilinear, exact positions), Gaussian sensor noise of
standard deviation ``noise_sigma`` grey levels is added independently per
pixel, channel and frame (drawn from a 65536-quantile table, so its tails stop
at 4.3 sigma), and the result is rounded to uint8.

Expressions
-----------
- micro-expressions: 0.2-0.5 s, peak displacement 0.3-2 px by default;
  surprise = AU1+2, positive = AU12, negative = AU4 or AU9;
- macro-expressions: the same shapes, 2.5-5 px, 0.5-4 s, with the apex held
  for up to 30 % of the duration;
- blinks (AU45): 0.1-0.4 s, upper eyelids travel 45-60 % of the lid opening.

References
----------
.. [1] W.-J. Yan et al., "CASME II: An improved spontaneous micro-expression
   database and the baseline evaluation", PLoS ONE 9(1), e86041, 2014.
.. [2] A. K. Davison et al., "SAMM: A spontaneous micro-facial movement
   dataset", IEEE Trans. Affective Computing 9(1), 116-129, 2018.
.. [3] C. H. Yap et al., "SAMM Long Videos: A spontaneous facial micro- and
   macro-expressions dataset", IEEE FG 2020.
.. [4] P. Ekman, W. V. Friesen, J. C. Hager, "Facial Action Coding System", 2002.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .._validate import check_option, check_range
from ..errors import ConvergenceError, ParameterError
from .au import BumpField, action_unit_field, apex_profile, blink_field
from .face import Subject, sample_texture

__all__ = [
    "CLASSES",
    "CLASS_AUS",
    "ClipTruth",
    "Interval",
    "LongVideoTruth",
    "head_motion",
    "make_clip",
    "make_long_video",
]

logger = logging.getLogger("mexkit")

#: Expression classes (MEGC 2019 composite scheme).
CLASSES = ("negative", "positive", "surprise")
#: Action-unit combinations of each class; one is drawn per expression.
CLASS_AUS: dict[str, tuple[tuple[int, ...], ...]] = {
    "negative": ((4,), (9,)),
    "positive": ((12,),),
    "surprise": ((1, 2),),
}
#: Default ranges: micro-expression duration (s) and peak displacement (px).
MICRO_SECONDS = (0.2, 0.5)
MICRO_INTENSITY = (0.3, 2.0)
MACRO_SECONDS = (0.5, 4.0)
MACRO_INTENSITY = (2.5, 5.0)
BLINK_SECONDS = (0.1, 0.4)
BLINK_CLOSURE = (0.45, 0.6)

_MAX_SLOPE = 0.9
_INTERP_TOL = 3e-4
_STEP_TOL = 5e-5
_MAX_ITER = 200
_MAX_FINE = 1_500_000  # points in a supersampled field raster
_TILE = 1024  # OpenCV maps must stay below 32767 columns


@functools.cache
def _normal_table() -> np.ndarray:
    """Standard normal quantiles at the midpoints of 65536 equal-probability bins:
    indexing it with uniform 16-bit integers draws Gaussian noise (tails cut at
    4.3 sigma) four times faster than Generator.standard_normal. Made on first use:
    scipy.special takes about 0.3 s to import, which a process that renders no
    frame (``mexkit synth``'s main process with ``-j 2``) need not pay."""
    from scipy.special import ndtri  # start-up: 0.3 s, only for processes that render

    table = ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)
    table.flags.writeable = False
    return table


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _remap_points(src: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``src`` (h, w, 4) at N points, zero outside; (N, 4).

    Four channels on purpose: OpenCV 5 resolves positions exactly for 1-, 3-
    and 4-channel float images but rounds them to 1/32 px for 2 channels.
    """
    n = mx.size
    rows = -(-n // _TILE)
    pad = rows * _TILE - n
    mx = np.concatenate([mx.ravel(), np.full(pad, -10.0)]).astype(np.float32)
    my = np.concatenate([my.ravel(), np.full(pad, -10.0)]).astype(np.float32)
    out = cv2.remap(src, mx.reshape(rows, _TILE), my.reshape(rows, _TILE), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(rows * _TILE, 4)[:n]


class _Event:
    """One deformation field prepared for rendering."""

    def __init__(self, bump: BumpField, shape: tuple[int, int], landmarks: np.ndarray) -> None:
        height, width = shape
        xmin, ymin, xmax, ymax = bump.bbox()
        x0, y0 = int(np.floor(xmin)) - 1, int(np.floor(ymin)) - 1
        x1, y1 = int(np.ceil(xmax)) + 1, int(np.ceil(ymax)) + 1
        coarse = bump.raster(x0, y0, x1 - x0 + 1, y1 - y0 + 1, 1.0)
        # Supersampling: bilinear lookup errs by about curvature / (8 factor^2), and
        # the fixed-point inverse amplifies a lookup error by 1 / (1 - slope).
        curv = slope0 = 0.0
        for axis in (0, 1):
            d1 = np.abs(np.diff(coarse, n=1, axis=axis))
            d2 = np.abs(np.diff(coarse, n=2, axis=axis))
            slope0 = max(slope0, float(d1.max()) if d1.size else 0.0)
            curv = max(curv, float(d2.max()) if d2.size else 0.0)
        gain = 1.0 / (1.0 - min(slope0 * np.sqrt(2.0), 0.85))
        factor = np.ceil(np.sqrt(curv * gain / (8 * _INTERP_TOL)))
        room = np.sqrt(_MAX_FINE / ((x1 - x0 + 1) * (y1 - y0 + 1)))
        factor = int(np.clip(factor, 2, max(2, min(16, np.floor(room)))))
        fine = bump.raster(x0, y0, (x1 - x0) * factor + 1, (y1 - y0) * factor + 1, 1.0 / factor)
        # Lipschitz constant of the field: Frobenius norm of forward differences
        jx = np.diff(fine, axis=1)[:-1] * factor
        jy = np.diff(fine, axis=0)[:, :-1] * factor
        slope = float(np.sqrt((jx * jx).sum(-1) + (jy * jy).sum(-1)).max())
        self.bump = bump
        self.window = (x0, y0, x1, y1)
        self.factor = factor
        fine4 = np.zeros(fine.shape[:2] + (4,), dtype=np.float32)
        fine4[..., :2] = fine
        self.fine = fine4
        self.slope = slope
        self.peak = float(np.hypot(coarse[..., 0], coarse[..., 1]).max())
        grid = np.zeros((2, height, width), dtype=np.float64)
        gx0, gy0 = max(x0, 0), max(y0, 0)
        gx1, gy1 = min(x1, width - 1), min(y1, height - 1)
        if gx0 <= gx1 and gy0 <= gy1:
            block = coarse[gy0 - y0:gy1 - y0 + 1, gx0 - x0:gx1 - x0 + 1]
            grid[:, gy0:gy1 + 1, gx0:gx1 + 1] = np.moveaxis(block, -1, 0)
        self.grid = grid
        self.at_landmarks = bump(landmarks)

    def lookup(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        x0, y0 = self.window[:2]
        return _remap_points(self.fine, (px - x0) * self.factor,
                             (py - y0) * self.factor)[:, :2].astype(np.float64)


class _Scene:
    """Subject + weighted deformation fields + rigid motion + noise."""

    def __init__(self, subject: Subject, events: list[_Event], activation: np.ndarray,
                 rigid: np.ndarray, noise_sigma: float, noise_seed: int) -> None:
        self.subject = subject
        self.events = events
        self.activation = activation
        self.rigid = rigid
        self.noise_sigma = float(noise_sigma)
        self.noise_seed = int(noise_seed)
        height, width = subject.shape
        self.gy, self.gx = np.mgrid[0:height, 0:width].astype(np.float64)
        for k, ev in enumerate(events):
            top = float(activation[:, k].max()) if len(activation) else 0.0
            if top * ev.slope >= _MAX_SLOPE:
                raise ParameterError(
                    f"Expression {k}: peak displacement {top * ev.peak:.3g} px is too large "
                    f"for its action units (the field would fold: Lipschitz constant "
                    f"{top * ev.slope:.2f} >= {_MAX_SLOPE}); lower the 'intensity'."
                )
        reach = self._max_displacement()
        if reach > subject.margin - 1:
            raise ParameterError(
                f"Head motion plus expression reach {reach:.3g} px, more than the subject's "
                f"texture margin ({subject.margin} px) allows; lower the head motion."
            )

    def _max_displacement(self) -> float:
        height, width = self.subject.shape
        corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]],
                           dtype=np.float64)
        rigid = float(max(np.abs(corners @ m[:, :2].T + m[:, 2] - corners).max()
                          for m in self.rigid)) if len(self.rigid) else 0.0
        expr = max((float(self.activation[:, k].max()) * ev.peak
                    for k, ev in enumerate(self.events)), default=0.0)
        return rigid + expr

    def _weights(self, t: int) -> list[tuple[float, _Event]]:
        return [(float(a), ev) for a, ev in zip(self.activation[t], self.events, strict=True)
                if a != 0.0]

    def expression(self, t: int) -> np.ndarray:
        """``S_t`` on the pixel grid, (2, H, W) float64."""
        out = np.zeros_like(self.events[0].grid) if self.events else None
        if out is None:
            return np.zeros((2,) + self.subject.shape)
        for a, ev in self._weights(t):
            out += a * ev.grid
        return out

    def flow(self, t: int) -> np.ndarray:
        s = self.expression(t)
        px, py = self.gx + s[0], self.gy + s[1]
        m = self.rigid[t]
        fx = m[0, 0] * px + m[0, 1] * py + m[0, 2] - self.gx
        fy = m[1, 0] * px + m[1, 1] * py + m[1, 2] - self.gy
        return np.stack([fx, fy]).astype(np.float32)

    def preimage(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``P_t^{-1}`` of every pixel: (x, y) arrays of shape (H, W), float64."""
        m = self.rigid[t]
        inv = np.linalg.inv(m[:, :2])
        dx, dy = self.gx - m[0, 2], self.gy - m[1, 2]
        zx = inv[0, 0] * dx + inv[0, 1] * dy
        zy = inv[1, 0] * dx + inv[1, 1] * dy
        weights = self._weights(t)
        if not weights:
            return zx, zy
        mask = np.zeros(zx.shape, dtype=bool)
        for a, ev in weights:
            x0, y0, x1, y1 = ev.window
            r = a * ev.peak + 1.0
            mask |= (zx >= x0 - r) & (zx <= x1 + r) & (zy >= y0 - r) & (zy <= y1 + r)
        idx = np.flatnonzero(mask)
        pzx, pzy = zx.ravel()[idx], zy.ravel()[idx]

        def field_at(px: np.ndarray, py: np.ndarray) -> np.ndarray:
            total = np.zeros((px.size, 2))
            for a, ev in weights:
                total += a * ev.lookup(px, py)
            return total

        s = field_at(pzx, pzy)
        x, y = pzx - s[:, 0], pzy - s[:, 1]
        step = np.inf
        for _ in range(_MAX_ITER):
            s = field_at(x, y)
            nx, ny = pzx - s[:, 0], pzy - s[:, 1]
            step = float(max(np.abs(nx - x).max(), np.abs(ny - y).max())) if x.size else 0.0
            x, y = nx, ny
            if step < _STEP_TOL:
                break
        else:
            raise ConvergenceError(
                f"Frame {t}: inverting the deformation did not converge (last step {step:.3g} px)."
            )
        zx, zy = zx.copy(), zy.copy()
        zx.ravel()[idx] = x
        zy.ravel()[idx] = y
        return zx, zy

    def frame(self, t: int) -> np.ndarray:
        x, y = self.preimage(t)
        img = sample_texture(self.subject, x, y)
        if self.noise_sigma > 0:
            noise_rng = np.random.default_rng([self.noise_seed, t])
            table = _normal_table()
            idx = noise_rng.integers(0, table.size, img.shape, dtype=np.uint16)
            img = img + table[idx] * np.float32(self.noise_sigma)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def landmarks(self) -> np.ndarray:
        base = self.subject.landmarks.astype(np.float64)
        n = len(self.rigid)
        out = np.empty((n, 68, 2))
        for t in range(n):
            p = base.copy()
            for a, ev in self._weights(t):
                p += a * ev.at_landmarks
            m = self.rigid[t]
            out[t] = p @ m[:, :2].T + m[:, 2]
        return out.astype(np.float32)


def head_motion(n_frames: int, *, fps: float, centre: np.ndarray | tuple[float, float],
                translation: float = 0.3, rotation: float = 0.1,
                rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Smooth small rigid head motion (drift), identity at frame 0.

    Each of x shift, y shift and roll angle is a sum of three sinusoids of
    0.1-0.6 Hz with random phases, shifted to start at 0 and scaled so that
    its largest excursion over the video is 50-100 % of the given amplitude.
    Over a clip of a fraction of a second this is a slow drift.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    fps : float
        Frame rate, frames per second.
    centre : (float, float)
        Centre of rotation (x, y), pixels (the face centre).
    translation : float, optional
        Largest translation per axis, pixels; default 0.3.
    rotation : float, optional
        Largest roll angle, degrees; default 0.1.
    rng : Generator or int or None

    Returns
    -------
    ndarray, shape (T, 2, 3), float64
        Affine matrices ``M_t``: a frame-0 position ``p`` moves to
        ``M_t[:, :2] @ p + M_t[:, 2]``.
    """
    check_range("n_frames", n_frames, 1)
    check_range("fps", fps, 0.0, low_open=True)
    check_range("translation", translation, 0.0)
    check_range("rotation", rotation, 0.0)
    rng = _rng(rng)
    t = np.arange(n_frames) / float(fps)

    def curve(amplitude: float) -> np.ndarray:
        freq = rng.uniform(0.1, 0.6, 3)
        phase = rng.uniform(0.0, 2 * np.pi, 3)
        coef = rng.standard_normal(3)
        scale = rng.uniform(0.5, 1.0)
        y = (coef[:, None] * (np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])
                              - np.sin(phase)[:, None])).sum(axis=0)
        peak = np.abs(y).max()
        if amplitude == 0 or peak == 0:
            return np.zeros(n_frames)
        return y / peak * amplitude * scale

    tx, ty = curve(translation), curve(translation)
    theta = np.deg2rad(curve(rotation))
    c = np.asarray(centre, dtype=np.float64)
    out = np.empty((n_frames, 2, 3))
    cos, sin = np.cos(theta), np.sin(theta)
    out[:, 0, 0], out[:, 0, 1] = cos, -sin
    out[:, 1, 0], out[:, 1, 1] = sin, cos
    out[:, 0, 2] = c[0] + tx - (cos * c[0] - sin * c[1])
    out[:, 1, 2] = c[1] + ty - (sin * c[0] + cos * c[1])
    return out


@dataclass(frozen=True, eq=False)
class ClipTruth:
    """A micro-expression clip and its ground truth.

    Attributes
    ----------
    frames : ndarray, shape (T, H, W, 3), uint8
        RGB frames.
    flow : ndarray, shape (T, 2, H, W), float32, or None
        Forward displacement from frame 0 to frame t, pixels (channel 0 = x/u,
        1 = y/v); see the module docstring. None when made without it
        (``dense_flow=False``): ``rigid``, ``activation`` and ``expression``
        still define it.
    landmarks : ndarray, shape (T, 68, 2), float32
        Landmarks (x, y) of every frame.
    onset, apex, offset : int
        0-based frame positions.
    label : str
        Class, one of :data:`CLASSES`.
    aus : tuple of int
        Action units of the expression.
    fps : float
        Frame rate.
    intensity : float
        Peak expression displacement on the pixel grid at the apex, pixels
        (head motion excluded).
    noise_sigma : float
        Standard deviation of the added sensor noise, grey levels.
    activation : ndarray, shape (T,), float32
        Onset-apex-offset profile in [0, 1].
    rigid : ndarray, shape (T, 2, 3), float64
        Head-motion matrices ``M_t``.
    expression : ndarray, shape (2, H, W), float32
        The expression field at the apex, ``D`` (``flow[t] = M_t(x +
        activation[t] D(x)) - x``).
    subject_seed : int
    """

    frames: np.ndarray
    flow: np.ndarray | None
    landmarks: np.ndarray
    onset: int
    apex: int
    offset: int
    label: str
    aus: tuple[int, ...]
    fps: float
    intensity: float
    noise_sigma: float
    activation: np.ndarray
    rigid: np.ndarray
    expression: np.ndarray = field(repr=False)
    subject_seed: int = 0


def _pick_aus(label: str, aus: tuple[int, ...] | None, rng: np.random.Generator
              ) -> tuple[int, ...]:
    if aus is not None:
        return tuple(int(a) for a in aus)
    options = CLASS_AUS[label]
    return options[int(rng.integers(len(options)))]


def make_clip(subject: Subject, *, label: str, fps: float = 200.0, n_frames: int | None = None,
              onset: int | None = None, apex: int | None = None, offset: int | None = None,
              intensity: float | None = None, aus: tuple[int, ...] | None = None,
              noise_sigma: float = 1.0, head_translation: float = 0.3,
              head_rotation: float = 0.1,
              rng: np.random.Generator | int | None = None,
              dense_flow: bool = True) -> ClipTruth:
    """Render one micro-expression clip with its ground truth.

    Parameters
    ----------
    subject : Subject
        From :func:`mexkit.synth.face.make_subject`.
    label : {'negative', 'positive', 'surprise'}
        Class; picks the action units (:data:`CLASS_AUS`) unless ``aus`` is given.
    fps : float, optional
        Frame rate, default 200 (CASME II).
    n_frames : int, optional
        Clip length T. By default the clip runs from onset to offset and lasts
        0.2-0.5 s (drawn).
    onset, apex, offset : int, optional
        0-based positions; defaults: onset 0, offset T - 1, apex 30-60 % of
        the way from onset to offset (drawn).
    intensity : float, optional
        Peak displacement at the apex, pixels; default drawn in 0.3-2 px.
    aus : tuple of int, optional
        Override the action units (see :data:`mexkit.synth.au.AU_NAMES`).
    noise_sigma : float, optional
        Sensor noise, grey levels (0-255 scale); default 1.
    head_translation, head_rotation : float, optional
        Largest head drift in pixels and degrees over the clip; defaults 0.3
        and 0.1 (0 for none).
    rng : Generator or int or None
        Randomness for everything drawn; the same seed gives identical arrays.
    dense_flow : bool, optional
        Also compute the flow of every frame (default); without it the clip's
        ``flow`` is None (the frames and everything else are the same).

    Returns
    -------
    ClipTruth
        Frames (T, H, W, 3) uint8, flow (T, 2, H, W) float32 (or None), landmarks
        (T, 68, 2) float32 and the annotations.

    References
    ----------
    .. [1] W.-J. Yan et al., "CASME II", PLoS ONE 9(1), e86041, 2014.
    """
    check_option("label", label, CLASSES)
    check_range("fps", fps, 0.0, low_open=True)
    check_range("noise_sigma", noise_sigma, 0.0)
    rng = _rng(rng)
    if n_frames is None:
        if onset is None and offset is None:
            span = max(2, int(round(rng.uniform(*MICRO_SECONDS) * fps)))
            onset, offset = 0, span
            n_frames = span + 1
        else:
            n_frames = (offset if offset is not None else 0) + 1
    n_frames = int(n_frames)
    check_range("n_frames", n_frames, 3)
    onset = 0 if onset is None else int(onset)
    offset = n_frames - 1 if offset is None else int(offset)
    if apex is None:
        frac = rng.uniform(0.3, 0.6)
        apex = int(np.clip(onset + round(frac * (offset - onset)), onset + 1, offset - 1))
    apex = int(apex)
    if not 0 <= onset < apex < offset <= n_frames - 1:
        raise ParameterError(
            f"Invalid onset/apex/offset for a clip of {n_frames} frames: need "
            f"0 <= onset < apex < offset <= {n_frames - 1}, but got onset={onset}, "
            f"apex={apex}, offset={offset}."
        )
    if intensity is None:
        intensity = float(rng.uniform(*MICRO_INTENSITY))
    aus = _pick_aus(label, aus, rng)
    bump = action_unit_field(subject.landmarks, aus, intensity=float(intensity))
    event = _Event(bump, subject.shape, subject.landmarks.astype(np.float64))
    activation = apex_profile(n_frames, onset, apex, offset)[:, None]
    centre = subject.landmarks.astype(np.float64).mean(axis=0)
    rigid = head_motion(n_frames, fps=fps, centre=centre, translation=head_translation,
                        rotation=head_rotation, rng=rng)
    noise_seed = int(rng.integers(2**63))
    scene = _Scene(subject, [event], activation, rigid, noise_sigma, noise_seed)
    height, width = subject.shape
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    flow = np.empty((n_frames, 2, height, width), dtype=np.float32) if dense_flow else None
    for t in range(n_frames):
        frames[t] = scene.frame(t)
        if flow is not None:
            flow[t] = scene.flow(t)
    return ClipTruth(
        frames=frames, flow=flow, landmarks=scene.landmarks(), onset=onset, apex=apex,
        offset=offset, label=label, aus=aus, fps=float(fps), intensity=float(event.peak),
        noise_sigma=float(noise_sigma), activation=activation[:, 0].astype(np.float32),
        rigid=rigid, expression=event.grid.astype(np.float32), subject_seed=subject.seed,
    )


@dataclass(frozen=True)
class Interval:
    """One annotated event of a long video (0-based, inclusive frame positions).

    Attributes
    ----------
    onset, apex, offset : int
    kind : {'micro', 'macro', 'blink'}
    label : str
        Class (:data:`CLASSES`) or ``'blink'``.
    aus : tuple of int
    intensity : float
        Peak displacement at the apex, pixels.
    """

    onset: int
    apex: int
    offset: int
    kind: str
    label: str
    aus: tuple[int, ...]
    intensity: float


@dataclass(frozen=True, eq=False)
class LongVideoTruth:
    """A long video with micro- and macro-expressions, blinks and head motion.

    Frames and flow are rendered on demand (a long video does not fit in
    memory at 200 fps); everything else is stored.

    Attributes
    ----------
    fps : float
    n_frames : int
    intervals : tuple of Interval
        Every event, sorted by onset; ``intervals[k]`` drives ``fields[k]``.
    landmarks : ndarray, shape (T, 68, 2), float32
    activation : ndarray, shape (T, K), float32
        Activation of each event's field per frame.
    rigid : ndarray, shape (T, 2, 3), float64
        Head-motion matrices ``M_t``.
    fields : ndarray, shape (K, 2, H, W), float32
        Apex displacement field ``D_k`` of each event, so that
        ``flow[t](x) = M_t(x + sum_k activation[t, k] fields[k](x)) - x``.
    noise_sigma : float
    subject_seed : int
    """

    fps: float
    n_frames: int
    intervals: tuple[Interval, ...]
    landmarks: np.ndarray
    activation: np.ndarray
    rigid: np.ndarray
    fields: np.ndarray = field(repr=False)
    noise_sigma: float = 1.0
    subject_seed: int = 0
    _scene: _Scene | None = field(default=None, repr=False)

    def _range(self, start: int, stop: int | None) -> range:
        stop = self.n_frames if stop is None else int(stop)
        if not 0 <= start <= stop <= self.n_frames:
            raise ParameterError(
                f"Invalid frame range [{start}, {stop}) for a video of {self.n_frames} frames."
            )
        return range(int(start), stop)

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start`` to ``stop - 1``: (n, H, W, 3) uint8."""
        r = self._range(start, stop)
        h, w = self._scene.subject.shape
        out = np.empty((len(r), h, w, 3), dtype=np.uint8)
        for i, t in enumerate(r):
            out[i] = self._scene.frame(t)
        return out

    def flow(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Forward flow from frame 0 to frames ``start`` .. ``stop - 1``: (n, 2, H, W) float32."""
        r = self._range(start, stop)
        h, w = self._scene.subject.shape
        out = np.empty((len(r), 2, h, w), dtype=np.float32)
        for i, t in enumerate(r):
            out[i] = self._scene.flow(t)
        return out


def _plan_events(n_frames: int, spans: list[int], gap: int, rng: np.random.Generator
                 ) -> list[int]:
    """Random non-overlapping starts for events of the given spans (in order)."""
    n = len(spans)
    free = n_frames - sum(s + 1 for s in spans) - (n + 1) * gap
    if free < 0:
        raise ParameterError(
            f"A video of {n_frames} frames is too short for {n} events of "
            f"{sum(s + 1 for s in spans)} frames in all; use more 'seconds' or fewer events."
        )
    parts = np.floor(rng.dirichlet(np.ones(n + 1)) * free).astype(int)
    starts, pos = [], 0
    for k, span in enumerate(spans):
        pos += gap + parts[k]
        starts.append(pos)
        pos += span + 1
    return starts


def _expression_labels(labels: Sequence[str] | None, n_expr: int,
                       rng: np.random.Generator) -> list[str]:
    """One class per expression: drawn at random, or ``labels`` repeated in turn."""
    if labels is None:
        return [CLASSES[int(i)] for i in rng.integers(len(CLASSES), size=n_expr)]
    labels = list(labels)
    if not labels and n_expr:
        raise ParameterError("Invalid value for the 'labels' parameter: it is empty.")
    for lab in labels:
        check_option("labels", lab, CLASSES)
    return [labels[i % len(labels)] for i in range(n_expr)]


def _long_video_event(kind: str, label: str, start: int, span: int, subject: Subject,
                      lm0: np.ndarray, micro_intensity: tuple[float, float],
                      rng: np.random.Generator) -> tuple[_Event, Interval, int]:
    """One event of a long video from frame ``start``, ``span`` frames long.

    Returns the event's motion, its interval (apex drawn in 30-60 % of the
    rise; macro-expressions hold their apex for up to 30 % of the span) and
    the hold in frames.
    """
    onset, offset = start, start + span
    hold = int(round(rng.uniform(0.0, 0.3) * span)) if kind == "macro" else 0
    rise = span - hold
    apex = int(np.clip(onset + round(rng.uniform(0.3, 0.6) * rise), onset + 1,
                       offset - hold - 1))
    if kind == "blink":
        bump = blink_field(lm0, closure=float(rng.uniform(*BLINK_CLOSURE)))
        aus: tuple[int, ...] = (45,)
    else:
        lo, hi = micro_intensity if kind == "micro" else MACRO_INTENSITY
        aus = _pick_aus(label, None, rng)
        bump = action_unit_field(lm0, aus, intensity=float(rng.uniform(lo, hi)))
    ev = _Event(bump, subject.shape, lm0)
    interval = Interval(onset=int(onset), apex=int(apex), offset=int(offset), kind=kind,
                        label=label, aus=aus, intensity=float(ev.peak))
    return ev, interval, hold


def make_long_video(subject: Subject, *, fps: float = 50.0, n_frames: int | None = None,
                    seconds: float = 12.0, n_micro: int = 3, n_macro: int = 1,
                    n_blinks: int = 2, labels: list[str] | tuple[str, ...] | None = None,
                    noise_sigma: float = 1.0, head_translation: float = 1.0,
                    head_rotation: float = 0.3,
                    micro_intensity: tuple[float, float] = MICRO_INTENSITY,
                    rng: np.random.Generator | int | None = None) -> LongVideoTruth:
    """Plan a long video with micro- and macro-expressions, blinks and head motion.

    Events do not overlap; they are separated by at least 0.2 s. Render
    frames with ``video.frames(start, stop)`` and flow with
    ``video.flow(start, stop)``.

    Parameters
    ----------
    subject : Subject
    fps : float, optional
        Frame rate, default 50.
    n_frames : int, optional
        Length; default ``round(seconds * fps)``.
    seconds : float, optional
        Length in seconds when ``n_frames`` is not given, default 12.
    n_micro, n_macro, n_blinks : int, optional
        Number of micro-expressions (0.2-0.5 s, 0.3-2 px), macro-expressions
        (0.5-4 s, 2.5-5 px) and blinks (0.1-0.4 s); defaults 3, 1, 2.
    labels : sequence of str, optional
        Classes of the micro- then macro-expressions (cycled); default drawn.
    noise_sigma : float, optional
        Sensor noise, grey levels; default 1.
    head_translation, head_rotation : float, optional
        Largest head drift in pixels and degrees; defaults 1 and 0.3.
    micro_intensity : (float, float), optional
        Range of the micro-expressions' peak displacement in pixels, default
        (0.3, 2.0).
    rng : Generator or int or None

    Returns
    -------
    LongVideoTruth
        Intervals (0-based, inclusive), landmarks (T, 68, 2), activations
        (T, K), head motion (T, 2, 3), fields (K, 2, H, W) and renderers.

    References
    ----------
    .. [1] C. H. Yap et al., "SAMM Long Videos", IEEE FG 2020.
    """
    check_range("fps", fps, 0.0, low_open=True)
    for name, val in (("n_micro", n_micro), ("n_macro", n_macro), ("n_blinks", n_blinks)):
        check_range(name, val, 0)
    check_range("noise_sigma", noise_sigma, 0.0)
    if not 0.0 < float(micro_intensity[0]) <= float(micro_intensity[1]):
        raise ParameterError(
            f"Invalid value for the 'micro_intensity' parameter: expected 0 < low <= high "
            f"pixels, but got {tuple(micro_intensity)!r}.")
    rng = _rng(rng)
    if n_frames is None:
        check_range("seconds", seconds, 0.0, low_open=True)
        n_frames = int(round(seconds * fps))
    n_frames = int(n_frames)
    check_range("n_frames", n_frames, 2)
    n_expr = n_micro + n_macro
    labels = _expression_labels(labels, n_expr, rng)
    seconds = n_frames / float(fps)

    def frames_for(lo: float, hi: float) -> int:
        return max(2, int(round(rng.uniform(lo, hi) * fps)))

    kinds = ["micro"] * n_micro + ["macro"] * n_macro + ["blink"] * n_blinks
    spans, labs = [], []
    for i, kind in enumerate(kinds):
        if kind == "micro":
            spans.append(frames_for(*MICRO_SECONDS))
        elif kind == "macro":
            spans.append(frames_for(MACRO_SECONDS[0], max(MACRO_SECONDS[0],
                                                            min(MACRO_SECONDS[1], seconds / 4))))
        else:
            spans.append(frames_for(*BLINK_SECONDS))
        labs.append(labels[i] if i < n_expr else "blink")
    order = rng.permutation(len(kinds)).tolist()
    gap = max(1, int(round(0.2 * fps)))
    starts = _plan_events(n_frames, [spans[i] for i in order], gap, rng)

    lm0 = subject.landmarks.astype(np.float64)
    events, intervals, columns = [], [], []
    for start, i in sorted(zip(starts, order, strict=True)):
        ev, interval, hold = _long_video_event(kinds[i], labs[i], start, spans[i], subject,
                                               lm0, micro_intensity, rng)
        events.append(ev)
        columns.append(apex_profile(n_frames, interval.onset, interval.apex, interval.offset,
                                    hold=hold))
        intervals.append(interval)
    activation = (np.stack(columns, axis=1) if columns else np.zeros((n_frames, 0)))
    rigid = head_motion(n_frames, fps=fps, centre=lm0.mean(axis=0),
                        translation=head_translation, rotation=head_rotation, rng=rng)
    noise_seed = int(rng.integers(2**63))
    scene = _Scene(subject, events, activation, rigid, noise_sigma, noise_seed)
    h, w = subject.shape
    fields = (np.stack([ev.grid for ev in events]).astype(np.float32) if events
              else np.zeros((0, 2, h, w), dtype=np.float32))
    logger.debug("long video: %d frames, %d events", n_frames, len(events))
    return LongVideoTruth(
        fps=float(fps), n_frames=n_frames, intervals=tuple(intervals),
        landmarks=scene.landmarks(), activation=activation.astype(np.float32), rigid=rigid,
        fields=fields, noise_sigma=float(noise_sigma), subject_seed=subject.seed, _scene=scene,
    )
