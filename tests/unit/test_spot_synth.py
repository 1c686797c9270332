"""Synthetic long videos for the spotting example: the micro-expressions' intensity range."""
from __future__ import annotations

import pytest

from mexkit.errors import ParameterError
from mexkit.synth import make_subject
from mexkit.synth.generate import make_long_video


def test_micro_intensity_range_sets_the_micro_expressions_peak():
    subject = make_subject(3)
    weak = make_long_video(subject, fps=25, seconds=8, n_macro=0, n_blinks=0,
                           micro_intensity=(0.3, 0.4), rng=5)
    strong = make_long_video(subject, fps=25, seconds=8, n_macro=0, n_blinks=0,
                             micro_intensity=(2.5, 3.0), rng=5)
    assert [i.onset for i in weak.intervals] == [i.onset for i in strong.intervals]
    for w, s in zip(weak.intervals, strong.intervals, strict=True):
        assert s.intensity > 4 * w.intensity


def test_micro_intensity_range_is_checked():
    with pytest.raises(ParameterError, match="micro_intensity"):
        make_long_video(make_subject(3), fps=25, seconds=8,
                        micro_intensity=(2.0, 1.0), rng=5)
