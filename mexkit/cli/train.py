"""``mexkit train``, ``pretrain``, ``evaluate``, ``predict`` and ``models``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import DatasetError, ParameterError
from ..labels import scheme_names
from ._common import out, resolve_input, settings


def _registry() -> list:
    from ..models.registry import list_models

    return list_models()


def _model_option_decorators() -> list:
    """One click option per model option in the registry (shared names merged)."""
    seen: dict[str, tuple[object, list[str], str]] = {}
    for spec in _registry():
        for opt in spec.options:
            kind, owners, text = seen.get(opt.name, (opt.type, [], opt.help))
            if kind != opt.type:
                raise ParameterError(
                    f"Models declare the option --{opt.name} with different types "
                    f"({kind!r} and {opt.type!r}).")
            owners.append(spec.name)
            seen[opt.name] = (kind, owners, text)
    decorators = []
    for name, (kind, owners, text) in sorted(seen.items()):
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
@click.option("--model", "model", type=click.Choice([s.name for s in _registry()]),
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
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where to train: auto takes a GPU when torch sees one.")
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
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Results folder (default: <store>.<model>-<protocol>/).")
@_with_model_options
def train_cmd(store: str, model: str, protocol: str | None, scheme: str | None, n_splits: int,
              epochs: int | None, batch_size: int | None, lr: float | None,
              schedule: str | None, loss: str | None, focal_gamma: float | None,
              focal_alpha: str | None, balance: str,
              device: str, seed: int, deterministic: bool, final: bool, fold_jobs: int | str,
              out_dir: Path | None, **model_opts: object) -> int:
    """Train and evaluate a model on STORE (or '-') under a protocol.

    Writes results.json (configuration, versions, per-fold and pooled
    metrics, each fold's training history), predictions.csv, confusion.png
    and training.png (training loss and accuracy by epoch) in the results
    folder and prints the path of results.json.  Finished folds and epochs are kept: run
    the same command again to resume a killed job.  Under torchrun the same
    command trains with DistributedDataParallel.  Options marked [model] apply
    to that model only.
    """
    from ..models.registry import get_spec
    from ..pipeline.training import format_report, train_evaluate

    spec = get_spec(model)
    given = {k[len("mopt_"):]: v for k, v in model_opts.items() if v is not None}
    path = resolve_input(store)
    # -- spot-then-recognize: MEAN on a store of whole videos (see mexkit/cli/spot.py) --
    if model == "mean":
        from ..pipeline.spotting import is_spotting_store

        if is_spotting_store(path):
            from .spot import train_spotting_branch

            return train_spotting_branch(
                path, out_dir, options=given, protocol=protocol, epochs=epochs,
                batch_size=batch_size, lr=lr, device=device, seed=seed,
                deterministic=deterministic, final=final)
    # -- end of the spotting branch ------------------------------------------------------
    if out_dir is None:
        out_dir = path.with_name(
            f"{path.name.split('.')[0]}.{model}-{protocol or spec.protocol}")
    results = train_evaluate(
        path, out_dir, model=model, protocol=protocol, scheme=scheme, n_splits=n_splits,
        epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, loss=loss,
        focal_gamma=focal_gamma, focal_alpha=_focal_alpha(focal_alpha), model_options=given,
        device=device, seed=seed, deterministic=deterministic,
        class_balance=None if balance == "none" else balance, final=final,
        progress=settings().get("progress", True), fold_jobs=fold_jobs)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 reports
    if not settings().get("quiet"):
        click.echo(format_report(json.loads(results.read_text())), err=True)
    out(str(results.resolve()))
    return 0


@click.command("pretrain", epilog="""\b
Examples:
  mexkit synth other --subjects 16 --seed 1 | mexkit crop --annotations - --size 128 \\
    | mexkit magnify - --alpha 15 | mexkit pretrain - --image-size 32 -o backbone.safetensors
  mexkit train casme2.mag.h5 --model akmnet --weights backbone.safetensors --image-size 32
""")
@click.argument("store", type=str)
@click.option("--model", "model", type=click.Choice(
              [s.name for s in _registry() if getattr(s, "backbone_pretrainer", None)]),
              default="akmnet", show_default=True, help="Model whose frame backbone is trained.")
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
@click.option("--device", type=str, default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initialisation, batch order and shifts.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing output written with other settings or data.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The safetensors weights file to write.")
def pretrain_cmd(store: str, model: str, scheme: str | None, epochs: int, lr: float,
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
    from ..pipeline.pretraining import pretrain_weights

    path = resolve_input(store)
    written, computed = pretrain_weights(
        path, output, model=model, scheme=scheme, epochs=epochs, lr=lr,
        batch_size=batch_size, image_size=image_size, seed=seed, device=device,
        overwrite=overwrite, progress=settings().get("progress", True))
    if not computed and not settings().get("quiet"):
        click.echo(f"mexkit: pretrain: {written} already holds these weights; kept.", err=True)
    out(str(Path(written).resolve()))
    return 0


@click.command("evaluate", epilog="""\b
Examples:
  mexkit evaluate demo.mean-loso/results.json
  mexkit evaluate other-tool.csv --classes negative,positive,surprise
""")
@click.argument("source", type=str)
@click.option("--classes", default=None,
              help="Comma-separated classes of the scheme (so that absent classes show).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_cmd(source: str, classes: str | None, as_json: bool) -> int:
    """Print the metrics table of a results.json or of any predictions CSV.

    A predictions CSV needs the columns true and pred (fold and dataset are
    used when present), so other tools' outputs are scored the same way:
    accuracy, UF1 and UAR pooled over folds, per fold, and per class.
    """
    from ..learn.metrics import pooled_and_per_fold
    from ..pipeline.training import format_report, read_predictions

    path = resolve_input(source, what="results or predictions file")
    if path.suffix == ".json":
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable results file ({exc}).") from exc
        if "pooled" not in results:
            raise DatasetError(f"{path}: not a mexkit results file (no 'pooled' metrics).")
    else:
        rows, score_classes = read_predictions(path)
        cls = classes.split(",") if classes else (score_classes or None)
        results = pooled_and_per_fold(rows, classes=cls)
    if as_json:
        from ..pipeline.training import jsonable

        out(json.dumps(jsonable(results), indent=2, sort_keys=True))
    else:
        out(format_report(results))
    return 0


@click.command("predict", epilog="""\b
Examples:
  mexkit train demo.crop.flow-tvl1.h5 --model mean --final -o run
  mexkit predict new.crop.flow-tvl1.h5 --results run -o new.csv && mexkit evaluate new.csv
  mexkit predict casme2.flow.h5 --weights MEAN_Weights/CASME2/recog --per-subject
""")
@click.argument("store", type=str)
@click.option("--results", "results_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), default=None,
              help="Results folder of `mexkit train --final`.")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None,
              help="MEAN's published Keras network (.hdf5, either layout, spot / recog / "
                   "spot_recog), or with --per-subject a folder of fold files sN.hdf5. Read "
                   "with h5py only; nothing in the file is executed.")
@click.option("--per-subject", is_flag=True,
              help="--weights FOLDER: score each sample with its own subject's fold network "
                   "(the authors' LOSO numbering; see docs/reproducing.md).")
@click.option("--subject-map", default=None, metavar="SUBJECT=sN,...|FILE",
              help="--per-subject: the fold file of each subject, instead of the authors' "
                   "numbering rebuilt from the store.")
@click.option("--classes", default=None, metavar="A,B,C",
              help="--weights: the recognition outputs' class names in order (default: from "
                   "the dataset folder in the weights' path, as the authors encode labels).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where the model runs: auto takes a GPU if torch sees one.")
@click.option("--scheme", default=None,
              help="Label scheme for the 'true' column (default: the one the model was "
                   "trained with, else the stored label), so `mexkit evaluate` can score it.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Predictions CSV (default: <store>.predictions.csv).")
def predict_cmd(store: str, results_dir: Path | None, weights: Path | None, per_subject: bool,
                subject_map: str | None, classes: str | None, device: str,
                scheme: str | None, output: Path | None) -> int:
    """Apply a trained model to the samples of STORE: the final model of a
    training run (--results), or MEAN's published networks (--weights).

    Writes a predictions CSV (true is the stored label when known; with
    --weights the score_<class> columns are the network's softmax outputs and
    spot_score its spotting output) and prints its path.
    """
    if (results_dir is None) == (weights is None):
        raise ParameterError("Give either --results or --weights.")
    if weights is None and (per_subject or subject_map or classes):
        raise ParameterError("--per-subject, --subject-map and --classes go with --weights.")
    path = resolve_input(store)
    if output is None:
        output = path.with_name(f"{path.name.split('.')[0]}.predictions.csv")
    if weights is not None:
        from ..pipeline.mean_weights import predict_with_weights

        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        predict_with_weights(path, weights, output, per_subject=per_subject,
                             classes=classes.split(",") if classes else None, scheme=scheme,
                             subject_map=subject_map, device=device)
    else:
        from ..pipeline.training import predict_store

        predict_store(path, results_dir, output, device=device, scheme=scheme)
    out(str(Path(output).resolve()))
    return 0


@click.command("models", epilog="""\b
Examples:
  mexkit models
  mexkit models --markdown > models.md
""")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.option("--markdown", is_flag=True, help="Print the README's table of models.")
def models_cmd(as_json: bool, markdown: bool) -> int:
    """List the models: inputs and the commands that make them, paper defaults,
    options and parameter counts (all from the model and input registries)."""
    from ..learn.inputs import get_input
    from ..models.registry import count_parameters, get_model, list_models

    rows = []
    for spec in list_models():
        n_classes = 3
        net = get_model(spec.name, n_classes)
        rows.append({
            "name": spec.name,
            "reference": spec.reference,
            "module": spec.module,
            "inputs": {i.name: ["T" if d is None else d for d in i.shape]
                       for i in spec.inputs},
            "produced_by": {i.name: get_input(i.name).produced_by for i in spec.inputs},
            "defaults": dict(spec.defaults.as_fit_kwargs()),
            "protocol": spec.protocol,
            "scheme": spec.scheme,
            "augmentation": spec.defaults.augmentation,
            "options": {o.name: {"default": o.default, "help": o.help} for o in spec.options},
            "trainer": spec.trainer or "standard",
            "parameters_3_classes": count_parameters(net),
            "paper_reported": dict(spec.paper_reported),
        })
    if as_json:
        out(json.dumps(rows, indent=2, default=str))
        return 0
    if markdown:
        out(models_markdown(rows))
        return 0
    for r in rows:
        d = r["defaults"]
        out(f"{r['name']}")
        out(f"  paper      {r['reference']}")
        for name, shape in r["inputs"].items():
            out(f"  input      {name} {_shape(shape)}: {r['produced_by'][name]}")
        balance = d["class_balance"] or "none"
        out(f"  training   {d['optimizer']} lr {d['lr']}, {d['epochs']} epochs, batch "
            f"{d['batch_size']}, loss {d['loss']}, balance {balance}, "
            f"augment {r['augmentation'] or 'none'}; {r['protocol']}"
            f"{', scheme ' + r['scheme'] if r['scheme'] else ''}")
        if r["options"]:
            out("  options    " + ", ".join(f"--{k}" for k in r["options"]))
        paper = r["paper_reported"].get(3) or r["paper_reported"].get("3")
        extra = f" (paper: {paper})" if paper else ""
        out(f"  parameters {r['parameters_3_classes']:,} for 3 classes{extra}")
    return 0


def _shape(shape: list) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def models_markdown(rows: list[dict]) -> str:
    """The README's table of models, from ``mexkit models --json`` rows."""
    lines = ["| model | inputs (made by) | paper defaults | parameters (3 classes) |",
             "|---|---|---|---|"]
    for r in rows:
        d = r["defaults"]
        inputs = "<br>".join(
            f"`{k}` {_shape(v)}: `{r['produced_by'][k].replace('|', chr(92) + '|')}`"
            for k, v in r["inputs"].items())
        train = (f"{d['optimizer']} {d['lr']}, {d['epochs']} epochs, {d['loss']}, "
                 f"{r['protocol']}")
        lines.append(f"| `{r['name']}` | {inputs} | {train} | "
                     f"{r['parameters_3_classes']:,} |")
    return "\n".join(lines)
