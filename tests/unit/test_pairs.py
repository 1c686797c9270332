"""Frame pairing on hand-worked cases."""
from __future__ import annotations

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.motion import make_pairs


def test_consecutive_and_keyframes():
    assert make_pairs(4, mode="consecutive").tolist() == [[0, 1], [1, 2], [2, 3]]
    # MERSiamC3D: 11 key-frames give 10 flows between neighbours
    key = make_pairs(11, mode="keyframes")
    assert key.shape == (10, 2) and key.dtype == np.int64
    assert key[0].tolist() == [0, 1] and key[-1].tolist() == [9, 10]


def test_gap_from_k_and_from_fps():
    assert make_pairs(5, mode="gap", k=2).tolist() == [[0, 2], [1, 3], [2, 4]]
    # MEAN: k = fps x 0.1; CASME II at 200 fps -> 20, CAS(ME)^2 at 30 fps -> 3
    assert make_pairs(100, mode="gap", fps=200)[0].tolist() == [0, 20]
    assert len(make_pairs(100, mode="gap", fps=200)) == 80
    assert make_pairs(10, mode="gap", fps=30)[0].tolist() == [0, 3]
    # 25 fps -> 2.5, rounded half up; very low rates still pair neighbours
    assert make_pairs(10, mode="gap", fps=25)[0].tolist() == [0, 3]
    assert make_pairs(10, mode="gap", fps=4)[0].tolist() == [0, 1]
    # an explicit k wins over fps
    assert make_pairs(10, mode="gap", k=4, fps=200)[0].tolist() == [0, 4]


def test_onset_apex_and_onset_all():
    assert make_pairs(40, mode="onset-apex", onset=5, apex=17).tolist() == [[5, 17]]
    assert make_pairs(6, mode="onset-all", onset=3).tolist() == [[3, 4], [3, 5]]


def test_apex_window_centred_shifted_and_too_short():
    pairs = make_pairs(200, mode="apex-window", apex=100)
    # ATNet: 32 frames each side of the apex, 65 frames, 64 flows
    assert pairs.shape == (64, 2)
    assert pairs[0].tolist() == [68, 69] and pairs[-1].tolist() == [131, 132]
    # near the start the window is shifted inside the clip
    start = make_pairs(80, mode="apex-window", apex=3)
    assert start[0].tolist() == [0, 1] and start[-1].tolist() == [63, 64]
    end = make_pairs(80, mode="apex-window", apex=78)
    assert end[0].tolist() == [15, 16] and end[-1].tolist() == [78, 79]
    exact = make_pairs(65, mode="apex-window", apex=10)
    assert exact[0].tolist() == [0, 1] and exact[-1].tolist() == [63, 64]
    small = make_pairs(9, mode="apex-window", apex=4, window=5)
    assert small.tolist() == [[2, 3], [3, 4], [4, 5], [5, 6]]
    with pytest.raises(ParameterError, match="65 frames.*has 40"):
        make_pairs(40, mode="apex-window", apex=20)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "nope"}, "mode"),
    ({"mode": "onset-apex", "onset": 2}, "apex"),
    ({"mode": "onset-apex", "onset": 5, "apex": 5}, "after the onset"),
    ({"mode": "onset-apex", "onset": 5, "apex": 20}, "outside the clip"),
    ({"mode": "onset-apex", "onset": -1, "apex": 3}, "outside the clip"),
    ({"mode": "onset-all"}, "onset"),
    ({"mode": "onset-all", "onset": 9}, "last frame"),
    ({"mode": "apex-window"}, "apex"),
    ({"mode": "apex-window", "apex": 12}, "outside the clip"),
    ({"mode": "gap"}, "'k'"),
    ({"mode": "gap", "k": 10}, "k"),
    ({"mode": "gap", "k": 0}, "k"),
    ({"mode": "gap", "fps": -5.0}, "fps"),
    ({"mode": "onset-apex", "onset": 1.5, "apex": 4}, "integer"),
])
def test_bad_requests_raise(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        make_pairs(10, **kwargs)


def test_too_few_frames_raise():
    with pytest.raises(ParameterError, match="n_frames"):
        make_pairs(1, mode="consecutive")
