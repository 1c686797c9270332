"""``mexkit convert`` (:mod:`mexkit.pipeline.published`): a network published by a
model's authors as mexkit weights."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.published import convert_weights
from ._common import out

__all__ = ["convert_cmd"]


@click.command("convert", epilog="""\b
Examples:
  mexkit convert MEAN_Weights/SMIC_HS/spot_recog/s1.hdf5 -o smic_hs_s1.safetensors
  mexkit train new.flow.h5 --model mean --weights smic_hs_s1.safetensors --scheme megc3
""")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--classes", default=None, metavar="A,B,C",
              help="Class names of the recognition outputs (default: from the dataset folder "
                   "in the path, as the authors encode labels).")
@click.option("--model", default=None,
              help="The model whose published networks SOURCE holds (default: the one whose "
                   "reader takes the file).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The safetensors file to write.")
def convert_cmd(source: Path, classes: str | None, model: str | None, output: Path) -> int:
    """Convert a network its authors published (SOURCE; MEAN: a Keras .hdf5 of
    MEAN_Weights, either layout, spot / recog / spot_recog) into mexkit's safetensors
    weights, for `mexkit train --model NAME --weights` (MEAN: shared layers frozen). The
    file is read as data (h5py), nothing in it is run. Prints the output path.
    """
    written = convert_weights(source, output, classes=classes.split(",") if classes else None,
                              model=model)
    out(str(Path(written).resolve()))
    return 0
