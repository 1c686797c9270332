"""Face detection, 68-point landmarks, alignment, crops and regions (pure).

:mod:`~mexkit.face.landmarks`
    dlib (offline) and FAN (mexkit.face.fan, on the weights face-alignment
    publishes; GPU) backends with one output:
    ``(68, 2)`` float32 iBUG-68 landmarks.
:mod:`~mexkit.face.align`
    Aligned square crops of a clip from the first frame's landmarks (MEAN) or
    from every frame's (smoothed), and pre-cropped clips.
:mod:`~mexkit.face.track`
    Face tracking for the first frame's crop: the first frame with a face, and
    how far the landmarks drift from it over the clip.
:mod:`~mexkit.face.regions`
    MEAN's 42x42 eye/eyebrow and mouth regions on any per-pixel map, SOFTNet's
    eye mask and nose-box head-motion removal.

Importing this package loads neither dlib nor torch; the backends load their
models on first use and keep them for the process.
"""
from __future__ import annotations

from .align import (
    MODES,
    AlignedClip,
    align_clip,
    alignment_transform,
    apply_transform,
    invert_transform,
    precropped,
    transform_points,
)
from .landmarks import (
    DETECTORS,
    N_LANDMARKS,
    Detection,
    DetectionBatch,
    detect_landmarks,
    detect_landmarks_batch,
    dlib_predictor_path,
    fan_weight_files,
    fit_landmarks,
)
from .regions import (
    REGION_SIZE,
    eye_mask,
    mean_region_boxes,
    mean_regions,
    remove_head_motion,
)

__all__ = [
    "MODES",
    "DETECTORS",
    "N_LANDMARKS",
    "REGION_SIZE",
    "AlignedClip",
    "Detection",
    "DetectionBatch",
    "align_clip",
    "alignment_transform",
    "apply_transform",
    "invert_transform",
    "precropped",
    "transform_points",
    "detect_landmarks",
    "detect_landmarks_batch",
    "dlib_predictor_path",
    "fan_weight_files",
    "fit_landmarks",
    "eye_mask",
    "mean_region_boxes",
    "mean_regions",
    "remove_head_motion",
]
