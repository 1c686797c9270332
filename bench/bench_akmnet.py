"""AKMNet training and inference throughput, in clips per second.

Times the model itself (ResNet-18 per frame, key-frame mining, pixel-wise
bi-GRU) on random clips of a fixed length: a training step is forward,
cross-entropy + GS-MMM loss, backward and an SGD step (the paper's
optimiser) on a batch of 8 clips in training mode; inference is a forward
pass in evaluation mode. Data loading is not included (the inputs of a
fold are built once and kept in memory by mexkit's dataset).

Usage: python bench/bench_akmnet.py [--threads 2] [--device cpu|cuda]
       [--sizes 128,64,32] [--frames 16] [--batch 8] [--steps 3]
"""
from __future__ import annotations

import argparse
import time

# mexkit first, as in `mexkit train`: importing it sets OMP_WAIT_POLICY=PASSIVE, which
# torch's OpenMP runtime reads once, when torch is imported.
import mexkit  # noqa: F401

# isort: split
import torch
import torch.nn.functional as F


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(size: int, frames: int, batch: int, steps: int, device: torch.device
          ) -> tuple[float, float]:
    from mexkit.models.akmnet.network import AKMNet

    torch.manual_seed(0)
    model = AKMNet(4, image_size=size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch, frames, 3, size, size, device=device)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    y = torch.randint(0, 4, (batch,), device=device)

    def train_step() -> None:
        model.train()
        loss = F.cross_entropy(model(x, mask), y) + model.regularization_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.inference_mode()
    def infer_step() -> None:
        model.eval()
        model(x, mask)

    rates = []
    for step in (train_step, infer_step):
        step()  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(steps * batch / (time.perf_counter() - t0))
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="128,64,32")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {args.threads} thread(s)")
    print(f"AKMNet, {args.frames} frames per clip, batch {args.batch}, {where}")
    print(f"{'frame side':>10}  {'train clips/s':>13}  {'infer clips/s':>13}")
    for size in (int(s) for s in args.sizes.split(",")):
        train, infer = bench(size, args.frames, args.batch, args.steps, device)
        print(f"{size:>10}  {train:>13.2f}  {infer:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
