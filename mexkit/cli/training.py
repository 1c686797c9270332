"""``mexkit train`` and ``mexkit predict`` (:mod:`mexkit.pipeline.training`)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import ParameterError
from ..pipeline.options import model_names, model_option_specs, scheme_names
from ..pipeline.training import predict_store, train_model
from ._common import device_option, out, progress, resolve_input, settings


def _model_option_decorators() -> list:
    """One click option per model option in the registry (shared names merged)."""
    decorators = []
    for name, kind, text, owners in model_option_specs():
        help_text = f"{text} [{', '.join(owners)}]"
        dest = "mopt_" + name.replace("-", "_")
        if kind is bool:
            decorators.append(click.option(f"--{name}", dest, is_flag=True, default=None,
                                           help=help_text))
        elif isinstance(kind, tuple):
            decorators.append(click.option(f"--{name}", dest, type=click.Choice(list(kind)),
                                           default=None, help=help_text))
        else:
            decorators.append(click.option(f"--{name}", dest, type=kind, default=None,
                                           help=help_text))
    return decorators


def _with_model_options(func):
    for decorator in reversed(_model_option_decorators()):
        func = decorator(func)
    return func


def _focal_alpha(text: str | None) -> list[float] | str | None:
    if text is None or text == "balanced":
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ParameterError(
            f"Invalid value for '--focal-alpha': expected 'balanced' or comma-separated "
            f"numbers (one per class), but got {text!r}.") from None


def _check_fold_jobs(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"{value!r} is neither a positive integer nor 'auto'.")
    return n


@click.command("train", epilog="""\b
Examples:
  mexkit train demo.flow.h5 --model mean --protocol loso --epochs 150
  mexkit crop --annotations data/samples.csv --size 112 | mexkit rpca - --psn \\
    | mexkit train - --model psn
""")
@click.argument("store", type=str)
@click.option("--model", "model", type=click.Choice(model_names()),
              required=True, help="Registered model (see `mexkit models`).")
@click.option("--protocol", type=click.Choice(["loso", "kfold", "cde", "hde"]),
              default=None,
              help="Leave-one-subject-out, stratified k-fold, composite database (LOSO over "
                   "datasets), hold-out database.  Default: the model's paper's.")
@click.option("--scheme", default=None,
              help=f"Label scheme ({', '.join(scheme_names())}). "
                   "Default: the model's paper's, else the label stored with each sample.")
@click.option("--folds", "n_splits", type=click.IntRange(min=2), default=10, show_default=True,
              help="Number of folds for --protocol kfold.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Default: the paper's.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Default: the paper's.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Default: the paper's.")
@click.option("--schedule", default=None, metavar="SPEC",
              help="Learning-rate schedule: constant, step:N[:GAMMA] (x GAMMA, default 0.1, "
                   "every N epochs) or cosine[:ETA_MIN].  Default: the paper's.")
@click.option("--loss", type=click.Choice(["ce", "focal"]), default=None,
              help="Cross-entropy or focal loss (Lin et al. 2017).  Default: the paper's "
                   "(focal for MERSiamC3D, cross-entropy for the others).")
@click.option("--focal-gamma", type=click.FloatRange(min=0), default=None,
              help="Focusing parameter of the focal loss (default 2, as MERSiamC3D).")
@click.option("--focal-alpha", default=None, metavar="balanced|A,B,...",
              help="Per-class weights of the focal loss: 'balanced' (from the training "
                   "fold's class frequencies) or one number per class.  Default: the paper's.")
@click.option("--balance", type=click.Choice(["default", "resample", "weights", "none"]),
              default="default", show_default=True,
              help="Class balancing (default: the paper's choice).")
@device_option("the network trains")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of initialisation, sampling and augmentation.")
@click.option("--deterministic/--no-deterministic", default=True, show_default=True,
              help="Deterministic kernels (bit-reproducible runs and resumes).")
@click.option("--final", is_flag=True,
              help="Also train one model on all samples, for `mexkit predict`.")
@click.option("--fold-jobs", type=str, default="auto", show_default=True,
              callback=_check_fold_jobs,
              help="Folds trained at once, in worker processes sharing the CPU threads "
                   "(same results as one after the other, within float rounding). auto: "
                   "one per CPU core on the CPU (fewer if the samples would not fit in "
                   "memory that many times), one on a GPU.")
@click.option("--select-on-test", is_flag=True,
              help="Also report the published practice of keeping each fold's best test "
                   "epoch (HTNet's code), labelled as selected on the test fold; the "
                   "default figures are the last epoch's, chosen without the test subject.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Results folder (default: <store>.<model>-<protocol>/).")
@_with_model_options
def train_cmd(store: str, model: str, protocol: str | None, scheme: str | None, n_splits: int,
              epochs: int | None, batch_size: int | None, lr: float | None,
              schedule: str | None, loss: str | None, focal_gamma: float | None,
              focal_alpha: str | None, balance: str,
              device: str, seed: int, deterministic: bool, final: bool, fold_jobs: int | str,
              select_on_test: bool, out_dir: Path | None, **model_opts: object) -> int:
    """Train and evaluate a model on STORE (or '-') under a protocol.

    Writes results.json (configuration, versions, per-fold and pooled
    metrics, each fold's training history), predictions.csv, confusion.png
    and training.png (training loss and accuracy by epoch) in the results
    folder and prints the path of results.json.  Finished folds and a fold's epochs
    up to its last checkpoint (one every 5 s of training) are kept: run
    the same command again to resume a killed job.  Under torchrun the same
    command trains with DistributedDataParallel.  Options marked [model] apply
    to that model only.
    """
    given = {k[len("mopt_"):]: v for k, v in model_opts.items() if v is not None}
    run = train_model(
        resolve_input(store), out_dir, model=model, protocol=protocol, scheme=scheme,
        n_splits=n_splits, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
        loss=loss, focal_gamma=focal_gamma, focal_alpha=_focal_alpha(focal_alpha),
        model_options=given, device=device, seed=seed, deterministic=deterministic,
        class_balance=None if balance == "none" else balance, final=final,
        progress=progress(), fold_jobs=fold_jobs, select_on_test=select_on_test)
    if run.report is None:
        return 0  # under torchrun only rank 0 reports
    if not settings().get("quiet"):
        click.echo(run.report, err=True)
    out(str(run.results.resolve()))
    return 0


@click.command("predict", epilog="""\b
Examples:
  mexkit train demo.flow.h5 --model mean --final -o run
  mexkit predict new.flow.h5 --results run -o new.csv && mexkit evaluate new.csv
  mexkit predict casme2.flow.h5 --weights MEAN_Weights/CASME2/recog --per-subject
""")
@click.argument("store", type=str)
@click.option("--results", "results_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), default=None,
              help="Results folder of `mexkit train --final`.")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None,
              help="A network a model's authors published (MEAN: a Keras .hdf5 of "
                   "MEAN_Weights, either layout, spot / recog / spot_recog), or with "
                   "--per-subject a folder of fold files sN.hdf5. Read as data (h5py); "
                   "nothing in the file is executed.")
@click.option("--per-subject", is_flag=True,
              help="--weights FOLDER: score each sample with its own subject's fold network "
                   "(the authors' LOSO numbering; see docs/reproducing.md).")
@click.option("--subject-map", default=None, metavar="SUBJECT=sN,...|FILE",
              help="--per-subject: the fold file of each subject, instead of the authors' "
                   "numbering rebuilt from the store.")
@click.option("--classes", default=None, metavar="A,B,C",
              help="--weights: the recognition outputs' class names in order (default: from "
                   "the dataset folder in the weights' path, as the authors encode labels).")
@device_option("the model runs")
@click.option("--scheme", default=None,
              help="Label scheme for the 'true' column (default: the one the model was "
                   "trained with, else the stored label), so `mexkit evaluate` can score it.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Predictions CSV (default: <store>.predictions.csv).")
def predict_cmd(store: str, results_dir: Path | None, weights: Path | None, per_subject: bool,
                subject_map: str | None, classes: str | None, device: str,
                scheme: str | None, output: Path | None) -> int:
    """Apply a trained model to the samples of STORE: the final model of a
    training run (--results), or networks its authors published (--weights, MEAN's).

    Writes a predictions CSV (true is the stored label when known; with
    --weights the score_<class> columns are the network's softmax outputs and
    spot_score its spotting output) and prints its path.
    """
    path = resolve_input(store)
    if output is None:
        output = path.with_name(f"{path.name.split('.')[0]}.predictions.csv")
    predict_store(path, results_dir, output, device=device, scheme=scheme, weights=weights,
                  per_subject=per_subject, subject_map=subject_map,
                  classes=classes.split(",") if classes else None)
    out(str(Path(output).resolve()))
    return 0
