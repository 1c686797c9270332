"""``import mexkit`` and ``import mexkit.api`` stay light: no torch, h5py or pandas until
a function needs them; the lazy names resolve to the commands' functions."""
from __future__ import annotations

import subprocess
import sys


def test_importing_the_api_loads_nothing_heavy():
    code = ("import sys, mexkit, mexkit.api as mx\n"
            "heavy = [m for m in ('torch', 'h5py', 'pandas', 'cv2', 'sklearn') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert mexkit.api is mx and 'flow' in dir(mx) and 'read_results' in mx.__all__\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_lazy_names_resolve():
    import mexkit.api as mx
    from mexkit.io.store import open_store
    from mexkit.pipeline.export import export
    from mexkit.pipeline.temporal import run_magnify

    assert mx.open_store is open_store and mx.export is export and mx.magnify is run_magnify
    for name in mx.__all__:
        assert callable(getattr(mx, name)) or isinstance(getattr(mx, name), type), name
