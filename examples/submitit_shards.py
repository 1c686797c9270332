"""Run one mexkit stage as N shards through submitit, then merge the parts.

The same split as the Slurm array script of the README (``--shard I/N``, one
partial store per task in a shared folder, ``mexkit merge`` at the end), with
submitit submitting the tasks: a Slurm job array on a cluster, local
processes running side by side (``--cluster local``) or one after the other
in this process (``--cluster debug``).  Everything after ``--`` is the stage
command, without ``-o`` and ``--shard`` (the script adds them)::

    # 8 Slurm array tasks of 4 cores each, then the merge here
    python examples/submitit_shards.py --shards 8 --parts /shared/parts \\
        --cpus 4 --partition cpu -o crops.flow.h5 -- \\
        flow crops.crop.h5 --pairs onset-apex -j 4 --cache /shared/mexkit-cache

    # the same on this machine, 3 shards as parallel processes
    python examples/submitit_shards.py --shards 3 --parts parts --cluster local \\
        -o x.flow.h5 -- flow x.crop.h5 --pairs onset-apex

A task whose samples partly fail still leaves its part (the failures are
recorded in it and kept by the merge); a task that cannot run at all (a bad
option, an unreadable input) stops the script before the merge, naming the
shard and its log folder.  Re-running the script resumes every part.
Needs ``pip install submitit``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def run_shard(stage: list[str], index: int, count: int, part: str) -> str:
    """One array task: ``mexkit STAGE... --shard index/count -o part``.

    Exit status 1 with the part written means that some samples failed:
    they are recorded in the part, and the merge keeps them as failures.
    """
    cmd = [sys.executable, "-m", "mexkit", "-q", *stage, "--shard", f"{index}/{count}",
           "-o", part]
    done = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode == 0 or (done.returncode == 1 and Path(part).exists()):
        return part
    last = (done.stderr.strip().splitlines() or [""])[-1]
    raise RuntimeError(f"shard {index}/{count} exited with status {done.returncode}: {last}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        sys.exit("usage: submitit_shards.py [options] -o OUT -- STAGE INPUT [STAGE OPTIONS]")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="The merged store.")
    ap.add_argument("--shards", type=int, required=True, help="Number of array tasks.")
    ap.add_argument("--parts", required=True,
                    help="Shared folder for the partial stores and submitit's logs.")
    ap.add_argument("--cluster", default=None, choices=["slurm", "local", "debug"],
                    help="Where the tasks run (default: Slurm when sbatch is found, else "
                         "local processes).")
    ap.add_argument("--cpus", type=int, default=1, help="Cores per task (match -j).")
    ap.add_argument("--timeout-min", type=int, default=60, help="Time limit per task.")
    ap.add_argument("--partition", default=None, help="Slurm partition.")
    ap.add_argument("--parallelism", type=int, default=None,
                    help="Most Slurm array tasks running at once.")
    args = ap.parse_args(argv[:cut])
    stage = argv[cut + 1:]
    if args.shards < 1 or not stage:
        ap.error("give --shards N >= 1 and a stage command after --")

    import submitit

    parts = Path(args.parts)
    parts.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=parts / "submitit-logs", cluster=args.cluster)
    options: dict = {"timeout_min": args.timeout_min, "cpus_per_task": args.cpus,
                     "name": f"mexkit-{stage[0]}"}
    if args.partition:
        options["slurm_partition"] = args.partition
    if args.parallelism:
        options["slurm_array_parallelism"] = args.parallelism
    executor.update_parameters(**options)
    names = [str(parts / f"part{i:04d}.h5") for i in range(args.shards)]
    jobs = executor.map_array(run_shard, [stage] * args.shards, list(range(args.shards)),
                              [args.shards] * args.shards, names)
    print(f"submitted {len(jobs)} task(s) to {executor.cluster}; logs in "
          f"{parts / 'submitit-logs'}", file=sys.stderr)
    done = [job.result() for job in jobs]  # raises, naming the task, if one failed
    merge = subprocess.run([sys.executable, "-m", "mexkit", "merge", *done, "-o",
                            args.output])
    return merge.returncode


if __name__ == "__main__":
    sys.exit(main())
