"""Inference speed of the registered models.

MEAN: frames (42x42x3 region images) per second, batched, on a fixed number
of CPU threads (the target is at least 5,000 frames/s on 2 threads; the
paper reports 0.0014 s per frame, about 714 frames/s, on a GTX 1080 Ti) and
on the GPU when one is present. ATNet: forward time per sample at the
paper's input sizes (224x224 apex frame, 64x128 direction-magnitude
feature).

Usage::

    python bench/bench_models.py [--threads 2] [--repeat 5] [--quick]

Prints one line per measurement (best of ``--repeat`` timed runs, after a
warm-up). On a shared machine the numbers are noisy; the best run is the
least disturbed one.
"""
from __future__ import annotations

import argparse
import sys

# mexkit first, as in its commands: importing it sets OMP_WAIT_POLICY=PASSIVE, which
# torch's OpenMP runtime reads once, when torch is imported.
import mexkit  # noqa: F401

# isort: split
import torch
from _timing import best_seconds

from mexkit.models.atnet.network import ATNet
from mexkit.models.mean.network import MEAN


def bench_mean(device: torch.device, batch: int, n_batches: int, repeat: int) -> float:
    model = MEAN(3).to(device).eval()
    x = torch.randn(batch, 3, 42, 42, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    @torch.inference_mode()
    def run():
        for _ in range(n_batches):
            model.forward_both(x)

    return batch * n_batches / best_seconds(run, repeat, sync)


def bench_atnet(device: torch.device, batch: int, repeat: int) -> float:
    model = ATNet(3).to(device).eval()
    apex = torch.randn(batch, 3, 224, 224, device=device)
    dm = torch.randn(batch, 64, 128, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    @torch.inference_mode()
    def run():
        model(apex, dm)

    return best_seconds(run, repeat, sync) / batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_batches = 2 if args.quick else 8
    print(f"torch {torch.__version__}, {args.threads} CPU threads, best of {args.repeat}",
          flush=True)
    for batch in (1, 64, 256, 1024):
        fps = bench_mean(torch.device("cpu"), batch, n_batches if batch > 1 else 200,
                         args.repeat)
        print(f"MEAN  cpu   batch {batch:5d}: {fps:10.0f} frames/s "
              f"({1e3 / fps:.4f} ms/frame)", flush=True)
    for batch in (1, 8):
        sec = bench_atnet(torch.device("cpu"), batch, max(1, args.repeat // 2))
        print(f"ATNet cpu   batch {batch:5d}: {sec * 1e3:10.1f} ms/sample", flush=True)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        name = torch.cuda.get_device_name(gpu)
        for batch in (256, 4096):
            fps = bench_mean(gpu, batch, 20, args.repeat)
            print(f"MEAN  cuda  batch {batch:5d}: {fps:10.0f} frames/s [{name}]", flush=True)
        for batch in (1, 64):
            sec = bench_atnet(gpu, batch, args.repeat)
            print(f"ATNet cuda  batch {batch:5d}: {sec * 1e3:10.3f} ms/sample [{name}]",
                  flush=True)
    else:
        print("no CUDA device: GPU measurements skipped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
