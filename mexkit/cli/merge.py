"""``mexkit merge``: join the partial stores of a sharded run."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.merge import merge_stores
from ._common import out, overwrite_option, progress


@click.command("merge", epilog="""\b
Examples:
  mexkit flow demo.crop.h5 --shard 0/2 -o part0.h5   # on one node
  mexkit flow demo.crop.h5 --shard 1/2 -o part1.h5   # on another
  mexkit merge part0.h5 part1.h5 -o demo.crop.flow-tvl1.h5
""")
@click.argument("parts", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The merged store.")
@click.option("--partial", is_flag=True,
              help="Write the store even if shards of the run are missing; it records the "
                   "shards it holds (mexkit inspect shows it).")
@overwrite_option
def merge_cmd(parts: tuple[Path, ...], output: Path, partial: bool):
    """Join PARTS (stores written with --shard I/N) into one store.

    Every part is validated (checksums, data and content hashes) and must
    come from the same stage, parameters and input stores; otherwise the
    command names the part that differs and writes nothing.  Each part
    records its shard and the run's samples: a merge that lacks a shard is
    refused, naming it, unless --partial.  Prints the merged store's path.
    """
    result = merge_stores(parts, output, progress=progress(), partial=partial)
    out(str(Path(output).resolve()))
    return result
