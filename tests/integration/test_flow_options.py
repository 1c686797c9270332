"""mexkit flow's method options, generated from the flow-method registry, through the CLI."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store
from mexkit.motion.methods import flow_method
from mexkit.pipeline.flow import flow_options, run_flow


def _invoke(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def _flows(path):
    with open_store(path) as store:
        return store.params, {sid: store[sid]["flow"][...] for sid in store.sample_ids}


def test_threads_change_nothing_but_the_speed(crop_store, tmp_path):
    one = _invoke("flow", crop_store, "--pairs", "onset-apex", "--threads", "1", "-o",
                  tmp_path / "one.h5")
    two = _invoke("flow", crop_store, "--pairs", "onset-apex", "--threads", "2", "-o",
                  tmp_path / "two.h5")
    assert one.exit_code == 0 and two.exit_code == 0, (one.output, two.output)
    p1, f1 = _flows(tmp_path / "one.h5")
    p2, f2 = _flows(tmp_path / "two.h5")
    assert p1 == p2 and f1.keys() == f2.keys() and len(f1) > 0
    for sid in f1:
        np.testing.assert_array_equal(f1[sid], f2[sid])
    # every option that changes the flow is recorded; threads and device are not
    assert p1["tvl1"]["lambda_"] == 0.15 and p1["tvl1"]["border"] == "masked"
    assert "threads" not in p1["tvl1"] and "device" not in p1["tvl1"]


def test_method_options_reach_the_method_and_stray_ones_are_refused(crop_store, tmp_path):
    bad = _invoke("flow", crop_store, "--method", "tvl1", "--winsize", "9", "-o",
                  tmp_path / "bad.h5")
    assert bad.exit_code == 2 and "--winsize" in bad.output
    plain = _invoke("flow", crop_store, "--pairs", "onset-apex", "--method", "farneback",
                    "-o", tmp_path / "plain.h5")
    wide = _invoke("flow", crop_store, "--pairs", "onset-apex", "--method", "farneback",
                   "--winsize", "31", "-o", tmp_path / "wide.h5")
    assert plain.exit_code == 0 and wide.exit_code == 0, (plain.output, wide.output)
    pp, fp = _flows(tmp_path / "plain.h5")
    pw, fw = _flows(tmp_path / "wide.h5")
    # each method's options are stored under its own name
    assert pp["farneback"]["winsize"] == 15 and pw["farneback"]["winsize"] == 31
    assert "tvl1" not in pp and "tvl1" not in pw
    assert any(not np.allclose(fp[sid], fw[sid]) for sid in fp)


def test_a_device_that_is_not_there_fails_once_before_any_sample(crop_store, tmp_path):
    """--device cuda:N was refused by the option's choices; a missing GPU failed every sample."""
    import torch

    out = tmp_path / "f.h5"
    if not torch.cuda.is_available():
        r = CliRunner().invoke(cli, ["flow", str(crop_store), "--pairs", "onset-apex",
                                     "--device", "cuda:1", "-o", str(out)])
        assert r.exit_code == 2 and "torch sees no CUDA device" in r.output
        assert r.output.count("error") == 1 and not out.exists()
    r = CliRunner().invoke(cli, ["flow", str(crop_store), "--pairs", "onset-apex",
                                 "--device", "gpu0", "-o", str(out)])
    assert r.exit_code == 2 and "'cuda:N'" in r.output and not out.exists()


# -- stores of the earlier layout: every method's options under "tvl1" --------------
DATA = Path(__file__).resolve().parents[1] / "data"
OLD_LAYOUT = DATA / "v0.1.0-flow-layout-1" / "flow-farneback.h5"
# OpenCV's calcOpticalFlowFarneback arguments as the archived store was made:
# `mexkit flow v0.1.0/crop.h5 --pairs onset-apex --strain --method farneback --winsize 21`
# (pyr_scale 0.5, levels 3, iterations 3, poly_n 5, poly_sigma 1.2, flags 0: the values
# of OpenCV's Farneback tutorial, which mexkit takes as defaults).
OLD_OPTIONS = {"pyr_scale": 0.5, "levels": 3, "winsize": 21, "iterations": 3, "poly_n": 5,
               "poly_sigma": 1.2, "flags": 0}


def test_a_store_of_the_earlier_layout_is_read():
    with open_store(OLD_LAYOUT) as store:
        assert store.params["method"] == "farneback" and "farneback" not in store.params
        assert flow_options(store.params) == ("farneback", OLD_OPTIONS)


def test_rerun_over_a_store_of_the_earlier_layout_reuses_it_and_stores_the_new(tmp_path):
    """Same command, same input: the old store's samples keep their cache keys."""
    out = tmp_path / "flow.h5"
    shutil.copyfile(OLD_LAYOUT, out)
    options = flow_method("farneback").result_options({"winsize": 21})
    result = run_flow(DATA / "v0.1.0" / "crop.h5", out, method="farneback",
                      pairs="onset-apex", strain=True, options=options, progress=False)
    with open_store(OLD_LAYOUT) as old, open_store(out) as new:
        assert result.computed == 0 and result.skipped == len(old.sample_ids) > 0
        assert new.params["farneback"] == OLD_OPTIONS and "tvl1" not in new.params
        assert flow_options(new.params) == flow_options(old.params)
        assert new.cache_keys() == old.cache_keys()
    shown = _invoke("inspect", out)
    assert shown.exit_code == 0 and '  farneback = {"flags": 0' in shown.output
    assert "  tvl1 = " not in shown.output


# -- the flow stage dispatches methods and features through their registries --------
def test_a_registered_method_and_feature_run_in_the_flow_stage(crop_store, tmp_path,
                                                                 monkeypatch):
    from mexkit.motion import feature_registry, methods

    started = []

    def shift(reference, moving, *, dx=0.5):
        ref = np.asarray(reference)
        flow = np.zeros((ref.shape[0], 2) + ref.shape[1:], np.float32)
        flow[:, 0] = dx
        return flow

    def mean_u(flow, *, strain):
        return flow[:, 0].mean(axis=(1, 2)) + strain.mean(axis=(1, 2))

    monkeypatch.setitem(methods._REGISTRY, "toy-shift", methods.FlowMethod(
        "toy-shift", shift, "Constant flow (a test method).",
        (methods.FlowOption("dx", float, 0.5, "Horizontal flow (test)."),),
        start_workers=started.append))
    monkeypatch.setitem(feature_registry._REGISTRY, "toy-u", feature_registry.FlowFeature(
        "toy-u", "toy_u", "Mean u plus mean strain (a test feature).", mean_u,
        needs=("strain",)))
    out = tmp_path / "toy.h5"
    result = run_flow(crop_store, out, method="toy-shift", pairs="onset-apex",
                      features=["toy-u"], options={"dx": 1.25}, device="cpu",
                      method_runtime={"threads": 3}, progress=False)
    assert result.computed > 0 and not result.failures
    assert started == [3]   # the CPU workers were started once, with the threads asked
    with open_store(out) as store:
        assert store.params["toy-shift"] == {"dx": 1.25}
        assert flow_options(store.params) == ("toy-shift", {"dx": 1.25})
        for s in store:
            np.testing.assert_array_equal(s.read("flow")[:, 0], 1.25)
            # a uniform flow has zero strain: the feature is the flow's u
            np.testing.assert_allclose(s.read("toy_u"), 1.25, atol=1e-6)


def test_a_cached_sample_holding_every_array_of_its_feature_is_taken(crop_store, tmp_path):
    """MEAN's input as the authors build it also stores ``mean_landmarks``.

    The check of cached samples listed feature arrays by hand and did not know
    that one: every cache hit of such a sample was refused and recomputed.
    """
    cache = tmp_path / "cache"
    args = ["flow", str(crop_store), "--pairs", "onset-apex", "--method", "farneback",
            "--features", "mean", "--cache", str(cache)]
    first = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "a.h5")])
    assert first.exit_code == 0, first.output
    with open_store(tmp_path / "a.h5") as store:
        n = len(store.sample_ids)
        assert n > 0 and all("mean_landmarks" in s for s in store)
    second = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b.h5")])
    assert second.exit_code == 0, second.output
    assert f"0 computed, {n} skipped" in second.output
    assert "mean_landmarks" not in second.output   # no entry refused for it
