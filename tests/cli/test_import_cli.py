"""`mexkit import` and `mexkit samples` on a copy of the MEGC 2019 optical-flow release.

The release is built in miniature in its published layout (tests/megc_release.py);
its apex faces are the real face bundled with scikit-image, so that the
landmarks the import stores can be compared with dlib's on the same image.
"""
from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from megc_release import face_224, make_release
from PIL import Image

from mexkit.cli import cli
from mexkit.face.landmarks import detect_landmarks
from mexkit.io.datasets.megc2019_flow import APEX_DIR, FLOW_DIR
from mexkit.io.store import open_store
from mexkit.pipeline.show import _tile


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_import_writes_the_flow_store_with_u_v_strain_and_scaled_landmarks(tmp_path):
    images = make_release(tmp_path / "HTNet", face=True)
    out = tmp_path / "composite.h5"
    res = _run("import", str(tmp_path / "HTNet"), "--dataset", "megc2019-flow", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out.resolve())
    with open_store(out) as st:
        assert st.stage == "import" and len(st) == 5
        assert st.params["variant"] == "flow"
        s = st["smic-hs/s02/s02_sur_01"]
        assert s.attrs["label"] == "surprise" and s.attrs["subject"] == "s02"
        assert s.attrs["dataset"] == "smic-hs"
        assert s.attrs["files"]["flow"] == str(FLOW_DIR / "s02_s02_sur_01 .png")
        rgb = images["s02_s02_sur_01 .png"]
        np.testing.assert_array_equal(s.read("flow")[0, 0], rgb[..., 0])
        np.testing.assert_array_equal(s.read("strain")[0], rgb[..., 2])
        # dlib's 68 points on the 224x224 apex face, taken to the 28x28 maps (x 1/8);
        # the face is read back from its JPEG, as the import reads it
        apex = np.asarray(Image.open(tmp_path / "HTNet" / APEX_DIR / "s02_s2_sur_01.jpg"))
        want = detect_landmarks(apex).landmarks / 8
        np.testing.assert_allclose(s.read("landmarks")[0], want, atol=1e-4)
        assert float(s.read("landmarks")[0, 30, 0]) < 28  # inside the 28x28 map


def test_import_apex_store_and_samples_without_annotations(tmp_path):
    make_release(tmp_path / "HTNet", face=True)
    out = tmp_path / "apex.h5"
    res = _run("import", str(tmp_path / "HTNet"), "--dataset", "megc2019-flow", "--apex",
               "--no-landmarks", "-o", str(out))
    assert res.exit_code == 0, res.output
    with open_store(out) as st:
        s = st["casme2/sub01/EP02_01f"]
        assert s.read("apex_image").shape == (224, 224, 3)
        assert s.read("frames").shape == (1, 224, 224, 3)
        assert "landmarks" not in s
        # JPEG-decoded, so within a few grey levels of the image written
        assert np.abs(s.read("apex_image").astype(int) - face_224()).mean() < 3
    res = _run("samples", "--dataset", "megc2019-flow", "--root", str(tmp_path / "HTNet"))
    assert res.exit_code == 0, res.output
    assert "5 samples, 4 subjects" in res.stdout


def test_import_fails_only_the_sample_whose_file_is_missing(tmp_path):
    make_release(tmp_path / "HTNet")
    (tmp_path / "HTNet" / FLOW_DIR / "sub01_EP19_05f .png").unlink()
    out = tmp_path / "c.h5"
    res = _run("import", str(tmp_path / "HTNet"), "--dataset", "megc2019-flow",
               "--no-landmarks", "-o", str(out))
    assert res.exit_code == 1
    assert "missing: datasets/STSNet_whole_norm_u_v_os/sub01_EP19_05f .png" in res.stderr
    with open_store(out) as st:
        assert len(st) == 4
        assert "casme2/sub01/EP19_05f" in st.failures
        assert "flow image is missing" in st.failures["casme2/sub01/EP19_05f"]


def test_import_refuses_datasets_read_from_videos_and_unknown_variants(tmp_path):
    make_release(tmp_path / "HTNet")
    res = CliRunner().invoke(cli, ["import", str(tmp_path / "HTNet"), "--dataset", "casme2"])
    assert res.exit_code == 2
    assert "the datasets that arrive preprocessed are: megc2019-flow" in res.stderr
    res = CliRunner().invoke(cli, ["import", str(tmp_path / "HTNet"), "--dataset",
                                   "megc2019-flow", "--variant", "tim"])
    assert res.exit_code == 2
    assert "Allowed values for megc2019-flow are flow, apex, but got 'tim'" in res.stderr



def test_show_draws_a_few_of_each_class_as_the_release_pictures_them(tmp_path):
    images = make_release(tmp_path / "HTNet")
    store = tmp_path / "c.h5"
    _run("import", str(tmp_path / "HTNet"), "--dataset", "megc2019-flow", "--no-landmarks",
         "-o", str(store))
    res = _run("show", str(store), "--per-class", "2", "-o", str(tmp_path / "classes.png"))
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "classes.png") as im:
        assert im.size[0] > 100
    with open_store(store) as st:
        # maps in the release's units are drawn as its image: u, v, strain as R, G, B,
        # each stretched to 0..255 (the real release's maps span it already)
        img = images["006_006_1_2 .png"].astype(np.float64)
        lo, hi = img.min(axis=(0, 1)), img.max(axis=(0, 1))
        want = ((img - lo) / (hi - lo) * 255).astype(np.uint8)
        np.testing.assert_array_equal(_tile(st["samm/006/006_1_2"]), want)
