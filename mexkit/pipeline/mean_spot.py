"""``mexkit spot INPUT --weights DIR``: spot-then-recognize with MEAN's published networks.

INPUT is a gap-flow store (``mexkit flow --pairs gap --features mean``) or a
video file / image folder, which is cropped (``mexkit crop``'s defaults:
dlib, landmarks on the first frame, 128x128 grey) and given the authors'
gap flow first (k = round(0.1 x fps), OpenCV DualTVL1, MEAN's input as the
authors build it); both stores are kept beside the output.

Each video's spotting scores are the mean of the spotting outputs of all the
dataset's fold networks (an ensemble; ``fold="sN"`` takes one network,
``per_subject`` each video's own subject's network, for reproducing the
authors' LOSO figures), and its per-frame classes the argmax of their mean
class probabilities. Then the paper's post-processing
(:func:`mexkit.spot.spot_video`): moving average over ``[i - k', i + k']``,
all peaks above ``T = mean + p (max - mean)`` at least ``k'`` apart (long
videos) or the single highest (short clips), intervals ``[peak - k', peak + k'
- 1]``, emotion = the most frequent class over ``[peak - k', peak - 1]``.

``k'`` is the networks' dataset's (MEAN Table 1), scaled to the video's frame
rate (half the dataset's mean expression length in seconds), unless given.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023), sections 3.3-4.3.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validate import check_option, check_range
from ..errors import ParameterError
from ..io.intervals import write_intervals, write_intervals_json
from ..models.mean.keras import dataset_from_path
from ..spot.metrics import Interval, evaluate_intervals
from ..spot.postprocess import spot_video
from . import mean_weights
from .crop import clips_from_paths, run_crop
from .flow import run_flow
from .mean_features import AUTHORS_FLOW_METHOD
from .reports import safe_name as _safe
from .spotting import load_spot_videos, plot_video

__all__ = ["spot_with_weights", "prepare_video", "gap_for_fps", "kprime_for"]

logger = logging.getLogger("mexkit")

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def gap_for_fps(fps: float) -> int:
    """k = 0.1 x fps rounded half up, at least 1 (25 fps -> 3, 200 fps -> 20, as the authors)."""
    return max(1, int(math.floor(float(fps) * 0.1 + 0.5)))


def kprime_for(dataset: Any, fps: float | None) -> int:
    """The dataset's k' (Table 1), rescaled to ``fps`` when it differs from the dataset's."""
    if dataset is None:
        raise ParameterError("No dataset folder in the weights' path gives k'; give --kprime.")
    if not fps or abs(float(fps) - dataset.fps) < 1e-6:
        return dataset.kprime
    return max(1, int(math.floor(dataset.kprime * float(fps) / dataset.fps + 0.5)))


def is_video_input(path: Path) -> bool:
    """A video file or an image folder (not an HDF5 store)."""
    return path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES


def prepare_video(video: Path, out_base: Path, *, gap: int | None, fps: float | None,
                  progress: bool) -> Path:
    """Crop ``video`` and compute MEAN's gap-flow input as the authors do; the flow store."""

    crop = out_base.with_name(out_base.name + ".crop.h5")
    flow = out_base.with_name(out_base.name + ".crop.flow-tvl1-opencv.h5")
    specs = clips_from_paths([video], fps=fps)
    run_crop(specs, crop, progress=progress)
    run_flow(crop, flow, method=AUTHORS_FLOW_METHOD, pairs="gap", k=gap, features=["mean"],
             mean_input="authors", progress=progress)
    return flow


def _fold_files(weights: Path, fold: str | None) -> dict[int, Path]:

    files, _ = mean_weights.weight_files(weights, need="spotting")
    if fold is not None:
        n = int(str(fold).lower().lstrip("s")) if str(fold).lower().lstrip("s").isdigit() \
            else None
        if n not in files:
            raise ParameterError(
                f"Invalid value for '--fold': {fold!r} is not one of the fold files "
                f"{', '.join(f's{k}' for k in files)} in {weights}.")
        files = {n: files[n]}
    return files


def spot_with_weights(input_path: str | os.PathLike, weights: str | os.PathLike,
                      output: str | os.PathLike, *, fold: str | None = None,
                      per_subject: bool = False, subject_map: str | None = None,
                      kprime: int | None = None, p: float = 0.55, peaks: str | None = None,
                      classes: Sequence[str] | None = None, gap: int | None = None,
                      fps: float | None = None, device: str = "cpu", plots: bool = True,
                      progress: bool = True) -> tuple[Path, dict[str, Any] | None]:
    """Spot and recognise with the authors' networks; write intervals (CSV, JSON) and PNGs.

    Returns the interval CSV's path and, when the input holds annotated
    intervals, the metric report (:func:`mexkit.spot.evaluate_intervals`).
    """


    check_range("p", float(p), 0.0, 1.0)
    if peaks is not None:
        check_option("peaks", peaks, ("all", "highest"))
    src = Path(input_path)
    output = Path(output)
    weights = Path(weights)
    video_input = is_video_input(src)
    output.parent.mkdir(parents=True, exist_ok=True)
    if video_input:
        base = output.parent / (output.name.split(".")[0] or "video")
        src = prepare_video(src, base, gap=gap, fps=fps, progress=progress)
        logger.info("spot: MEAN's input of %s is in %s", input_path, src)
    elif gap is not None:
        raise ParameterError("--gap applies to a video input; a store keeps its own gap.")
    files = _fold_files(weights, fold)
    nets = {n: mean_weights.load_keras_mean(f) for n, f in files.items()}
    info0 = next(iter(nets.values()))[1]
    if not info0.has_spot:
        raise ParameterError(f"{weights}: these networks have no spotting head; give the "
                             "spot or spot_recog networks.")
    dataset = dataset_from_path(weights.resolve())
    names = mean_weights.classes_for(weights, info0.n_classes, classes) if info0.has_recog else []
    videos = load_spot_videos(src)
    long = {"all": True, "highest": False}.get(peaks or "", None)
    if long is None:
        long = True if video_input or dataset is None else dataset.long
    fold_of: dict[str, int] = {}
    if per_subject:

        fold_of = (mean_weights._read_subject_map(subject_map) if subject_map else
                   mean_weights.authors_folds([v.subject for v in videos],
                                 [bool(v.truth) for v in videos]))
    spotted: list[Interval] = []
    plot_dir = output.with_name(output.stem + ".plots")
    if plots:
        plot_dir.mkdir(parents=True, exist_ok=True)
    used_k: dict[str, int] = {}
    for v in videos:
        chosen = nets
        if per_subject:
            n = fold_of.get(v.subject)
            if n is None or n not in nets:
                logger.warning("spot: no fold network for subject %s (video %s); skipped",
                               v.subject, v.video)
                continue
            chosen = {n: nets[n]}
        x = torch.from_numpy(v.features)
        spot_sum = np.zeros(len(v.features), dtype=np.float64)
        prob_sum = np.zeros((len(v.features), max(info0.n_classes, 1)), dtype=np.float64)
        with torch.no_grad():
            for net, info in chosen.values():
                net.to(device)
                z = net.shared(x.to(device))
                spot_sum += net.spot_head(z).squeeze(1).double().cpu().numpy()
                if info.has_recog:
                    prob_sum += torch.softmax(net.recog_head(z), 1).double().cpu().numpy()
        scores = spot_sum / len(chosen)
        frame_cls = prob_sum.argmax(1) if info0.has_recog else None
        kp = int(kprime) if kprime else kprime_for(dataset, v.fps or None)
        used_k[f"{v.subject}/{v.video}"] = kp
        spots, smooth, thr = spot_video(scores, kp, n_frames=v.n_frames, p=p, long=long,
                                        frame_classes=frame_cls)
        found = [Interval(v.subject, v.video, s.onset, s.offset, type="micro",
                          emotion=(names[s.emotion] if s.emotion is not None and names
                                   else None), confidence=s.confidence, apex=s.peak)
                 for s in spots]
        spotted.extend(found)
        if plots:
            curves = {"micro": {"scores": scores, "smoothed": smooth, "threshold": thr,
                                "kprime": kp, "gap": v.gap}}
            plot_video(plot_dir / f"{_safe(v.subject)}_{_safe(v.video)}.png", v, curves, found)
    write_intervals(output, spotted)
    write_intervals_json(output.with_suffix(".json"), spotted, kprime=used_k, p=p, long=long,
                         classes=names, weights=str(weights),
                         folds=[f"s{n}" for n in files] if not per_subject else "per-subject",
                         input=str(src))
    truth = [t for v in videos for t in v.truth]
    report = evaluate_intervals(truth, spotted, classes=names or None) if truth else None
    return output, report
