"""The temporal stage commands on synthetic crops."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store


def _run(*args):
    r = CliRunner().invoke(cli, ["-q", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


def test_tim_same_length_reproduces_and_positions_map(crop_store, tmp_path):
    out = _run("tim", crop_store, "-n", 16, "-o", tmp_path / "t.h5")
    with open_store(crop_store) as src, open_store(out) as dst:
        assert dst.stage == "tim" and dst.upstream[0]["content_hash"] == src.content_hash
        for sid in src.sample_ids:
            a, b = src[sid], dst[sid]
            assert b["frames"].shape == (16, 128, 128)
            # exact grid: first and last output frames are the input's
            np.testing.assert_array_equal(b["frames"][0], a["frames"][0])
            np.testing.assert_array_equal(b["frames"][-1], a["frames"][-1])
            T = a.attrs["n_frames"]
            assert b.attrs["apex"] == round(a.attrs["apex"] * 15 / (T - 1))
    with open_store(crop_store) as src:
        sid = src.sample_ids[0]
        T = src[sid].attrs["n_frames"]
        frames = src[sid]["frames"]
    same = _run("tim", crop_store, "-n", T, "--float", "-o", tmp_path / "same.h5")
    with open_store(same) as s:
        np.testing.assert_allclose(s[sid]["frames"], frames, atol=1e-3)


@pytest.mark.slow
def test_rpca_psn_chain_sparse_frames(crop_store, tmp_path):
    # PSN's chain is TIM to 150 frames and 16 kept; a shorter chain keeps CI fast
    out = _run("rpca", crop_store, "--psn", "--tim-frames", 40, "--keep", 8,
               "-o", tmp_path / "r.h5")
    with open_store(out) as s:
        assert s.params["n_tim"] == 40 and s.params["k"] == 8
        for sample in s:
            sp = sample["sparse"]
            assert sp.shape == (8, 128, 128) and sp.dtype == np.float32
            assert np.isfinite(sp).all()
            # identity removed: the sparse part is small next to the frames
            assert np.abs(sp).mean() < 0.05


def test_keyframes_tas_takes_original_frames(crop_store, tmp_path):
    from mexkit.temporal.keyframes import tas_indices

    kf = _run("keyframes", crop_store, "--method", "tas", "-o", tmp_path / "tas.h5")
    with open_store(kf) as s, open_store(crop_store) as src:
        for sample in s:
            orig = src[sample.sample_id]
            a = orig.attrs
            idx = tas_indices(a["onset"], a["apex"], a["offset"])
            np.testing.assert_array_equal(sample["frames"], orig["frames"][idx])


@pytest.mark.slow
def test_keyframes_adaptive(crop_store, tmp_path):
    kf = _run("keyframes", crop_store, "-o", tmp_path / "k.h5")
    with open_store(kf) as s, open_store(crop_store) as src:
        for sample in s:
            assert sample["frames"].shape == (11, 128, 128)
            orig = src[sample.sample_id]
            # the key-frame clip starts at the onset frame and contains the apex frame
            np.testing.assert_array_equal(sample["frames"][0], orig["frames"][orig.attrs["onset"]])
            np.testing.assert_array_equal(sample["frames"][sample.attrs["apex"]],
                                          orig["frames"][orig.attrs["apex"]])


def test_magnify_keeps_shape_and_failures_propagate(crop_store, tmp_path):
    out = _run("magnify", crop_store, "--alpha", 10, "-o", tmp_path / "m.h5")
    with open_store(out) as s, open_store(crop_store) as src:
        for sample in s:
            assert sample["frames"].shape == src[sample.sample_id]["frames"].shape
