#!/usr/bin/env bash
# Acceptance example: MEAN's spot-then-recognize evaluation, leave-one-subject-out, on
# synthetic long videos (SAMM Long Videos layout: several subjects with several videos
# each; micro-expressions of 0.2-0.5 s, macro-expressions, unannotated blinks and head
# motion), through the commands a researcher runs on SAMM-LV or CAS(ME)^2:
#
#   synth --long | crop (whole videos) | flow --pairs gap --features mean
#     | train --model mean (spotting, then recognition on the frozen shared layers)
#
# Prints the spotting table (TP, FP, FN, precision, recall, F1 per type and overall),
# AP@[.5:.95], the analysis metrics of the true positives and STRS, and leaves a PNG per
# video in $w/spot-loso/plots.
#
# Settings that differ from the paper, to fit a 2-core machine (see docs/spotting.md):
# 25 fps videos (k = round(0.1 x 25) = 2), Farneback flow instead of TV-L1 (FLOW=tvl1 to
# use TV-L1), and 30 epochs per stage instead of 200 / 800 (EPOCHS=...).  The
# micro-expressions peak at 1-2.5 px (INTENSITY=0.3,2.0 for synth's default range).
# Usage: examples/spot_loso.sh [WORK_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/mexkit ] || bin/setup
export PATH="$PWD/.venv/bin:$PATH" MPLBACKEND=Agg
# one BLAS/OpenMP thread: the network is tiny and extra threads only wait on each other
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
w=${1:-examples-out/spot}
flow=${FLOW:-farneback}
epochs=${EPOCHS:-30}
intensity=${INTENSITY:-1.0,2.5}
mkdir -p "$w"

sheet=$(mexkit synth --long "$w/data" --subjects 3 --videos-per-subject 2 --seconds 10 \
          --fps 25 --intensity "$intensity" --format png --overwrite)
mexkit -q crop --annotations "$sheet" --dataset-fps 25 -o "$w/lv.crop.h5" \
  | mexkit -q flow - --pairs gap --features mean --method "$flow" -o "$w/lv.flow.h5" \
  | mexkit -q train - --model mean --epochs "$epochs" --spot-epochs "$epochs" \
      --emotions "$w/data/intervals.csv" -o "$w/spot-loso" >/dev/null

printf '\n== MEAN spot-then-recognize, leave-one-subject-out (%s)\n' "$w/spot-loso"
# the ground truth is synth's own interval file, so any tool's output scores the same way
mexkit spot-eval --truth "$w/data/intervals.csv" --pred "$w/spot-loso/intervals.csv"
ls "$w/spot-loso/plots"
