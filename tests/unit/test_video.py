"""Clip readers: natural order, frame numbers, RGB order, random access, and
every way a clip can be broken (missing, empty, truncated, corrupt, mixed)."""
from __future__ import annotations

import hashlib
import logging
import pickle
import random

import cv2
import numpy as np
import pytest

from mexkit.errors import MediaError, ParameterError
from mexkit.io.video import frame_number, list_images, natural_key, open_clip

H, W = 24, 32


def _frame(i: int) -> np.ndarray:
    """BGR frame whose brightness encodes i, with a red left and blue right stripe."""
    img = np.full((H, W, 3), 10 + 8 * i, np.uint8)
    img[:, :4] = (0, 0, 255)     # BGR red
    img[:, -4:] = (255, 0, 0)    # BGR blue
    return img


def _folder(path, numbers, pattern="img{}.png", shape=(H, W)):
    path.mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(numbers):
        img = _frame(k)
        if shape != (H, W):
            img = cv2.resize(img, shape[::-1])
        assert cv2.imwrite(str(path / pattern.format(n)), img)
    return path


def _video(path, n, fourcc, fps=25.0):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert w.isOpened()
    for i in range(n):
        w.write(_frame(i))
    w.release()
    return path


def _level(rgb: np.ndarray) -> float:
    """Mean brightness of the middle of a frame (away from the colour stripes)."""
    return float(rgb[4:-4, 8:-8].mean())


# -- naming ------------------------------------------------------------------
def test_natural_order_puts_img2_before_img10():
    names = ["img10.jpg", "img2.jpg", "img1.jpg", "img100.jpg", "img21.jpg"]
    random.Random(0).shuffle(names)
    assert sorted(names, key=natural_key) == ["img1.jpg", "img2.jpg", "img10.jpg",
                                              "img21.jpg", "img100.jpg"]
    samm = ["006_05562.jpg", "006_05600.jpg", "006_05563.jpg"]
    assert sorted(samm, key=natural_key) == ["006_05562.jpg", "006_05563.jpg",
                                             "006_05600.jpg"]


@pytest.mark.parametrize("name, number", [
    ("img46.jpg", 46),                # CASME II
    ("006_05562.jpg", 5562),          # SAMM
    ("image0012345.bmp", 12345),      # SMIC
    ("EP01_12-73.jpg", 73),           # CASME
    ("reg_img7.jpg", 7),
    ("cover.jpg", None),
])
def test_frame_number_is_the_last_digit_run(name, number):
    assert frame_number(name) == number


def test_folder_reads_in_natural_order_with_frame_numbers(tmp_path):
    numbers = [2, 10, 3, 11, 46, 100]          # written in this (shuffled) order
    folder = _folder(tmp_path / "EP02_01f", numbers)
    (folder / "._img1.png").write_bytes(b"macos resource fork")  # hidden: ignored
    (folder / "notes.txt").write_text("not an image")
    clip = open_clip(folder, fps=200)
    assert len(clip) == clip.n_frames == 6
    assert clip.fps == 200.0
    assert clip.frame_numbers.tolist() == sorted(numbers)
    assert [p.name for p in list_images(folder)] == [f"img{n}.png" for n in sorted(numbers)]
    # frame at position k was written as the k-th of `numbers`: check by brightness
    written_index = {n: k for k, n in enumerate(numbers)}
    for pos, n in enumerate(sorted(numbers)):
        assert _level(clip.read(pos)) == 10 + 8 * written_index[n]
    assert clip.position(46) == 4
    with pytest.raises(ParameterError, match="no frame numbered 47"):
        clip.position(47)


def test_frames_are_rgb_uint8_and_grey_matches_opencv(tmp_path):
    folder = _folder(tmp_path / "c", [1, 2, 3])
    clip = open_clip(folder, fps=30)
    rgb = clip.read_range(0, 3)
    assert rgb.shape == clip.shape == (3, H, W, 3) and rgb.dtype == np.uint8
    assert rgb[0, 5, 1].tolist() == [255, 0, 0]          # red stripe is red in RGB
    assert rgb[0, 5, -1].tolist() == [0, 0, 255]         # blue stripe is blue
    grey = clip.read_range(0, 3, grey=True)
    assert grey.shape == (3, H, W)
    expected = cv2.cvtColor(cv2.imread(str(folder / "img1.png")), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(grey[0], expected)
    assert np.array_equal(np.stack(list(clip)), rgb)      # iteration = read_range
    np.testing.assert_array_equal(clip.read_indices([2, 0]), rgb[[2, 0]])


@pytest.mark.parametrize("suffix, fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_video_random_access_matches_sequential_reading(tmp_path, suffix, fourcc):
    path = _video(tmp_path / f"clip{suffix}", 20, fourcc)
    clip = open_clip(path)
    assert clip.n_frames == 20 and clip.fps == 25.0 and clip.kind == "video"
    assert clip.frame_numbers.tolist() == list(range(20))
    assert clip.frame_shape == (H, W)
    seq = clip.read_range(0, 20)
    # brightness encodes the index in steps of 8: each decoded frame lies within
    # half a step of its own level, so it is that frame and no neighbour
    levels = np.array([_level(f) for f in seq])
    assert np.all(np.abs(levels - (10 + 8 * np.arange(20))) < 4)
    assert seq[0, 5, 1, 0] > 200 and seq[0, 5, 1, 2] < 60   # red stays red (RGB)
    # backwards, forwards and far jumps give the same frames as sequential reading
    for i in (15, 3, 4, 19, 0, 9):
        np.testing.assert_array_equal(clip.read(i), seq[i])
    np.testing.assert_array_equal(clip.read_range(5, 9), seq[5:9])
    # a clip survives pickling (the decoder is reopened in the copy)
    copy = pickle.loads(pickle.dumps(clip))
    np.testing.assert_array_equal(copy.read(7), seq[7])
    assert clip.verify() == 20
    clip.close()


def test_video_fps_falls_back_and_disagreement_is_logged(tmp_path, caplog):
    path = _video(tmp_path / "c.avi", 3, "MJPG", fps=25.0)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        clip = open_clip(path, fps=200)
    assert clip.fps == 25.0
    assert "25.000 fps" in caplog.text and "200.000" in caplog.text


def test_folder_needs_fps(tmp_path):
    folder = _folder(tmp_path / "c", [1, 2])
    with pytest.raises(MediaError, match="frame rate"):
        open_clip(folder)
    with pytest.raises(ParameterError):
        open_clip(folder, fps=0)


def test_index_checks(tmp_path):
    clip = open_clip(_folder(tmp_path / "c", [1, 2, 3]), fps=10)
    for bad in (-1, 3):
        with pytest.raises(ParameterError, match=r"\[0, 2\]"):
            clip.read(bad)
    with pytest.raises(ParameterError):
        clip.read_range(2, 1)
    with pytest.raises(ParameterError):
        clip.read_range(0, 4)
    assert clip.read_range(1, 1).shape == (0, H, W, 3)


# -- broken clips ----------------------------------------------------------------
def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(MediaError, match="no such"):
        open_clip(tmp_path / "nothing.mp4")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(MediaError, match="holds no images") as err:
        open_clip(tmp_path / "empty", fps=30)
    assert "empty" in str(err.value)
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="zero.mp4.*empty"):
        open_clip(tmp_path / "zero.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 200)
    with pytest.raises(MediaError, match="junk.mp4"):
        open_clip(tmp_path / "junk.mp4")


def test_video_without_frames_is_refused(tmp_path):
    path = tmp_path / "none.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    w.release()                      # a valid container holding no frame
    assert path.stat().st_size > 0
    with pytest.raises(MediaError, match="yields no frame"):
        open_clip(path)


def _claim(path, frames: int) -> None:
    """Patch an AVI's headers so that the container claims ``frames`` frames."""
    import struct

    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8 + 16, frames)   # avih.dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, frames)   # strh.dwLength
    path.write_bytes(bytes(data))


def test_a_stream_shorter_than_its_header_is_read_to_its_end(tmp_path, caplog):
    """Issue 28, item 2: a container that claims 13 frames while 10 decode (as a phone
    clip claiming 98 of 95) is read whole, with a warning, instead of failing."""
    good = _video(tmp_path / "good.avi", 10, "MJPG")
    path = tmp_path / "claims13.avi"
    path.write_bytes(good.read_bytes())
    _claim(path, 13)
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 13       # what the container says
    cap.release()
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        clip = open_clip(path)
    assert clip.n_frames == 10 and list(clip.frame_numbers) == list(range(10))
    assert "claims 13 frames but holds 10" in caplog.text and "claims13.avi" in caplog.text
    frames = clip.read_range(0, len(clip))
    np.testing.assert_array_equal(frames, open_clip(good).read_range(0, 10))
    assert [round((_level(f) - 10) / 8) for f in frames] == list(range(10))
    assert open_clip(path).verify() == 10


def test_a_truncated_video_is_read_as_far_as_it_decodes(tmp_path, caplog):
    good = _video(tmp_path / "good.avi", 10, "MJPG").read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(good[: int(len(good) * 0.8)])       # the header still claims 10
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        clip = open_clip(path)
    assert 0 < clip.n_frames < 10
    assert f"claims 10 frames but holds {clip.n_frames}" in caplog.text
    assert clip.read_range(0, len(clip)).shape[0] == clip.n_frames
    assert open_clip(path).verify() == clip.n_frames
    with pytest.raises(ParameterError):                   # past the end: an index error
        clip.read(clip.n_frames)


def test_a_single_image_is_a_clip_of_one_frame(tmp_path):
    """Issue 28, item 2: a valid JPEG given as input was read as a broken video."""
    path = tmp_path / "face.jpg"
    assert cv2.imwrite(str(path), _frame(3))
    clip = open_clip(path)
    assert (clip.kind, clip.n_frames, list(clip.frame_numbers)) == ("image", 1, [0])
    rgb = clip.read(0)
    assert rgb.shape == (H, W, 3) and abs(_level(rgb) - (10 + 8 * 3)) < 2
    assert tuple(rgb[H // 2, 1]) > (200, 0, 0) and rgb[H // 2, 1, 2] < 60   # red stays red
    assert clip.content_hash() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert open_clip(path, fps=30).fps == 30


@pytest.mark.parametrize("name, damage", [
    ("img3.jpg", lambda b: b[: len(b) // 2]),        # truncated JPEG (no EOI)
    ("img3.png", lambda b: b[: len(b) - 20]),        # truncated PNG (no IEND)
    ("img3.bmp", lambda b: b"BM" + b"\x00" * 10),    # corrupt BMP
    ("img3.jpg", lambda b: b""),                     # empty file
])
def test_broken_image_is_named_with_its_index(tmp_path, name, damage):
    folder = tmp_path / "c"
    pattern = "img{}" + name[name.index("."):]
    _folder(folder, [1, 2, 3, 4], pattern=pattern)
    f = folder / name
    f.write_bytes(damage(f.read_bytes()))
    clip = open_clip(folder, fps=30)
    clip.read(1)
    with pytest.raises(MediaError, match=rf"frame 2\b.*{name}|{name}.*frame 2\b|frame 2 of"):
        clip.read_range(0, 4)


def test_mixed_sizes_are_refused(tmp_path):
    folder = _folder(tmp_path / "c", [1, 2])
    _folder(folder, [3], shape=(H + 2, W))
    clip = open_clip(folder, fps=30)
    with pytest.raises(MediaError, match=r"frame 2 .*img3.png.*32x26.*32x24"):
        clip.read_range(0, 3)


def test_duplicate_frame_numbers_are_refused(tmp_path):
    folder = _folder(tmp_path / "c", [1, 2])
    _folder(folder, ["02"], pattern="img{}.jpg")
    with pytest.raises(MediaError, match="not strictly increasing"):
        open_clip(folder, fps=30)


# -- content hash ------------------------------------------------------------------
def test_content_hash_tracks_names_order_and_bytes(tmp_path):
    folder = _folder(tmp_path / "c", [1, 2, 3])
    h0 = open_clip(folder, fps=30).content_hash()
    assert h0 == open_clip(folder, fps=30).content_hash()     # deterministic
    (folder / "img3.png").rename(folder / "img4.png")          # renamed frame
    h1 = open_clip(folder, fps=30).content_hash()
    assert h1 != h0
    img = cv2.imread(str(folder / "img2.png"))
    img[0, 0] = 0
    cv2.imwrite(str(folder / "img2.png"), img)                 # edited frame
    assert open_clip(folder, fps=30).content_hash() not in (h0, h1)
    video = _video(tmp_path / "v.avi", 3, "MJPG")
    assert open_clip(video).content_hash() == hashlib.sha256(video.read_bytes()).hexdigest()


@pytest.mark.parametrize("claim", [10**8, 10**9])
def test_header_claiming_huge_frame_count_allocates_nothing_from_it(tmp_path, caplog, claim):
    """An AVI whose headers claim 10^8 or 10^9 frames but hold 10 (issue 12, item 9)."""
    import tracemalloc

    path = _video(tmp_path / "claim.avi", 10, "MJPG")
    _claim(path, claim)
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == claim    # OpenCV believes the header
    cap.release()
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="mexkit"):
            clip = open_clip(path)
        frames = clip.read_range(0, len(clip))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(clip) == 10 and len(clip.frame_numbers) == 10 and frames.shape[0] == 10
    assert peak < 50 << 20
    assert f"claims {claim} frames but holds 10" in caplog.text
    with pytest.raises(ParameterError):
        clip.read(10)


def test_large_reads_grow_with_the_decoded_frames(tmp_path, monkeypatch):
    """Above the preallocation bound frames are collected as decoded; same result."""
    import mexkit.io.video as video

    clip = open_clip(_video(tmp_path / "v.avi", 6, "MJPG"))
    small = clip.read_range(0, 6)
    monkeypatch.setattr(video, "_PREALLOCATE_BYTES", 1)
    np.testing.assert_array_equal(clip.read_range(0, 6), small)
    np.testing.assert_array_equal(clip.read_indices([5, 0, 3]), small[[5, 0, 3]])
