"""MERSiamC3D's input: the flow between the 11 adaptive key frames of a clip.

``keyframe_flow``, ``(3, 10, 112, 112)`` float32: channels u, v and the
magnitude sqrt(u^2 + v^2) (pixels of the 112x112 crop), then the 10 flow
fields between adjacent key frames, then height and width ([1]_, Sec. 3.1;
the channel choice is explained in :mod:`mexkit.models.mersiamc3d.network`). Built
from the ``flow`` array that ``mexkit flow --pairs keyframes --method
farneback`` stores for the key-frame clips of ``mexkit keyframes``. Flow of
another crop size is resized bilinearly to 112x112 and its vectors rescaled
to the new pixel size.

References
----------
.. [1] S. Zhao, H. Tao, Y. Zhang, T. Xu, K. Zhang, Z. Hao, E. Chen, "A
   two-stage 3D CNN based learning method for spontaneous micro-expression
   recognition" (MERSiamC3D), 2021.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ...errors import ModelInputError
from ..inputs import get_input, missing_input, register_input

__all__ = ["keyframe_flow", "keyframe_flow_array"]

_SIZE = 112
_FIELDS = 10


def keyframe_flow_array(flow: np.ndarray, *, size: int = _SIZE,
                        magnitude: bool = True) -> np.ndarray:
    """``(P, 2, H, W)`` flow -> ``(3, P, size, size)`` u, v, magnitude (or ``(2, ...)``).

    Parameters
    ----------
    flow : numpy.ndarray, shape (P, 2, H, W)
        Channel 0 horizontal u, channel 1 vertical v, in pixels.
    size : int
        Output side; other sizes are resized bilinearly (OpenCV) and the
        vectors scaled by ``size / W`` (u) and ``size / H`` (v).
    magnitude : bool
        Append sqrt(u^2 + v^2) as a third channel.

    Returns
    -------
    numpy.ndarray, float32
    """
    flow = np.asarray(flow, dtype=np.float32)
    p, _, h, w = flow.shape
    if (h, w) != (size, size):
        resized = np.empty((p, 2, size, size), np.float32)
        for i in range(p):
            for c in range(2):
                resized[i, c] = cv2.resize(flow[i, c], (size, size),
                                           interpolation=cv2.INTER_LINEAR)
        resized[:, 0] *= size / w
        resized[:, 1] *= size / h
        flow = resized
    chans = [flow[:, 0], flow[:, 1]]
    if magnitude:
        chans.append(np.sqrt(flow[:, 0] ** 2 + flow[:, 1] ** 2))
    return np.ascontiguousarray(np.stack(chans), dtype=np.float32)


@register_input(
    "keyframe_flow", shape=(3, _FIELDS, _SIZE, _SIZE), needs=("flow",),
    produced_by=("mexkit crop --size 112 | mexkit keyframes - --method adaptive "
                 "| mexkit flow - --pairs keyframes --method farneback"),
    description=("10 Farneback flows between the 11 adaptive key frames: channels u, v, "
                 "magnitude (pixels of the 112x112 crop), shape (C, T, H, W)"))
def keyframe_flow(sample: Any) -> np.ndarray:
    """The stored key-frame ``flow`` as ``(3, 10, 112, 112)`` u, v, magnitude."""
    if "flow" not in sample:
        raise missing_input(sample, "keyframe_flow", ("flow",))
    mode = sample.attrs.get("pair_mode")
    shape = sample.shape("flow")
    if (mode is not None and mode != "keyframes") or shape[0] != _FIELDS:
        raise ModelInputError(
            f"sample {sample.sample_id!r} holds {shape[0]} flow field(s) paired "
            f"{mode or 'in an unknown way'!s}; the model input 'keyframe_flow' (MERSiamC3D) "
            f"needs the {_FIELDS} flows between adjacent key frames of 11-frame clips "
            f"(`{get_input('keyframe_flow').produced_by}`).")
    return keyframe_flow_array(sample.read("flow"))
