"""Classification losses as pure functions of logits and targets.

:func:`focal_loss` is the multi-class focal loss MERSiamC3D trains with
([1]_, eq. 11), after Lin et al. ([2]_, eq. 10); :func:`alpha_from_counts`
gives its per-class balance factors from the class sizes of a training set.

Eq. 11 as printed, ``-sum_i alpha_i (1 - y_i * p_i)^gamma log p_i`` with
``y`` one-hot, would also add ``-alpha_i log p_i`` for every class the sample
is *not* in (there ``y_i = 0`` and the factor is 1), a term that pulls all
classes' probabilities up and is smallest at the uniform prediction. It is
read as the one-hot sum of eq. 9's cross-entropy, in which ``y_i`` also
multiplies the logarithm, i.e. per sample ``-alpha_t (1 - p_t)^gamma log
p_t`` with ``t`` the true class: eq. 10 with a per-class ``alpha``. With
``gamma = 0`` and all ``alpha = 1`` it is the cross-entropy.

References
----------
.. [1] S. Zhao, H. Tao, Y. Zhang, T. Xu, K. Zhang, Z. Hao, E. Chen, "A
   two-stage 3D CNN based learning method for spontaneous micro-expression
   recognition" (MERSiamC3D), 2021, Sec. 3.2.2.2 and 5.2.
.. [2] T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for
   Dense Object Detection", ICCV 2017.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._validate import check_int, check_option, check_range
from ..errors import ParameterError

__all__ = ["focal_loss", "alpha_from_counts"]

_REDUCTIONS = ("mean", "weighted", "sum", "none")


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *,
               alpha: torch.Tensor | Sequence[float] | float | None = None,
               gamma: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """Multi-class focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` (eq. 11).

    Parameters
    ----------
    logits : torch.Tensor, shape (B, C)
        Unnormalised scores; ``p = softmax(logits)`` (eq. 9).
    target : torch.Tensor of int, shape (B,)
        True class of each sample, in ``[0, C)``.
    alpha : tensor or sequence of C floats, or float, optional
        Balance factor per class (a float: the same for all); None: 1.
    gamma : float
        Focusing exponent (2 in [1]_ and [2]_); 0 gives the (weighted)
        cross-entropy.
    reduction : {"mean", "weighted", "sum", "none"}
        ``"mean"``: average over the batch; ``"weighted"``: sum divided by
        the sum of the samples' ``alpha_t`` (what ``F.cross_entropy`` does
        with ``weight=``); ``"sum"``; ``"none"``: per-sample ``(B,)``.

    Returns
    -------
    torch.Tensor
        Scalar, or ``(B,)`` for ``reduction="none"``; computed in the
        logits' dtype (log-softmax, so stable for large logits).

    Raises
    ------
    ParameterError
        For a negative ``gamma`` or ``alpha``, an ``alpha`` of another
        length than C, or targets outside ``[0, C)``.
    """
    check_option("reduction", reduction, _REDUCTIONS)
    check_range("gamma", float(gamma), 0.0)
    if logits.ndim != 2:
        raise ParameterError(
            f"Invalid shape for the 'logits' parameter: expected (B, C), but got "
            f"{tuple(logits.shape)}."
        )
    n_classes = logits.shape[1]
    target = target.long()
    if target.shape != logits.shape[:1]:
        raise ParameterError(
            f"Invalid shape for the 'target' parameter: expected ({logits.shape[0]},), but "
            f"got {tuple(target.shape)}."
        )
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
        raise ParameterError(
            f"Invalid value for the 'target' parameter: classes must lie in [0, {n_classes}), "
            f"but got {int(target.min())}..{int(target.max())}."
        )
    logp = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    if alpha is None:
        a = torch.ones_like(logp)
    else:
        table = torch.as_tensor(alpha, dtype=logp.dtype, device=logp.device)
        if table.ndim == 0:
            table = table.expand(n_classes)
        if table.shape != (n_classes,):
            raise ParameterError(
                f"Invalid value for the 'alpha' parameter: expected one factor per class "
                f"({n_classes}), but got {tuple(table.shape)}."
            )
        if bool((table < 0).any()):
            raise ParameterError(
                f"Invalid value for the 'alpha' parameter: factors must be >= 0, but got "
                f"{table.tolist()}."
            )
        a = table[target]
    p = logp.exp()
    # (1 - p)^0 is 1 even where p == 1; pow keeps that (0 ** 0 == 1).
    values = -a * (1.0 - p).clamp_min(0.0).pow(float(gamma)) * logp
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "weighted":
        return values.sum() / a.sum().clamp_min(torch.finfo(values.dtype).tiny)
    return values.mean()


def alpha_from_counts(labels: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class focal-loss factors from class sizes: ``alpha_c = N_max / N_c``.

    [1]_ (Sec. 5.2) finds its best ``alpha`` close to the ratio of the
    largest to the smallest class; giving each class the ratio of the
    largest class to it makes the largest class 1 and the smallest that
    ratio. A class absent from ``labels`` gets 1 (it contributes no term).

    Parameters
    ----------
    labels : sequence of int, shape (N,)
        Class of every training sample, in ``[0, n_classes)``.
    n_classes : int

    Returns
    -------
    numpy.ndarray, float64, shape (n_classes,)
    """
    n_classes = check_int("n_classes", n_classes, 1)
    y = np.asarray(labels, dtype=np.int64).ravel()
    if y.size == 0:
        raise ParameterError("Cannot derive focal-loss factors from an empty label set.")
    if y.min() < 0 or y.max() >= n_classes:
        raise ParameterError(
            f"Invalid value for the 'labels' parameter: classes must lie in [0, {n_classes}), "
            f"but got {int(y.min())}..{int(y.max())}."
        )
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    alpha = np.ones(n_classes)
    present = counts > 0
    alpha[present] = counts.max() / counts[present]
    return alpha
