"""Adam and SGD for parameters on the CPU, without torch.optim's start-up cost.

Constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` (its
methods are wrapped by ``torch._disable_dynamo``, which imports the compiler
stack on first call): about 1.2 s of CPU per process, more than a whole fold
of a small network such as MEAN takes to train on the CPU, paid again by
every fold worker. :class:`Adam` and :class:`SGD` here apply the same updates
as torch's single-tensor implementations (what ``torch.optim.Adam`` and
``torch.optim.SGD`` run for CPU tensors with their default options): the same
tensor operations in the same order, so the parameters and the optimizer
state are bit-identical step by step. Their ``state_dict`` has torch's layout
(the same keys, ``step`` a float32 tensor on the CPU), so a checkpoint
written by one loads into the other.

Only the options mexkit's training uses are supported: ``lr``,
``weight_decay`` (L2, added to the gradient), Adam's ``betas`` and ``eps``,
SGD's ``momentum`` and ``dampening``; no AMSGrad, Nesterov, maximisation,
complex or sparse parameters.

References
----------
.. [1] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization",
   ICLR 2015.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = ["Adam", "SGD", "Optimizer", "make_optimizer"]

#: Options of torch's optimizers that must keep their default for these to match them.
_FIXED = {"amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
          "differentiable": False, "fused": None, "decoupled_weight_decay": False,
          "nesterov": False}


class _Optimizer:
    """What :func:`mexkit.learn.train.fit` and the checkpoints use of an optimizer."""

    #: Hyperparameters of a parameter group, in torch's order, with their defaults.
    defaults: dict[str, Any] = {}

    def __init__(self, params: Iterable[torch.nn.Parameter], **options: Any) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        group = {key: options.get(key, value) for key, value in self.defaults.items()}
        group["params"] = params
        self.param_groups: list[dict[str, Any]] = [group]
        self.state: dict[torch.nn.Parameter, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: state by parameter index, groups with their parameters' indices."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state saved by this class or by its torch counterpart.

        Raises
        ------
        ValueError
            When the groups or their sizes differ from this optimizer's, or the
            state was made with an option these do not implement.
        """
        saved = list(state_dict["param_groups"])
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        by_index: dict[int, torch.nn.Parameter] = {}
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
            for key, value in _FIXED.items():
                if key in theirs and theirs[key] != value:
                    raise ValueError(f"the saved optimizer used {key}={theirs[key]!r}, "
                                     "which mexkit's optimizers do not implement")
            by_index.update(zip(theirs["params"], mine["params"], strict=True))
        self.state = {}
        for pid, values in state_dict["state"].items():
            p = by_index[int(pid)]
            self.state[p] = {
                key: (value.to(device="cpu") if key == "step" else
                      value.to(device=p.device, dtype=p.dtype)
                      if isinstance(value, torch.Tensor) and value.is_floating_point()
                      else value)
                for key, value in values.items()}
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            mine.update({k: v for k, v in theirs.items() if k != "params"})


class Adam(_Optimizer):
    """Adam on CPU parameters, the update of ``torch.optim.Adam`` (single-tensor path),
    each of its operations applied to a group's tensors by one of torch's list
    operations (on the CPU, the same per-tensor operation for each tensor).

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
    betas : (float, float)
    eps : float
    weight_decay : float
        L2 penalty added to the gradient (not decoupled).
    """

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                "differentiable": False, "fused": None, "decoupled_weight_decay": False}

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0) -> None:
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps,
                         weight_decay=weight_decay)

    @torch.no_grad()
    def step(self) -> None:
        # list operations: no Python call per tensor per operation (0.85 -> 0.22 ms a step
        # for MEAN's 14 tensors), the same arithmetic
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if not state:
                    state = self.state[p] = {
                        "step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p,
                                                       memory_format=torch.preserve_format)}
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            torch._foreach_add_(steps, 1)
            if wd != 0:
                grads = torch._foreach_add(grads, params, alpha=wd)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            counts = [s.item() for s in steps]
            denoms = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denoms, [(1 - beta2 ** n) ** 0.5 for n in counts])
            torch._foreach_add_(denoms, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denoms,
                                    [-(lr / (1 - beta1 ** n)) for n in counts])


class SGD(_Optimizer):
    """SGD with momentum on CPU parameters, the update of ``torch.optim.SGD``.

    Parameters
    ----------
    params : iterable of Parameter
    lr, momentum, dampening, weight_decay : float
    """

    defaults = {"lr": 1e-3, "momentum": 0, "dampening": 0, "weight_decay": 0,
                "nesterov": False, "maximize": False, "foreach": None,
                "differentiable": False, "fused": None}

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 momentum: float = 0, dampening: float = 0, weight_decay: float = 0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay)

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            momentum, dampening = group["momentum"], group["dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                if momentum != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.detach().clone()
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                    grad = buf
                p.add_(grad, alpha=-lr)


#: What :func:`make_optimizer` returns: these classes or torch's.
Optimizer = Adam | SGD | torch.optim.Optimizer


def make_optimizer(kind: str, params: list[torch.nn.Parameter], *, lr: float,
                   momentum: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    """``kind`` ("adam" or "sgd") for ``params``: these classes when every parameter is on
    the CPU, torch's (its fused or multi-tensor kernels) on an accelerator."""
    on_cpu = all(p.device.type == "cpu" for p in params)
    adam, sgd = (Adam, SGD) if on_cpu else (torch.optim.Adam, torch.optim.SGD)
    if kind == "adam":
        return adam(params, lr=lr, weight_decay=weight_decay)
    return sgd(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
