"""MEAN's 42x42 input, the flow feature ``mean`` (``mexkit flow --features mean``).

It registers in the flow-feature registry (:mod:`mexkit.motion.feature_registry`);
the flow stage loads the model packages when asked for a feature it does not know.

Two constructions (``mean_input``):

``"authors"`` (default)
    As the authors' public code builds it (:mod:`mexkit.models.mean.authors_input`):
    the flow through ``cartToPolar`` and back, backward-difference strain,
    each of u, v, strain min-max normalised over the whole field, the
    eyebrow band and the mouth from dlib's points on the clip's first crop
    frame (found with the whole frame as the face box), each resized to
    42 x 21. The networks the authors publish were trained on this input.
    Their flow is OpenCV's DualTVL1 with its defaults, so ``mexkit flow``
    takes ``--method tvl1-opencv`` by default with this construction.
``"paper"``
    mexkit's reading of the paper's section 3.1
    (:func:`mexkit.face.regions.mean_regions`): unnormalised flow, central-
    difference strain, two 21x21 eye parts and a 21x42 mouth from the crop's
    landmarks of each pair's first frame; SOFTNet's eye mask and head-motion
    removal are options of this construction only.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..._validate import check_option
from ...errors import ParameterError
from ...face.regions import mean_regions, remove_head_motion
from ...motion.feature_registry import register_flow_feature
from ...motion.strain import optical_strain
from .authors_input import authors_landmarks, authors_mean_input

__all__ = ["mean_features", "MEAN_INPUTS", "AUTHORS_FLOW_METHOD", "flow_method_for"]

MEAN_INPUTS = ("authors", "paper")
#: The flow method whose output equals the authors' (OpenCV DualTVL1, defaults).
AUTHORS_FLOW_METHOD = "tvl1-opencv"


def mean_features(flow: np.ndarray, landmarks: np.ndarray | None, first_frame: np.ndarray | None,
                  opt: Mapping[str, Any], sid: str, strain: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """``mean_regions`` (P, 3, 42, 42) of one sample's flow, and ``mean_landmarks`` (authors).

    Parameters
    ----------
    flow : ndarray, shape (P, 2, H, W)
    landmarks : ndarray, shape (P, 68, 2) or None
        The crop's landmarks of each pair's first frame (``"paper"``).
    first_frame : ndarray, shape (H, W), uint8, or None
        The clip's first grey crop frame (``"authors"``).
    opt : mapping
        The flow stage's parameters (``mean_input``, ``mask_eyes``,
        ``remove_head_motion``).
    sid : str
        The sample, for messages.
    strain : ndarray, shape (P, H, W), optional
        Central-difference strain already computed (``"paper"``).
    """
    kind = opt.get("mean_input") or "authors"
    if kind == "authors":

        if first_frame is None:
            raise ParameterError(f"sample {sid!r}: MEAN's input needs the clip's first frame.")
        lm = authors_landmarks(first_frame)
        try:
            regions = authors_mean_input(flow, lm)
        except ParameterError as exc:
            raise ParameterError(f"sample {sid!r}: {exc}") from None
        return {"mean_regions": regions, "mean_landmarks": lm.astype(np.float32)}

    if landmarks is None or not np.isfinite(landmarks).all():
        raise ParameterError(f"sample {sid!r} has no landmarks; MEAN regions need them.")
    region_flow = flow
    if opt.get("remove_head_motion"):
        region_flow = np.stack([remove_head_motion(f, lm) for f, lm in
                                zip(flow, landmarks, strict=True)]).astype(np.float32)
        strain = None
    if strain is None:
        strain = optical_strain(region_flow).astype(np.float32)
    maps = np.concatenate([region_flow, strain[:, None]], axis=1)  # (P, 3, H, W)
    return {"mean_regions": np.stack([
        mean_regions(m, lm, mask_eyes=bool(opt.get("mask_eyes")))
        for m, lm in zip(maps, landmarks, strict=True)]).astype(np.float32)}


def flow_method_for(method: str | None, options: Mapping[str, Any]) -> str | None:
    """The flow method of ``mexkit flow --features mean``: ``method``, else OpenCV's
    TV-L1 for MEAN's input built as the authors build it (the flow their networks saw;
    another method is warned about), else None (the stage's default)."""
    authors_mean = (options.get("mean_input") or "authors") == "authors"
    if method is None:
        return AUTHORS_FLOW_METHOD if authors_mean else None
    if authors_mean and method != AUTHORS_FLOW_METHOD:
        logging.getLogger("mexkit").warning(
            "flow: MEAN's published networks saw OpenCV DualTVL1 flow (--method %s); "
            "--method %s changes their class scores (docs/fidelity.md)",
            AUTHORS_FLOW_METHOD, method)
    return method


def _check_options(options: Mapping[str, Any]) -> None:
    """``mean_input`` is a construction; SOFTNet's options go with ``"paper"`` only."""
    check_option("mean_input", options.get("mean_input") or "authors", MEAN_INPUTS)
    if (options.get("mean_input") or "authors") == "authors" and (
            options.get("mask_eyes") or options.get("remove_head_motion")):
        raise ParameterError(
            "--mask-eyes and --remove-head-motion (SOFTNet) apply to --mean-input paper; "
            "the authors' construction (the default) has neither.")


@register_flow_feature(
    "mean", array="mean_regions", extra_arrays=("mean_landmarks",),
    needs=("landmarks", "first_frame", "sample_id"),
    options=("mean_input", "mask_eyes", "remove_head_motion"), records=("mean_input",),
    check=_check_options, flow_method=flow_method_for,
    summary="MEAN's 42 x 42 input: u, v and strain of the eyebrow band and the mouth "
            "(Liong et al., section 3.1), as the authors' code builds it (default) or as "
            "the paper reads (mean_input paper).")
def _mean_feature(flow: np.ndarray, *, landmarks: np.ndarray | None,
                  first_frame: np.ndarray | None, sample_id: str, **options: Any
                  ) -> dict[str, np.ndarray]:
    """The ``mean`` flow feature: :func:`mean_features` with the flow stage's options."""
    return mean_features(flow, landmarks, first_frame, options, sample_id)
