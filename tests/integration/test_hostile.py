"""Hostile and mistaken inputs: nothing lost, nothing overwritten, nothing hostile read.

Each test reproduces one defect of issue 12 (items 1, 2, 8, 10, 11, 13) or
issue 11 (item 4) and fails on the code before the fix.
"""
from __future__ import annotations

import json
import logging
import os
import zlib

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.errors import ParameterError, StoreError
from mexkit.io.store import (
    StoreLimits,
    StoreWriter,
    open_store,
    quote_id,
    validate_store,
)
from mexkit.io.store.format import _seal
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage


def _crop_like(task):
    r = np.random.default_rng(task.payload)
    return {"frames": r.integers(0, 256, (6, 16, 16), dtype=np.uint8)}, {}


def _flow_like(task):
    r = np.random.default_rng(task.payload)
    return {"flow": r.normal(size=(5, 2, 16, 16)).astype(np.float32),
            "pairs": np.stack([np.arange(5), np.arange(1, 6)], 1)}, {}


def _rpca_like(task):
    r = np.random.default_rng(task.payload)
    return {"sparse": r.normal(size=(6, 16, 16)).astype(np.float32)}, {}


def _store(path, stage, compute, n=3, seed=0):
    tasks = [Task(f"set/s{i}/c{i}", cache_key(stage, 1, {}, f"{seed}-{i}"),
                  {"subject": f"s{i}", "label": "positive", "onset": 0, "apex": 2,
                   "offset": 5, "fps": 100.0}, seed * 100 + i) for i in range(n)]
    run_stage(tasks, compute, output=path, stage=stage, params={}, progress=False)
    return path


def _tamper(path, action):
    with h5py.File(path, "r+") as fh:
        action(fh)
    _seal(path)


# -- item 1: the staging folder ---------------------------------------------------
def test_symlinked_staging_folder_never_empties_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("x")
    (victim / "results.h5").write_bytes(b"someone's data")   # a name mexkit also uses
    out = tmp_path / "out.crop.h5"
    (tmp_path / "out.crop.h5.staging").symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        _store(out, "crop", _crop_like)
    assert sorted(p.name for p in victim.iterdir()) == ["results.h5", "thesis.tex"]
    assert not out.exists()


def test_foreign_staging_folder_is_neither_used_nor_emptied(tmp_path):
    out = tmp_path / "out.crop.h5"
    staging = tmp_path / "out.crop.h5.staging"
    staging.mkdir()
    (staging / "thesis.tex").write_text("x")
    with pytest.raises(StoreError, match="not made by mexkit"):
        _store(out, "crop", _crop_like)
    assert (staging / "thesis.tex").read_text() == "x"


def test_staging_folder_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to give a folder to another user")
    out = tmp_path / "out.crop.h5"
    staging = tmp_path / "out.crop.h5.staging"
    staging.mkdir()
    os.chown(staging, 4242, 4242)
    with pytest.raises(StoreError, match="another user"):
        _store(out, "crop", _crop_like)


def test_staging_folder_without_marker_is_never_touched(tmp_path):
    """Issue 30 item 2: a folder of the user's own .h5 files under the staging name is
    neither emptied nor used, even when it looks like an older version's staging folder."""
    from mexkit.io.store import write_staged_sample

    out = tmp_path / "out.crop.h5"
    staging = tmp_path / "out.crop.h5.staging"
    staging.mkdir()
    (staging / "mine.h5").write_bytes(b"my own HDF5 file, not a staged sample")
    write_staged_sample(staging, "set/s9/c9", "k" * 64,
                        {"frames": np.zeros((2, 4, 4), np.uint8)}, {})
    before = {p.name: p.read_bytes() for p in staging.iterdir()}
    with pytest.raises(StoreError, match="not made by mexkit"):
        _store(out, "crop", _crop_like)
    assert {p.name: p.read_bytes() for p in staging.iterdir()} == before
    assert not out.exists()


def test_staging_folder_killed_while_removed_is_cleaned(tmp_path):
    """A run killed while emptying its staging folder leaves it under a temporary name,
    with its marker; the next run removes it, and nothing marker-less."""
    out = tmp_path / "out.crop.h5"
    doomed = tmp_path / ".out.crop.h5.staging.tmp-1-abc"
    doomed.mkdir(mode=0o700)
    (doomed / "MEXKIT-STAGING").write_text("x")
    (doomed / "lock").write_text("")
    foreign = tmp_path / ".out.crop.h5.staging.tmp-2-def"
    foreign.mkdir()
    (foreign / "x.h5").write_bytes(b"someone's")
    _store(out, "crop", _crop_like)
    assert not doomed.exists()
    assert (foreign / "x.h5").read_bytes() == b"someone's"


def test_refused_run_leaves_no_staging_folder_or_lock(tmp_path):
    out = tmp_path / "out.h5"
    with pytest.raises(ParameterError):
        with StoreWriter(out, stage="crop", params={}):
            raise ParameterError("refused after the writer was opened")
    assert not (tmp_path / "out.h5.staging").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_leftover_store_temporaries_of_other_users_are_kept(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to give a file to another user")
    out = tmp_path / "out.h5"
    theirs = tmp_path / ".out.h5.tmp-1-abc"
    theirs.write_bytes(b"not ours")
    os.chown(theirs, 4242, 4242)
    _store(out, "crop", _crop_like)
    assert theirs.exists()


# -- item 2: a wrong-stage input never touches the output ---------------------------
@pytest.mark.parametrize("case", ["tim-on-flow", "strain-on-crop", "keyframes-on-rpca",
                                  "flow-on-flow"])
def test_wrong_stage_input_leaves_the_output_alone(tmp_path, case):
    from mexkit.pipeline.flow import run_flow, run_strain
    from mexkit.pipeline.temporal import run_keyframes, run_tim

    crop = _store(tmp_path / "x.crop.h5", "crop", _crop_like)
    flow = _store(tmp_path / "x.flow.h5", "flow", _flow_like, seed=1)
    rpca = _store(tmp_path / "x.rpca.h5", "rpca", _rpca_like, seed=2)
    out = tmp_path / "x.out.h5"
    good = {"tim-on-flow": lambda: run_tim(crop, out, n_frames=4, progress=False),
            "strain-on-crop": lambda: run_strain(flow, out, progress=False),
            "keyframes-on-rpca": lambda: run_keyframes(crop, out, method="uniform",
                                                       n_frames=3, progress=False),
            "flow-on-flow": lambda: run_flow(crop, out, method="farneback", progress=False)}
    bad = {"tim-on-flow": lambda: run_tim(flow, out, n_frames=4, progress=False),
           "strain-on-crop": lambda: run_strain(crop, out, progress=False),
           "keyframes-on-rpca": lambda: run_keyframes(rpca, out, method="uniform",
                                                      n_frames=3, progress=False),
           "flow-on-flow": lambda: run_flow(flow, out, method="farneback", progress=False)}
    assert good[case]().exit_code == 0
    before = out.read_bytes()
    with pytest.raises(ParameterError, match="cannot be the input"):
        bad[case]()
    assert out.read_bytes() == before
    assert not (tmp_path / "x.out.h5.staging").exists()


def test_mean_features_without_landmarks_refused_before_the_output(tmp_path):
    from mexkit.pipeline.flow import run_flow

    crop = _store(tmp_path / "x.crop.h5", "crop", _crop_like)     # frames, no landmarks
    with pytest.raises(ParameterError, match="'landmarks'"):
        run_flow(crop, tmp_path / "x.flow.h5", method="farneback", pairs="onset-apex",
                 features=["mean"], progress=False)
    assert not (tmp_path / "x.flow.h5").exists()
    assert not (tmp_path / "x.flow.h5.staging").exists()


def test_output_equal_to_input_is_refused(tmp_path):
    from mexkit.pipeline.temporal import run_tim

    crop = _store(tmp_path / "x.crop.h5", "crop", _crop_like)
    before = crop.read_bytes()
    with pytest.raises(ParameterError, match="is the input store itself"):
        run_tim(crop, crop, n_frames=4, progress=False)
    (tmp_path / "alias.h5").symlink_to(crop)
    with pytest.raises(ParameterError, match="is the input store itself"):
        run_tim(crop, tmp_path / "alias.h5", n_frames=4, progress=False)
    assert crop.read_bytes() == before


def test_default_names_keep_the_input_and_the_method(tmp_path):
    from mexkit.cli._common import default_output

    crop = _store(tmp_path / "x.crop.h5", "crop", _crop_like)
    direct = default_output(crop, "flow", "tvl1")
    kf = default_output(crop, "keyframes", "adaptive")
    kf.write_bytes(b"")
    via = default_output(kf, "flow", "tvl1")
    farneback = default_output(crop, "flow", "farneback")
    assert len({direct, via, farneback, crop}) == 4
    assert direct.name == "x.crop.flow-tvl1.h5"
    tim = _store(tmp_path / "y.tim.h5", "tim", _crop_like)
    assert default_output(tim, "tim", 32) != tim


def test_tim_cli_default_output_never_replaces_its_input(tmp_path):
    tim = _store(tmp_path / "y.tim.h5", "tim", _crop_like)
    before = tim.read_bytes()
    r = CliRunner().invoke(cli, ["-q", "tim", str(tim), "-n", "4"])
    assert r.exit_code == 0, r.output
    assert tim.read_bytes() == before
    assert r.stdout.strip().endswith("y.tim.tim-4.h5")


def test_replacing_a_store_made_with_other_parameters_needs_overwrite(tmp_path, caplog):
    """Issue 28, item 4: refused without --overwrite (naming what differs), and with it
    replaced with a warning saying what."""
    from mexkit.errors import ParameterError
    from mexkit.pipeline.parallel import configure
    from mexkit.pipeline.temporal import run_tim

    crop = _store(tmp_path / "x.crop.h5", "crop", _crop_like)
    out = tmp_path / "x.tim.h5"
    run_tim(crop, out, n_frames=4, progress=False)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        run_tim(crop, out, n_frames=4, progress=False)
    assert "other parameters" not in caplog.text
    with pytest.raises(ParameterError, match="n_frames: 4 -> 5.*--overwrite"):
        run_tim(crop, out, n_frames=5, progress=False)
    with caplog.at_level(logging.WARNING, logger="mexkit"), configure(overwrite=True):
        run_tim(crop, out, n_frames=5, progress=False)
    assert "replacing a store made with other parameters" in caplog.text
    assert "n_frames: 4 -> 5" in caplog.text


# -- item 8: decompression and fill-value bombs ------------------------------------
def _add_dataset(path, make):
    def act(fh):
        make(fh["samples"][quote_id("set/s0/c0")])
    _tamper(path, act)


def test_fill_value_bomb_is_refused_before_reading(tmp_path):
    path = _store(tmp_path / "bomb.crop.h5", "crop", _crop_like)
    _add_dataset(path, lambda g: g.create_dataset(
        "huge", shape=(2000, 1000, 1000), dtype=np.uint8, chunks=(1, 1000, 1000),
        compression="gzip"))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(StoreError, match="bomb"):
        open_store(path)
    problems = validate_store(path)
    assert len(problems) == 1 and "bomb" in problems[0]


def _gzip_zero_bomb(group, frames, side):
    ds = group.create_dataset("frames_bomb", shape=(frames, side, side), dtype=np.uint8,
                              chunks=(1, side, side), compression="gzip")
    blob = zlib.compress(bytes(side * side), 9)
    for i in range(frames):
        ds.id.write_direct_chunk((i, 0, 0), blob)


def test_gzip_bomb_of_the_issue_is_refused_and_flow_never_reads_it(tmp_path):
    from mexkit.pipeline.flow import run_flow

    path = _store(tmp_path / "bomb.crop.h5", "crop", _crop_like)
    _add_dataset(path, lambda g: _gzip_zero_bomb(g, 25, 8192))   # 1.6 GB of zeros
    assert path.stat().st_size < 4 << 20
    with pytest.raises(StoreError, match="values per frame"):
        open_store(path)
    out = tmp_path / "bomb.flow.h5"
    with pytest.raises(StoreError, match="bomb.crop.h5"):
        run_flow(path, out, method="farneback", progress=False)
    assert not out.exists() and not (tmp_path / "bomb.flow.h5.staging").exists()


def test_compression_ratio_limit_and_override(tmp_path):
    path = _store(tmp_path / "zeros.crop.h5", "crop", _crop_like)
    _add_dataset(path, lambda g: _gzip_zero_bomb(g, 64, 1024))   # 64 MiB of zeros
    with pytest.raises(StoreError, match="ratio above 100"):       # issue 30 item 10
        open_store(path)
    open_store(path, limits=StoreLimits(ratio_floor=256 << 20)).close()  # a higher floor
    tight = StoreLimits(ratio_floor=1 << 20)
    with pytest.raises(StoreError, match="ratio above 100"):
        open_store(path, limits=tight)
    open_store(path, limits=StoreLimits(ratio_floor=1 << 20, max_ratio=5000)).close()
    r = CliRunner().invoke(cli, ["validate", "--limits", "ratio_floor=1e6", str(path)])
    assert r.exit_code == 1 and "bomb" in r.output
    assert StoreLimits.parse("max_ratio=7").max_ratio == 7
    with pytest.raises(StoreError, match="NAME=VALUE"):
        StoreLimits.parse("no_such_limit=3")


def test_validate_reads_arrays_in_bounded_blocks(tmp_path, monkeypatch):
    """validate's data hash equals hash_arrays' while never reading a whole big array."""
    from mexkit.io.store import read as store_mod

    path = _store(tmp_path / "a.crop.h5", "crop", _crop_like)
    seen = []
    real = store_mod._hash_dataset

    def small_blocks(h, name, ds, block_bytes=0):
        seen.append(name)
        return real(h, name, ds, block_bytes=300)     # 1-2 frames per read

    monkeypatch.setattr(store_mod, "_hash_dataset", small_blocks)
    assert validate_store(path) == []
    assert seen


# -- item 10: every attribute is covered by the content hash ------------------------
@pytest.mark.parametrize("where", ["label", "subject", "params", "failures", "upstream"])
def test_flipped_text_attribute_fails_validation(tmp_path, where):
    path = _store(tmp_path / "a.crop.h5", "crop", _crop_like)
    assert validate_store(path) == []

    def act(fh):
        if where in ("label", "subject"):
            g = fh["samples"][quote_id("set/s1/c1")]
            value = g.attrs[where]
            g.attrs[where] = value[:-1] + chr(ord(value[-1]) ^ 1)
        else:
            value = json.loads(fh.attrs[where])
            if isinstance(value, dict):
                value["x"] = 1
            else:
                value.append(1)
            fh.attrs[where] = json.dumps(value, sort_keys=True, separators=(",", ":"))

    _tamper(path, act)
    with open_store(path):   # the file checksum was recomputed: it opens
        pass
    problems = validate_store(path)
    assert problems, where
    assert all("hash" in p for p in problems)


def test_store_with_hash_version_1_still_validates():
    """A store written before attributes entered the content hash (archived)."""
    from pathlib import Path

    archived = Path(__file__).parents[1] / "data" / "store_hash_v1.h5"
    with open_store(archived) as s:
        assert "hash_version" not in s.meta and len(s) == 2
    assert validate_store(archived) == []


def test_old_store_as_existing_output_is_reused_into_a_version_2_store(tmp_path):
    import shutil
    from pathlib import Path

    out = tmp_path / "old.crop.h5"
    shutil.copyfile(Path(__file__).parents[1] / "data" / "store_hash_v1.h5", out)
    tasks = [Task(f"arch/s{i}/c{i}", cache_key("crop", 1, {}, str(i)), {}, i) for i in range(2)]

    def never(task):
        raise AssertionError("a sample of the old store was recomputed")

    res = run_stage(tasks, never, output=out, stage="crop", params={"size": 8}, progress=False)
    assert res.skipped == 2 and res.computed == 0
    with open_store(out) as s:
        assert s.meta["hash_version"] == 2 and s["arch/s1/c1"].attrs["aus"] == [4, 7]
    assert validate_store(out) == []


# -- item 11: inspect opens nothing it was not asked to ---------------------------
def test_inspect_opens_no_upstream_path_unless_followed(tmp_path, monkeypatch):
    import mexkit.pipeline.inspect as inspect_mod

    up_dir = tmp_path / "up"
    up_dir.mkdir()
    upstream = _store(up_dir / "a.crop.h5", "crop", _crop_like)
    with open_store(upstream) as u:
        entry = {"stage": "crop", "store_id": u.store_id, "content_hash": u.content_hash,
                 "path": str(upstream)}
    path = tmp_path / "b.tim.h5"
    tasks = [Task("a", cache_key("tim", 1, {}, "a"), {}, 1)]
    run_stage(tasks, _crop_like, output=path, stage="tim", params={}, progress=False,
              upstream=[entry, {"stage": "x", "path": "/etc/passwd"},
                        {"stage": "x", "path": "/proc/self/environ"}])
    opened = []
    real = inspect_mod.open_store

    def spy(p, *a, **kw):
        opened.append(str(p))
        return real(p, *a, **kw)

    monkeypatch.setattr(inspect_mod, "open_store", spy)
    runner = CliRunner()
    r = runner.invoke(cli, ["inspect", str(path)])
    assert r.exit_code == 0, r.output
    assert opened == [str(path)] and "/etc/passwd" in r.output
    opened.clear()
    r = runner.invoke(cli, ["inspect", "--json", "--follow", str(up_dir), str(path)])
    assert r.exit_code == 0, r.output
    assert opened == [str(path), str(upstream.resolve())]
    prov = json.loads(r.stdout)["provenance"]
    assert prov[0]["found"] is True and prov[1]["followed"] is False
    opened.clear()
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = runner.invoke(cli, ["inspect", "--follow", str(other), str(path)])
    assert opened == [str(path)] and "not opened" in r.output


def test_inspect_does_not_follow_a_link_out_of_the_named_folder(tmp_path, monkeypatch):
    import mexkit.pipeline.inspect as inspect_mod

    outside = _store(tmp_path / "outside.crop.h5", "crop", _crop_like)
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "link.h5").symlink_to(outside)
    path = tmp_path / "b.tim.h5"
    run_stage([Task("a", "k", {}, 1)], _crop_like, output=path, stage="tim", params={},
              progress=False, upstream=[{"stage": "crop", "path": str(inside / "link.h5")}])
    opened = []
    real = inspect_mod.open_store
    monkeypatch.setattr(inspect_mod, "open_store",
                        lambda p, *a, **kw: opened.append(str(p)) or real(p, *a, **kw))
    r = CliRunner().invoke(cli, ["inspect", "--follow", str(inside), str(path)])
    assert r.exit_code == 0, r.output
    assert opened == [str(path)]


# -- item 13: smaller ones ----------------------------------------------------------
def test_group_nested_in_a_sample_is_refused_and_inspect_does_not_crash(tmp_path):
    path = _store(tmp_path / "a.crop.h5", "crop", _crop_like)
    _add_dataset(path, lambda g: g.create_group("nested").create_dataset(
        "x", data=np.zeros(3)))
    with pytest.raises(StoreError, match="group inside sample"):
        open_store(path)
    r = CliRunner().invoke(cli, ["inspect", str(path)])
    assert r.exit_code != 0 and "group inside sample" in r.output
    assert not isinstance(r.exception, AttributeError)


def test_deeply_nested_json_attribute_reports_its_real_cause(tmp_path):
    path = _store(tmp_path / "a.crop.h5", "crop", _crop_like)

    def act(fh):
        g = fh["samples"][quote_id("set/s0/c0")]
        g.attrs["aus"] = "json:" + "[" * 200_000 + "]" * 200_000

    _tamper(path, act)
    problems = validate_store(path)
    # the real cause comes first (the content hash then also differs: it was tampered)
    assert problems and "nested 200000 levels deep" in problems[0], problems
    assert not any("RecursionError" in p for p in problems), problems
    with open_store(path) as s, pytest.raises(StoreError, match="nested"):
        s["set/s0/c0"]


def test_thousands_of_attributes_on_a_sample_are_refused(tmp_path):
    path = _store(tmp_path / "a.crop.h5", "crop", _crop_like)

    def act(fh):
        g = fh["samples"][quote_id("set/s0/c0")]
        for i in range(3000):
            g.attrs[f"a{i}"] = i

    _tamper(path, act)
    with pytest.raises(StoreError, match="carries 30.. attributes"):
        open_store(path)


# -- issue 11 item 4: input stores are opened per run -----------------------------
def test_input_rewritten_between_runs_in_one_process_is_read_anew(tmp_path):
    from mexkit.pipeline.temporal import run_tim

    crop = tmp_path / "x.crop.h5"
    _store(crop, "crop", _crop_like, seed=0)
    run_tim(crop, tmp_path / "a.tim.h5", n_frames=6, progress=False)
    fresh = tmp_path / "fresh.crop.h5"
    _store(fresh, "crop", _crop_like, seed=5)
    os.replace(fresh, crop)                       # same path, new content and cache keys
    run_tim(crop, tmp_path / "b.tim.h5", n_frames=6, progress=False)
    from mexkit.pipeline import stages

    assert stages._OPEN == {}                       # closed when the run ended
    with open_store(crop) as c, open_store(tmp_path / "b.tim.h5") as b:
        for sid in c.sample_ids:
            np.testing.assert_array_equal(b[sid]["frames"], c[sid]["frames"])

