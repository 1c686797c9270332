#!/usr/bin/env bash
# Acceptance example: MEAN and ATNet trained and evaluated leave-one-subject-out on a
# synthetic dataset with three well-separated classes (surprise AU1+2, positive AU12,
# negative AU4/AU9; peak displacement 1.5-3 px), through the same commands a researcher
# runs on CASME II.  Prints UF1 / UAR for both models.  Takes about 15 minutes on 2 CPU
# cores (most of it ATNet: 64 TV-L1 flows per clip and a 224x224 ResNet-10).
# Usage: examples/synth_loso.sh [WORK_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
bin/setup
export PATH="$PWD/.venv/bin:$PATH" MPLBACKEND=Agg
w=${1:-examples-out}
mkdir -p "$w"
mexkit synth "$w/data" --subjects 6 --clips-per-class 2 --intensity 1.5,3.0 --overwrite >/dev/null

# MEAN: 128x128 grey crops, onset-apex TV-L1 flow and strain, 42x42 regions
mexkit crop --annotations "$w/data/samples.csv" -o "$w/mean.crop.h5" \
  | mexkit flow - --pairs onset-apex --strain -o "$w/mean.flow.h5" \
  | mexkit -q train - --model mean --protocol loso --epochs 300 -o "$w/mean-loso" >/dev/null

# ATNet: 224x224 RGB crops; the synthetic clips (20-50 frames at 100 fps) are shorter than
# ATNet's 65-frame apex window, so TIM resamples each clip to 65 frames first; 64 TV-L1
# flows -> 64x128 direction-magnitude feature, apex frame for the spatial stream.
# Schedule: the paper's (50 epochs, lr / 10 every 10) is set for composite data of 442 clips,
# about 28 SGD steps per epoch at batch 16; 30 training clips give 2 steps per epoch, so
# the paper's schedule spends only 20 steps at lr 0.01.  100 epochs with the step at 40
# give 80.
mexkit crop --annotations "$w/data/samples.csv" --rgb --size 224 -o "$w/atnet.crop.h5" \
  | mexkit tim - -n 65 -o "$w/atnet.tim.h5" \
  | mexkit flow - --pairs apex-window --features dm --with-apex -o "$w/atnet.flow.h5" \
  | mexkit -q train - --model atnet --protocol loso --epochs 100 --schedule step:40 \
      -o "$w/atnet-loso" >/dev/null

for m in mean atnet; do
  printf '\n== %s, leave-one-subject-out (%s)\n' "$m" "$w/$m-loso/results.json"
  mexkit evaluate "$w/$m-loso/results.json"
done
