#!/usr/bin/env bash
# Install mexkit into a fresh virtual environment for each documented combination of
# extras and check each: `pip check` clean, one OpenCV distribution, cv2.optflow's
# DualTVL1 present.  Needs the network (or a pip cache) and ~3 GB per environment.
# Usage: tools/check_extras.sh [WORK_FOLDER]   (default: a new folder under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/mexkit-extras.XXXXXX)}
mkdir -p "$work"
status=0
for extras in "" "[test]" "[fan]" "[parquet]" "[pandas]" "[test,fan,parquet,pandas]"; do
  env="$work/venv${extras//[^a-z]/_}"
  rm -rf "$env"
  ${PYTHON:-python3} -m venv "$env"
  pip() { "$env/bin/python" -m pip --disable-pip-version-check -q "$@"; }
  pip install "torch==2.13.0"
  pip install ".$extras" > "$env.log" 2>&1 || { echo "mexkit$extras: install failed ($env.log)"; status=1; continue; }
  if grep -q "dependency resolver" "$env.log"; then
    echo "mexkit$extras: resolver error ($env.log)"; status=1
  fi
  if ! "$env/bin/python" -m pip --disable-pip-version-check check; then
    echo "mexkit$extras: pip check failed"; status=1
  fi
  "$env/bin/python" - "$extras" <<'PY' || status=1
import importlib.metadata as md, sys
import cv2
opencv = sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()} & {
    "opencv-python", "opencv-python-headless", "opencv-contrib-python",
    "opencv-contrib-python-headless"})
assert opencv == ["opencv-contrib-python-headless"], f"OpenCV distributions: {opencv}"
cv2.optflow.DualTVL1OpticalFlow_create()
print(f"mexkit{sys.argv[1]}: pip check clean, {opencv[0]} {cv2.__version__}, cv2.optflow ok")
PY
  rm -rf "$env"
done
exit $status
