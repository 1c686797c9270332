"""Torch pieces several model networks share: the residual block, He
initialisation of a ResNet, the check of a batched input, and parameter
counts as Keras and PyTorch make them.

Pure torch: no training code, no registry (the networks of
:mod:`mexkit.models` import this and nothing else of mexkit but errors and
validation helpers).

References
----------
.. [1] K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
   Recognition", CVPR 2016.
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Delving Deep into Rectifiers:
   Surpassing Human-Level Performance on ImageNet Classification", ICCV 2015.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelInputError

__all__ = ["BasicBlock", "init_resnet", "check_input", "count_parameters",
           "torch_parameter_count"]


class BasicBlock(nn.Module):
    """Residual block of two 3x3 convolutions (He et al. 2016, Fig. 2).

    ``(B, in, H, W)`` -> ``(B, out, H / stride, W / stride)``; a 1x1
    convolution with batch norm projects the shortcut when the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


def init_resnet(module: nn.Module) -> None:
    """He-normal (fan out) convolutions, batch norm weights 1 and biases 0, in place."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_input(model_name: str, input_name: str, x: Any,
                shape: tuple[int, ...]) -> torch.Tensor:
    """Check one batched model input and return it as a floating tensor.

    Parameters
    ----------
    model_name, input_name : str
        Named in the error message.
    x : torch.Tensor
        Batched input, expected shape ``(B, *shape)``.
    shape : tuple of int
        Per-sample shape.

    Returns
    -------
    torch.Tensor
        ``x`` itself (float16/32/64 are accepted; the caller casts).

    Raises
    ------
    ModelInputError
        If ``x`` is missing, not a floating tensor, or of another shape; the
        message names the model, the input and the expected shape.
    """
    expected = "(B, " + ", ".join("T" if s is None else str(s) for s in shape) + ")"
    if x is None:
        raise ModelInputError(
            f"Model {model_name!r} needs the input {input_name!r} of shape {expected}, "
            "but it was not given."
        )
    if not isinstance(x, torch.Tensor):
        raise ModelInputError(
            f"Model {model_name!r}: input {input_name!r} must be a torch.Tensor of shape "
            f"{expected}, but got {type(x).__name__}."
        )
    if not torch.is_floating_point(x):
        raise ModelInputError(
            f"Model {model_name!r}: input {input_name!r} must be floating point "
            f"(float32 or float64), but got dtype {x.dtype}."
        )
    fits = x.ndim == len(shape) + 1 and all(
        want is None or got == want for got, want in zip(x.shape[1:], shape, strict=False))
    if not fits or x.shape[0] == 0:
        raise ModelInputError(
            f"Model {model_name!r}: input {input_name!r} must have shape {expected} with "
            f"B >= 1, but got shape {tuple(x.shape)}."
        )
    return x


def count_parameters(model: nn.Module, *, keras_style: bool = True,
                     trainable_only: bool = False) -> int:
    """Count a model's parameters.

    Parameters
    ----------
    model : torch.nn.Module
    keras_style : bool
        Count as Keras' ``model.summary()`` does: batch-norm moving mean and
        moving variance count as (non-trainable) parameters, the
        ``num_batches_tracked`` counter does not, and an LSTM has one bias
        vector per layer (PyTorch keeps two, ``bias_ih`` and ``bias_hh``,
        whose sum is the single bias of the textbook LSTM; Caffe also keeps
        one). With ``keras_style=False``, the plain PyTorch count
        ``sum(p.numel() for p in model.parameters())``.
    trainable_only : bool
        Count only parameters with ``requires_grad`` (moving statistics are
        then excluded, as they are not trainable).

    Returns
    -------
    int
    """
    total = sum(p.numel() for p in model.parameters()
                if p.requires_grad or not trainable_only)
    if not keras_style:
        return total
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not trainable_only:
            if module.running_mean is not None:
                total += module.running_mean.numel() + module.running_var.numel()
        if isinstance(module, nn.LSTM) and module.bias:
            for name, p in module.named_parameters(recurse=False):
                if name.startswith("bias_hh") and (p.requires_grad or not trainable_only):
                    total -= p.numel()
    return total


def torch_parameter_count(model: nn.Module) -> int:
    """PyTorch's parameter count, ``sum(p.numel() for p in model.parameters())``."""
    return count_parameters(model, keras_style=False)
