"""``mexkit convert`` (:mod:`mexkit.pipeline.mean_weights`): an authors' Keras MEAN
network as mexkit weights."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.mean_weights import convert_weights
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
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The safetensors file to write.")
def convert_cmd(source: Path, classes: str | None, output: Path) -> int:
    """Convert MEAN's published Keras network SOURCE (.hdf5, either layout, spot / recog /
    spot_recog) into mexkit's safetensors weights, for `mexkit train --model mean
    --weights` (shared layers frozen). Reads the file with h5py only. Prints the output path.
    """
    written = convert_weights(source, output, classes=classes.split(",") if classes else None)
    out(str(Path(written).resolve()))
    return 0
