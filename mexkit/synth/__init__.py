"""Synthetic micro-expression data with exact ground truth.

Subjects are geometric and photometric variants of a real face photograph
bundled with scikit-image (:mod:`mexkit.synth.face`); expressions are smooth,
action-unit shaped, landmark-anchored deformations with an onset-apex-offset
profile (:mod:`mexkit.synth.au`); clips and long videos come with the true
forward displacement of every frame and per-frame landmarks
(:mod:`mexkit.synth.generate`). This package is pure (arrays in, arrays
out); :mod:`mexkit.pipeline.synth` writes datasets laid out like CASME II and
SAMM Long Videos.

Example
-------
>>> from mexkit.synth import make_subject, make_clip
>>> clip = make_clip(make_subject(0), label="surprise", fps=100, rng=0)
>>> clip.frames.shape[1:], clip.flow.shape[1]
((240, 240, 3), 2)
"""
from __future__ import annotations

from .au import AU_NAMES, BumpField, action_unit_field, apex_profile, blink_field
from .face import Subject, make_subject
from .generate import (
    CLASS_AUS,
    CLASSES,
    ClipTruth,
    Interval,
    LongVideoTruth,
    head_motion,
    make_clip,
    make_long_video,
)

__all__ = [
    "AU_NAMES",
    "BumpField",
    "CLASSES",
    "CLASS_AUS",
    "ClipTruth",
    "Interval",
    "LongVideoTruth",
    "Subject",
    "action_unit_field",
    "apex_profile",
    "blink_field",
    "head_motion",
    "make_clip",
    "make_long_video",
    "make_subject",
]
