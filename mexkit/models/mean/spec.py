"""MEAN's registry entry: recognition on onset-apex regions, spotting on whole videos.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Processing: Image Communication 110 (2023) 116875.
"""
from __future__ import annotations

from ..registry import InputSpec, ModelOption, ModelSpec, Spotting, TrainDefaults, register_model
from . import published, spotting, training
from .network import MEAN, MEAN_INPUT_SHAPE

_REFERENCE = (
    "G.-B. Liong, J. See, C.-S. Chan, Spot-then-Recognize: A Micro-Expression Analysis "
    "Network for Seamless Evaluation of Long Videos, Signal Process. Image Commun. 110 "
    "(2023) 116875."
)

#: Options that only change training (none reaches the constructor): the authors' weights
#: a fold starts from (training.py), then the spot-then-recognize settings, used when
#: `mexkit train --model mean` gets a store of whole videos (`mexkit flow --pairs gap
#: --features mean`; spotting.py here and mexkit.pipeline.spotting).
_TRAINING_OPTIONS = (
    ("weights", str, "",
     "safetensors file of `mexkit convert` (an authors' Keras network): every fold starts "
     "from it with its shared layers frozen; empty: from scratch"),
    ("no-transfer", bool, False,
     "ablation: train recognition as a separate network from scratch instead of on the "
     "spotting stage's frozen shared layers (inductive transfer)"),
    ("spot-epochs", int, 200,
     "epochs of the spotting stage (paper: 200; --epochs sets recognition's)"),
    ("p", float, 0.55,
     "peak threshold T = mean + p (max - mean) for long videos (paper: 0.55)"),
    ("kprime", int, 0,
     "k' of pseudo-labels, smoothing and intervals (0: (N + 1) / 2 from the mean interval "
     "length of each type in the store)"),
    ("emotions", str, "",
     "interval CSV whose emotion column labels the store's intervals (sheets without "
     "emotions, e.g. `mexkit synth --long`'s intervals.csv)"),
    ("type-store", str, "",
     "TYPE=STORE[,TYPE=STORE]: a gap-flow store of the same videos whose features one "
     "expression type's spotting network uses (SOFTNet's flow gap k = k' for "
     "macro-expressions, e.g. macro=videos.gap20.h5)"),
)

register_model(ModelSpec(
    name="mean",
    constructor=MEAN,
    inputs=(
        InputSpec(
            name="mean_regions",
            shape=MEAN_INPUT_SHAPE,
            description=(
                "onset -> onset+k TV-L1 flow (k = apex - onset) and its optical strain "
                "magnitude, cut into the MEAN regions (two 21x21 eye/brow parts above a "
                "21x42 mouth part); channels u, v (pixels), strain"
            ),
        ),
    ),
    defaults=TrainDefaults(
        optimizer="adam", lr=5e-4, epochs=800, batch_size=32,
        loss="ce", class_balance=None, augmentation=None,
        notes=(
            "Paper: Adam 5e-4, recognition up to 800 epochs after the spotting stage, "
            "shared layers frozen; no augmentation and no class balancing for recognition. "
            "Batch size 32 is from the public code (the paper gives none); the public code "
            "also trains 100 recognition epochs rather than 800."
        ),
    ),
    pretrain=TrainDefaults(
        optimizer="adam", lr=5e-4, epochs=200, batch_size=32, loss="mse",
        class_balance=None, augmentation=None,
        notes=(
            "Spotting stage (head='spotting'): MSE against IoU pseudo-labels, non-ME:ME "
            "frames subsampled 8:1 before training (the public code uses 5:1 and 10 "
            "epochs); see mexkit.learn.train.ratio_subsample."
        ),
    ),
    reference=_REFERENCE,
    paper_reported={3: 7608},
    options=tuple(ModelOption(name, kind, default, text, constructor=False,
                              scope="all" if name == "weights" else "spotting")
                  for name, kind, default, text in _TRAINING_OPTIONS),
    trainer=training.fit_fold,
    clip_run=training.clip_run,
    weights_option="weights",
    spotting=Spotting(input="mean_regions",
                      produced_by="mexkit flow --pairs gap --features mean",
                      settings=spotting.settings,
                      train=spotting.train, scores=spotting.scores,
                      classes=spotting.classes, build=spotting.build),
    published=published.PUBLISHED,
))
