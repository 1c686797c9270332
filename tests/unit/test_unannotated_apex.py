"""Clips without onset/apex annotations (issue 20, point 2): `flow --pairs onset-apex` and
`keyframes` say what they took, naming the sample, and record it; keyframes estimates the
apex of an unannotated clip with the max-difference rule."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from mexkit.io.store import open_store
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.flow import run_flow
from mexkit.pipeline.runner import Task, run_stage
from mexkit.pipeline.temporal import run_keyframes
from mexkit.temporal.apex import resolve_apex

T, PEAK = 20, 14  # the motion is largest at frame 14, not in the middle (9)


def clip() -> np.ndarray:
    rng = np.random.default_rng(1)
    base = rng.integers(40, 200, (32, 32)).astype(np.float32)
    weight = np.exp(-0.5 * ((np.arange(T) - PEAK) / 2.0) ** 2)  # rises and falls
    return np.stack([np.clip(base + 40 * w, 0, 255) for w in weight]).astype(np.uint8)


@pytest.fixture
def crop_store(tmp_path):
    attrs = {"d/s1/plain": {"subject": "s1", "fps": 30.0},
             "d/s1/coded": {"subject": "s1", "fps": 30.0, "onset": 2, "apex": 5, "offset": 18}}

    def compute(task):
        return {"frames": clip()}, attrs[task.sample_id]

    path = tmp_path / "x.crop.h5"
    run_stage([Task(sid, cache_key("crop", 1, {}, sid), {"subject": "s1"}, None)
               for sid in attrs], compute, output=path, stage="crop", params={},
              progress=False)
    return path


def test_resolve_apex_says_where_the_apex_came_from():
    frames = clip()
    assert resolve_apex(frames, 0, T - 1, 5) == (5, "annotation")
    assert resolve_apex(frames, 0, T - 1, None) == ((T - 1) // 2, "middle")
    assert resolve_apex(frames, 0, T - 1, -1, method="max-diff") == (PEAK, "max-diff")


def test_flow_onset_apex_warns_and_records_for_an_unannotated_clip(crop_store, tmp_path,
                                                                   caplog):
    out = tmp_path / "x.flow.h5"
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        run_flow(crop_store, out, method="farneback", pairs="onset-apex", progress=False)
    warned = [r.getMessage() for r in caplog.records if "annotation" in r.getMessage()]
    assert len(warned) == 1 and "d/s1/plain" in warned[0] and "--no-apex" in warned[0]
    with open_store(out) as s:
        plain, coded = s["d/s1/plain"].attrs, s["d/s1/coded"].attrs
        # the rule every stage shares (issue 28, item 6): no annotation -> max-diff
        assert (plain["onset_source"], plain["apex_source"]) == ("first frame", "max-diff")
        assert plain["apex_used"] == PEAK
        assert (coded["onset_source"], coded["apex_source"]) == ("annotation", "annotation")
    run_flow(crop_store, tmp_path / "y.flow.h5", method="farneback", pairs="onset-apex",
             no_apex="middle", progress=False)
    with open_store(tmp_path / "y.flow.h5") as s:
        assert s["d/s1/plain"].attrs["apex_used"] == (T - 1) // 2
        assert s["d/s1/plain"].attrs["apex_source"] == "middle"


def test_keyframes_estimate_the_apex_of_an_unannotated_clip(crop_store, tmp_path, caplog):
    out = tmp_path / "x.kf.h5"
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        run_keyframes(crop_store, out, method="tas", n_frames=5, progress=False)
    warned = [r.getMessage() for r in caplog.records if "annotation" in r.getMessage()]
    assert len(warned) == 1 and "d/s1/plain" in warned[0]
    with open_store(out) as s:
        plain, coded = s["d/s1/plain"], s["d/s1/coded"]
        assert plain.attrs["apex_source"] == "max-diff"
        assert plain.attrs["onset_source"] == "first frame"
        assert PEAK in plain.read("source_time")  # the estimated apex is a key frame
        assert coded.attrs["apex_source"] == "annotation"


def test_every_stage_gives_a_clip_the_same_apex(crop_store, tmp_path):
    """Issue 28, item 6: an unannotated clip got the middle frame in `flow` and the most
    different frame in `keyframes`.  One rule now, recorded in both stores."""
    from mexkit.temporal.apex import apex_method

    flow_out, kf_out = tmp_path / "f.h5", tmp_path / "k.h5"
    run_flow(crop_store, flow_out, method="farneback", pairs="onset-apex", with_apex=True,
             progress=False)
    run_keyframes(crop_store, kf_out, method="tas", n_frames=5, progress=False)
    with open_store(flow_out) as f, open_store(kf_out) as k:
        for sid in ("d/s1/plain", "d/s1/coded"):
            fa, ka = f[sid].attrs, k[sid].attrs
            assert fa["apex_used"] == ka["apex_used"], sid
            assert fa["apex_source"] == ka["apex_source"], sid
        assert f["d/s1/plain"].attrs["apex_used"] == PEAK
        np.testing.assert_array_equal(f["d/s1/plain"].read("apex_image"), clip()[PEAK])
        assert f["d/s1/coded"].attrs["apex_used"] == 5
    assert apex_method(True) == "middle" and apex_method(False) == "max-diff"
    assert apex_method(True, "max-diff") == "max-diff"
