"""Training speed through the CLI: `mexkit train` on a store, timed from the command's
start (imports and reading the store included) to its end.

Prints one table row per run: wall time, folds, epochs, the mean seconds of one epoch
of one fold (the ``seconds`` that ``fit`` records, monitor included), the load average
before and after, the fold jobs and torch threads.  ``--code DIR`` runs the mexkit
found in DIR (another checkout, e.g. an older commit in a ``git worktree``) with this
interpreter, so that two versions are timed on the same machine one after the other::

    python bench/train_speed.py composite.h5 --model ststnet --protocol hde --epochs 40
    python bench/train_speed.py composite.h5 --model ststnet --protocol hde --epochs 40 \\
        --code /tmp/old-checkout
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(store: Path, *, model: str, protocol: str | None, epochs: int, fold_jobs: str,
        code: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="mexkit-train-speed-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "mexkit", "-q", "train", str(store), "--model", model,
               "--epochs", str(epochs), "--fold-jobs", fold_jobs, "-o", str(out), *extra]
        if protocol:
            cmd += ["--protocol", protocol]
        env = {**os.environ, "PYTHONPATH": str(code)}
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=code, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
        res = json.loads((out / "results.json").read_text())
    seconds = [r["seconds"] for h in res["training"].values() for r in h]
    return {"wall": wall, "folds": len(res["training"]), "epochs": len(seconds),
            "epoch_s": sum(seconds) / max(len(seconds), 1), "load": (load0, load1),
            "uf1": res["pooled"].get("uf1")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--model", required=True)
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--fold-jobs", default="1")
    ap.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                    help="the checkout whose mexkit runs (default: this one)")
    ap.add_argument("--repeat", type=int, default=1)
    args, extra = ap.parse_known_args(argv)
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        threads = "?"
    print("| code | wall s | folds | fold-epochs | s per fold-epoch | pooled UF1 | load before "
          "-> after | fold jobs | CPUs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for _ in range(args.repeat):
        r = run(args.store.resolve(), model=args.model, protocol=args.protocol,
                epochs=args.epochs, fold_jobs=args.fold_jobs, code=args.code.resolve(),
                extra=extra)
        print(f"| {args.code} | {r['wall']:.1f} | {r['folds']} | {r['epochs']} | "
              f"{r['epoch_s']:.3f} | {r['uf1']:.4f} | {r['load'][0]:.1f} -> "
              f"{r['load'][1]:.1f} | {args.fold_jobs} | {os.cpu_count()} "
              f"(torch threads {threads}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
