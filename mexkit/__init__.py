"""mexkit: micro-expression preprocessing, feature stores and models.

Importing the package is cheap: it loads no numerical library beyond what a
submodule asks for, so ``mexkit.io.store`` can be opened in a small process.

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

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["__version__"]
