"""Optical flow, optical strain and flow features (pure: arrays in, arrays out).

* :func:`tvl1_flow` - mexkit's batched TV-L1 in torch (CPU or CUDA), OpenCV
  DualTVL1's scheme and defaults; :func:`tvl1_opencv` and :func:`farneback`
  run OpenCV's implementations with the same input and output layout.
* :func:`optical_strain` - MEAN's optical strain magnitude (eq. 3).
* :func:`direction_magnitude` - ATNet's per-block mean magnitude and
  direction; :func:`hoof` - histograms of oriented optical flow.
* :func:`make_pairs` - which frames to pair (consecutive, gap, onset-apex,
  apex window, ...).
* :func:`warp`, :func:`flow_endpoint_error` - helpers for checking flows.

Flows are ``(P, 2, H, W)`` float32, channel 0 horizontal (u, to the right),
channel 1 vertical (v, downwards), in pixels, with
``reference(x) ~ moving(x + flow(x))``.
"""
from __future__ import annotations

from .features import direction_magnitude, hoof
from .flowtools import flow_endpoint_error, warp
from .opencv import farneback, tvl1_opencv
from .pairs import MODES as PAIR_MODES
from .pairs import make_pairs
from .pyramid import pyramid_sizes
from .strain import optical_strain
from .tvl1 import tvl1_flow

__all__ = [
    "tvl1_flow",
    "tvl1_opencv",
    "farneback",
    "optical_strain",
    "direction_magnitude",
    "hoof",
    "make_pairs",
    "PAIR_MODES",
    "warp",
    "flow_endpoint_error",
    "pyramid_sizes",
]
