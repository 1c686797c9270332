"""OpenCV optical flow for many frame pairs: TV-L1 (the reference) and Farneback.

Both functions take the frames the way :func:`mexkit.motion.tvl1.tvl1_flow`
does and return the same layout, ``(P, 2, H, W)`` float32 with channel 0 the
horizontal and channel 1 the vertical component in pixels, such that
``reference(x) ~ moving(x + flow(x))`` (OpenCV's convention for both
methods). They loop over the pairs; OpenCV parallelises inside each call
(``cv2.setNumThreads``).

Uses in the papers mexkit implements:

* MEAN (Liong, See and Chan) and SOFTNet compute TV-L1 with OpenCV's
  ``DualTVL1OpticalFlow`` at its default parameters, which are the defaults
  here.
* MERSiamC3D (Zhao et al.) computes Farneback flow between adjacent
  key-frames with OpenCV ("the classic Farneback method ... implemented and
  integrated into the Opencv library") and states no parameters; the defaults
  here are the values commonly used with OpenCV (its tutorial's:
  ``pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
  poly_sigma=1.2, flags=0``).

References
----------
.. [1] C. Zach, T. Pock, H. Bischof, "A duality based approach for realtime
   TV-L1 optical flow", DAGM 2007.
.. [2] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
   flow estimation", IPOL 3 (2013), pp. 137-150.
.. [3] G. Farneback, "Two-frame motion estimation based on polynomial
   expansion", SCIA 2003, LNCS 2749, pp. 363-370.
.. [4] S. Zhao, H. Tao, Y. Zhang, T. Xu, K. Zhang, Z. Hao, E. Chen, "A
   two-stage 3D CNN based learning method for spontaneous micro-expression
   recognition" (MERSiamC3D), section 3.1.2.
.. [5] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos"
   (MEAN).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._validate import check_int, check_range
from ..errors import ParameterError
from ._flowarray import as_frame_pair
from .methods import FlowOption, register_flow_method
from .tvl1 import TVL1_OPTIONS, make_params

_FARNEBACK_DEFAULT = ("OpenCV's commonly used value; MERSiamC3D (Zhao et al.) uses OpenCV's "
                      "Farneback and states none")
_FARNEBACK_OPTIONS = (
    FlowOption("pyr_scale", float, 0.5, f"Farneback: image scale between pyramid levels, "
               f"in (0, 1) ({_FARNEBACK_DEFAULT}).", minimum=1e-12),
    FlowOption("levels", int, 3, f"Farneback: pyramid levels, 1 = the frames only "
               f"({_FARNEBACK_DEFAULT}).", minimum=1),
    FlowOption("winsize", int, 15, f"Farneback: averaging window in pixels "
               f"({_FARNEBACK_DEFAULT}).", minimum=1),
    FlowOption("iterations", int, 3, f"Farneback: iterations per pyramid level "
               f"({_FARNEBACK_DEFAULT}).", minimum=1),
    FlowOption("poly_n", int, 5, f"Farneback: neighbourhood of the polynomial expansion, "
               f"5 or 7 ({_FARNEBACK_DEFAULT}; Farneback 2003).", minimum=1),
    FlowOption("poly_sigma", float, 1.2, f"Farneback: standard deviation of the expansion's "
               f"Gaussian weights ({_FARNEBACK_DEFAULT}).", minimum=1e-12),
    FlowOption("flags", int, 0, "Farneback: OpenCV flags, 256 = Gaussian window "
               "(OPTFLOW_FARNEBACK_GAUSSIAN), 0 = box (OpenCV's default).", minimum=0,
               flag="--farneback-flags"),
)

__all__ = ["tvl1_opencv", "farneback"]


def _each_pair(ref: np.ndarray, mov: np.ndarray, single: bool,
               solve: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Flow of every pair by ``solve(reference, moving) -> (H, W, 2)``, as (P, 2, H, W)."""
    out = np.empty((ref.shape[0], 2) + ref.shape[1:], dtype=np.float32)
    for i in range(ref.shape[0]):
        out[i] = solve(ref[i], mov[i]).transpose(2, 0, 1)
    return out[0] if single else out


@register_flow_method(
    "tvl1-opencv", options=TVL1_OPTIONS,
    summary="OpenCV's cv2.optflow.DualTVL1OpticalFlow, the reference (MEAN and SOFTNet use it "
            "with its defaults).")
def tvl1_opencv(reference: Any, moving: Any, *, tau: float = 0.25, lambda_: float = 0.15,
                theta: float = 0.3, nscales: int = 5, warps: int = 5, epsilon: float = 0.01,
                inner_iterations: int = 30, outer_iterations: int = 10,
                scale_step: float = 0.8, gamma: float = 0.0,
                median_filtering: int = 5) -> np.ndarray:
    """TV-L1 flow of each pair with OpenCV's ``cv2.optflow.DualTVL1OpticalFlow``.

    The reference implementation that :func:`mexkit.motion.tvl1.tvl1_flow`
    follows; same parameters and defaults (OpenCV's).

    Parameters
    ----------
    reference, moving : array_like, shape (P, H, W) or (H, W)
        First and second frames, uint8 (0-255) or float (0-1). Frames are
        passed to OpenCV as float32 in [0, 1] (uint8 divided by 255), which
        OpenCV scales back to 0-255: same result scale as uint8 input, without
        its rounding (OpenCV's uint8 path is slower and less accurate).
    tau, lambda_, theta, nscales, warps, epsilon, inner_iterations, \
outer_iterations, scale_step, gamma, median_filtering
        As in :func:`mexkit.motion.tvl1.tvl1_flow` (OpenCV's ``tau``,
        ``lambda``, ``theta``, ``nscales``, ``warps``, ``epsilon``,
        ``innerIterations``, ``outerIterations``, ``scaleStep``, ``gamma``,
        ``medianFiltering``).

    Returns
    -------
    numpy.ndarray, float32, shape (P, 2, H, W) or (2, H, W)
        Flow in pixels (channel 0 horizontal), ``reference(x) ~ moving(x +
        flow(x))``.

    References
    ----------
    .. [1] J. Sanchez Perez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 optical
       flow estimation", IPOL 3 (2013), pp. 137-150.
    """
    import cv2  # start-up: importing mexkit.motion does not load OpenCV

    prm = make_params(tau=tau, lambda_=lambda_, theta=theta, nscales=nscales, warps=warps,
                      epsilon=epsilon, inner_iterations=inner_iterations,
                      outer_iterations=outer_iterations, scale_step=scale_step, gamma=gamma,
                      median_filtering=median_filtering, border="zero")
    ref, mov, single = as_frame_pair(reference, moving)
    if not hasattr(cv2, "optflow") or not hasattr(cv2.optflow, "DualTVL1OpticalFlow_create"):
        raise ParameterError(
            "cv2.optflow.DualTVL1OpticalFlow_create is missing: install "
            "opencv-contrib-python-headless (and no other OpenCV wheel)."
        )
    # one solver per call: OpenCV lowers its nscales for small frames and keeps it
    solver = cv2.optflow.DualTVL1OpticalFlow_create(
        prm.tau, prm.lambda_, prm.theta, prm.nscales, prm.warps, prm.epsilon,
        prm.inner_iterations, prm.outer_iterations, prm.scale_step, prm.gamma,
        prm.median_filtering, False,
    )
    return _each_pair(ref, mov, single, lambda r, m: solver.calc(r, m, None))


@register_flow_method(
    "farneback", options=_FARNEBACK_OPTIONS,
    summary="OpenCV's Farneback (2003) dense flow, as MERSiamC3D computes it.")
def farneback(reference: Any, moving: Any, *, pyr_scale: float = 0.5, levels: int = 3,
              winsize: int = 15, iterations: int = 3, poly_n: int = 5,
              poly_sigma: float = 1.2, flags: int = 0) -> np.ndarray:
    """Farneback flow of each pair with ``cv2.calcOpticalFlowFarneback``.

    MERSiamC3D computes this flow between adjacent key-frames (11 key-frames,
    10 flows); the paper gives no parameters, the defaults are OpenCV's
    commonly used values.

    Parameters
    ----------
    reference, moving : array_like, shape (P, H, W) or (H, W)
        First and second frames, uint8 (0-255) or float (0-1). They are passed
        to OpenCV as float32 in 0-255 (the scale of 8-bit frames, without
        rounding).
    pyr_scale : float
        Image scale between pyramid levels, in (0, 1).
    levels : int
        Number of pyramid levels (1 = the frames only).
    winsize : int
        Averaging window size in pixels.
    iterations : int
        Iterations per pyramid level.
    poly_n : int
        Neighbourhood of the polynomial expansion (5 or 7).
    poly_sigma : float
        Standard deviation of the Gaussian weighting the expansion (1.1 for
        ``poly_n=5``, 1.5 for 7 are OpenCV's suggestions; 1.2 is common).
    flags : int
        ``cv2.OPTFLOW_FARNEBACK_GAUSSIAN`` for a Gaussian window, 0 for a box.

    Returns
    -------
    numpy.ndarray, float32, shape (P, 2, H, W) or (2, H, W)
        The flow, as :func:`tvl1_opencv` returns it.

    References
    ----------
    .. [1] G. Farneback, "Two-frame motion estimation based on polynomial
       expansion", SCIA 2003.
    .. [2] S. Zhao et al., "A two-stage 3D CNN based learning method for
       spontaneous micro-expression recognition" (MERSiamC3D), section 3.1.2.
    """
    import cv2  # start-up: importing mexkit.motion does not load OpenCV

    check_range("pyr_scale", float(pyr_scale), 0.0, 1.0, low_open=True, high_open=True)
    levels = check_int("levels", levels, 1)
    winsize = check_int("winsize", winsize, 1)
    iterations = check_int("iterations", iterations, 1)
    poly_n = check_int("poly_n", poly_n, 1)
    check_range("poly_sigma", float(poly_sigma), 0.0, low_open=True)
    flags = check_int("flags", flags, 0)
    ref, mov, single = as_frame_pair(reference, moving)
    ref = ref * np.float32(255.0)
    mov = mov * np.float32(255.0)
    return _each_pair(ref, mov, single, lambda r, m: cv2.calcOpticalFlowFarneback(
        r, m, None, float(pyr_scale), levels, winsize, iterations, poly_n, float(poly_sigma),
        flags))
