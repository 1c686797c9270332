"""Action-unit shaped displacement fields and their temporal profile.

A facial action is modelled as a smooth, local, *forward* displacement field
anchored at the 68 iBUG landmarks of a face: a sum of compactly supported
radial bumps,

.. math::

    D(x) = \\sum_j \\psi(q_j(x))\\, v_j, \\qquad
    q_j(x) = \\left\\| \\mathrm{diag}(r_j)^{-1} R^\\top (x - c_j) \\right\\|,

with the Wendland :math:`C^4` kernel
:math:`\\psi(q) = (1-q)_+^6 (35 q^2 + 18 q + 3) / 3` (:math:`\\psi(0) = 1`,
:math:`\\psi = 0` for :math:`q \\ge 1`), centres :math:`c_j` placed at (means of)
landmarks plus an offset, displacement vectors :math:`v_j` in pixels, elliptic
support radii :math:`r_j` and :math:`R` the rotation of the face frame (the
eye line). Because the kernel has compact support, a field is exactly zero
outside the union of its ellipses: "far from the action unit" means zero.

Directions, offsets and radii of the action units are given in the face
frame: unit ``u`` along the eye line from the image-left eye to the
image-right eye, unit ``v`` perpendicular to it pointing towards the chin,
lengths in units of the inter-ocular distance (IOD, distance between the two
eye centres). The shapes follow the FACS descriptions of the action units:

- AU1 inner brow raiser, AU2 outer brow raiser: brows (landmarks 17-26) and
  the forehead above them move up (surprise uses AU1+2);
- AU4 brow lowerer: inner brows (19-24) move down and towards the midline;
- AU9 nose wrinkler: nostril wings (31-35) and nasal ridge (28-29) move up,
  the upper lip (50, 52) rises a little and the medial brows lower a little;
- AU12 lip corner puller: lip corners (48, 54) and their neighbours move up
  and outwards, the cheeks above them follow;
- AU45 blink: the upper eyelids (37, 38, 43, 44) move down towards the lower
  ones.

A warp cannot close an eye completely without folding the image, so blinks
are partial closures (about half the lid opening).

References
----------
.. [1] P. Ekman, W. V. Friesen, J. C. Hager, "Facial Action Coding System:
   The Manual", Research Nexus, 2002.
.. [2] H. Wendland, "Piecewise polynomial, positive definite and compactly
   supported radial functions of minimal degree", Advances in Computational
   Mathematics 4, 389-396, 1995.
.. [3] W.-J. Yan et al., "CASME II: An improved spontaneous micro-expression
   database and the baseline evaluation", PLoS ONE 9(1), e86041, 2014
   (onset-apex-offset annotation of micro-expressions).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_ndim
from ..errors import ParameterError

__all__ = [
    "AU_NAMES",
    "BumpField",
    "action_unit_field",
    "apex_profile",
    "blink_field",
    "face_frame",
    "wendland",
]

AU_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    9: "nose wrinkler",
    12: "lip corner puller",
    45: "blink",
}

# One control per row: (landmark anchors averaged, offset (u, v) in IOD,
# displacement direction (u, v) relative to the peak, support radii (u, v) in IOD).
_Control = tuple[tuple[int, ...], tuple[float, float], tuple[float, float], tuple[float, float]]



def _brow_lift(lifts: dict[int, float]) -> tuple[_Control, ...]:
    """Eyebrow landmarks moved straight up, each by its share of the peak (AUs 1 and 2)."""
    return tuple(((lm,), (0.0, 0.0), (0.0, -up), (0.55, 0.5)) for lm, up in lifts.items())


_AU_CONTROLS: dict[int, tuple[_Control, ...]] = {
    1: _brow_lift({19: 0.5, 20: 0.8, 21: 1.0, 22: 1.0, 23: 0.8, 24: 0.5}) + (
        ((21, 22), (0.0, -0.45), (0.0, -0.6), (0.8, 0.6)),
    ),
    2: _brow_lift({17: 1.0, 18: 0.9, 19: 0.6, 24: 0.6, 25: 0.9, 26: 1.0}) + (
        ((18, 19), (0.0, -0.45), (0.0, -0.5), (0.7, 0.6)),
        ((24, 25), (0.0, -0.45), (0.0, -0.5), (0.7, 0.6)),
    ),
    4: (
        ((21,), (0.0, 0.0), (0.5, 0.85), (0.5, 0.45)),
        ((22,), (0.0, 0.0), (-0.5, 0.85), (0.5, 0.45)),
        ((20,), (0.0, 0.0), (0.35, 0.7), (0.5, 0.45)),
        ((23,), (0.0, 0.0), (-0.35, 0.7), (0.5, 0.45)),
        ((19,), (0.0, 0.0), (0.1, 0.35), (0.45, 0.4)),
        ((24,), (0.0, 0.0), (-0.1, 0.35), (0.45, 0.4)),
    ),
    9: (
        ((31, 32), (0.0, 0.0), (0.1, -1.0), (0.4, 0.35)),
        ((34, 35), (0.0, 0.0), (-0.1, -1.0), (0.4, 0.35)),
        ((28, 29), (0.0, 0.0), (0.0, -0.5), (0.35, 0.4)),
        ((50,), (0.0, 0.0), (0.0, -0.45), (0.35, 0.3)),
        ((52,), (0.0, 0.0), (0.0, -0.45), (0.35, 0.3)),
        ((21,), (0.0, 0.0), (0.25, 0.4), (0.4, 0.35)),
        ((22,), (0.0, 0.0), (-0.25, 0.4), (0.4, 0.35)),
    ),
    12: (
        ((48,), (0.0, 0.0), (-0.55, -0.85), (0.45, 0.45)),
        ((54,), (0.0, 0.0), (0.55, -0.85), (0.45, 0.45)),
        ((49, 59), (0.0, 0.0), (-0.3, -0.5), (0.35, 0.35)),
        ((53, 55), (0.0, 0.0), (0.3, -0.5), (0.35, 0.35)),
        ((48,), (-0.1, -0.4), (-0.3, -0.6), (0.6, 0.6)),
        ((54,), (0.1, -0.4), (0.3, -0.6), (0.6, 0.6)),
    ),
    45: (
        ((37, 38), (0.0, 0.0), (0.0, 1.0), (0.32, 0.3)),
        ((43, 44), (0.0, 0.0), (0.0, 1.0), (0.32, 0.3)),
    ),
}

def wendland(q: np.ndarray) -> np.ndarray:
    """Wendland C4 kernel :math:`(1-q)_+^6 (35 q^2 + 18 q + 3) / 3`.

    Parameters
    ----------
    q : ndarray
        Normalised distances (>= 0), any shape.

    Returns
    -------
    ndarray
        Kernel values in [0, 1], same shape as ``q``; 1 at 0, 0 for q >= 1.

    References
    ----------
    .. [1] H. Wendland, Adv. Comput. Math. 4, 389-396, 1995.
    """
    q = np.asarray(q)
    one_minus = np.clip(1.0 - q, 0.0, None)
    return one_minus**6 * (35.0 * q * q + 18.0 * q + 3.0) / 3.0


@dataclass(frozen=True)
class BumpField:
    """A forward displacement field made of compactly supported bumps.

    Attributes
    ----------
    centres : ndarray, shape (J, 2)
        Bump centres (x, y) in pixels.
    vectors : ndarray, shape (J, 2)
        Displacement (dx, dy) at each centre, pixels.
    radii : ndarray, shape (J, 2)
        Support semi-axes along the frame's u and v axes, pixels.
    angle : float
        Rotation of the u axis from the image x axis, radians.
    """

    centres: np.ndarray
    vectors: np.ndarray
    radii: np.ndarray
    angle: float = 0.0

    def __post_init__(self) -> None:
        for name in ("centres", "vectors", "radii"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1, 2)
            object.__setattr__(self, name, arr)
        if not (len(self.centres) == len(self.vectors) == len(self.radii)):
            raise ParameterError(
                "BumpField needs as many centres as vectors and radii, but got "
                f"{len(self.centres)}, {len(self.vectors)} and {len(self.radii)}."
            )
        if np.any(self.radii <= 0):
            raise ParameterError(f"BumpField radii must be positive, got {self.radii.min()!r}.")

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Evaluate the field at arbitrary points.

        Parameters
        ----------
        points : ndarray, shape (N, 2)
            Positions (x, y), pixels.

        Returns
        -------
        ndarray, shape (N, 2), float64
            Displacement (dx, dy) in pixels.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        out = np.zeros_like(pts)
        cos_a, sin_a = np.cos(self.angle), np.sin(self.angle)
        for c, v, r in zip(self.centres, self.vectors, self.radii, strict=True):
            dx = pts[:, 0] - c[0]
            dy = pts[:, 1] - c[1]
            du = (cos_a * dx + sin_a * dy) / r[0]
            dv = (-sin_a * dx + cos_a * dy) / r[1]
            w = wendland(np.sqrt(du * du + dv * dv))
            out += w[:, None] * v
        return out

    def extents(self) -> np.ndarray:
        """Half-widths (x, y) of each bump's axis-aligned bounding box, shape (J, 2)."""
        cos_a, sin_a = abs(np.cos(self.angle)), abs(np.sin(self.angle))
        ru, rv = self.radii[:, 0], self.radii[:, 1]
        hx = np.hypot(ru * cos_a, rv * sin_a)
        hy = np.hypot(ru * sin_a, rv * cos_a)
        return np.stack([hx, hy], axis=1)

    def bbox(self) -> tuple[float, float, float, float]:
        """Bounding box ``(xmin, ymin, xmax, ymax)`` of the support, pixels."""
        ext = self.extents()
        lo = (self.centres - ext).min(axis=0)
        hi = (self.centres + ext).max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def scaled(self, factor: float) -> BumpField:
        """The same field with every displacement multiplied by ``factor``."""
        return BumpField(self.centres, self.vectors * factor, self.radii, self.angle)

    def raster(self, x0: float, y0: float, width: int, height: int,
               step: float = 1.0) -> np.ndarray:
        """Evaluate the field on a regular grid.

        Grid point ``(i, j)`` sits at ``(x0 + j * step, y0 + i * step)``.
        Each bump is evaluated only inside its own bounding box.

        Returns
        -------
        ndarray, shape (height, width, 2), float64
            Displacement (dx, dy), pixels.
        """
        out = np.zeros((height, width, 2), dtype=np.float64)
        ext = self.extents()
        cos_a, sin_a = np.cos(self.angle), np.sin(self.angle)
        for c, v, r, e in zip(self.centres, self.vectors, self.radii, ext, strict=True):
            j0 = max(int(np.floor((c[0] - e[0] - x0) / step)), 0)
            j1 = min(int(np.ceil((c[0] + e[0] - x0) / step)) + 1, width)
            i0 = max(int(np.floor((c[1] - e[1] - y0) / step)), 0)
            i1 = min(int(np.ceil((c[1] + e[1] - y0) / step)) + 1, height)
            if j0 >= j1 or i0 >= i1:
                continue
            dx = (x0 + step * np.arange(j0, j1) - c[0])[None, :]
            dy = (y0 + step * np.arange(i0, i1) - c[1])[:, None]
            du = (cos_a * dx + sin_a * dy) / r[0]
            dv = (-sin_a * dx + cos_a * dy) / r[1]
            w = wendland(np.sqrt(du * du + dv * dv))
            out[i0:i1, j0:j1] += w[..., None] * v
        return out


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Face-aligned frame from 68 landmarks.

    Parameters
    ----------
    landmarks : ndarray, shape (68, 2)
        iBUG-68 landmarks (x, y), pixels.

    Returns
    -------
    origin : ndarray, shape (2,)
        Midpoint of the two eye centres.
    eu : ndarray, shape (2,)
        Unit vector along the eye line (image-left eye to image-right eye).
    ev : ndarray, shape (2,)
        Unit vector perpendicular to ``eu``, pointing towards the chin.
    iod : float
        Inter-ocular distance (between the eye centres), pixels.
    """
    lm = _check_landmarks(landmarks)
    left = lm[36:42].mean(axis=0)
    right = lm[42:48].mean(axis=0)
    d = right - left
    iod = float(np.hypot(*d))
    if iod <= 0:
        raise ParameterError("Invalid landmarks: the two eye centres coincide.")
    eu = d / iod
    ev = np.array([-eu[1], eu[0]])
    return (left + right) / 2.0, eu, ev, iod


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    check_ndim("landmarks", lm, 2, "(68, 2)")
    if lm.shape != (68, 2):
        raise ParameterError(
            f"Invalid shape for the 'landmarks' parameter: expected (68, 2), "
            f"but got shape {lm.shape!r}."
        )
    return lm


def _controls_field(landmarks: np.ndarray, controls: tuple[_Control, ...]) -> BumpField:
    lm = _check_landmarks(landmarks)
    _, eu, ev, iod = face_frame(lm)
    centres, vectors, radii = [], [], []
    for anchors, offset, direction, rad in controls:
        base = lm[list(anchors)].mean(axis=0)
        centres.append(base + iod * (offset[0] * eu + offset[1] * ev))
        vectors.append(direction[0] * eu + direction[1] * ev)
        radii.append((rad[0] * iod, rad[1] * iod))
    angle = float(np.arctan2(eu[1], eu[0]))
    return BumpField(np.array(centres), np.array(vectors), np.array(radii), angle)


def _peak(field: BumpField) -> float:
    x0, y0, x1, y1 = field.bbox()
    xs, ys = np.floor(x0), np.floor(y0)
    w = int(np.ceil(x1) - xs) + 1
    h = int(np.ceil(y1) - ys) + 1
    grid = field.raster(xs, ys, w, h, 1.0)
    return float(np.hypot(grid[..., 0], grid[..., 1]).max())


def action_unit_field(landmarks: np.ndarray, aus: tuple[int, ...] | list[int], *,
                      intensity: float) -> BumpField:
    """Forward displacement field of a combination of action units.

    Parameters
    ----------
    landmarks : ndarray, shape (68, 2)
        The face's iBUG-68 landmarks (x, y) in pixels, 0-based order.
    aus : sequence of int
        Action units to combine, from :data:`AU_NAMES` (e.g. ``(1, 2)``).
    intensity : float
        Peak displacement magnitude in pixels: the largest displacement on
        the integer pixel grid equals this value.

    Returns
    -------
    BumpField
        The field; evaluate it with ``field(points)`` or ``field.raster(...)``.

    References
    ----------
    .. [1] P. Ekman, W. V. Friesen, J. C. Hager, "Facial Action Coding System",
       2002.
    """
    aus = tuple(int(a) for a in aus)
    if not aus:
        raise ParameterError("Invalid value for the 'aus' parameter: it is empty.")
    for au in aus:
        if au not in _AU_CONTROLS:
            shown = ", ".join(str(a) for a in _AU_CONTROLS)
            raise ParameterError(
                f"Invalid value for the 'aus' parameter. Allowed action units are "
                f"{shown}, but got {au!r} instead."
            )
    if not np.isfinite(intensity) or intensity <= 0:
        raise ParameterError(
            f"Invalid value for the 'intensity' parameter. It must be a positive number "
            f"of pixels, but got {intensity!r} instead."
        )
    controls = tuple(c for au in aus for c in _AU_CONTROLS[au])
    field = _controls_field(landmarks, controls)
    return field.scaled(intensity / _peak(field))


def blink_field(landmarks: np.ndarray, *, closure: float) -> BumpField:
    """Forward displacement field of a (partial) blink, AU45.

    Parameters
    ----------
    landmarks : ndarray, shape (68, 2)
        iBUG-68 landmarks (x, y), pixels.
    closure : float
        Peak downward travel of the upper eyelids as a fraction of the mean
        lid opening (distance from 37, 38, 43, 44 to 41, 40, 47, 46), in
        (0, 0.7].

    Returns
    -------
    BumpField
        Field whose peak displacement is ``closure`` times the lid opening.
    """
    lm = _check_landmarks(landmarks)
    if not 0 < closure <= 0.7:
        raise ParameterError(
            f"Invalid value for the 'closure' parameter. It must lie in (0, 0.7], "
            f"but got {closure!r} instead."
        )
    upper = lm[[37, 38, 43, 44]]
    lower = lm[[41, 40, 47, 46]]
    opening = float(np.mean(np.hypot(*(lower - upper).T)))
    return action_unit_field(lm, (45,), intensity=closure * max(opening, 1.0))


def apex_profile(n_frames: int, onset: int, apex: int, offset: int, *,
                 hold: int = 0) -> np.ndarray:
    """Onset-apex-offset activation curve of an expression.

    Zero up to ``onset``, a raised-cosine rise to 1 at ``apex``, 1 for
    ``hold`` more frames, a raised-cosine fall to 0 at ``offset``, zero
    after it.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    onset, apex, offset : int
        0-based frame positions with ``onset < apex`` and
        ``apex + hold < offset``.
    hold : int, optional
        Frames the apex is held (macro-expressions), default 0.

    Returns
    -------
    ndarray, shape (T,), float64
        Activation in [0, 1].

    References
    ----------
    .. [1] W.-J. Yan et al., "CASME II", PLoS ONE 9(1), e86041, 2014.
    """
    if not (0 <= onset < apex and apex + hold < offset) or hold < 0:
        raise ParameterError(
            "Invalid onset/apex/offset: need 0 <= onset < apex and apex + hold < offset, "
            f"but got onset={onset!r}, apex={apex!r}, hold={hold!r}, offset={offset!r}."
        )
    t = np.arange(n_frames, dtype=np.float64)
    out = np.zeros(n_frames)
    rise = (t > onset) & (t <= apex)
    out[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - onset) / (apex - onset))
    top = apex + hold
    out[(t > apex) & (t <= top)] = 1.0
    fall = (t > top) & (t < offset)
    out[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - top) / (offset - top))
    return out
