"""``mexkit export`` of a store made by the real pipeline (the session's crop store):
the frame rows carry exactly the stored landmarks and frame numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli

pd = pytest.importorskip("pandas")


def _run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def _inspect(path):
    r = _run("inspect", path, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_store_export_of_a_pipeline_store(crop_store, tmp_path):
    """A crop store made by the real pipeline: frame rows carry the stored landmarks."""
    import h5py

    from mexkit.io.store import quote_id

    out = tmp_path / "crop"
    r = _run("export", crop_store, "-o", out)
    assert r.exit_code == 0, r.output
    summary = _inspect(crop_store)
    samples = pd.read_csv(out / "samples.csv")
    assert samples["sample_id"].tolist() == summary["samples"]
    frames = pd.read_csv(out / "frames.csv")
    with h5py.File(crop_store, "r") as fh:
        total = 0
        for sid in summary["samples"]:
            g = fh["samples"][quote_id(sid)]
            lm, numbers = g["landmarks"][()], g["frame_numbers"][()]
            rows = frames[frames["sample_id"] == sid]
            total += len(rows)
            assert rows["frame"].tolist() == list(range(len(lm)))
            assert rows["frame_number"].tolist() == numbers.tolist()
            assert np.array_equal(rows[[f"x_{k}" for k in range(68)]].to_numpy(),
                                  lm[:, :, 0].astype(np.float64))
            assert np.array_equal(rows[[f"y_{k}" for k in range(68)]].to_numpy(),
                                  lm[:, :, 1].astype(np.float64))
            mean = g["frames"][()].reshape(len(lm), -1).astype(np.float64).mean(axis=1)
            assert np.allclose(rows["frames_mean"].to_numpy(), mean, rtol=0, atol=1e-9)
    assert total == len(frames)
