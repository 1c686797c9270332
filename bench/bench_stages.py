"""Cost of each mexkit stage per clip and per long video, timed through the CLI.

Run from the repository root (after ``bin/setup``):

    python bench/bench_stages.py [--workdir DIR] [--subjects 4] [--clips-per-class 2]
                                 [--long-videos 2] [--seconds 10] [--atnet-method farneback]
                                 [--json FILE]

Every stage is one ``mexkit`` process, run one after the other on a fresh
synthetic dataset (``mexkit synth``: CASME II-like clips of 20-50 frames at
100 fps, and ``mexkit synth --long``: SAMM-LV-like videos at 25 fps), so each
figure includes that command's start-up (Python, torch import, store checks).
For every stage the script prints the command, the wall time, the CPU time of
the process and its children (user + system, from ``wait4``), both divided by
the number of clips or videos it processed, the peak resident memory and the
size of what it wrote. CPU time is the steadier figure on a shared machine:
wall time grows with the load average, which is printed before and after each
stage. The figures feed docs/scaling.md.

Besides the per-stage costs it times the scale-out paths: the MEAN flow stage
split in two ``--shard`` parts and joined with ``mexkit merge``, and the same
flow stage filled from a ``--cache`` folder (every sample a hit).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def size_mb(paths: list[Path]) -> float:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total / 1e6


def run(exe: str, args: list[str], env: dict) -> dict:
    """Run one mexkit command; wall, CPU (user + sys of it and its children), peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    # wait4 gives the rusage of this child (and the grandchildren it waited for)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        sys.stderr.write(err[-3000:])
        raise SystemExit(f"bench_stages: `mexkit {shlex.join(args)}` exited {code}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_mb": usage.ru_maxrss / 1024, "stdout": out.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mexkit-bench-stages")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--clips-per-class", type=int, default=2)
    parser.add_argument("--long-videos", type=int, default=2,
                        help="long videos (one subject each); 0 skips the long-video stages")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a long video")
    parser.add_argument("--long-fps", type=float, default=25.0)
    parser.add_argument("--long-method", default="farneback",
                        help="flow method of the long videos (tvl1 for MEAN's own)")
    parser.add_argument("--atnet-method", default="farneback",
                        help="flow method of ATNet's 64 apex-window flows (tvl1: the paper's)")
    parser.add_argument("--jobs", type=int, default=1, help="-j of every stage")
    parser.add_argument("--epochs", type=int, default=20, help="MEAN training epochs")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--only", metavar="REGEX",
                        help="run only the stages whose label matches (e.g. 'long|magnify'); "
                             "the workdir is kept, so the stores they read must be there "
                             "from an earlier run")
    args = parser.parse_args()

    exe = shutil.which("mexkit") or str(Path(sys.executable).with_name("mexkit"))
    w = args.workdir
    if w.exists() and not args.only:
        shutil.rmtree(w)
    w.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND="Agg")
    j = ["-j", str(args.jobs)]
    n_clips = args.subjects * args.clips_per_class * 3
    sheet = str(w / "data" / "samples.csv")
    cache = w / "cache"

    def p(name: str) -> str:
        return str(w / name)

    # (label, unit count, args, outputs)
    stages: list[tuple[str, int, list[str], list[str]]] = [
        ("synth clips", n_clips,
         ["synth", p("data"), "--subjects", str(args.subjects), "--clips-per-class",
          str(args.clips_per_class), "--intensity", "1.5,3.0", "--overwrite"], ["data"]),
        ("samples", n_clips, ["samples", "--annotations", sheet], []),
        ("crop 128 grey (MEAN, AKMNet)", n_clips,
         ["crop", "--annotations", sheet, *j, "-o", p("c128.h5")], ["c128.h5"]),
        ("crop 112 grey (MERSiamC3D, PSN)", n_clips,
         ["crop", "--annotations", sheet, "--size", "112", *j, "-o", p("c112.h5")],
         ["c112.h5"]),
        ("crop 224 rgb (ATNet)", n_clips,
         ["crop", "--annotations", sheet, "--size", "224", "--rgb", *j, "-o", p("c224.h5")],
         ["c224.h5"]),
        ("flow onset-apex tvl1 + strain (MEAN)", n_clips,
         ["flow", p("c128.h5"), "--pairs", "onset-apex", "--strain", *j, "-o",
          p("mean.flow.h5")], ["mean.flow.h5"]),
        ("flow, shard 0/2", n_clips // 2,
         ["flow", p("c128.h5"), "--pairs", "onset-apex", "--strain", "--shard", "0/2", *j,
          "-o", p("part0.h5")], ["part0.h5"]),
        ("flow, shard 1/2", n_clips - n_clips // 2,
         ["flow", p("c128.h5"), "--pairs", "onset-apex", "--strain", "--shard", "1/2", *j,
          "-o", p("part1.h5")], ["part1.h5"]),
        ("merge 2 flow shards", n_clips,
         ["merge", p("part0.h5"), p("part1.h5"), "-o", p("merged.flow.h5")],
         ["merged.flow.h5"]),
        ("flow filling --cache", n_clips,
         ["flow", p("c128.h5"), "--pairs", "onset-apex", "--strain", "--cache", str(cache),
          *j, "-o", p("cache-fill.flow.h5")], ["cache-fill.flow.h5", "cache"]),
        ("flow, every sample from --cache", n_clips,
         ["flow", p("c128.h5"), "--pairs", "onset-apex", "--strain", "--cache", str(cache),
          *j, "-o", p("cache-hit.flow.h5")], ["cache-hit.flow.h5"]),
        ("validate flow store", n_clips, ["validate", p("mean.flow.h5")], []),
        (f"train mean loso {args.epochs} epochs", n_clips,
         ["-q", "train", p("mean.flow.h5"), "--model", "mean", "--protocol", "loso",
          "--epochs", str(args.epochs), "-o", p("mean-loso")], ["mean-loso"]),
        ("tim -n 65 on 224 rgb (ATNet)", n_clips,
         ["tim", p("c224.h5"), "-n", "65", *j, "-o", p("atnet.tim.h5")], ["atnet.tim.h5"]),
        (f"flow apex-window dm {args.atnet_method} (ATNet, 64 pairs)", n_clips,
         ["flow", p("atnet.tim.h5"), "--pairs", "apex-window", "--features", "dm",
          "--with-apex", "--method", args.atnet_method, *j, "-o", p("atnet.flow.h5")],
         ["atnet.flow.h5"]),
        ("rpca --psn (PSN: tim 150, RPCA, 16 frames)", n_clips,
         ["rpca", p("c112.h5"), "--psn", *j, "-o", p("psn.rpca.h5")], ["psn.rpca.h5"]),
        ("keyframes adaptive (MERSiamC3D)", n_clips,
         ["keyframes", p("c112.h5"), "--method", "adaptive", *j, "-o", p("kf.h5")],
         ["kf.h5"]),
        ("flow keyframes farneback (MERSiamC3D)", n_clips,
         ["flow", p("kf.h5"), "--pairs", "keyframes", "--method", "farneback", *j, "-o",
          p("kf.flow.h5")], ["kf.flow.h5"]),
        ("magnify riesz alpha 15 (AKMNet)", n_clips,
         ["magnify", p("c128.h5"), "--alpha", "15", *j, "-o", p("mag.h5")], ["mag.h5"]),
    ]
    if args.long_videos:
        lv = args.long_videos
        stages += [
            ("synth long videos", lv,
             ["synth", "--long", p("lv"), "--subjects", str(lv), "--seconds",
              str(args.seconds), "--fps", str(args.long_fps), "--overwrite"], ["lv"]),
            ("crop whole long videos 128", lv,
             ["crop", "--annotations", p("lv/SAMM_LongVideos_V2_Release.xlsx"),
              "--dataset-fps", str(args.long_fps), *j, "-o", p("lv.crop.h5")], ["lv.crop.h5"]),
            (f"flow gap {args.long_method} --features mean (long videos, spotting)", lv,
             ["flow", p("lv.crop.h5"), "--pairs", "gap", "--features", "mean", "--method",
              args.long_method, *j, "-o", p("lv.flow.h5")], ["lv.flow.h5"]),
        ]

    if args.only:
        stages = [st for st in stages if re.search(args.only, st[0])]
    print(f"bench_stages: {n_clips} clips ({args.subjects} subjects x "
          f"{args.clips_per_class} clips x 3 classes), {args.long_videos} long videos of "
          f"{args.seconds:g} s at {args.long_fps:g} fps, -j {args.jobs}, in {w}")
    print(f"cores: {os.cpu_count()}; load average at start: {loadavg()}")
    rows = []
    for label, units, cmd, outs in stages:
        before = loadavg()
        r = run(exe, cmd, env)
        after = loadavg()
        mb = size_mb([w / o for o in outs])
        row = {"stage": label, "command": "mexkit " + shlex.join(cmd).replace(str(w) + "/", ""),
               "units": units, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
               "wall_per_unit_s": r["wall_s"] / units, "cpu_per_unit_s": r["cpu_s"] / units,
               "max_rss_mb": r["max_rss_mb"], "written_mb": mb,
               "load_before": before, "load_after": after}
        rows.append(row)
        print(f"{label:<52} {units:>3} x  wall {r['wall_s']:7.1f} s ({row['wall_per_unit_s']:6.2f}"
              f"/unit)  cpu {r['cpu_s']:7.1f} s ({row['cpu_per_unit_s']:6.2f}/unit)  "
              f"rss {r['max_rss_mb']:6.0f} MB  out {mb:7.1f} MB  load {before} -> {after}",
              flush=True)
        print(f"    {row['command']}", flush=True)
    print(f"load average at end: {loadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"load_end": loadavg(), "cores": os.cpu_count(),
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
