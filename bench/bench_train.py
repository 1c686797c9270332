"""Time to train one leave-one-subject-out fold on the synthetic set.

Builds (or reuses) a synthetic CASME II-like dataset, crops it, computes the
inputs of MEAN (onset-apex TV-L1 flow + strain) and ATNet (TIM to 65 frames,
64 Farneback flows, direction-magnitude feature, apex frame), then trains one
LOSO fold of each model with the paper's optimiser settings and prints the
seconds per epoch and per fold.

Usage: python bench/bench_train.py [--work DIR] [--threads 2] [--mean-epochs 800]
       [--atnet-epochs 50]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

# mexkit first, as in its commands: importing it sets OMP_WAIT_POLICY=PASSIVE, which
# torch's OpenMP runtime reads once, when torch is imported.
import mexkit  # noqa: F401

# isort: split
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--mean-epochs", type=int, default=800)
    ap.add_argument("--atnet-epochs", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("mexkit").setLevel(logging.ERROR)

    from mexkit.io.datasets import load_dataset
    from mexkit.io.store import open_store
    from mexkit.learn.data import StoreDataset
    from mexkit.learn.protocols import loso
    from mexkit.learn.train import fit, seed_everything
    from mexkit.models import paper_defaults
    from mexkit.models.inputs import build_input
    from mexkit.models.registry import get_model
    from mexkit.pipeline.crop import clips_from_samples, run_crop
    from mexkit.pipeline.flow import run_flow
    from mexkit.pipeline.labelled import sample_table
    from mexkit.pipeline.synth import write_casme2_like
    from mexkit.pipeline.temporal import run_tim

    work = args.work or Path(tempfile.mkdtemp(prefix="mexkit-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "samples.csv").exists():
        write_casme2_like(data, n_subjects=args.subjects, clips_per_class=2, fps=100.0)
    samples = load_dataset("generic", data / "samples.csv")
    specs = clips_from_samples(samples)
    t0 = time.perf_counter()
    run_crop(specs, work / "mean.crop.h5", progress=False)
    run_flow(work / "mean.crop.h5", work / "mean.flow.h5", pairs="onset-apex", strain=True,
             progress=False)
    run_crop(specs, work / "atnet.crop.h5", size=224, grey=False, progress=False)
    run_tim(work / "atnet.crop.h5", work / "atnet.tim.h5", n_frames=65, progress=False)
    run_flow(work / "atnet.tim.h5", work / "atnet.flow.h5", pairs="apex-window",
             method="farneback", features=["dm"], with_apex=True, progress=False)
    print(f"inputs for {len(samples)} clips ready in {time.perf_counter() - t0:.1f} s "
          f"({work})")
    print(f"torch {torch.__version__}, {args.threads} CPU threads")

    for model, store, epochs in (("mean", work / "mean.flow.h5", args.mean_epochs),
                                 ("atnet", work / "atnet.flow.h5", args.atnet_epochs)):
        with open_store(store) as s:
            table = sample_table(s, scheme=None)
        from mexkit.models.registry import get_spec

        ds = StoreDataset(store, table.sample_ids, table.y, get_spec(model).input_names,
                          build=build_input)
        ds.preload()
        fold = next(iter(loso(table.subjects, datasets=table.datasets)))
        train = torch.utils.data.Subset(ds, fold.train)
        train.labels = [ds.labels[i] for i in fold.train]
        kw = paper_defaults(model)
        kw["epochs"] = epochs
        seed_everything(0)
        net = get_model(model, len(table.classes))
        t = time.perf_counter()
        fit(net, train, **kw)
        sec = time.perf_counter() - t
        print(f"{model:<6} one LOSO fold: {len(fold.train)} training clips, {epochs} epochs, "
              f"{sec:.1f} s ({sec / epochs * 1000:.1f} ms per epoch)")


if __name__ == "__main__":
    main()
