"""The flow-feature registry: the built-in features, look-up, and MEAN's region feature.

MEAN's ``mean`` feature is registered by its model package
(``mexkit/models/mean/features.py``), which the flow stage loads when asked for a name
the registry does not know (``mexkit.pipeline.stages.flow_feature``).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_regions import constructed_landmarks

from mexkit.errors import ParameterError
from mexkit.models.mean import features  # noqa: F401  (registers "mean")
from mexkit.motion import direction_magnitude
from mexkit.motion import feature_registry as registry
from mexkit.motion.feature_registry import flow_feature, flow_features, register_flow_feature


def test_builtin_features_are_registered_with_their_arrays_and_needs():
    assert flow_features()[:3] == ["dm", "hoof", "mean"]
    assert [flow_feature(n).array for n in ("dm", "hoof", "mean")] == [
        "direction_magnitude", "hoof", "mean_regions"]
    assert flow_feature("dm").needs == () and flow_feature("hoof").needs == ()
    assert set(flow_feature("mean").needs) == {"landmarks", "first_frame", "sample_id"}
    assert set(flow_feature("mean").options) == {"mean_input", "mask_eyes",
                                                 "remove_head_motion"}
    assert flow_feature("mean").extra_arrays == ("mean_landmarks",)


def test_the_stage_loads_the_model_packages_for_a_name_it_does_not_know(monkeypatch):
    import mexkit.models.registry as models
    from mexkit.pipeline.stages import flow_feature as stage_feature

    mean = flow_feature("mean")
    assert mean.function.__module__ == "mexkit.models.mean.features"
    monkeypatch.delitem(registry._REGISTRY, "mean")
    loaded = []

    def load() -> None:  # what loading MEAN's package does: its features.py registers
        loaded.append(True)
        registry._REGISTRY["mean"] = mean

    monkeypatch.setattr(models, "load_model_packages", load)
    assert stage_feature("dm").array == "direction_magnitude" and loaded == []
    assert stage_feature("mean") is mean and loaded == [True]


@pytest.mark.slow
def test_the_stage_finds_a_models_feature_by_loading_the_model_packages():
    # a fresh interpreter: nothing has loaded the model packages yet (about 15 s: torch)
    code = ("from mexkit.motion.feature_registry import flow_features\n"
            "assert 'mean' not in flow_features()\n"
            "from mexkit.pipeline.stages import flow_feature\n"
            "f = flow_feature('mean')\n"
            "print(f.function.__module__, f.array, f.records)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["mexkit.models.mean.features", "mean_regions", "('mean_input',)"]


def test_unknown_feature_is_refused_naming_the_known_ones():
    with pytest.raises(ParameterError, match="'dm', 'hoof', 'mean'"):
        flow_feature("hof")


def test_a_name_cannot_be_taken_twice_and_needs_are_checked():
    with pytest.raises(ParameterError, match="already registered"):
        register_flow_feature("dm", array="x", summary="another dm")(lambda flow: flow)
    with pytest.raises(ParameterError, match="'needs'"):
        register_flow_feature("x", array="x", summary="x", needs=("frames",))


def test_the_paper_mean_refuses_a_clip_without_landmarks():
    flow = np.zeros((1, 2, 128, 128), np.float32)
    with pytest.raises(ParameterError, match="'s/1' has no landmarks"):
        flow_feature("mean")(flow, inputs={"landmarks": None, "first_frame": None,
                                           "sample_id": "s/1"},
                             options={"mean_input": "paper"})


def test_a_feature_gets_only_what_it_declares(monkeypatch):
    seen = {}

    def toy(flow, *, strain, scale=1.0):
        seen.update(strain=strain, scale=scale)
        return flow[:, 0].mean(axis=(1, 2)) * scale

    monkeypatch.setitem(registry._REGISTRY, "toy", registry.FlowFeature(
        "toy", "toy_mean_u", "mean u (a test feature)", toy, needs=("strain",),
        options=("scale",)))
    flow = np.zeros((2, 2, 8, 8), np.float32)
    flow[1, 0] = 3.0
    out = flow_feature("toy")(flow, inputs={"strain": "S", "landmarks": "L"},
                              options={"scale": 2.0, "mask_eyes": True})
    np.testing.assert_array_equal(out, [0.0, 6.0])
    assert seen == {"strain": "S", "scale": 2.0}


def test_dm_through_the_registry_is_atnets_feature():
    flow = np.zeros((1, 2, 128, 128), np.float32)
    flow[0, 0], flow[0, 1] = 3.0, 4.0
    out = flow_feature("dm")(flow)
    np.testing.assert_array_equal(out, direction_magnitude(flow))
    np.testing.assert_allclose(out[0, 0::2], 5.0, rtol=1e-6)


@pytest.mark.parametrize("remove_head_motion", [False, True])
def test_mean_regions_of_a_uniform_flow(remove_head_motion):
    """The paper's construction, u, v constant over the crop: regions of u, v, zero strain.

    Removing head motion subtracts the nose box's mean flow, which for a
    uniform flow is the flow itself: all three maps become zero.
    """
    flow = np.zeros((2, 2, 128, 128), np.float32)
    flow[:, 0], flow[:, 1] = 1.5, -2.0
    landmarks = np.repeat(constructed_landmarks()[None].astype(np.float32), 2, axis=0)
    made = flow_feature("mean")(
        flow, inputs={"landmarks": landmarks, "first_frame": None, "sample_id": "s/1"},
        options={"mean_input": "paper", "remove_head_motion": remove_head_motion})
    assert list(made) == ["mean_regions"]
    out = made["mean_regions"]
    assert out.shape == (2, 3, 42, 42) and out.dtype == np.float32
    u, v = (0.0, 0.0) if remove_head_motion else (1.5, -2.0)
    np.testing.assert_allclose(out[:, 0], u, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], v, atol=1e-6)
    np.testing.assert_allclose(out[:, 2], 0.0, atol=1e-6)


def test_means_check_and_flow_method_are_the_features_own():
    # the flow stage and `mexkit flow --method` ask the feature; neither names MEAN
    from mexkit.pipeline.options import flow_method_for

    check = flow_feature("mean").check
    check({"mean_input": "paper", "mask_eyes": True, "remove_head_motion": True})
    with pytest.raises(ParameterError, match="apply to --mean-input paper"):
        check({"mean_input": "authors", "mask_eyes": True})
    with pytest.raises(ParameterError, match="'authors', 'paper'"):
        check({"mean_input": "theirs"})
    assert flow_feature("mean").records == ("mean_input",)
    # the authors' networks saw OpenCV's DualTVL1 flow; the paper's reading takes the default
    assert flow_method_for(None, ["mean"], {"mean_input": "authors"}) == "tvl1-opencv"
    assert flow_method_for(None, ["mean"], {"mean_input": "paper"}) == "tvl1"
    assert flow_method_for(None, ["dm", "hoof"], {}) == "tvl1"
    assert flow_method_for("farneback", ["mean"], {"mean_input": "paper"}) == "farneback"
