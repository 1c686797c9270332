"""`mexkit crop` of a long video in staged pieces (issue 28, item 3).

A long video (`--unit video`, for spotting) is one sample.  Its crop is done in pieces
(face detections in `--mode every`; the face track and the crops in the other modes),
each staged as soon as it is done, so that an interrupted or killed run keeps every
finished piece and a re-run does only the rest, with the result of a run in one go.
Here the pieces are made small (4 frames) so that a 14-frame video has four of them.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

import mexkit.face.align as align
import mexkit.face.boxcrop as boxcrop
import mexkit.face.landmarks as landmarks
import mexkit.pipeline.crop as crop
from mexkit.io.store import open_store
from mexkit.pipeline.runner import StagedPieces

N_FRAMES, PIECE = 14, 4          # pieces 0-4, 4-8, 8-12, 12-14
NO_FACE = (7, 8)                 # a gap in detection across the boundary of two pieces


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """A synthetic face (the project's, which dlib finds) filmed for 14 frames with a
    slow head drift and sensor noise, as an image folder; two frames hold no face."""
    from mexkit.synth.face import make_subject

    face = make_subject(7, size=128).image
    folder = tmp_path_factory.mktemp("video") / "s1" / "long"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(N_FRAMES):
        M = np.float64([[1, 0, 0.8 * math.sin(t / 3)], [0, 1, 0.5 * t / N_FRAMES]])
        f = cv2.warpAffine(face, M, (128, 128), borderMode=cv2.BORDER_REFLECT)
        f = np.clip(f + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8)
        if t in NO_FACE:
            f[:] = 128
        cv2.imwrite(str(folder / f"img{t:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def _content(path: Path) -> dict:
    with open_store(path) as s:
        return {sid: (dict(s[sid].attrs), s[sid].arrays()) for sid in s.sample_ids}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for sid in a:
        (attrs_a, arrays_a), (attrs_b, arrays_b) = a[sid], b[sid]
        assert attrs_a.keys() == attrs_b.keys()
        for k in attrs_a:
            va, vb = attrs_a[k], attrs_b[k]
            assert va == vb or (isinstance(va, float) and math.isnan(va) and math.isnan(vb)), k
        assert arrays_a.keys() == arrays_b.keys()
        for k in arrays_a:
            assert arrays_a[k].dtype == arrays_b[k].dtype, k
            np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=f"{sid}/{k}")


class Counter:
    """Counts calls of a module's function (the work a run did)."""

    def __init__(self, monkeypatch, module, name):
        self.calls = 0
        real = getattr(module, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


def _stop_after(monkeypatch, n_puts: int) -> list:
    """Ctrl-C right after the ``n_puts``-th piece is staged."""
    put = StagedPieces.put
    staged: list = []

    def put_then_stop(self, start, stop, arrays):
        path = put(self, start, stop, arrays)
        staged.append((self.what, start, stop))
        if len(staged) == n_puts:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(StagedPieces, "put", put_then_stop)
    return staged


# mode: (run_crop options, the function doing a piece's work, pieces staged before the
# stop, calls of that function by the re-run, pieces the re-run stages)
MODES = {
    # 2 of 4 pieces of detections kept: the re-run detects the other 6 frames
    "every": ({"mode": "every"}, (landmarks, "_dlib_detect"), 2, N_FRAMES - 2 * PIECE, 2),
    # the face track and 2 of 4 pieces of crops kept: no detection, 2 pieces cropped
    "first": ({"mode": "first"}, (align, "apply_transform"), 3, 2, 2),
    # the box is found again (one detection); 2 of 4 pieces of crops kept
    "box-detector": ({"box": "detector"}, (boxcrop, "box_crop"), 2, 2, 2),
    "detector-none": ({"detector": "none"}, (align, "precropped"), 2, 1 + 2, 2),
}


def _interrupted_then_resumed(tmp_path, monkeypatch, video, options, stops_after):
    specs = crop.clips_from_paths([video], fps=25.0)
    out = tmp_path / "long.crop.h5"
    with monkeypatch.context() as m:
        staged = _stop_after(m, stops_after)
        with pytest.raises(KeyboardInterrupt):
            crop.run_crop(specs, out, progress=False, **options)
    assert len(staged) == stops_after
    assert not out.exists()
    on_disk = list((tmp_path / "long.crop.h5.staging").glob("*.h5"))
    assert len(on_disk) == stops_after, "the finished pieces were not kept"
    return specs, out


@pytest.mark.parametrize("mode", [
    "every", "first",
    pytest.param("box-detector", marks=pytest.mark.slow),
    pytest.param("detector-none", marks=pytest.mark.slow)])
def test_a_long_video_is_cropped_in_staged_pieces_and_resumed(tmp_path, monkeypatch,
                                                              long_video, mode):
    """Stopped after two pieces, the re-run does only the other pieces' work, and the
    store equals that of the whole clip cropped at once (the code path of short clips)."""
    options, (module, name), stops_after, work_left, staged_left = MODES[mode]
    specs = crop.clips_from_paths([long_video], fps=25.0)
    whole = tmp_path / "whole.crop.h5"
    crop.run_crop(specs, whole, progress=False, **options)   # one unit: 14 <= 256 frames

    monkeypatch.setattr(crop, "_PIECE_FRAMES", PIECE)
    specs, out = _interrupted_then_resumed(tmp_path, monkeypatch, long_video, options,
                                           stops_after)
    work = Counter(monkeypatch, module, name)
    detections = Counter(monkeypatch, landmarks, "_dlib_detect")
    puts = Counter(monkeypatch, StagedPieces, "put")
    r = crop.run_crop(specs, out, progress=False, **options)
    assert r.computed == 1 and not r.failures
    assert work.calls == work_left
    assert puts.calls == staged_left
    if mode == "first":
        assert detections.calls == 0                  # the face track was kept
    _assert_same(_content(out), _content(whole))
    assert not (tmp_path / "long.crop.h5.staging").exists()   # the pieces went with it


def test_a_damaged_crop_piece_is_computed_again(tmp_path, monkeypatch, long_video, caplog):
    options = {"mode": "every"}
    specs = crop.clips_from_paths([long_video], fps=25.0)
    whole = tmp_path / "whole.crop.h5"
    crop.run_crop(specs, whole, progress=False, **options)
    monkeypatch.setattr(crop, "_PIECE_FRAMES", PIECE)
    specs, out = _interrupted_then_resumed(tmp_path, monkeypatch, long_video, options, 2)
    pieces = sorted((tmp_path / "long.crop.h5.staging").glob("*.h5"))
    with h5py.File(pieces[0], "r+") as fh:               # one landmark changed on disk
        g = fh["sample"]["landmarks"]
        g[0, 0, 0] = g[0, 0, 0] + 1.0
    detections = Counter(monkeypatch, landmarks, "_dlib_detect")
    with caplog.at_level("INFO", logger="mexkit"):
        crop.run_crop(specs, out, progress=False, **options)
    assert detections.calls == N_FRAMES - PIECE       # the damaged piece and the 2 not kept
    assert "not usable" in caplog.text and "1 of 4 pieces of 4 frames" in caplog.text
    _assert_same(_content(out), _content(whole))
