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


def test_one_opencv_and_no_broken_requirements():
    """Exactly one distribution provides cv2 (the contrib build), and pip finds no
    installed package whose declared requirements are missing or conflicting."""
    import importlib.metadata as md
    import subprocess
    import sys

    opencv = sorted({d.metadata["Name"].lower() for d in md.distributions()
                     if (d.metadata["Name"] or "").lower().startswith("opencv")})
    assert opencv == ["opencv-contrib-python-headless"], opencv
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "check"],
                       capture_output=True, text=True, timeout=120)
    if "No module named pip" in r.stderr:
        pytest.skip("this environment has no pip")
    assert r.returncode == 0, r.stdout + r.stderr


def test_fan_needs_no_package_beyond_torch():
    """The fan backend's code imports without face-alignment (whose opencv-python
    requirement would bring a second cv2)."""
    import subprocess
    import sys

    code = ("import sys, builtins; real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] == 'face_alignment': raise ImportError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "import mexkit.face.landmarks, mexkit.face.fan\n"
            "assert 'face_alignment' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
