"""MEAN's input: onset-apex flow and strain cut into its 42x42 facial regions.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023), section 3.1.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ModelInputError, ParameterError
from ...face.regions import mean_regions
from ...face.regions import remove_head_motion as _remove
from ...motion.strain import optical_strain
from ..inputs import missing_input, register_input

__all__ = ["mean_region_maps", "mean_regions_input"]


def mean_region_maps(flow: np.ndarray, landmarks: np.ndarray, *,
                     strain: np.ndarray | None = None, mask_eyes: bool = False,
                     remove_head_motion: bool = False, sample_id: str = "") -> np.ndarray:
    """MEAN's regions of u, v and strain for each flow field.

    The one implementation behind both ``mexkit flow --features mean`` and
    the training data's ``mean_regions`` input.

    Parameters
    ----------
    flow : ndarray, shape (P, 2, H, W)
        Flow fields in pixels (u, v).
    landmarks : ndarray, shape (P, 68, 2)
        Landmarks of each pair's first frame, in pixels of the flow.
    strain : ndarray, shape (P, H, W), optional
        Optical strain magnitude of ``flow``; computed when not given (and
        recomputed after head-motion removal).
    mask_eyes, remove_head_motion : bool
        SOFTNet's variants (see :func:`mexkit.face.regions.mean_regions` and
        :func:`mexkit.face.regions.remove_head_motion`); MEAN uses neither.
    sample_id : str
        Named in errors.

    Returns
    -------
    ndarray, shape (P, 3, 42, 42), float32
    """
    flow = np.asarray(flow, dtype=np.float32)
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape[0] != flow.shape[0] or not np.isfinite(landmarks).all():
        raise ParameterError(
            f"sample {sample_id!r} has no landmarks for every flow field; MEAN's regions "
            "need them.")
    if remove_head_motion:
        flow = np.stack([_remove(f, lm) for f, lm in zip(flow, landmarks, strict=True)]
                        ).astype(np.float32)
        strain = None
    if strain is None:
        strain = optical_strain(flow).astype(np.float32)
    maps = np.concatenate([flow, np.asarray(strain, np.float32)[:, None]], axis=1)
    return np.stack([mean_regions(m, lm, mask_eyes=mask_eyes)
                     for m, lm in zip(maps, landmarks, strict=True)]).astype(np.float32)


@register_input(
    "mean_regions", shape=(3, 42, 42), needs=("flow", "strain", "landmarks"),
    produced_by="mexkit flow --pairs onset-apex --strain",
    description=("onset-apex flow u, v (pixels) and its optical strain magnitude, cut into "
                 "MEAN's two 21x21 eye/brow parts above a 21x42 mouth part"))
def mean_regions_input(sample: Any) -> np.ndarray:
    """The first pair's regions: stored ``mean_regions``, or built from flow,
    strain and landmarks with :func:`mean_region_maps`."""
    if "mean_regions" in sample:
        regions = sample.read("mean_regions").astype(np.float32)
        return regions[0] if regions.ndim == 4 else regions
    needs = ("flow", "landmarks")
    if not all(n in sample for n in needs):
        raise missing_input(sample, "mean_regions", ("flow", "strain", "landmarks"))
    flow = sample.read("flow", slice(0, 1))
    landmarks = sample.read("landmarks", slice(0, 1))
    if not np.isfinite(landmarks).all():
        raise ModelInputError(
            f"sample {sample.sample_id!r} has no landmarks (no face found when it was "
            "cropped); MEAN's regions need them.")
    strain = sample.read("strain", slice(0, 1)) if "strain" in sample else None
    return mean_region_maps(flow, landmarks, strain=strain, sample_id=sample.sample_id)[0]
