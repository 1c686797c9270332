"""ATNet's inputs: the apex frame and the direction-magnitude feature.

References
----------
.. [1] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A Novel Apex-Time
   Network for Cross-Dataset Micro-Expression Recognition", ACII 2019.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ...errors import ModelInputError
from ...motion.features import direction_magnitude
from ..inputs import get_input, missing_input, register_input

__all__ = ["apex_rgb", "direction_magnitude_input"]


@register_input(
    "apex_rgb", shape=(3, 224, 224), needs=("apex_image",),
    produced_by=("mexkit crop --rgb --size 224 | mexkit flow - --pairs apex-window "
                 "--with-apex"),
    description="apex frame (SMIC: middle frame), RGB in [0, 1], resized to 224x224")
def apex_rgb(sample: Any) -> np.ndarray:
    """The stored ``apex_image``, resized to 224 and scaled to [0, 1]."""
    if "apex_image" not in sample:
        raise missing_input(sample, "apex_rgb", ("apex_image",))
    img = sample.read("apex_image")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != (224, 224):
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)
    return (img.astype(np.float32) / 255.0).transpose(2, 0, 1).copy()


@register_input(
    "direction_magnitude", shape=(64, 128), needs=("direction_magnitude",),
    produced_by="mexkit flow --pairs apex-window --features dm",
    description=("64 flow fields around the apex in 8x8 blocks: per block mean magnitude "
                 "(pixels) and mean direction (radians), 128 values per field"))
def direction_magnitude_input(sample: Any) -> np.ndarray:
    """A stored ``direction_magnitude``, or computed from 64 stored flow fields."""
    if "direction_magnitude" in sample:
        return sample.read("direction_magnitude").astype(np.float32)
    if "flow" not in sample:
        raise missing_input(sample, "direction_magnitude", ("direction_magnitude",))
    shape = sample.shape("flow")
    if shape[0] != 64:
        raise ModelInputError(
            f"sample {sample.sample_id!r} holds {shape[0]} flow fields; ATNet's "
            f"direction-magnitude feature needs 64 "
            f"(`{get_input('direction_magnitude').produced_by}`).")
    return direction_magnitude(sample.read("flow")).astype(np.float32)
