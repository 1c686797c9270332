"""Chaos harness: crash-kill, fuzzed-store, hostile-store and interrupted-long-video trials.

Run from the repository root:

    python bench/chaos.py [--seed 12] [--kills 20] [--fuzz 160] [--interrupts 9]
                          [--only crash,fuzz,hostile,attacks,interrupt]

Four kinds of trial, all repeatable for a given ``--seed``, each ending in
counts printed as one table:

crash
    A stage run (24 samples, 10-50 ms each, a few hundred kB of arrays) is
    killed with SIGKILL at a uniformly random moment of its run, assembly
    included, then resumed, again and again.  After every kill the output
    store (if any) must open and validate, every sample the run reported as
    staged and every sample found on disk before must still be there, and
    no sample finished before a resume may be computed again.  The final
    store must equal an uninterrupted run's, array for array and attribute
    for attribute, with no temporary file or staging folder left.
fuzz
    A good store is truncated, bit-flipped or overwritten with random bytes
    (header region included) and opened, read in full, summarised and
    validated in a child process (with and without the file checksum, half
    each).  Outcomes: ``ok`` (a change in header padding), ``refused`` (a
    ``StoreError``), ``other`` (any other exception), ``crash`` (the child
    died of a signal), ``hang`` (no answer in 20 s).
hostile
    Stores and folders built to harm the reader or the writer: external and
    soft links, external storage, virtual datasets, foreign filters,
    object/opaque/compound data, nested groups, a fill-value bomb and a gzip
    bomb, 3000 attributes on a sample, 200,000-deep JSON, a newer schema, a
    flipped label with the file checksum recomputed, a symlinked or foreign
    staging folder, a wrong-stage input and an output equal to the input.
    Each runs in a child limited to 3 GiB of address space and 30 s; it must
    be refused with a mexkit error (and, for the writer trials, leave the
    victim files and the existing output byte for byte as they were).
interrupt
    ``mexkit flow`` of long videos (a crop store of 2 whole videos of 700
    frames, so that each is solved and staged in pieces of 256 pairs) is
    stopped at a random moment, again and again: by SIGINT to the process, by
    SIGINT to its whole process group (as a terminal's Ctrl-C), or by SIGKILL.
    After SIGINT the command must exit with status 130 within 2 s; every
    finished piece must be on disk and reused by the next run (the -v log
    says how many it kept), none computed twice; the finished store must
    equal an uninterrupted run's, array for array.  Then the same for
    ``mexkit crop --unit video --mode every`` of 2 synthetic long face videos
    of 600 frames (SAMM Long Videos' layout), whose face detections are
    staged in pieces of 256 frames (stopped within the first 80 % of a full
    run: most of a crop run is detection); the finished crop store must equal
    an uninterrupted run's, array for array and attribute for attribute.

attacks
    The surfaces of issue 30, each attacked as a user or another lab would:
    forged cache entries (a label and zeroed arrays with the data hash
    recomputed; re-signed by an untrusted key; the wrong shape signed by a
    trusted key; wrong arrays signed by a trusted key against ``--audit
    1``), oversized cache entries (40 GiB and 3 GiB declared, in a child
    limited to 2 GiB), an input store replaced while a stage reads it (at a
    random moment), a merge of 2 of 3 shards, a full disk on a small tmpfs
    (where one can be mounted: root), SIGKILL of ``mexkit train`` with its
    fold workers counted afterwards, and a second local user (where one can
    be made: root and useradd) against a Dask cluster mexkit started.

Exit status 0 when every trial held, 1 otherwise.  The default run took
about 1-3 minutes on 2 busy cores before the crop trials of ``interrupt``,
which add about 3 minutes (189 s for their 9 stops at load average 5-9).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

N_SAMPLES = 24


# --------------------------------------------------------------------------
# the stage that the crash trials kill (also run as: chaos.py --writer OUT)
# --------------------------------------------------------------------------
def _arrays(i: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(1000 + i)
    return {"frames": r.integers(0, 256, (6, 24, 24), dtype=np.uint8),
            "flow": r.normal(size=(5, 2, 24, 24)).astype(np.float32)}


def _compute(task):
    print(f"computed {task.sample_id}", flush=True)
    time.sleep(0.01 + 0.02 * (task.payload % 3))
    return _arrays(task.payload), {"index": task.payload, "label": f"class{task.payload % 3}"}


def _tasks(n: int, salt: str = ""):
    from mexkit.pipeline.cache import cache_key
    from mexkit.pipeline.runner import Task

    return [Task(f"chaos/s{i % 4}/c{i:03d}", cache_key("chaos", 1, {}, str(i) + salt),
                 {"subject": f"s{i % 4}", "clip": f"c{i:03d}", "label": f"class{i % 3}"}, i)
            for i in range(n)]


def _writer_main(out: str, n: int) -> None:
    import mexkit.io.store as store
    from mexkit.pipeline.runner import run_stage

    original = store.StoreWriter.register

    def register(self, sid, key, path):
        original(self, sid, key, path)
        print(f"staged {sid}", flush=True)

    store.StoreWriter.register = register
    run_stage(_tasks(n), _compute, output=out, stage="chaos", params={}, progress=False)
    print("finished", flush=True)


def _writer_cli(out: str, params: str) -> int:
    """The toy stage with other parameters, errors reported as the CLI reports them."""
    import click

    from mexkit.cli import MexkitGroup  # noqa: F401
    from mexkit.errors import MexkitError
    from mexkit.pipeline.parallel import configure
    from mexkit.pipeline.runner import run_stage

    try:
        # other parameters replace a store only with --overwrite (issue 28)
        with configure(overwrite=True):
            run_stage(_tasks(N_SAMPLES, params), _compute, output=out, stage="chaos",
                      params={"p": params}, progress=False)
    except MexkitError as exc:
        click.echo(f"mexkit: error: {exc}", err=True)
        return 1
    return 0


def _start(out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, __file__, "--writer", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _on_disk(out: Path) -> set[str]:
    import h5py

    from mexkit.io.store import open_store

    ids: set[str] = set()
    if out.exists():
        with open_store(out) as s:
            ids |= set(s.sample_ids)
    staging = out.with_name(out.name + ".staging")
    if staging.is_dir():
        for p in staging.glob("*.h5"):
            if not p.name.startswith("."):
                with h5py.File(p, "r") as fh:
                    ids.add(str(fh.attrs["sample_id"]))
    return ids


def _content(path: Path) -> dict:
    from mexkit.io.store import open_store

    with open_store(path) as s:
        return {sid: (dict(s[sid].attrs), s[sid].arrays()) for sid in s.sample_ids}


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for sid in a:
        if a[sid][0] != b[sid][0] or a[sid][1].keys() != b[sid][1].keys():
            return False
        if not all(np.array_equal(a[sid][1][k], b[sid][1][k]) for k in a[sid][1]):
            return False
    return True


def crash_trials(work: Path, rng: np.random.Generator, kills: int) -> Counter:
    from mexkit.errors import StoreError
    from mexkit.io.store import remove_store, validate_store

    c: Counter = Counter()
    reference = work / "reference.h5"
    t0 = time.perf_counter()
    proc = _start(reference)
    _, err = proc.communicate(timeout=300)
    full = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{err}")
    want = _content(reference)
    out = work / "killed.h5"
    before: set[str] = set()
    cycles = 0
    while c["kills"] < kills:
        proc = _start(out)
        # a moment anywhere in a full run, assembly (the last ~10 %) included
        time.sleep(float(rng.uniform(0.0, full * 1.05)))
        proc.send_signal(signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=120)
        lines = stdout.splitlines()
        computed = {ln.split(" ", 1)[1] for ln in lines if ln.startswith("computed ")}
        staged = {ln.split(" ", 1)[1] for ln in lines if ln.startswith("staged ")}
        killed = proc.returncode == -signal.SIGKILL
        c["kills" if killed else "runs that finished first"] += 1
        if killed and len(staged | before) == N_SAMPLES:
            c["kills after every sample was staged (assembly)"] += 1
        if out.exists() and validate_store(out):
            c["unreadable or invalid store"] += 1
        try:
            now = _on_disk(out)
        except (StoreError, OSError):
            c["unreadable or invalid store"] += 1
            now = set()
        c["finished samples lost"] += len((staged | before) - now)
        c["samples computed twice"] += len(computed & before)
        before = now
        if len(now) == N_SAMPLES and out.exists() and "finished" in stdout:
            # a complete store: compare it, then start a new cycle from nothing
            c["resumed runs equal to the uninterrupted run"] += _same(_content(out), want)
            c["resumed runs that differ"] += not _same(_content(out), want)
            leftovers = list(work.glob(".killed.h5.tmp-*"))
            c["temporaries left after a finished run"] += len(leftovers)
            c["staging folders left after a finished run"] += \
                out.with_name(out.name + ".staging").exists()
            remove_store(out)
            before = set()
            cycles += 1
    proc = _start(out)
    stdout, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        c["final resume failed"] += 1
    else:
        c["resumed runs equal to the uninterrupted run"] += _same(_content(out), want)
        c["resumed runs that differ"] += not _same(_content(out), want)
        c["samples computed twice"] += len(
            {ln.split(" ", 1)[1] for ln in stdout.splitlines() if ln.startswith("computed ")}
            & before)
        c["temporaries left after a finished run"] += len(list(work.glob(".killed.h5.tmp-*")))
        c["staging folders left after a finished run"] += \
            out.with_name(out.name + ".staging").exists()
    c["seconds per full run"] = round(full, 2)
    return c


# --------------------------------------------------------------------------
# interrupted long videos (issue 28)
# --------------------------------------------------------------------------
LONG_FRAMES, LONG_VIDEOS, PIECE = 700, 2, 256


def _long_crop(path: Path) -> Path:
    import cv2

    from mexkit.pipeline.cache import cache_key
    from mexkit.pipeline.runner import Task, run_stage

    def compute(task):
        r = np.random.default_rng(task.payload)
        base = cv2.GaussianBlur(r.uniform(0, 255, (64, 64)), (0, 0), 2.0)
        frames = [cv2.warpAffine(base, np.float64([[1, 0, -8 + 0.5 * np.sin(t / 9)],
                                                   [0, 1, -8 + 0.3 * np.cos(t / 7)]]),
                                 (48, 48)) for t in range(LONG_FRAMES)]
        return ({"frames": np.clip(np.stack(frames), 0, 255).astype(np.uint8)},
                {"subject": f"s{task.payload}", "fps": 25.0})

    run_stage([Task(f"long/s{i}/v{i}", cache_key("crop", 1, {}, f"long{i}"), {}, i)
               for i in range(LONG_VIDEOS)], compute, output=path, stage="crop",
              params={"size": 48}, progress=False)
    return path


def _pieces_on_disk(out: Path) -> set[str]:
    import h5py

    staging = out.with_name(out.name + ".staging")
    ids: set[str] = set()
    for p in staging.glob("*.h5") if staging.is_dir() else []:
        if p.name.startswith("."):
            continue
        try:
            with h5py.File(p, "r") as fh:
                sid = str(fh.attrs["sample_id"])
        except OSError:
            continue
        if "#piece:" in sid:
            ids.add(sid)
    return ids


def _flow(crop: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mexkit", "-v", "flow", str(crop),
                             "--pairs", "consecutive", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


FACE_FRAMES, FACE_VIDEOS = 600, 2


def _long_faces(root: Path) -> Path:
    """2 synthetic long face videos (SAMM Long Videos' layout): their annotation sheet."""
    from mexkit.pipeline.synth import write_samm_lv_like

    return write_samm_lv_like(root, n_subjects=1, videos_per_subject=FACE_VIDEOS,
                              fps=50.0, seconds=FACE_FRAMES / 50.0, seed=3)


def _crop(sheet: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mexkit", "-v", "crop", str(sheet),
                             "--unit", "video", "--mode", "every", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def interrupt_trials(work: Path, rng: np.random.Generator, n: int) -> tuple[Counter, list]:
    """``mexkit flow`` of long videos, stopped ``n`` times."""
    crop = _long_crop(work / "long.crop.h5")
    return _stop_trials(lambda out: _flow(crop, out), work / "long.flow.h5",
                        work / "long.ref.h5", rng, n, 0.6)


def crop_interrupt_trials(work: Path, rng: np.random.Generator, n: int
                          ) -> tuple[Counter, list]:
    """``mexkit crop --unit video --mode every`` of long face videos, stopped ``n`` times."""
    sheet = _long_faces(work / "faces")
    return _stop_trials(lambda out: _crop(sheet, out), work / "faces.crop.h5",
                        work / "faces.ref.h5", rng, n, 0.8)


def _stop_trials(start, out: Path, reference: Path, rng: np.random.Generator, n: int,
                 within: float) -> tuple[Counter, list]:
    """Runs of ``start(output)`` stopped at random moments (within the first ``within``
    of a full run's seconds), then resumed to the end."""
    import re

    c: Counter = Counter()
    t0 = time.perf_counter()
    proc = start(reference)
    _, err = proc.communicate(timeout=1800)
    full = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{err}")
    want = _content(reference)
    latencies: list[float] = []
    kept_re = re.compile(r"sample (\S+): (\d+) of (\d+) pieces of \d+ (?:pairs|frames)\b"
                         r"[^;\n]* kept")
    how = ("SIGINT to the process", "SIGINT to the process group", "SIGKILL")
    trial = 0
    while trial < n:
        before = _pieces_on_disk(out)
        proc = start(out)
        # a resumed run has less left to do: stop within the first part of a full run
        time.sleep(float(rng.uniform(1.0, max(1.5, full * within))))
        kind = how[trial % 3]
        t = time.monotonic()
        if kind == "SIGKILL":
            os.killpg(proc.pid, signal.SIGKILL)
        elif kind.endswith("group"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            c["runs still alive 60 s after SIGINT"] += 1
        seconds = time.monotonic() - t
        trial += 1
        # a run may finish (its store assembled, its staging folder gone) just before the
        # signal and die of it while exiting: finished first too
        if proc.returncode == 0 or out.exists():
            c["runs that finished first"] += 1
            if os.environ.get("MEXKIT_CHAOS_DEBUG"):
                print(f"finished first: stopped {seconds:.1f} s before exit ({kind})\n{err}")
            out.unlink(missing_ok=True)
            continue
        c[kind] += 1
        if kind != "SIGKILL":
            latencies.append(seconds)
            c["SIGINT: exit status 130"] += proc.returncode == 130
            c["SIGINT: another exit status"] += proc.returncode != 130
            c["SIGINT: exit later than 2 s"] += seconds > 2.0
        # every piece on disk before the run was reused, none was lost
        kept = {m.group(1): int(m.group(2)) for m in kept_re.finditer(err)}
        for sid in {p.split("#piece:")[0] for p in before}:
            had = sum(p.startswith(sid + "#piece:") for p in before)
            if sid in kept and kept[sid] < had:
                c["finished pieces computed again"] += had - kept[sid]
        after = _pieces_on_disk(out)
        c["finished pieces lost"] += len(before - after)
        c["pieces on disk after the stop"] += len(after)
    proc = start(out)
    _, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        c["final resume failed"] += 1
    else:
        same = _same(_content(out), want)
        c["final store equal to the uninterrupted run"] += same
        c["final store differs"] += not same
        c["staging folders left after a finished run"] += \
            out.with_name(out.name + ".staging").exists()
    c["seconds per full run"] = round(full, 1)
    return c, latencies


# --------------------------------------------------------------------------
# fuzzed stores
# --------------------------------------------------------------------------
_OK, _REFUSED, _OTHER = 0, 3, 4


def _read_all(path: str, verify: bool) -> None:
    from mexkit.errors import StoreError
    from mexkit.io.store import open_store, validate_store

    try:
        with open_store(path, verify=verify) as s:
            for sample in s:
                sample.arrays()
            s.summary()
        if validate_store(path):
            raise StoreError("invalid")
    except StoreError:
        os._exit(_REFUSED)
    except BaseException:
        os._exit(_OTHER)
    os._exit(_OK)


def _child(target, args, timeout: float, mem_bytes: int | None = None) -> str:
    ctx = mp.get_context("fork")

    def run(*a):
        if mem_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        target(*a)

    proc = ctx.Process(target=run, args=args)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return "hang"
    return {_OK: "ok", _REFUSED: "refused", _OTHER: "other"}.get(proc.exitcode, "crash")


def _good_store(path: Path) -> Path:
    from mexkit.pipeline.runner import run_stage

    def compute(task):
        return _arrays(task.payload), {"label": "positive", "aus": [4, 7]}

    run_stage(_tasks(3), compute, output=path, stage="chaos", params={"alpha": 1},
              progress=False)
    return path


def fuzz_trials(work: Path, rng: np.random.Generator, n: int) -> Counter:
    data = _good_store(work / "good.h5").read_bytes()
    c: Counter = Counter()
    for i in range(n):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:
            b = b[: int(rng.integers(0, len(b)))]
        elif kind == 1:
            pos = int(rng.integers(0, len(b)))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:
            pos = int(rng.integers(0, len(b) - 16))
            b[pos:pos + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        else:
            pos = int(rng.integers(0, min(len(b), 2048)))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        p = work / f"fuzz{i:04d}.h5"
        p.write_bytes(bytes(b))
        c[_child(_read_all, (str(p), i % 2 == 0), 20.0)] += 1
        p.unlink()
    return c


# --------------------------------------------------------------------------
# hostile stores and folders
# --------------------------------------------------------------------------
def _tampered(work: Path, name: str, action) -> Path:
    import h5py

    from mexkit.io.store.format import _seal

    p = work / f"{name}.h5"
    shutil.copyfile(work / "good.h5", p)
    with h5py.File(p, "r+") as fh:
        action(fh)
    _seal(p)
    return p


def _sample(fh):
    return fh["samples"][next(iter(fh["samples"]))]


def _hostile_stores(work: Path) -> dict[str, Path]:
    import h5py

    other = work / "other.h5"
    with h5py.File(other, "w") as fh:
        fh.create_dataset("x", data=np.zeros(4))
    raw = work / "raw.bin"
    raw.write_bytes(bytes(80))

    def ext_link(fh):
        _sample(fh)["elsewhere"] = h5py.ExternalLink(str(other), "/x")

    def soft_link(fh):
        _sample(fh)["again"] = h5py.SoftLink(_sample(fh).name + "/frames")

    def external(fh):
        _sample(fh).create_dataset("ext", shape=(10,), dtype="f8", external=[(str(raw), 0, 80)])

    def virtual(fh):
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "x", shape=(4,))
        _sample(fh).create_virtual_dataset("virt", layout)

    def scaleoffset(fh):
        _sample(fh).create_dataset("so", data=np.arange(100, dtype="i4"), chunks=(10,),
                                   scaleoffset=0)

    def obj_attr(fh):
        fh.attrs.create("ref", fh["samples"].ref, dtype=h5py.special_dtype(ref=h5py.Reference))

    def opaque(fh):
        fh.attrs["payload"] = np.void(b"\x80\x04\x95 pickle-like bytes")

    def compound(fh):
        _sample(fh).create_dataset("rec", data=np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]))

    def nested(fh):
        _sample(fh).create_group("inner").create_dataset("x", data=np.zeros(3))

    def fill_bomb(fh):
        _sample(fh).create_dataset("huge", shape=(2000, 1000, 1000), dtype=np.uint8,
                                   chunks=(1, 1000, 1000), compression="gzip")

    def gzip_bomb(fh):
        side = 8192
        ds = _sample(fh).create_dataset("zeros", shape=(25, side, side), dtype=np.uint8,
                                        chunks=(1, side, side), compression="gzip")
        blob = zlib.compress(bytes(side * side), 9)
        for i in range(25):
            ds.id.write_direct_chunk((i, 0, 0), blob)

    def many_attrs(fh):
        g = _sample(fh)
        for i in range(3000):
            g.attrs[f"a{i}"] = i

    def deep_json(fh):
        _sample(fh).attrs["aus"] = "json:" + "[" * 200_000 + "]" * 200_000

    def newer(fh):
        fh.attrs["mexkit_schema"] = 99

    return {name: _tampered(work, name, fn) for name, fn in [
        ("external link", ext_link), ("soft link", soft_link),
        ("external storage", external), ("virtual dataset", virtual),
        ("foreign filter (scale-offset)", scaleoffset), ("reference attribute", obj_attr),
        ("opaque attribute", opaque), ("compound dataset", compound),
        ("group inside a sample", nested), ("fill-value bomb (2 GB declared)", fill_bomb),
        ("gzip bomb (1.6 GB of zeros)", gzip_bomb), ("3000 attributes", many_attrs),
        ("200,000-deep JSON attribute", deep_json), ("newer schema", newer)]}


def _expect_refusal(path: str) -> None:
    """Open, read, summarise and validate; exit _REFUSED only for a clean refusal."""
    from mexkit.errors import MexkitError
    from mexkit.io.store import open_store, validate_store

    try:
        problems = validate_store(path)
        if not problems:
            with open_store(path) as s:
                for sample in s:
                    sample.arrays()
                s.summary()
            os._exit(_OK)
        os._exit(_REFUSED)
    except MexkitError:
        os._exit(_REFUSED)
    except BaseException:
        os._exit(_OTHER)


def _writer_trial(kind: str, work: str) -> None:
    """One hostile writer situation; exit _REFUSED if refused and nothing was harmed."""
    from mexkit.errors import MexkitError
    from mexkit.pipeline.temporal import run_tim

    w = Path(work) / kind.replace(" ", "_")
    w.mkdir()
    victim = w / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    (victim / "data.h5").write_bytes(b"not a store")
    good = Path(work) / "good.h5"
    out = w / "out.h5"
    try:
        if kind == "symlinked staging folder":
            (w / "out.h5.staging").symlink_to(victim)
            run_tim(good, out, n_frames=4, progress=False)
        elif kind == "foreign staging folder":
            shutil.copytree(victim, w / "out.h5.staging")
            run_tim(good, out, n_frames=4, progress=False)
            victim = w / "out.h5.staging"
        elif kind == "wrong-stage input":
            from mexkit.pipeline.flow import run_strain

            run_strain(good, out, progress=False)          # a good strain store
            kept = out.read_bytes()
            tim = w / "t.h5"
            run_tim(good, tim, n_frames=4, progress=False)
            try:
                run_strain(tim, out, progress=False)       # a store without flow: a typo
            finally:
                if out.read_bytes() != kept:
                    os._exit(_OTHER)
        elif kind == "output equal to input":
            copy = w / "in.h5"
            shutil.copyfile(good, copy)
            kept = copy.read_bytes()
            try:
                run_tim(copy, copy, n_frames=4, progress=False)
            finally:
                if copy.read_bytes() != kept:
                    os._exit(_OTHER)
        os._exit(_OK)
    except MexkitError:
        files = sorted(p.name for p in victim.iterdir())
        intact = files == ["data.h5", "thesis.tex"] and \
            (victim / "thesis.tex").read_text() == "years of work"
        os._exit(_REFUSED if intact else _OTHER)
    except BaseException:
        os._exit(_OTHER)


def _flipped_label_trial(path: str) -> None:
    from mexkit.io.store import validate_store

    os._exit(_REFUSED if validate_store(path) else _OK)


def hostile_trials(work: Path) -> tuple[Counter, dict[str, str]]:
    if not (work / "good.h5").exists():
        _good_store(work / "good.h5")
    outcomes: dict[str, str] = {}
    for name, path in _hostile_stores(work).items():
        outcomes[name] = _child(_expect_refusal, (str(path),), 30.0, 3 << 30)
        path.unlink()

    def flip(fh):
        g = _sample(fh)
        g.attrs["label"] = "negative"

    p = _tampered(work, "label", flip)
    outcomes["flipped label, checksum recomputed"] = _child(_flipped_label_trial, (str(p),), 30)
    for kind in ("symlinked staging folder", "foreign staging folder", "wrong-stage input",
                 "output equal to input"):
        outcomes[kind] = _child(_writer_trial, (kind, str(work)), 60.0, 3 << 30)
    return Counter(outcomes.values()), outcomes


# --------------------------------------------------------------------------
# attacks on the surfaces of issue 30
# --------------------------------------------------------------------------
def _toy_compute(task):
    time.sleep(0.03)
    return _arrays(task.payload), {"index": task.payload, "label": f"class{task.payload % 3}"}


def _toy_check(task, arrays):
    from mexkit.pipeline.stages import expect_arrays

    expect_arrays(arrays, {"frames": (np.uint8, (6, 24, 24)),
                           "flow": (np.float32, (5, 2, 24, 24))},
                  required=["frames", "flow"], where=f"sample {task.sample_id!r}")


def _toy_run(out: Path, **cfg):
    from mexkit.pipeline.parallel import configure
    from mexkit.pipeline.runner import run_stage

    with configure(**cfg):
        return run_stage(_tasks(N_SAMPLES), _toy_compute, output=out, stage="chaos",
                         params={}, progress=False, check=_toy_check)


def _labels_ok(out: Path) -> bool:
    from mexkit.io.store import open_store

    with open_store(out) as s:
        return all(s[sid].attrs.get("label") == f"class{int(s[sid].attrs['index']) % 3}"
                   and np.array_equal(s[sid].read("flow"),
                                      _arrays(int(s[sid].attrs["index"]))["flow"])
                   for sid in s.sample_ids)


def _forged_entry_trials(work: Path) -> dict[str, str]:
    import h5py

    from mexkit.errors import StoreError
    from mexkit.io.signing import load_signer
    from mexkit.io.store import hash_arrays
    from mexkit.pipeline.cache import entry_message

    out: dict[str, str] = {}
    own = load_signer()
    other = load_signer(work / "other-lab.pem")

    def seeded(name):
        cache = work / f"cache-{name}"
        _toy_run(work / f"seed-{name}.h5", cache=str(cache))
        return cache, sorted(p for p in cache.rglob("*.h5") if not p.name.startswith("."))

    def forge(entry, signer=None, shape=False):
        with h5py.File(entry, "r+") as fh:
            g = fh["sample"]
            g.attrs["label"] = "forged"
            if shape:
                del g["flow"]
                g["flow"] = np.zeros((1, 2, 3, 3), np.float64)
            else:
                g["flow"][...] = 0
            g.attrs["data_hash"] = hash_arrays({n: g[n][()] for n in g})
            if signer is not None:
                fh.attrs["signer"] = signer.key_id
                fh.attrs["signature"] = signer.sign(entry_message(str(fh.attrs["cache_key"]),
                                                                  g))

    for name, how in (("label + zeroed flow, data hash recomputed", {}),
                      ("re-signed by an untrusted key", {"signer": other}),
                      ("wrong shape and dtype, signed by a trusted key",
                       {"signer": own, "shape": True})):
        cache, entries = seeded(str(len(out)))
        for e in entries[:8]:
            forge(e, **how)
        r = _toy_run(work / f"forged{len(out)}.h5", cache=str(cache))
        used = r.from_cache - (N_SAMPLES - 8)
        good = used == 0 and r.computed == 8 and _labels_ok(work / f"forged{len(out)}.h5")
        out[f"forged cache entries: {name} (8 of {N_SAMPLES})"] = (
            "8 refused, output correct" if good else f"FAILED: {used} used")
    cache, entries = seeded("audit")
    for e in entries:
        forge(e, signer=own)
    try:
        _toy_run(work / "audited.h5", cache=str(cache), audit=1.0)
        out[f"wrong entries signed by a trusted key, --audit 1 ({N_SAMPLES})"] = \
            "FAILED: used"
    except StoreError as exc:
        ok = "differs from its recomputation" in str(exc) and not (work / "audited.h5").exists()
        out[f"wrong entries signed by a trusted key, --audit 1 ({N_SAMPLES})"] = (
            "cache refused, entry named, nothing written" if ok else f"FAILED: {exc}")
    return out


def _oversized_child(cache: str, out: str) -> None:
    try:
        r = _toy_run(Path(out), cache=cache)
        os._exit(_OK if r.computed == 2 and not r.failures else _OTHER)
    except MemoryError:
        os._exit(_OTHER)
    except BaseException:
        os._exit(_OTHER)


def _oversized_trials(work: Path) -> dict[str, str]:
    import h5py

    from mexkit.io.signing import load_signer
    from mexkit.pipeline.cache import entry_message

    cache = work / "cache-big"
    _toy_run(work / "seed-big.h5", cache=str(cache))
    entries = sorted(p for p in cache.rglob("*.h5") if not p.name.startswith("."))
    own = load_signer()
    for e, gib in zip(entries[:2], (40, 3), strict=True):
        with h5py.File(e, "r+") as fh:
            fh["sample"].create_dataset("huge", shape=(gib << 10, 1 << 20), dtype=np.uint8,
                                        chunks=(1, 1 << 20))
            fh.attrs["signature"] = own.sign(entry_message(str(fh.attrs["cache_key"]),
                                                           fh["sample"]))
    outcome = _child(_oversized_child, (str(cache), str(work / "big.h5")), 120, 2 << 30)
    return {"oversized cache entries (40 GiB and 3 GiB declared, 2 GiB limit)":
            "skipped with a warning, run complete" if outcome == "ok" else
            f"FAILED: {outcome}"}


def _replaced_main(src: str, out: str) -> None:
    from mexkit.pipeline.stages import input_sample, run_store_stage

    def compute(task):
        time.sleep(0.04)
        s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
        return {"flow": s.read("flow") * 2}, {}

    run_store_stage(src, out, stage="strain", version=1, params={}, compute=compute,
                    progress=False)
    print("finished", flush=True)


def _replaced_trials(work: Path, rng: np.random.Generator, n: int = 6) -> dict[str, str]:
    from mexkit.io.store import open_store

    old, new = work / "old.h5", work / "new.h5"
    _toy_run(old)
    from mexkit.pipeline.cache import cache_key
    from mexkit.pipeline.runner import Task, run_stage

    run_stage([Task(t.sample_id, cache_key("chaos", 2, {}, t.sample_id), t.attrs, t.payload)
               for t in _tasks(N_SAMPLES)],
              lambda t: ({"flow": np.full((5, 2, 24, 24), 7, np.float32)}, {}),
              output=new, stage="chaos", params={"v": 2}, progress=False)
    stopped = mixed = finished = other = 0
    for i in range(n):
        src, out = work / f"r{i}.h5", work / f"r{i}.out.h5"
        shutil.copyfile(old, src)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([sys.executable, __file__, "--replaced", str(src), str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        time.sleep(float(rng.uniform(0.5, 2.0)))
        tmp = work / f".r{i}.swap"
        shutil.copyfile(new, tmp)
        os.replace(tmp, src)                     # `mv new.h5 r.h5` while it runs
        stdout, err = proc.communicate(timeout=300)
        if out.exists():
            with open_store(out) as s:
                values = {float(s[sid].read("flow").flat[0] / 2) for sid in s.sample_ids}
            mixed += 7.0 in values and len(values) > 1
            finished += 7.0 not in values
        elif proc.returncode != 0 and "replaced or changed during the run" in err:
            stopped += 1
        else:
            other += 1
    held = mixed == 0 and other == 0
    return {f"input replaced during the run ({n} runs)":
            f"{stopped} stopped cleanly, {finished} finished before the swap, {mixed} mixed"
            + ("" if held else f", {other} other: FAILED")}


def _merge_trials(work: Path) -> dict[str, str]:
    from mexkit.errors import StoreError
    from mexkit.pipeline.merge import merge_stores
    from mexkit.pipeline.parallel import configure

    parts = []
    for i in range(3):
        with configure(shard=(i, 3)):
            _toy_run(work / f"part{i}.h5")
        parts.append(work / f"part{i}.h5")
    try:
        merge_stores(parts[:2], work / "merged.h5")
        return {"merge of 2 of 3 shards": "FAILED: written"}
    except StoreError as exc:
        if "missing" not in str(exc) or (work / "merged.h5").exists():
            return {"merge of 2 of 3 shards": f"FAILED: {exc}"}
    r = merge_stores(parts[:2], work / "partial.h5", partial=True)
    from mexkit.io.store import open_store

    with open_store(work / "partial.h5") as s:
        ok = s.shard is not None and s.shard.get("partial") and len(s) == r.computed
    return {"merge of 2 of 3 shards": "refused (missing shard named); --partial store "
            "says so" if ok else "FAILED: partial store unmarked"}


def _disk_full_trials(work: Path, runs: int = 3) -> dict[str, str]:
    from mexkit.io.store import validate_store

    where = work / "small"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1000k", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return {"disk full on a small file system": "not run (cannot mount: not root?)"}
    counts = Counter()
    earlier = work / "earlier.h5"
    _toy_run(earlier)                           # an earlier output (24 samples, ~650 kB)
    try:
        for _ in range(runs):
            for p in where.iterdir():
                subprocess.run(["rm", "-rf", str(p)])
            out = where / "o.h5"
            shutil.copyfile(earlier, out)
            # a new run with other parameters fills the disk while staging
            before = out.read_bytes()
            proc = subprocess.run([sys.executable, __file__, "--writer", str(out),
                                   "--writer-params", "1"], capture_output=True, text=True,
                                  timeout=300)
            last = (proc.stderr.strip().splitlines() or [""])[-1]
            counts["runs"] += 1
            counts["crashes (signal)"] += proc.returncode < 0
            counts["one-line 'no space left on device'"] += (
                proc.returncode == 1 and "no space left on device" in last
                and "Traceback" not in proc.stderr)
            counts["earlier output untouched"] += out.read_bytes() == before
            staged = [p for p in (where / "o.h5.staging").glob("*.h5")
                      if not p.name.startswith(".")]
            counts["staged samples kept"] += len(staged)
            counts["staged samples unreadable"] += sum(bool(_unreadable(p)) for p in staged)
            counts["earlier output valid"] += validate_store(out) == []
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
    ok = (counts["crashes (signal)"] == 0 and counts["staged samples unreadable"] == 0
          and counts["one-line 'no space left on device'"] == runs
          and counts["earlier output untouched"] == runs)
    return {f"disk full while staging, 1000 kB tmpfs ({runs} runs)":
            ", ".join(f"{v} {k}" for k, v in counts.items() if k != "runs")
            + ("" if ok else ": FAILED")}


def _unreadable(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            for n in fh["sample"]:
                fh["sample"][n][()]
    except Exception as exc:
        return str(exc)
    return ""


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            kids.setdefault(int(data[data.rindex(b")") + 2:].split()[1]), []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:].split()[0] != b"Z"


def _train_kill_trials(work: Path, kills: int = 2) -> dict[str, str]:
    mexkit = [sys.executable, "-m", "mexkit", "-q"]
    data = work / "synth"
    subprocess.run([*mexkit, "synth", str(data), "--subjects", "4", "--clips-per-class", "1"],
                   check=True, capture_output=True, timeout=600)
    crop = work / "t.crop.h5"
    subprocess.run([*mexkit, "crop", "--annotations", str(data / "samples.csv"), "-o",
                    str(crop)], check=True, capture_output=True, timeout=600)
    flow = work / "t.flow.h5"
    # MEAN reads its region input (without it `mexkit train` ends at once, and no fold
    # worker is ever seen)
    subprocess.run([*mexkit, "flow", str(crop), "--pairs", "onset-apex", "--method", "tvl1",
                    "--strain", "--features", "mean", "-o", str(flow)], check=True,
                   capture_output=True, timeout=600)
    counts = Counter()
    for i in range(kills):
        proc = subprocess.Popen([*mexkit, "train", str(flow), "--model", "mean", "--epochs",
                                 "5000", "--fold-jobs", "2", "-o", str(work / f"run{i}")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(1.0)
            workers = {p for p in _descendants(proc.pid) if _is_loky(p)}
        time.sleep(2.0)
        started = _descendants(proc.pid)
        proc.kill()
        proc.wait()
        counts["kills"] += 1
        counts["fold workers seen"] += len(workers)
        counts["processes the command had started"] += len(started)
        for wait, name in ((1, "alive 1 s after SIGKILL"), (5, "alive 5 s after"),
                           (15, "alive 15 s after")):
            time.sleep(wait - (0 if wait == 1 else {5: 1, 15: 5}[wait]))
            counts[name] += sum(_alive(p) for p in started)
        for p in started:
            if _alive(p):
                with __import__("contextlib").suppress(OSError):
                    os.kill(p, signal.SIGKILL)
    ok = counts["alive 5 s after"] == 0 and counts["fold workers seen"] >= 2 * kills
    return {f"SIGKILL of mexkit train --fold-jobs 2 ({kills} kills)":
            ", ".join(f"{v} {k}" for k, v in counts.items() if k != "kills")
            + ("" if ok else ": FAILED")}


def _is_loky(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"loky" in f.read()
    except OSError:
        return False


def _dask_second_user_trial() -> dict[str, str]:
    import grp
    import pwd

    name = "second local user against a mexkit-started Dask cluster"
    if os.geteuid() != 0 or not shutil.which("useradd"):
        return {name: "not run (needs root and useradd)"}
    try:
        import distributed  # noqa: F401 - imported before the fork
    except ImportError:
        return {name: "not run (no dask.distributed)"}
    subprocess.run(["groupadd", "mexkit-chaos"], capture_output=True)
    subprocess.run(["useradd", "-M", "-N", "-g", "mexkit-chaos", "-s", "/bin/false",
                    "mexkit-chaos"], capture_output=True)
    try:
        user = pwd.getpwnam("mexkit-chaos")
        gid = grp.getgrnam("mexkit-chaos").gr_gid
    except KeyError:
        return {name: "not run (useradd failed)"}
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other user, forked before any thread exists
        msg = "child error"
        try:
            os.close(w)
            os.close(r2)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(user.pw_uid)
            address = os.read(r, 200).decode()
            results = []
            for a in (address, address.replace("tls://", "tcp://")):
                import dask
                import distributed

                try:
                    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
                        c = distributed.Client(a, set_as_default=False, timeout=3)
                        results.append(f"ran as uid {c.submit(os.getuid).result(10)}")
                except Exception:
                    results.append("refused")
            msg = ";".join(results)
        except BaseException as exc:
            msg = f"child error {exc!r}"
        finally:
            try:
                os.write(w2, msg.encode())
            finally:
                os._exit(0)
    os.close(r)
    os.close(w2)
    from mexkit.pipeline.parallel import _dask_client

    try:
        with _dask_client(2, None) as client:
            os.write(w, client.scheduler.address.encode())
            os.close(w)
            w = -1
            with os.fdopen(r2, "rb") as fh:
                said = fh.read().decode()
    finally:
        if w >= 0:
            os.close(w)
        os.waitpid(pid, 0)
    ran = said.count("ran as")
    return {name: f"{said.count('refused')} of 2 connections (tls, tcp) refused, {ran} "
            f"submissions ran" + ("" if ran == 0 and "refused;refused" == said
                                  else f": FAILED ({said})")}


def attack_trials(work: Path, rng: np.random.Generator, train_kills: int = 2
                  ) -> dict[str, str]:
    out: dict[str, str] = {}
    for fn in (lambda: _forged_entry_trials(work), lambda: _oversized_trials(work),
               lambda: _replaced_trials(work, rng), lambda: _merge_trials(work),
               lambda: _disk_full_trials(work), lambda: _train_kill_trials(work, train_kills),
               _dask_second_user_trial):
        t = time.perf_counter()
        got = fn()
        for k, v in got.items():
            out[k] = v
            print(f"  {k:<66} {v}  ({time.perf_counter() - t:.0f} s)", flush=True)
    return out


# --------------------------------------------------------------------------
def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"
    except OSError:
        return "load average unknown"


def _print_stops(c: Counter, lat: list[float], title: str) -> bool:
    """Print the counts of :func:`_stop_trials`; whether every trial held."""
    bad = sum(c[k] for k in ("runs still alive 60 s after SIGINT",
                             "SIGINT: another exit status", "SIGINT: exit later than 2 s",
                             "finished pieces computed again", "finished pieces lost",
                             "final resume failed", "final store differs",
                             "staging folders left after a finished run"))
    print(f"\n{title}")
    for k in ("SIGINT to the process", "SIGINT to the process group", "SIGKILL",
              "runs that finished first", "SIGINT: exit status 130",
              "SIGINT: another exit status", "SIGINT: exit later than 2 s",
              "runs still alive 60 s after SIGINT", "pieces on disk after the stop",
              "finished pieces lost", "finished pieces computed again",
              "final store equal to the uninterrupted run", "final store differs",
              "final resume failed", "staging folders left after a finished run",
              "seconds per full run"):
        print(f"  {k:<46} {c[k]}")
    if lat:
        print(f"  {'SIGINT to exit, seconds (median, max)':<46} "
              f"{float(np.median(lat)):.2f}, {max(lat):.2f}")
    return bad == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs in the crash trials")
    ap.add_argument("--fuzz", type=int, default=160, help="fuzzed stores")
    ap.add_argument("--only", default="crash,fuzz,hostile,attacks,interrupt")
    ap.add_argument("--interrupts", type=int, default=9,
                    help="stops (SIGINT, group SIGINT, SIGKILL in turn) of the interrupt trials")
    ap.add_argument("--train-kills", type=int, default=2,
                    help="SIGKILLs of mexkit train in the attack trials")
    ap.add_argument("--writer-params", help=argparse.SUPPRESS)
    ap.add_argument("--replaced", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="also print the counts as JSON")
    ap.add_argument("--writer", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.replaced:
        _replaced_main(*args.replaced)
        return 0
    if args.writer:
        from mexkit.cli import main as cli_main  # noqa: F401 - the CLI's error messages

        if args.writer_params:
            return _writer_cli(args.writer, args.writer_params)
        _writer_main(args.writer, N_SAMPLES)
        return 0
    import logging

    logging.getLogger("mexkit").setLevel(logging.CRITICAL)
    import mexkit

    rng = np.random.default_rng(args.seed)
    parts = {p.strip() for p in args.only.split(",")}
    print(f"mexkit {mexkit.__version__}, Python {platform.python_version()}, seed {args.seed}, "
          f"{_load()} at start")
    results: dict[str, dict] = {}
    ok = True
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mexkit-chaos-") as tmp:
        work = Path(tmp)
        if "crash" in parts:
            t = time.perf_counter()
            c = crash_trials(work, rng, args.kills)
            results["crash"] = dict(c)
            bad = sum(c[k] for k in ("unreadable or invalid store", "finished samples lost",
                                     "samples computed twice", "resumed runs that differ",
                                     "final resume failed",
                                     "temporaries left after a finished run",
                                     "staging folders left after a finished run"))
            ok &= bad == 0
            print(f"\ncrash-kill trials ({time.perf_counter() - t:.0f} s)")
            for k in ("kills", "kills after every sample was staged (assembly)",
                      "runs that finished first", "unreadable or invalid store",
                      "finished samples lost", "samples computed twice",
                      "resumed runs equal to the uninterrupted run", "resumed runs that differ",
                      "final resume failed", "temporaries left after a finished run",
                      "staging folders left after a finished run", "seconds per full run"):
                print(f"  {k:<46} {c[k]}")
        if "fuzz" in parts:
            t = time.perf_counter()
            c = fuzz_trials(work, rng, args.fuzz)
            results["fuzz"] = dict(c)
            ok &= c["other"] == c["crash"] == c["hang"] == 0
            print(f"\nfuzzed stores ({time.perf_counter() - t:.0f} s): {args.fuzz} variants")
            for k in ("refused", "ok", "other", "crash", "hang"):
                print(f"  {k:<46} {c[k]}")
        if "attacks" in parts:
            t = time.perf_counter()
            print("\nattacks (issue 30)", flush=True)
            outcomes = attack_trials(work, rng, args.train_kills)
            results["attacks"] = outcomes
            ok &= not any("FAILED" in v for v in outcomes.values())
            print(f"  ({time.perf_counter() - t:.0f} s)")
        if "hostile" in parts:
            t = time.perf_counter()
            c, outcomes = hostile_trials(work)
            results["hostile"] = outcomes
            ok &= set(outcomes.values()) == {"refused"}
            print(f"\nhostile stores and folders ({time.perf_counter() - t:.0f} s): "
                  f"{len(outcomes)} trials, {c['refused']} refused cleanly")
            for name, outcome in outcomes.items():
                print(f"  {name:<46} {outcome}")
        if "interrupt" in parts:
            for key, trials, what in (
                    ("interrupt", interrupt_trials,
                     f"mexkit flow of {LONG_VIDEOS} videos of {LONG_FRAMES} frames, pieces "
                     f"of {PIECE} pairs"),
                    ("interrupt-crop", crop_interrupt_trials,
                     f"mexkit crop --mode every of {FACE_VIDEOS} face videos of "
                     f"{FACE_FRAMES} frames, pieces of {PIECE} frames")):
                t = time.perf_counter()
                c, lat = trials(work, rng, args.interrupts)
                results[key] = {**dict(c), "sigint_exit_seconds": [round(x, 2) for x in lat]}
                ok &= _print_stops(c, lat, f"interrupted long videos "
                                           f"({time.perf_counter() - t:.0f} s): {what}")
    print(f"\n{'all trials held' if ok else 'SOME TRIALS FAILED'} in "
          f"{time.perf_counter() - t_all:.0f} s; {_load()} at the end")
    if args.json:
        print(json.dumps(results, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
