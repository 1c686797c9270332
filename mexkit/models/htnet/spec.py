"""HTNet's registry entry: inputs, the official code's training settings.

From the authors' ``main_HTNet.py`` (the paper, Wang et al. 2024, gives the
architecture but not these): Adam, learning rate 5e-5, batch 256, 800 epochs,
cross-entropy, no weight decay, no augmentation; leave-one-subject-out over
the composite's 68 subjects.  ``main_HTNet.py`` tests the held-out subject
after every epoch and keeps, for each subject, the predictions of its best
test epoch (``mexkit train --select-on-test`` reproduces that, and labels the
figure as such); mexkit's default keeps the last epoch's network, chosen
without looking at the test subject.
"""
from __future__ import annotations

from .._nn import torch_parameter_count
from ..registry import InputSpec, ModelSpec, TrainDefaults, register_model
from .network import HTNet

register_model(ModelSpec(
    name="htnet",
    constructor=HTNet,
    inputs=(InputSpec("facial_areas", (3, 28, 28),
                      "four 14x14 areas of the 28x28 strain, v, u image around the apex "
                      "face's eyes and mouth corners (0..255 per clip)"),),
    defaults=TrainDefaults(
        optimizer="adam", lr=5e-5, epochs=800, batch_size=256, weight_decay=0.0,
        loss="ce", class_balance=None, augmentation=None,
        notes=("main_HTNet.py: Adam, lr 5e-5, batch 256, 800 epochs, LOSO; its published "
               "UF1 0.8603 / UAR 0.8475 keeps each subject's best test epoch.")),
    paper_parameter_count=torch_parameter_count,
    reference=("Z. Wang, K. Zhang, W. Luo, R. Sankaranarayana, HTNet for micro-expression "
               "recognition, Neurocomputing 602 (2024) 128196"),
    protocol="loso", scheme=None,
))
