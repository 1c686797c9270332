"""HDF5 store: round trip, provenance, safety checks, locking, caching."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from mexkit.errors import BusyError, ParameterError, StoreError
from mexkit.io.store import (
    SCHEMA_VERSION,
    StoreWriter,
    open_store,
    quote_id,
    unquote_id,
    validate_store,
)
from mexkit.io.store.format import _seal
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.parallel import configure
from mexkit.pipeline.runner import Task, run_stage


def _arrays(seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {
        "frames": r.integers(0, 256, (4, 12, 10), dtype=np.uint8),
        "flow": r.normal(size=(3, 2, 12, 10)).astype(np.float32),
        "pairs": np.array([[0, 1], [1, 2], [2, 3]], dtype=np.int64),
    }


def _compute(task: Task):
    return _arrays(task.payload), {"note": "made in a test", "n": task.payload}


def _tasks(n: int, params: dict, stage: str = "unit") -> list[Task]:
    return [
        Task(f"set/s{i:02d}/clip{i}", cache_key(stage, 1, params, f"input{i}"),
             {"subject": f"s{i:02d}", "clip": f"clip{i}", "dataset": "set", "label": "pos",
              "onset": 0, "apex": 2, "offset": 3, "fps": 200.0}, i)
        for i in range(n)
    ]


def _write(path, n=4, params=None, **kw):
    params = params or {"alpha": 1}
    return run_stage(_tasks(n, params), _compute, output=path, stage="unit", params=params,
                     upstream=[{"stage": "crop", "store_id": "abc", "content_hash": "0" * 64,
                                "path": "x.h5"}], progress=False, **kw)


def test_round_trip(tmp_path):
    path = tmp_path / "a.h5"
    res = _write(path)
    assert res.computed == 4 and res.skipped == 0 and not res.failures
    with open_store(path) as s:
        assert s.schema == SCHEMA_VERSION
        assert s.stage == "unit"
        assert s.params == {"alpha": 1}
        assert s.upstream[0]["store_id"] == "abc"
        assert sorted(s.sample_ids) == [f"set/s{i:02d}/clip{i}" for i in range(4)]
        sv = s["set/s02/clip2"]
        for name, arr in _arrays(2).items():
            np.testing.assert_array_equal(sv[name], arr)
            assert sv[name].dtype == arr.dtype
        assert sv.attrs["subject"] == "s02" and sv.attrs["apex"] == 2
        assert sv.attrs["fps"] == 200.0 and sv.attrs["note"] == "made in a test"
        # chunked per frame, gzip, fletcher32
        ds = s._file["samples"][quote_id("set/s02/clip2")]["flow"]
        assert ds.chunks == (1, 2, 12, 10)
        assert ds.compression == "gzip" and ds.fletcher32
    assert validate_store(path) == []
    assert not (tmp_path / "a.h5.staging").exists()


def test_ids_with_slashes_and_percent_round_trip():
    for sid in ["a/b/c", "50%/x", "..", "sub 01/EP02_01f"]:
        assert unquote_id(quote_id(sid)) == sid
        assert "/" not in quote_id(sid)


def test_rerun_is_cached_and_param_change_recomputes(tmp_path):
    path = tmp_path / "a.h5"
    _write(path)
    again = _write(path)
    assert again.computed == 0 and again.skipped == 4
    with pytest.raises(ParameterError, match="alpha: 1 -> 2"):   # not without asking
        _write(path, params={"alpha": 2})
    with configure(overwrite=True):
        changed = _write(path, params={"alpha": 2})
    assert changed.computed == 4 and changed.skipped == 0
    with open_store(path) as s:
        assert s.params == {"alpha": 2}


def test_one_changed_upstream_recomputes_exactly_that_sample(tmp_path):
    path = tmp_path / "a.h5"
    params = {"alpha": 1}
    tasks = _tasks(5, params)
    run_stage(tasks, _compute, output=path, stage="unit", params=params, progress=False)
    tasks[3] = Task(tasks[3].sample_id, cache_key("unit", 1, params, "edited input"),
                    tasks[3].attrs, 3)
    res = run_stage(tasks, _compute, output=path, stage="unit", params=params, progress=False)
    assert (res.computed, res.skipped) == (1, 4)


def test_failed_sample_recorded_others_kept(tmp_path):
    path = tmp_path / "a.h5"

    def compute(task):
        if task.payload == 1:
            raise ValueError("bad pixel in frame 7")
        return _compute(task)

    res = run_stage(_tasks(3, {}), compute, output=path, stage="unit", params={},
                    progress=False)
    assert res.exit_code == 1
    assert res.failures == {"set/s01/clip1": "ValueError: bad pixel in frame 7"}
    with open_store(path) as s:
        assert len(s) == 2
        assert s.failures == {"set/s01/clip1": "ValueError: bad pixel in frame 7"}


def test_second_writer_is_refused_and_first_untouched(tmp_path):
    path = tmp_path / "a.h5"
    _write(path)
    before = path.read_bytes()
    with StoreWriter(path, stage="unit", params={}):
        with pytest.raises(BusyError, match="another mexkit process"):
            with StoreWriter(path, stage="unit", params={}):
                pass
    assert path.read_bytes() == before


def test_leftover_temporaries_are_removed(tmp_path):
    path = tmp_path / "a.h5"
    staging = tmp_path / "a.h5.staging"
    staging.mkdir(mode=0o700)
    (staging / "MEXKIT-STAGING").write_text("made by mexkit")
    (staging / ".tmp-123-abc.h5").write_bytes(b"half a sample")
    (tmp_path / ".a.h5.tmp-99-ff").write_bytes(b"half a store")
    (staging / "garbage-0000.h5").write_bytes(b"not hdf5")
    _write(path)
    assert not staging.exists()
    assert not list(tmp_path.glob(".a.h5.tmp-*"))


def test_content_hash_independent_of_run_and_order(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _write(a, jobs=1)
    tasks = list(reversed(_tasks(4, {"alpha": 1})))
    run_stage(tasks, _compute, output=b, stage="unit", params={"alpha": 1}, progress=False,
              jobs=2, backend="threading")
    with open_store(a) as sa, open_store(b) as sb:
        assert sa.content_hash == sb.content_hash
        assert sa.store_id != sb.store_id


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        open_store(tmp_path / "nope.h5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(StoreError, match="not a mexkit store"):
        open_store(plain)
    text = tmp_path / "t.h5"
    text.write_text("hello")
    with pytest.raises(StoreError):
        open_store(text)


def test_truncated_and_flipped(tmp_path):
    path = tmp_path / "a.h5"
    _write(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="truncated"):
        open_store(path)
    flipped = bytearray(data)
    flipped[len(data) - 100] ^= 0x10
    path.write_bytes(bytes(flipped))
    with pytest.raises(StoreError, match="checksum mismatch"):
        open_store(path)


# ---------------------------------------------------------------------------
# untrusted-store corpus: valid checksum, unsafe structure
# ---------------------------------------------------------------------------
def _tamper(path, action):
    """Apply ``action(h5file)`` to a store and re-seal it like a real file."""
    with h5py.File(path, "r+") as fh:
        action(fh)
    _seal(path)


@pytest.fixture
def good_store(tmp_path):
    path = tmp_path / "good.h5"
    _write(path, n=2)
    return path


def test_newer_schema_refused(good_store):
    _tamper(good_store, lambda fh: fh.attrs.__setitem__("mexkit_schema", SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer version of mexkit"):
        open_store(good_store)


def test_external_link_in_the_middle_of_a_path_refused(good_store, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as fh:
        fh.create_group("deep").create_dataset("flow", data=np.zeros((2, 2)))

    def act(fh):
        grp = fh["samples"][quote_id("set/s00/clip0")]
        grp["elsewhere"] = h5py.ExternalLink(str(other), "/deep")

    _tamper(good_store, act)
    with pytest.raises(StoreError, match="external link"):
        open_store(good_store)


def test_external_storage_refused(good_store, tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(10, dtype=np.float64).tobytes())

    def act(fh):
        grp = fh["samples"][quote_id("set/s00/clip0")]
        grp.create_dataset("ext", shape=(10,), dtype="f8", external=[(str(raw), 0, 80)])

    _tamper(good_store, act)
    with pytest.raises(StoreError, match="external storage"):
        open_store(good_store)


def test_virtual_dataset_refused(good_store):
    def act(fh):
        layout = h5py.VirtualLayout(shape=(4, 12, 10), dtype=np.uint8)
        src = fh.create_dataset("plain", data=np.zeros((4, 12, 10), np.uint8))
        layout[:] = h5py.VirtualSource(src)
        fh["samples"][quote_id("set/s01/clip1")].create_virtual_dataset("virt", layout)

    _tamper(good_store, act)
    with pytest.raises(StoreError, match="virtual dataset"):
        open_store(good_store)


def test_object_attribute_refused(good_store):
    def act(fh):
        ref_dtype = h5py.special_dtype(ref=h5py.Reference)
        fh["samples"].attrs.create("ref", fh["samples"].ref, dtype=ref_dtype)

    _tamper(good_store, act)
    with pytest.raises(StoreError, match="unsupported type"):
        open_store(good_store)


def test_opaque_pickle_like_attribute_refused(good_store):
    import pickle

    blob = np.void(pickle.dumps({"a": 1}))
    _tamper(good_store, lambda fh: fh.attrs.__setitem__("payload", blob))
    with pytest.raises(StoreError, match="unsupported type"):
        open_store(good_store)


def test_unknown_filter_refused(good_store):
    def act(fh):
        grp = fh["samples"][quote_id("set/s00/clip0")]
        grp.create_dataset("scaled", data=np.arange(100, dtype=np.int32), chunks=(10,),
                           scaleoffset=0)

    _tamper(good_store, act)
    with pytest.raises(StoreError, match="filter"):
        open_store(good_store)


def test_soft_link_refused(good_store):
    def act(fh):
        fh["samples"]["alias"] = h5py.SoftLink("/samples")

    _tamper(good_store, act)
    with pytest.raises(StoreError, match="soft link"):
        open_store(good_store)


def test_params_are_sorted_json(good_store):
    with h5py.File(good_store, "r") as fh:
        raw = fh.attrs["params"]
        assert json.loads(raw) == {"alpha": 1}
        assert raw == json.dumps({"alpha": 1}, sort_keys=True, separators=(",", ":"))


def test_grouped_compute_records_per_sample_failures(tmp_path):
    calls = []

    def compute(tasks):
        calls.append(len(tasks))
        out = []
        for t in tasks:
            out.append(ValueError("odd one out") if t.payload == 2 else _compute(t))
        return out

    res = run_stage(_tasks(5, {}), compute, output=tmp_path / "g.h5", stage="unit", params={},
                    progress=False, group=3, batched_compute=True)
    assert calls == [3, 2]
    assert res.computed == 4 and list(res.failures) == ["set/s02/clip2"]
    with open_store(tmp_path / "g.h5") as s:
        np.testing.assert_array_equal(s["set/s04/clip4"]["flow"], _arrays(4)["flow"])


def test_group_that_raises_is_retried_one_by_one(tmp_path):
    def compute(tasks):
        if len(tasks) > 1 or tasks[0].payload == 1:
            raise RuntimeError("batched call failed")
        return [_compute(tasks[0])]

    res = run_stage(_tasks(3, {}), compute, output=tmp_path / "g.h5", stage="unit", params={},
                    progress=False, group=3, batched_compute=True)
    assert res.computed == 2 and list(res.failures) == ["set/s01/clip1"]
