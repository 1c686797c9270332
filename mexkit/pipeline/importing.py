"""``mexkit import``: a store from data that arrive already preprocessed.

Some public releases distribute a dataset not as videos and a sheet but as
the arrays a paper's models consume (the MEGC 2019 composite as 28x28
optical-flow images, with the apex faces beside them).  A dataset adapter
that can read such a release registers an
:class:`~mexkit.io.datasets.registry.Importer`; this stage asks it for the
samples and their files, reads each sample's arrays, finds the 68 landmarks
of the face the importer offers (dlib, as ``mexkit crop`` does; scaled to the
stored arrays' pixels; NaN where no face is found) and writes one store,
through the same runner as every stage (cache keys from the files' contents,
resumable, one failure per sample).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NoFaceError, ParameterError
from ..io.datasets import adapters, get_adapter
from .cache import cache_key
from .runner import StageResult, Task, run_stage
from .stages import expect_arrays

__all__ = ["run_import", "import_variants", "IMPORT_VERSION"]

logger = logging.getLogger("mexkit")

IMPORT_VERSION = 1


def import_variants() -> dict[str, list[str]]:
    """Dataset name -> its importer's variants (the first is the default)."""
    return {a.name: list(a.importer.variants) for a in adapters() if a.importer is not None}


def _file_hash(paths: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for role in sorted(paths):
        h.update(role.encode() + b"\0")
        with open(paths[role], "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _compute(task: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from ..face.landmarks import detect_landmarks  # start-up: dlib, only for the landmarks

    p = task.payload
    read = get_adapter(p["dataset"]).importer.read
    arrays, extra, face = read(p["files"], p["variant"], task.sample_id)
    attrs: dict[str, Any] = dict(extra)
    if face is not None and p["landmarks"]:
        image, scale = face
        try:
            det = detect_landmarks(np.ascontiguousarray(image), where=f"sample "
                                   f"{task.sample_id!r} ({p['files'].get('apex', '')})")
            marks = det.landmarks.astype(np.float32) * np.float32(scale)
            attrs["detection_score"] = float(det.score)
        except NoFaceError as exc:
            logger.warning("import: %s Its landmarks are NaN.", exc)
            marks = np.full((68, 2), np.nan, np.float32)
            attrs["detection_score"] = float("nan")
        arrays["landmarks"] = marks[None]
        attrs["landmark_scale"] = float(scale)
    return arrays, attrs


#: What an import may write per sample: checked on the samples taken from ``--cache`` or
#: ``--reuse`` instead of being read again (the release decides the sizes).
_ARRAYS = {"flow": (np.float32, (1, 2, None, None)), "strain": (np.float32, (1, None, None)),
           "apex_image": (np.uint8, (None, None, 3)), "frames": (np.uint8, (1, None, None, 3)),
           "landmarks": ((np.float32, "nan"), (1, 68, 2))}
_REQUIRED = {"flow": ("flow", "strain"), "apex": ("apex_image", "frames")}


def _check_import(task: Task, arrays: Mapping[str, Any]) -> None:
    variant = task.payload["variant"]
    expect_arrays(arrays, _ARRAYS, required=_REQUIRED.get(variant, ()),
                  where=f"sample {task.sample_id!r}")


def run_import(root: str | Path, output: str | Path, *, dataset: str,
               variant: str | None = None, sheet: str | Path | None = None,
               landmarks: bool = True, jobs: int = 1, backend: str = "loky",
               progress: bool = True) -> StageResult:
    """Import a preprocessed release at ``root`` into the store ``output``.

    Parameters
    ----------
    root : path
        The release's folder.
    output : path
        The store to write.
    dataset : str
        A dataset whose adapter has an importer (:func:`import_variants`).
    variant : str, optional
        Which of the importer's stores (default: its first).
    sheet : path, optional
        The release's list, when not where the adapter expects it.
    landmarks : bool
        Find the 68 landmarks of the face each sample offers (dlib).
    jobs, backend, progress
        As for every stage.

    Raises
    ------
    ParameterError
        The dataset has no importer, or no such variant.
    DatasetError
        The release's list cannot be read.
    """
    adapter = get_adapter(dataset)
    if adapter.importer is None:
        names = ", ".join(import_variants()) or "none"
        raise ParameterError(f"Invalid value for the 'dataset' parameter: {dataset!r} is read "
                             f"from videos and a sheet (mexkit crop); the datasets that "
                             f"arrive preprocessed are: {names}.")
    variants = list(adapter.importer.variants)
    variant = variant or variants[0]
    if variant not in variants:
        raise ParameterError(f"Invalid value for the 'variant' parameter. Allowed values for "
                             f"{dataset} are {', '.join(variants)}, but got {variant!r} "
                             "instead.")
    root = Path(root)
    entries = adapter.importer.entries(root, Path(sheet) if sheet is not None else None)
    params = {"dataset": dataset, "variant": variant, "landmarks": bool(landmarks),
              "detector": "dlib" if landmarks else None}
    tasks: list[Task] = []
    for sample, files in entries:  # a missing file fails its sample when read
        attrs = sample.attrs()
        attrs["files"] = {k: str(Path(v).relative_to(root)) if Path(v).is_relative_to(root)
                          else str(v) for k, v in files.items()}
        key = cache_key("import", IMPORT_VERSION, params, _file_hash(files))
        tasks.append(Task(sample.sample_id, key, attrs,
                          {"dataset": dataset, "variant": variant, "files": files,
                           "landmarks": bool(landmarks)}))
    logger.info("import: %d sample(s) of %s (%s) from %s", len(tasks), dataset, variant, root)
    return run_stage(tasks, _compute, output=output, stage="import", params=params,
                     jobs=jobs, backend=backend, progress=progress, check=_check_import)
