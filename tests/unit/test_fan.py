"""mexkit's FAN and S3FD (mexkit.face.fan): hand-checked steps always; against
face-alignment's own code on the same (random) weights when it is at hand
(``MEXKIT_FAN_REPO``: a checkout of face-alignment, or the package installed)."""
from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch

from mexkit.face.fan import (
    FAN,
    MIRROR_68,
    S3FD,
    crop_face,
    detect_faces,
    fan_landmarks,
    heatmap_peaks,
    non_maximum_suppression,
    s3fd_candidates,
)

# -- steps checked by hand ------------------------------------------------------------


def test_mirror_pairs_are_the_ibug68_symmetry():
    assert sorted(MIRROR_68.tolist()) == list(range(68))
    assert np.array_equal(MIRROR_68[MIRROR_68], np.arange(68))      # an involution
    pairs = {0: 16, 8: 8, 17: 26, 21: 22, 27: 27, 30: 30, 31: 35, 33: 33, 36: 45, 39: 42,
             37: 44, 41: 46, 48: 54, 51: 51, 57: 57, 60: 64, 62: 62, 66: 66, 65: 67}
    for a, b in pairs.items():
        assert MIRROR_68[a] == b and MIRROR_68[b] == a


def test_heatmap_peak_moves_a_quarter_pixel_towards_the_larger_neighbour():
    hm = np.zeros((1, 2, 64, 64), np.float32)
    hm[0, 0, 20, 10] = 1.0
    hm[0, 0, 20, 11] = 0.5         # right neighbour larger than the left: x + 0.25
    hm[0, 0, 19, 10] = 0.3         # upper neighbour larger than the lower: y - 0.25
    hm[0, 1, 0, 63] = 1.0          # on the border: no shift
    hm[0, 1, 1, 62] = 0.9
    pts = heatmap_peaks(hm)
    assert pts[0, 0].tolist() == [10 + 0.25 + 0.5, 20 - 0.25 + 0.5]
    assert pts[0, 1].tolist() == [63 + 0.5, 0 + 0.5]


def test_non_maximum_suppression_by_hand():
    boxes = np.array([[0, 0, 9, 9, 0.9],       # area 100
                      [1, 0, 10, 9, 0.8],      # overlaps the first by 90/110 > 0.3: dropped
                      [5, 5, 14, 14, 0.7],     # overlaps the first by 25/175 <= 0.3: kept
                      [40, 40, 49, 49, 0.95]], np.float64)
    assert non_maximum_suppression(boxes).tolist() == [3, 0, 2]
    assert non_maximum_suppression(np.zeros((0, 5))).tolist() == []


def test_s3fd_decoding_of_one_cell():
    """A face logit at cell (y=2, x=3) of the stride-8 level with zero offsets gives that
    cell's anchor: centre (4 + 3*8, 4 + 2*8), side 32."""
    outs = []
    for level, size in enumerate((16, 8, 4, 2, 1, 1)):
        cls = torch.zeros(1, 2, size, size)
        cls[:, 0] = 10.0                           # background everywhere
        if level == 1:
            cls[0, :, 2, 3] = torch.tensor([0.0, 3.0])
        outs += [cls, torch.zeros(1, 4, size, size)]
    (found,) = s3fd_candidates(outs)
    assert found.shape == (1, 5)
    assert found[0, :4].tolist() == [28 - 16, 20 - 16, 28 + 16, 20 + 16]
    assert found[0, 4] == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-6)


def test_crop_of_a_box_centred_in_the_image():
    """Box (100, 120)-(200, 220): centre (150, 170 - 12) and scale 200/195; the crop's
    middle pixel is the image's pixel at the centre."""
    img = np.zeros((400, 300, 3), np.uint8)
    img[:, :, 0] = np.arange(300)[None, :] % 256           # red = x
    img[:, :, 1] = np.arange(400)[:, None] % 256           # green = y
    crop, centre, scale = crop_face(img, (100, 120, 200, 220))
    assert crop.shape == (256, 256, 3)
    assert centre.tolist() == pytest.approx([150, 158])
    assert scale == pytest.approx(200 / 195)
    # crop side 200 * 200 / 195 = 205.1 px: red grows ~0.8 per crop pixel around x = 150
    assert abs(int(crop[128, 128, 0]) - 150) <= 1 and abs(int(crop[128, 128, 1]) - 158) <= 1
    # a box reaching past the image: zeros outside
    crop, _, _ = crop_face(img, (-50, -50, 50, 50))
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[200, 200, 0] > 0


def test_shapes_and_eval_mode():
    torch.manual_seed(0)
    fan = FAN(stacks=1).eval()
    with torch.no_grad():                     # heatmaps at a quarter of the input side
        assert fan(torch.rand(2, 3, 64, 64)).shape == (2, 68, 16, 16)
        outs = S3FD().eval()(torch.rand(1, 3, 128, 128))
    # strides 4, 8, 16 from the VGG taps; fc6 (3 x 3, padding 3) widens the 4 x 4 map of
    # pool5 by 4; conv6_2 and conv7_2 halve it
    assert [tuple(o.shape[1:]) for o in outs[::2]] == [(2, 32, 32), (2, 16, 16), (2, 8, 8),
                                                       (2, 8, 8), (2, 4, 4), (2, 2, 2)]


# -- face-alignment's own code on the same weights ------------------------------------

def _face_alignment():
    repo = os.environ.get("MEXKIT_FAN_REPO")
    if repo:
        if not os.path.isdir(os.path.join(repo, "face_alignment")):
            pytest.skip(f"MEXKIT_FAN_REPO={repo} holds no face_alignment package")
        sys.path.insert(0, repo)
    try:
        return importlib.import_module("face_alignment")
    except ImportError as exc:
        pytest.skip("face-alignment's code is not at hand (set MEXKIT_FAN_REPO to a checkout "
                    f"of face-alignment; its utils also need numba): {exc}")
    finally:
        if repo and sys.path and sys.path[0] == repo:
            sys.path.pop(0)


def _randomise_batchnorm(net, gen):
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.fixture(scope="module")
def reference():
    fa = _face_alignment()
    from face_alignment.detection.sfd.net_s3fd import s3fd as TheirS3FD
    from face_alignment.models import FAN as TheirFAN

    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    their_fan = TheirFAN(4)          # the published 2D-FAN-4
    _randomise_batchnorm(their_fan, gen)
    their_fan.eval()
    their_s3fd = TheirS3FD().eval()
    ours_fan = FAN(4).eval()
    ours_fan.load_state_dict(their_fan.state_dict(), strict=True)
    ours_s3fd = S3FD().eval()
    ours_s3fd.load_state_dict(their_s3fd.state_dict(), strict=True)
    return fa, their_fan, their_s3fd, ours_fan, ours_s3fd


@pytest.mark.slow
def test_networks_load_the_published_state_dicts_and_compute_the_same(reference):
    _, their_fan, their_s3fd, ours_fan, ours_s3fd = reference
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(ours_fan(x), their_fan(x)[-1], rtol=1e-5, atol=1e-5)
        y = torch.rand(1, 3, 128, 160, generator=torch.Generator().manual_seed(2)) * 255
        for a, b in zip(ours_s3fd(y), their_s3fd(y), strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_landmarks_as_face_alignment_gives_them(reference, rng):
    fa, their_fan, their_s3fd, ours_fan, _ = reference
    model = object.__new__(fa.FaceAlignment)          # no download: the weights given here
    model.face_alignment_net, model.flip_input, model.device = their_fan, True, "cpu"
    model.dtype, model.max_batch_size = torch.float32, 1
    model.landmarks_type = fa.LandmarksType.TWO_D
    from face_alignment.detection.sfd.sfd_detector import SFDDetector

    model.face_detector = object.__new__(SFDDetector)   # for its reference scale (195)
    img = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    # float64 boxes: face-alignment 1.5.0 fails on float32 ones under torch 2.13
    for box in ([60.4, 80.2, 190.7, 230.1], [-20.0, 150.5, 90.0, 320.25], [5, 5, 60, 70]):
        face = np.array([*box, 0.99], np.float64)
        (theirs,) = model.get_landmarks_from_image(img, detected_faces=[face])
        ours = fan_landmarks(ours_fan, img, face[None])[0]
        assert np.array_equal(ours, np.asarray(theirs, np.float32)), box


def test_detection_as_face_alignment_gives_it(reference, rng):
    _, _, their_s3fd, _, ours_s3fd = reference
    from face_alignment.detection.sfd.sfd_detector import SFDDetector

    det = object.__new__(SFDDetector)
    det.face_detector, det.filter_threshold, det.device = their_s3fd, 0.5, "cpu"
    det.verbose = False
    imgs = rng.integers(0, 256, (2, 128, 160, 3), dtype=np.uint8)
    theirs = det.detect_from_batch(torch.from_numpy(imgs).permute(0, 3, 1, 2).float())
    ours = detect_faces(ours_s3fd, imgs)
    assert sum(len(t) for t in theirs) > 0       # random weights still give some faces
    for t, o in zip(theirs, ours, strict=True):
        t = np.asarray(t, np.float64).reshape(-1, 5)
        assert t.shape == o.shape
        assert np.allclose(o, t, rtol=0, atol=1e-9)


def test_float32_boxes_give_whole_pixel_landmarks_inside_the_crop(rng):
    """The detector's float32 boxes go through (face-alignment 1.5.0 raises a TypeError on
    them under torch 2.13); landmarks are whole pixels inside the crop square."""
    torch.manual_seed(1)
    net = FAN(stacks=1).eval()
    img = rng.integers(0, 256, (200, 180, 3), dtype=np.uint8)
    box = np.array([[40.5, 50.25, 140.0, 160.75, 0.9]], np.float32)
    pts = fan_landmarks(net, img, box)
    assert pts.shape == (1, 68, 2) and pts.dtype == np.float32
    assert np.array_equal(pts, np.trunc(pts))
    _, centre, scale = crop_face(img, box[0])
    half = 200 * float(scale) / 2
    assert np.all(np.abs(pts[0] - centre) <= half + 1)
