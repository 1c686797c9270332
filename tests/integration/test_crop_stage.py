"""`mexkit crop` on synthetic data: geometry, failures, caching."""
from __future__ import annotations

import cv2
import numpy as np
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store


def test_crop_store_contents(crop_store, synth_dataset):
    with open_store(crop_store) as s:
        assert s.stage == "crop" and len(s) == 6 and not s.failures
        assert s.params["size"] == 128 and s.params["detector"] == "dlib"
        for sample in s:
            frames = sample["frames"]
            T = sample.attrs["n_frames"]
            assert frames.shape == (T, 128, 128) and frames.dtype == np.uint8
            lm = sample["landmarks"]
            assert lm.shape == (T, 68, 2)
            # eye line horizontal in the crop (within 1.5 degrees)
            left, right = lm[0, 36:42].mean(0), lm[0, 42:48].mean(0)
            angle = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
            assert abs(angle) < 1.5
            assert 0 <= sample.attrs["onset"] <= sample.attrs["apex"] <= sample.attrs["offset"]
            assert sample.attrs["label"] in ("negative", "positive", "surprise")


def test_landmarks_against_generator_truth(crop_store, synth_dataset):
    """Crop landmarks mapped back to the frame match the generator's landmarks."""
    with open_store(crop_store) as s:
        errors = []
        for sample in s:
            sub, clip = sample.attrs["subject"], sample.attrs["clip"]
            truth = np.load(synth_dataset / "truth" / sub / f"{clip}.npz", allow_pickle=False)
            M = sample["transforms"][0]
            Minv = cv2.invertAffineTransform(M)
            lm_crop = sample["landmarks"][0]
            lm_frame = lm_crop @ Minv[:, :2].T + Minv[:, 2]
            errors.append(np.linalg.norm(lm_frame - truth["landmarks"][0], axis=1).mean())
    assert np.mean(errors) < 3.0, errors


def test_no_face_video_fails_alone(tmp_path, synth_dataset):
    rng = np.random.default_rng(0)
    noface = tmp_path / "noise.avi"
    w = cv2.VideoWriter(str(noface), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(6):
        w.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    w.release()
    face = sorted((synth_dataset / "sub01").iterdir())[0]
    out = tmp_path / "mixed.crop.h5"
    r = CliRunner().invoke(cli, ["crop", str(face), str(noface), "--fps", "100", "-o", str(out)])
    assert r.exit_code == 1
    assert r.stdout.strip() == str(out.resolve())
    assert "noise" in r.stderr and "Traceback" not in r.stderr
    with open_store(out) as s:
        assert len(s) == 1
        (sid, msg), = s.failures.items()
        assert "noise" in sid and "face" in msg.lower() and "frame" in msg


def test_rerun_is_cached(crop_store, synth_dataset):
    r = CliRunner().invoke(cli, ["-v", "crop", "--annotations",
                                 str(synth_dataset / "samples.csv"), "-o", str(crop_store)])
    assert r.exit_code == 0
    assert "6 of 6 sample(s) already done" in r.stderr
    r = CliRunner().invoke(cli, ["crop", "--annotations", str(synth_dataset / "samples.csv"),
                                 "-o", str(crop_store)])
    assert r.exit_code == 0
    assert "0 computed, 6 skipped (cached), 0 failed" in r.stderr


def test_unreadable_clip_of_an_official_sheet_fails_alone(tmp_path, synth_dataset):
    """A clip folder that holds no frames is one failed sample of a CASME II sheet,
    not the end of the crop (reading the sheet aborted on it before)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synth_dataset, root)
    bad = sorted((root / "sub01").iterdir())[0]
    for image in bad.iterdir():
        image.unlink()
    out = tmp_path / "c.crop.h5"
    r = CliRunner().invoke(cli, ["crop", "--dataset", "casme2", "--annotations",
                                 str(root / "CASME2-coding.xlsx"), "--root", str(root),
                                 "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.stderr
    with open_store(out) as s:
        assert len(s) == 5
        (sid, msg), = s.failures.items()
        assert bad.name in sid
