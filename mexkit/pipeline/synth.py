"""Write synthetic datasets laid out like CASME II and SAMM Long Videos.

This is the only module of :mod:`mexkit.synth` that writes files. Every file is
deterministic: the same arguments give byte-identical output (zip members of
``.xlsx`` and ``.npz`` files carry a fixed timestamp, the workbook a fixed
creation date).

CASME II-like (:func:`write_casme2_like`)::

    root/CASME2-coding.xlsx         Subject, Filename, OnsetFrame, ApexFrame,
                                    OffsetFrame, Action Units, Estimated Emotion
    root/samples.csv                generic sheet (0-based positions)
    root/subXX/EPYY_ZZ/img<N>.jpg   frames; N starts at a clip's first frame
                                    number (1-199), as in CASME II
    root/truth/subXX/EPYY_ZZ.npz    ground truth of the clip
    root/synth-casme2.json          the generator's parameters

SAMM Long Videos-like (:func:`write_samm_lv_like`)::

    root/SAMM_LongVideos_V2_Release.xlsx   title block, header on row 10:
                                    Subject, Filename, Inducement Code, Onset,
                                    Apex, Offset, Duration, Type, Action Units,
                                    Notes (one row per micro/macro-expression)
    root/intervals.csv              subject, video, onset, offset, emotion, type
                                    (0-based inclusive positions; micro and macro)
    root/<subject>_<n>/<subject>_<frame:05d>.jpg   frames, numbered from 1
    root/truth/<subject>_<n>.npz    ground truth of the video
    root/synth-samm-lv.json         the generator's parameters

Frames are JPEG (quality 95, as the datasets ship them) or PNG (lossless, so
the frames equal the generator's arrays). JPEG compression changes pixel
values by a few grey levels; the ground truth is that of the uncompressed
frames.

Ground-truth files (``np.load(path)`` works with ``allow_pickle=False``):
``flow`` (T, 2, H, W) float32 (with ``dense_flow``: by default for clips, not for long videos)
is the forward displacement from the clip's first frame to frame t in pixels
(channel 0 = x/u, 1 = y/v; see :mod:`mexkit.synth.generate`), rounded to a
multiple of 2**-12 px (error <= 1.3e-4 px, below the generator's 2e-4 px) so
that it compresses;
``landmarks`` (T, 68, 2) float32; ``frame_numbers`` (T,) int64; plus the
annotation scalars and the factors of the flow (``activation``, ``rigid``,
``expression`` / ``fields``) from which it can be rebuilt exactly.

References
----------
.. [1] W.-J. Yan et al., "CASME II: An improved spontaneous micro-expression
   database and the baseline evaluation", PLoS ONE 9(1), e86041, 2014.
.. [2] C. H. Yap et al., "SAMM Long Videos: A spontaneous facial micro- and
   macro-expressions dataset", IEEE FG 2020.
.. [3] J. See et al., "MEGC 2019 - the second facial micro-expressions grand
   challenge", IEEE FG 2019 (3-class composite scheme).
"""
from __future__ import annotations

import csv
import datetime
import functools
import io
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import __version__
from .._validate import check_option, check_range
from ..errors import DatasetError, MediaError, ParameterError
from ..io.atomic import atomic_open, atomic_path, write_json
from ..io.datasets.generic import write_generic_rows
from ..synth.face import make_subject
from ..synth.generate import CLASSES, MICRO_INTENSITY, MICRO_SECONDS, make_clip, make_long_video
from .parallel import parallel_map

__all__ = [
    "CASME2_COLUMNS",
    "CASME2_EMOTIONS",
    "SAMM_LV_COLUMNS",
    "write_casme2_like",
    "write_samm_lv_like",
    "write_synthetic",
]

logger = logging.getLogger("mexkit")

#: Columns of CASME II's coding sheet, in order.
CASME2_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                  "Action Units", "Estimated Emotion")
#: Columns of SAMM Long Videos' sheet, in order.
SAMM_LV_COLUMNS = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset",
                   "Duration", "Type", "Action Units", "Notes")
#: Emotion words written for each class (CASME II / SAMM vocabulary).
CASME2_EMOTIONS = {"negative": "disgust", "positive": "happiness", "surprise": "surprise"}
SAMPLES_COLUMNS = ("subject", "clip", "path", "fps", "onset", "apex", "offset", "label",
                   "dataset", "emotion", "aus")
INTERVAL_COLUMNS = ("subject", "video", "onset", "offset", "emotion", "type")
SAMM_HEADER_ROW = 10

_FLOW_QUANTUM = 2.0 ** -12
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FIXED_TIME = datetime.datetime(2000, 1, 1)


def _quantize(a: np.ndarray) -> np.ndarray:
    """Round to a multiple of ``_FLOW_QUANTUM`` (exact in float32: a power of two)."""
    out = np.multiply(np.asarray(a, dtype=np.float32), np.float32(1.0 / _FLOW_QUANTUM))
    np.rint(out, out=out)                 # in place: a clip's flow is tens of megabytes
    out *= np.float32(_FLOW_QUANTUM)
    return out


def _aus_text(aus: tuple[int, ...]) -> str:
    return "+".join(str(a) for a in aus)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` equivalent with fixed zip timestamps, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            # ZipFile.open(ZipInfo) ignores the archive's compresslevel
            for attr in ("compress_level", "_compresslevel"):
                if hasattr(info, attr):
                    setattr(info, attr, 1)
                    break
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def _save_xlsx(workbook, path: Path) -> None:
    """Save an openpyxl workbook with fixed dates and zip timestamps."""
    workbook.properties.creator = "mexkit"
    workbook.properties.created = _FIXED_TIME
    buf = io.BytesIO()
    workbook.save(buf)
    stamp = b"2000-01-01T00:00:00Z"
    with atomic_path(path) as tmp, zipfile.ZipFile(buf) as src, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for member in src.infolist():
            data = src.read(member.filename)
            if member.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                              rb"\g<1>" + stamp + rb"\g<2>", data)
            info = zipfile.ZipInfo(member.filename, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, data)


def _save_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _save_json(path: Path, obj: dict) -> None:
    write_json(path, obj, indent=1)


def _save_image(path: Path, rgb: np.ndarray, fmt: str, quality: int) -> None:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise MediaError(f"OpenCV could not encode frame {path}.")
    path.write_bytes(buf.tobytes())


def _prepare_dir(path: Path, overwrite: bool) -> None:
    if path.exists():
        if not overwrite:
            raise DatasetError(
                f"{path} already exists; pass overwrite=True to replace it."
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _prepare_root(root: str | os.PathLike, names: Sequence[str], overwrite: bool
                  ) -> tuple[Path, ...]:
    """Create ``root``; return ``root / name`` for each name, refusing existing ones
    unless ``overwrite``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = tuple(root / name for name in names)
    for path in paths:
        if path.exists() and not overwrite:
            raise DatasetError(f"{path} already exists; pass overwrite=True to replace it.")
    return (root, *paths)


def _subject_seed(seed: int, index: int, tag: int) -> int:
    return int(np.random.SeedSequence([seed, index, tag]).generate_state(1)[0])


def _check_common(fps: float, seed: int, image_format: str, jpeg_quality: int,
                  noise_sigma: float) -> None:
    check_range("fps", fps, 0.0, low_open=True)
    check_range("seed", seed, 0)
    check_option("image_format", image_format, ("jpg", "png"))
    check_range("jpeg_quality", jpeg_quality, 1, 100)
    check_range("noise_sigma", noise_sigma, 0.0)


def _check_pair(name: str, pair: tuple[float, float], low: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"Invalid value for the {name!r} parameter: expected (low, high), got {pair!r}."
        ) from exc
    if not low <= lo <= hi:
        raise ParameterError(
            f"Invalid value for the {name!r} parameter: need {low} <= low <= high, "
            f"but got {pair!r}."
        )
    return lo, hi


def _write_casme2_subjects(items: list[tuple[int, list[int] | None, dict[str, Any]]]
                           ) -> list[tuple[str, list[tuple], list[tuple]]]:
    """Write the given clips (all of a subject's for None); their annotation rows, per item."""
    return [_write_casme2_subject(s, clips=clips, **common) for s, clips, common in items]


@functools.lru_cache(maxsize=2)
def _casme2_subject(seed: int, s: int, size: int) -> Any:
    """Subject ``s``'s face, made once per process for the clips of it that it writes."""
    return make_subject(_subject_seed(seed, s, 2), size=size)


def _casme2_chunks(subjects: range, clips_per_subject: int, jobs: int
                   ) -> list[list[tuple[int, list[int] | None]]]:
    """The work of :func:`write_casme2_like`: (subject, clip positions) per chunk.

    One worker: a subject per chunk. Several: the clips, subject after subject, cut
    into a multiple of ``jobs`` equal runs, so that the workers get equal shares
    (5 subjects on 2 workers as subjects would be 3 against 2; a subject split
    between two chunks costs its face twice, 0.05 s).
    """
    if jobs == 1:
        return [[(s, None)] for s in subjects]
    flat = [(s, ci) for s in subjects for ci in range(clips_per_subject)]
    n_chunks = min(len(flat), jobs * -(-len(subjects) // jobs))
    chunks = []
    for part in np.array_split(np.arange(len(flat)), n_chunks):
        runs: dict[int, list[int]] = {}
        for i in part:
            s, ci = flat[int(i)]
            runs.setdefault(s, []).append(ci)
        chunks.append(list(runs.items()))
    return chunks


def _write_casme2_subject(s: int, *, root: Path, classes: tuple[str, ...],
                          clips_per_class: int, fps: float, seed: int, size: int,
                          image_format: str, jpeg_quality: int, seconds: tuple[float, float],
                          intensity: tuple[float, float], noise_sigma: float,
                          head_translation: float, head_rotation: float, overwrite: bool,
                          dense_flow: bool = True, clips: list[int] | None = None
                          ) -> tuple[str, list[tuple], list[tuple]]:
    """Write subject ``s``'s clips (those at positions ``clips``; all for None) and their
    truth files (see :func:`write_casme2_like`). A clip depends on the seed, the
    subject and its position only, whichever process writes it."""
    sec, amp = seconds, intensity
    sheet_rows: list[tuple] = []
    csv_rows: list[tuple] = []
    subject = _casme2_subject(seed, s, size)
    code = f"sub{s:02d}"
    plan = [c for c in classes for _ in range(clips_per_class)]
    order = np.random.default_rng([seed, s, 3]).permutation(len(plan))
    for ci, k in enumerate(order):
        if clips is not None and ci not in clips:
            continue
        label = plan[int(k)]
        rng = np.random.default_rng([seed, s, ci, 4])
        span = max(2, int(round(rng.uniform(*sec) * fps)))
        truth = make_clip(subject, label=label, fps=fps, n_frames=span + 1,
                          intensity=float(rng.uniform(*amp)), noise_sigma=noise_sigma,
                          head_translation=head_translation,
                          head_rotation=head_rotation, rng=rng, dense_flow=dense_flow)
        first = int(rng.integers(1, 200))
        name = f"EP{ci + 1:02d}_{int(rng.integers(1, 10)):02d}"
        numbers = first + np.arange(len(truth.frames), dtype=np.int64)
        folder = root / code / name
        _prepare_dir(folder, overwrite)
        for n, frame in zip(numbers, truth.frames, strict=True):
            _save_image(folder / f"img{n}.{image_format}", frame, image_format, jpeg_quality)
        emotion = CASME2_EMOTIONS[label]
        aus = _aus_text(truth.aus)
        _save_npz(root / "truth" / code / f"{name}.npz", {
            **({"flow": _quantize(truth.flow)} if truth.flow is not None else {}),
            "landmarks": truth.landmarks,
            "frame_numbers": numbers,
            "onset": np.int64(truth.onset),
            "apex": np.int64(truth.apex),
            "offset": np.int64(truth.offset),
            "fps": np.float64(truth.fps),
            "intensity": np.float64(truth.intensity),
            "noise_sigma": np.float64(truth.noise_sigma),
            "label": np.str_(label),
            "emotion": np.str_(emotion),
            "aus": np.str_(aus),
            "subject_seed": np.int64(truth.subject_seed),
            "activation": truth.activation,
            "rigid": truth.rigid,
            "expression": _quantize(truth.expression),
            "image_format": np.str_(image_format),
            "flow_quantum": np.float64(_FLOW_QUANTUM),
        })
        sheet_rows.append((s, name, int(numbers[truth.onset]), int(numbers[truth.apex]),
                           int(numbers[truth.offset]), aus, emotion))
        csv_rows.append((code, name, f"{code}/{name}", repr(float(fps)), truth.onset,
                         truth.apex, truth.offset, label, "synth-casme2", emotion, aus))
    return code, sheet_rows, csv_rows


def write_casme2_like(root: str | os.PathLike, *, n_subjects: int = 4, clips_per_class: int = 2,
                      classes: tuple[str, ...] = CLASSES, fps: float = 200.0, seed: int = 0,
                      size: int = 240, image_format: str = "jpg", jpeg_quality: int = 95,
                      seconds: tuple[float, float] = MICRO_SECONDS,
                      intensity: tuple[float, float] = MICRO_INTENSITY,
                      noise_sigma: float = 1.0, head_translation: float = 0.3,
                      head_rotation: float = 0.1, overwrite: bool = False,
                      jobs: int = 1, first_subject: int = 1, dense_flow: bool = True) -> Path:
    """Write a synthetic micro-expression dataset laid out like CASME II.

    Each subject gets ``clips_per_class`` clips of every class, in a shuffled
    order; a clip runs from onset to offset, as CASME II's do.

    Parameters
    ----------
    root : path
        Output folder (created).
    n_subjects : int, optional
        Number of subjects (folders ``sub01`` ...), default 4 (CASME II: 26).
    clips_per_class : int, optional
        Clips per class and subject, default 2.
    classes : tuple of str, optional
        Subset of ``('negative', 'positive', 'surprise')``.
    fps : float, optional
        Frame rate, default 200 (CASME II).
    seed : int, optional
        Seed of everything; the same arguments give byte-identical files.
    size : int, optional
        Frame height and width in pixels, default 240 (face about 140 px wide).
    image_format : {'jpg', 'png'}, optional
        JPEG (lossy, like CASME II) or PNG (lossless); default 'jpg'.
    jpeg_quality : int, optional
        JPEG quality 1-100, default 95.
    seconds : (float, float), optional
        Range of expression durations (onset to offset) in seconds; default
        (0.2, 0.5).
    intensity : (float, float), optional
        Range of peak displacements in pixels; default (0.3, 2.0).
    noise_sigma : float, optional
        Sensor noise in grey levels, default 1.
    head_translation, head_rotation : float, optional
        Largest head drift per clip, pixels and degrees; defaults 0.3, 0.1.
    overwrite : bool, optional
        Replace existing output instead of raising :class:`DatasetError`.
    jobs : int, optional
        Subjects written at once, in worker processes (the files do not
        depend on it).
    first_subject : int, optional
        Number of the first subject (``sub05`` for 5); default 1. A subject's
        face and clips depend on the seed and its number only, so datasets
        of one seed with disjoint numbers have disjoint subjects (a
        pre-training set of other subjects).
    dense_flow : bool, optional
        Store each clip's per-frame flow (T, 2, H, W) in its truth file
        (default; about 1 MB a clip, and a fifth of the writing time). Without
        it the flow can still be rebuilt from ``expression``, ``activation``
        and ``rigid``; the frames are the same either way.

    Returns
    -------
    Path
        The annotation sheet ``root/CASME2-coding.xlsx``.

    References
    ----------
    .. [1] W.-J. Yan et al., "CASME II", PLoS ONE 9(1), e86041, 2014.
    """
    check_range("n_subjects", n_subjects, 1)
    check_range("clips_per_class", clips_per_class, 1)
    check_range("jobs", jobs, 1)
    check_range("first_subject", first_subject, 1)
    _check_common(fps, seed, image_format, jpeg_quality, noise_sigma)
    classes = tuple(classes)
    if not classes:
        raise ParameterError("Invalid value for the 'classes' parameter: it is empty.")
    for c in classes:
        check_option("classes", c, CLASSES)
    sec = _check_pair("seconds", seconds, 0.0)
    amp = _check_pair("intensity", intensity, 0.0)
    root, sheet, csv_path = _prepare_root(root, ("CASME2-coding.xlsx", "samples.csv"), overwrite)

    common = {"root": root, "classes": classes, "clips_per_class": clips_per_class,
              "fps": fps, "seed": seed, "size": size, "image_format": image_format,
              "jpeg_quality": jpeg_quality, "seconds": sec, "intensity": amp,
              "noise_sigma": noise_sigma, "head_translation": head_translation,
              "head_rotation": head_rotation, "overwrite": overwrite,
              "dense_flow": bool(dense_flow)}
    sheet_rows, csv_rows = [], []
    # clips are independent (each has its own seeds): the same bytes for any ``jobs``
    subjects = range(first_subject, first_subject + n_subjects)
    chunks = _casme2_chunks(subjects, len(classes) * clips_per_class, jobs)
    for rows in parallel_map(_write_casme2_subjects,
                             ([(s, clips, common) for s, clips in chunk] for chunk in chunks),
                             jobs=min(jobs, len(chunks))):
        for code, sheet_part, csv_part in rows:
            sheet_rows.extend(sheet_part)
            csv_rows.extend(csv_part)
            logger.info("synth: wrote %s (%d clips)", code, len(csv_part))

    sheet_rows.sort(key=lambda r: (r[0], r[1]))
    csv_rows.sort(key=lambda r: (r[0], r[1]))
    import openpyxl  # start-up: the sheet only (not the workers rendering clips)

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(CASME2_COLUMNS))
    for row in sheet_rows:
        ws.append(list(row))
    _save_xlsx(wb, sheet)
    write_generic_rows(csv_path, csv_rows)
    _save_json(root / "synth-casme2.json", {
        "generator": "mexkit.pipeline.synth.write_casme2_like", "mexkit_version": __version__,
        "n_subjects": n_subjects, "first_subject": first_subject,
        "clips_per_class": clips_per_class, "classes": list(classes),
        "fps": float(fps), "seed": seed, "size": size, "image_format": image_format,
        "jpeg_quality": jpeg_quality, "seconds": list(sec), "intensity": list(amp),
        "noise_sigma": noise_sigma, "head_translation": head_translation,
        "head_rotation": head_rotation, "frame_positions": "0-based in samples.csv and truth",
        "dense_flow": bool(dense_flow),
    })
    return sheet


def _write_long_video_frames(video: Any, folder: Path, code: str, numbers: np.ndarray, *,
                             chunk: int, image_format: str, jpeg_quality: int,
                             dense_flow: bool) -> list[np.ndarray]:
    """Render a long video ``chunk`` frames at a time into ``folder`` (SAMM's file names).

    Returns the quantized flow of each chunk when ``dense_flow``, else nothing.
    """
    flows = []
    for start in range(0, video.n_frames, chunk):
        stop = min(start + chunk, video.n_frames)
        for n, frame in zip(numbers[start:stop], video.frames(start, stop), strict=True):
            _save_image(folder / f"{code}_{n:05d}.{image_format}", frame, image_format,
                        jpeg_quality)
        if dense_flow:
            flows.append(_quantize(video.flow(start, stop)))
    return flows


def _long_video_truth(video: Any, numbers: np.ndarray, image_format: str,
                      flows: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of a long video's ``truth/<video>.npz`` (with ``flow`` when given)."""
    iv = video.intervals
    arrays = {
        "landmarks": video.landmarks,
        "frame_numbers": numbers,
        "fps": np.float64(video.fps),
        "noise_sigma": np.float64(video.noise_sigma),
        "subject_seed": np.int64(video.subject_seed),
        "onsets": np.array([i.onset for i in iv], dtype=np.int64),
        "apexes": np.array([i.apex for i in iv], dtype=np.int64),
        "offsets": np.array([i.offset for i in iv], dtype=np.int64),
        "kinds": np.array([i.kind for i in iv], dtype="<U5"),
        "labels": np.array([i.label for i in iv], dtype="<U8"),
        "aus": np.array([_aus_text(i.aus) for i in iv], dtype="<U8"),
        "intensities": np.array([i.intensity for i in iv], dtype=np.float64),
        "activation": video.activation,
        "rigid": video.rigid,
        "fields": _quantize(video.fields),
        "image_format": np.str_(image_format),
        "flow_quantum": np.float64(_FLOW_QUANTUM),
    }
    if flows:
        arrays["flow"] = np.concatenate(flows, axis=0)
    return arrays


def _samm_lv_rows(code: str, video_name: str, v: int, intervals: Sequence[Any],
                  numbers: np.ndarray) -> tuple[list[tuple], list[tuple]]:
    """A video's rows of the SAMM-LV sheet (frame numbers) and of intervals.csv (positions).

    Blinks are left out of both, as SAMM Long Videos does not annotate them.
    """
    sheet_rows, csv_rows = [], []
    k = 0
    for it in intervals:
        if it.kind == "blink":
            continue
        k += 1
        emotion = CASME2_EMOTIONS[it.label]
        kind = "Micro - 1/2" if it.kind == "micro" else "Macro"
        onset_n, offset_n = int(numbers[it.onset]), int(numbers[it.offset])
        sheet_rows.append((code, f"{video_name}_{k}", v, onset_n, int(numbers[it.apex]),
                           offset_n, offset_n - onset_n + 1, kind, _aus_text(it.aus),
                           f"synthetic {it.label} ({emotion}), peak {it.intensity:.2f} px"))
        csv_rows.append((code, video_name, it.onset, it.offset, emotion, it.kind))
    return sheet_rows, csv_rows


def _write_samm_lv_sheet(path: Path, rows: list[tuple], *, seed: int, fps: float) -> None:
    """SAMM Long Videos' workbook: a title block, the header at SAMM's row, the rows."""
    import openpyxl  # start-up: as in write_casme2_like

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "FACS_Movement_Only"
    ws.cell(row=1, column=1, value="SAMM Long Videos - synthetic data written by mexkit")
    ws.cell(row=2, column=1, value=f"mexkit {__version__}, seed {seed}, {float(fps)} fps")
    ws.cell(row=3, column=1, value="Onset, Apex and Offset are frame numbers of the image "
                                   "files (first frame 1); Duration = Offset - Onset + 1.")
    ws.cell(row=4, column=1, value="Ground truth: truth/<video>.npz; intervals.csv holds "
                                   "0-based positions.")
    for col, name in enumerate(SAMM_LV_COLUMNS, start=1):
        ws.cell(row=SAMM_HEADER_ROW, column=col, value=name)
    for r, row in enumerate(rows, start=SAMM_HEADER_ROW + 1):
        for col, value in enumerate(row, start=1):
            ws.cell(row=r, column=col, value=value)
    _save_xlsx(wb, path)


def write_samm_lv_like(root: str | os.PathLike, *, n_subjects: int = 2,
                       videos_per_subject: int = 1, fps: float = 50.0, seconds: float = 12.0,
                       seed: int = 0, size: int = 240, image_format: str = "jpg",
                       jpeg_quality: int = 95, n_micro: int = 3, n_macro: int = 1,
                       n_blinks: int = 2, noise_sigma: float = 1.0,
                       head_translation: float = 1.0, head_rotation: float = 0.3,
                       micro_intensity: tuple[float, float] = MICRO_INTENSITY,
                       dense_flow: bool = False, chunk: int = 64,
                       overwrite: bool = False) -> Path:
    """Write synthetic long videos laid out like SAMM Long Videos.

    Parameters
    ----------
    root : path
        Output folder (created).
    n_subjects : int, optional
        Subjects, coded ``'006'``, ``'007'``, ... as in SAMM; default 2.
    videos_per_subject : int, optional
        Videos per subject (folders ``006_1``, ``006_2``, ...); default 1.
    fps : float, optional
        Frame rate, default 50 (SAMM Long Videos: 200).
    seconds : float, optional
        Length of every video, default 12.
    seed : int, optional
        Seed of everything; the same arguments give byte-identical files.
    size : int, optional
        Frame height and width, default 240.
    image_format : {'jpg', 'png'}, optional
    jpeg_quality : int, optional
    n_micro, n_macro, n_blinks : int, optional
        Events per video; defaults 3, 1, 2. Blinks are not annotated (as in
        SAMM Long Videos) but are listed in the truth file.
    noise_sigma : float, optional
    head_translation, head_rotation : float, optional
        Largest head drift per video, pixels and degrees; defaults 1, 0.3.
    micro_intensity : (float, float), optional
        Range of the micro-expressions' peak displacement, pixels; default
        (0.3, 2.0).
    dense_flow : bool, optional
        Also store the per-frame flow (T, 2, H, W) in the truth file (large);
        it can always be rebuilt from ``fields``, ``activation`` and ``rigid``.
    chunk : int, optional
        Frames rendered at a time (memory), default 64.
    overwrite : bool, optional

    Returns
    -------
    Path
        The annotation sheet ``root/SAMM_LongVideos_V2_Release.xlsx``.

    References
    ----------
    .. [1] C. H. Yap et al., "SAMM Long Videos", IEEE FG 2020.
    """
    check_range("n_subjects", n_subjects, 1)
    check_range("videos_per_subject", videos_per_subject, 1)
    check_range("seconds", seconds, 0.0, low_open=True)
    check_range("chunk", chunk, 1)
    _check_common(fps, seed, image_format, jpeg_quality, noise_sigma)
    root, sheet, csv_path = _prepare_root(
        root, ("SAMM_LongVideos_V2_Release.xlsx", "intervals.csv"), overwrite)

    sheet_rows, csv_rows = [], []
    for s in range(1, n_subjects + 1):
        code = f"{s + 5:03d}"
        subject = make_subject(_subject_seed(seed, s, 5), size=size)
        for v in range(1, videos_per_subject + 1):
            video_name = f"{code}_{v}"
            video = make_long_video(subject, fps=fps, seconds=seconds, n_micro=n_micro,
                                    n_macro=n_macro, n_blinks=n_blinks,
                                    noise_sigma=noise_sigma,
                                    head_translation=head_translation,
                                    head_rotation=head_rotation,
                                    micro_intensity=micro_intensity,
                                    rng=np.random.default_rng([seed, s, v, 6]))
            numbers = 1 + np.arange(video.n_frames, dtype=np.int64)
            folder = root / video_name
            _prepare_dir(folder, overwrite)
            flows = _write_long_video_frames(video, folder, code, numbers, chunk=chunk,
                                             image_format=image_format,
                                             jpeg_quality=jpeg_quality, dense_flow=dense_flow)
            _save_npz(root / "truth" / f"{video_name}.npz",
                      _long_video_truth(video, numbers, image_format, flows))
            rows, intervals = _samm_lv_rows(code, video_name, v, video.intervals, numbers)
            sheet_rows += rows
            csv_rows += intervals
            logger.info("synth: wrote %s (%d frames, %d events)", video_name, video.n_frames,
                        len(video.intervals))

    _write_samm_lv_sheet(sheet, sheet_rows, seed=seed, fps=fps)
    _save_csv(csv_path, INTERVAL_COLUMNS, csv_rows)
    _save_json(root / "synth-samm-lv.json", {
        "generator": "mexkit.pipeline.synth.write_samm_lv_like", "mexkit_version": __version__,
        "n_subjects": n_subjects, "videos_per_subject": videos_per_subject, "fps": float(fps),
        "seconds": float(seconds), "seed": seed, "size": size, "image_format": image_format,
        "jpeg_quality": jpeg_quality, "n_micro": n_micro, "n_macro": n_macro,
        "n_blinks": n_blinks, "noise_sigma": noise_sigma,
        "head_translation": head_translation, "head_rotation": head_rotation,
        "micro_intensity": [float(v) for v in micro_intensity],
        "dense_flow": bool(dense_flow), "sheet_header_row": SAMM_HEADER_ROW,
        "frame_positions": "0-based in intervals.csv and truth; sheet holds frame numbers",
    })
    return sheet


# what the last successful run wrote into ROOT: the same command again is a no-op
_RECORD = ".mexkit-synth.json"


def write_synthetic(root: str | os.PathLike, *, subjects: int = 4, clips_per_class: int = 2,
                    classes: str = "negative,positive,surprise", fps: float | None = None,
                    size: int = 240, image_format: str = "jpg", noise: float = 1.0,
                    intensity: tuple[float, float] = (0.3, 2.0), seed: int = 0,
                    long_videos: bool = False, videos_per_subject: int = 1,
                    seconds: float = 12.0, overwrite: bool = False, jobs: int = 1,
                    first_subject: int = 1, dense_flow: bool | None = None) -> Path:
    """``mexkit synth``: a CASME II-like dataset, or SAMM-LV-like long videos; its sheet.

    The same options again keep the dataset the last run wrote into ``root``
    (recorded in ``root/.mexkit-synth.json``), so that a pipeline starting
    with ``mexkit synth`` resumes; a dataset written otherwise is replaced
    only with ``overwrite``. ``dense_flow`` (None: for clips, not for long
    videos) stores the per-frame flow in the truth files.

    Raises
    ------
    DatasetError
        ``root`` holds a dataset these options did not write, and
        ``overwrite`` is False.
    """
    root = Path(root)
    if long_videos and first_subject != 1:
        raise ParameterError("--first-subject applies to clips (not --long).")
    sheet = root / ("SAMM_LongVideos_V2_Release.xlsx" if long_videos else "samples.csv")
    lo, hi = (float(v) for v in intensity)
    settings = {"version": __version__, "subjects": subjects,
                "clips_per_class": None if long_videos else clips_per_class,
                "classes": None if long_videos else classes, "fps": fps, "size": size,
                "format": image_format, "noise": noise,
                "intensity": [lo, hi], "seed": seed,
                "long": long_videos,
                "videos_per_subject": videos_per_subject if long_videos else None,
                "seconds": seconds if long_videos else None}
    if first_subject != 1:  # only then: records of earlier datasets still match
        settings["first_subject"] = first_subject
    if dense_flow is not None and dense_flow != (not long_videos):  # as first_subject
        settings["dense_flow"] = bool(dense_flow)
    record = root / _RECORD
    if not overwrite and sheet.exists() and record.exists():
        try:
            same = json.loads(record.read_text()) == settings
        except (OSError, ValueError):
            same = False
        if same:  # the same command again: the dataset is there, as a resumed run
            logger.info("synth: %s already holds this synthetic dataset (same options); kept",
                        root)
            return sheet
    if overwrite:  # a run that stops half-way leaves no record of the old dataset
        record.unlink(missing_ok=True)
    try:
        if long_videos:
            sheet = write_samm_lv_like(root, n_subjects=subjects,
                                       videos_per_subject=videos_per_subject,
                                       fps=fps or 50.0, seconds=seconds, seed=seed, size=size,
                                       image_format=image_format, noise_sigma=noise,
                                       micro_intensity=(lo, hi), overwrite=overwrite,
                                       dense_flow=bool(dense_flow))
        else:
            write_casme2_like(root, n_subjects=subjects, clips_per_class=clips_per_class,
                              classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
                              fps=fps or 100.0, seed=seed, size=size,
                              image_format=image_format, noise_sigma=noise,
                              intensity=(lo, hi), overwrite=overwrite, jobs=jobs,
                              first_subject=first_subject,
                              dense_flow=dense_flow is None or dense_flow)
    except DatasetError as exc:
        if "already exists" not in str(exc):
            raise
        raise DatasetError(
            f"{root} already holds a dataset that these options did not write "
            f"({str(exc).split(';')[0]}); give --overwrite to replace it, or another ROOT."
        ) from exc
    write_json(record, settings)
    return sheet
