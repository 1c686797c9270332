"""Every frame size the synth command accepts works (160, the documented minimum,
failed on a face width fixed for 240 and left an empty folder)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.synth.face import make_subject


@pytest.mark.parametrize("size", [160, 200, 240, 320])
def test_subject_face_scales_with_the_frame(size):
    subject = make_subject(3, size=size)
    lm = subject.landmarks
    width = float(lm[16, 0] - lm[0, 0])
    assert 0.45 * size < width < 0.7 * size
    assert (lm > 0).all() and (lm < size).all()


def test_default_face_width_is_unchanged_at_240():
    a = make_subject(5, size=240)
    b = make_subject(5, size=240, face_width=140.0)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_synth_at_the_minimum_size(tmp_path):
    r = CliRunner().invoke(cli, ["-q", "synth", str(tmp_path / "d"), "--size", "160",
                                 "--subjects", "1", "--clips-per-class", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "samples.csv").exists()
