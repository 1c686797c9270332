"""The README's set-up leaves a working environment."""
from __future__ import annotations

import importlib.util

import pytest


def test_opencv_contrib_not_clobbered():
    import cv2

    # face-alignment declares opencv-python, whose cv2 would replace
    # opencv-contrib's and silently drop the optflow module.
    assert hasattr(cv2, "optflow")
    assert hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def test_dlib_model_ships_with_a_package():
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec is not None and spec.submodule_search_locations
    from pathlib import Path

    model = Path(spec.submodule_search_locations[0]) / "models" / (
        "shape_predictor_68_face_landmarks.dat")
    assert model.stat().st_size > 50_000_000


def test_torch_is_the_pinned_cpu_build():
    torch = pytest.importorskip("torch")
    assert torch.__version__.startswith("2.13.0")
