"""Temporal processing of clips (pure: arrays in, arrays out).

- :mod:`mexkit.temporal.tim`: temporal interpolation model (Zhou et al. 2011)
  in closed form, ``tim(frames, n_out)``.
- :mod:`mexkit.temporal.rpca`: robust PCA by inexact ALM (Lin et al. 2010),
  batched in torch on CPU or CUDA, and PSN's TIM -> RPCA -> 16-frame chain.
- :mod:`mexkit.temporal.keyframes`: MERSiamC3D's adaptive key-frames
  (Algorithm 1), TAS, ATNet's apex window, uniform sampling.
- :mod:`mexkit.temporal.interpolate`: flow-based frame interpolation, the
  stand-in for AdaConv.
- :mod:`mexkit.temporal.magnify`: Eulerian and Riesz phase-based motion
  magnification.

Import from the submodules (``from mexkit.temporal.tim import tim``); the
package itself imports nothing, so it loads neither torch nor OpenCV.
"""
from __future__ import annotations
