"""Issue 30: nothing lost, nothing forged, nobody else's code run.

One test (or a few) per item of the issue, each named after what it shows;
every one fails on the code before its fix.
"""
from __future__ import annotations

import os
import shutil
import signal
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage


def _invoke(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def _compute(task):
    r = np.random.default_rng(task.payload)
    return {"frames": r.integers(0, 256, (3, 8, 8), dtype=np.uint8)}, {}


def _tasks(n=6):
    return [Task(f"t/s{i % 3}/c{i:02d}", cache_key("crop", 1, {}, str(i)),
                 {"subject": f"s{i % 3}", "label": f"class{i % 2}"}, i) for i in range(n)]


def _store(path, n=6, **kw):
    return run_stage(_tasks(n), _compute, output=path, stage="crop", params={}, progress=False,
                     **kw)


# -- item 1: -o never replaces a file mexkit did not write, nor an input ----------------
def test_crop_output_equal_to_its_own_sheet_is_refused(synth_dataset, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(synth_dataset, data)
    sheet = data / "samples.csv"
    before = sheet.read_bytes()
    r = _invoke("crop", "--annotations", sheet, "-o", sheet)
    assert r.exit_code == 2, r.output
    assert "input of this run" in r.output
    assert sheet.read_bytes() == before
    # --overwrite does not make an input replaceable
    r = _invoke("crop", "--annotations", sheet, "-o", sheet, "--overwrite")
    assert r.exit_code == 2 and sheet.read_bytes() == before


def test_crop_output_equal_to_its_video_is_refused(tmp_path):
    import cv2

    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64))
    for i in range(4):
        w.write(np.full((64, 64, 3), 40 * i, np.uint8))
    w.release()
    before = video.read_bytes()
    r = _invoke("crop", video, "--detector", "none", "-o", video)
    assert r.exit_code == 2, r.output
    assert "input of this run" in r.output
    r = _invoke("crop", video, "--detector", "none", "-o", video, "--overwrite")
    assert r.exit_code == 2, r.output
    assert video.read_bytes() == before


def test_output_that_is_not_a_mexkit_store_is_kept(tmp_path):
    mine = tmp_path / "mydata.h5"
    with h5py.File(mine, "w") as fh:
        fh["x"] = np.arange(5)
    notes = tmp_path / "notes.csv"
    notes.write_text("my,notes\n")
    before = mine.read_bytes(), notes.read_bytes()
    from mexkit.errors import ParameterError

    with pytest.raises(ParameterError, match="not a mexkit store"):
        _store(mine)
    part = tmp_path / "part.h5"
    _store(part)
    r = _invoke("merge", part, "-o", notes)
    assert r.exit_code == 2 and "not a mexkit store" in r.output, r.output
    assert (mine.read_bytes(), notes.read_bytes()) == before
    assert not (tmp_path / "mydata.h5.staging").exists()
    # named with --overwrite, it is replaced
    r = _invoke("merge", part, "-o", notes, "--overwrite")
    assert r.exit_code == 0, r.output
    from mexkit.io.store import validate_store

    assert validate_store(notes) == []
    # a mexkit store is replaced as before, and an empty file too
    _store(part)
    empty = tmp_path / "empty.h5"
    empty.touch()
    _store(empty)
    assert validate_store(empty) == []


def test_stage_output_equal_to_a_reuse_store_is_refused(tmp_path):
    a = tmp_path / "a.h5"
    _store(a)
    before = a.read_bytes()
    from mexkit.errors import ParameterError
    from mexkit.pipeline.parallel import configure

    with configure(reuse=(str(a),)), pytest.raises(ParameterError, match="input of this run"):
        _store(a)
    assert a.read_bytes() == before


# -- item 8: only regular files are read as frames ----------------------------------
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_crop_of_a_folder_with_a_fifo_or_dev_zero_fails_that_clip_only(synth_dataset,
                                                                       tmp_path, kind):
    import subprocess
    import sys

    data = tmp_path / "d"
    shutil.copytree(synth_dataset, data)
    folder = sorted(p for p in data.rglob("*") if p.is_dir() and list(p.glob("*.png")))[0]
    frames = sorted(folder.glob("*.png"))
    frames[-1].unlink()
    if kind == "fifo":
        os.mkfifo(frames[-1])
    else:
        frames[-1].symlink_to("/dev/zero")
    out = tmp_path / "o.h5"
    # in a child with a time limit: before the fix it blocked (FIFO) or ran out of memory
    proc = subprocess.run([sys.executable, "-m", "mexkit", "-q", "crop", "--annotations",
                           str(data / "samples.csv"), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "not a regular file" in proc.stderr
    from mexkit.io.store import open_store

    with open_store(out) as s:
        assert len(s.failures) == 1 and len(s) == 5


# -- item 7: --detector none runs dlib too: threads take turns with it ------------------
def test_crop_detector_none_in_threads_equals_one_job(synth_dataset, tmp_path):
    from mexkit.io.store import open_store

    one, threads = tmp_path / "one.h5", tmp_path / "threads.h5"
    for out, more in ((one, []), (threads, ["-j", "2", "--backend", "threading"])):
        r = _invoke("crop", "--annotations", synth_dataset / "samples.csv", "--detector",
                    "none", *more, "-o", out)
        assert r.exit_code == 0, r.output
    with open_store(one) as a, open_store(threads) as b:
        assert sorted(a.sample_ids) == sorted(b.sample_ids) and len(a.sample_ids) == 6
        for sid in a.sample_ids:
            for name in a[sid].keys():
                assert np.array_equal(a[sid].read(name), b[sid].read(name), equal_nan=True)


# -- item 10: what a stage allocates is bounded by what the store holds, at every size --
def _zeros_store(path, frames=16_000, side=128):
    """A valid crop store whose one sample is ``frames`` frames of zeros (~40 kB on disk)."""
    def compute(task):
        return {"frames": np.zeros((frames, side, side), np.uint8)}, {"onset": 0, "apex": 5,
                                                                       "offset": 9}

    run_stage([Task("z/s/c", cache_key("crop", 1, {}, "z"), {"subject": "s"}, 0)], compute,
              output=path, stage="crop", params={}, progress=False)
    return path


@pytest.mark.parametrize("stage", [["tim", "-n", "32"], ["rpca"], ["magnify"]])
def test_store_of_zeros_declaring_260_mb_is_refused_before_reading(tmp_path, stage):
    import resource
    import subprocess
    import sys

    src = _zeros_store(tmp_path / "z.crop.h5")
    assert src.stat().st_size < 2 << 20
    out = tmp_path / "out.h5"

    def limit():  # 1.5 GiB of address space: the stage must not even try
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))

    proc = subprocess.run([sys.executable, "-m", "mexkit", stage[0], str(src), *stage[1:],
                           "-o", str(out)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr
    assert "ratio above 100" in proc.stderr and "z.crop.h5" in proc.stderr, proc.stderr
    assert not out.exists()


def test_many_arrays_of_one_sample_are_bounded_together(tmp_path):
    from mexkit.errors import StoreError
    from mexkit.io.store import StoreLimits, open_store

    def compute(task):  # 8 arrays of 4 MiB of zeros: each under the floor, 32 MiB together
        return {f"a{i}": np.zeros((64, 256, 256), np.uint8) for i in range(8)}, {}

    p = tmp_path / "many.h5"
    run_stage([Task("m/s/c", cache_key("x", 1, {}, "m"), {}, 0)], compute, output=p,
              stage="x", params={}, progress=False)
    with pytest.raises(StoreError, match="declare .* together"):
        open_store(p)
    open_store(p, limits=StoreLimits(ratio_floor=64 << 20)).close()


# -- items 4 and 9: cache entries and --reuse stores trusted only as far as they are
#    signed and checked; attributes from the run's own input -------------------------
def _flow(crop_store, out, **cfg):
    from mexkit.pipeline.flow import run_flow
    from mexkit.pipeline.parallel import configure

    with configure(**cfg):
        return run_flow(crop_store, out, method="farneback", pairs="onset-apex",
                        progress=False)


def _entries(cache):
    return sorted(p for p in cache.rglob("*.h5") if not p.name.startswith("."))


def _resign(entry, key_path):
    from mexkit.io.signing import load_signer
    from mexkit.pipeline.cache import entry_message

    signer = load_signer(key_path)
    with h5py.File(entry, "r+") as fh:
        fh.attrs["signer"] = signer.key_id
        fh.attrs["signature"] = signer.sign(entry_message(str(fh.attrs["cache_key"]),
                                                          fh["sample"]))


def _forge(entry, *, label="forged", zero=True):
    """Rewrite an entry as the issue's attacker did: another label, zeroed flow and a
    recomputed data hash (the signature is left as it was)."""
    from mexkit.io.store import hash_arrays

    with h5py.File(entry, "r+") as fh:
        g = fh["sample"]
        g.attrs["label"] = label
        if zero:
            g["flow"][...] = 0
        g.attrs["data_hash"] = hash_arrays({n: g[n][()] for n in g})


def _labels(path):
    from mexkit.io.store import open_store

    with open_store(path) as s:
        return {sid: s[sid].attrs.get("label") for sid in s.sample_ids}


@pytest.fixture
def seeded_cache(crop_store, tmp_path):
    cache = tmp_path / "cache"
    r = _flow(crop_store, tmp_path / "first.h5", cache=str(cache))
    assert r.computed == 6 and len(_entries(cache)) == 6
    return cache


def test_forged_cache_entry_is_not_used(crop_store, seeded_cache, tmp_path, caplog):
    entry = _entries(seeded_cache)[0]
    _forge(entry)
    with caplog.at_level("WARNING", logger="mexkit"):
        r = _flow(crop_store, tmp_path / "second.h5", cache=str(seeded_cache))
    assert r.from_cache == 5 and r.computed == 1
    assert "does not match its content" in caplog.text and str(entry) in caplog.text
    assert _labels(tmp_path / "second.h5") == _labels(crop_store)
    from mexkit.io.store import open_store

    with open_store(tmp_path / "second.h5") as s:
        assert all(np.abs(s[sid].read("flow")).max() > 0 for sid in s.sample_ids)


def test_entry_signed_by_an_untrusted_key_is_used_only_with_trust(crop_store, seeded_cache,
                                                                   tmp_path):
    other = tmp_path / "other-lab.pem"
    entry = _entries(seeded_cache)[0]
    _forge(entry, zero=False)   # another lab's entry: same data, its own attributes
    _resign(entry, other)
    r = _flow(crop_store, tmp_path / "a.h5", cache=str(seeded_cache))
    assert r.from_cache == 5 and r.computed == 1
    r = _flow(crop_store, tmp_path / "b.h5", cache=str(seeded_cache),
              trust=(str(tmp_path / "other-lab.pub.pem"),))
    assert r.from_cache == 6
    # its label never reaches the output: attributes come from the run's own input
    assert _labels(tmp_path / "b.h5") == _labels(crop_store)


def test_audit_refuses_a_trusted_but_wrong_entry(crop_store, seeded_cache, tmp_path):
    entries = _entries(seeded_cache)
    for e in entries:
        _forge(e)
        _resign(e, os.environ["MEXKIT_KEY"])   # a trusted key that computed wrongly
    out = tmp_path / "audited.h5"
    from mexkit.errors import StoreError

    with pytest.raises(StoreError, match="cache entry .* differs from its recomputation"):
        _flow(crop_store, out, cache=str(seeded_cache), audit=1.0)
    assert not out.exists()
    # without the audit the entries are taken: the audit is what finds them out
    assert _flow(crop_store, tmp_path / "trusting.h5", cache=str(seeded_cache)).from_cache == 6
    staging = tmp_path / "audited.h5.staging"
    assert not staging.exists() or not list(staging.glob("*.h5"))


def test_entry_of_the_wrong_shape_is_not_used(crop_store, seeded_cache, tmp_path, caplog):
    from mexkit.io.store import hash_arrays

    entry = _entries(seeded_cache)[0]
    with h5py.File(entry, "r+") as fh:
        g = fh["sample"]
        del g["flow"]
        g["flow"] = np.zeros((1, 2, 5, 5), np.float64)
        g.attrs["data_hash"] = hash_arrays({n: g[n][()] for n in g})
    _resign(entry, os.environ["MEXKIT_KEY"])
    with caplog.at_level("WARNING", logger="mexkit"):
        r = _flow(crop_store, tmp_path / "o.h5", cache=str(seeded_cache))
    assert r.computed == 1 and r.from_cache == 5
    assert "'flow' is float64" in caplog.text


def test_oversized_cache_entry_is_skipped_not_fatal(crop_store, seeded_cache, tmp_path,
                                                     caplog):
    entry = _entries(seeded_cache)[0]
    with h5py.File(entry, "r+") as fh:   # 40 GiB declared, nothing written
        fh["sample"].create_dataset("huge", shape=(40 << 10, 1 << 20), dtype=np.uint8,
                                    chunks=(1, 1 << 20))
    _resign(entry, os.environ["MEXKIT_KEY"])
    assert entry.stat().st_size < 1 << 20
    with caplog.at_level("WARNING", logger="mexkit"):
        r = _flow(crop_store, tmp_path / "o.h5", cache=str(seeded_cache))
    assert r.computed == 1 and r.from_cache == 5 and not r.failures
    assert "declares" in caplog.text


def test_reuse_store_must_be_signed_by_a_trusted_key(crop_store, tmp_path):
    from mexkit.errors import StoreError
    from mexkit.io.store.format import _seal

    theirs = tmp_path / "theirs.h5"
    _flow(crop_store, theirs)
    # another lab re-seals it with its own key, after changing a label
    from mexkit.io.signing import load_signer

    with h5py.File(theirs, "r+") as fh:
        g = fh["samples"][next(iter(fh["samples"]))]
        g.attrs["label"] = "forged"
    _seal(theirs, load_signer(tmp_path / "lab.pem"))
    with pytest.raises(StoreError, match="does not pass validation|not trust"):
        _flow(crop_store, tmp_path / "a.h5", reuse=(str(theirs),))
    # a store of that lab, valid and signed: refused until its key is trusted
    good = tmp_path / "good.h5"
    _flow(crop_store, good)
    _seal(good, load_signer(tmp_path / "lab.pem"))
    with pytest.raises(StoreError, match="does not trust"):
        _flow(crop_store, tmp_path / "b.h5", reuse=(str(good),))
    r = _flow(crop_store, tmp_path / "c.h5", reuse=(str(good),),
              trust=(str(tmp_path / "lab.pub.pem"),))
    assert r.reused == 6 and r.computed == 0
    # an unsigned store is refused
    _seal(good)
    with pytest.raises(StoreError, match="not signed"):
        _flow(crop_store, tmp_path / "d.h5", reuse=(str(good),))


# -- item 13: a cache folder shared by two users of one group --------------------------
def _test_users():
    """Two users of one group, made with useradd (root only); None where impossible."""
    import grp
    import pwd
    import subprocess

    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("groupadd"):
        return None
    names = ("mexkit-test-a", "mexkit-test-b")
    try:
        grp.getgrnam("mexkit-test")
    except KeyError:
        subprocess.run(["groupadd", "mexkit-test"], check=False, capture_output=True)
    for n in names:
        try:
            pwd.getpwnam(n)
        except KeyError:
            subprocess.run(["useradd", "-M", "-N", "-g", "mexkit-test", "-s", "/bin/false", n],
                           check=False, capture_output=True)
    try:
        return [pwd.getpwnam(n) for n in names], grp.getgrnam("mexkit-test").gr_gid
    except KeyError:
        return None


def _as_user(uid, gid, env, action):
    """Run ``action()`` in a forked child as ``uid:gid`` (umask 022); return its exit
    code and message.  Everything it needs is imported before the fork (the interpreter's
    own files may not be readable by that user)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code, msg = 0, "ok"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.umask(0o022)
            os.environ.update(env)
            action()
        except BaseException as exc:
            code, msg = 1, f"{type(exc).__name__}: {exc}"
        os.write(w, msg.encode()[:4000])
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        msg = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), msg


def test_cache_shared_by_two_users_of_a_group(tmp_path):
    users = _test_users()
    if users is None:
        pytest.skip("needs root and useradd to make two users")
    (a, b), gid = users
    base = tmp_path / "shared"
    base.mkdir()
    for p in (tmp_path, base):
        os.chmod(p, 0o755)
    os.chmod(tmp_path.parent, 0o755)
    os.chmod(tmp_path.parent.parent, 0o755)
    cache = base / "cache"
    cache.mkdir()
    os.chown(cache, 0, gid)
    os.chmod(cache, 0o2775)   # the documented set-up: group-owned, setgid, group-writable
    import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401 - before fork
    import cryptography.hazmat.primitives.serialization  # noqa: F401

    from mexkit.io import signing
    from mexkit.io.store import write_staged_sample
    from mexkit.pipeline import stages  # noqa: F401 - the cache reads its limits
    from mexkit.pipeline.cache import SampleCache

    keys = {}
    for u in (a, b):
        home = base / u.pw_name
        home.mkdir()
        os.chown(home, u.pw_uid, gid)
        keys[u.pw_name] = home / "key.pem"

    def run(user, key, other, trust=()):
        staging = base / user.pw_name / "staging"

        def action():
            signing._SIGNERS.clear()
            c = SampleCache(cache, trusted=signing.trusted_keys(trust,
                                                                key_path=keys[user.pw_name]))
            claim = c.claim(key)
            assert claim is not None, "claim refused"
            claim.release()
            with c.wait(key):
                pass
            staging.mkdir(exist_ok=True)
            p = write_staged_sample(staging, "s/" + key, key, {"x": np.arange(4)},
                                    {"label": "a"})
            assert c.put(key, p) is not None, "put refused"
            if other != "-":
                assert c.fetch(other, "s/" + other, staging) is not None, \
                    "the other user's entry was not used"

        return _as_user(user.pw_uid, gid, {"HOME": str(base / user.pw_name)}, action)

    ka, kb = "ab" + "1" * 30, "ab" + "2" * 30   # one prefix folder for both
    code, msg = run(a, ka, "-")
    assert code == 0, msg
    # b locks a's key, writes into the prefix folder a made, and uses a's entry (trusted)
    code, msg = run(b, ka, "-")
    assert code == 0, msg
    code, msg = run(b, kb, ka, (str(keys["mexkit-test-a"].with_name("key.pub.pem")),))
    assert code == 0, msg
    assert (cache / "ab").stat().st_mode & 0o2070 == 0o2070


# -- item 5: an input store replaced during the run is never mixed in -------------------
@pytest.mark.parametrize("jobs,backend", [(1, "loky"), (2, "threading")])
def test_input_replaced_during_the_run_stops_the_stage(tmp_path, jobs, backend):
    from mexkit.errors import StoreError
    from mexkit.io.store import open_store
    from mexkit.pipeline.stages import input_sample, run_store_stage

    src, other = tmp_path / "in.h5", tmp_path / "other.h5"
    _store(src, n=12)
    # the same samples with other content (frames of 7): another version of the store
    run_stage([Task(t.sample_id, cache_key("crop", 2, {}, t.sample_id), t.attrs, 0)
               for t in _tasks(12)],
              lambda t: ({"frames": np.full((3, 8, 8), 7, np.uint8)}, {}),
              output=other, stage="crop", params={}, progress=False)
    calls = []

    def compute(task):
        calls.append(task.sample_id)
        if len(calls) == 3:
            os.replace(other, src)   # `mv other.h5 in.h5` while the stage runs
        s = input_sample(task.payload["input"], task.sample_id, task.payload.get("identity"))
        return {"frames": s.read("frames") + 1}, {}

    out = tmp_path / "out.h5"
    with pytest.raises(StoreError, match="replaced or changed during the run"):
        run_store_stage(src, out, stage="tim", version=1, params={}, compute=compute,
                        jobs=jobs, backend=backend, progress=False)
    assert not out.exists()
    # the samples read before the change are kept for a resume, none from the new file
    staged = sorted((tmp_path / "out.h5.staging").glob("*.h5"))
    assert 1 <= len(staged) <= 3
    with open_store(src) as s:   # the new store: every frame is 7
        assert all((s[sid].read("frames") == 7).all() for sid in s.sample_ids)
    for p in staged:
        with h5py.File(p, "r") as fh:
            assert not (fh["sample"]["frames"][()] == 8).all()


# -- item 6: merge refuses an incomplete set of shards unless --partial -----------------
def test_merge_of_two_shards_out_of_three_is_refused(tmp_path):
    from mexkit.io.store import open_store
    from mexkit.pipeline.parallel import configure, in_shard

    parts = []
    for i in range(3):
        with configure(shard=(i, 3)):
            _store(tmp_path / f"part{i}.h5", n=24)
        parts.append(tmp_path / f"part{i}.h5")
    out = tmp_path / "m.h5"
    r = _invoke("merge", parts[0], parts[1], "-o", out)
    assert r.exit_code == 1, r.output
    n2 = sum(in_shard(t.sample_id, (2, 3)) for t in _tasks(24))
    assert f"shard(s) 2 missing ({n2} of 24 samples)" in r.output
    assert not out.exists()
    r = _invoke("merge", parts[0], parts[1], "-o", out, "--partial")
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        assert len(s) == 24 - n2 and s.shard["shards"] == [0, 1] and s.shard["partial"]
    r = _invoke("inspect", out)
    assert "PARTIAL store: shard(s) 0, 1 of 3" in r.output, r.output
    # the partial store and the missing part make the whole run
    whole = tmp_path / "whole.h5"
    r = _invoke("merge", out, parts[2], "-o", whole)
    assert r.exit_code == 0, r.output
    with open_store(whole) as s:
        assert len(s) == 24 and s.shard is None
    # a part of another run (other samples) is refused
    with configure(shard=(2, 3)):
        _store(tmp_path / "other2.h5", n=30)
    r = _invoke("merge", parts[0], parts[1], tmp_path / "other2.h5", "-o", tmp_path / "x.h5")
    assert r.exit_code == 1 and "another run" in r.output, r.output


# -- item 12: a full disk is one clear error; finished samples and the old output kept ---
@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of a given size (root only); skips where it cannot be mounted."""
    import subprocess

    mounted = []

    def make(size_kb):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                            str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small file system here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _flow_cli(crop_store, out, *extra):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mexkit", "flow", str(crop_store),
                           "--method", "farneback", "--pairs", "consecutive", "-o", str(out),
                           *map(str, extra)], capture_output=True, text=True, timeout=300)


def test_disk_full_while_staging_is_one_clear_error(crop_store, small_fs):
    from mexkit.io.store import open_store, validate_store

    fs = small_fs(8000)
    out = fs / "o.h5"
    _store(out, n=2)                    # an earlier output, made with other parameters
    before = out.read_bytes()
    proc = _flow_cli(crop_store, out, "--overwrite")   # replacing it is asked for
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("mexkit: error: no space left on device"), proc.stderr
    assert str(fs) in lines[-1]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert out.read_bytes() == before and validate_store(out) == []
    staged = [p for p in (fs / "o.h5.staging").glob("*.h5") if not p.name.startswith(".")]
    assert staged, "the samples finished before the disk filled are kept"
    # once there is room, the run resumes: the staged samples are not computed again
    out.unlink()
    proc = _flow_cli(crop_store, fs / "o.h5", "-v")
    if proc.returncode == 0:
        assert f"{len(staged)} of 6 sample(s) already done" in proc.stderr
        with open_store(fs / "o.h5") as s:
            assert len(s) == 6


def test_disk_full_during_assembly_keeps_the_staged_samples(crop_store, small_fs,
                                                            monkeypatch):
    from mexkit.errors import DiskFullError
    from mexkit.io.store import write as w
    from mexkit.pipeline.flow import run_flow

    fs = small_fs(40000)
    real = w.ensure_room

    def tight(folder, need, *, what):   # the disk fills up just before assembly
        if what.startswith("assembling"):
            raise w.disk_full(folder, need, what)
        return real(folder, need, what=what)

    monkeypatch.setattr(w, "ensure_room", tight)
    with pytest.raises(DiskFullError, match="no space left on device .*assembling"):
        run_flow(crop_store, fs / "o.h5", method="farneback", progress=False)
    assert len(list((fs / "o.h5.staging").glob("*.h5"))) == 6
    assert not (fs / "o.h5").exists()


def test_full_cache_disk_only_stops_writing_to_the_cache(crop_store, small_fs, tmp_path,
                                                         caplog):
    fs = small_fs(150)
    with caplog.at_level("WARNING", logger="mexkit"):
        r = _flow(crop_store, tmp_path / "o.h5", cache=str(fs / "cache"))
    assert r.computed == 6 and not r.failures
    assert "is full" in caplog.text
    from mexkit.io.store import validate_store

    assert validate_store(tmp_path / "o.h5") == []


def test_disk_full_is_reported_without_a_small_file_system(tmp_path, monkeypatch):
    """The same, by fault injection, where no file system can be mounted."""
    import errno

    from mexkit.errors import DiskFullError
    from mexkit.io.store import write as w
    from mexkit.pipeline.parallel import configure

    out = tmp_path / "o.h5"
    _store(out, n=2)
    before = out.read_bytes()
    real_open = open
    n = {"writes": 0}

    def full(path, mode="r", *a, **k):
        if "w" in mode and ".tmp-" in str(path) and "staging" in str(path):
            n["writes"] += 1
            if n["writes"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full)
    # other parameters: replacing the store is asked for (issue 28, item 4)
    with pytest.raises(DiskFullError, match="no space left on device"), \
            configure(overwrite=True):
        run_stage(_tasks(8), _compute, output=out, stage="crop", params={"x": 1},
                  progress=False)
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert len(list((tmp_path / "o.h5.staging").glob("*.h5"))) == 3
    assert w.no_space(OSError(errno.ENOSPC, "x"))


# -- item 3: a Dask cluster mexkit starts admits only mexkit --------------------------
def _try_dask(address, queue_fd=None):
    """Connect to ``address`` without credentials and submit os.getuid; return what
    happened ("refused ..." or "ran as uid N")."""
    import gc

    import dask
    import distributed

    try:
        with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
            c = distributed.Client(address, set_as_default=False, timeout=3)
            try:
                return f"ran as uid {c.submit(os.getuid).result(timeout=10)}"
            finally:
                c.close()
    except Exception as exc:
        outcome = f"refused ({type(exc).__name__})"
    # the client that failed to connect is finalised here (its traceback, which held it,
    # is gone): left to a later garbage collection, its __del__ ran while the next client
    # started Dask's shared event loop and waited for the lock that start holds (a run of
    # the suite under load hung there until its timeout)
    gc.collect()
    return outcome


def test_local_dask_cluster_refuses_a_client_without_its_certificate():
    pytest.importorskip("distributed")
    from mexkit.pipeline.parallel import _dask_client

    users = _test_users()
    r = w = pid = None
    if users is not None:   # another local user, forked before any thread exists
        (other, _), gid = users
        r, w = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            msg = "child error"
            try:
                os.close(w)
                os.close(r2)
                os.setgroups([])
                os.setgid(gid)
                os.setuid(other.pw_uid)
                address = os.read(r, 200).decode()
                if address:
                    msg = "; ".join(_try_dask(a) for a in
                                    (address, address.replace("tls://", "tcp://")))
            except BaseException as exc:
                msg = f"child error {exc!r}"
            finally:
                try:
                    os.write(w2, msg.encode())
                finally:
                    os._exit(0)
        os.close(r)
        os.close(w2)
    try:
        _dask_checks(_dask_client, w, r2, pid)
    finally:
        if pid is not None:
            with __import__("contextlib").suppress(OSError):
                os.close(w)
            if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still running: a hung child
                time.sleep(1)
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)


def _dask_checks(_dask_client, w, r2, pid):
    import select
    import socket

    # Dask's default HTTP port held, as by another cluster on the machine: the cluster
    # mexkit starts takes no fixed port (it warned, an error here, and moved elsewhere)
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:  # held already
        pass
    with holder, _dask_client(2, None) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(os.getuid).result(timeout=120) == os.getuid()
        for a in (address, address.replace("tls://", "tcp://")):
            assert _try_dask(a).startswith("refused"), a
        if pid is not None:
            os.write(w, address.encode())
            os.close(w)
            with os.fdopen(r2, "rb") as fh:   # the child's two tries: 26 s at most
                assert select.select([fh], [], [], 300)[0], "the other user's child hung"
                other_said = fh.read().decode()
            assert other_said.count("refused") == 2, other_said


@pytest.mark.slow  # starting Ray takes 10-30 s on 2 shared cores
def test_local_ray_instance_refuses_a_client_without_its_token():
    import subprocess
    import sys

    pytest.importorskip("ray")
    import ray

    from mexkit.pipeline.parallel import _ray_session

    with _ray_session(2, None):
        assert ray.is_initialized()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        # "auto": the running instance, as another local process finds it
        code = ("import os, ray\n"
                "ray.init(address='auto', log_to_driver=False)\n"
                "@ray.remote\n"
                "def uid():\n"
                "    return os.getuid()\n"
                "print('ran as', ray.get(uid.remote(), timeout=20))\n")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode != 0 and "ran as" not in proc.stdout, proc.stdout
        assert "uthentication" in proc.stderr or "token" in proc.stderr, proc.stderr[-2000:]
    assert "RAY_AUTH_TOKEN" not in os.environ


# -- item 11: workers die with the command, even when it is killed with SIGKILL ---------
_SLEEPER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from mexkit.pipeline.parallel import parallel_map

def nap(chunk):
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a worker deaf to SIGTERM
    time.sleep(600)
    return chunk

if __name__ == "__main__":
    for _ in parallel_map(nap, [[1], [2]], jobs=2, backend="loky"):
        pass
"""


def _descendants(pid):
    kids = {}
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


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:].split()[0] != b"Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="counts processes through /proc")
def test_loky_workers_die_with_a_killed_command(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import mexkit

    script = tmp_path / "sleeper.py"
    script.write_text(_SLEEPER)
    proc = subprocess.Popen([sys.executable, str(script),
                             os.path.dirname(os.path.dirname(mexkit.__file__))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers = set()
        while time.monotonic() < deadline:   # until both workers are napping
            workers = {p for p in _descendants(proc.pid) if b"loky" in _cmdline(p)}
            if len(workers) >= 2:
                break
            time.sleep(0.5)
        started = _descendants(proc.pid)
        assert len(workers) >= 2, "the workers never started"
        time.sleep(1.0)   # the guard refreshes its list twice a second
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in started):
            time.sleep(0.2)
        left = [p for p in started if _alive(p)]
        assert not left, f"{len(left)} of {len(started)} processes outlived the command"
    finally:
        proc.kill()
        for p in _descendants(proc.pid):
            with __import__("contextlib").suppress(OSError):
                os.kill(p, signal.SIGKILL)
