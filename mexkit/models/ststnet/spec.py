"""STSTNet's registry entry: inputs, the paper's training settings, options.

Where each setting comes from (Liong et al., FG 2019, and the authors' public
code):

- layers: Table I (three 3x3 convolutions of 3, 5, 8 filters, 'same' padding;
  3x3 max-pooling, stride 3; 2x2 average pooling; one dense layer of 400
  inputs); ReLU, batch norm and dropout 0.5 after each convolution in the
  authors' MATLAB network (``STSTNet.mat``) and PyTorch port (``main.py``);
- input: the 28x28 u, v, strain image, 0..255 per clip, with the training
  set's mean image subtracted (``STSTNet.mat``'s image input layer,
  ``zerocenter``; :mod:`mexkit.models.ststnet.training`);
- initial weights: MATLAB R2018b's default, N(0, 0.01^2) weights and zero
  biases (``main.m`` was tested on R2018b; the 'glorot' default came later);
- optimiser Adam, initial learning rate 5e-5 (paper, ``main.m``), mini-batch
  256 (``main.m``, ``main.py``), 500 epochs (paper, ``main.m``; the PyTorch
  port trains 800); L2 regularisation 1e-4 (MATLAB's ``trainingOptions``
  default, which ``main.m`` does not change; the port uses none);
- protocol: leave-one-subject-out over the 68 subjects of the composite; the
  published UF1 0.7353 / UAR 0.7605 is the MATLAB network after the last of
  its 500 epochs, tested once per fold: a fixed number of epochs, nothing
  selected on the test subject (``main.m`` trains, then classifies the test
  images once; the authors' MATLAB log, ``STSTNet_logfile.txt``, gives these
  figures to the fourth digit).  The PyTorch port does the same with 800
  epochs and reports UF1 0.7209 / UAR 0.725.

Not reproduced: MATLAB's ``trainNetwork`` with its default ``'Shuffle',
'once'`` draws the sample order once and drops the samples that do not fill a
last mini-batch of 256 in every epoch (so each fold trains on the same 256 of
its ~375 training images); mexkit's ``fit`` draws a new order every epoch and
keeps the last, smaller batch.  MATLAB also finalises the batch-norm
statistics over the training set after training, where ``fit`` keeps running
estimates.
"""
from __future__ import annotations

from .._nn import torch_parameter_count
from ..registry import InputSpec, ModelOption, ModelSpec, TrainDefaults, register_model
from .network import INITIALISATIONS, STSTNet
from .training import INPUT_NORMS, fit_fold

register_model(ModelSpec(
    name="ststnet",
    constructor=STSTNet,
    inputs=(InputSpec("flow_image", (3, 28, 28),
                      "onset-apex strain, v, u (28x28, 0..255 per clip; the MEGC 2019 "
                      "optical-flow release as the authors' code reads it)"),),
    defaults=TrainDefaults(
        optimizer="adam", lr=5e-5, epochs=500, batch_size=256, weight_decay=1e-4,
        loss="ce", class_balance=None, augmentation=None,
        notes=("Paper and main.m: Adam, lr 5e-5, 500 epochs, mini-batch 256, LOSO, the last "
               "epoch's network tested once per fold (the published UF1 0.7353 / UAR "
               "0.7605); L2 1e-4 is MATLAB's default, which main.m keeps; STSTNet.mat's "
               "input layer subtracts the training set's mean image; R2018b starts from "
               "N(0, 0.01^2) weights. The authors' PyTorch port: 800 epochs, no L2, no mean "
               "image, PyTorch's initialisation, convolutions padded 2 (UF1 0.7209).")),
    paper_parameter_count=torch_parameter_count,
    reference=("S.-T. Liong, Y. S. Gan, J. See, H.-Q. Khor, Y.-C. Huang, Shallow Triple "
               "Stream Three-dimensional CNN (STSTNet) for Micro-expression Recognition, "
               "FG 2019"),
    paper_reported={3: 1670},
    options=(
        ModelOption("padding", int, 1,
                    "zero padding of the 3x3 convolutions: 1 as the paper's 'same' "
                    "(Table I), 2 as the authors' PyTorch port"),
        ModelOption("init", INITIALISATIONS, "matlab",
                    "initial weights: matlab (R2018b's N(0, 0.01^2), zero biases; main.m) "
                    "or torch (PyTorch's defaults; the authors' port)"),
        ModelOption("input-norm", INPUT_NORMS, "zerocenter",
                    "subtract the training set's mean image (STSTNet.mat's input layer) "
                    "or nothing (the authors' PyTorch port)", constructor=False),
    ),
    trainer=fit_fold,
    protocol="loso", scheme=None,
))
