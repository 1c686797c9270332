"""MEAN's input: the 42x42 u, v, strain regions that ``mexkit flow --features mean`` stores.

The flow stage builds them (:mod:`mexkit.models.mean.features`): by default
as the authors' public code does (``--mean-input authors``: normalised maps,
the eyebrow band and the mouth at 42 x 21 each, OpenCV's TV-L1), or as mexkit
reads the paper (``--mean-input paper``); the store's parameters and each
sample's ``mean_input`` attribute say which.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023), section 3.1.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..inputs import missing_input, register_input

__all__ = ["mean_regions_input"]


@register_input(
    "mean_regions", shape=(3, 42, 42), needs=("mean_regions",),
    produced_by="mexkit flow --pairs onset-apex --features mean",
    description=("onset-apex flow u, v and its optical strain, cut into MEAN's regions "
                 "(by default as the authors build them: each map normalised to [0, 1], "
                 "eyebrow band above mouth, 42x21 each)"))
def mean_regions_input(sample: Any) -> np.ndarray:
    """The first pair's stored ``mean_regions``."""
    if "mean_regions" not in sample:
        raise missing_input(sample, "mean_regions", ("mean_regions",))
    regions = sample.read("mean_regions").astype(np.float32)
    return regions[0] if regions.ndim == 4 else regions
