"""mexkit: micro-expression preprocessing, feature stores and models.

Importing the package is cheap: it loads no numerical library beyond what a
submodule asks for, so ``mexkit.io.store`` can be opened in a small process.
From Python, :mod:`mexkit.api` holds the functions behind the commands and
stores and results as data, :mod:`mexkit.torch` a PyTorch dataset over a
store (docs/python.md).

It sets one environment default, before torch (or anything else using
OpenMP) is loaded: ``OMP_WAIT_POLICY=PASSIVE``, unless the variable is
already set.  With OpenMP's default, a thread that reaches the end of a
parallel operation first spins, burning its core, until the others arrive;
on a machine where other jobs hold cores, the thread it waits for is often
descheduled, and every operation of torch's CPU kernels pays for it.
Measured on 2 cores shared with other jobs (load average 6-9): MEAN under
LOSO, 20 epochs, 105 s and 33 s of wall time spinning, 17 s and 14 s
passive; an RPCA of 32 frames of 128 x 128, 6.6-7.4 s on 2 threads spinning,
1.1-1.8 s on one thread, 0.2-0.65 s on 2 threads passive.  Set
``OMP_WAIT_POLICY=ACTIVE`` to get OpenMP's default back.
"""
from __future__ import annotations

import importlib as _importlib
import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["__version__"]


def __getattr__(name: str) -> object:
    """``mexkit.api`` and ``mexkit.torch`` on first use (docs/python.md), so that
    ``import mexkit`` alone stays light."""
    if name in ("api", "torch"):
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
