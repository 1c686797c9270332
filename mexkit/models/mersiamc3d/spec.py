"""MERSiamC3D's registry entry: prior learning on clip pairs, then target learning.

References
----------
.. [1] S. Zhao, H. Tao, Y. Zhang, T. Xu, K. Zhang, Z. Hao, E. Chen, "A
   two-stage 3D CNN based learning method for spontaneous micro-expression
   recognition" (MERSiamC3D), 2021.
"""
from __future__ import annotations

from ..registry import InputSpec, ModelOption, ModelSpec, TrainDefaults, register_model
from . import training
from .network import INPUT_NAME, INPUT_SHAPE, MERSiamC3D

_REFERENCE = ("S. Zhao, H. Tao, Y. Zhang, T. Xu, K. Zhang, Z. Hao, E. Chen, A two-stage 3D "
              "CNN based learning method for spontaneous micro-expression recognition, 2021")

register_model(ModelSpec(
    name="mersiamc3d",
    constructor=MERSiamC3D,
    inputs=(InputSpec(INPUT_NAME, INPUT_SHAPE,
                      "10 Farneback flows between the 11 adaptive key frames, channels u, v, "
                      "magnitude (pixels of the 112x112 crop), as (C, T, H, W)"),),
    defaults=TrainDefaults(
        optimizer="sgd", lr=0.004, momentum=0.9, epochs=100, batch_size=16,
        schedule={"kind": "step", "step_size": 10, "gamma": 0.1}, loss="focal",
        augmentation="mersiamc3d",
        notes=("Sec. 4.1.2: SGD lr 0.004, momentum 0.9, lr / 10 every 10 epochs, 100 "
               "epochs, for prior and target learning alike; focal loss gamma 2 (eq. 11), "
               "alpha per class from the training fold's class frequencies (Sec. 5.2; "
               "--focal-alpha to set it); crops of 2-5 px at 9 places and frame dropping. "
               "The batch size is not in the paper (16 here). An epoch: every training "
               "pair (prior learning), every clip 36 times, each with its own random "
               "augmentation (target learning: the paper's 36-fold augmented set); "
               "--pairs-per-epoch and --copies-per-epoch shorten them for quick runs.")),
    reference=_REFERENCE,
    options=(
        ModelOption("no-prior", bool, False,
                    "ablation: skip prior learning on clip pairs, train the classifier from "
                    "scratch (Table 7, 'without PL'; nothing is frozen)", constructor=False),
        ModelOption("freeze", int, 2,
                    "convolutions of SinC3D (from conv1) frozen in target learning after "
                    "prior learning (paper: 2; Table 7 tries 0-5)"),
        ModelOption("pairs-per-epoch", int, 0,
                    "prior learning: clip pairs drawn per epoch, for quick runs (uniform "
                    "draw, same/different ratio kept; 0: every training pair, the paper's)",
                    constructor=False),
        ModelOption("copies-per-epoch", int, training.AUGMENTED_COPIES,
                    "target learning: times each training clip appears per epoch, each "
                    "with its own random augmentation (36: the paper's augmented set; 1 "
                    "for quick runs)", constructor=False),
        ModelOption("prior-epochs", int, 0,
                    "prior learning: epochs (0: the same as --epochs, as in the paper)",
                    constructor=False),
        ModelOption("resolution", int, 112,
                    "side at which SinC3D works; below 112 the 112x112 flow is "
                    "area-resampled first (CPU-only runs; not the paper's network)"),
    ),
    trainer=training.fit_fold,
    protocol="loso",
    scheme="megc3",
))
