"""AKMNet's registry entry, with its trainer, report and backbone pre-training hooks.

References
----------
.. [1] M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou,
   "Recognizing Micro-Expression in Video Clip with Adaptive Key-Frame
   Mining", arXiv:2009.09179 (2021).
"""
from __future__ import annotations

from .._nn import torch_parameter_count
from ..registry import (
    BackbonePretraining,
    InputSpec,
    ModelOption,
    ModelSpec,
    TrainDefaults,
    register_model,
)
from . import pretraining, report, training
from .network import INPUT_NAME, AKMNet, check_image_size

_REFERENCE = (
    "M. Peng, C. Wang, Y. Gao, T. Bi, T. Chen, Y. Shi, X.-D. Zhou, Recognizing "
    "Micro-Expression in Video Clip with Adaptive Key-Frame Mining, arXiv:2009.09179 (2021)."
)

register_model(ModelSpec(
    name=AKMNet.registry_name,
    constructor=AKMNet,
    inputs=(InputSpec(
        INPUT_NAME, (None, 3, 128, 128),
        "the whole clip (onset to offset, any number of frames T) after phase-based "
        "magnification with alpha 15, 128x128, grey repeated to 3 channels, in [0, 1]"),),
    defaults=TrainDefaults(
        optimizer="sgd", lr=1e-3, epochs=40, batch_size=8, momentum=0.9, weight_decay=5e-4,
        schedule={"kind": "cosine", "eta_min": 1e-8}, loss="ce", class_balance="resample",
        augmentation="akmnet",
        notes=(
            "Paper, Sec. IV-B: SGD, initial lr 1e-3 with cosine annealing to 1e-8, 40 "
            "epochs, batch 8, momentum 0.9, weight decay 5e-4, dropout 0.5, GS-MMM weights "
            "lambda_1 0.1 and lambda_2 1 (C = 2, Sec. III-B), LOSO. Sec. IV-A: classes "
            "equalised by resampling; frames resized to 144 and randomly cropped to 128 in "
            "training, resized to 128 in testing; phase-based magnification alpha 15. The "
            "ImageNet + AffectNet pre-training of the ResNet-18 is not available here: "
            "`mexkit pretrain` makes its stand-in from a store of other subjects; "
            "training starts from scratch unless --weights gives a local file."),
    ),
    paper_parameter_count=torch_parameter_count,
    reference=_REFERENCE,
    options=(
        ModelOption("no-attention", bool, False,
                    "ablation AKMNet-s13: uniform alpha instead of the local self-attention "
                    "(eq. 5)"),
        ModelOption("no-sparse", bool, False,
                    "ablation AKMNet-s12: all frames weighted by beta instead of the sparse "
                    "key-frame selection (eq. 8); no GS-MMM loss"),
        ModelOption("no-mining-loss", bool, False,
                    "ablation: key-frame selection without the GS-MMM loss (eqs. 10-12)"),
        ModelOption("image-size", int, 128,
                    "frame side the ResNet-18 sees (paper: 128 -> 512x4x4; 64 runs about "
                    "4x faster on a CPU)"),
        ModelOption("train-resize", int, 144,
                    "training augmentation: frames resized to this side, then randomly "
                    "cropped back to the input side (paper: 144 -> 128); 128 turns it off "
                    "(for short CPU runs)", constructor=False),
        ModelOption("weights", str, "",
                    "local safetensors file of pre-trained ResNet-18 weights for the "
                    "backbone, e.g. from `mexkit pretrain` on a store of other subjects "
                    "(the paper's ImageNet + AffectNet weights cannot be downloaded); "
                    "empty: from scratch", constructor=False),
    ),
    trainer=training.fit_fold,
    report=report.write_key_frame_plots,
    pretraining=BackbonePretraining(
        frames=pretraining.expression_frames, train=pretraining.pretrain_backbone,
        check_image_size=check_image_size, image_size_option="image_size"),
    weights_option="weights",
    protocol="loso",
    scheme="4class",
))
