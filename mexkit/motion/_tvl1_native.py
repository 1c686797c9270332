"""The native TV-L1 kernel: built once per machine with numba, loaded with llvmlite alone.

:mod:`mexkit.motion._tvl1_kernel` holds the kernel's source. :func:`build`
compiles it with numba (Python to LLVM IR) and LLVM (IR to machine code for
this CPU: its model and instruction set extensions) and writes the machine
code (an object file) and a description of what it was built from to a cache
folder. :func:`load` finds a build that matches this machine and this
mexkit, links it into the process with llvmlite's MCJIT (about 40 ms, no
numba import, no compiling) and returns a :class:`Kernel`.

Why not numba's own on-disk cache: loading a function from it first imports
numba and fills its typing and lowering registries, about 0.5 s of CPU in
every process (measured: import 0.18 s, registries 0.30 s), which is more
than the whole flow of 64 pairs; the cache also lives next to the source or
in the user's home, and a read-only install cannot hold it.

Where builds are kept (searched in this order, the first writable one is
written by :func:`build`):

* ``MEXKIT_TVL1_NATIVE_DIR`` when set (then only there);
* ``mexkit/motion/_native/`` inside the installed package: ``bin/setup``
  builds there at install time, so a read-only install (a system or
  container image) can carry the build for the machine it was made on;
* ``$XDG_CACHE_HOME/mexkit/tvl1-native`` (default ``~/.cache/...``): where a
  machine that has no matching build (a fresh install from a wheel, another
  CPU model) gets one, built in a background process the first time it is
  missing (:func:`build_in_background`) while that run uses the numpy engine.

A build that fails (in the background or in ``bin/setup``) leaves its
traceback in ``tvl1-<key>.failed`` beside the builds; runs then warn once,
use the numpy engine and start no other build, until an explicit build
(``python -m mexkit.motion._tvl1_native``) succeeds.

A build matches when the kernel source, numba and llvmlite versions, the
Python version, the target triple, the CPU model and its feature flags are
the same (all part of the file name's hash and checked again on load).
``MEXKIT_TVL1_NATIVE=0`` switches the native engine off.

A build is machine code that runs in the process: its folders deserve the
trust of the installed code itself (the package folder is the install's; the
user folder is the user's own; a folder named by ``MEXKIT_TVL1_NATIVE_DIR``
shared with others is as trusted as they are).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("mexkit")

__all__ = ["Kernel", "build", "build_in_background", "build_or_record", "cache_dirs", "enabled",
           "failed_build", "load", "main", "status", "NATIVE_ENV", "DIR_ENV"]

#: set to 0 to switch the native engine off (the numpy engine runs instead)
NATIVE_ENV = "MEXKIT_TVL1_NATIVE"
#: a folder to keep and look for builds in, instead of the package and user folders
DIR_ENV = "MEXKIT_TVL1_NATIVE_DIR"

_SOURCE = Path(__file__).with_name("_tvl1_kernel.py")
_PACKAGE_DIR = Path(__file__).with_name("_native")
_FORMAT = 1  # of the description file
# a background build older than this is taken as dead (its lock is ignored)
_BUILD_STALE_S = 900.0

_lock = threading.Lock()
_state: dict[str, Any] = {"kernel": None, "tried": False, "error": None, "background": None,
                          "attempted": False}


def enabled() -> bool:
    """Whether the native engine may be used (``MEXKIT_TVL1_NATIVE`` is not 0/off)."""
    value = os.environ.get(NATIVE_ENV, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def cache_dirs() -> list[Path]:
    """Folders searched for builds, in order (see the module docstring)."""
    override = os.environ.get(DIR_ENV)
    if override:
        return [Path(override)]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [_PACKAGE_DIR, Path(base) / "mexkit" / "tvl1-native"]


def _version(dist: str) -> str:
    """The installed version of ``dist`` (a package of the same name), or "none".

    Read from the name of its ``*.dist-info`` folder beside the package, as
    pip installs it; ``importlib.metadata`` only where that is not found (its
    import and its search of every path entry cost about 20 ms of a start-up
    that is about 0.1 s).
    """
    from importlib.util import find_spec  # start-up: only when the native engine is asked

    try:
        spec = find_spec(dist)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "none"
    if spec.origin:
        site = Path(spec.origin).parent.parent
        found = [p.name[len(dist) + 1:-len(".dist-info")]
                 for p in site.glob(f"{dist}-*.dist-info") if (p / "METADATA").is_file()]
        if len(found) == 1:
            return found[0]
    from importlib import metadata  # start-up: rarely needed (see above)

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def _fingerprint() -> dict[str, Any]:
    """What a build depends on: kernel source, compilers, Python, this CPU."""
    import llvmlite.binding as llvm  # start-up: llvmlite, only when the native engine is used

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return {
        "format": _FORMAT,
        "source_sha256": hashlib.sha256(_SOURCE.read_bytes()).hexdigest(),
        "numba": _version("numba"),
        "llvmlite": _version("llvmlite"),
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "triple": llvm.get_process_triple(),
        "cpu": llvm.get_host_cpu_name(),
        "features": llvm.get_host_cpu_features().flatten(),
    }


def _key(fingerprint: dict[str, Any]) -> str:
    text = json.dumps(fingerprint, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _paths(folder: Path, key: str) -> tuple[Path, Path]:
    return folder / f"tvl1-{key}.o", folder / f"tvl1-{key}.json"


def _failure_path(folder: Path, key: str) -> Path:
    """Where a failed build of this kernel for this machine is recorded (its traceback)."""
    return folder / f"tvl1-{key}.failed"


def failed_build() -> Path | None:
    """The record of a failed build for this machine and kernel source, or None.

    While one exists, :func:`build_in_background` starts no build (each
    would fail the same way and cost tens of seconds of CPU); an explicit
    build (``bin/setup``, ``python -m mexkit.motion._tvl1_native``) tries
    again and removes it when it succeeds.
    """
    try:
        key = _key(_fingerprint())
    except ImportError:
        return None
    for folder in cache_dirs():
        path = _failure_path(folder, key)
        if path.is_file():
            return path
    return None


def _record_failure(folder: Path, exc: BaseException) -> Path | None:
    """Write the traceback of a failed build beside the builds; returns its path."""
    import traceback  # rare: only a failed build

    try:
        path = _failure_path(folder, _key(_fingerprint()))
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} the native TV-L1 kernel did "
                        f"not build:\n" + "".join(traceback.format_exception(exc)))
        return path
    except (OSError, ImportError):
        return None


def _first_line(path: Path) -> str:
    """The error line of a recorded failure (the traceback's last line)."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return "?"
    return lines[-1].strip() if lines else "?"


class Kernel:
    """The loaded native kernel: :meth:`solve` runs one pair (see :mod:`._tvl1_kernel`)."""

    def __init__(self, function: Any, engine: Any, path: Path, fields: tuple[tuple[str, ...],
                                                                               tuple[str, ...]],
                 border_codes: dict[str, int], workspace: Any) -> None:
        self._function = function
        self._engine = engine  # keeps the machine code alive
        self.path = path
        self._int_fields, self._real_fields = fields
        self._borders = border_codes
        self._workspace_size = workspace
        self._local = threading.local()

    def supports(self, prm: Any, dtype: np.dtype) -> bool:
        """Whether these parameters run natively (float32, no illumination term)."""
        return dtype == np.float32 and prm.gamma == 0

    def _work(self, size: int) -> np.ndarray:
        work = getattr(self._local, "work", None)
        if work is None or work.size < size:
            work = self._local.work = np.empty(size, np.float32)
        return work

    def solve(self, reference: np.ndarray, moving: np.ndarray, prm: Any,
              sizes: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
        """Flow (2, H, W) float32 of one pair of (H, W) frames in [0, 1], and its iterations.

        ``prm`` is a :class:`mexkit.motion.tvl1.TVL1Params` (``gamma`` 0),
        ``sizes`` the pyramid levels (finest first). Runs in the calling
        thread without the interpreter lock; each thread keeps its own
        workspace, reused from pair to pair.
        """
        h, w = reference.shape
        ref = np.ascontiguousarray(reference, dtype=np.float32)
        mov = np.ascontiguousarray(moving, dtype=np.float32)
        ints = np.array([h, w, prm.warps, prm.outer_iterations, prm.inner_iterations,
                         prm.median_filtering, self._borders[prm.border], len(sizes)]
                        + [v for size in sizes for v in size], dtype=np.int64)
        reals = np.array([getattr(prm, name) for name in self._real_fields], dtype=np.float64)
        size = self._workspace_size(h, w, sizes)
        work = self._work(size)
        out = np.empty((2, h, w), np.float32)
        iterations = self._function(ref.ctypes.data, mov.ctypes.data, out.ctypes.data,
                                    work.ctypes.data, size, ints.ctypes.data, ints.size,
                                    reals.ctypes.data)
        return out, int(iterations)


def _workspace_size(height: int, width: int, sizes: list[tuple[int, int]]) -> int:
    # the formula of _tvl1_kernel.workspace_size (kept here: that module imports numba)
    n = height * width
    pyramid = sum(h * w for h, w in sizes)
    return 2 * pyramid + 16 * n + 8 * (width + 4)


_STUBS: list[Any] = []  # ctypes callbacks kept alive for the process


def _error_stub() -> None:  # pragma: no cover - only on a kernel error path
    os.write(2, b"mexkit: the native TV-L1 kernel hit an internal error\n")
    os.abort()


def _link(obj: bytes, description: dict[str, Any]) -> tuple[Any, Any]:
    """Link the object code into this process; returns (ctypes function, engine)."""
    import llvmlite.binding as llvm  # start-up: llvmlite, only when the native engine is used

    if not _STUBS:
        # symbols of numba's runtime that the entry's error path refers to; the
        # kernel allocates nothing and raises nothing, so they are never called
        stub = ctypes.CFUNCTYPE(None)(_error_stub)
        _STUBS.append(stub)
        address = ctypes.cast(stub, ctypes.c_void_p).value
        for name in description["stubbed_symbols"]:
            llvm.add_symbol(name, address)
    target = llvm.Target.from_triple(description["fingerprint"]["triple"])
    machine = target.create_target_machine(cpu=description["fingerprint"]["cpu"],
                                           features=description["fingerprint"]["features"],
                                           opt=3, reloc="static", codemodel="jitdefault")
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    address = engine.get_function_address(description["symbol"])
    if not address:
        raise OSError(f"symbol {description['symbol']!r} not found in the native TV-L1 build")
    prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                 ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
    return prototype(address), engine


def _find(fingerprint: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    key = _key(fingerprint)
    for folder in cache_dirs():
        obj_path, desc_path = _paths(folder, key)
        try:
            description = json.loads(desc_path.read_text())
        except (OSError, ValueError):
            continue
        if description.get("fingerprint") != fingerprint or not obj_path.is_file():
            continue
        return obj_path, description
    return None


def load() -> Kernel | None:
    """The native kernel for this machine, or None (not built here yet, or unusable).

    The first call in a process looks for a matching build and links it;
    later calls return the same kernel (or None) at once. Never compiles.
    """
    with _lock:
        if _state["tried"]:
            return _state["kernel"]
        _state["tried"] = True
        if not enabled():
            return None
        try:
            fingerprint = _fingerprint()
            found = _find(fingerprint)
            if found is None:
                return None
            obj_path, description = found
            function, engine = _link(obj_path.read_bytes(), description)
        except ImportError as exc:  # llvmlite missing: numba is not installed
            _state["error"] = f"llvmlite is not installed ({exc})"
            return None
        except Exception as exc:  # a broken or foreign build: the numpy engine runs
            _state["error"] = repr(exc)
            logger.warning("TV-L1: the native kernel could not be loaded (%s); the numpy "
                           "engine runs instead", exc)
            return None
        fields = (tuple(description["int_fields"]), tuple(description["real_fields"]))
        _state["kernel"] = Kernel(function, engine, obj_path, fields,
                                  description["border_codes"], _workspace_size)
        logger.debug("TV-L1: native kernel loaded from %s", obj_path)
        return _state["kernel"]


def status() -> dict[str, Any]:
    """What :func:`load` found in this process (for tests and diagnostics)."""
    kernel = _state["kernel"]
    return {"tried": _state["tried"], "loaded_from": str(kernel.path) if kernel else None,
            "error": _state["error"], "numba_imported": "numba" in sys.modules,
            "background_build": _state["background"]}


def _reset() -> None:
    """Forget what :func:`load` found (tests)."""
    with _lock:
        _state.update({"kernel": None, "tried": False, "error": None, "background": None,
                       "attempted": False})


def _writable_dir() -> Path:
    for folder in cache_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            return folder
        except OSError:
            continue
    raise OSError("no writable folder for the native TV-L1 kernel: " +
                  ", ".join(str(d) for d in cache_dirs()))


def _vectorizer_options() -> None:
    """Let LLVM's loop vectorizer check more pairs of arrays for overlap at run time.

    The kernel's loops read and write many rows of different arrays; LLVM
    cannot prove that they do not overlap and, past 8 run-time checks by
    default, leaves such a loop scalar (the warping's loop ran at half the
    speed). Set once per process, before numba compiles.
    """
    import llvmlite.binding as llvm  # start-up: llvmlite, only when the native engine is used

    if not _state.get("vectorizer_options"):
        llvm.set_option("mexkit", "-runtime-memory-check-threshold=256")
        llvm.set_option("mexkit", "-memory-check-merge-threshold=256")
        _state["vectorizer_options"] = True


def build(folder: str | Path | None = None) -> Path:
    """Compile the kernel for this machine and save it; returns the object file's path.

    Imports numba and compiles (tens of seconds of CPU). ``folder``
    defaults to the first writable folder of :func:`cache_dirs`. The files
    are written under temporary names and renamed into place, so a reader
    never sees half a build and concurrent builds do no harm.
    """
    import llvmlite.binding as llvm  # start-up: llvmlite, only when the native engine is used

    from . import _tvl1_kernel as kernel  # start-up: numba, only when a build is made

    fingerprint = _fingerprint()
    target_dir = Path(folder) if folder is not None else _writable_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    _vectorizer_options()
    compiled = kernel.entry()
    ir = compiled.inspect_llvm()
    module = llvm.parse_assembly(ir)
    module.verify()
    target = llvm.Target.from_triple(fingerprint["triple"])
    machine = target.create_target_machine(cpu=fingerprint["cpu"],
                                           features=fingerprint["features"], opt=3,
                                           reloc="static", codemodel="jitdefault")
    obj = machine.emit_object(module)
    defined = {f.name for f in module.functions if not f.is_declaration}
    defined |= {g.name for g in module.global_variables if not g.is_declaration}
    undefined = sorted({f.name for f in module.functions if f.is_declaration
                        and not f.name.startswith("llvm.")} - defined)
    # what the process provides (the Python C API, libc) is resolved by the linker;
    # numba's runtime helpers are not loaded without numba: stub them
    stubbed = [name for name in undefined if name.startswith(("numba_", "NRT_"))]
    description = {
        "fingerprint": fingerprint,
        "symbol": compiled.native_name,
        "int_fields": list(kernel.INT_FIELDS),
        "real_fields": list(kernel.REAL_FIELDS),
        "border_codes": dict(kernel._BORDER_CODES),
        "stubbed_symbols": stubbed,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    key = _key(fingerprint)
    obj_path, desc_path = _paths(target_dir, key)
    suffix = f".tmp-{os.getpid()}"
    tmp_obj = obj_path.with_name(obj_path.name + suffix)
    tmp_desc = desc_path.with_name(desc_path.name + suffix)
    tmp_obj.write_bytes(obj)
    tmp_desc.write_text(json.dumps(description, indent=1, sort_keys=True))
    os.replace(tmp_obj, obj_path)  # the object first: a description implies its object
    os.replace(tmp_desc, desc_path)
    for other in cache_dirs() + [target_dir]:  # an earlier failure no longer holds
        try:
            _failure_path(other, key).unlink(missing_ok=True)
        except OSError:
            pass
    with _lock:  # a later load() in this process looks again
        _state["tried"] = False
    return obj_path


def _numba_available() -> bool:
    from importlib.util import find_spec  # start-up: only asked when a build is wanted

    return find_spec("numba") is not None and find_spec("llvmlite") is not None


def build_in_background() -> bool:
    """Start building the kernel in a detached, low-priority process; True if started.

    Does nothing when the engine is switched off, numba is not installed, this
    process already tried, a build is already running for this machine (a
    lock file beside the builds), or no folder is writable. The process outlives this one: the
    next run finds the build.
    """
    if not enabled() or _state["attempted"] or not _numba_available():
        return False
    _state["attempted"] = True  # once per process
    failed = failed_build()
    if failed is not None:
        logger.warning("TV-L1: the native kernel failed to build on this machine (%s; see %s); "
                       "the numpy engine runs instead. `python -m mexkit.motion._tvl1_native` "
                       "tries again", _first_line(failed), failed)
        return False
    try:
        folder = _writable_dir()
        fingerprint = _fingerprint()
    except (OSError, ImportError):
        return False
    lock = folder / f"tvl1-{_key(fingerprint)}.building"
    try:
        if time.time() - lock.stat().st_mtime < _BUILD_STALE_S:
            return False
        lock.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    root = Path(__file__).resolve().parents[2]
    code = (f"import sys; sys.path.insert(0, {str(root)!r}); import os; os.nice(10)\n"
            f"from mexkit.motion._tvl1_native import build_or_record\n"
            f"try:\n    build_or_record({str(folder)!r})\nfinally:\n"
            f"    os.unlink({str(lock)!r})\n")
    env = dict(os.environ, PYTHONSAFEPATH="1")
    try:
        subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                         start_new_session=True, close_fds=True)
    except OSError:
        lock.unlink(missing_ok=True)
        return False
    _state["background"] = str(folder)
    logger.warning("TV-L1: no native kernel is built for this machine yet: compiling it in "
                   "the background (once, about a minute of CPU, into %s); this run uses the "
                   "slower numpy engine. `bin/setup` builds it at install time", folder)
    return True


def build_or_record(folder: str | Path | None = None) -> Path:
    """:func:`build`, recording a failure (its traceback) beside the builds, then raising.

    What the background build and ``python -m mexkit.motion._tvl1_native``
    run: a recorded failure stops later runs from starting the same failing
    build again (see :func:`failed_build`).
    """
    try:
        return build(folder)
    except Exception as exc:
        try:
            where: Path | None = Path(folder) if folder is not None else _writable_dir()
        except OSError:
            where = None
        if where is not None:
            _record_failure(where, exc)
        raise


def main(argv: list[str] | None = None) -> int:
    """``python -m mexkit.motion._tvl1_native [--if-missing | --check] [FOLDER]``.

    Builds the kernel and prints the path of its object file. ``--if-missing``
    builds only when no matching build is found (``bin/setup``); ``--check``
    builds nothing and exits 1 unless a matching build loads (CI). A failed
    build prints why, is recorded (see :func:`build_or_record`) and exits 1.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "--check" in args:
        kernel = load()
        if kernel is None:
            why = status()["error"] or ("switched off" if not enabled() else
                                        "no build for this machine in " +
                                        ", ".join(str(d) for d in cache_dirs()))
            print(f"mexkit: the native TV-L1 kernel is not available: {why}", file=sys.stderr)
            return 1
        print(kernel.path)
        return 0
    if "--if-missing" in args:
        args.remove("--if-missing")
        kernel = load()
        if kernel is not None:
            print(kernel.path)
            return 0
    try:
        path = build_or_record(args[0] if args else None)
    except Exception as exc:
        failed = failed_build()
        print(f"mexkit: the native TV-L1 kernel did not build ({type(exc).__name__}: {exc})"
              + (f"; traceback in {failed}" if failed else "") +
              ". mexkit runs TV-L1 with its numpy engine instead (several times slower).",
              file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by bin/setup
    raise SystemExit(main())
