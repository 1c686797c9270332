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


#: The widest picture of one sample, in pixels (at :func:`save_figure`'s 120 dpi):
#: multi-frame stores are laid out in a grid of rows no wider than this.
MAX_WIDTH_PX = 1600
_DPI = 120
_PANEL_IN = 1.9     # one panel's width, inches
_BAR_IN = 0.35      # the colour bar's column


def _draw_flow(axes: Sequence[Any], sample: Any, index: int, top: float, arrow: float,
               strain_top: float) -> Any:
    """One flow field's panels (colour, arrows, strain), on the figure's common scales.

    ``top``: the flow magnitude of full saturation; ``arrow``: the magnitude
    drawn as one arrow cell; ``strain_top``: the strain of the top of the
    colour bar.  Returns the strain image (for the figure's one colour bar).
    """
    flow = sample.read("flow", index)
    pair = ""
    if "pairs" in sample and sample.shape("pairs")[0] > index:
        a, b = (int(v) for v in sample.read("pairs", index))
        pair = f": {a}->{b}"
    axes[0].imshow(flow_to_colour(flow, max_magnitude=top))
    axes[0].set_title(f"flow {index}{pair}", fontsize=7)
    axes[0].axis("off")
    step = max(4, min(flow.shape[1:]) // 16)
    x, y, u, v = arrow_grid(flow, step=step)
    axes[1].imshow(np.full(flow.shape[1:] + (3,), 255, np.uint8))
    axes[1].quiver(x, y, u, v, angles="xy", scale_units="xy", scale=arrow / step,
                   color="k", width=0.004)
    axes[1].set_title(f"arrows {index}", fontsize=7)
    axes[1].axis("off")
    image = None
    if len(axes) > 2:
        image = axes[2].imshow(sample.read("strain", index), cmap="inferno", vmin=0.0,
                               vmax=strain_top)
        axes[2].set_title(f"strain {index}", fontsize=7)
        axes[2].axis("off")
    return image


def _grid(fig: Any, n_groups: int, width: int, n_extra: int, bar: bool
          ) -> tuple[list[list[Any]], list[Any], Any | None]:
    """Axes for ``n_groups`` groups of ``width`` panels, as many groups per row as fit in
    :data:`MAX_WIDTH_PX`, after rows of ``n_extra`` panels for another store's frames; a
    colour bar column when ``bar``.  Returns (groups, extra axes, colour bar axes)."""
    max_cols = max(1, int((MAX_WIDTH_PX / _DPI - (_BAR_IN if bar else 0)) // _PANEL_IN))
    per_row = max(1, min(max(n_groups, 1), max_cols // width))
    cols = per_row * width
    extra_rows = math.ceil(n_extra / cols)
    rows = extra_rows + math.ceil(n_groups / per_row)
    fig.set_size_inches(_PANEL_IN * cols + (_BAR_IN if bar else 0), 2.1 * rows + 0.4)
    gs = fig.add_gridspec(rows, cols + (1 if bar else 0),
                          width_ratios=[1.0] * cols + ([0.12] if bar else []))
    extra = [fig.add_subplot(gs[k // cols, k % cols]) for k in range(n_extra)]
    groups = []
    for g in range(n_groups):
        r, c = extra_rows + g // per_row, (g % per_row) * width
        groups.append([fig.add_subplot(gs[r, c + k]) for k in range(width)])
    for ax in fig.axes:
        ax.axis("off")
    cax = fig.add_subplot(gs[extra_rows:, -1]) if bar else None
    return groups, extra, cax


def _sample_figure(sample: Any, other: Any | None, frames: Sequence[int] | None,
                   label: str) -> Any:
    """One sample's chosen frames (or flow fields, sparse frames) in a grid at most
    :data:`MAX_WIDTH_PX` wide, every panel on one colour scale stated once."""
    kind = _kind(sample)
    attrs = sample.attrs
    n = sample.shape({"flow": "flow", "sparse": "sparse", "frames": "frames"}[kind])[0]
    picks = _pick(n, frames, attrs)
    width = 3 if kind == "flow" and "strain" in sample else (2 if kind == "flow" else 1)
    others: list[int] = []
    if other is not None:
        if "frames" not in other:
            raise ParameterError("the --against store holds no frames to compare with.")
        others = _pick(other.shape("frames")[0], None, other.attrs)
    bar = kind == "sparse" or width == 3
    fig = plt.figure()
    groups, extra, cax = _grid(fig, len(picks), width, len(others), bar)
    for ax, i in zip(extra, others, strict=False):
        _draw_frame(ax, other, i, regions=False, title="input " + _frame_title(other, i))
    scale = ""
    if kind == "frames":
        for c, (grp, i) in enumerate(zip(groups, picks, strict=True)):
            _draw_frame(grp[0], sample, i, regions=c == 0, title=_frame_title(sample, i))
    elif kind == "flow":
        fields = {i: sample.read("flow", i) for i in picks}
        top = max([float(np.nanmax(np.hypot(*f))) for f in fields.values()] + [1e-6])
        strain_top = max([float(np.nanmax(sample.read("strain", i))) for i in picks]
                         + [1e-6]) if width == 3 else 1.0
        image = None
        for grp, i in zip(groups, picks, strict=True):
            image = _draw_flow(grp, sample, i, top, top, strain_top) or image
        step = max(4, min(next(iter(fields.values())).shape[1:]) // 16)
        scale = (f"flow colour: hue = direction, full colour = {top:.2f} px; arrows: "
                 f"{top:.2f} px = {step} px (x{step / top:.1f}), in every panel")
        if image is not None:
            fig.colorbar(image, cax=cax, label="strain (all panels)")
    else:
        stack = {i: sample.read("sparse", i) for i in picks}
        lim = max([float(np.nanmax(np.abs(f))) for f in stack.values()] + [1e-6])
        image = None
        for grp, i in zip(groups, picks, strict=True):
            title = f"sparse {i}"
            if "source_time" in sample and sample.shape("source_time")[0] > i:
                title += f" (t={float(sample.read('source_time', i)):.1f})"
            image = grp[0].imshow(stack[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
            grp[0].set_title(title, fontsize=7)
            grp[0].axis("off")
        fig.colorbar(image, cax=cax, label="sparse (all panels)")
    fig.suptitle(label + (f"\n{scale}" if scale else ""), fontsize=8)
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
