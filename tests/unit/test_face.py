"""Landmarks, alignment and crops on a real photograph with known head motion.

The photograph is scikit-image's astronaut (a frontal face of about 90 px).
The "video" applies known rotations (about the face) and translations to it
with cv2.warpAffine; the ground-truth landmarks of every frame are the
photograph's dlib landmarks mapped by the same affine.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

import cv2
import numpy as np
import pytest
from skimage import data

from mexkit.errors import NoFaceError, ParameterError
from mexkit.face import (
    align_clip,
    alignment_transform,
    apply_transform,
    detect_landmarks,
    detect_landmarks_batch,
    fan_weight_files,
    invert_transform,
    precropped,
    transform_points,
)
from mexkit.face import landmarks as landmarks_module

FACE_CENTRE = (222.0, 130.0)
# (rotation in degrees, counter-clockwise on screen; dx; dy in pixels) per frame
MOTION = [(0, 0, 0), (2, 3, -2), (-3, -5, 4), (5, 6, 6), (-5, -7, -3), (1, 0.5, 0.3)]


def known_affine(angle: float, dx: float, dy: float) -> np.ndarray:
    A = cv2.getRotationMatrix2D(FACE_CENTRE, angle, 1.0)
    A[:, 2] += (dx, dy)
    return A


def eye_line_degrees(landmarks: np.ndarray) -> float:
    left = landmarks[36:42].mean(axis=0)
    right = landmarks[42:48].mean(axis=0)
    return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def photo_landmarks(photo) -> np.ndarray:
    return detect_landmarks(photo, where="astronaut").landmarks.astype(np.float64)


@pytest.fixture(scope="module")
def moving_clip(photo, photo_landmarks):
    affines = np.stack([known_affine(*m) for m in MOTION])
    frames = np.stack([cv2.warpAffine(photo, A, photo.shape[1::-1], flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT) for A in affines])
    truth = transform_points(np.broadcast_to(photo_landmarks, (len(affines), 68, 2)), affines)
    return frames, truth


# --------------------------------------------------------------------------- landmarks

def test_dlib_landmarks_follow_known_head_motion(moving_clip):
    frames, truth = moving_clip
    batch = detect_landmarks_batch(frames, where="clip 'moving'")
    assert batch.found.all()
    assert batch.landmarks.dtype == np.float32 and batch.landmarks.shape == (len(frames), 68, 2)
    err = np.hypot(*np.moveaxis(batch.landmarks - truth, -1, 0))
    # dlib quantises to whole pixels; on a 90 px face it follows the motion
    # to well under a pixel on average (measured 0.6-0.8 px).
    assert err[1:].mean(axis=1).max() < 1.5
    assert err.max() < 4.0


def test_detection_box_encloses_the_inner_face(photo):
    det = detect_landmarks(photo)
    x0, y0, x1, y1 = det.box
    inner = det.landmarks[17:]          # eyebrows, eyes, nose, mouth
    inside = ((inner[:, 0] >= x0 - 2) & (inner[:, 0] <= x1 + 2)
              & (inner[:, 1] >= y0 - 2) & (inner[:, 1] <= y1 + 2))
    assert inside.mean() > 0.9
    assert det.score > 0.5              # dlib HOG scores a clear frontal face well above 0


def test_grey_input_gives_rgb_results(photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    assert np.array_equal(detect_landmarks(grey).landmarks, detect_landmarks(photo).landmarks)


def test_largest_of_several_faces_is_chosen_with_a_warning(photo, caplog):
    face = cv2.cvtColor(photo[40:220, 130:315], cv2.COLOR_RGB2GRAY)
    big = cv2.resize(face, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640), 120, dtype=np.uint8)
    canvas[20:20 + face.shape[0], 10:10 + face.shape[1]] = face
    canvas[100:100 + big.shape[0], 300:300 + big.shape[1]] = big
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        det = detect_landmarks(canvas, where="clip 'two faces', frame 0")
    assert det.box[0] > 300                          # the big face, on the right
    assert det.box[2] - det.box[0] > 1.3 * 90
    assert "2 faces found in clip 'two faces', frame 0" in caplog.text


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_face_names_the_clip_and_frame(kind, rng):
    if kind == "flat":
        frames = np.full((3, 240, 320), 128, dtype=np.uint8)
    else:
        frames = rng.integers(0, 256, size=(3, 240, 320), dtype=np.uint8)
    with pytest.raises(NoFaceError, match=r"clip 'empty', frame 0"):
        detect_landmarks(frames[0], upsample=0, where="clip 'empty', frame 0")
    with pytest.raises(NoFaceError, match=r"clip 'empty'.*frame 0"):
        align_clip(frames, where="clip 'empty'")
    with pytest.raises(NoFaceError, match=r"clip 'empty' at frame\(s\) 0-2 of 3"):
        detect_landmarks_batch(frames, upsample=0, where="clip 'empty'")


def test_batch_marks_frames_without_a_face(moving_clip):
    frames = moving_clip[0][:4].copy()
    frames[1] = 128
    frames[3] = 128
    with pytest.raises(NoFaceError, match=r"frame\(s\) 1, 3 of 4"):
        detect_landmarks_batch(frames, where="clip 'holes'")
    batch = detect_landmarks_batch(frames, allow_missing=True)
    assert batch.found.tolist() == [True, False, True, False]
    assert np.isnan(batch.landmarks[[1, 3]]).all() and np.isnan(batch.scores[[1, 3]]).all()
    assert np.isfinite(batch.landmarks[[0, 2]]).all()


def test_bad_inputs_are_parameter_errors(photo):
    with pytest.raises(ParameterError, match="'detector'.*'dlib', 'fan'.*'mtcnn'"):
        detect_landmarks(photo, detector="mtcnn")
    with pytest.raises(ParameterError, match="dtype.*uint8.*float64"):
        detect_landmarks(photo / 255.0)
    with pytest.raises(ParameterError, match="'mode'"):
        align_clip(photo[None], mode="middle")


# --------------------------------------------------------------------------- FAN backend

def test_fan_without_weights_fails_at_once(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    import torch  # noqa: F401  (imported here so that its import time is not counted)

    folder = tmp_path / "hub" / "checkpoints"
    assert {p.parent for p in fan_weight_files().values()} == {folder}
    start = time.perf_counter()
    with pytest.raises(ParameterError) as info:
        detect_landmarks(photo, detector="fan", where="clip 'x', frame 0")
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    for name in ("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth", str(folder),
                 "--detector dlib"):
        assert name in message
    with pytest.raises(ParameterError, match="--detector dlib"):
        align_clip(photo[None], detector="fan", mode="every")
    assert list(tmp_path.rglob("*")) == []          # nothing downloaded, nothing created


def _fake_fan(monkeypatch):
    """Stand-ins for mexkit.face.fan's detector and landmarks: a small and a large face in
    non-black frames, none in black ones; landmarks on the box's diagonal."""
    import mexkit.face.fan as fan

    seen = {"batches": [], "images": []}

    def detect_faces(net, images, *, device="cpu"):
        seen["batches"].append(images.shape)
        two = np.array([[10, 10, 50, 50, 0.99], [100, 80, 220, 200, 0.90]])
        return [two if image.max() > 0 else np.zeros((0, 5)) for image in images]

    def fan_landmarks(net, image, boxes, *, device="cpu"):
        seen["images"].append(image.shape)
        x0, y0, x1, y1 = boxes[0][:4]
        s = np.linspace(0.0, 1.0, 68)[:, None]
        return np.hstack([x0 + s * (x1 - x0), y0 + s * (y1 - y0)])[None].astype(np.float32)

    monkeypatch.setattr(fan, "detect_faces", detect_faces)
    monkeypatch.setattr(fan, "fan_landmarks", fan_landmarks)
    monkeypatch.setattr(landmarks_module, "_fan_model", lambda device: ("s3fd", "fan"))
    return seen


def test_fan_results_are_mapped_like_dlib(monkeypatch):
    seen = _fake_fan(monkeypatch)
    frames = np.full((3, 240, 320), 50, dtype=np.uint8)
    frames[1] = 0
    batch = detect_landmarks_batch(frames, detector="fan", allow_missing=True)
    assert seen["batches"] == [(3, 240, 320, 3)]   # one RGB batch
    assert seen["images"] == [(240, 320, 3), (240, 320, 3)]
    assert batch.found.tolist() == [True, False, True]
    np.testing.assert_allclose(batch.boxes[0], [100, 80, 220, 200])   # the larger face
    np.testing.assert_allclose(batch.scores[[0, 2]], 0.90, rtol=1e-6)
    np.testing.assert_allclose(batch.landmarks[0, [0, -1]], [[100, 80], [220, 200]])
    with pytest.raises(NoFaceError, match="clip 'f', frame 1"):
        detect_landmarks(frames[1], detector="fan", where="clip 'f', frame 1")


def test_fan_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    """The published files' names and format (plain state dicts) are what mexkit loads,
    with no face-alignment package; a damaged file is named."""
    import torch

    from mexkit.face.fan import FAN, S3FD

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(landmarks_module, "_fan_cache", {})
    files = fan_weight_files()
    files["s3fd"].parent.mkdir(parents=True)
    torch.manual_seed(3)
    s3fd, fan = S3FD(), FAN(4)
    torch.save(s3fd.state_dict(), files["s3fd"])
    torch.save(fan.state_dict(), files["2DFAN-4"])
    loaded_s3fd, loaded_fan = landmarks_module._fan_model("cpu")
    assert not loaded_fan.training and not loaded_s3fd.training
    assert torch.equal(loaded_fan.l3.weight, fan.l3.weight)
    assert torch.equal(loaded_s3fd.conv3_3_norm.weight, s3fd.conv3_3_norm.weight)
    assert landmarks_module._fan_model("cpu")[1] is loaded_fan        # loaded once
    monkeypatch.setattr(landmarks_module, "_fan_cache", {})
    files["2DFAN-4"].write_bytes(b"not a state dict")
    with pytest.raises(ParameterError, match="2DFAN4-11f355bf06.pth.tar"):
        landmarks_module._fan_model("cpu")


# --------------------------------------------------------------------------- alignment

def test_alignment_makes_the_eye_line_horizontal(moving_clip):
    frames, truth = moving_clip
    before = [abs(eye_line_degrees(t)) for t in truth]
    assert max(before) > 4.5                        # the clip does tilt the head
    for frame, gt in zip(frames, truth, strict=True):
        M = alignment_transform(detect_landmarks(frame).landmarks, size=128)
        in_crop = transform_points(gt, M)
        assert abs(eye_line_degrees(in_crop)) < 1.0
        # the square is centred on the landmarks and they fit inside it
        assert in_crop.min() > 0 and in_crop.max() < 127


def test_round_trip_between_frame_and_crop(photo_landmarks):
    for size, margin in [(128, 0.125), (112, 0.3), (224, 0.0)]:
        M = alignment_transform(photo_landmarks, size=size, margin=margin)
        back = transform_points(transform_points(photo_landmarks, M), invert_transform(M))
        assert np.abs(back - photo_landmarks).max() < 0.01
        # the crop's side is (1 + 2 margin) times the landmarks' longer side
        crop = transform_points(photo_landmarks, M)
        extent = (crop.max(axis=0) - crop.min(axis=0)).max()
        assert extent == pytest.approx(size / (1 + 2 * margin), rel=1e-6)


@pytest.mark.parametrize("scale, angle", [(0.45, 10.0), (2.0, -4.0)])
def test_apply_transform_samples_the_frame_at_the_inverse_map(scale, angle):
    # On a linear ramp, bilinear sampling and area averaging are both exact,
    # so crop[q] must equal ramp(M^-1 q) up to uint8 rounding.
    h, w = 480, 640
    y, x = np.mgrid[0:h, 0:w]
    ramp = 0.15 * x + 0.3 * y + 10.0
    frames = np.stack([np.rint(ramp), np.rint(ramp + 5)]).astype(np.uint8)
    M = cv2.getRotationMatrix2D((320.0, 240.0), angle, scale)
    M[:, 2] -= (320.0 - 63.5, 240.0 - 63.5)        # frame centre -> crop centre
    crops = apply_transform(frames, M, size=128)
    q = np.stack(np.meshgrid(np.arange(128.0), np.arange(128.0)), axis=-1).reshape(-1, 2)
    p = transform_points(q, invert_transform(M))
    expected = (0.15 * p[:, 0] + 0.3 * p[:, 1] + 10.0).reshape(128, 128)
    assert np.abs(crops[0] - expected).max() < 1.0
    assert np.abs(crops[1].astype(float) - crops[0] - 5).max() <= 1


def test_first_mode_keeps_one_crop_and_refit_follows_the_face(moving_clip, photo_landmarks):
    frames, truth = moving_clip
    clip = align_clip(frames, mode="first", where="clip 'moving'")
    assert clip.frames.shape == (len(frames), 128, 128) and clip.frames.dtype == np.uint8
    assert (clip.transforms == clip.transforms[0]).all()
    assert (clip.landmarks == clip.landmarks[0]).all() and not clip.interpolated.any()
    back = transform_points(clip.landmarks.astype(np.float64), invert_transform(clip.transforms))
    assert np.abs(back - photo_landmarks).max() < 0.01          # frame 0 is the photo

    refit = align_clip(frames, mode="first", refit=True)
    np.testing.assert_array_equal(refit.frames, clip.frames)
    truth_in_crop = transform_points(truth, refit.transforms)
    err = np.hypot(*np.moveaxis(refit.landmarks - truth_in_crop, -1, 0)).mean(axis=1)
    moved = np.hypot(*np.moveaxis(truth_in_crop - truth_in_crop[0], -1, 0)).mean(axis=1)
    assert moved.max() > 5                          # the head really moves in the crops
    assert err.max() < 1.5                          # and the refitted landmarks follow it


def test_every_mode_removes_head_motion(moving_clip):
    frames, truth = moving_clip
    clip = align_clip(frames, mode="every", smooth=0, grey=False, size=112)
    assert clip.frames.shape == (len(frames), 112, 112, 3)
    truth_in_crop = transform_points(truth, clip.transforms)
    spread = np.hypot(*np.moveaxis(truth_in_crop - truth_in_crop.mean(axis=0), -1, 0))
    assert spread.mean() < 1.0                      # vs up to ~10 px before alignment
    for gt in truth_in_crop:
        assert abs(eye_line_degrees(gt)) < 1.0
    assert np.isfinite(clip.scores).all() and not clip.interpolated.any()


def test_every_mode_interpolates_short_gaps_and_rejects_long_ones(moving_clip):
    frames = moving_clip[0].copy()
    frames[2:4] = 128                               # two frames without a face
    clip = align_clip(frames, mode="every", smooth=0, max_gap=2, where="clip 'gap'")
    assert clip.interpolated.tolist() == [False, False, True, True, False, False]
    assert np.isnan(clip.scores[2:4]).all() and np.isfinite(clip.scores[[0, 1, 4, 5]]).all()
    in_frame = transform_points(clip.landmarks.astype(np.float64),
                                invert_transform(clip.transforms))
    np.testing.assert_allclose(in_frame[2], (2 * in_frame[1] + in_frame[4]) / 3, atol=1e-3)
    np.testing.assert_allclose(in_frame[3], (in_frame[1] + 2 * in_frame[4]) / 3, atol=1e-3)

    frames[1:5] = 128
    with pytest.raises(NoFaceError, match=r"clip 'gap' at frame\(s\) 1-4.*max_gap=3"):
        align_clip(frames, mode="every", max_gap=3, where="clip 'gap'")


def test_every_mode_smoothing_reduces_crop_jitter(photo):
    # The head shakes by 3 px from frame to frame: a per-frame crop follows the
    # shake, the smoothed crop (Gaussian of 2 frames) mostly does not.
    shifts = np.array([0, 3, 0, 3, 0, 3, 0, 3], dtype=float)
    frames = np.stack([cv2.warpAffine(photo, np.float64([[1, 0, dx], [0, 1, 0]]),
                                      photo.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
                       for dx in shifts])
    raw = align_clip(frames, mode="every", smooth=0)
    smooth = align_clip(frames, mode="every", smooth=2.0)
    centre = np.full((len(shifts), 1, 2), 63.5)     # crop centre, in frame pixels:
    x_raw = transform_points(centre, invert_transform(raw.transforms))
    x_smooth = transform_points(centre, invert_transform(smooth.transforms))
    step_raw = np.abs(np.diff(x_raw[:, 0, 0]))
    step_smooth = np.abs(np.diff(x_smooth[:, 0, 0]))
    assert step_raw.min() > 2.0                     # raw crops follow the 3 px shake
    assert step_smooth.max() < 0.25 * step_raw.min()


# --------------------------------------------------------------------------- pre-cropped

def test_precropped_keeps_frames_and_estimates_landmarks(photo, photo_landmarks):
    x0, y0 = 170, 60
    crop = cv2.cvtColor(photo[y0:185, x0:282], cv2.COLOR_RGB2GRAY)     # 125 x 112
    frames = np.repeat(crop[None], 3, axis=0)
    clip = precropped(frames, where="clip 'cropped'")
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_array_equal(clip.transforms[0], [[1, 0, 0], [0, 1, 0]])
    truth = photo_landmarks - (x0, y0)
    assert clip.has_landmarks
    assert np.hypot(*(clip.landmarks[0] - truth).T).mean() < 1.5

    small = precropped(frames, size=64)
    assert small.frames.shape == (3, 64, 64)
    expected = transform_points(truth, small.transforms[0])
    assert np.hypot(*(small.landmarks[2] - expected).T).mean() < 1.0


def test_precropped_without_a_face_has_nan_landmarks(caplog):
    frames = np.full((2, 100, 80, 3), 90, dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        clip = precropped(frames, grey=False, where="clip 'blank'")
    assert clip.frames.shape == (2, 100, 80, 3)
    assert not clip.has_landmarks and np.isnan(clip.scores).all()
    assert "clip 'blank'" in caplog.text


# --------------------------------------------------------------------------- dlib's models
@pytest.fixture
def dlib_loads(monkeypatch):
    """dlib's two model constructors replaced by stand-ins that record each load as
    (model, thread name), with an empty model cache; the list of loads."""
    dlib = pytest.importorskip("dlib")
    loaded: list[tuple[str, str]] = []

    class Shape:
        def parts(self):
            return [type("P", (), {"x": i, "y": 2 * i})() for i in range(68)]

    def record(name, model):
        loaded.append((name, threading.current_thread().name))
        return model

    monkeypatch.setattr(landmarks_module, "_dlib_cache", {})
    monkeypatch.setattr(dlib, "shape_predictor",
                        lambda path: record("predictor", lambda img, rect: Shape()))
    monkeypatch.setattr(dlib, "get_frontal_face_detector",
                        lambda: record("detector", object()))
    return loaded


def test_landmarks_in_a_given_box_do_not_load_dlibs_detector(dlib_loads):
    """fit_landmarks (MEAN's regions of a crop) needs dlib's shape predictor only; loading
    the detector too cost 0.3 s of CPU in every `flow --features mean` run."""
    grey = np.zeros((64, 64), np.uint8)
    points = landmarks_module.fit_landmarks(grey, np.array([4, 4, 60, 60]))
    assert points.shape == (68, 2) and points[5].tolist() == [5, 10]
    landmarks_module.fit_landmarks(grey, np.array([4, 4, 60, 60]))
    assert [name for name, _ in dlib_loads] == ["predictor"]  # once, and no detector


def test_a_crop_waiting_for_its_sheet_loads_dlib_meanwhile(dlib_loads):
    """`mexkit synth ... | mexkit crop --annotations -` with one job: dlib's two models
    (1.2 s of CPU) load in a thread while the crop waits for the sheet's path, and the
    detection then finds them loaded; with workers, or another detector, nothing is."""
    from mexkit.pipeline.crop import load_detector_ahead

    assert load_detector_ahead("dlib", 2) is None and load_detector_ahead("fan", 1) is None
    assert load_detector_ahead("none", 1) is None and dlib_loads == []
    assert load_detector_ahead("fan", 2, "threading") is None and dlib_loads == []
    thread = load_detector_ahead("dlib", 1)
    thread.join(10)
    assert sorted(dlib_loads) == [("detector", thread.name), ("predictor", thread.name)]
    assert thread.name != threading.current_thread().name
    landmarks_module._dlib_model("detector")          # used later: not loaded again
    assert len(dlib_loads) == 2


def test_threads_load_dlib_ahead_too(dlib_loads):
    """With --backend threading the detections run in this process: loaded ahead."""
    from mexkit.pipeline.crop import load_detector_ahead

    thread = load_detector_ahead("dlib", 2, "threading")
    thread.join(10)
    assert sorted(name for name, _ in dlib_loads) == ["detector", "predictor"]


def test_dlibs_detector_runs_one_call_at_a_time(monkeypatch):
    """dlib's detector keeps its feature pyramid between calls: threads running it at
    once changed each other's scores. Its calls through dlib_detector_run never overlap
    (a stand-in detector counts the calls inside it), and each returns its own result."""
    inside, most, lock = [0], [0], threading.Lock()

    class Detector:
        def run(self, image, upsample, threshold):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.01)  # long enough for another thread to come in
            with lock:
                inside[0] -= 1
            return [int(image[0, 0])], [float(upsample)], [0]

    monkeypatch.setattr(landmarks_module, "_dlib_cache", {"detector": Detector()})
    results = {}

    def call(i):
        results[i] = landmarks_module.dlib_detector_run(np.full((4, 4), i, np.uint8), i % 2)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] == 1
    assert results == {i: ([i], [float(i % 2)]) for i in range(8)}
