"""``mexkit import`` (:mod:`mexkit.pipeline.importing`): a store from a release that
arrives already preprocessed."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import ParameterError
from ..pipeline.importing import run_import
from ._common import jobs_options, out, overwrite_option, progress


@click.command("import", epilog="""\b
Examples:
  mexkit import HTNet --dataset megc2019-flow -o composite.h5
  mexkit import HTNet --dataset megc2019-flow --apex -o composite-apex.h5
  mexkit samples --dataset megc2019-flow --root HTNet      # what the list holds
""")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--dataset", required=True,
              help="The release's dataset: one whose adapter reads preprocessed data "
                   "(megc2019-flow).")
@click.option("--variant", default=None,
              help="Which store of the release (default: the dataset's first).")
@click.option("--apex", is_flag=True,
              help="The apex faces' store (--variant apex): a crop-like store of apex "
                   "frames.")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The release's list, when it is not where the dataset "
                                 "ships it.")
@click.option("--no-landmarks", is_flag=True,
              help="Do not look for the 68 landmarks of each sample's face (dlib).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Output store (default: <root>.<dataset>-<variant>.h5 in the "
                                 "current folder).")
@overwrite_option
@jobs_options
def import_cmd(root: Path, dataset: str, variant: str | None, apex: bool,
               annotations: Path | None, no_landmarks: bool, output: Path | None, jobs: int,
               backend: str) -> object:
    """Write a store from ROOT, a local copy of a release that distributes a dataset
    already preprocessed (the MEGC 2019 composite as 28x28 optical-flow images and
    224x224 apex faces: --dataset megc2019-flow).  ROOT may also be the release's list
    file, in the release's folder.

    Counts are checked against the published ones, with a warning per missing or
    extra file; prints the store's path.
    """
    if root.is_file():  # the list itself, in the release's folder
        if annotations is not None:
            raise ParameterError("ROOT is a file (the release's list) and --annotations "
                                 "names another; give the release's folder as ROOT.")
        root, annotations = root.parent, root
    if apex:
        if variant not in (None, "apex"):
            raise ParameterError(f"--apex and --variant {variant} do not go together.")
        variant = "apex"
    if output is None:
        output = Path.cwd() / f"{root.resolve().name}.{dataset}-{variant or 'import'}.h5"
    result = run_import(root, output, dataset=dataset, variant=variant, sheet=annotations,
                        landmarks=not no_landmarks, jobs=jobs, backend=backend,
                        progress=progress())
    out(str(Path(output).resolve()))
    return result
