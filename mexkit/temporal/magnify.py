"""Motion magnification: Eulerian linear (Wu et al. 2012) and Riesz phase-based
(Wadhwa et al. 2014).

Micro-expressions move the face by fractions of a pixel. Magnification
amplifies the temporal variations of a clip in a chosen frequency band so that
the motion becomes larger (AKMNet feeds phase-magnified clips to its network;
other ME code uses Eulerian magnification with alpha 10). Both methods
decompose every frame into a spatial pyramid, band-pass each level along time,
amplify, and add the result back to the input, so a clip without temporal
variation in the band comes back unchanged.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from .._validate import check_ndim, check_option, check_range
from ..errors import ParameterError

__all__ = ["magnify", "temporal_bandpass", "eulerian_alpha", "MagnifyDiagnostics"]

_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0     # the binomial kernel of Burt & Adelson
_LUMA = np.array([0.299, 0.587, 0.114])


# Wadhwa et al. 2013, sec. 4: phase-based magnification holds while the amplified
# phase shift stays below pi/2 (alpha * delta < lambda / 4 for a sinusoid of wavelength
# lambda); beyond it the shifted structures alias into each other.
PHASE_LIMIT = math.pi / 2
# The two finest levels (wavelengths below about 8 px) pass that bound at alpha 15 for
# any motion over a tenth of a pixel, sensor noise included, and only grain comes of it
# (on mexkit synth clips at alpha 15, 13-41% of level 0's amplitude but under 5% of
# levels 2 and up); the face's shapes (brows, eyes, mouth) live in the coarser levels,
# where passing the bound garbles them. Only those are measured.
PHASE_FIRST_LEVEL = 2


@dataclasses.dataclass(frozen=True)
class MagnifyDiagnostics:
    """Where a magnified clip left the range in which magnification is valid.

    Attributes
    ----------
    out_of_range : ndarray, shape (T,)
        Fraction of each frame's pixels (all channels) whose magnified value
        lies outside ``valid_range`` before any clipping: over-amplified
        intensity, which washes the frame out to black or white.
    phase_over : ndarray, shape (T,)
        Riesz only (zeros for Eulerian): share of each frame's pyramid
        amplitude, over the levels of wavelength 8 px and more (levels 2 and
        up, or the coarsest one of a smaller pyramid), held by coefficients
        whose amplified phase shift exceeds ``phase_limit``
        (amplitude-weighted, so that noise without structure does not count).
    valid_range : tuple of float
        The input's intensity range: its dtype's limits for integer clips
        (0..255 for uint8), the clip's own minimum and maximum for float clips.
    phase_limit : float
        pi/2, the bound of Wadhwa et al. (2013) for phase-based magnification.
    """

    out_of_range: np.ndarray
    phase_over: np.ndarray
    valid_range: tuple[float, float]
    phase_limit: float = PHASE_LIMIT

    def bad_frames(self, intensity_tolerance: float = 0.02,
                   phase_tolerance: float = 0.1) -> np.ndarray:
        """Indices of the frames where more than ``intensity_tolerance`` of the pixels
        left the intensity range (saturated: visible at once) or more than
        ``phase_tolerance`` of the structure passed the phase bound."""
        return np.flatnonzero((self.out_of_range > intensity_tolerance)
                              | (self.phase_over > phase_tolerance))


# ----------------------------------------------------------------------------- pyramids
def _blur(x: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """5-tap binomial blur over the last two axes of a (T, h, w) stack (mirrored border)."""
    k = _KERNEL * gain
    x = ndimage.correlate1d(x, k, axis=-1, mode="mirror")
    return ndimage.correlate1d(x, k, axis=-2, mode="mirror")


def _down(x: np.ndarray) -> np.ndarray:
    """:func:`_blur`, then every second row and column. The columns are independent
    in the blur along the columns, so that pass runs on the kept ones only."""
    x = ndimage.correlate1d(x, _KERNEL, axis=-1, mode="mirror")[:, :, ::2]
    return ndimage.correlate1d(x, _KERNEL, axis=-2, mode="mirror")[:, ::2]


def _up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Upsample a (T, h, w) stack to ``shape``: zeros between the samples, then
    :func:`_blur` with gain 2. The odd rows are zero and stay zero through the blur
    along the rows, so that pass runs on the even rows only (the same values)."""
    k = _KERNEL * 2.0
    up = np.zeros((x.shape[0],) + shape, dtype=x.dtype)
    up[:, ::2, ::2] = x[:, : (shape[0] + 1) // 2, : (shape[1] + 1) // 2]
    up[:, ::2] = ndimage.correlate1d(up[:, ::2], k, axis=-1, mode="mirror")
    return ndimage.correlate1d(up, k, axis=-2, mode="mirror")


def _laplacian(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels 0..levels-1 of the Laplacian pyramid of a (T, H, W) stack."""
    bands = []
    g = x
    for _ in range(levels):
        g_next = _down(g)
        bands.append(g - _up(g_next, g.shape[1:]))
        g = g_next
    return bands


def _collapse(bands: list[np.ndarray]) -> np.ndarray:
    acc = bands[-1]
    for band in reversed(bands[:-1]):
        acc = _up(acc, band.shape[1:]) + band
    return acc


# ----------------------------------------------------------------------------- temporal filters
def temporal_bandpass(x: np.ndarray, low: float, high: float, *, kind: str = "iir",
                      fps: float | None = None) -> np.ndarray:
    """Band-pass filter ``x`` along its first axis (time).

    Parameters
    ----------
    x : ndarray, shape (T, ...)
        Signals over time, float.
    low, high : float
        Band edges, ``0 < low < high``. Units depend on ``kind``:

        - ``"iir"``: the smoothing coefficients ``r2 = low`` and ``r1 = high``
          (dimensionless, in (0, 1]) of the two first-order low-pass filters
          ``l <- (1 - r) l + r x`` whose difference ``l1 - l2`` is the output,
          as in Wu et al.'s code (the public ME code's ``r1 = 0.4``,
          ``r2 = 0.05``). Causal; both filters start at the first frame, so a
          constant signal gives exactly 0.
        - ``"ideal"``: cut-off frequencies in Hz when ``fps`` is given, else in
          cycles per frame (fractions of the frame rate, at most 0.5). Zero
          phase, by FFT over the whole clip.
        - ``"butterworth"``: as ``"ideal"``; a first-order Butterworth
          band-pass run forwards and backwards (zero phase).
    kind : {"iir", "ideal", "butterworth"}
    fps : float, optional
        Frame rate, for cut-offs in Hz.

    Returns
    -------
    y : ndarray, shape like ``x``, float
    """
    check_option("temporal_filter", kind, ("iir", "ideal", "butterworth"))
    n = x.shape[0]
    if kind == "iir":
        r1, r2 = high, low
        l1 = x[0].copy()
        l2 = x[0].copy()
        out = np.empty_like(x)
        out[0] = 0.0
        for t in range(1, n):
            l1 += r1 * (x[t] - l1)
            l2 += r2 * (x[t] - l2)
            out[t] = l1 - l2
        return out
    rate = 1.0 if fps is None else float(fps)
    if kind == "ideal":
        freqs = np.fft.rfftfreq(n, d=1.0 / rate)
        keep = (freqs >= low) & (freqs <= high)
        spec = np.fft.rfft(x, axis=0)
        spec[~keep] = 0.0
        return np.fft.irfft(spec, n=n, axis=0).astype(x.dtype, copy=False)
    from scipy import signal  # start-up: about 1 s of CPU to import; only this filter uses it

    sos = signal.butter(1, [low, high], btype="bandpass", fs=rate, output="sos")
    if n < 2:
        return np.zeros_like(x)
    padlen = min(3 * (2 * len(sos) + 1), n - 1)
    return signal.sosfiltfilt(sos, x, axis=0, padlen=padlen).astype(x.dtype, copy=False)


def eulerian_alpha(alpha: float, level: int, lambda_c: float) -> float:
    """Amplification of Laplacian level ``level`` in Eulerian magnification.

    Wu et al.'s bound ``(1 + alpha) delta < lambda / 8`` for a spatial
    wavelength ``lambda``, with the cut-off ``lambda_c`` at which the full
    ``alpha`` is allowed, gives ``alpha_l = min(alpha, (1 + alpha) lambda_l /
    lambda_c - 1)`` (clipped at 0). mexkit takes ``lambda_l = 2^(l + 2)``
    pixels of the full-size frame (about the wavelength at the peak of
    Laplacian band ``l``, level 0 being full size); Wu et al.'s code instead
    ties the wavelengths to the frame's diagonal and doubles the attenuated
    values.

    Parameters
    ----------
    alpha : float
        Requested amplification.
    level : int
        Pyramid level (0 = finest).
    lambda_c : float
        Cut-off wavelength in pixels (0 disables the attenuation).
    """
    if lambda_c <= 0:
        return float(alpha)
    lam = 2.0 ** (level + 2)
    return float(min(alpha, max(0.0, (1.0 + alpha) * lam / lambda_c - 1.0)))


# ----------------------------------------------------------------------------- methods
def _eulerian(y: np.ndarray, alpha: float, low: float, high: float, kind: str,
              fps: float | None, levels: int, pyramid: str, lambda_c: float) -> np.ndarray:
    if pyramid == "gaussian":
        g = y
        shapes = []
        for _ in range(levels):
            shapes.append(g.shape[1:])
            g = _down(g)
        d = alpha * temporal_bandpass(g, low, high, kind=kind, fps=fps)
        for shape in reversed(shapes):
            d = _up(d, shape)
        return d
    bands = _laplacian(y, levels)
    mods = []
    for level, band in enumerate(bands):
        a = eulerian_alpha(alpha, level, lambda_c)
        mods.append(a * temporal_bandpass(band, low, high, kind=kind, fps=fps) if a > 0
                    else np.zeros_like(band))
    return _collapse(mods)


def _riesz_factors(hh: int, ww: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The Riesz transform's symbols ``-i w_x / |w|`` and ``-i w_y / |w|`` on the
    ``rfft2`` grid of an ``hh x ww`` frame, computed in float64 and rounded to the
    complex type of ``dtype`` (complex64 for float32 bands)."""
    wy = np.fft.fftfreq(hh)[:, None]
    wx = np.fft.rfftfreq(ww)[None, :]
    mag = np.hypot(wx, wy)
    mag[0, 0] = 1.0
    ctype = np.result_type(dtype, np.complex64)
    return (-1j * wx / mag).astype(ctype), (-1j * wy / mag).astype(ctype)


def _riesz(band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Riesz transform (R1 along x, R2 along y) of each frame of a (T, h, w) band.

    Computed in the frequency domain with symbols ``-i w_x / |w|`` and
    ``-i w_y / |w|`` on a mirror-padded frame, so that ``cos(k x)`` maps to
    ``sin(k x)``. The FFTs run in the band's precision (scipy.fft keeps float32
    as float32, complex64 in between; numpy.fft widened it to float64, and
    magnify's bands are float32 and its change is added in float32).
    """
    _, h, w = band.shape
    pad = max(4, min(h, w) // 4)
    pad_h, pad_w = min(pad, h - 1), min(pad, w - 1)
    x = np.pad(band, ((0, 0), (pad_h, pad_h), (pad_w, pad_w)), mode="reflect")
    hh, ww = x.shape[1:]
    fx, fy = _riesz_factors(hh, ww, band.dtype)
    spec = sfft.rfft2(x, workers=1)
    r1 = sfft.irfft2(spec * fx, s=(hh, ww), workers=1, overwrite_x=True)
    r2 = sfft.irfft2(np.multiply(spec, fy, out=spec), s=(hh, ww), workers=1,
                     overwrite_x=True)
    crop = (slice(None), slice(pad_h, pad_h + h), slice(pad_w, pad_w + w))
    return r1[crop].astype(band.dtype), r2[crop].astype(band.dtype)


def _riesz_band(band: np.ndarray, alpha: float, low: float, high: float, kind: str,
                fps: float | None, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase-magnify one Laplacian band (T, h, w); returns the change of the band and,
    per frame, the amplitude of the coefficients whose amplified phase passes
    PHASE_LIMIT and the amplitude of all.

    The two phase components (along cos theta and sin theta) are kept in one
    (T, 2, h, w) array, so that the running sum and the temporal filter treat
    both in one pass; the arithmetic is element by element that of the
    expressions in the comments (same operations, same order).
    """
    r1, r2 = _riesz(band)
    amp = np.sqrt(band ** 2 + r1 ** 2 + r2 ** 2)
    # Quaternionic phase difference of consecutive frames, q_t conj(q_{t-1}):
    # its real part is cos(dphi) A_t A_{t-1}, its i and j parts sin(dphi)
    # (cos theta, sin theta) A_t A_{t-1}.
    b0, b1, x0, x1, y0, y1 = band[:-1], band[1:], r1[:-1], r1[1:], r2[:-1], r2[1:]
    real = b1 * b0
    real += x1 * x0
    real += y1 * y0                                 # b1 b0 + x1 x0 + y1 y0
    qi = x1 * b0
    qi -= b1 * x0
    qj = y1 * b0
    qj -= b1 * y0
    norm = np.sqrt(qi ** 2 + qj ** 2)
    dphi = np.arctan2(norm, real)
    del real
    # the phase increments dphi (qi, qj) / norm (0 where norm is 0), summed over time
    phase = np.empty((len(band), 2) + band.shape[1:], dtype=band.dtype)
    phase[0] = 0.0
    np.multiply(dphi, qi, out=phase[1:, 0])
    np.multiply(dphi, qj, out=phase[1:, 1])
    zero = ~(norm > 0)
    if zero.any():
        norm[zero] = 1.0
        phase[1:, 0][zero] = 0.0
        phase[1:, 1][zero] = 0.0
    phase[1:] /= norm[:, None]
    for t in range(2, len(band)):                   # cumsum along time (the same sums,
        phase[t] += phase[t - 1]                    # several times faster than np.cumsum)
    f = temporal_bandpass(phase, low, high, kind=kind, fps=fps)
    if sigma > 0:
        sig = (0.0, sigma, sigma)
        weight = ndimage.gaussian_filter(amp, sig, mode="mirror")
        weight += 1e-6 * max(float(weight.max()), 1e-30)
        for k in range(2):
            f[:, k] = ndimage.gaussian_filter(amp * f[:, k], sig, mode="mirror") / weight
    f *= alpha
    pc, ps = f[:, 0], f[:, 1]                       # alpha fc, alpha fs
    shift = np.sqrt(pc ** 2 + ps ** 2)
    sinc = np.sin(shift)                            # sin(shift) / shift, 1 where shift is 0
    still = shift == 0
    if still.any():
        np.divide(sinc, shift, out=sinc, where=~still)
        sinc[still] = 1.0
    else:
        sinc /= shift
    # amplitude-weighted: the phase of a coefficient without structure is noise and
    # shifting it changes nothing visible
    passed = shift > PHASE_LIMIT
    over = ((amp * passed).reshape(len(band), -1).sum(axis=1) if passed.any()
            else np.zeros(len(band), dtype=amp.dtype))
    # A cos(phi + d) = I cos d - (R1 cos theta + R2 sin theta) sin d.
    change = np.cos(shift)
    change -= 1.0
    change *= band                                  # band (cos(shift) - 1)
    turn = r1 * pc
    turn += r2 * ps
    turn *= sinc                                    # (r1 pc + r2 ps) sinc
    change -= turn
    return change, over, amp.reshape(len(band), -1).sum(axis=1)


def _check_options(size: tuple[int, int], *, method: str, alpha: float, low: float,
                   high: float, temporal_filter: str, fps: float | None, levels: int | None,
                   pyramid: str, lambda_c: float, sigma: float) -> int:
    """Check :func:`magnify`'s options for frames of ``size``; return the pyramid levels."""
    check_option("method", method, ("eulerian", "riesz"))
    check_option("temporal_filter", temporal_filter, ("iir", "ideal", "butterworth"))
    check_option("pyramid", pyramid, ("laplacian", "gaussian"))
    check_range("alpha", float(alpha), 0.0)
    check_range("low", float(low), 0.0, low_open=True)
    check_range("lambda_c", float(lambda_c), 0.0)
    check_range("sigma", float(sigma), 0.0)
    if not high > low:
        raise ParameterError(
            f"Invalid values for the 'low' and 'high' parameters: expected low < high, but "
            f"got low={low!r}, high={high!r}."
        )
    if temporal_filter == "iir":
        check_range("high", float(high), 0.0, 1.0, low_open=True)
    else:
        nyquist = 0.5 if fps is None else 0.5 * float(check_range("fps", float(fps), 0.0,
                                                                    low_open=True))
        if temporal_filter == "butterworth":
            check_range("high", float(high), 0.0, nyquist, low_open=True, high_open=True)
        else:
            check_range("high", float(high), 0.0, nyquist, low_open=True)
    h, w = size
    max_levels = max(1, int(math.floor(math.log2(max(min(h, w), 2)))) - 1)
    if levels is None:
        levels = max(1, int(math.floor(math.log2(max(min(h, w), 2)))) - 2)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)):
        raise ParameterError(f"Invalid value for the 'levels' parameter. It must be an "
                             f"integer, but got {levels!r} instead.")
    check_range("levels", int(levels), 1, max_levels)
    return int(levels)


def _riesz_magnify(y: np.ndarray, alpha: float, low: float, high: float,
                   temporal_filter: str, fps: float | None, levels: int, sigma: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Riesz magnification of luminance ``y`` (T, H, W): the change, and the phase overshoot.

    The overshoot is :attr:`MagnifyDiagnostics.phase_over`, over the bands
    from :data:`PHASE_FIRST_LEVEL` on.
    """
    t = len(y)
    phase_over = np.zeros(t, np.float64)
    energy = np.zeros(t, np.float64)
    bands = _laplacian(y, levels)
    changes = []
    first = min(PHASE_FIRST_LEVEL, len(bands) - 1)
    for level, b in enumerate(bands):
        change, over, total = _riesz_band(b, alpha, low, high, temporal_filter, fps, sigma)
        changes.append(change)
        if level >= first:
            phase_over += over
            energy += total
    phase_over /= np.maximum(energy, 1e-30)
    return _collapse(changes), phase_over


def _diagnostics(in_dtype: np.dtype, x: np.ndarray, out: np.ndarray,
                 phase_over: np.ndarray) -> MagnifyDiagnostics:
    """How much of each magnified frame ``out`` leaves the input's range, and the overshoot."""
    if np.issubdtype(in_dtype, np.integer):
        info = np.iinfo(in_dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo, hi = float(x.min()), float(x.max())
    # half a grey level of slack for integer clips: rounding is not leaving the range
    slack = 0.5 if np.issubdtype(in_dtype, np.integer) else 0.0
    outside = (out < lo - slack) | (out > hi + slack)
    return MagnifyDiagnostics(outside.reshape(len(out), -1).mean(axis=1), phase_over, (lo, hi))


def magnify(frames: np.ndarray, *, method: str = "eulerian", alpha: float = 10.0,
            low: float = 0.05, high: float = 0.4, temporal_filter: str = "iir",
            fps: float | None = None, levels: int | None = None, pyramid: str = "laplacian",
            lambda_c: float = 16.0, sigma: float = 0.0, dtype: Any = np.float32,
            diagnostics: bool = False) -> np.ndarray | tuple[np.ndarray, MagnifyDiagnostics]:
    """Magnify the small motions of a clip.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, 3)
        The clip, uint8 or float, grey or RGB. Colour clips are magnified in
        luminance (Y of YIQ); the same change is added to R, G and B, which
        leaves I and Q untouched.
    method : {"eulerian", "riesz"}
        ``"eulerian"``: linear Eulerian magnification (Wu et al. 2012): every
        pyramid level's intensity variations in the band are amplified.
        ``"riesz"``: phase-based magnification with a Riesz pyramid (Wadhwa
        et al. 2014): the local phase of each Laplacian band is band-passed,
        smoothed with amplitude weights and amplified, which shifts the
        band's structures. AKMNet uses phase-based magnification with
        ``alpha=15``.
    alpha : float
        Amplification: a motion ``delta(t)`` in the band becomes
        ``(1 + alpha) delta(t)``. 10 in public ME code, 15 in AKMNet.
    low, high : float
        Temporal band, ``0 < low < high``. With the default
        ``temporal_filter="iir"`` they are the dimensionless coefficients
        ``r2``, ``r1`` of Wu et al.'s two first-order low-pass filters (public
        ME code: ``r1 = 0.4``, ``r2 = 0.05``, the defaults here); their
        difference passes about 0.007 to 0.1 cycles per frame at half power,
        with a peak gain of 0.82 at 0.026 cycles per frame (1.4 to 20 Hz, peak
        5 Hz, at 200 fps), so the amplification reaches at most about
        ``0.82 alpha``. With ``"ideal"`` or ``"butterworth"`` they are cut-off
        frequencies in Hz when ``fps`` is given, else in cycles per frame. See
        :func:`temporal_bandpass`.
    temporal_filter : {"iir", "ideal", "butterworth"}
        Temporal band-pass filter (Wu et al.'s three).
    fps : float, optional
        Frame rate, only used by ``"ideal"`` and ``"butterworth"``.
    levels : int, optional
        Number of band-pass pyramid levels; by default
        ``max(1, floor(log2(min(H, W))) - 2)`` (5 for 128 x 128), leaving a
        low-pass residual of 4 to 7 pixels, which is never amplified.
    pyramid : {"laplacian", "gaussian"}
        Eulerian only: ``"laplacian"`` amplifies every band with the
        ``lambda_c`` attenuation; ``"gaussian"`` (Wu et al.'s colour
        amplification) amplifies the blurred, ``levels``-times downsampled
        clip by ``alpha`` and upsamples the change.
    lambda_c : float
        Eulerian only: spatial cut-off wavelength in pixels (16 in the public
        code); shorter wavelengths get a smaller amplification, see
        :func:`eulerian_alpha`. 0 amplifies every level by ``alpha``.
    sigma : float
        Riesz only: standard deviation in pixels (of each level) of the
        amplitude-weighted Gaussian smoothing of the phase; 0 (default, as in
        Wadhwa et al.'s phase-based code) disables it. Smoothing lowers the
        noise that magnification adds but also the amplification of textured
        regions, because it averages the phase of differently oriented
        structures. Measured on a 128 x 128 face image translated by 0.15 px
        with ``alpha=10``: 11.0 times the motion with ``sigma=0``, 9.3 with
        1 and 8.1 with 2 (the Riesz paper's value); with 1 grey level of
        sensor noise, the noise added was 2.3, 1.3 and 1.1 grey levels (RMS).
    dtype : numpy dtype or None
        Output dtype, float32 by default; ``None`` keeps the input's (uint8 is
        rounded and clipped to [0, 255]).
    diagnostics : bool
        Also return a :class:`MagnifyDiagnostics`: per frame, the fraction of
        pixels whose magnified intensity left the input's range and (Riesz)
        of coefficients whose amplified phase passed pi/2. Large real motion
        (a smile, a head turn) amplified 15 times leaves both, and the frames
        wash out; a lower ``alpha`` or a narrower band (lower ``high``) keeps
        them in.

    Returns
    -------
    out : ndarray, shape like ``frames``
        The magnified clip, in the input's intensity units. A clip without
        temporal variation comes back unchanged.
    diag : MagnifyDiagnostics
        Only with ``diagnostics=True``.

    Raises
    ------
    ParameterError
        For a bad shape, a band that is empty or above Nyquist, ``alpha < 0``
        or an unknown option.

    Notes
    -----
    The change is computed per pyramid level, collapsed, and added to the
    input frames (the low-pass residual and anything outside the band are
    left exactly as they were). The linear method is valid while
    ``(1 + alpha) delta < lambda / 8``; the phase-based one tolerates larger
    amplification and amplifies noise less.

    References
    ----------
    .. [1] H.-Y. Wu, M. Rubinstein, E. Shih, J. Guttag, F. Durand,
       W. T. Freeman, "Eulerian video magnification for revealing subtle
       changes in the world", ACM Trans. Graphics 31(4), 2012.
    .. [2] N. Wadhwa, M. Rubinstein, F. Durand, W. T. Freeman, "Riesz pyramids
       for fast phase-based video magnification", ICCP 2014.
    .. [3] N. Wadhwa, M. Rubinstein, F. Durand, W. T. Freeman, "Phase-based
       video motion processing", ACM Trans. Graphics 32(4), 2013.
    """
    check_ndim("frames", frames, (3, 4), "(T, H, W) or (T, H, W, 3)")
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] != 3:
        raise ParameterError(
            f"Invalid shape for the 'frames' parameter: expected (T, H, W) or (T, H, W, 3), "
            f"but got shape {frames.shape!r}."
        )
    levels = _check_options(frames.shape[1:3], method=method, alpha=alpha, low=low,
                            high=high, temporal_filter=temporal_filter, fps=fps,
                            levels=levels, pyramid=pyramid, lambda_c=lambda_c, sigma=sigma)
    t = frames.shape[0]
    x = frames.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ParameterError("Invalid value for the 'frames' parameter: it contains NaN or inf.")
    y = x @ _LUMA.astype(np.float32) if x.ndim == 4 else x
    phase_over = np.zeros(t, np.float64)
    if t < 2 or alpha == 0:
        delta = np.zeros_like(y)
    elif method == "eulerian":
        delta = _eulerian(y, float(alpha), float(low), float(high), temporal_filter, fps,
                          levels, pyramid, float(lambda_c))
    else:
        delta, phase_over = _riesz_magnify(y, float(alpha), float(low), float(high),
                                           temporal_filter, fps, levels, float(sigma))
    out = x + (delta[..., None] if x.ndim == 4 else delta).astype(np.float32)
    diag = _diagnostics(frames.dtype, x, out, phase_over) if diagnostics else None
    out_dtype = np.dtype(frames.dtype if dtype is None else dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        out = np.clip(np.rint(out), info.min, info.max).astype(out_dtype)
    else:
        out = out.astype(out_dtype, copy=False)
    return (out, diag) if diagnostics else out
