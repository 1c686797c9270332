"""Training and inference speed of MERSiamC3D, in clips per second.

A clip is one ``keyframe_flow`` input, ``(3, 10, 112, 112)`` (10 flow fields
of 11 adaptive key frames). Measured:

- target learning: forward, focal loss, backward and an SGD step of
  :class:`~mexkit.models.mersiamc3d.MERSiamC3D` with conv1-2 frozen;
- prior learning: the same for :class:`~mexkit.models.mersiamc3d.SiameseC3D`
  (each pair is two clips; clips/s counts both);
- inference: the target network in evaluation mode.

On ``--threads`` CPU threads (2 by default, the CI machine) and on the GPU
when one is present. ``--resolution`` measures the reduced-resolution
variant (``mexkit train --resolution``) as well.

Usage::

    python bench/bench_mersiamc3d.py [--threads 2] [--batch 8] [--repeat 3]
                                     [--resolution 16]

Prints one line per measurement (best of ``--repeat`` timed runs after a
warm-up). On a shared machine the numbers are noisy; the best run is the
least disturbed one.
"""
from __future__ import annotations

import argparse
import os
import sys

# mexkit first, as in its commands: importing it sets OMP_WAIT_POLICY=PASSIVE, which
# torch's OpenMP runtime reads once, when torch is imported.
import mexkit  # noqa: F401

# isort: split
import torch
import torch.nn.functional as F
from _timing import best_seconds

from mexkit.learn.losses import focal_loss
from mexkit.models.mersiamc3d.network import INPUT_SHAPE, MERSiamC3D, SiameseC3D


def bench(device: torch.device, batch: int, repeat: int, resolution: int | None
          ) -> dict[str, float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = MERSiamC3D(3, resolution=resolution).to(device)
    siamese = SiameseC3D(model.features, resolution=resolution,
                         dense=model.dense_units).to(device)
    x = torch.randn(batch, *INPUT_SHAPE, device=device)
    y = torch.arange(batch, device=device) % 3
    same = (torch.arange(batch, device=device) % 2).long()

    model.freeze_convs(2)
    opt_t = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.004,
                            momentum=0.9)

    def target_step():
        model.train()
        loss = focal_loss(model(x), y, gamma=2.0)
        opt_t.zero_grad(set_to_none=True)
        loss.backward()
        opt_t.step()

    model.freeze_convs(0)
    opt_p = torch.optim.SGD(siamese.parameters(), lr=0.004, momentum=0.9)
    half = max(batch // 2, 1)

    def prior_step():
        siamese.train()
        loss = F.cross_entropy(siamese(x[:half], x[-half:]), same[:half])
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_p.step()

    @torch.inference_mode()
    def infer():
        model.eval()
        model(x)

    return {
        "target training": batch / best_seconds(target_step, repeat, sync),
        "prior training": 2 * half / best_seconds(prior_step, repeat, sync),
        "inference": batch / best_seconds(infer, repeat, sync),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=None,
                    help="also measure this reduced working resolution")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"MERSiamC3D, input {INPUT_SHAPE}, batch {args.batch}, torch {torch.__version__}, "
          f"load average {load:.1f}")
    runs = [(torch.device("cpu"), f"cpu x{args.threads}")]
    if torch.cuda.is_available():
        runs.append((torch.device("cuda"), torch.cuda.get_device_name(0)))
    for device, name in runs:
        for res in [None] + ([args.resolution] if args.resolution else []):
            label = "112 (paper)" if res is None else f"{res} (reduced)"
            for what, rate in bench(device, args.batch, args.repeat, res).items():
                print(f"{name:>24}  resolution {label:<12}  {what:<16} {rate:10.1f} clips/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
