"""The model inputs mexkit can build from a feature store, and their registry.

A model names its inputs (:class:`~mexkit.models.registry.InputSpec`); this
registry says, once for every model and every command, what each input is
built from and which ``mexkit`` command line produces those arrays. The
``inputs`` module of each model's package registers the inputs it defines
with :func:`register_input`; the registry loads every model on first use
(:func:`mexkit.models.registry.list_models`), so adding an input is adding
it to a model's package.

>>> from mexkit.models.inputs import get_input
>>> get_input("mean_regions").produced_by      # doctest: +SKIP
'mexkit flow --pairs onset-apex --features mean'

The builder of an input takes one stored sample
(:class:`~mexkit.io.store.SampleView`) and returns a float32 array of the
registered shape (``None`` marks an axis whose length varies by sample). A
missing array raises :class:`~mexkit.errors.ModelInputError` naming the
sample, what the store holds and the command that makes the input.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelInputError, ParameterError
from .registry import list_models

__all__ = ["InputFeature", "register_input", "get_input", "list_inputs", "build_input",
           "missing_input"]

@dataclass(frozen=True)
class InputFeature:
    """One registered model input.

    Attributes
    ----------
    name : str
        The keyword under which models take it.
    shape : tuple of int or None
        Per-sample shape; ``None`` for an axis of varying length.
    needs : tuple of str
        Store arrays it is built from (any one alternative suffices where
        the builder says so).
    produced_by : str
        A real ``mexkit`` command line that writes those arrays.
    description : str
        What the array holds, with units.
    build : callable
        ``build(sample) -> numpy.ndarray``.
    """

    name: str
    shape: tuple[int | None, ...]
    needs: tuple[str, ...]
    produced_by: str
    description: str
    build: Callable[[Any], np.ndarray]

    @property
    def commands(self) -> list[list[str]]:
        """The ``mexkit`` commands of :attr:`produced_by`, as argument lists."""
        parts = [p.strip() for p in self.produced_by.split("|")]
        return [p.split()[1:] for p in parts if p.startswith("mexkit ")]


_REGISTRY: dict[str, InputFeature] = {}


def register_input(name: str, *, shape: Sequence[int | None], needs: Sequence[str],
                   produced_by: str, description: str
                   ) -> Callable[[Callable[[Any], np.ndarray]], Callable[[Any], np.ndarray]]:
    """Decorator registering ``build(sample) -> array`` as the model input ``name``.

    Raises
    ------
    ParameterError
        If another builder is already registered under ``name``.
    """
    if not produced_by.startswith("mexkit "):
        raise ParameterError(
            f"Input {name!r}: 'produced_by' must be a mexkit command line, but got "
            f"{produced_by!r}.")

    def decorate(build: Callable[[Any], np.ndarray]) -> Callable[[Any], np.ndarray]:
        old = _REGISTRY.get(name)
        if old is not None and old.build.__qualname__ != build.__qualname__:
            raise ParameterError(f"A model input named {name!r} is already registered.")
        _REGISTRY[name] = InputFeature(name, tuple(shape), tuple(needs), produced_by,
                                       description, build)
        return build
    return decorate


def _load() -> None:
    list_models()  # imports every model's package, and so its inputs


def get_input(name: str) -> InputFeature:
    """Return the registered input ``name``."""
    if name not in _REGISTRY:
        _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(
            f"Invalid value for the 'input' parameter. Allowed values are "
            f"{', '.join(repr(k) for k in sorted(_REGISTRY))}, but got {name!r} instead."
        ) from None


def list_inputs() -> list[InputFeature]:
    """Every registered input, sorted by name."""
    _load()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def build_input(name: str, sample: Any) -> np.ndarray:
    """Build the model input ``name`` for one stored sample."""
    return get_input(name).build(sample)


def missing_input(sample: Any, name: str, needs: Sequence[str]) -> ModelInputError:
    """The error for a sample that lacks the arrays of input ``name``."""
    feature = get_input(name)
    return ModelInputError(
        f"sample {sample.sample_id!r} lacks {', '.join(repr(n) for n in needs)} for the "
        f"model input {name!r} (the store holds {', '.join(sample.keys()) or 'nothing'}); "
        f"produce it with `{feature.produced_by}`."
    )
