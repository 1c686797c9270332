"""The registry of flow features: arrays computed from a sample's flow, by name.

A flow feature is a function ``fn(flow, **inputs_and_options)`` that turns a
sample's ``(P, 2, H, W)`` flow into an array of the flow store, one row per
pair (or a mapping of array names to arrays, for a feature that stores more
than one). It registers itself where it is defined with
:func:`register_flow_feature`, naming the array it stores, what else it
needs (:data:`INPUTS`: ``"strain"``, the optical strain of the flow,
``(P, H, W)``; ``"landmarks"``, the landmarks of each pair's first frame,
``(P, 68, 2)``, ``None`` when the input has none and NaN where no face was
found, checked by the feature; ``"first_frame"``, the clip's first grey
frame, ``(H, W)`` uint8; ``"sample_id"``, for messages) and which options of
the flow stage it reads. Everything that computes or checks features reads
this registry: ``mexkit flow --features``, the flow stage
(:mod:`mexkit.pipeline.flow`), its input check (landmarks are required only
when a chosen feature needs them) and its check of cached samples.

Adding a feature is one decorated function in a module of
:data:`BUILTIN_MODULES`, or in a new module added there. A feature that a
model defines (MEAN's ``mean``, its 42 x 42 input) registers in a module of
the model's package (``mexkit/models/mean/features.py``); the flow stage
loads the model packages when it is asked for a name it does not know, so
neither this registry nor the pipeline names a model::

    from mexkit.motion.feature_registry import register_flow_feature

    @register_flow_feature("my-feature", array="my_feature", needs=("strain",),
                           summary="What it is (Author, Year).")
    def my_feature(flow, *, strain):
        ...
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._validate import check_option
from ._registry import NameRegistry

__all__ = ["FlowFeature", "register_flow_feature", "flow_feature", "flow_features",
           "INPUTS", "BUILTIN_MODULES"]

#: Modules that define the built-in features; imported on the first look-up.
BUILTIN_MODULES = ("mexkit.motion.features",)

#: What a feature may need besides the flow.
INPUTS = ("strain", "landmarks", "first_frame", "sample_id")

@dataclass(frozen=True)
class FlowFeature:
    """A registered flow feature.

    Attributes
    ----------
    name : str
        What ``mexkit flow --features`` takes.
    array : str
        The name of the array it stores in each sample of a flow store, one
        row per pair.
    summary : str
        One line: what it is, citing the paper.
    function : callable
        ``function(flow, **kwargs) -> array``; ``kwargs`` are the inputs of
        ``needs`` and the options of ``options``.
    needs : tuple of str
        Inputs beyond the flow, from :data:`INPUTS`.
    options : tuple of str
        The flow stage's options it reads, passed as keyword arguments.
    extra_arrays : tuple of str
        Other arrays it may store (the function then returns a mapping).
    records : tuple of str
        Options of :attr:`options` that the flow store records when the
        feature is chosen: in its params (and so its cache key) and in each
        sample's attributes.
    check : callable or None
        ``check(options)`` raises :class:`~mexkit.errors.ParameterError` for
        stage options that do not go with the feature; called before any sample.
    flow_method : callable or None
        ``flow_method(method, options) -> str | None``: the flow method the
        feature needs when ``method`` (``--method``) is None, or ``method``
        (it may warn about a given one); None keeps the stage's default.
    """

    name: str
    array: str
    summary: str
    function: Callable[..., Any]
    needs: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    extra_arrays: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], None] | None = None
    flow_method: Callable[[str | None, Mapping[str, Any]], str | None] | None = None

    def __call__(self, flow: Any, *, inputs: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None) -> Any:
        """The feature of ``flow``, given the ``inputs`` it needs and the stage's ``options``."""
        inputs, options = dict(inputs or {}), dict(options or {})
        kwargs = {name: inputs[name] for name in self.needs}
        kwargs.update({name: options[name] for name in self.options if name in options})
        return self.function(flow, **kwargs)


_FEATURES: NameRegistry[FlowFeature] = NameRegistry("Flow feature", "features",
                                                    BUILTIN_MODULES)
_REGISTRY = _FEATURES.entries


def register_flow_feature(name: str, *, array: str, summary: str,
                          needs: Iterable[str] = (), options: Iterable[str] = (),
                          extra_arrays: Iterable[str] = (), records: Iterable[str] = (),
                          check: Callable[[Mapping[str, Any]], None] | None = None,
                          flow_method: Callable[[str | None, Mapping[str, Any]], str | None]
                          | None = None
                          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that records a feature function under ``name``; returns it unchanged.

    The keywords are the attributes of :class:`FlowFeature`.

    Raises
    ------
    ParameterError
        When another function already holds ``name``, or ``needs`` names an
        input other than those of :data:`INPUTS`.
    """
    needs = tuple(needs)
    for need in needs:
        check_option("needs", need, INPUTS)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _FEATURES.add(name, FlowFeature(name=name, array=array, summary=summary, function=fn,
                                        needs=needs, options=tuple(options),
                                        extra_arrays=tuple(extra_arrays),
                                        records=tuple(records), check=check,
                                        flow_method=flow_method), fn)
        return fn

    return decorate


#: ``flow_features()``: the names of the registered flow features, in registration order.
flow_features = _FEATURES.names
#: ``flow_feature(name)``: the registered feature ``name``; an unknown name raises
#: :class:`~mexkit.errors.ParameterError` listing the known ones.
flow_feature = _FEATURES.get
