"""MEAN's spotting post-processing against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.spot import (
    interval_emotion,
    kprime_from_length,
    peak_interval,
    pseudo_labels,
    smooth_scores,
    spot_peaks,
    spot_video,
    threshold,
)


def test_kprime_is_half_the_mean_length_rounded_down():
    assert kprime_from_length(67) == 34      # CASME II's k' in MEAN's Table 1
    assert kprime_from_length(11.4) == 6
    assert kprime_from_length(1) == 1
    with pytest.raises(ParameterError):
        kprime_from_length(0)


def test_pseudo_labels_mark_windows_that_overlap_an_interval():
    # window [j, j+2] meets [4, 5] for j = 2..5
    got = pseudo_labels(10, [(4, 5)], 3)
    assert got.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert got.dtype == np.float32


def test_pseudo_labels_two_intervals_and_the_video_end():
    got = pseudo_labels(8, [(0, 0), (7, 9)], 2)
    # [0,0]: j = 0 (j = -1 does not exist); [7, 9]: j = 6, 7 (clipped at the end)
    assert got.tolist() == [1, 0, 0, 0, 0, 0, 1, 1]
    assert pseudo_labels(5, [], 3).tolist() == [0] * 5


def test_pseudo_labels_reject_reversed_intervals():
    with pytest.raises(ParameterError, match=r"\[5, 4\]"):
        pseudo_labels(10, [(5, 4)], 2)


def test_smoothing_is_the_centred_mean_of_2k_plus_1_frames():
    s = np.array([0, 0, 0, 3, 0, 0, 0], dtype=float)
    got = smooth_scores(s, 1)
    np.testing.assert_allclose(got, [0, 0, 1, 1, 1, 0, 0])
    got = smooth_scores(np.arange(7.0), 2)
    # inside: mean of 5 frames centred on i; boundary: mean of the frames inside
    np.testing.assert_allclose(got, [1.0, 1.5, 2, 3, 4, 4.5, 5])


def test_threshold_of_eq_12():
    assert threshold(np.array([0.0, 1.0, 5.0]), 0.55) == pytest.approx(2 + 0.55 * 3)


def test_long_video_peaks_above_threshold():
    sm = np.array([0, 0, 1, 5, 1, 0, 0, 2, 4, 2, 0, 0], dtype=float)
    # candidates are frames 1..10: mean 1.5, max 5 -> T = 1.5 + 0.55 * 3.5 = 3.425
    peaks, t = spot_peaks(sm, 1, p=0.55)
    assert t == pytest.approx(3.425)
    assert peaks.tolist() == [3, 8]
    peaks, t = spot_peaks(sm, 1, p=0.8)          # T = 4.3
    assert peaks.tolist() == [3]
    peaks, _ = spot_peaks(sm, 6, p=0.55)         # frames 6..5: no candidate
    assert peaks.tolist() == []
    sm2 = np.zeros(20)
    sm2[7:10] = [1, 5, 1]
    sm2[11:14] = [2, 4, 2]
    # peaks at 8 and 12 are 4 frames apart: k' = 3 keeps both, k' = 5 the higher one
    assert spot_peaks(sm2, 3, p=0.0)[0].tolist() == [8, 12]
    assert spot_peaks(sm2, 5, p=0.0)[0].tolist() == [8]
    # a maximum among the k' boundary frames is never a peak
    sm3 = np.r_[0.0, 9.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert spot_peaks(sm3, 2, p=0.0)[0].tolist() == [4]

def test_flat_scores_have_no_peak():
    peaks, t = spot_peaks(np.full(20, 0.3), 2)
    assert peaks.tolist() == []
    assert t == pytest.approx(0.3)


def test_short_video_takes_the_single_highest_frame_earliest_on_ties():
    sm = np.array([9, 0, 2, 2, 1, 0, 9], dtype=float)  # the 9s are boundary frames
    peaks, t = spot_peaks(sm, 1, long=False)
    assert peaks.tolist() == [2] and t is None
    # too short for any inner frame: the whole curve
    assert spot_peaks(np.array([1.0, 3.0]), 1, long=False)[0].tolist() == [1]


def test_interval_around_the_peak_is_clipped():
    assert peak_interval(5, 3, 20) == (2, 7)
    assert peak_interval(1, 3, 20) == (0, 3)
    assert peak_interval(18, 3, 20) == (15, 19)
    with pytest.raises(ParameterError, match="past the end"):
        peak_interval(20, 3, 20)


def test_emotion_is_the_mode_before_the_peak():
    c = np.array([0, 1, 1, 2, 2, 2, 2, 0])
    assert interval_emotion(c, 4, 3) == 1           # frames 1..3: 1, 1, 2
    assert interval_emotion(c, 3, 2) == 1           # frames 1..2: tie-free 1
    assert interval_emotion(np.array([2, 1, 0]), 2, 2) == 1  # frames 0..1: 2, 1 -> tie -> 1
    assert interval_emotion(c, 0, 3) == 0           # empty window: the peak frame


def test_spot_video_end_to_end():
    scores = np.zeros(40)
    scores[10:16] = 1.0
    scores[28:33] = 1.0
    classes = np.zeros(40, dtype=int)
    classes[6:13] = 2
    spots, sm, t = spot_video(scores, 3, n_frames=45, frame_classes=classes)
    assert [s.peak for s in spots] == [12, 30]   # plateaus: middle frame, rounded down
    assert (spots[0].onset, spots[0].offset) == (9, 14)
    assert spots[0].confidence == pytest.approx(sm[12]) == pytest.approx(6 / 7)
    assert spots[0].emotion == 2
    assert spots[1].emotion == 0
    assert t is not None and sm.shape == (40,)


def test_spot_video_checks_lengths():
    with pytest.raises(ParameterError, match="frame_classes"):
        spot_video(np.zeros(10), 2, frame_classes=np.zeros(9, dtype=int))
    with pytest.raises(ParameterError, match="n_frames"):
        spot_video(np.zeros(10), 2, n_frames=5)
