"""``mexkit pretrain`` (:mod:`mexkit.pipeline.pretraining`)."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.options import pretrainable_models
from ..pipeline.pretraining import pretrain_weights
from ._common import device_option, out, progress, resolve_input, settings

_ABLE = pretrainable_models()


@click.command("pretrain", epilog="""\b
Examples:
  mexkit synth other --subjects 16 --first-subject 27 --seed 1 \\
    | mexkit crop --annotations - --size 128 \\
    | mexkit magnify - --alpha 15 | mexkit pretrain - --image-size 32 -o backbone.safetensors
  mexkit train casme2.mag.h5 --model akmnet --weights backbone.safetensors --image-size 32
""")
@click.argument("store", type=str)
@click.option("--model", "model", type=click.Choice(_ABLE),
              default=_ABLE[0] if len(_ABLE) == 1 else None,
              show_default=True, help="Model whose frame backbone is trained.")
@click.option("--scheme", default=None,
              help="Label scheme for the clips' classes (default: the stored labels).")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True,
              help="Passes over the frames.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.01,
              show_default=True, help="SGD learning rate, cosine decay to 0.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Frames per SGD step.")
@click.option("--image-size", type=click.IntRange(min=32), default=128, show_default=True,
              help="Frame side the backbone sees: the --image-size of the training to come.")
@device_option("the backbone trains")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initialisation, batch order and shifts.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing output written with other settings or data.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The safetensors weights file to write.")
def pretrain_cmd(store: str, model: str | None, scheme: str | None, epochs: int, lr: float,
                 batch_size: int, image_size: int, device: str, seed: int, overwrite: bool,
                 output: Path) -> int:
    """Pre-train a model's frame backbone on the still frames of STORE (or '-').

    The stand-in for AKMNet's AffectNet stage: the frames around each clip's
    apex learn its class, its onset and offset frames the class 'neutral'.
    STORE must hold other subjects than the data the weights will be
    evaluated on (`mexkit train --weights` refuses weights that saw its
    clips).  Prints the weights file's path; an identical finished file is
    kept, another existing file is replaced only with --overwrite.
    """
    path = resolve_input(store)
    written, computed = pretrain_weights(
        path, output, model=model, scheme=scheme, epochs=epochs, lr=lr,
        batch_size=batch_size, image_size=image_size, seed=seed, device=device,
        overwrite=overwrite, progress=progress())
    if not computed and not settings().get("quiet"):
        click.echo(f"mexkit: pretrain: {written} already holds these weights; kept.", err=True)
    out(str(Path(written).resolve()))
    return 0
