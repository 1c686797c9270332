"""mexkit flow's method options, generated from the flow-method registry, through the CLI."""
from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store


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
    opts = p1["method_options"]
    assert opts["lambda_"] == 0.15 and opts["border"] == "masked"
    assert "threads" not in opts and "device" not in opts


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
    assert pp["method_options"]["winsize"] == 15 and pw["method_options"]["winsize"] == 31
    assert "tvl1" not in pp   # Farneback's options are not filed under 'tvl1' (issue 28)
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
