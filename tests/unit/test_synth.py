"""Tests of the synthetic micro-expression generator (mexkit.synth)."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from mexkit.errors import DatasetError, ParameterError
from mexkit.pipeline.synth import (
    CASME2_COLUMNS,
    SAMM_LV_COLUMNS,
    write_casme2_like,
    write_samm_lv_like,
)
from mexkit.synth import (
    BumpField,
    action_unit_field,
    apex_profile,
    head_motion,
    make_clip,
    make_long_video,
    make_subject,
)
from mexkit.synth.face import base_face_record

STILL = {"head_translation": 0.0, "head_rotation": 0.0}


@pytest.fixture(scope="module")
def subject():
    return make_subject(7)


def _warp_back(frame_t: np.ndarray, flow_t: np.ndarray) -> np.ndarray:
    """frame_t(x + flow_t(x)) on the pixel grid, cubic-spline interpolation, float64."""
    h, w = frame_t.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = [gy + flow_t[1], gx + flow_t[0]]
    return np.stack([ndimage.map_coordinates(frame_t[..., c].astype(np.float64), coords,
                                             order=3, mode="nearest") for c in range(3)], -1)


def _rms(a: np.ndarray, b: np.ndarray, border: int = 12) -> float:
    d = (a - b)[border:-border, border:-border]
    return float(np.sqrt(np.mean(d * d)))


# --- base face and subjects -------------------------------------------------------------


def test_base_face_record_matches_bundled_image():
    import hashlib

    from skimage import data

    rec = base_face_record()
    img = data.astronaut()
    assert rec["image_sha256"] == hashlib.sha256(img.tobytes()).hexdigest()
    lm = np.asarray(rec["landmarks"])
    assert lm.shape == (68, 2)
    x0, y0, x1, y1 = rec["detector_rect_ltrb"]
    # the jaw line and brows lie around the detector box, the eyes inside it
    assert (lm[36:48, 0] > x0).all() and (lm[36:48, 0] < x1).all()
    assert (lm[36:48, 1] > y0).all() and (lm[36:48, 1] < y1).all()
    assert lm[8, 1] > lm[33, 1] > lm[27, 1] > lm[19, 1]  # chin below nose below brows


def test_the_astronaut_read_by_opencv_is_scikit_images_pixel_for_pixel():
    from skimage.data import astronaut

    from mexkit.synth.face import _astronaut_png

    np.testing.assert_array_equal(_astronaut_png(), astronaut())


def test_subject_is_deterministic_and_seeds_differ():
    a, b, c = make_subject(3), make_subject(3), make_subject(4)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.landmarks, b.landmarks)
    assert a.image.shape == (240, 240, 3) and a.image.dtype == np.uint8
    assert a.landmarks.shape == (68, 2) and a.landmarks.dtype == np.float32
    assert np.abs(a.image.astype(int) - c.image.astype(int)).mean() > 5
    assert np.hypot(*(a.landmarks - c.landmarks).T).mean() > 1.0


def test_undistorted_subject_is_a_similarity_of_the_base_face():
    base = np.asarray(base_face_record()["landmarks"])
    s = make_subject(11, variation=0.0, face_width=140.0)
    lm = s.landmarks.astype(np.float64)
    scale = 140.0 / np.hypot(*(base[16] - base[0]))
    shift = lm.mean(0) - scale * base.mean(0)
    np.testing.assert_allclose(lm, scale * base + shift, atol=1e-3)
    assert np.hypot(*(lm[16] - lm[0])) == pytest.approx(140.0, abs=1e-3)


def test_subjects_differ_in_shape_not_only_pose():
    base = np.asarray(base_face_record()["landmarks"])

    def procrustes_residual(lm: np.ndarray) -> float:
        a = base - base.mean(0)
        b = lm - lm.mean(0)
        u, sv, vt = np.linalg.svd(a.T @ b)
        r = u @ vt
        s = sv.sum() / (a * a).sum()
        return float(np.sqrt(((s * a @ r - b) ** 2).sum(1)).mean())

    residuals = [procrustes_residual(make_subject(k).landmarks.astype(np.float64))
                 for k in range(4)]
    widths = [np.hypot(*(make_subject(k).landmarks[16] - make_subject(k).landmarks[0]))
              for k in range(4)]
    assert all(0.3 < r < 4.0 for r in residuals), residuals
    assert all(125 < w < 155 for w in widths), widths
    assert np.ptp(widths) > 2.0


# --- action-unit fields ------------------------------------------------------------------


def test_wendland_bumps_have_compact_support_and_exact_peak(subject):
    f = BumpField(centres=[[50.0, 40.0]], vectors=[[0.0, -2.0]], radii=[[10.0, 5.0]],
                  angle=0.3)
    np.testing.assert_allclose(f([[50.0, 40.0]]), [[0.0, -2.0]])
    x0, y0, x1, y1 = f.bbox()
    ring = np.array([[x0 - 0.5, 40.0], [x1 + 0.5, 40.0], [50.0, y0 - 0.5], [50.0, y1 + 0.5]])
    assert np.all(f(ring) == 0)
    grid = f.raster(30.0, 20.0, 41, 41, 1.0)
    pts = np.stack(np.meshgrid(30.0 + np.arange(41), 20.0 + np.arange(41)), -1).reshape(-1, 2)
    np.testing.assert_allclose(grid.reshape(-1, 2), f(pts), atol=1e-12)

    field = action_unit_field(subject.landmarks, (12,), intensity=1.25)
    h, w = subject.shape
    mag = np.hypot(*field.raster(0, 0, w, h).transpose(2, 0, 1))
    assert mag.max() == pytest.approx(1.25, rel=1e-9)


def test_apex_profile_shape():
    p = apex_profile(30, 4, 12, 25)
    assert p[:5].tolist() == [0.0] * 5 and p[25:].tolist() == [0.0] * 5
    assert p[12] == 1.0 and p.argmax() == 12
    assert np.all(np.diff(p[4:13]) > 0) and np.all(np.diff(p[12:26]) < 0)
    held = apex_profile(30, 4, 10, 25, hold=5)
    assert np.all(held[10:16] == 1.0) and held[16] < 1.0
    with pytest.raises(ParameterError, match="onset"):
        apex_profile(30, 12, 12, 25)


# --- clips ---------------------------------------------------------------------------------


def test_clip_is_deterministic_and_has_documented_shapes(subject):
    a = make_clip(subject, label="surprise", fps=60, rng=5)
    b = make_clip(subject, label="surprise", fps=60, rng=5)
    c = make_clip(subject, label="surprise", fps=60, rng=6)
    for name in ("frames", "flow", "landmarks", "rigid", "activation"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.frames, c.frames)
    t = len(a.frames)
    assert a.frames.shape == (t, 240, 240, 3) and a.frames.dtype == np.uint8
    assert a.flow.shape == (t, 2, 240, 240) and a.flow.dtype == np.float32
    assert a.landmarks.shape == (t, 68, 2) and a.landmarks.dtype == np.float32
    # 0.2-0.5 s at 60 fps from onset to offset
    assert a.onset == 0 and a.offset == t - 1 and 12 <= a.offset <= 30
    assert a.onset < a.apex < a.offset
    assert np.all(a.flow[0] == 0) and np.array_equal(a.landmarks[0], subject.landmarks)


def test_flow_maps_frame_zero_onto_frame_t_noise_free(subject):
    clip = make_clip(subject, label="surprise", fps=60, intensity=2.0, noise_sigma=0.0,
                     head_translation=0.3, head_rotation=0.1, rng=1)
    f0 = clip.frames[0].astype(np.float64)
    ft = clip.frames[clip.apex]
    flow = clip.flow[clip.apex].astype(np.float64)
    good = _rms(_warp_back(ft, flow), f0)
    # two uint8 roundings alone leave about 0.41 grey levels RMS
    assert good < 0.55
    assert _rms(_warp_back(ft, 0.0 * flow), f0) > 3 * good
    assert _rms(_warp_back(ft, 0.7 * flow), f0) > 1.3 * good


def test_flow_residual_is_the_added_noise(subject):
    sigma = 3.0
    clip = make_clip(subject, label="positive", fps=60, intensity=1.5, noise_sigma=sigma, rng=2)
    t = clip.apex
    res = _rms(_warp_back(clip.frames[t], clip.flow[t].astype(np.float64)),
               clip.frames[0].astype(np.float64))
    # two independent noise fields (one interpolated) plus rounding
    assert np.sqrt(2) * sigma * 0.85 < res < np.sqrt(2) * sigma * 1.1


def test_inverse_warp_is_accurate_to_a_thousandth_of_a_pixel(subject):
    # Re-derive each frame's preimage map from the analytic field: P_t(P_t^-1(y)) = y.
    video = make_long_video(subject, fps=25, seconds=8, n_micro=1, n_macro=1, n_blinks=1,
                            rng=3)
    scene = video._scene
    for it in video.intervals:
        x, y = scene.preimage(it.apex)
        pts = np.stack([x.ravel(), y.ravel()], 1)
        a = video.activation[it.apex].astype(np.float64)
        moved = pts + sum(a[j] * ev.bump(pts) for j, ev in enumerate(scene.events))
        m = video.rigid[it.apex]
        back = moved @ m[:, :2].T + m[:, 2]
        err = np.hypot(back[:, 0] - scene.gx.ravel(), back[:, 1] - scene.gy.ravel())
        assert err.max() < 1e-3, (it.kind, err.max())


@pytest.mark.parametrize("label, aus", [("surprise", (1, 2)), ("positive", (12,)),
                                        ("negative", (4,)), ("negative", (9,))])
def test_expression_is_local_low_intensity_and_shaped_like_its_aus(subject, label, aus):
    lm = subject.landmarks
    peaks = []
    for seed in range(3):
        clip = make_clip(subject, label=label, aus=aus, fps=60, rng=seed, **STILL)
        assert clip.aus == aus
        mag = np.hypot(*clip.flow[clip.apex])
        peaks.append(float(mag.max()))
        assert mag.max() == pytest.approx(clip.intensity, rel=1e-5)
        assert np.mean(mag > 0) < 0.3  # local
    assert all(0.2 <= p <= 2.0 for p in peaks), peaks
    clip = make_clip(subject, label=label, aus=aus, fps=60, intensity=1.5, rng=0, **STILL)
    mag = np.hypot(*clip.flow[clip.apex])
    rows = np.arange(mag.shape[0])[:, None]
    d = clip.landmarks[clip.apex] - clip.landmarks[0]
    if label == "surprise":
        assert np.all(mag[(rows > lm[33, 1]).repeat(mag.shape[1], 1)] == 0)
        assert np.all(d[17:27, 1] < -0.3)  # brows up
        assert np.all(np.abs(d[48:68]) == 0)
    elif label == "positive":
        assert np.all(mag[(rows < lm[17:27, 1].mean()).repeat(mag.shape[1], 1)] == 0)
        assert d[48, 0] < 0 and d[54, 0] > 0  # corners outwards
        assert d[48, 1] < -0.5 and d[54, 1] < -0.5  # and up
        assert np.all(d[17:27] == 0)
    elif aus == (4,):
        assert np.all(mag[(rows > lm[33, 1]).repeat(mag.shape[1], 1)] == 0)
        assert d[21, 1] > 0.5 and d[22, 1] > 0.5  # inner brows down
        assert d[21, 0] > 0.2 and d[22, 0] < -0.2  # and together
    else:
        assert np.all(mag[(rows > lm[8, 1]).repeat(mag.shape[1], 1)] == 0)
        assert d[31:36, 1].max() < -0.3  # nostril wings up
        assert abs(d[8]).max() == 0


def test_displacement_follows_onset_apex_offset(subject):
    clip = make_clip(subject, label="negative", fps=100, n_frames=40, onset=5, apex=17,
                     offset=33, intensity=1.2, rng=4, **STILL)
    peak = np.hypot(clip.flow[:, 0], clip.flow[:, 1]).reshape(40, -1).max(1)
    assert np.all(peak[:6] == 0) and np.all(peak[33:] == 0)
    assert peak.argmax() == 17 and peak[17] == pytest.approx(1.2, rel=1e-5)
    np.testing.assert_allclose(peak, 1.2 * clip.activation, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(peak[5:18]) > 0) and np.all(np.diff(peak[17:34]) < 0)


def test_landmarks_move_with_the_flow_and_head_motion_is_rigid(subject):
    clip = make_clip(subject, label="positive", fps=100, intensity=1.8, noise_sigma=0,
                     head_translation=0.4, head_rotation=0.15, rng=8)
    lm0 = clip.landmarks[0].astype(np.float64)
    for t in (clip.apex, clip.offset):
        sampled = np.stack([ndimage.map_coordinates(clip.flow[t, c].astype(np.float64),
                                                    [lm0[:, 1], lm0[:, 0]], order=1)
                            for c in (0, 1)], 1)
        moved = clip.landmarks[t] - lm0
        assert np.abs(moved - sampled).max() < 0.02
    # far from the expression the flow is the head motion alone: x -> M_t x
    m = clip.rigid[clip.apex]
    np.testing.assert_allclose(m[:, :2] @ m[:, :2].T, np.eye(2), atol=1e-12)
    corner = np.array([3.0, 236.0])
    expect = m[:, :2] @ corner + m[:, 2] - corner
    np.testing.assert_allclose(clip.flow[clip.apex][:, 236, 3], expect, atol=1e-5)
    assert 0 < np.abs(expect).max() < 1.0


def test_head_motion_drift_amplitudes():
    mats = head_motion(200, fps=100.0, centre=(120.0, 110.0), translation=0.5, rotation=0.2,
                       rng=0)
    np.testing.assert_allclose(mats[0], [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    angles = np.degrees(np.arctan2(mats[:, 1, 0], mats[:, 0, 0]))
    assert 0.1 <= np.abs(angles).max() <= 0.2 + 1e-12
    centre = np.array([120.0, 110.0])
    shift = np.einsum("tij,j->ti", mats[:, :, :2], centre) + mats[:, :, 2] - centre
    assert 0.25 <= np.abs(shift).max() <= 0.5 + 1e-12
    assert np.abs(np.diff(shift, axis=0)).max() < 0.05  # smooth drift, no jumps


def test_invalid_arguments_raise_parameter_errors(subject):
    with pytest.raises(ParameterError, match="label"):
        make_clip(subject, label="happy")
    with pytest.raises(ParameterError, match="onset"):
        make_clip(subject, label="surprise", n_frames=20, onset=10, apex=8, offset=15)
    with pytest.raises(ParameterError, match="fold"):
        make_clip(subject, label="positive", n_frames=10, intensity=40.0)
    with pytest.raises(ParameterError, match="aus"):
        make_clip(subject, label="positive", aus=(99,), n_frames=10)
    with pytest.raises(ParameterError, match="landmarks"):
        action_unit_field(np.zeros((5, 2)), (12,), intensity=1.0)
    with pytest.raises(ParameterError, match="too short"):
        make_long_video(subject, fps=25, seconds=1.0, n_micro=3, n_macro=2)


# --- long videos ---------------------------------------------------------------------------


def test_long_video_events_blinks_and_rendering(subject):
    fps = 30.0
    video = make_long_video(subject, fps=fps, seconds=10, n_micro=2, n_macro=1, n_blinks=2,
                            rng=9)
    iv = video.intervals
    assert [i.kind for i in iv].count("micro") == 2
    assert [i.kind for i in iv].count("blink") == 2
    assert all(a.offset < b.onset for a, b in zip(iv, iv[1:], strict=False))
    assert video.activation.shape == (300, len(iv))
    assert video.fields.shape == (len(iv), 2, 240, 240)
    for k, it in enumerate(iv):
        assert video.activation[:, k].argmax() == it.apex
        assert video.activation[it.onset, k] == 0 and video.activation[it.offset, k] == 0
        secs = (it.offset - it.onset) / fps
        if it.kind == "micro":
            assert 0.2 - 1 / fps <= secs <= 0.5 + 1 / fps and 0.2 <= it.intensity <= 2.0
        elif it.kind == "macro":
            assert secs >= 0.5 - 1 / fps and it.intensity > 2.0
        else:
            lm = video.landmarks
            rigid = video.rigid[it.apex]
            still = (lm[0].astype(np.float64) @ rigid[:, :2].T + rigid[:, 2])
            lid = lm[it.apex] - still
            assert np.all(lid[[37, 38, 43, 44], 1] > 1.5)  # upper lids down
            assert np.all(lid[[40, 41, 46, 47], 1] < 0.5 * lid[[37, 38, 43, 44], 1].min())
    t = iv[0].apex
    frames = video.frames(t - 1, t + 1)
    flow = video.flow(t, t + 1)
    again = make_long_video(subject, fps=fps, seconds=10, n_micro=2, n_macro=1, n_blinks=2,
                            rng=9)
    assert np.array_equal(frames, again.frames(t - 1, t + 1))
    assert frames.shape == (2, 240, 240, 3) and flow.shape == (1, 2, 240, 240)
    f0 = video.frames(0, 1)[0].astype(np.float64)
    res = _rms(_warp_back(frames[1], flow[0].astype(np.float64)), f0)
    assert res < np.sqrt(2) * video.noise_sigma * 1.2 + 0.3


# --- dlib on generated frames ---------------------------------------------------------------


def test_dlib_finds_the_face_in_generated_frames():
    import dlib

    detector = dlib.get_frontal_face_detector()
    for seed in (0, 1, 2):
        s = make_subject(seed)
        clip = make_clip(s, label="surprise", fps=60, rng=seed)
        for t in (0, clip.apex):
            rects = detector(clip.frames[t], 0)
            assert len(rects) == 1
            r = rects[0]
            lm = clip.landmarks[t]
            assert r.left() < lm[36, 0] < r.right() and r.top() < lm[30, 1] < r.bottom()


def test_dlib_landmarks_agree_with_generated_landmarks():
    import dlib

    root = importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]
    predictor = dlib.shape_predictor(
        str(Path(root) / "models" / "shape_predictor_68_face_landmarks.dat"))
    detector = dlib.get_frontal_face_detector()
    errors = []
    for seed in (3, 4):
        s = make_subject(seed)
        clip = make_clip(s, label="positive", fps=60, intensity=2.0, rng=seed)
        t = clip.apex
        shape = predictor(clip.frames[t], detector(clip.frames[t], 0)[0])
        found = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        errors.append(np.hypot(*(found - clip.landmarks[t]).T))
    err = np.concatenate(errors)
    assert err.mean() < 1.5 and err.max() < 5.0


# --- writers -----------------------------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # suite time: test_datasets reads what the writer wrote
def test_write_casme2_like_layout_sheet_and_truth(tmp_path):
    import openpyxl

    kw = dict(n_subjects=2, clips_per_class=1, fps=50.0, seed=3)
    sheet = write_casme2_like(tmp_path / "a", **kw)
    root = sheet.parent
    assert sheet.name == "CASME2-coding.xlsx"
    wb = openpyxl.load_workbook(sheet, read_only=True)
    rows = list(wb.active.iter_rows(values_only=True))
    wb.close()
    assert rows[0] == CASME2_COLUMNS
    body = rows[1:]
    assert len(body) == 6 and {r[0] for r in body} == {1, 2}
    assert {r[6] for r in body} <= {"disgust", "happiness", "surprise"}
    samples = _read_csv(root / "samples.csv")
    assert list(samples[0]) == ["subject", "clip", "path", "fps", "onset", "apex", "offset",
                                "label", "dataset", "emotion", "aus"]
    assert len(samples) == 6
    by_clip = {(f"sub{r[0]:02d}", r[1]): r for r in body}
    for row in samples:
        subj, name, onset_n, apex_n, offset_n, aus, emotion = by_clip[(row["subject"],
                                                                       row["clip"])]
        folder = root / row["path"]
        assert folder == root / row["subject"] / row["clip"]
        numbers = sorted(int(p.stem[3:]) for p in folder.glob("img*.jpg"))
        assert numbers == list(range(onset_n, offset_n + 1)) and onset_n >= 1
        assert int(row["onset"]) == 0 and int(row["apex"]) == apex_n - onset_n
        assert int(row["offset"]) == offset_n - onset_n
        assert row["aus"] == aus and row["emotion"] == emotion and float(row["fps"]) == 50.0
        truth = _load(root / "truth" / row["subject"] / f"{row['clip']}.npz")
        n = len(numbers)
        assert truth["flow"].shape == (n, 2, 240, 240) and truth["flow"].dtype == np.float32
        assert truth["landmarks"].shape == (n, 68, 2)
        assert truth["frame_numbers"].tolist() == numbers
        assert int(truth["apex"]) == int(row["apex"]) and str(truth["label"]) == row["label"]
        img = cv2.imread(str(folder / f"img{numbers[0]}.jpg"))
        assert img.shape == (240, 240, 3)
    # byte-identical on a second run, and with subjects written by 2 worker processes
    write_casme2_like(tmp_path / "b", **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    write_casme2_like(tmp_path / "c", **kw, jobs=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "c")
    with pytest.raises(DatasetError, match="already exists"):
        write_casme2_like(tmp_path / "a", **kw)


def test_write_casme2_like_png_frames_match_the_truth(tmp_path):
    sheet = write_casme2_like(tmp_path, n_subjects=1, clips_per_class=1, classes=("surprise",),
                              fps=50.0, seed=1, image_format="png", noise_sigma=0.0,
                              intensity=(1.8, 2.0))
    row = _read_csv(sheet.parent / "samples.csv")[0]
    truth = _load(tmp_path / "truth" / row["subject"] / f"{row['clip']}.npz")
    numbers = truth["frame_numbers"]
    apex = int(row["apex"])

    def read(n: int) -> np.ndarray:
        bgr = cv2.imread(str(tmp_path / row["path"] / f"img{n}.png"))
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    f0 = read(numbers[0]).astype(np.float64)
    good = _rms(_warp_back(read(numbers[apex]), truth["flow"][apex].astype(np.float64)), f0)
    shifted = _rms(_warp_back(read(numbers[apex]), truth["flow"][apex - 3].astype(np.float64)),
                   f0)
    assert good < 0.7 and good < 0.4 * shifted


def test_clips_without_dense_flow_have_the_same_frames_and_a_rebuildable_flow(tmp_path):
    """--no-dense-flow leaves the per-frame flow out of the truth files only: the frames
    are byte-identical, and the flow follows from the stored factors by the documented
    model, flow[t](x) = M_t (x + activation[t] D(x)) - x."""
    kw = dict(n_subjects=1, clips_per_class=1, classes=("negative",), fps=50.0, seed=2,
              image_format="png")
    write_casme2_like(tmp_path / "dense", **kw)
    write_casme2_like(tmp_path / "lean", **kw, dense_flow=False)
    frames = {p.relative_to(tmp_path / "dense"): p.read_bytes()
              for p in (tmp_path / "dense").glob("sub01/*/*.png")}
    assert frames and frames == {p.relative_to(tmp_path / "lean"): p.read_bytes()
                                 for p in (tmp_path / "lean").glob("sub01/*/*.png")}
    (name,) = [p.name for p in (tmp_path / "dense" / "truth" / "sub01").iterdir()]
    dense = _load(tmp_path / "dense" / "truth" / "sub01" / name)
    lean = _load(tmp_path / "lean" / "truth" / "sub01" / name)
    assert "flow" not in lean and set(dense) - set(lean) == {"flow"}
    gy, gx = np.mgrid[0:240, 0:240].astype(np.float64)
    for t in range(len(lean["activation"])):
        m = lean["rigid"][t]
        px = gx + lean["activation"][t] * lean["expression"][0]
        py = gy + lean["activation"][t] * lean["expression"][1]
        rebuilt = np.stack([m[0, 0] * px + m[0, 1] * py + m[0, 2] - gx,
                            m[1, 0] * px + m[1, 1] * py + m[1, 2] - gy])
        # both quantized to 2**-12 px (expression and flow): a few quanta apart at most
        np.testing.assert_allclose(rebuilt, dense["flow"][t], rtol=0, atol=4 * 2.0**-12)


@pytest.mark.slow  # suite time: test_datasets reads what the writer wrote
def test_write_samm_lv_like_layout_sheet_and_truth(tmp_path):
    import openpyxl

    sheet = write_samm_lv_like(tmp_path, n_subjects=1, videos_per_subject=2, fps=25.0,
                               seconds=6.0, n_micro=2, n_macro=1, n_blinks=1, seed=4,
                               dense_flow=True)
    assert sheet.name == "SAMM_LongVideos_V2_Release.xlsx"
    wb = openpyxl.load_workbook(sheet, read_only=True)
    rows = list(wb.active.iter_rows(values_only=True))
    wb.close()
    header_at = [i for i, r in enumerate(rows) if r and r[0] == "Subject"]
    assert header_at == [9]  # row 10, below a title block
    assert rows[0][0] and rows[9] == SAMM_LV_COLUMNS
    body = [r for r in rows[10:] if r[0] is not None]
    assert len(body) == 6  # 2 videos x (2 micro + 1 macro); blinks are not annotated
    assert {r[7] for r in body} == {"Micro - 1/2", "Macro"}
    intervals = _read_csv(tmp_path / "intervals.csv")
    assert list(intervals[0]) == ["subject", "video", "onset", "offset", "emotion", "type"]
    for r, iv in zip(body, intervals, strict=True):
        subj, fname, code, onset, apex, offset, duration = r[:7]
        assert subj == "006" and fname.startswith(iv["video"] + "_")
        assert duration == offset - onset + 1 and onset < apex < offset
        assert int(iv["onset"]) == onset - 1 and int(iv["offset"]) == offset - 1
        assert (tmp_path / iv["video"] / f"006_{onset:05d}.jpg").is_file()
        assert ("micro" if r[7].startswith("Micro") else "macro") == iv["type"]
    frames = sorted((tmp_path / "006_1").glob("*.jpg"))
    assert len(frames) == 150 and frames[0].name == "006_00001.jpg"
    truth = _load(tmp_path / "truth" / "006_1.npz")
    assert truth["flow"].shape == (150, 2, 240, 240)
    assert truth["landmarks"].shape == (150, 68, 2)
    assert list(truth["kinds"]).count("blink") == 1
    # the dense flow is rebuilt from its factors: M_t(x + sum_k a_tk D_k(x)) - x
    t = int(truth["apexes"][0])
    gy, gx = np.mgrid[0:240, 0:240].astype(np.float64)
    s = np.tensordot(truth["activation"][t].astype(np.float64), truth["fields"], axes=1)
    m = truth["rigid"][t]
    px, py = gx + s[0], gy + s[1]
    rebuilt = np.stack([m[0, 0] * px + m[0, 1] * py + m[0, 2] - gx,
                        m[1, 0] * px + m[1, 1] * py + m[1, 2] - gy])
    np.testing.assert_allclose(truth["flow"][t], rebuilt, atol=1e-3)
