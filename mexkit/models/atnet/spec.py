"""ATNet's registry entries: ``atnet`` and its single-stream ablations.

``atnet-spatial`` and ``atnet-temporal`` are the paper's one-stream variants
(Tables II and III); the temporal stream has no image and so no
augmentation.

References
----------
.. [1] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A Novel Apex-Time
   Network for Cross-Dataset Micro-Expression Recognition", ACII 2019.
"""
from __future__ import annotations

import dataclasses

from ...errors import ParameterError
from ..registry import InputSpec, ModelSpec, TrainDefaults, register_model
from .network import REGISTRY_NAMES, ATNet

_REFERENCE = (
    "M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, A Novel Apex-Time Network for "
    "Cross-Dataset Micro-Expression Recognition, ACII 2019."
)

_APEX = InputSpec(
    name="apex_rgb",
    shape=(3, 224, 224),
    description=(
        "apex frame (SMIC: middle frame) cropped to the face box of the apex frame and "
        "resized to 224x224, RGB, float32"
    ),
)
_DM = InputSpec(
    name="direction_magnitude",
    shape=(64, 128),
    description=(
        "average direction-magnitude feature: 64 flow fields between 65 consecutive "
        "frames centred on the apex, each cut into 8x8 blocks; per block mean magnitude "
        "(pixels) and mean direction (radians) -> 128 values per field"
    ),
)

_ATNET_DEFAULTS = TrainDefaults(
    optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-6, epochs=50, batch_size=16,
    schedule={"kind": "step", "step_size": 10, "gamma": 0.1},
    loss="ce", class_balance=None, augmentation="atnet",
    notes=(
        "Paper: SGD lr 0.01 divided by 10 every 10 epochs, 50 epochs, momentum 0.9, weight "
        "decay 5e-6, dropout 0.5, augmentation rotation <= 5 degrees and shift <= 10 px "
        "with p = 0.5, CDE and HDE protocols. Batch size 16 is from the authors' Caffe "
        "files (the paper gives none); their training lists are class-balanced "
        "('TrainBalance'), which the paper does not describe, so no balancing by default."
    ),
)


def _builder(streams: str):
    def build(n_classes: int, **kw) -> ATNet:
        if "streams" in kw and kw["streams"] != streams:
            raise ParameterError(
                f"Model {REGISTRY_NAMES[streams]!r} has streams={streams!r}; "
                f"got streams={kw['streams']!r}."
            )
        kw.pop("streams", None)
        return ATNet(n_classes, streams=streams, **kw)
    return build


# The paper's augmentation is for the spatial stream ("to aid the spatial stream
# training"): the temporal stream alone has no image to augment.
_TEMPORAL_DEFAULTS = dataclasses.replace(_ATNET_DEFAULTS, augmentation=None)

for _streams, _inputs, _defaults in (("both", (_APEX, _DM), _ATNET_DEFAULTS),
                                     ("spatial", (_APEX,), _ATNET_DEFAULTS),
                                     ("temporal", (_DM,), _TEMPORAL_DEFAULTS)):
    register_model(ModelSpec(
        name=REGISTRY_NAMES[_streams],
        constructor=_builder(_streams),
        inputs=_inputs,
        defaults=_defaults,
        reference=_REFERENCE,
    ))
