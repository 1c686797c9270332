"""mexkit: micro-expression preprocessing, feature stores and models.

Importing the package is cheap: it loads no numerical library beyond what a
submodule asks for, so ``mexkit.io.store`` can be opened in a small process.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
