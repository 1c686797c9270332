"""The Riesz magnification's building blocks against plain double-precision computations
written here from their definitions (issue 32, item 5: the faster code must compute
the same thing, up to float32 rounding where its FFTs now run in float32)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mexkit.temporal import magnify as mg

KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def riesz_reference(band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Riesz transform of each frame in float64 with numpy.fft: symbols -i w_x / |w|
    and -i w_y / |w| (0 at w = 0) on the frame mirror-padded by max(4, min(h, w) // 4)
    pixels (at most size - 1) on each side. Real FFTs, as mexkit's definition: at an
    even size the Nyquist row's symbol (w_y = -1/2) is not odd, and the real inverse
    keeps what a real signal can hold of it."""
    _, h, w = band.shape
    pad = max(4, min(h, w) // 4)
    ph, pw = min(pad, h - 1), min(pad, w - 1)
    x = np.pad(band.astype(np.float64), ((0, 0), (ph, ph), (pw, pw)), mode="reflect")
    size = x.shape[1:]
    wy, wx = np.meshgrid(np.fft.fftfreq(size[0]), np.fft.rfftfreq(size[1]), indexing="ij")
    mag = np.hypot(wx, wy)
    mag[0, 0] = np.inf                              # the symbols are 0 at w = 0
    spec = np.fft.rfft2(x)
    r1 = np.fft.irfft2(spec * (-1j * wx / mag), s=size)[:, ph:ph + h, pw:pw + w]
    r2 = np.fft.irfft2(spec * (-1j * wy / mag), s=size)[:, ph:ph + h, pw:pw + w]
    return r1, r2


@pytest.mark.parametrize("shape", [(3, 40, 52), (2, 17, 9), (2, 8, 8)])
def test_float32_riesz_transform_is_the_double_precision_one_to_float32_rounding(rng, shape):
    band = (rng.standard_normal(shape) * 20.0).astype(np.float32)
    r1, r2 = mg._riesz(band)
    ref1, ref2 = riesz_reference(band)
    assert r1.dtype == r2.dtype == np.float32
    # float32 FFTs: each output is a sum over the padded frame with relative rounding of
    # about eps32 * log2(N) ~ 1e-6 of the band's size (measured: 2e-7 of max |band|);
    # 1e-5 leaves a factor of about 10. float64 numpy.fft widened to float64 before.
    scale = float(np.abs(band).max())
    assert np.abs(r1 - ref1).max() <= 1e-5 * scale
    assert np.abs(r2 - ref2).max() <= 1e-5 * scale
    # and the transform is not trivially small: it carries the band's energy
    assert np.abs(ref1).max() > 0.1 * scale
    # a float64 band keeps float64 throughout
    d1, d2 = mg._riesz(band.astype(np.float64))
    assert d1.dtype == np.float64
    assert np.abs(d1 - ref1).max() <= 1e-12 * scale
    assert np.abs(d2 - ref2).max() <= 1e-12 * scale


def test_riesz_of_a_cosine_is_the_sine():
    # R1 cos(k x) = sin(k x) away from the border for a frequency on the padded grid
    x = np.arange(64)
    band = np.broadcast_to(np.cos(2 * np.pi * 8 * x / 64), (2, 64, 64)).astype(np.float32)
    r1, r2 = mg._riesz(band)
    inner = np.s_[:, 16:-16, 16:-16]
    expected = np.broadcast_to(np.sin(2 * np.pi * 8 * x / 64), (2, 64, 64))
    # (the mirror padding is not periodic: 0.024 off at 16 px from the border)
    assert np.abs(r1[inner] - expected[inner]).max() < 0.05
    assert np.abs(r2[inner]).max() < 0.05


def band_reference(band, r1, r2, alpha, low, high, kind, fps, sigma):
    """The band's phase magnification written out plainly (per-component arrays,
    np.where, np.cumsum), the same element-wise operations in the same order."""
    amp = np.sqrt(band ** 2 + r1 ** 2 + r2 ** 2)
    real = band[1:] * band[:-1] + r1[1:] * r1[:-1] + r2[1:] * r2[:-1]
    qi = r1[1:] * band[:-1] - band[1:] * r1[:-1]
    qj = r2[1:] * band[:-1] - band[1:] * r2[:-1]
    norm = np.sqrt(qi ** 2 + qj ** 2)
    dphi = np.arctan2(norm, real)
    safe = np.where(norm > 0, norm, 1.0)
    pc = np.zeros_like(band)
    ps = np.zeros_like(band)
    pc[1:] = np.cumsum(np.where(norm > 0, dphi * qi / safe, 0.0), axis=0)
    ps[1:] = np.cumsum(np.where(norm > 0, dphi * qj / safe, 0.0), axis=0)
    fc = mg.temporal_bandpass(pc, low, high, kind=kind, fps=fps)
    fs = mg.temporal_bandpass(ps, low, high, kind=kind, fps=fps)
    if sigma > 0:
        sig = (0.0, sigma, sigma)
        weight = ndimage.gaussian_filter(amp, sig, mode="mirror")
        weight += 1e-6 * max(float(weight.max()), 1e-30)
        fc = ndimage.gaussian_filter(amp * fc, sig, mode="mirror") / weight
        fs = ndimage.gaussian_filter(amp * fs, sig, mode="mirror") / weight
    pc, ps = alpha * fc, alpha * fs
    shift = np.sqrt(pc ** 2 + ps ** 2)
    sinc = np.where(shift > 0, np.sin(shift) / np.where(shift > 0, shift, 1.0), 1.0)
    over = (amp * (shift > mg.PHASE_LIMIT)).reshape(len(band), -1).sum(axis=1)
    change = band * (np.cos(shift) - 1.0) - (r1 * pc + r2 * ps) * sinc
    return change, over, amp.reshape(len(band), -1).sum(axis=1)


@pytest.mark.parametrize("kind,low,high,fps,sigma", [
    ("iir", 0.05, 0.4, None, 0.0), ("iir", 0.05, 0.4, None, 1.0),
    ("ideal", 0.05, 0.3, None, 0.0), ("butterworth", 5.0, 40.0, 200.0, 0.0)])
def test_riesz_band_is_the_plain_computation_bit_for_bit(rng, monkeypatch, kind, low, high,
                                                        fps, sigma):
    # a moving texture, a still patch (phase differences exactly 0: the norm-0 branch)
    # and a large alpha (shifts past pi/2: the overshoot sum)
    t, h, w = 12, 24, 20
    base = ndimage.gaussian_filter(rng.standard_normal((h + 8, w + 8)), 1.5) * 40
    band = np.stack([ndimage.shift(base, (0.3 * np.sin(k / 2), 0.2 * k), order=3)[4:-4, 4:-4]
                     for k in range(t)]).astype(np.float32)
    band[:, :6, :6] = band[0, :6, :6]
    band[:, :3, :3] = 0.0
    r1, r2 = mg._riesz(band)
    monkeypatch.setattr(mg, "_riesz", lambda b: (r1, r2))
    got = mg._riesz_band(band, 40.0, low, high, kind, fps, sigma)
    want = band_reference(band, r1, r2, 40.0, low, high, kind, fps, sigma)
    assert want[1].max() > 0                        # some coefficients passed pi/2
    for g, e in zip(got, want, strict=True):
        assert g.dtype == e.dtype
        assert np.array_equal(g, e)


@pytest.mark.parametrize("shape", [(32, 32), (31, 27), (9, 8)])
def test_pyramid_steps_are_the_plain_blur_bit_for_bit(rng, shape):
    x = rng.uniform(0, 255, (3,) + shape).astype(np.float32)

    def blur(a, gain=1.0):
        a = ndimage.correlate1d(a, KERNEL * gain, axis=-1, mode="mirror")
        return ndimage.correlate1d(a, KERNEL * gain, axis=-2, mode="mirror")

    assert np.array_equal(mg._down(x), blur(x)[:, ::2, ::2])
    small = blur(x)[:, ::2, ::2]
    up = np.zeros_like(x)
    up[:, ::2, ::2] = small
    assert np.array_equal(mg._up(small, shape), blur(up, gain=2.0))
