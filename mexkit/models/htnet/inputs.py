"""HTNet's input: four facial areas of the 28x28 flow image, side by side.

The areas are the 14x14 windows around four of five facial points (eyes,
nose, mouth corners) of the apex face, scaled to the 28x28 image
(:func:`~mexkit.models.htnet.network.four_areas`).  The authors find the five
points with MTCNN on the apex face shrunk to 28x28 and fall back to fixed
points when it finds no face (172 of the 442 clips when their settings were
run); mexkit derives them from dlib's 68 landmarks of the 224x224 apex face
(stored by ``mexkit import``), with the same fixed points where dlib finds no
face (28 of 442).  On the 270 clips where MTCNN found a face the two differ
by 2.1 pixels on average (of 28).

References
----------
.. [1] Z. Wang, K. Zhang, W. Luo, R. Sankaranarayana, "HTNet for
   micro-expression recognition", Neurocomputing 602 (2024) 128196.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ModelInputError
from ..inputs import missing_input, register_input
from .network import five_points, four_areas

__all__ = ["facial_areas"]


def _flow_image(sample: Any) -> np.ndarray:
    """``(3, H, W)`` float32: strain, v, u of the sample's one flow field, the order in
    which the authors' code (OpenCV, BGR) reads the release's images."""
    if "flow" not in sample or "strain" not in sample:
        raise missing_input(sample, "facial_areas", ("flow", "strain"))
    flow, strain = sample.read("flow"), sample.read("strain")
    if flow.shape[0] != 1 or strain.shape[0] != 1:
        raise ModelInputError(
            f"sample {sample.sample_id!r} holds {flow.shape[0]} flow field(s); the input "
            "'facial_areas' takes the one onset-apex field of each clip.")
    return np.stack([strain[0], flow[0, 1], flow[0, 0]]).astype(np.float32)


@register_input(
    "facial_areas", shape=(3, 28, 28), needs=("flow", "strain", "landmarks"),
    produced_by="mexkit import --dataset megc2019-flow",
    description=("HTNet's four 14x14 areas (left eye, left lips / right eye, right lips) "
                 "of the 28x28 strain, v, u image, around points of the apex face's "
                 "landmarks; 0..255 per clip"))
def facial_areas(sample: Any) -> np.ndarray:
    """The stored flow image cut into HTNet's four areas."""
    if "landmarks" not in sample:
        raise missing_input(sample, "facial_areas", ("landmarks",))
    img = _flow_image(sample)
    marks = sample.read("landmarks")
    if marks.shape != (1, 68, 2):
        raise ModelInputError(
            f"sample {sample.sample_id!r} holds landmarks of shape {marks.shape}; the input "
            "'facial_areas' takes the apex face's 68 points, (1, 68, 2)")
    if img.shape[1:] != (28, 28):
        raise ModelInputError(
            f"sample {sample.sample_id!r}: HTNet's areas are cut from a 28x28 flow image, "
            f"but the stored flow is {img.shape[1]}x{img.shape[2]}")
    return four_areas(img, five_points(marks[0])).astype(np.float32)
