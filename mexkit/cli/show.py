"""``mexkit show``: a picture of any store."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import ParameterError
from ..pipeline.show import render
from ._common import out, resolve_input


def _frames(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(
            f"Invalid value for '--frames': expected comma-separated frame indices, but got "
            f"{text!r}.") from None


@click.command("show", epilog="""\b
Examples:
  mexkit show demo.crop.h5 -o crops.png                  # a sheet of every sample
  mexkit show demo.flow.h5 --sample synth-casme2/sub01/EP01_05 -o flow.png
  mexkit show demo.magnify.h5 --against demo.crop.h5 --sample ID -o magnified.gif
  mexkit show composite.h5 --per-class 6 -o classes.png  # u, v, strain as R, G, B
""")
@click.argument("store", type=str)
@click.option("--sample", default=None, help="Sample id to draw (default: a sheet of all).")
@click.option("--frames", default=None, metavar="I,J,...",
              help="Frame or flow-field indices (default: onset, apex, offset where known).")
@click.option("--against", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Another store whose same sample is drawn first (e.g. before magnify).")
@click.option("--max-samples", type=click.IntRange(min=1), default=36, show_default=True,
              help="Most samples on a sheet.")
@click.option("--fps", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Frame rate of a .gif or .mp4.")
@click.option("--per-class", type=click.IntRange(min=1), default=None, metavar="N",
              help="A sheet of the first N samples of each label, one row per label.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="PNG, GIF or MP4 (default: <store>.png).")
def show_cmd(store: str, sample: str | None, frames: str | None, against: str | None,
             max_samples: int, fps: float, per_class: int | None, output: Path | None) -> int:
    """Draw STORE (or '-'): crops with landmarks and MEAN's regions, flow as a
    colour wheel and arrows, strain and RPCA sparse frames as heat maps, TIM and
    key frames with their source times; a sheet of all samples by default.

    Prints the path of the picture.
    """
    path = resolve_input(store)
    if output is None:
        output = path.with_name(path.name[: -len(path.suffix)] + ".png")
    render(path, output, sample=sample, frames=_frames(frames), against=against,
           max_samples=max_samples, fps=fps, per_class=per_class)
    out(str(Path(output).resolve()))
    return 0
