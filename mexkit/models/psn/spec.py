"""PSN's registry entry.

References
----------
.. [1] J. Li, S.-J. Wang, Y. Wang, H. Zhou, X. Fu, "Parallel Spatiotemporal
   Network to Recognize Micro-Expression" (PSN).
"""
from __future__ import annotations

from .._nn import torch_parameter_count
from ..registry import InputSpec, ModelOption, ModelSpec, TrainDefaults, register_model
from .network import FUSIONS, PSN, PSN_FRAMES, PSN_SIZE, STREAMS

_REFERENCE = (
    "J. Li, S.-J. Wang, Y. Wang, H. Zhou, X. Fu, Parallel Spatiotemporal Network to "
    "Recognize Micro-Expression (PSN)."
)

_PSN_DEFAULTS = TrainDefaults(
    optimizer="adam", lr=1e-4, epochs=30, batch_size=5,
    schedule=None, loss="ce", class_balance=None,
    augmentation="psn",
    notes=(
        "Paper: softmax cross-entropy (eq. 11), rotation and flipping augmentation, dropout "
        "in the classifier, Caffe, 10-fold stratified CV of the 650-clip 4-class composite; "
        "test accuracy is stable after 30 iterations (Fig. 9a), read as 30 epochs. Batch "
        "size 5 from the fused matrix of 80 = 5 clips x 16 frames rows (Sec. 2.3). The "
        "paper names no optimiser and no learning rate: Adam 1e-4, constant. Caffe's "
        "AlexNet solver (SGD, momentum 0.9, weight decay 5e-4) was tried first: at lr 1e-3 "
        "the loss stayed at chance (1.38 after 3 epochs on the 36 synthetic clips), at "
        "1e-2 it fell to 1.32 in 2 epochs, while Adam 1e-4 reached 1.04 (this network has "
        "no normalisation layers). Rotation up to 10 degrees and flip probability 0.5 are "
        "not in the paper."
    ),
)

_FRAMES_SPEC = InputSpec(
    name="psn_frames", shape=(PSN_FRAMES, PSN_SIZE, PSN_SIZE),
    description=("TIM-normalised grey frames at the 16 sampled positions, 112x112, in "
                 "[0, 1]: the TPU's vectorised x_t"))
_SPARSE_SPEC = InputSpec(
    name="psn_sparse", shape=(PSN_FRAMES, PSN_SIZE, PSN_SIZE),
    description=("RPCA sparse part E after TIM to 150 frames, 16 uniformly sampled frames "
                 "(1, 11, ..., 141, 150), 112x112 grey, in grey levels"))

register_model(ModelSpec(
    name="psn",
    constructor=PSN,
    inputs=(_SPARSE_SPEC, _FRAMES_SPEC),
    defaults=_PSN_DEFAULTS,
    paper_parameter_count=torch_parameter_count,
    reference=_REFERENCE,
    options=(
        ModelOption("streams", STREAMS, "both",
                    "ablation: both sub-networks (PSN), or spatial / temporal alone "
                    "(PSN_spatial, PSN_temporal)"),
        ModelOption("fusion", FUSIONS, "add",
                    "element-wise addition (the paper's) or concatenation (Table 9)"),
        ModelOption("tp-one", bool, False,
                    "ablation PSN_tp1: temporal perception coefficient tp = 1 in the TPU"),
        ModelOption("no-conv", bool, False,
                    "ablation PSN_no_conv: a dense 4096 -> 64 layer instead of the 1x1 "
                    "convolution"),
        ModelOption("hidden-size", int, 512,
                    "TPU hidden and output size (not in the paper)"),
    ),
    protocol="kfold",
    scheme="objective-4",
))
