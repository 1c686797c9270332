#!/usr/bin/env bash
# Write the small stores of tests/data/v<version>/ with this version of mexkit:
# one store per stage, from a tiny synthetic dataset.  Run once per release; the
# files are committed, and tests/integration/test_archived_stores.py checks that
# every later version still opens, validates and reads them.
# Usage: tools/make_archive_stores.sh   (from the repository root, after bin/setup)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
version=$(python -c 'import mexkit; print(mexkit.__version__)')
out="tests/data/v$version"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
mexkit -q synth "$work/data" --subjects 2 --clips-per-class 1 --format png \
  --seed 5 > /dev/null
mexkit -q crop --annotations "$work/data/samples.csv" --size 48 -o "$out/crop.h5" > /dev/null
mexkit -q flow "$out/crop.h5" --pairs onset-apex --strain --method farneback \
  -o "$out/flow.h5" > /dev/null
mexkit -q tim "$out/crop.h5" -n 8 -o "$out/tim.h5" > /dev/null
mexkit -q rpca "$out/tim.h5" -o "$out/rpca.h5" > /dev/null
mexkit -q keyframes "$out/crop.h5" --method uniform -o "$out/keyframes.h5" > /dev/null
mexkit -q magnify "$out/tim.h5" --alpha 5 -o "$out/magnify.h5" > /dev/null
python - "$out" <<'PY'
import json, sys
from pathlib import Path
from mexkit.io.store import open_store
out = Path(sys.argv[1])
manifest = {}
for path in sorted(out.glob("*.h5")):
    with open_store(path) as s:
        manifest[path.name] = {
            "stage": s.stage, "content_hash": s.content_hash,
            "samples": {sid: {k: list(s[sid].shape(k)) for k in s[sid].keys()}
                        for sid in s.sample_ids}}
(out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
PY
du -sh "$out"
