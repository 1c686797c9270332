"""Face detection and 68-point facial landmarks (iBUG-68 order).

Two backends give the same output, ``(68, 2)`` float32 ``(x, y)`` pixel
coordinates in the 0-based iBUG-68 order (jaw 0-16, eyebrows 17-26, nose
27-35, eyes 36-47, mouth 48-67):

``"dlib"`` (default, offline)
    dlib's HOG frontal face detector and its 68-point shape predictor
    (Kazemi and Sullivan's regression trees), with the model file that the
    ``face_recognition_models`` package ships. Both run on the grey image
    (RGB input is converted with ``cv2.COLOR_RGB2GRAY``); the HOG detector
    itself never sees colour. dlib returns integer landmark coordinates, so
    the landmarks are quantised to whole pixels.
``"fan"``
    The Face Alignment Network (2D-FAN-4) with the S3FD face detector
    (Bulat and Tzimiropoulos), run by mexkit itself (:mod:`mexkit.face.fan`)
    on the weights the face-alignment package publishes, batched over frames
    and on the GPU when one is present. No package beyond torch is needed
    (face-alignment declares opencv-python, which would replace
    opencv-contrib's ``cv2``). The weights must already be in the torch hub
    cache (``torch.hub.get_dir()/checkpoints``), where face-alignment puts
    them: mexkit never downloads them and fails at once, naming the files,
    when they are missing (:func:`fan_weight_files`). Landmarks are whole
    pixels, as face-alignment gives them.

Coordinates follow OpenCV and dlib: the centre of the top-left pixel is
``(0, 0)``, ``x`` grows to the right and ``y`` downwards. Face boxes are
``(x0, y0, x1, y1)`` in the same coordinates (dlib's ``left, top, right,
bottom``; face-alignment's box corners).

Models are loaded once per process and cached (loading dlib's predictor takes
about a second).

References
----------
.. [1] D. E. King, "Dlib-ml: A machine learning toolkit", JMLR 10, 2009.
.. [2] V. Kazemi, J. Sullivan, "One millisecond face alignment with an
   ensemble of regression trees", CVPR 2014.
.. [3] A. Bulat, G. Tzimiropoulos, "How far are we from solving the 2D & 3D
   face alignment problem?", ICCV 2017.
.. [4] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long Videos"
   (MEAN), section 3.1: dlib detection and 68 landmarks on the first frame of
   each video.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .._validate import check_option, check_range
from ..devices import resolve_device
from ..errors import NoFaceError, ParameterError

__all__ = [
    "DETECTORS",
    "N_LANDMARKS",
    "FAN_BATCH",
    "Detection",
    "DetectionBatch",
    "detect_landmarks",
    "detect_landmarks_batch",
    "fit_landmarks",
    "dlib_predictor_path",
    "fan_weight_files",
    "load_dlib_in_background",
]

logger = logging.getLogger("mexkit")

#: Landmark backends accepted by the ``detector`` parameter.
DETECTORS = ("dlib", "fan")
#: Number of landmarks of the iBUG-68 scheme.
N_LANDMARKS = 68

_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
# The weights face-alignment 1.5 publishes (names as its torch hub cache holds
# them): 2D-FAN-4 and the S3FD detector.
_FAN_FILES = {
    "2DFAN-4": ("2DFAN4-11f355bf06.pth.tar",
                "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"),
    "s3fd": ("s3fd-619a316812.pth",
             "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"),
}
#: Frames per batched call of FAN's face detector (S3FD) in :func:`detect_landmarks_batch`.
FAN_BATCH = 16
_FAN_CHUNK = FAN_BATCH

_lock = threading.Lock()
_dlib_cache: dict[str, Any] = {}
# dlib's object detector keeps its feature pyramid between calls (a mutable member):
# two threads running one detector at once changed each other's scores. Its calls are
# serialised; the shape predictor holds no such state and is shared freely.
_detector_lock = threading.Lock()
_fan_cache: dict[str, Any] = {}


@dataclass(frozen=True)
class Detection:
    """One face found in one image.

    Attributes
    ----------
    landmarks : ndarray, shape (68, 2), float32
        iBUG-68 landmarks ``(x, y)`` in pixels of the image.
    box : ndarray, shape (4,), float32
        Face box ``(x0, y0, x1, y1)`` in pixels.
    score : float
        Detector confidence: dlib's HOG SVM score (about 0 to 3, higher is
        surer) or S3FD's probability (0 to 1). ``nan`` when the landmarks
        were fitted in a given box without detection.
    """

    landmarks: np.ndarray
    box: np.ndarray
    score: float


@dataclass(frozen=True)
class DetectionBatch:
    """Faces found in a stack of frames, one per frame at most.

    Attributes
    ----------
    landmarks : ndarray, shape (T, 68, 2), float32
        Landmarks per frame; ``nan`` where no face was found.
    boxes : ndarray, shape (T, 4), float32
        Face boxes ``(x0, y0, x1, y1)``; ``nan`` where no face was found.
    scores : ndarray, shape (T,), float32
        Detector scores; ``nan`` where no face was found.
    found : ndarray, shape (T,), bool
        Whether a face was found in each frame.
    """

    landmarks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    found: np.ndarray


# --------------------------------------------------------------------------- input checks

def _check_uint8(array: Any, name: str, lead: str) -> np.ndarray:
    """``array`` as uint8 ``lead + (H, W)`` grey or ``lead + (H, W, 3)`` RGB, non-empty."""
    array = np.asarray(array)
    k = 1 if lead else 0  # leading frame axis
    if array.ndim not in (2 + k, 3 + k) or (array.ndim == 3 + k and array.shape[-1] != 3):
        raise ParameterError(
            f"Invalid shape for the {name!r} parameter: expected ({lead}H, W) grey or "
            f"({lead}H, W, 3) RGB, but got shape {array.shape!r}.")
    if array.dtype != np.uint8:
        raise ParameterError(
            f"Invalid dtype for the {name!r} parameter: expected uint8, but got {array.dtype}.")
    if min(array.shape[:2 + k]) < 1:
        raise ParameterError(f"The {name!r} parameter is empty (shape {array.shape!r}).")
    return array


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    return _check_uint8(image, name, "")


def check_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """Check a clip ``(T, H, W)`` or ``(T, H, W, 3)`` of uint8 frames; return it."""
    return _check_uint8(frames, name, "T, ")


def _check_upsample(upsample: int | None) -> int | None:
    if upsample is None:
        return None
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)):
        raise ParameterError(
            f"Invalid value for the 'upsample' parameter: expected None or an integer, "
            f"but got {upsample!r}.")
    check_range("upsample", int(upsample), 0, 4)
    return int(upsample)


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(image)


def _place(where: str) -> str:
    return where if where else "the image"


def frame_ranges(frames: np.ndarray) -> str:
    """Format sorted frame indices as '3-5, 9'."""
    frames = [int(f) for f in frames]
    parts: list[str] = []
    start = prev = frames[0]
    for f in frames[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ", ".join(parts)


def _pick_largest(boxes: np.ndarray, scores: np.ndarray, where: str) -> int:
    """Index of the largest box (ties broken by score); warn when several."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    best = int(np.lexsort((scores, areas))[-1])
    if len(boxes) > 1:
        logger.warning("%d faces found in %s; using the largest (box %s, score %.2f).",
                       len(boxes), _place(where), np.round(boxes[best], 1).tolist(),
                       float(scores[best]))
    return best


# --------------------------------------------------------------------------- dlib backend

def dlib_predictor_path() -> Path:
    """Path of dlib's 68-point shape predictor shipped by ``face_recognition_models``.

    The package is located with :func:`importlib.util.find_spec` and not
    imported (importing it needs ``pkg_resources``).

    Returns
    -------
    path : Path
        ``.../face_recognition_models/models/shape_predictor_68_face_landmarks.dat``.

    Raises
    ------
    ParameterError
        When the package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ParameterError(
            "The 'dlib' detector needs the package 'face_recognition_models' (it holds "
            f"{_PREDICTOR_FILE}); install it with pip install face-recognition-models.")
    path = Path(locations[0]) / "models" / _PREDICTOR_FILE
    if not path.is_file():
        raise ParameterError(f"dlib's landmark model is missing: {path} does not exist.")
    return path


def _dlib_model(name: str) -> Any:
    """dlib's face detector (``"detector"``) or 68-point shape predictor (``"predictor"``),
    each loaded once per process when first wanted: landmarks inside a known box (MEAN's
    regions of a crop) need only the predictor, and the detector costs 0.3 s of CPU."""
    with _lock:
        if name not in _dlib_cache:
            import dlib  # start-up: only the dlib detector loads dlib

            _dlib_cache[name] = (dlib.get_frontal_face_detector() if name == "detector"
                                 else dlib.shape_predictor(str(dlib_predictor_path())))
    return _dlib_cache[name]


def load_dlib_in_background() -> threading.Thread:
    """Start loading dlib's detector and shape predictor in a daemon thread of this
    process; return the thread.

    For a command that will detect faces in this process but first waits for
    its input (``mexkit synth ... | mexkit crop --annotations -``): the models,
    about 1.2 s of CPU (the predictor is a 99 MB file), are then ready when the
    input arrives. The detection functions wait for a load in progress (one
    lock); a load that fails here fails again, with its error, where the
    models are first used.
    """
    def load() -> None:
        try:
            _dlib_model("detector")
            _dlib_model("predictor")
        except Exception as exc:  # raised again where the models are used
            logger.debug("loading dlib's models ahead: %s", exc)

    thread = threading.Thread(target=load, name="mexkit-dlib-load", daemon=True)
    thread.start()
    return thread


def dlib_detector_run(image: np.ndarray, upsample: int) -> tuple[Any, Any]:
    """dlib's face detector on ``image`` (``detector.run(image, upsample, 0.0)``): its
    rectangles and scores. Safe from several threads: the calls take turns, since
    the detector is not thread-safe (see ``_detector_lock``)."""
    detector = _dlib_model("detector")
    with _detector_lock:
        rects, scores, _ = detector.run(image, int(upsample), 0.0)
    return rects, scores


def _dlib_shape(grey: np.ndarray, box: np.ndarray) -> np.ndarray:
    import dlib  # start-up: only the dlib detector loads dlib

    predictor = _dlib_model("predictor")
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    shape = predictor(grey, dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _dlib_detect(grey: np.ndarray, upsample: int | None, where: str) -> Detection | None:
    for up in ((0, 1) if upsample is None else (upsample,)):
        rects, scores = dlib_detector_run(grey, up)
        if len(rects):
            break
    else:
        return None
    boxes = np.array([(r.left(), r.top(), r.right(), r.bottom()) for r in rects],
                     dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    best = _pick_largest(boxes, scores, where)
    return Detection(_dlib_shape(grey, boxes[best]), boxes[best], float(scores[best]))


# --------------------------------------------------------------------------- FAN backend

def fan_weight_files() -> dict[str, Path]:
    """Where the FAN and S3FD weights are read from.

    Returns
    -------
    files : dict
        ``{"2DFAN-4": path, "s3fd": path}`` under
        ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
        by default ``~/.cache/torch/hub/checkpoints``), where face-alignment
        downloads them.
    """
    import torch  # start-up: torch, only for the FAN detector

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return {k: folder / name for k, (name, _) in _FAN_FILES.items()}


def _check_fan_available() -> dict[str, Path]:
    """The weight files; fail at once, before anything is loaded, when one is missing."""
    files = fan_weight_files()
    missing = {k: p for k, p in files.items() if not p.is_file()}
    if missing:
        listing = "; ".join(f"{p.name} (from {_FAN_FILES[k][1]})" for k, p in missing.items())
        folder = next(iter(missing.values())).parent
        raise ParameterError(
            f"Invalid value for the 'detector' parameter: 'fan' needs weights that are not "
            f"in the torch hub cache. Put {listing} into {folder} (set TORCH_HOME to use "
            "another cache); mexkit never downloads them. Or use --detector dlib, which "
            "works offline.")
    return files


def _fan_device(device: str | None) -> str:
    return str(resolve_device(device))


def _load_weights(net: Any, path: Path, device: str) -> Any:
    import torch  # start-up: torch, only for the FAN detector

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:
        raise ParameterError(
            f"Invalid value for the 'detector' parameter: 'fan' cannot use its weights "
            f"{path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); delete the "
            "file and fetch it again, or use --detector dlib.") from exc
    return net.to(device).eval()


def _fan_model(device: str) -> tuple[Any, Any]:
    """(S3FD, FAN) on ``device``, loaded once per process."""
    files = _check_fan_available()
    with _lock:
        if device not in _fan_cache:
            from .fan import FAN, S3FD  # start-up: fan.py imports torch; FAN only

            _fan_cache[device] = (_load_weights(S3FD(), files["s3fd"], device),
                                  _load_weights(FAN(4), files["2DFAN-4"], device))
    return _fan_cache[device]


def _fan_shape(model: tuple[Any, Any], rgb: np.ndarray, box: np.ndarray, device: str
               ) -> np.ndarray:
    from .fan import fan_landmarks  # start-up: as _fan_models

    return fan_landmarks(model[1], rgb, np.asarray(box, np.float32)[None, :4],
                         device=device)[0]


def frame_names(where: str, n: int, start: int = 0) -> list[str]:
    """Names of the ``n`` frames of a clip from position ``start`` on, for messages
    (``"<where>, frame 3"``)."""
    return [f"{where}, frame {t}" if where else f"frame {t}" for t in range(start, start + n)]


def _fan_detect_many(frames: np.ndarray, device: str | None,
                     names: list[str]) -> list[Detection | None]:
    from .fan import detect_faces  # start-up: as _fan_models

    dev = _fan_device(device)
    model = _fan_model(dev)
    out: list[Detection | None] = []
    for start in range(0, len(frames), _FAN_CHUNK):
        rgb = np.stack([_rgb(f) for f in frames[start:start + _FAN_CHUNK]])
        for i, found in enumerate(detect_faces(model[0], rgb, device=dev)):
            if len(found) == 0:
                out.append(None)
                continue
            boxes = found[:, :4].astype(np.float32)
            scores = found[:, 4].astype(np.float32)
            best = _pick_largest(boxes, scores, names[start + i])
            pts = _fan_shape(model, rgb[i], boxes[best], dev)
            out.append(Detection(pts, boxes[best], float(scores[best])))
    return out


# --------------------------------------------------------------------------- public API

def detect_landmarks(image: np.ndarray, *, detector: str = "dlib",
                     upsample: int | None = None, device: str | None = None,
                     where: str = "") -> Detection:
    """Find the face in one image and its 68 landmarks.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3), uint8
        Grey or RGB image.
    detector : {"dlib", "fan"}
        Backend (see the module documentation).
    upsample : int or None
        dlib only: how many times the HOG detector doubles the image before
        searching (faces smaller than about 80 px need 1 or more). ``None``
        (default) searches at 0 and, when nothing is found, again at 1; each
        doubling makes detection about 4 times slower. Ignored by ``"fan"``.
    device : str or None
        ``"fan"`` only: torch device; ``None`` takes ``"cuda"`` when present.
    where : str
        What the image is, for messages (e.g. ``"clip 's01/EP02_01', frame 0"``).

    Returns
    -------
    Detection
        Landmarks ``(68, 2)`` float32, box and score of the face; with several
        faces, the largest one (a warning is logged).

    Raises
    ------
    NoFaceError
        No face in the image; the message names ``where``.
    ParameterError
        Bad image, option, or ``"fan"`` without its weights.
    """
    image = _check_image(image)
    check_option("detector", detector, DETECTORS)
    upsample = _check_upsample(upsample)
    if detector == "dlib":
        found = _dlib_detect(_grey(image), upsample, where)
    else:
        found = _fan_detect_many(image[None], device, [where])[0]
    if found is None:
        raise NoFaceError(f"No face found in {_place(where)} ({detector} detector).")
    return found


def detect_landmarks_batch(frames: np.ndarray, *, detector: str = "dlib",
                           upsample: int | None = None, device: str | None = None,
                           allow_missing: bool = False, where: str = "",
                           first_frame: int = 0) -> DetectionBatch:
    """Find the face and its 68 landmarks in every frame of a clip.

    The dlib backend runs frame by frame (about 20-40 ms per 640x480 frame on
    one core); the FAN backend detects faces in batches of 16 frames on the
    GPU when one is present.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, 3), uint8
        Grey or RGB frames.
    detector, upsample, device
        As in :func:`detect_landmarks`.
    allow_missing : bool
        When False (default), a frame without a face raises
        :class:`NoFaceError`; when True, it is marked in ``found`` and its
        rows are ``nan``.
    where : str
        The clip, for messages; frame numbers are added.
    first_frame : int
        Position in the clip of ``frames[0]`` (a piece of a long video), for
        messages only. Each frame is detected on its own (dlib), or in batches
        of 16 frames from ``frames[0]`` on (FAN's face detector), so pieces
        whose lengths are multiples of 16 give the detections of the whole.

    Returns
    -------
    DetectionBatch
        ``landmarks (T, 68, 2)``, ``boxes (T, 4)``, ``scores (T,)``,
        ``found (T,)``.

    Raises
    ------
    NoFaceError
        Frames without a face (unless ``allow_missing``); the message names
        the clip and the frames.
    """
    frames = check_frames(frames)
    check_option("detector", detector, DETECTORS)
    upsample = _check_upsample(upsample)
    names = frame_names(where, len(frames), int(first_frame))
    if detector == "dlib":
        found_list = [_dlib_detect(_grey(f), upsample, name)
                      for f, name in zip(frames, names, strict=True)]
    else:
        found_list = _fan_detect_many(frames, device, names)
    n = len(frames)
    landmarks = np.full((n, N_LANDMARKS, 2), np.nan, dtype=np.float32)
    boxes = np.full((n, 4), np.nan, dtype=np.float32)
    scores = np.full(n, np.nan, dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    for t, det in enumerate(found_list):
        if det is not None:
            landmarks[t], boxes[t], scores[t], found[t] = det.landmarks, det.box, det.score, True
    if not allow_missing and not found.all():
        missing = np.flatnonzero(~found)
        of = f"of {n}" if not first_frame else \
            f"of frames {int(first_frame)}-{int(first_frame) + n - 1}"
        raise NoFaceError(f"No face found in {where or 'the clip'} at frame(s) "
                          f"{frame_ranges(missing + int(first_frame))} {of} ({detector} "
                          "detector).")
    return DetectionBatch(landmarks, boxes, scores, found)


def fit_landmarks(image: np.ndarray, box: np.ndarray, *, detector: str = "dlib",
                  device: str | None = None) -> np.ndarray:
    """Fit the 68 landmarks inside a given face box, without detection.

    Cheap with dlib (about 2 ms): used to re-estimate the shape in a fixed
    box on later frames of a clip.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3), uint8
        Grey or RGB image.
    box : array_like, shape (4,)
        Face box ``(x0, y0, x1, y1)`` in pixels, as a detector gives it.
    detector : {"dlib", "fan"}
        Backend.
    device : str or None
        ``"fan"`` only: torch device.

    Returns
    -------
    landmarks : ndarray, shape (68, 2), float32
    """
    image = _check_image(image)
    check_option("detector", detector, DETECTORS)
    box = np.asarray(box, dtype=np.float32).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise ParameterError(
            f"Invalid value for the 'box' parameter: expected finite (x0, y0, x1, y1) with "
            f"x1 > x0 and y1 > y0, but got {box.tolist()!r}.")
    if detector == "dlib":
        return _dlib_shape(_grey(image), box)
    dev = _fan_device(device)
    return _fan_shape(_fan_model(dev), _rgb(image), box, dev)
