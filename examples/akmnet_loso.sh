#!/usr/bin/env bash
# Acceptance example: AKMNet trained and evaluated leave-one-subject-out on a synthetic
# dataset (surprise AU1+2, positive AU12, negative AU4/AU9; peak displacement 1.5-3 px),
# through the commands a researcher runs on CASME II:
#   mexkit crop --size 128 | mexkit magnify - --alpha 15 | mexkit train - --model akmnet
# Prints the pooled UF1 / UAR (mexkit evaluate), then the share of the selected key frames
# that lie inside the synthetic expression's known frame range (the frames where its
# activation is at least half of its peak), beside the share that a random choice of
# frames would give, and writes beta-over-time plots of 3 clips per class
# (<work>/akmnet-loso/key_frames/).
#
# CPU budget (2 shared cores): the paper's settings (128x128 frames, 40 epochs, batch 8,
# lr 1e-3 from ImageNet + AffectNet weights, 144 -> 128 random crops) are out of reach
# here; by default this run trains from scratch with frames of 32x32 inside the network
# (--image-size 32; the stored input stays 128x128), clips of 4-10 frames (20 fps),
# 4 subjects with 2 clips per class (18 training clips per fold), batch 4 and lr 0.01
# (5 SGD steps per epoch), 60 epochs, and without the random-crop augmentation
# (--train-resize 128): in short diagnostic runs the crops kept the from-scratch network
# at chance within a few hundred SGD steps. Override with the environment: EPOCHS,
# IMAGE_SIZE, LR, BATCH, SUBJECTS, CLIPS (per class and subject), FPS, TRAIN_RESIZE (144 is
# the paper's augmentation) and OPTS (more `mexkit train` options, e.g. OPTS=--no-mining-loss
# for the ablation). For the paper's optimiser and frame size on CASME II-like 20-50 frame
# clips, with a GPU: EPOCHS=40 IMAGE_SIZE=128 LR=0.001 BATCH=8 FPS=100 TRAIN_RESIZE=144.
# Measured (2 shared cores, other engineers' jobs running, load average 5.6-7.9; about 8 min
# per run): defaults: pooled UF1 0.530 (acc 0.542), 41.4 % of the key frames inside the
# expression's half-peak range (random frames 49.1 %), 47.1 % inside the magnified motion's;
# OPTS="--no-mining-loss --fold-jobs 1": UF1 0.467 (acc 0.583), 63.2 %; EPOCHS=120: UF1
# 0.388, 42.4 % (11.5 min). With no other job, SUBJECTS=6 CLIPS=3 (54 clips, 9 min): UF1
# 0.571, 45.1 % (random 50.4 %). The targets (UF1 >= 0.85, >= 80 % inside) are not reached.
# Usage: examples/akmnet_loso.sh [WORK_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" MPLBACKEND=Agg
w=${1:-examples-out/akmnet}
mkdir -p "$w"
mexkit synth "$w/data" --subjects "${SUBJECTS:-4}" --clips-per-class "${CLIPS:-2}" \
  --fps "${FPS:-20}" \
  --intensity 1.5,3.0 --overwrite >/dev/null

mexkit crop --annotations "$w/data/samples.csv" --size 128 -o "$w/akmnet.crop.h5" \
  | mexkit magnify - --alpha 15 -o "$w/akmnet.mag.h5" \
  | mexkit -q train - --model akmnet --scheme megc3 --image-size "${IMAGE_SIZE:-32}" \
      --epochs "${EPOCHS:-60}" --batch-size "${BATCH:-4}" --lr "${LR:-0.01}" \
      --train-resize "${TRAIN_RESIZE:-128}" ${OPTS:-} -o "$w/akmnet-loso" >/dev/null

printf '\n== akmnet, leave-one-subject-out (%s)\n' "$w/akmnet-loso/results.json"
mexkit evaluate "$w/akmnet-loso/results.json"

python - "$w" <<'EOF'
import json
import sys
from pathlib import Path

import numpy as np

from mexkit.learn.trainers.akmnet import write_key_frame_plots
from mexkit.temporal.magnify import temporal_bandpass

w = Path(sys.argv[1])
extras = json.loads((w / "akmnet-loso" / "predictions.json").read_text())
inside = inside_mag = total = 0
chance = []
truth = {}
for sid, e in sorted(extras.items()):
    subject, clip = sid.split("/")[-2:]
    t = np.load(w / "data" / "truth" / subject / f"{clip}.npz")
    act = np.asarray(t["activation"], dtype=float)
    act = act.max(axis=0) if act.ndim > 1 else act
    span = np.flatnonzero(act >= 0.5 * act.max())
    lo, hi = int(span.min()), int(span.max())
    truth[sid] = (lo, hi)
    # The magnified clip's extra motion follows the activation through the magnifier's IIR
    # band (r1 0.4, r2 0.05; alpha 15): it peaks about a frame later than the activation.
    mag = act + 15.0 * temporal_bandpass(act[:, None, None], 0.05, 0.4)[:, 0, 0]
    mspan = np.flatnonzero(mag >= 0.5 * mag.max())
    keys = e["key_frames"]
    inside += sum(lo <= k <= hi for k in keys)
    inside_mag += sum(int(mspan.min()) <= k <= int(mspan.max()) for k in keys)
    total += len(keys)
    chance.append((hi - lo + 1) / len(act))
print(f"\nkey frames inside the known expression range (activation >= half its peak): "
      f"{inside}/{total} = {inside / total:.1%} (random frames: {np.mean(chance):.1%})")
print(f"key frames inside the magnified motion's half-peak range (activation through the "
      f"magnifier's temporal band, approximate): {inside_mag}/{total} = {inside_mag / total:.1%}")
written = write_key_frame_plots(w / "akmnet-loso", per_class=3, truth=truth)
print(f"{len(written)} key-frame plots in {w / 'akmnet-loso' / 'key_frames'}")
EOF
