"""Pictures of what a store holds: ``mexkit show``.

Any stage's store is drawn from the arrays it holds, so the same command
shows every stage:

- ``frames`` (crop, TIM, key frames, magnification): chosen frames, the
  landmarks on each and MEAN's region boxes ([1]_) on the first; the source
  time of each frame where the stage records one (TIM, key frames);
- ``flow``: the Middlebury colour coding ([2]_) and the flow as arrows;
  ``strain`` as a heat map beside it;
- ``sparse`` (RPCA): heat maps of the sparse (identity-removed) frames;
- ``against=STORE``: the same sample of another store as a first row (the
  crop before magnification, the clip before TIM).

Without a sample, a sheet of every sample (one tile each) gives a quick
look at a whole store. ``.gif`` and ``.mp4`` outputs animate the frames
(or the flow fields) instead.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize", Signal
   Process. Image Commun. 110 (2023), section 3.1.
.. [2] S. Baker et al., "A Database and Evaluation Methodology for Optical
   Flow", IJCV 92 (2011).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image

from .._validate import check_option
from ..errors import ParameterError
from ..face.regions import mean_region_boxes
from ..io.atomic import atomic_path
from ..io.store import open_store
from ..motion.colour import arrow_grid, flow_to_colour
from .reports import save_figure

__all__ = ["render", "FORMATS"]

logger = logging.getLogger("mexkit")

FORMATS = (".png", ".gif", ".mp4")


def _grey_rgb(image: np.ndarray) -> np.ndarray:
    """Any frame (H, W) or (H, W, 3), uint8 or float, as (H, W, 3) uint8."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        finite = np.isfinite(img)
        lo = float(img[finite].min()) if finite.any() else 0.0
        hi = float(img[finite].max()) if finite.any() else 1.0
        if lo >= 0 and hi <= 255 and hi > 1.5:
            img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
        else:
            span = hi - lo if hi > lo else 1.0
            img = np.clip(np.nan_to_num((img - lo) / span) * 255, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img


def _pick(n: int, wanted: Sequence[int] | None, attrs: dict[str, Any], limit: int = 6
          ) -> list[int]:
    """Indices to draw: the user's, else onset/apex/offset, else evenly spaced."""
    if n <= 0:
        return []
    if wanted:
        bad = [i for i in wanted if not -n <= i < n]
        if bad:
            raise ParameterError(
                f"Invalid value for the 'frames' parameter: {bad} outside the {n} frames "
                "of the sample.")
        return [i % n for i in wanted]
    marks = [attrs.get(k) for k in ("onset", "apex", "offset")]
    marks = [int(m) for m in marks if isinstance(m, (int, np.integer)) and 0 <= m < n]
    if len(set(marks)) >= 2:
        return sorted(set(marks))
    count = min(n, limit)
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, count)})


def _kind(sample: Any) -> str:
    keys = set(sample.keys())
    if "flow" in keys:
        return "flow"
    if "sparse" in keys:
        return "sparse"
    if "frames" in keys:
        return "frames"
    raise ParameterError(
        f"sample {sample.sample_id!r} holds nothing mexkit show can draw "
        f"({', '.join(sorted(keys)) or 'no arrays'}).")


def _draw_frame(ax: Any, sample: Any, index: int, *, regions: bool, title: str) -> None:
    frame = sample.read("frames", index)
    ax.imshow(_grey_rgb(frame))
    if "landmarks" in sample and sample.shape("landmarks")[0] > index:
        lm = sample.read("landmarks", index)
        if np.isfinite(lm).all():
            ax.scatter(lm[:, 0], lm[:, 1], s=3, c="#00e5ff", linewidths=0)
            if regions:
                h, w = frame.shape[:2]
                boxes = mean_region_boxes(lm, shape=(h, w))
                for name in ("left_eye", "right_eye", "mouth"):
                    x0, y0, x1, y1 = boxes[name]
                    ax.add_patch(_rect(x0, y0, x1 - x0, y1 - y0))
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _rect(x: float, y: float, w: float, h: float) -> Any:
    return Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="#ffcc00", lw=1)


def _frame_title(sample: Any, index: int) -> str:
    title = f"frame {index}"
    if "source_time" in sample and sample.shape("source_time")[0] > index:
        title += f" (t={float(sample.read('source_time', index)):.1f})"
    attrs = sample.attrs
    for key in ("onset", "apex", "offset"):
        if attrs.get(key) == index:
            title += f" {key}"
    return title


def _draw_flow(axes: Sequence[Any], sample: Any, index: int, top: float) -> None:
    flow = sample.read("flow", index)
    pair = ""
    if "pairs" in sample and sample.shape("pairs")[0] > index:
        a, b = (int(v) for v in sample.read("pairs", index))
        pair = f" {a}->{b}"
    axes[0].imshow(flow_to_colour(flow, max_magnitude=top))
    axes[0].set_title(f"flow {index}{pair} (max {top:.2f} px)", fontsize=7)
    axes[0].axis("off")
    step = max(4, min(flow.shape[1:]) // 16)
    x, y, u, v = arrow_grid(flow, step=step)
    axes[1].imshow(np.full(flow.shape[1:] + (3,), 255, np.uint8))
    # arrows drawn long enough to see: scaled so the longest is one cell
    longest = float(np.hypot(u, v).max()) or 1.0
    axes[1].quiver(x, y, u, v, angles="xy", scale_units="xy", scale=longest / step,
                   color="k", width=0.004)
    axes[1].set_title(f"arrows x{step / longest:.1f}", fontsize=7)
    axes[1].axis("off")
    if len(axes) > 2:
        strain = sample.read("strain", index)
        im = axes[2].imshow(strain, cmap="inferno")
        axes[2].set_title("strain", fontsize=7)
        axes[2].axis("off")
        axes[2].figure.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)


def _draw_heat(ax: Any, image: np.ndarray, title: str) -> None:
    lim = float(np.nanmax(np.abs(image))) or 1.0
    im = ax.imshow(image, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(title, fontsize=7)
    ax.axis("off")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)


def _sample_figure(sample: Any, other: Any | None, frames: Sequence[int] | None,
                   label: str) -> Any:
    kind = _kind(sample)
    attrs = sample.attrs
    rows: list[tuple[str, Any]] = []
    if other is not None:
        rows.append(("against", other))
    rows.append((kind, sample))
    n = sample.shape({"flow": "flow", "sparse": "sparse", "frames": "frames"}[kind])[0]
    picks = _pick(n, frames, attrs)
    width = 3 if kind == "flow" and "strain" in sample else (2 if kind == "flow" else 1)
    cols = max(1, len(picks) * width)
    if other is not None and "frames" in other:
        cols = max(cols, len(_pick(other.shape("frames")[0], None, other.attrs)))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 2.1 * len(rows)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (what, s) in enumerate(rows):
        if what == "against":
            if "frames" not in s:
                raise ParameterError("the --against store holds no frames to compare with.")
            for c, i in enumerate(_pick(s.shape("frames")[0], None, s.attrs)[:cols]):
                _draw_frame(axes[r, c], s, i, regions=False,
                            title="input " + _frame_title(s, i))
        elif what == "frames":
            for c, i in enumerate(picks):
                _draw_frame(axes[r, c], s, i, regions=c == 0, title=_frame_title(s, i))
        elif what == "flow":
            mags = [float(np.nanmax(np.hypot(*s.read("flow", i)))) for i in picks]
            top = max(mags + [1e-6])
            for c, i in enumerate(picks):
                _draw_flow(axes[r, c * width:(c + 1) * width], s, i, top)
        else:
            for c, i in enumerate(picks):
                title = f"sparse {i}"
                if "source_time" in s and s.shape("source_time")[0] > i:
                    title += f" (t={float(s.read('source_time', i)):.1f})"
                _draw_heat(axes[r, c], s.read("sparse", i), title)
    fig.suptitle(label, fontsize=8)
    return fig


def _tile(sample: Any) -> np.ndarray:
    """One picture standing for a sample in a store sheet."""
    kind = _kind(sample)
    if kind == "flow" and sample.attrs.get("flow_units") and "strain" in sample:
        # maps in other units than pixels (a preprocessed release): the release's own
        # picture, u, v and strain as red, green and blue, each stretched to 0..255
        maps = np.concatenate([sample.read("flow", 0), sample.read("strain", 0)[None]])
        lo = np.nanmin(maps, axis=(1, 2), keepdims=True)
        span = np.nanmax(maps, axis=(1, 2), keepdims=True) - lo
        rgb = (maps - lo) / np.where(span > 0, span, 1.0) * 255
        return np.clip(np.nan_to_num(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if kind == "flow":
        n = sample.shape("flow")[0]
        energy = [float(np.nanmean(np.hypot(*sample.read("flow", i)))) for i in range(n)]
        return flow_to_colour(sample.read("flow", int(np.argmax(energy))))
    if kind == "sparse":
        stack = sample.read("sparse")
        i = int(np.argmax(np.abs(stack).reshape(len(stack), -1).mean(axis=1)))
        img = stack[i]
        lim = float(np.abs(img).max()) or 1.0
        return _grey_rgb(np.clip((img / lim + 1) * 127.5, 0, 255).astype(np.uint8))
    n = sample.shape("frames")[0]
    apex = sample.attrs.get("apex")
    i = int(apex) if isinstance(apex, (int, np.integer)) and 0 <= apex < n else n // 2
    return _grey_rgb(sample.read("frames", i))


def _sheet_figure(store: Any, ids: Sequence[str], title: str) -> Any:
    cols = min(6, max(1, len(ids)))
    rows = math.ceil(len(ids) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, sid in zip(axes.ravel(), ids, strict=False):
        sample = store[sid]
        ax.imshow(_tile(sample))
        label = sample.attrs.get("label") or sample.attrs.get("emotion") or ""
        ax.set_title(f"{sid}\n{label}", fontsize=6)
    fig.suptitle(title, fontsize=8)
    return fig


def _class_sheet(store: Any, ids: Sequence[str], per_class: int, title: str) -> Any:
    """One row per label: its first ``per_class`` samples."""
    by_label: dict[str, list[str]] = {}
    for sid in ids:
        label = str(store[sid].attrs.get("label") or "(no label)")
        if len(by_label.setdefault(label, [])) < per_class:
            by_label[label].append(sid)
    labels = sorted(by_label)
    fig, axes = plt.subplots(len(labels), per_class, squeeze=False,
                             figsize=(1.8 * per_class, 2.0 * len(labels)))
    for ax in axes.ravel():
        ax.axis("off")
    for r, label in enumerate(labels):
        for c, sid in enumerate(by_label[label]):
            sample = store[sid]
            axes[r, c].imshow(_tile(sample), interpolation="nearest")
            axes[r, c].set_title(f"{sid}\n{label}", fontsize=6)
    fig.suptitle(title, fontsize=8)
    return fig


def _movie_frames(sample: Any, other: Any | None) -> list[np.ndarray]:
    kind = _kind(sample)
    if kind == "flow" and sample.attrs.get("flow_units") and "strain" in sample:
        # maps in other units than pixels (a preprocessed release): the release's own
        # picture, u, v and strain as red, green and blue, each stretched to 0..255
        maps = np.concatenate([sample.read("flow", 0), sample.read("strain", 0)[None]])
        lo = np.nanmin(maps, axis=(1, 2), keepdims=True)
        span = np.nanmax(maps, axis=(1, 2), keepdims=True) - lo
        rgb = (maps - lo) / np.where(span > 0, span, 1.0) * 255
        return np.clip(np.nan_to_num(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if kind == "flow":
        n = sample.shape("flow")[0]
        top = max(float(np.nanmax(np.hypot(*sample.read("flow", i)))) for i in range(n))
        images = [flow_to_colour(sample.read("flow", i), max_magnitude=top or None)
                  for i in range(n)]
    elif kind == "sparse":
        stack = sample.read("sparse")
        lim = float(np.abs(stack).max()) or 1.0
        images = [_grey_rgb(np.clip((f / lim + 1) * 127.5, 0, 255).astype(np.uint8))
                  for f in stack]
    else:
        images = [_grey_rgb(f) for f in sample.read("frames")]
    if other is not None and "frames" in other:
        first = [_grey_rgb(f) for f in other.read("frames")]
        n = max(len(first), len(images))
        out = []
        for i in range(n):
            a = first[min(int(i * len(first) / n), len(first) - 1)]
            b = images[min(int(i * len(images) / n), len(images) - 1)]
            if a.shape != b.shape:
                a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_AREA)
            out.append(np.concatenate([a, b], axis=1))
        images = out
    return images


def _write_movie(images: Sequence[np.ndarray], path: Path, fps: float) -> None:
    if not images:
        raise ParameterError(f"nothing to animate for {path}.")
    if path.suffix == ".gif":
        frames = [Image.fromarray(img) for img in images]
        with atomic_path(path, suffix=".gif") as tmp:
            frames[0].save(tmp, save_all=True, append_images=frames[1:],
                           duration=max(20, int(1000 / fps)), loop=0)
        return
    h, w = images[0].shape[:2]
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise ParameterError(f"OpenCV cannot write an MP4 video to {path}.")
        try:
            for img in images:
                writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()


def render(store_path: str | os.PathLike, output: str | os.PathLike, *,
           sample: str | None = None, frames: Sequence[int] | None = None,
           against: str | os.PathLike | None = None, max_samples: int = 36,
           fps: float = 10.0, per_class: int | None = None) -> Path:
    """Draw a store (a sheet of samples) or one sample into ``output``.

    Parameters
    ----------
    store_path : path-like
        Any mexkit store.
    output : path-like
        ``.png`` (a picture), ``.gif`` or ``.mp4`` (an animation of one
        sample's frames or flow fields).
    sample : str, optional
        The sample to draw; default: a sheet of every sample for a PNG, the
        first sample for an animation.
    frames : sequence of int, optional
        Frame (or flow-field) indices to draw; default: onset, apex and
        offset where known, else six evenly spaced.
    against : path-like, optional
        Another store whose same sample is drawn first (input against
        output: the crop before magnification or TIM).
    max_samples : int
        Most samples on a sheet (the first ones, in store order).
    fps : float
        Frame rate of an animation.
    per_class : int, optional
        A sheet of the first ``per_class`` samples of each label, one row of
        tiles per label (u, v, strain as red, green, blue for maps stored in
        other units than pixels).

    Returns
    -------
    pathlib.Path
        ``output``.
    """
    matplotlib.use("Agg")
    output = Path(output)
    check_option("output format", output.suffix.lower(), FORMATS)
    with open_store(store_path) as store:
        ids = list(store.sample_ids)
        if not ids:
            raise ParameterError(f"{store_path}: the store holds no samples to show.")
        if sample is not None and sample not in store:
            shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
            raise ParameterError(
                f"{store_path}: no sample {sample!r} (it holds {len(ids)}: {shown}).")
        other_store = open_store(against) if against is not None else None
        try:
            other = None
            if other_store is not None:
                wanted = sample or ids[0]
                if wanted not in other_store:
                    raise ParameterError(f"{against}: no sample {wanted!r} to compare with.")
                other = other_store[wanted]
            if output.suffix.lower() in (".gif", ".mp4"):
                chosen = store[sample or ids[0]]
                _write_movie(_movie_frames(chosen, other), output, fps)
            elif per_class is not None and sample is None and other is None:
                fig = _class_sheet(store, ids, per_class,
                                   f"{Path(store_path).name}: {store.stage}, {len(ids)} "
                                   f"sample(s), the first {per_class} of each class")
                save_figure(fig, output)
            elif sample is None and len(ids) > 1 and other is None:
                shown = ids[:max_samples]
                if len(ids) > max_samples:
                    logger.warning("showing the first %d of %d samples (--sample ID for one)",
                                   max_samples, len(ids))
                fig = _sheet_figure(store, shown, f"{Path(store_path).name}: {store.stage}, "
                                                  f"{len(ids)} sample(s)")
                save_figure(fig, output)
            else:
                sid = sample or ids[0]
                label = f"{sid} ({store.stage})"
                fig = _sample_figure(store[sid], other, frames, label)
                save_figure(fig, output)
        finally:
            if other_store is not None:
                other_store.close()
    return output
