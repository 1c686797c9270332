"""The registry of optical-flow methods: one entry per method, filled where it is defined.

A flow method is a function ``fn(reference, moving, **options) -> flow`` with
frames ``(P, H, W)`` (uint8, or float in [0, 1]) in and a ``(P, 2, H, W)``
float32 flow out (channel 0 horizontal, ``reference(x) ~ moving(x +
flow(x))``). It registers itself with :func:`register_flow_method`, naming
each of its options with a :class:`FlowOption` (type, default, help text that
cites the paper the default comes from). Everything that lists or runs flow
methods reads this registry: ``mexkit flow``'s ``--method`` choices and its
method options, the pipeline's dispatch (:func:`compute_flow`), the README's
table of methods.

Adding a method is one new module that defines and decorates its function,
plus its module name in :data:`BUILTIN_MODULES` (modules of other packages
are imported by their users before they look the method up)::

    from mexkit.motion.methods import FlowOption, register_flow_method

    @register_flow_method(
        "my-flow", summary="What it is (Author, Year).",
        options=[FlowOption("alpha", float, 1.0, "Smoothness weight (Author 2024, eq. 3).")])
    def my_flow(reference, moving, *, alpha=1.0):
        ...

Options marked ``affects_result=False`` (device, threads, compiling) change
where or how fast a flow is computed, not the flow: they stay out of a
store's cache keys.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._validate import check_option
from ..errors import ParameterError
from ._registry import NameRegistry

__all__ = ["FlowOption", "FlowMethod", "register_flow_method", "flow_method",
           "flow_methods", "compute_flow", "methods_markdown", "BUILTIN_MODULES"]

#: Modules that define the built-in methods; imported on the first look-up.
BUILTIN_MODULES = ("mexkit.motion.tvl1", "mexkit.motion.opencv")

_METHODS: NameRegistry[FlowMethod] = NameRegistry("Flow method", "method", BUILTIN_MODULES)
_REGISTRY = _METHODS.entries


@dataclass(frozen=True)
class FlowOption:
    """One option of a flow method.

    Parameters
    ----------
    name : str
        The keyword argument of the method's function (e.g. ``"lambda_"``).
    type : {float, int, str, bool}
        Value type; ``str`` options list their ``choices``.
    default : Any
        The default value (``None`` for "decided at run time", e.g. threads).
    help : str
        One sentence; where the default comes from a paper, it cites it.
    choices : tuple, optional
        Allowed values (str options).
    minimum : float, optional
        Smallest allowed value (inclusive) for numbers.
    flag : str, optional
        Command-line spelling; by default ``--`` + the name with ``_`` as
        ``-`` and a trailing ``_`` dropped (``lambda_`` -> ``--lambda``).
    affects_result : bool
        False for options that change only where or how fast the flow is
        computed (kept out of cache keys).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    flag: str | None = None
    affects_result: bool = True

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.rstrip("_").replace("_", "-")

    def check(self, value: Any, method: str) -> Any:
        """Return ``value`` converted to the option's type, or raise ParameterError."""
        if value is None and self.default is None:
            return None
        if self.choices is not None:
            return check_option(self.name, value, self.choices)
        try:
            if self.type is bool:
                if not isinstance(value, bool):
                    raise TypeError
                converted: Any = value
            elif self.type is int:
                if isinstance(value, bool) or int(value) != value:
                    raise TypeError
                converted = int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise TypeError
                converted = float(value)
                if not math.isfinite(converted):
                    raise TypeError
            else:
                converted = self.type(value)
        except (TypeError, ValueError, OverflowError):
            raise ParameterError(
                f"Invalid value for the {self.name!r} option of flow method {method!r}: "
                f"expected {self.type.__name__}, but got {value!r} instead.") from None
        if self.minimum is not None and converted < self.minimum:
            raise ParameterError(
                f"Invalid value for the {self.name!r} option of flow method {method!r}: it "
                f"must be at least {self.minimum}, but got {value!r} instead.")
        return converted


@dataclass(frozen=True)
class FlowMethod:
    """A registered flow method: its function, options and a one-line summary.

    ``start_workers(threads)``, when given, starts the method's CPU workers
    ahead of its first call (``threads``: the ``threads`` option, ``None``
    for the default); the flow stage calls it when it solves on the CPU, so
    that the workers' start overlaps the reading of the first samples.
    """

    name: str
    function: Callable[..., Any]
    summary: str
    options: tuple[FlowOption, ...] = field(default=())
    start_workers: Callable[[int | None], None] | None = None

    def option(self, name: str) -> FlowOption:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise ParameterError(
            f"Flow method {self.name!r} has no option {name!r}; its options are "
            f"{', '.join(repr(o.name) for o in self.options) or 'none'}.")

    def defaults(self) -> dict[str, Any]:
        """Every option's default value, by name."""
        return {opt.name: opt.default for opt in self.options}

    def resolve(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All options, checked: the given values over the defaults.

        Raises
        ------
        ParameterError
            For an option the method does not have, or a value of the wrong
            type or out of range.
        """
        values = self.defaults()
        for name, value in (options or {}).items():
            values[name] = self.option(name).check(value, self.name)
        return values

    def result_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The resolved options that change the flow (for cache keys)."""
        values = self.resolve(options)
        return {o.name: values[o.name] for o in self.options if o.affects_result}

    def __call__(self, reference: Any, moving: Any, **options: Any) -> Any:
        return self.function(reference, moving, **self.resolve(options))


def register_flow_method(name: str, *, summary: str, options: Iterable[FlowOption] = (),
                         start_workers: Callable[[int | None], None] | None = None
                         ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that records a flow function under ``name``; returns it unchanged.

    ``start_workers``: see :class:`FlowMethod`.

    Raises
    ------
    ParameterError
        When another function already holds ``name``.
    """
    opts = tuple(options)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _METHODS.add(name, FlowMethod(name=name, function=fn, summary=summary, options=opts,
                                      start_workers=start_workers), fn)
        return fn

    return decorate


#: ``flow_methods()``: the names of the registered flow methods, in registration order.
flow_methods = _METHODS.names
#: ``flow_method(name)``: the registered method ``name``; an unknown name raises
#: :class:`~mexkit.errors.ParameterError` listing the known ones.
flow_method = _METHODS.get


def compute_flow(method: str, reference: Any, moving: Any,
                 options: Mapping[str, Any] | None = None) -> Any:
    """Flow of every pair with the method ``method`` and its ``options``.

    Parameters
    ----------
    method : str
        A registered name (:func:`flow_methods`).
    reference, moving : array_like, shape (P, H, W) or (H, W)
        First and second frames, uint8 or float in [0, 1].
    options : mapping, optional
        The method's options by name; missing ones take their defaults.

    Returns
    -------
    numpy.ndarray, float32, shape (P, 2, H, W) or (2, H, W)
    """
    return flow_method(method)(reference, moving, **dict(options or {}))


def methods_markdown() -> str:
    """The README's table of flow methods (method, what it is, its options)."""
    lines = ["| method | what | options (`mexkit flow`) |", "|---|---|---|"]
    for name in flow_methods():
        method = flow_method(name)
        flags = ", ".join(f"`{o.cli_flag}`" for o in method.options)
        lines.append(f"| `{name}` | {method.summary} | {flags or '-'} |")
    return "\n".join(lines)
