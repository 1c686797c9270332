"""What the flow-method and flow-feature registries share: entries by name.

Each registry holds one entry per name, filled by a decorator where the
function is defined; the modules that define the built-in entries are
imported on the first look-up, so that listing them needs no import list
kept by hand elsewhere.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from .._validate import check_option
from ..errors import ParameterError

T = TypeVar("T")


class NameRegistry(Generic[T]):
    """Entries by name, each made for one function.

    Parameters
    ----------
    kind : str
        What an entry is, for messages (``"Flow method"``).
    parameter : str
        The parameter that takes a name, for messages (``"method"``).
    builtin_modules : sequence of str
        Modules that register the built-in entries when imported.
    """

    def __init__(self, kind: str, parameter: str, builtin_modules: Sequence[str]) -> None:
        self.kind = kind
        self.parameter = parameter
        self.builtin_modules = tuple(builtin_modules)
        self.entries: dict[str, T] = {}

    def add(self, name: str, entry: T, function: Callable[..., Any]) -> None:
        """Record ``entry`` for ``function`` under ``name``.

        The same function may register again (a module imported twice);
        another one may not.
        """
        held = self.entries.get(name)
        if held is not None:
            fn = held.function  # type: ignore[attr-defined]
            if (fn.__module__, fn.__qualname__) != (function.__module__, function.__qualname__):
                raise ParameterError(f"{self.kind} {name!r} is already registered by "
                                     f"{fn.__module__}.{fn.__qualname__}.")
        self.entries[name] = entry

    def _load_builtins(self) -> None:
        for module in self.builtin_modules:
            importlib.import_module(module)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        self._load_builtins()
        return list(self.entries)

    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name raises ParameterError listing the known ones."""
        self._load_builtins()
        check_option(self.parameter, name, list(self.entries))
        return self.entries[name]
