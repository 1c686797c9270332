"""The crop stage: clips in, a store of aligned face crops with landmarks out."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import check_option, check_range
from ..devices import check_device
from ..errors import DatasetError, MediaError, ParameterError
from ..io.datasets import (
    collect_report,
    detect_dataset,
    format_summary,
    get_adapter,
    load_dataset,
    summarize,
)
from ..io.datasets.summary import has_source
from ..io.sheets import csv_encoding, looks_like_sheet
from ..io.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, open_clip
from ..labels import apply_scheme
from .cache import INPUT_ATTRS, cache_key
from .parallel import current_config, in_shard
from .runner import StagedPieces, StageResult, Task, run_stage, staged_pieces
from .stages import expect_arrays

__all__ = ["CROP_VERSION", "BOXES", "crop_preset", "ClipSpec", "load_annotated",
           "load_detector_ahead",
           "read_annotations", "default_unit", "default_sheet", "is_sheet", "sample_listing",
           "clips_from_samples", "split_inputs", "clips_from_paths", "run_crop"]

logger = logging.getLogger("mexkit")

CROP_VERSION = 1
#: How a clip's crop is framed: by its landmarks (aligned), or by the face detector's box.
BOXES = ("landmarks", "detector")
_CHUNK = 256  # frames per chunk when streaming a long clip in "first" mode
#: Frames per staged piece of a long video (issue 28): a clip of more frames is detected
#: (``--mode every``) or cropped (the other modes) piece by piece, each piece staged as
#: soon as it is done, so that an interrupted or killed run keeps it for the next one.
_PIECE_FRAMES = 256


class ClipSpec(dict):
    """What the crop stage needs to know about one clip (a plain, picklable dict)."""


_CARRY = ("dataset", "subject", "clip", "video", "fps", "label", "emotion", "aus",
          "objective_class", "kind", "onset", "apex", "offset", "onset_frame", "apex_frame",
          "offset_frame")


def crop_preset(name: str) -> dict[str, Any]:
    """``mexkit crop --preset NAME``: the crop under which model ``NAME``'s published
    networks were trained (its :class:`~mexkit.models.registry.PublishedNetworks` hook)."""
    from ..models.registry import get_spec, list_models  # start-up: torch, only for --preset

    able = [s.name for s in list_models() if s.published is not None]
    check_option("preset", name, able)
    return dict(get_spec(name).published.crop)


def load_annotated(sheet: str | Path, *, dataset: str | None = None,
                   root: str | Path | None = None, fps: float | None = None,
                   sheets: Mapping[str, str] | None = None
                   ) -> tuple[list[Any], dict[str, Any]]:
    """Read a dataset's annotation sheet.

    Returns the samples and the sheet's provenance record (dataset name, path
    and SHA-256), which the first stage stores as its upstream.
    """
    sheet = Path(sheet)
    name = dataset or detect_dataset(sheet)
    samples = load_dataset(name, sheet, root=root, fps=fps, sheets=sheets)
    record = {"stage": f"annotations:{name}", "path": str(sheet.resolve()),
              "content_hash": hashlib.sha256(sheet.read_bytes()).hexdigest(), "store_id": ""}
    return samples, record


def read_annotations(sheet: str | Path, *, dataset: str | None = None,
                     root: str | Path | None = None, fps: float | None = None,
                     sheets: Mapping[str, str] | None = None, encoding: str | None = None
                     ) -> tuple[list[Any], dict[str, Any]]:
    """:func:`load_annotated` with a CSV sheet read in ``encoding`` (default UTF-8)."""
    with csv_encoding(encoding):
        return load_annotated(sheet, dataset=dataset, root=root, fps=fps,
                              sheets=dict(sheets) if sheets else None)


def default_unit(record: Mapping[str, Any], samples: Sequence[Any]) -> str:
    """``"video"`` for long-video datasets (spotting), ``"clip"`` otherwise.

    ``record`` is the sheet's provenance record (:func:`load_annotated`).  A
    dataset adapter says whether its rows are intervals of long videos; the
    generic sheet says so only through an explicit ``video`` column that
    differs from ``clip`` (never through the file a row points to: a row of
    a video file with onset, apex and offset is a clip).
    """
    name = str(record.get("stage", "")).partition(":")[2]
    if name and name != "generic":
        return "video" if get_adapter(name).long else "clip"

    def get(s: Any, k: str) -> Any:
        return s.get(k) if isinstance(s, Mapping) else getattr(s, k, None)

    return "video" if any(get(s, "video") and get(s, "video") != get(s, "clip")
                          for s in samples) else "clip"


def default_sheet(dataset: str | None, root: str | Path | None) -> Path | None:
    """The sheet of a dataset whose release ships it in a fixed place under ``root``
    (:attr:`~mexkit.io.datasets.DatasetAdapter.default_sheet`), or None."""
    if not dataset or root is None:
        return None
    name = get_adapter(dataset).default_sheet
    return Path(root) / name if name else None


def is_sheet(path: str | Path) -> bool:
    """Whether ``path`` looks like an annotation sheet (not a video or image folder)."""
    return looks_like_sheet(Path(path))


def sample_listing(sheet: str | Path, *, dataset: str | None = None,
                   root: str | Path | None = None, fps: float | None = None,
                   sheets: Mapping[str, str] | None = None, encoding: str | None = None,
                   scheme: str | None = None, strict: bool = False, as_json: bool = False,
                   list_all: bool = False) -> tuple[str, int]:
    """What ``mexkit samples`` prints about a sheet, and its exit status.

    The sheet is parsed as ``mexkit crop`` parses it (without the videos):
    counts per subject and label, the rows repaired and skipped (each with
    a warning naming file, sheet and row), the samples outside ``scheme``
    and, with ``list_all``, one line per sample. The status is 1 when a row
    was skipped, else 0.
    """
    with collect_report(strict=strict) as report:
        samples, record = read_annotations(sheet, dataset=dataset, root=root, fps=fps,
                                           sheets=sheets, encoding=encoding)
    outside: list[tuple[str, str]] = []
    if scheme is not None:
        samples, outside = apply_scheme(samples, scheme, on_error="skip")
    summary = summarize(samples)
    status = 1 if report.skipped else 0
    if as_json:
        doc = {"annotations": record["path"], "summary": summary,
               "samples": [dataclasses.asdict(s) for s in samples],
               "outside_scheme": [{"sample_id": s, "reason": r} for s, r in outside],
               "rows": report.as_dict()}
        return json.dumps(doc, indent=2, default=str), status
    lines = [format_summary(summary, report)]
    lines += [f"outside scheme {scheme}: {sid}: {reason}" for sid, reason in outside]
    if list_all:
        for s in samples:
            apex = "-" if s.apex is None else s.apex
            where = s.source if has_source(s) else f"{s.source or ''} (not found)".lstrip()
            onset = "-" if s.onset is None else s.onset
            offset = "-" if s.offset is None else s.offset
            lines.append(f"{s.sample_id}\t{s.subject}\t{onset}\t{apex}\t{offset}\t"
                         f"{s.emotion or '-'}\t{s.label or '-'}\t{where}")
    return "\n".join(lines), status


def clips_from_samples(samples: Sequence[Any], *, unit: str = "clip") -> list[ClipSpec]:
    """Turn dataset samples into clip specs.

    Short-clip datasets give one clip per sample.  For long-video datasets
    (samples that share a ``video``), ``unit="video"`` crops each video once
    and keeps its annotated intervals; ``unit="clip"`` crops each interval
    (onset to offset) as its own clip.
    """
    if unit not in ("clip", "video"):
        raise ParameterError(f"Invalid value for the 'unit' parameter: {unit!r}.")
    specs: list[ClipSpec] = []
    by_video: dict[str, ClipSpec] = {}
    ids: dict[str, int] = {}
    for s in samples:
        def get(k, s=s):
            return (s.get(k) if isinstance(s, Mapping) else getattr(s, k, None))
        source = get("source")
        # a long video holds several intervals: its id differs from the clip's
        video = get("video") if get("video") and get("video") != get("clip") else None
        if unit == "video" and video:
            # one spec per file: rows of different files never merge, whatever their names
            key = (str(Path(source).resolve()) if source is not None
                   else f"{get('dataset')}/{get('subject')}/{video}")
            spec = by_video.get(key)
            if spec is None:
                sid = f"{get('dataset')}/{get('subject')}/{video}"
                ids[sid] = ids.get(sid, 0) + 1
                spec = ClipSpec(sample_id=sid if ids[sid] == 1 else f"{sid}#{ids[sid]}",
                                source=None if source is None else str(source),
                                dataset=get("dataset"), subject=get("subject"), clip=video,
                                video=video, fps=get("fps"), intervals=[], start=None,
                                stop=None)
                by_video[key] = spec
                specs.append(spec)
            spec["intervals"].append({k: get(k) for k in (
                "onset", "apex", "offset", "kind", "emotion", "aus", "label", "onset_frame",
                "apex_frame", "offset_frame")})
            continue
        spec = ClipSpec(sample_id=get("sample_id"), source=None if source is None else str(source))
        for k in _CARRY:
            v = get(k)
            if v is not None:
                spec[k] = v
        if video:  # one interval of a long video: crop onset..offset only
            spec["start"], spec["stop"] = int(get("onset")), int(get("offset")) + 1
        else:
            spec["start"], spec["stop"] = None, None
        specs.append(spec)
    kept = sum(len(spec["intervals"]) if "intervals" in spec else 1 for spec in specs)
    if kept != len(samples):
        raise DatasetError(f"{len(samples)} samples became {kept} clips and intervals; "
                           "none may be lost or merged")
    whole = [spec for spec in specs if "intervals" in spec]
    if whole:  # say where the annotations went: no sample attribute holds them now
        logger.info("crop: %d annotated interval(s) kept as the 'intervals' of %d whole "
                    "video(s) (--unit video, for spotting); --unit clip makes one sample "
                    "per interval, with its onset, apex, offset and label",
                    sum(len(spec["intervals"]) for spec in whole), len(whole))
    return specs


def split_inputs(paths: Sequence[str | Path], *, dataset: str | None = None
                 ) -> tuple[Path | None, list[Path]]:
    """Sort the INPUTS of ``mexkit crop``: ``(annotation sheet or None, media paths)``.

    A folder, a file with a video or image extension, or any other file that
    OpenCV opens as a video is media; a file with a sheet's extension or
    content is a sheet when its dataset can be told (or ``dataset`` names
    it).  Anything else raises one :class:`~mexkit.errors.MediaError` that
    names the file and says what it is not, before any work: a text file is
    never taken for a sheet of an unknown dataset, nor a file named ``.mp4``
    that holds no video for a broken video.
    """
    sheets: list[Path] = []
    media: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            media.append(p)
            continue
        suffix = p.suffix.lower()
        if suffix not in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS and looks_like_sheet(p):
            if dataset is None:
                try:
                    detect_dataset(p)
                except DatasetError as exc:
                    raise MediaError(
                        f"{str(p)!r} is neither a video, an image, an image folder nor an "
                        f"annotation sheet mexkit recognises ({_first_clause(exc)}); if it "
                        "is a sheet, give it as --annotations with --dataset NAME") from None
            sheets.append(p)
            continue
        try:
            with open_clip(p):
                pass
        except MediaError as exc:
            if suffix in IMAGE_EXTENSIONS:
                raise
            raise MediaError(f"{str(p)!r} is neither a video, an image, an image folder nor "
                             f"an annotation sheet that mexkit can read ({exc})") from None
        media.append(p)
    if sheets and (len(sheets) > 1 or media):
        raise ParameterError(
            f"{str(sheets[0])!r} is an annotation sheet, not a video or image folder: give it "
            "alone, as --annotations SHEET.")
    return (sheets[0] if sheets else None), media


def _first_clause(exc: BaseException) -> str:
    return str(exc).split(";")[0].strip()


def clips_from_paths(paths: Sequence[str | Path], *, fps: float | None = None) -> list[ClipSpec]:
    """Clip specs for plain video files or image folders (no annotations)."""
    specs = []
    for p in paths:
        p = Path(p)
        subject = p.resolve().parent.name or "unknown"
        name = p.stem if p.is_file() else p.name
        specs.append(ClipSpec(sample_id=f"{subject}/{name}", source=str(p), subject=subject,
                              clip=name, dataset="files", fps=fps, start=None, stop=None))
    return specs


def _compute(task: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from ..face.align import (  # start-up: the face detectors, only for cropping
        align_clip,
        crop_with_landmarks,
        precropped,
    )
    from ..face.track import track_first_face  # start-up: as above

    spec, opt = task.payload["clip"], task.payload["params"]
    where = f"clip {spec['sample_id']} ({spec['source']})"
    with open_clip(spec["source"], fps=spec.get("fps")) as clip:
        start = spec.get("start") or 0
        stop = spec.get("stop") or clip.n_frames
        if not (0 <= start < stop <= clip.n_frames):
            raise MediaError(f"{where}: frames {start}..{stop - 1} are outside the clip's "
                             f"{clip.n_frames} frames.")
        numbers = np.asarray(clip.frame_numbers[start:stop], dtype=np.int64)
        grey = opt["grey"]
        # a long video is done in staged pieces; a short clip as one unit, as before
        long = _LongVideo(task, start, stop) if stop - start > _PIECE_FRAMES else None
        if opt.get("box") == "detector":
            return _compute_box(spec, opt, clip, start, stop, numbers, where, long)
        if long is not None and opt["detector"] == "none":
            return _precropped_long(spec, opt, clip, start, numbers, where, long)
        if long is not None and opt["mode"] == "every":
            return _every_long(spec, opt, clip, start, numbers, where, long)
        if opt["detector"] == "none":
            frames = clip.read_range(start, stop, grey=grey)
            res = precropped(frames, size=opt["size"], grey=grey, where=where)
        elif opt["mode"] == "first":
            # the first frame WITH a face, and a drift check every 25 frames (issue 20)
            def track_face():
                return track_first_face(lambda t: clip.read(start + t), stop - start,
                                        detector=opt["detector"], upsample=opt["upsample"],
                                        device=opt["device"], where=where)

            det, track = track_face() if long is None else long.track(track_face)
            for problem in track.problems():
                logger.warning("crop: sample %s: %s", spec["sample_id"], problem)
            keep, chunk = None, _CHUNK
            if long is not None:
                keep, chunk = long.crops(opt), _PIECE_FRAMES
            res = crop_with_landmarks(lambda a, b: clip.read_range(start + a, start + b,
                                                                    grey=grey),
                                      stop - start, det.landmarks, det.score, size=opt["size"],
                                      margin=opt["margin"], grey=grey, chunk=chunk, keep=keep)
            T = len(res.frames)
            arrays = {"frames": res.frames, "landmarks": res.landmarks,
                      "transforms": res.transforms.astype(np.float64), "scores": res.scores,
                      "interpolated": res.interpolated.astype(np.uint8),
                      "frame_numbers": numbers}
            return arrays, {**_attrs(spec, clip, start, T, det.score), **track.as_attrs()}
        else:
            frames = clip.read_range(start, stop, grey=False)
            res = align_clip(frames, mode="every", detector=opt["detector"], size=opt["size"],
                             margin=opt["margin"], grey=grey, smooth=opt["smooth"],
                             max_gap=opt["max_gap"], upsample=opt["upsample"],
                             device=opt["device"], where=where)
        return _aligned(res, spec, clip, start, numbers)


def _aligned(res: Any, spec: Mapping[str, Any], clip: Any, start: int, numbers: np.ndarray
             ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and attributes of an aligned clip (``--mode every``, ``--detector none``)."""
    arrays = {"frames": res.frames, "landmarks": res.landmarks.astype(np.float32),
              "transforms": res.transforms.astype(np.float64),
              "scores": np.asarray(res.scores, np.float32),
              "interpolated": np.asarray(res.interpolated, np.uint8),
              "frame_numbers": numbers}
    score = float(np.nanmean(res.scores)) if np.isfinite(res.scores).any() else float("nan")
    return arrays, _attrs(spec, clip, start, len(res.frames), score)


# -- long videos in staged pieces (issue 28) ---------------------------------------------
def _fits(arrays: Mapping[str, Any], spec: Mapping[str, tuple[Any, tuple]]) -> bool:
    """Whether a staged piece holds the arrays ``spec`` names, of its dtypes and shapes
    (``None`` in a shape: any length)."""
    for name, (dtype, shape) in spec.items():
        a = arrays.get(name)
        if a is None or a.dtype != dtype or a.ndim != len(shape) or any(
                want is not None and n != want for n, want in zip(a.shape, shape, strict=True)):
            return False
    return True


class _LongVideo:
    """A long video's crop in pieces of :data:`_PIECE_FRAMES` frames, each staged as soon
    as it is done (:class:`~mexkit.pipeline.runner.StagedPieces`) and read back by a
    re-run, so that an interrupted or killed run loses at most the piece in progress.

    Outside a stage run (``_compute`` called directly) nothing is staged.
    """

    def __init__(self, task: Task, start: int, stop: int) -> None:
        self.task, self.n = task, stop - start

    def bounds(self, size: int) -> list[tuple[int, int]]:
        return [(a, min(self.n, a + size)) for a in range(0, self.n, size)]

    def load(self, store: StagedPieces | None, bounds: Sequence[tuple[int, int]],
             spec: Any, what: str) -> list[dict[str, Any] | None]:
        """The pieces an earlier run finished (None for the others); says how many."""
        got: list[dict[str, Any] | None] = []
        for a, b in bounds:
            arrays = store.get(a, b) if store is not None else None
            if arrays is not None and not _fits(arrays, spec(a, b)):
                logger.warning("sample %s: staged piece %d-%d not usable (not the arrays of "
                               "%s); computing it again", self.task.sample_id, a, b, what)
                arrays = None
            got.append(arrays)
        kept = sum(a is not None for a in got)
        if kept and len(bounds) == 1:
            logger.info("crop: sample %s: %s kept from an earlier run", self.task.sample_id,
                        what)
        elif kept:
            logger.info("crop: sample %s: %d of %d pieces of %d frames (%s) kept from an "
                        "earlier run; computing %d", self.task.sample_id, kept, len(bounds),
                        bounds[0][1] - bounds[0][0], what, len(bounds) - kept)
        return got

    def track(self, make: Any) -> tuple[Any, Any]:
        """``--mode first``: the face track (``make()``: detection on the first frame with
        a face and the re-detections after it), kept as one piece."""
        from ..face.landmarks import Detection  # start-up: as _compute's imports
        from ..face.track import FaceTrack  # start-up: as above

        store = staged_pieces(self.task, "crop-track")
        spec = {"landmarks": (np.float32, (68, 2)), "box": (np.float32, (4,)),
                "score": (np.float64, (1,)), "first_face": (np.int64, (1,)),
                "checked": (np.int64, (None,)), "drift": (np.float64, (None,)),
                "limit": (np.float64, (1,))}
        got = self.load(store, [(0, self.n)], lambda a, b: spec, "the face track")[0]
        if got is not None:
            return (Detection(got["landmarks"], got["box"], float(got["score"][0])),
                    FaceTrack(int(got["first_face"][0]), got["checked"], got["drift"],
                              float(got["limit"][0])))
        det, track = make()
        if store is not None:
            # as they are: a piece of other dtypes is not used (never rounded to fit)
            store.put(0, self.n, {
                "landmarks": np.asarray(det.landmarks), "box": np.asarray(det.box),
                "score": np.float64([det.score]),
                "first_face": np.int64([track.first_face]),
                "checked": np.asarray(track.checked, np.int64),
                "drift": np.asarray(track.drift, np.float64), "limit": np.float64([track.limit])})
        return det, track

    def crops(self, opt: Mapping[str, Any]) -> Any:
        """A :data:`~mexkit.face.align.ChunkKeeper` that stages each piece of crops (with the
        map that made it) and returns those an earlier run staged; None outside a run."""
        size = _PIECE_FRAMES
        store = staged_pieces(self.task, f"crop-frames-{size}")
        if store is None:
            return None
        side = opt["size"]
        colour = () if opt["grey"] else (3,)

        def spec(a: int, b: int) -> dict[str, tuple[Any, tuple]]:
            return {"frames": (np.uint8, (b - a, side, side, *colour)),
                    "transform": (np.float64, (2, 3))}

        bounds = self.bounds(size)
        kept = dict(zip(bounds, self.load(store, bounds, spec, "crops"), strict=True))

        def keep(a: int, b: int, M: np.ndarray, make: Any) -> np.ndarray:
            got = kept.pop((a, b), None)
            M = np.asarray(M, np.float64)
            if got is not None and np.array_equal(got["transform"], M):
                return got["frames"]
            if got is not None:
                logger.warning("sample %s: staged piece %d-%d was cropped by another map; "
                               "computing it again", self.task.sample_id, a, b)
            frames = make()
            store.put(a, b, {"frames": frames, "transform": M})
            return frames

        return keep


def _every_long(spec: Mapping[str, Any], opt: Mapping[str, Any], clip: Any, start: int,
                numbers: np.ndarray, where: str, long: _LongVideo
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``--mode every`` of a long video: faces detected piece by piece, each piece's
    detections staged; then gap-filling, the head-pose smoother and the warp over the whole
    video (:func:`~mexkit.face.align.align_detected`), read a piece at a time.

    Each frame's detection is independent of the others (dlib detects frame by frame, FAN
    in batches of 16 frames that a piece never splits), so the result is that of
    :func:`~mexkit.face.align.align_clip` on the whole video.
    """
    from ..face.align import align_detected  # start-up: as _compute's imports
    from ..face.landmarks import (  # start-up: as _compute's imports
        FAN_BATCH,
        DetectionBatch,
        detect_landmarks_batch,
    )

    size = _PIECE_FRAMES
    if opt["detector"] == "fan":  # whole batches of FAN's face detector in each piece
        size = -(-size // FAN_BATCH) * FAN_BATCH
    store = staged_pieces(long.task, f"crop-detect-{size}")
    bounds = long.bounds(size)

    def shapes(a: int, b: int) -> dict[str, tuple[Any, tuple]]:
        n = b - a
        return {"landmarks": (np.float32, (n, 68, 2)), "boxes": (np.float32, (n, 4)),
                "scores": (np.float32, (n,)), "found": (np.uint8, (n,))}

    pieces = long.load(store, bounds, shapes, "face detections")
    for i, (a, b) in enumerate(bounds):
        if pieces[i] is not None:
            continue
        batch = detect_landmarks_batch(clip.read_range(start + a, start + b, grey=False),
                                       detector=opt["detector"], upsample=opt["upsample"],
                                       device=opt["device"], allow_missing=True, where=where,
                                       first_frame=a)
        arrays = {"landmarks": batch.landmarks, "boxes": batch.boxes, "scores": batch.scores,
                  "found": batch.found.astype(np.uint8)}
        if store is not None:
            store.put(a, b, arrays)
        pieces[i] = arrays
    batch = DetectionBatch(*(np.concatenate([p[k] for p in pieces])  # type: ignore[index]
                             for k in ("landmarks", "boxes", "scores", "found")))
    batch = dataclasses.replace(batch, found=batch.found.astype(bool))
    res = align_detected(lambda a, b: clip.read_range(start + a, start + b, grey=False),
                         long.n, batch, detector=opt["detector"], size=opt["size"],
                         margin=opt["margin"], grey=opt["grey"], smooth=opt["smooth"],
                         max_gap=opt["max_gap"], chunk=size, where=where)
    return _aligned(res, spec, clip, start, numbers)


def _precropped_long(spec: Mapping[str, Any], opt: Mapping[str, Any], clip: Any, start: int,
                     numbers: np.ndarray, where: str, long: _LongVideo
                     ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``--detector none`` of a long video: the landmarks of frame 0 (one detection, found
    again), the frames resized piece by piece, each piece staged."""
    from ..face.align import AlignedClip, precropped  # start-up: as _compute's imports

    grey, size = opt["grey"], opt["size"]
    head = precropped(clip.read_range(start, start + 1, grey=grey), size=size, grey=grey,
                      where=where)
    keep = long.crops(opt) if size else None  # (a crop of the frames' own size: not kept)

    def make(a: int, b: int) -> np.ndarray:
        return precropped(clip.read_range(start + a, start + b, grey=grey), size=size,
                          grey=grey, estimate_landmarks=False).frames

    frames = np.concatenate([
        make(a, b) if keep is None else keep(a, b, head.transforms[0],
                                             lambda a=a, b=b: make(a, b))
        for a, b in long.bounds(_PIECE_FRAMES)])
    T = len(frames)
    res = AlignedClip(frames, np.repeat(head.landmarks[:1], T, axis=0),
                      np.repeat(head.transforms[:1], T, axis=0), np.repeat(head.scores[:1], T),
                      np.zeros(T, dtype=bool))
    return _aligned(res, spec, clip, start, numbers)


def _compute_box(spec: Mapping[str, Any], opt: Mapping[str, Any], clip: Any, start: int,
                 stop: int, numbers: np.ndarray, where: str, long: _LongVideo | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``--box detector``: the detector's box on the first frame, no alignment
    (:mod:`mexkit.face.boxcrop`); a long video's crops in staged pieces."""
    from ..face.boxcrop import crop_clip_by_box  # start-up: dlib, only for cropping

    up = 1 if opt["upsample"] is None else int(opt["upsample"])
    # a long video: the box (one detection) is found again, the crops are kept
    keep = None if long is None else long.crops(opt)
    res, box = crop_clip_by_box(lambda a, b: clip.read_range(start + a, start + b),
                                stop - start, size=opt["size"], grey=opt["grey"],
                                jpeg_quality=int(opt.get("jpeg") or 0), upsample=up,
                                chunk=_CHUNK if long is None else _PIECE_FRAMES, where=where,
                                keep=keep)
    if box.n_faces > 1:
        logger.warning("crop: sample %s: dlib finds %d faces in the first frame; the last "
                       "of its list is kept (--box detector)", spec["sample_id"], box.n_faces)
    if box.clipped:
        logger.warning("crop: sample %s: the face box starts before the frame's edge; it is "
                       "cut at the edge (a program slicing with negative numbers would wrap "
                       "around)", spec["sample_id"])
    arrays = {"frames": res.frames, "landmarks": res.landmarks,
              "transforms": res.transforms.astype(np.float64), "scores": res.scores,
              "interpolated": res.interpolated.astype(np.uint8), "frame_numbers": numbers}
    attrs = _attrs(spec, clip, start, len(res.frames), box.score)
    attrs["face_box"] = [box.left, box.top, box.right, box.bottom]
    return arrays, attrs


def _attrs(spec: Mapping[str, Any], clip: Any, start: int, T: int, score: float
           ) -> dict[str, Any]:
    a: dict[str, Any] = {k: spec[k] for k in _CARRY if spec.get(k) is not None}
    a["fps"] = float(spec.get("fps") or clip.fps)
    a["source"] = str(Path(spec["source"]).resolve())
    a["n_frames"] = T
    a["first_position"] = start
    a["detection_score"] = score
    for k in ("onset", "apex", "offset"):
        if k in a and start:
            a[k] = int(a[k]) - start  # positions in the stored clip
    if spec.get("intervals"):
        a["intervals"] = spec["intervals"]
    return a


def _check_crop(task: Task, arrays: Mapping[str, Any]) -> None:
    """What the crop stage makes for ``task``: checked on cache and --reuse hits."""
    e = task.payload["expect"]
    T, side = e["frames"], e["side"]
    frame = (side, side) if side else (None, None)
    colour = () if task.payload["params"]["grey"] else (3,)
    spec = {"frames": (np.uint8, (T, *frame, *colour)),
            "landmarks": ((np.float32, "nan"), (T, 68, 2)),
            "transforms": (np.float64, (T, 2, 3)), "scores": ((np.float32, "nan"), (T,)),
            "interpolated": (np.uint8, (T,)), "frame_numbers": (np.int64, (T,))}
    expect_arrays(arrays, spec, required=list(spec),
                  where=f"sample {task.sample_id!r}")


def _input_attrs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Who the clip is, from the sheet or the paths: the attributes a cached sample
    never supplies (:data:`~mexkit.pipeline.cache.INPUT_ATTRS`)."""
    a = {k: spec[k] for k in _CARRY if k in INPUT_ATTRS and spec.get(k) is not None}
    if spec.get("source"):
        a["source"] = str(Path(spec["source"]).resolve())
    if spec.get("intervals"):
        a["intervals"] = spec["intervals"]
    return a


def load_detector_ahead(detector: str, jobs: int, backend: str = "loky"
                        ) -> threading.Thread | None:
    """Start loading ``detector``'s models in this process while the command waits for
    its input (the sheet's path from the previous command of a pipeline); the loading
    thread, or None when nothing is loaded ahead: only dlib's models are (about 1.2 s of
    CPU), and only where the detections run in this process (one job, or threads;
    worker processes load their own)."""
    if detector != "dlib" or (jobs != 1 and backend != "threading"):
        return None
    from ..face.landmarks import load_dlib_in_background  # start-up: dlib, only for it

    return load_dlib_in_background()


def run_crop(specs: Sequence[ClipSpec], output: str | Path, *, detector: str = "dlib",
             mode: str = "first", size: int = 128, margin: float = 0.125, grey: bool = True,
             smooth: float = 8.0, max_gap: int = 5, upsample: int | None = None,
             device: str | None = None, jobs: int = 1, backend: str = "loky",
             progress: bool = True, upstream: Sequence[Mapping[str, Any]] = (),
             box: str = "landmarks", jpeg: int = 0) -> StageResult:
    """Detect, align and crop every clip; write the crop store.

    ``box="detector"`` crops by dlib's face box on the first frame, without
    alignment or margin (:mod:`mexkit.face.boxcrop`; ``mode`` and ``margin``
    do not apply, ``upsample`` defaults to 1); ``jpeg`` > 0 passes every crop
    through a JPEG encoding at that quality and back, as frames stored as
    JPEG files and read again are.

    A clip of more than 256 frames (a long video) is done in pieces, each
    staged as soon as it is done, so that an interrupted or killed run keeps
    them and the next run computes only the rest: the face detections of 256
    frames at a time (``mode="every"``), or the face track and the crops of
    256 frames at a time (the other modes).  The result equals a run in one
    go; shorter clips are one unit of work.
    """
    device = check_device(device)  # a GPU that is not there fails once, before any clip
    check_option("box", box, BOXES)
    check_range("jpeg", jpeg, 0, 100)
    if box == "detector" and detector != "dlib":
        raise ParameterError(f"--box detector crops by dlib's face detector box; it cannot "
                             f"be used with --detector {detector}.")

    if backend == "threading" and jobs > 1 and detector == "fan":
        # the face models are loaded once per process and shared by the threads; dlib's
        # detector takes its calls in turn (face.landmarks.dlib_detector_run: threads
        # running it at once had changed each other's detection scores), FAN's does not
        raise ParameterError(
            "Invalid value for the 'backend' parameter: crop with the 'fan' detector cannot "
            "use 'threading' (the detector is shared by the threads and results would "
            "depend on timing); use --backend loky.")
    params = {"detector": detector, "mode": mode, "size": size, "margin": margin,
              "grey": grey, "smooth": smooth if mode == "every" else None,
              "max_gap": max_gap if mode == "every" else None, "upsample": upsample}
    if mode == "every" and box == "landmarks":
        # issue 28: the head pose of the rigid landmarks, Whittaker-smoothed (before: a
        # Gaussian on the box of all 68); stores made the other way are not mixed in
        params["smoother"] = "rigid-whittaker"
    # the earlier parameters alone when these are at their defaults: earlier stores and
    # cache entries keep their keys
    if box != "landmarks":
        params.update({"box": box, "mode": None, "margin": None})
    if jpeg:
        params["jpeg"] = int(jpeg)
    tasks: list[Task] = []
    failures: dict[str, str] = {}
    shard = current_config().shard
    for spec in specs:
        sid = spec["sample_id"]
        if not in_shard(sid, shard):  # another job's sample: do not even hash its clip
            continue
        if not spec.get("source"):
            failures[sid] = "no video file or image folder found for this sample"
            continue
        try:
            with open_clip(spec["source"], fps=spec.get("fps")) as clip:
                content = clip.content_hash()
                n_frames = clip.n_frames
        except (MediaError, OSError, ValueError) as exc:  # this clip fails alone
            failures[sid] = str(exc) if isinstance(exc, MediaError) else (
                f"{spec['source']}: {type(exc).__name__}: {exc}")
            logger.error("sample %s failed: %s", sid, failures[sid])
            continue
        annotations = {k: spec.get(k) for k in ("start", "stop", "intervals", *_CARRY)}
        key = cache_key("crop", CROP_VERSION, params, content + repr(sorted(
            (k, repr(v)) for k, v in annotations.items())))
        expect = {"frames": (spec.get("stop") or n_frames) - (spec.get("start") or 0),
                  "side": size}
        tasks.append(Task(sid, key, _input_attrs(spec), {
            "clip": dict(spec), "params": {**params, "device": device}, "expect": expect}))
    return run_stage(tasks, _compute, output=output, stage="crop", params=params,
                     upstream=upstream, jobs=jobs, backend=backend, progress=progress,
                     extra_failures=failures, check=_check_crop,
                     all_samples=[spec["sample_id"] for spec in specs],
                     inputs=[s["source"] for s in specs if s.get("source")])
