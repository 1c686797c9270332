from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import color, data

from mexkit.errors import ParameterError
from mexkit.temporal.magnify import eulerian_alpha, magnify, temporal_bandpass

SIZE = 96
T = 32
CYCLES = 4                        # motion frequency: 4 / 32 = 0.125 cycles per frame
BAND = {"low": 0.06, "high": 0.2}  # cycles per frame (no fps given)


class Scene:
    """A smooth real face texture that can be translated by any sub-pixel amount."""

    def __init__(self) -> None:
        img = color.rgb2gray(data.astronaut())[20:276, 140:396] * 255.0
        img = ndimage.zoom(img, SIZE / 256, order=1)[:SIZE, :SIZE]
        self.spectrum = np.fft.fft2(ndimage.gaussian_filter(img, 2.0))

    def render(self, dx: float, dy: float) -> np.ndarray:
        """The texture moved by (dx, dy) pixels (exact band-limited translation)."""
        return np.real(np.fft.ifft2(ndimage.fourier_shift(self.spectrum, (dy, dx))))

    def shift_of(self, frame: np.ndarray) -> np.ndarray:
        """Least-squares translation (dx, dy) of ``frame`` against the texture."""
        inner = (slice(SIZE // 6, -SIZE // 6), slice(SIZE // 6, -SIZE // 6))
        d = np.zeros(2)
        for _ in range(6):
            ref = self.render(*d)
            gy, gx = np.gradient(ref)
            a = np.stack([-gx[inner].ravel(), -gy[inner].ravel()], axis=1)
            d += np.linalg.lstsq(a, (frame - ref)[inner].ravel(), rcond=None)[0]
        return d


@pytest.fixture(scope="module")
def scene():
    return Scene()


@pytest.fixture(scope="module")
def moving(scene):
    """0.15 px sinusoidal translation along (1, 0.5), inside the band."""
    delta = 0.15 * np.sin(2 * np.pi * CYCLES * np.arange(T) / T)
    clip = np.stack([scene.render(d, 0.5 * d) for d in delta]).astype(np.float32)
    return clip, delta


def gains(scene, out, delta):
    est = np.array([scene.shift_of(f.astype(np.float64)) for f in out])
    return (est[:, 0] @ delta / (delta @ delta),
            est[:, 1] @ (0.5 * delta) / ((0.5 * delta) @ (0.5 * delta)))


def test_input_motion_is_measured_correctly(scene, moving):
    clip, delta = moving
    gx, gy = gains(scene, clip, delta)
    assert gx == pytest.approx(1.0, abs=0.02) and gy == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    "method,kwargs,tol",
    [
        ("eulerian", {"lambda_c": 0.0}, 0.2),
        ("riesz", {}, 0.15),
    ],
)
def test_subpixel_motion_is_amplified_by_one_plus_alpha(scene, moving, method, kwargs, tol):
    clip, delta = moving
    alpha = 10.0
    out = magnify(clip, method=method, alpha=alpha, temporal_filter="ideal", **BAND, **kwargs)
    gx, gy = gains(scene, out, delta)
    assert gx == pytest.approx(1 + alpha, rel=tol)
    assert gy == pytest.approx(1 + alpha, rel=tol)


def test_riesz_smoothing_trades_amplification_for_noise(scene, moving, rng):
    clip, delta = moving
    noisy = clip + rng.standard_normal(clip.shape).astype(np.float32)
    kw = dict(method="riesz", alpha=10.0, temporal_filter="ideal", **BAND)
    added = {}
    for sigma in (0.0, 2.0):
        with_noise = magnify(noisy, sigma=sigma, **kw) - noisy
        without = magnify(clip, sigma=sigma, **kw) - clip
        noise_only = with_noise - without
        added[sigma] = np.sqrt(np.mean(noise_only[:, 16:-16, 16:-16] ** 2))
    assert added[2.0] < 0.7 * added[0.0]
    gx, gy = gains(scene, magnify(clip, sigma=2.0, **kw), delta)
    assert 4.0 < gx < 11.0 and 4.0 < gy < 11.0


def test_motion_outside_the_band_is_left_alone(scene):
    # Motion of period 4 frames: it and all its harmonics sit at 0, 0.25 and 0.5
    # cycles per frame, outside the 0.06-0.2 band. Eulerian magnification is
    # linear and must leave it exactly; the Riesz phase, accumulated over frame
    # differences, is not exactly periodic where structures of several
    # orientations overlap, so it may leak a little.
    inner = (slice(None), slice(16, -16), slice(16, -16))
    out_band = 0.2 * np.cos(2 * np.pi * np.arange(T) / 4 + 0.4)
    in_band = 0.2 * np.cos(2 * np.pi * CYCLES * np.arange(T) / T + 0.4)
    clip_out = np.stack([scene.render(d, -d) for d in out_band]).astype(np.float32)
    clip_in = np.stack([scene.render(d, -d) for d in in_band]).astype(np.float32)
    kw = dict(alpha=10.0, temporal_filter="ideal", **BAND)
    out = magnify(clip_out, method="eulerian", **kw)
    assert np.abs(out - clip_out).max() < 1e-3
    leak = magnify(clip_out, method="riesz", **kw) - clip_out
    gain = magnify(clip_in, method="riesz", **kw) - clip_in
    assert np.sqrt(np.mean(leak[inner] ** 2)) < 0.05 * np.sqrt(np.mean(gain[inner] ** 2))


@pytest.mark.parametrize("method", ["eulerian", "riesz"])
@pytest.mark.parametrize("kind", ["iir", "ideal", "butterworth"])
def test_static_clip_is_unchanged(scene, method, kind):
    frame = scene.render(0.0, 0.0).astype(np.float32)
    clip = np.repeat(frame[None], 12, axis=0)
    kwargs = {} if kind == "iir" else dict(BAND)
    out = magnify(clip, method=method, temporal_filter=kind, alpha=15.0, **kwargs)
    assert out.dtype == np.float32 and out.shape == clip.shape
    assert np.abs(out - clip).max() < 1e-3
    gauss = magnify(clip, method="eulerian", pyramid="gaussian", temporal_filter=kind, **kwargs)
    assert np.abs(gauss - clip).max() < 1e-3


def test_gaussian_pyramid_amplifies_brightness_changes(rng):
    # Wu et al.'s colour amplification: a uniform flicker in the band grows to
    # (1 + alpha) times; the Laplacian variant leaves it in the residual.
    t = np.arange(T)
    flicker = 0.5 * np.sin(2 * np.pi * CYCLES * t / T)
    base = rng.uniform(50, 200, (64, 64)).astype(np.float32)
    clip = base[None] + flicker[:, None, None].astype(np.float32)
    kw = dict(alpha=10.0, temporal_filter="ideal", **BAND)
    change = (magnify(clip, pyramid="gaussian", **kw) - clip).reshape(T, -1)
    np.testing.assert_allclose(change, np.repeat(10.0 * flicker[:, None], 64 * 64, axis=1),
                               atol=1e-3)
    lap = magnify(clip, pyramid="laplacian", **kw) - clip
    assert np.abs(lap).max() < 1e-3


def test_rgb_magnifies_luminance_only(scene, moving):
    clip, _ = moving
    rgb = np.stack([clip, 0.8 * clip + 20, 0.6 * clip + 40], axis=-1)
    out = magnify(rgb, method="riesz", temporal_filter="ideal", **BAND)
    assert out.shape == rgb.shape
    change = out - rgb
    # the same change in R, G and B: I and Q of YIQ are untouched
    np.testing.assert_allclose(change[..., 0], change[..., 1], atol=1e-3)
    np.testing.assert_allclose(change[..., 0], change[..., 2], atol=1e-3)
    assert np.abs(change).max() > 5.0
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey = magnify(luma, method="riesz", temporal_filter="ideal", **BAND)
    np.testing.assert_allclose(change[..., 0], grey - luma, atol=1e-2)


def test_uint8_output_keeps_dtype(scene, moving):
    clip, _ = moving
    u8 = np.clip(clip, 0, 255).astype(np.uint8)
    out = magnify(u8, dtype=None)
    assert out.dtype == np.uint8 and out.shape == u8.shape


def test_eulerian_alpha_attenuation():
    # (1 + alpha) lambda_l / lambda_c - 1 with lambda_l = 4, 8, 16 px, capped at alpha
    assert eulerian_alpha(10.0, 0, 16.0) == pytest.approx(1.75)
    assert eulerian_alpha(10.0, 1, 16.0) == pytest.approx(4.5)
    assert eulerian_alpha(10.0, 2, 16.0) == pytest.approx(10.0)
    assert eulerian_alpha(10.0, 0, 100.0) == 0.0
    assert eulerian_alpha(10.0, 0, 0.0) == 10.0


def test_temporal_bandpass_responses():
    n = 64
    t = np.arange(n)
    inside = np.cos(2 * np.pi * 8 * t / n)          # 0.125 cycles per frame
    below = np.cos(2 * np.pi * 1 * t / n)
    x = np.stack([inside + 3.0, below + 3.0], axis=1)
    ideal = temporal_bandpass(x, 0.06, 0.2, kind="ideal")
    np.testing.assert_allclose(ideal[:, 0], inside, atol=1e-9)
    np.testing.assert_allclose(ideal[:, 1], 0.0, atol=1e-9)
    hz = temporal_bandpass(x, 12.0, 40.0, kind="ideal", fps=200.0)   # same band in Hz
    np.testing.assert_allclose(hz, ideal, atol=1e-9)
    butter = temporal_bandpass(x, 0.06, 0.2, kind="butterworth")
    core = slice(16, 48)
    assert np.abs(butter[core, 0]).max() == pytest.approx(1.0, abs=0.25)
    assert np.abs(butter[core, 1]).max() < 0.35
    iir = temporal_bandpass(np.full((20, 3), 7.0), 0.05, 0.4, kind="iir")
    assert np.all(iir == 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "phase"},
        {"low": 0.4, "high": 0.05},
        {"temporal_filter": "ideal", "low": 0.1, "high": 0.7},
        {"temporal_filter": "ideal", "low": 10.0, "high": 120.0, "fps": 200.0},
        {"alpha": -1.0},
        {"levels": 0},
        {"levels": 12},
        {"pyramid": "steerable"},
    ],
)
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ParameterError):
        magnify(np.zeros((4, 32, 32), np.float32), **kwargs)


def test_bad_shape_raises():
    with pytest.raises(ParameterError):
        magnify(np.zeros((4, 32, 32, 2), np.float32))
    with pytest.raises(ParameterError):
        magnify(np.zeros((32, 32), np.float32))
