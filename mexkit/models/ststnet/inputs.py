"""STSTNet's input: the 28x28 image of onset-apex u, v and optical strain.

References
----------
.. [1] S.-T. Liong, Y. S. Gan, J. See, H.-Q. Khor, Y.-C. Huang, "Shallow Triple
   Stream Three-dimensional CNN (STSTNet) for Micro-expression Recognition",
   FG 2019.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ModelInputError
from ..inputs import missing_input, register_input

__all__ = ["flow_image", "flow_image_of"]


def flow_image_of(sample: Any, name: str = "flow_image") -> np.ndarray:
    """``(3, H, W)`` float32: strain, v, u of the sample's one flow field.

    The channel order and the 0..255 scale are those the authors' PyTorch code
    feeds (it reads the release's images with OpenCV, whose BGR order puts the
    strain first); a network trained from scratch is indifferent to the order,
    but published weights are not.
    """
    if "flow" not in sample or "strain" not in sample:
        raise missing_input(sample, name, ("flow", "strain"))
    flow, strain = sample.read("flow"), sample.read("strain")
    if flow.shape[0] != 1 or strain.shape[0] != 1:
        raise ModelInputError(
            f"sample {sample.sample_id!r} holds {flow.shape[0]} flow field(s); the input "
            f"{name!r} takes the one onset-apex field of each clip.")
    return np.stack([strain[0], flow[0, 1], flow[0, 0]]).astype(np.float32)


@register_input(
    "flow_image", shape=(3, 28, 28), needs=("flow", "strain"),
    produced_by="mexkit import --dataset megc2019-flow",
    description=("onset-apex optical strain, vertical flow v and horizontal flow u of "
                 "28x28, in that order, each min-max normalised to 0..255 per clip (the "
                 "MEGC 2019 composite's optical-flow release, as the authors' code reads "
                 "it)"))
def flow_image(sample: Any) -> np.ndarray:
    """The stored flow and strain as STSTNet's input image."""
    img = flow_image_of(sample)
    if img.shape != (3, 28, 28):
        raise ModelInputError(
            f"sample {sample.sample_id!r}: STSTNet's input is 28x28, but the stored flow is "
            f"{img.shape[1]}x{img.shape[2]}")
    return img
