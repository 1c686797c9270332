"""The native TV-L1 engine: same flow and stopping rule as the numpy engine, built once and
loaded from its build (never compiled, numba never imported) in a fresh process."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mexkit.errors import ParameterError
from mexkit.motion import _tvl1_native as native
from mexkit.motion import flow_endpoint_error, tvl1_flow
from mexkit.motion import tvl1 as tvl1_module

ROOT = Path(__file__).resolve().parents[2]


def _photo_pairs(n: int, size: int = 96, seed: int = 5):
    """Windows of two real photographs and the same photograph at x + flow(x)."""
    from scipy import ndimage
    from skimage import color, data, transform

    rng = np.random.default_rng(seed)
    photos = [color.rgb2gray(data.astronaut()), data.camera() / 255.0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    refs, movs, flows = [], [], []
    for i in range(n):
        image = photos[i % 2]
        top, left = rng.integers(0, 200, 2)
        photo = transform.resize(image[top:top + 300, left:left + 300],
                                 (size + 24, size + 24), anti_aliasing=True)
        tx, ty = rng.uniform(0.3, 1.5, 2) * rng.choice([-1.0, 1.0], 2)
        grow = rng.uniform(-0.015, 0.015)
        u = tx + grow * (xx - c)
        v = ty + grow * (yy - c)
        refs.append(np.clip(ndimage.map_coordinates(photo, [yy + v + 12, xx + u + 12],
                                                    order=3, mode="reflect"), 0, 1))
        movs.append(photo[12:12 + size, 12:12 + size])
        flows.append(np.stack([u, v]))
    return (np.asarray(refs, np.float32), np.asarray(movs, np.float32),
            np.asarray(flows, np.float32))


@pytest.fixture(scope="module")
def pairs():
    return _photo_pairs(4)


@pytest.fixture(scope="session")
def native_build(tmp_path_factory):
    """A folder holding a native build for this machine (made here when there is none)."""
    native._reset()
    kernel = native.load()
    native._reset()
    if kernel is not None:
        return kernel.path.parent
    folder = tmp_path_factory.mktemp("native")
    native.build(folder)
    return folder


@pytest.fixture()
def use_build(native_build, monkeypatch):
    monkeypatch.setenv(native.DIR_ENV, str(native_build))
    native._reset()
    yield native_build
    native._reset()


class _CountingNumpy:
    """numpy, counting ``einsum`` calls: the numpy engine makes one per iteration."""

    def __init__(self) -> None:
        self.count = 0

    def __getattr__(self, name):
        return getattr(np, name)

    def einsum(self, *args, **kwargs):
        self.count += 1
        return np.einsum(*args, **kwargs)


def test_same_flow_and_iterations_as_the_numpy_engine(pairs, use_build, monkeypatch):
    ref, mov, truth = pairs
    kernel = native.load()
    assert kernel is not None
    prm = tvl1_module.make_params()
    sizes = tvl1_module.pyramid_sizes(*ref.shape[1:])
    counter = _CountingNumpy()
    monkeypatch.setattr(tvl1_module, "np", counter)
    distances = []
    for i in range(len(ref)):
        counter.count = 0
        reference = tvl1_module._solve_scaled(ref[i], mov[i], prm, np.dtype(np.float32))
        flow, iterations = kernel.solve(ref[i], mov[i], prm, sizes)
        # the same stopping rule: a pair runs the same iterations (a change of exactly the
        # tolerance could tip one warping by an iteration through rounding)
        assert abs(iterations - counter.count) <= 2, (i, iterations, counter.count)
        distances.append(flow_endpoint_error(flow, reference))
    monkeypatch.undo()
    # the same flow up to float rounding: most pairs agree to 1e-4 px; in a patch with
    # little texture rounding can move the solution by a few hundredths there (as
    # between the numpy and the torch engine), a few thousandths on average
    assert np.median(distances) < 1e-4, distances
    assert max(distances) < 0.01, distances
    ours = tvl1_flow(ref, mov, engine="native")
    numpy_engine = tvl1_flow(ref, mov, engine="numpy")
    assert flow_endpoint_error(ours, truth) <= flow_endpoint_error(numpy_engine, truth) + 1e-3


def test_replicated_border_follows_the_numpy_engine(pairs, use_build):
    """Coarse-to-fine TV-L1 can carry a rounding difference at a coarse level into a
    slightly different solution in a patch with little texture (the numpy and torch
    engines differ so on some pairs too): most pairs agree to 1e-4 px, none by more
    than 0.02 px on average, and the error against the truth is the same."""
    ref, mov, truth = pairs
    ours = tvl1_flow(ref, mov, engine="native", border="replicate")
    theirs = tvl1_flow(ref, mov, engine="numpy", border="replicate")
    distances = [flow_endpoint_error(a, b) for a, b in zip(ours, theirs, strict=True)]
    assert np.median(distances) < 1e-3 and max(distances) < 0.02, distances
    assert abs(flow_endpoint_error(ours, truth) - flow_endpoint_error(theirs, truth)) < 2e-3


def test_zero_border_stays_within_the_engines_spread(pairs, use_build):
    """With zeros read outside the frame (OpenCV's border) the false edges make the flow
    sensitive to where the bicubic taps are sampled: the numpy engine (OpenCV's remap,
    1/32 pixel) and the torch engine (exact positions) differ by about 0.01 px on most
    of these pairs. The kernel (exact positions) departs from the numpy engine by no
    more than twice that, at the same error against the truth."""
    ref, mov, truth = pairs
    ours = tvl1_flow(ref, mov, engine="native", border="zero")
    numpy_engine = tvl1_flow(ref, mov, engine="numpy", border="zero")
    torch_engine = tvl1_flow(ref, mov, engine="torch", device="cpu", compile=False,
                             border="zero")
    spread = flow_endpoint_error(numpy_engine, torch_engine)
    assert flow_endpoint_error(ours, numpy_engine) <= 2 * spread + 1e-3
    assert (abs(flow_endpoint_error(ours, truth) - flow_endpoint_error(numpy_engine, truth))
            < 2e-3)


@pytest.mark.slow  # numba compiles the median in this process (several s); the default
# suite checks it through the whole flow (test_same_flow_and_iterations_as_the_numpy_engine)
def test_median_filter_equals_opencv(rng):
    import cv2

    from mexkit.motion import _tvl1_kernel as kernel

    for h, w in ((17, 23), (5, 5), (3, 40), (40, 3)):
        plane = rng.normal(size=(h, w)).astype(np.float32)
        plane[:, ::3] = np.round(plane[:, ::3])  # ties
        for k in (3, 5):
            got = plane.ravel().copy()
            cols = np.empty(5 * (w + 4), np.float32)
            kernel._median(got, h, w, k, cols, np.empty(h * w, np.float32))
            np.testing.assert_array_equal(got.reshape(h, w), cv2.medianBlur(plane, k))


@pytest.mark.parametrize("k", [3, 5])
def test_median_network_on_sorted_columns(rng, k):
    from mexkit.motion._tvl1_kernel import median_network

    ops, target = median_network(k)
    for _ in range(200):
        window = np.sort(rng.integers(0, 4, size=(k, k)).astype(float)
                         + rng.normal(scale=0.1, size=(k, k)) * rng.integers(0, 2), axis=0)
        v = list(window.T.ravel())  # column by column, each column sorted
        for a, b, need_min, need_max in ops:
            lo, hi = min(v[a], v[b]), max(v[a], v[b])
            if need_min:
                v[a] = lo
            if need_max:
                v[b] = hi
        assert v[target] == np.median(window)
    # per output pixel, with the column sort (3 or 9 comparators per column, shared by
    # the k windows of a row that hold the column): fewer min/max operations than
    # OpenCV's networks on whole windows (19 and 99 comparators, two operations each)
    per_pixel = sum(a + b for *_, a, b in ops) + 2 * (3 if k == 3 else 9)
    assert per_pixel < 2 * (19 if k == 3 else 99)


def test_workspace_size_is_the_kernels(use_build):
    from mexkit.motion import _tvl1_kernel as kernel
    from mexkit.motion.pyramid import pyramid_sizes

    for h, w in ((128, 128), (20, 31), (224, 160)):
        sizes = pyramid_sizes(h, w)
        assert native._workspace_size(h, w, sizes) == kernel.workspace_size(h, w, sizes)


def test_a_failing_pair_stops_the_threads(pairs, use_build, monkeypatch):
    ref, mov, _ = pairs
    kernel = native.load()
    calls = []

    def broken(*args):
        calls.append(1)
        raise FloatingPointError("boom")

    monkeypatch.setattr(kernel, "solve", broken)
    with pytest.raises(FloatingPointError, match="boom"):
        tvl1_flow(ref, mov, threads=2, engine="native")
    assert len(calls) <= 2


def test_settings_the_kernel_does_not_run(pairs, use_build):
    ref, mov, _ = pairs
    with pytest.raises(ParameterError, match="gamma"):
        tvl1_flow(ref[:1], mov[:1], engine="native", gamma=0.5)
    with pytest.raises(ParameterError, match="float64"):
        tvl1_flow(ref[:1], mov[:1], engine="native", dtype="float64")
    # "auto" runs them on the numpy engine
    auto = tvl1_flow(ref[:1], mov[:1], gamma=0.5, nscales=2, warps=1)
    numpy_engine = tvl1_flow(ref[:1], mov[:1], gamma=0.5, nscales=2, warps=1, engine="numpy")
    np.testing.assert_array_equal(auto, numpy_engine)


def _fresh(code: str, env: dict[str, str], cwd: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_RUN_ONE = """
    import json, sys
    import numpy as np
    from mexkit.motion import tvl1_flow
    from mexkit.motion import _tvl1_native as native
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (1, 48, 48)).astype(np.float32)
    flow = tvl1_flow(a, np.roll(a, 1, axis=2), device="cpu")
    print(json.dumps(dict(native.status(), shape=list(flow.shape))))
"""


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEXKIT_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    return env


def test_a_fresh_process_loads_the_build_and_compiles_nothing(native_build, tmp_path):
    """The cold path: a new process with an empty home finds the build made at install
    time (or the one given), links it, and never imports numba (so compiles nothing)."""
    env = _clean_env(tmp_path)
    if native_build.resolve() != native._PACKAGE_DIR.resolve():
        env[native.DIR_ENV] = str(native_build)
    status = _fresh(_RUN_ONE, env, tmp_path)
    assert status["loaded_from"] is not None
    assert Path(status["loaded_from"]).parent.resolve() == native_build.resolve()
    assert status["numba_imported"] is False
    assert status["background_build"] is None
    assert status["shape"] == [1, 2, 48, 48]


def test_a_read_only_folder_serves_the_build(native_build, tmp_path):
    """A read-only install (package folder made at install time, not writable later)."""
    folder = tmp_path / "ro"
    shutil.copytree(native_build, folder, ignore=shutil.ignore_patterns(".*", "*.building"))
    for p in folder.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        env = dict(_clean_env(tmp_path), **{native.DIR_ENV: str(folder)})
        status = _fresh(_RUN_ONE, env, tmp_path)
        assert Path(status["loaded_from"]).parent == folder
        assert status["numba_imported"] is False
    finally:
        folder.chmod(stat.S_IRWXU)


def test_no_build_runs_numpy_and_starts_one_in_the_background(pairs, tmp_path, monkeypatch):
    ref, mov, _ = pairs
    monkeypatch.setenv(native.DIR_ENV, str(tmp_path / "empty"))
    native._reset()
    started = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            started.append(args)

    monkeypatch.setattr(native.subprocess, "Popen", FakePopen)
    try:
        flow = tvl1_flow(ref[:1], mov[:1], threads=1)
        np.testing.assert_array_equal(flow, tvl1_flow(ref[:1], mov[:1], threads=1,
                                                      engine="numpy"))
        assert native.status()["loaded_from"] is None
        assert len(started) == 1 and "build_or_record(" in started[0][-1]
        # one build at a time per machine: a second process finds the lock
        assert native.build_in_background() is False
        assert len(list((tmp_path / "empty").glob("*.building"))) == 1
    finally:
        native._reset()


def test_a_failed_build_is_recorded_and_not_started_again(pairs, tmp_path, monkeypatch,
                                                          capsys, caplog):
    """A build that fails says why and where, and later runs warn, use the numpy engine and
    start no build of their own (each would fail alike, tens of seconds of CPU each)."""
    ref, mov, _ = pairs
    folder = tmp_path / "builds"
    monkeypatch.setenv(native.DIR_ENV, str(folder))
    native._reset()

    def failing_build(folder=None):
        raise RuntimeError("LLVM ERROR: no target for this CPU")

    started = []
    monkeypatch.setattr(native, "build", failing_build)
    monkeypatch.setattr(native.subprocess, "Popen", lambda *a, **k: started.append(a))
    try:
        assert native.main(["--if-missing"]) == 1
        err = capsys.readouterr().err
        assert "did not build" in err and "no target for this CPU" in err
        assert "numpy engine" in err
        record = native.failed_build()
        assert record is not None and record.parent == folder
        assert str(record) in err and "no target for this CPU" in record.read_text()
        native._reset()
        with caplog.at_level("WARNING", logger="mexkit"):
            flow = tvl1_flow(ref[:1], mov[:1], threads=1)
        np.testing.assert_array_equal(flow, tvl1_flow(ref[:1], mov[:1], threads=1,
                                                      engine="numpy"))
        assert started == []
        assert native.status()["background_build"] is None
        assert "failed to build" in caplog.text and str(record) in caplog.text
    finally:
        native._reset()


def test_check_says_whether_a_build_loads(native_build, tmp_path, monkeypatch, capsys):
    """``--check`` (CI, after bin/setup) compiles nothing and fails without a build."""
    monkeypatch.setenv(native.DIR_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(native, "build", lambda folder=None: pytest.fail("compiled"))
    native._reset()
    try:
        assert native.main(["--check"]) == 1
        assert "not available: no build for this machine" in capsys.readouterr().err
        monkeypatch.setenv(native.DIR_ENV, str(native_build))
        native._reset()
        assert native.main(["--check"]) == 0
        assert capsys.readouterr().out.strip().startswith(str(native_build))
    finally:
        native._reset()


def test_switched_off(pairs, monkeypatch):
    ref, mov, _ = pairs
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    native._reset()
    try:
        with pytest.raises(ParameterError, match="switched off"):
            tvl1_flow(ref[:1], mov[:1], engine="native")
        assert native.build_in_background() is False
    finally:
        native._reset()


def test_a_foreign_build_is_refused(native_build, tmp_path, monkeypatch):
    """A build for another CPU or another kernel source is not loaded."""
    folder = tmp_path / "foreign"
    shutil.copytree(native_build, folder, ignore=shutil.ignore_patterns(".*", "*.building"))
    for desc in folder.glob("*.json"):
        data = json.loads(desc.read_text())
        data["fingerprint"]["cpu"] = "some-other-cpu"
        desc.write_text(json.dumps(data))
    monkeypatch.setenv(native.DIR_ENV, str(folder))
    native._reset()
    try:
        assert native.load() is None
    finally:
        native._reset()


@pytest.mark.slow
def test_a_background_build_is_found_by_the_next_process(tmp_path):
    env = dict(_clean_env(tmp_path), **{native.DIR_ENV: str(tmp_path / "builds")})
    first = _fresh(_RUN_ONE, env, tmp_path)
    assert first["loaded_from"] is None and first["background_build"]
    import time

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list((tmp_path / "builds").glob("*.json")):
        time.sleep(1)
    while list((tmp_path / "builds").glob("*.building")) and time.monotonic() < deadline:
        time.sleep(1)
    second = _fresh(_RUN_ONE, env, tmp_path)
    assert second["loaded_from"] is not None and second["numba_imported"] is False
