"""What MEAN's recognition stage trains on in spot-then-recognize (issue 25, item 4).

The authors' prepare_training.py trains the recognition head on X2, the onset -> apex
flow input of each expression (feature_extraction_recognition: preProcess(img[onset],
img[apex])), one sample per expression, and validates on X1, the gap-k input at the
expression's onset (final_dataset_spotting[video][onset]); the paper (section 4.3)
takes k = apex - onset for recognition. Before, mexkit trained on every gap-k pair
inside each interval."""
from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.io.store import open_store
from mexkit.models.mean.authors_input import (
    authors_landmarks,
    authors_mean_input,
    opencv_tvl1_uint8,
)
from mexkit.pipeline.spotting import SpotVideo, train_spotter
from mexkit.spot.metrics import Interval


@pytest.fixture(scope="module")
def one_clip(synth_dataset, tmp_path_factory):
    """One synthetic clip and a one-row sheet (onset, apex, offset known)."""
    root = tmp_path_factory.mktemp("oneclip")
    src = sorted((synth_dataset / "sub01").iterdir())[0]
    shutil.copytree(src, root / "sub01" / src.name)
    n = len(list(src.iterdir()))
    onset, apex, offset = 2, 9, n - 3
    (root / "samples.csv").write_text(
        "subject,clip,path,fps,onset,apex,offset,label\n"
        f"sub01,{src.name},sub01/{src.name},100,{onset},{apex},{offset},surprise\n")
    return root, (onset, apex, offset)


def test_gap_store_holds_each_intervals_onset_apex_input(one_clip, tmp_path):
    root, (onset, apex, offset) = one_clip
    crop, flow = tmp_path / "c.crop.h5", tmp_path / "c.flow.h5"
    r = CliRunner().invoke(cli, ["-q", "crop", "--annotations", str(root / "samples.csv"),
                                 "--preset", "mean", "-o", str(crop)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["-q", "flow", str(crop), "--pairs", "gap", "-k", "8",
                                 "--features", "mean", "-o", str(flow)])
    assert r.exit_code == 0, r.output
    with open_store(crop) as c, open_store(flow) as f:
        frames = c[c.sample_ids[0]]["frames"]
        sample = f[f.sample_ids[0]]
        bounds, x2 = sample["interval_pairs"], sample["interval_mean_regions"]
        x = sample["mean_regions"]
        assert f.params["intervals"] == "onset-apex"
    assert bounds.tolist() == [[onset, apex, offset]]
    assert x.shape == (len(frames) - 8, 3, 42, 42) and x2.shape == (1, 3, 42, 42)
    # the authors' X2: preProcess(F_onset, F_apex) with dlib on the clip's first frame
    expected = authors_mean_input(opencv_tvl1_uint8(frames[onset], frames[apex]),
                                  authors_landmarks(frames[0]))
    np.testing.assert_array_equal(x2[0], expected)
    repo = os.environ.get("MEXKIT_MEAN_REPO")
    if repo:  # and their own code, when their repository is here
        pytest.importorskip("pandas")
        import dlib

        from mexkit.face.landmarks import dlib_predictor_path

        sys.path.insert(0, repo)
        try:
            import feature_extraction as authors
        finally:
            sys.path.remove(repo)
        shape = dlib.shape_predictor(str(dlib_predictor_path()))(
            frames[0], dlib.rectangle(0, 0, 128, 128))
        theirs = authors.preProcess(frames[onset], frames[apex], shape)
        np.testing.assert_array_equal(x2[0].transpose(1, 2, 0), theirs.astype(np.float32))


class _Recorder:
    """A spotting hook that records what it is given."""

    def __init__(self):
        self.seen = {}

    def train(self, x, y, rx, ry, *, n_classes, settings, seed, checkpoint, monitor=None):
        self.seen = {"x": x, "y": y, "rx": rx, "ry": ry, "monitor": monitor}
        return {"spotter": None, "recognizer": None, "history": {}}


def _video(subject, n, intervals, rng):
    feats = rng.random((n, 3, 42, 42)).astype(np.float32)
    truth = [Interval(subject, "v", on, off, type="micro", emotion=emo) for on, off, emo
             in intervals]
    x2 = {(on, off): np.full((3, 42, 42), 100 + on, np.float32) for on, off, _ in intervals}
    return SpotVideo(f"{subject}/v", subject, "v", 30.0, n + 3, 3, feats, truth, x2)


def test_recognition_trains_on_onset_apex_and_watches_the_held_out_onsets(rng):
    train = [_video("s1", 60, [(10, 20, "happiness"), (40, 47, "surprise")], rng),
             _video("s2", 50, [(5, 15, "surprise"), (30, 36, "fear")], rng)]
    held = [_video("s3", 40, [(12, 22, "surprise"), (25, 30, "happiness")], rng)]
    hook = _Recorder()
    train_spotter(train, spotting=hook, kind="micro", kprime=4,
                  classes=["happiness", "surprise"], settings={"ratio": 8.0}, seed=0,
                  ckpt_dir=None, tag="t", held_out=held)
    rx, ry = hook.seen["rx"], hook.seen["ry"]
    # one sample per expression with an emotion of the classes ("fear" is not one),
    # its onset -> apex input; before: every gap pair inside the interval (11 + 8 + 11)
    assert [r.shape for r in rx] == [(1, 3, 42, 42)] * 3
    assert [float(r[0, 0, 0, 0]) for r in rx] == [110.0, 140.0, 105.0]
    assert np.concatenate(ry).tolist() == [0, 1, 1]
    mx, my = hook.seen["monitor"]
    np.testing.assert_array_equal(mx, held[0].features[[12, 25]])
    assert my.tolist() == [1, 0]


def test_a_store_without_the_intervals_onset_apex_input_is_refused(rng):
    v = _video("s1", 30, [(5, 12, "happiness")], rng)
    v.onset_apex.clear()
    with pytest.raises(Exception, match="onset -> apex"):
        train_spotter([v], spotting=_Recorder(), kind="micro", kprime=3,
                      classes=["happiness", "surprise"], settings={"ratio": 8.0}, seed=0,
                      ckpt_dir=None, tag="t")

