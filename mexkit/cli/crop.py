"""``mexkit crop`` (detection, 68-point landmarks, alignment and crop) and ``mexkit
samples`` (what ``crop`` reads from a dataset's annotation sheet)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import ParameterError
from ..pipeline.crop import (
    BOXES,
    clips_from_paths,
    clips_from_samples,
    crop_preset,
    default_sheet,
    default_unit,
    load_detector_ahead,
    read_annotations,
    run_crop,
    sample_listing,
    split_inputs,
)
from ..pipeline.options import dataset_names
from ._common import device_option, jobs_options, out, output_option, progress, resolve_input


def dataset_options(f):
    f = click.option("--sheet", "sheets", multiple=True, metavar="KEY=FILE",
                     help="Another sheet the dataset takes (repeatable): megc2019's parts, "
                          "for their frame numbers (--sheet casme2=CASME2-coding.xlsx); "
                          "CAS(ME)^3's macro-expressions (--sheet macro=FILE).")(f)
    f = click.option("--dataset-fps", "dataset_fps", type=click.FloatRange(min=0, min_open=True),
                     default=None,
                     help="Override the dataset's published frame rate (e.g. synthetic "
                          "long videos written at 50 fps).")(f)
    f = click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     default=None,
                     help="Dataset folder (default: the annotation file's folder).")(f)
    f = click.option("--annotations", default=None,
                     help="Annotation sheet (xlsx/xls/csv), or '-' to read its path from "
                          "stdin (as `mexkit synth` prints it).")(f)
    f = click.option("--dataset", type=click.Choice(dataset_names()), default=None,
                     help="The sheet's dataset (default: detected from the sheet).")(f)
    f = click.option("--encoding", default=None,
                     help="Text encoding of a CSV sheet (e.g. cp1252, gbk); default UTF-8, "
                          "with a warning naming any line that is not.")(f)
    return f


def _annotations(annotations: str, sheets: tuple[str, ...]) -> tuple:
    """``--annotations`` (a path or '-') and ``--sheet KEY=FILE`` items, parsed."""
    extra = {}
    for item in sheets:
        if "=" not in item:
            raise ParameterError(f"--sheet takes KEY=FILE, but got {item!r}.")
        key, value = item.split("=", 1)
        extra[key.strip()] = value.strip()
    return resolve_input(annotations, what="annotation sheet"), extra


def _first_name(path: Path) -> str:
    return path.resolve().name.split(".")[0] or "clips"


def default_crop_name(sheet: Path, root: Path | None = None) -> str:
    """The name of the default crop store (without ``.crop.h5``); it is written in the
    current folder.

    The dataset's folder names it: ``--root`` when given, else the folder that holds
    the sheet (``demo-data/samples.csv`` -> ``demo-data``).  A sheet in the current
    folder is named by its own stem instead (``CASME2-coding.xlsx`` ->
    ``CASME2-coding``), not by whatever the current folder is called.
    """
    if root is not None:
        return _first_name(Path(root))
    sheet = sheet.resolve()
    if sheet.parent == Path.cwd().resolve():
        return sheet.stem.split(".")[0] or "dataset"
    return _first_name(sheet.parent) if sheet.parent.name else "dataset"


@click.command("crop", epilog="""\b
Examples:
  mexkit crop --annotations CASME2-coding.xlsx --root CASME2_RAW -o casme2.crop.h5
  mexkit synth demo-data | mexkit crop --annotations - --size 112 --mode every
  mexkit crop clip.mp4 --detector fan --device cuda
  mexkit crop my_video.mp4 --preset mean     # as MEAN's authors' face_crop.py frames it
""")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@dataset_options
@click.option("--detector", type=click.Choice(["dlib", "fan", "none"]), default="dlib",
              show_default=True,
              help="dlib (offline HOG + 68-point model), fan (FAN and S3FD on face-alignment's "
                   "published weights, GPU) or none (frames are already face crops, e.g. "
                   "CASME II's cropped set).")
@click.option("--mode", type=click.Choice(["first", "every"]), default="first",
              show_default=True,
              help="Landmarks on the first frame, one crop for the clip (MEAN), or on every "
                   "frame with temporal smoothing.")
@click.option("--size", type=click.IntRange(min=16), default=None,
              help="Crop side in pixels (128 MEAN/AKMNet, 112 MERSiamC3D/PSN, 224 ATNet); "
                   "default 128, except with --detector none, which keeps the frames' own "
                   "size unless --size is given.")
@click.option("--margin", type=click.FloatRange(min=0), default=0.125, show_default=True,
              help="Border around the landmarks, as a fraction of their box.")
@click.option("--grey/--rgb", default=True, show_default=True,
              help="Grey crops (MEAN, PSN, MERSiamC3D) or RGB (ATNet's apex image).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frame rate of image folders given as INPUTS.")
@click.option("--unit", type=click.Choice(["clip", "video"]), default=None,
              help="clip: one sample per annotated row, with its onset, apex, offset and "
                   "label (the default, whatever the path is: a video file or a folder); "
                   "video: whole videos holding their rows as intervals, for spotting (the "
                   "default for long-video datasets and for generic sheets with a 'video' "
                   "column).")
@click.option("--smooth", type=click.FloatRange(min=0), default=8.0, show_default=True,
              help="--mode every: time scale in frames of the smoothing of the head pose "
                   "(a Whittaker-Henderson smoother, lambda = SMOOTH^4, on the similarity "
                   "fitted to the nose and eye corners): head motion slower than about "
                   "6 x SMOOTH frames is followed, landmark jitter is not; 0: each "
                   "frame's own pose.")
@click.option("--max-gap", type=click.IntRange(min=0), default=5, show_default=True,
              help="--mode every: longest run of frames without a face that is interpolated.")
@click.option("--upsample", type=click.IntRange(min=0), default=None,
              help="dlib detector upsampling (default: 0, then 1 if no face is found; 1 with "
                   "--box detector).")
@click.option("--box", type=click.Choice(BOXES), default=None,
              help="Frame the crop by the landmarks (aligned: rotation, --margin; default) or "
                   "by dlib's face detector box on the first frame, cut from every frame and "
                   "resized, without alignment (as some authors' code crops).")
@click.option("--jpeg", type=click.IntRange(0, 100), default=None,
              help="Pass every crop through JPEG at this quality and back (0: not), as crops "
                   "written as JPEG files and read again are (OpenCV writes quality 95).")
@click.option("--preset", default=None, metavar="MODEL",
              help="The crop of a model's published networks (mean: --box detector --size "
                   "128 --grey --jpeg 95 --upsample 1, the authors' face_crop.py); options "
                   "given as well must agree with it.")
@device_option("the FAN landmark detector runs (--detector fan)")
@output_option(help="Output store (default, in the current folder: the dataset's name, "
                    "--root's folder or the folder holding the sheet, as DATA.crop.h5; one "
                    "video or image folder NAME gives NAME.crop.h5, several clips.crop.h5).")
@jobs_options
def crop_cmd(inputs: tuple[Path, ...], encoding: str | None, dataset: str | None,
             annotations: str | None,
             root: Path | None, dataset_fps: float | None, sheets: tuple[str, ...],
             detector: str, mode: str, size: int | None, margin: float,
             grey: bool, fps: float | None, unit: str | None, smooth: float, max_gap: int,
             upsample: int | None, box: str | None, jpeg: int | None, preset: str | None,
             device: str, output: Path | None, jobs: int, backend: str):
    """Crop aligned faces from a dataset, or from video files, images or image folders
    (INPUTS).

    Writes a store with, per clip, the crops (`frames`), landmarks in crop
    coordinates, the frame-to-crop transforms, detection scores, flags for
    interpolated frames and the dataset's frame numbers, and prints its path.
    A clip without a face fails alone (NoFaceError, exit status 1); the
    others are kept.  An annotation sheet given as INPUT is read as
    --annotations.

    Without -o, the store is written in the current folder and named after
    the dataset: --root's folder, else the folder holding the sheet
    (demo-data/samples.csv -> demo-data.crop.h5), or the sheet's own name
    when it lies in the current folder; one video or image folder gives
    NAME.crop.h5, several give clips.crop.h5.
    """
    sheet_given, _ = split_inputs(inputs, dataset=dataset)
    if sheet_given is not None:
        if annotations is not None:
            raise ParameterError(
                f"{str(sheet_given)!r} is an annotation sheet, not a video or image "
                "folder: give it alone, as --annotations SHEET.")
        annotations, inputs = str(sheet_given), ()
    if preset is not None:  # the preset's settings; options given as well must agree
        chosen = {"box": box, "jpeg": jpeg, "size": size, "upsample": upsample,
                  "grey": grey, "detector": detector}
        for key, value in crop_preset(preset).items():
            if chosen[key] is not None and chosen[key] != value:
                raise ParameterError(f"--preset {preset} crops with {key} {value!r}, but "
                                     f"{key} {chosen[key]!r} was given.")
            chosen[key] = value
        box, jpeg, size, upsample = (chosen[k] for k in ("box", "jpeg", "size", "upsample"))
    if size is None and detector != "none":
        size = 128
    upstream = []
    if annotations == "-":  # the previous command of a pipeline is still running
        load_detector_ahead(detector, jobs, backend)
    if annotations is not None:
        if inputs:
            raise ParameterError("Give either INPUTS or --annotations, not both.")
        sheet, extra = _annotations(annotations, sheets)
        samples, record = read_annotations(sheet, dataset=dataset, root=root, fps=dataset_fps,
                                           sheets=extra, encoding=encoding)
        upstream.append(record)
        specs = clips_from_samples(samples, unit=unit or default_unit(record, samples))
        base = default_crop_name(Path(record["path"]), root)
    elif inputs:
        if dataset or root or dataset_fps or sheets or encoding:
            raise ParameterError("--dataset, --root, --dataset-fps, --sheet and --encoding "
                                 "need --annotations.")
        specs = clips_from_paths(inputs, fps=fps)
        base = _first_name(inputs[0]) if len(inputs) == 1 else "clips"
    else:
        raise ParameterError("Give video files / image folders, or --annotations (see --help).")
    if output is None:
        output = Path.cwd() / f"{base}.crop.h5"
    result = run_crop(specs, output, detector=detector, mode=mode, size=size, margin=margin,
                      grey=grey, smooth=smooth, max_gap=max_gap, upsample=upsample,
                      device=device, jobs=jobs, backend=backend,
                      progress=progress(), upstream=upstream, box=box or "landmarks",
                      jpeg=jpeg or 0)
    out(str(Path(output).resolve()))
    return result


@click.command("samples", epilog="""\b
Examples:
  mexkit samples --annotations CASME2-coding.xlsx --root CASME2_RAW
  mexkit samples --annotations SAMM_LongVideos_V2_Release.xlsx --strict --list
  mexkit samples --dataset megc2019-flow --root HTNet     # the list ships in the release
""")
@dataset_options
@click.option("--scheme", default=None,
              help="Also apply a label scheme and report the samples outside it.")
@click.option("--list", "list_all", is_flag=True, help="List every sample, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (summary and samples).")
@click.option("--strict", is_flag=True,
              help="Make every repaired or skipped sheet row an error (default: warn, "
                   "repair what is unambiguous, skip the rest).")
def samples_cmd(encoding: str | None, dataset: str | None, annotations: str | None,
                root: Path | None,
                dataset_fps: float | None, sheets: tuple[str, ...], scheme: str | None,
                list_all: bool, as_json: bool, strict: bool) -> int:
    """Print the parsed sample list with counts per subject and label.

    Works on the sheet alone (without the videos), so that what mexkit
    understood can be checked before a long job.  Clips are looked for under
    --root, or beside the sheet; those not found are counted as "no source".

    Rows that cannot be used as written are repaired where the repair is
    unambiguous or skipped, each with a warning naming file, sheet and row;
    the report ends with the rows read, repaired and skipped.  Exit status 0
    when no row was skipped, 1 otherwise.
    """
    if annotations is None:
        found = default_sheet(dataset, root)  # a release that ships its list in one place
        if found is None:
            raise click.UsageError("Missing option '--annotations'.")
        annotations = str(found)
    sheet, extra = _annotations(annotations, sheets)
    text, status = sample_listing(sheet, dataset=dataset, root=root, fps=dataset_fps,
                                  sheets=extra, encoding=encoding, scheme=scheme,
                                  strict=strict, as_json=as_json, list_all=list_all)
    out(text)
    return status
