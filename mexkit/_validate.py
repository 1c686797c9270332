"""Small validation helpers with one message style."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import ParameterError


def check_option(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise ParameterError.

    The message reads: "Invalid value for the 'method' parameter. Allowed
    values are 'a', 'b', but got 'x' instead."
    """
    allowed = list(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ParameterError(
            f"Invalid value for the {name!r} parameter. Allowed values are "
            f"{shown}, but got {value!r} instead."
        )
    return value


def check_range(name: str, value: float, low: float | None = None,
                high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """Raise ParameterError unless ``low <= value <= high`` (bounds optional)."""
    bad = False
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ParameterError(
            f"Invalid value for the {name!r} parameter. It must lie in "
            f"{lb}{lo}, {hi}{hb}, but got {value!r} instead."
        )
    return value


def check_int(name: str, value: Any, low: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer ``>= low``, else raise ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(
            f"Invalid value for the {name!r} parameter. It must be an integer, "
            f"but got {value!r} instead."
        )
    check_range(name, int(value), low)
    return int(value)


def check_ndim(name: str, array: Any, ndims: int | tuple[int, ...],
               shape_doc: str) -> None:
    """Raise ParameterError unless ``array.ndim`` is one of ``ndims``."""
    if isinstance(ndims, int):
        ndims = (ndims,)
    ndim = getattr(array, "ndim", None)
    if ndim not in ndims:
        raise ParameterError(
            f"Invalid shape for the {name!r} parameter: expected {shape_doc}, "
            f"but got shape {getattr(array, 'shape', None)!r}."
        )
