"""Training and inference speed of PSN, in clips per second.

One clip is PSN's input: 16 RPCA sparse frames and 16 TIM frames, each
112x112 (the spatial sub-network runs once per frame, so one clip is 16
AlexNet-variant passes plus a 16-step Temporal Perception Unit).

- training: forward, cross-entropy, backward and an optimiser step (the
  registry's defaults: Adam 1e-4) at the paper's batch of 5 clips,
  augmentation included;
- inference: forward without gradients at batch 1 and 8.

Usage::

    python bench/bench_psn.py [--threads 2] [--repeat 3] [--steps 4]

Prints one line per measurement: the best of ``--repeat`` timed runs after a
warm-up (the least disturbed run on a shared machine), and the GPU's when
torch sees one.
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

from mexkit.learn.augment import get_augmentation
from mexkit.models import get_model, get_spec


def _batch(b: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(b)
    return {"psn_sparse": (torch.randn(b, 16, 112, 112, generator=g) * 0.3).to(device),
            "psn_frames": torch.rand(b, 16, 112, 112, generator=g).to(device)}


def bench(device: torch.device, *, batch: int, steps: int, repeat: int) -> tuple[float, dict]:
    """Training clips/s at ``batch`` and inference clips/s at batch 1 and 8."""
    spec = get_spec("psn")
    model = get_model("psn", 4).to(device)
    d = spec.defaults
    if d.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=d.lr, weight_decay=d.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=d.lr, momentum=d.momentum,
                              weight_decay=d.weight_decay)
    augment = get_augmentation(d.augmentation)
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    x = _batch(batch, device)
    y = torch.arange(batch, device=device) % 4

    def train():
        model.train()
        for _ in range(steps):
            inputs = augment(x, generator=gen)
            loss = torch.nn.functional.cross_entropy(model(**inputs), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    training = batch * steps / best_seconds(train, repeat, sync)
    inference = {}
    for b in (1, 8):
        xb = _batch(b, device)

        @torch.inference_mode()
        def infer(xb=xb):
            model.eval()
            model(**xb)

        inference[b] = b / best_seconds(infer, repeat, sync)
    return training, inference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed run")
    parser.add_argument("--batch", type=int, default=5, help="training batch (paper: 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"PSN, torch {torch.__version__}, {args.threads} CPU threads, best of "
          f"{args.repeat}; one clip = 16 sparse + 16 TIM frames of 112x112", flush=True)
    devices = [("cpu", torch.device("cpu"))]
    if torch.cuda.is_available():
        devices.append((torch.cuda.get_device_name(0), torch.device("cuda")))
    for name, device in devices:
        training, inference = bench(device, batch=args.batch, steps=args.steps,
                                    repeat=args.repeat)
        print(f"{name}: training {training:8.2f} clips/s (batch {args.batch}, optimiser step "
              "and augmentation included)", flush=True)
        for b, rate in inference.items():
            print(f"{name}: inference {rate:8.2f} clips/s (batch {b})", flush=True)
    if not torch.cuda.is_available():
        print("no CUDA device: GPU measurements skipped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
