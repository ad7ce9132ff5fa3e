"""Optimizers, learning-rate schedules and gradient clipping.

An optimizer holds a list of ``coursekit.nn.Parameter`` objects. After the
backward pass has filled each ``p.grad``, ``optimizer.step()`` updates every
``p.data`` in place; parameters whose ``grad`` is None are skipped. The update
rules, hyperparameter names and defaults are those of ``torch.optim``, and each
step matches torch's step for the same gradients.

Notation in the docstrings: g is the gradient, t the step count (1, 2, ...),
lr the learning rate, wd the weight decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from coursekit.nn import Module, Parameter

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "Optimizer",
    "RMSprop",
    "StepLR",
    "clip_grad_norm_",
    "clip_grad_value_",
]


def _as_parameter_list(params: Parameter | Iterable[Parameter], name: str = "params"):
    """Turn a Parameter or an iterable of them into a list, with a clear error otherwise."""
    if isinstance(params, Module):
        raise TypeError(f"{name} must be parameters, not a Module: pass model.parameters()")
    if isinstance(params, Parameter):
        return [params]
    if isinstance(params, torch.Tensor):
        raise TypeError(
            f"{name} must be coursekit.nn.Parameter objects, got a torch.Tensor of shape "
            f"{tuple(params.shape)}: wrap it as Parameter(tensor)"
        )
    try:
        params = list(params)
    except TypeError:
        raise TypeError(
            f"{name} must be a Parameter or an iterable of Parameters, got {type(params).__name__}"
        ) from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}[{i}] must be a coursekit.nn.Parameter, got {type(p).__name__}")
    return params


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0.0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class Optimizer:
    """Base class: keeps the parameters, the learning rate and a state dict per parameter.

    Subclasses implement ``update(p, grad, state)``, the rule for one parameter;
    ``state`` is that parameter's own dict (momentum buffers, step counts, ...).
    """

    hyperparameter_names: tuple[str, ...] = ("lr",)

    def __init__(self, params: Parameter | Iterable[Parameter], lr: float) -> None:
        self.params: list[Parameter] = _as_parameter_list(params)
        if not self.params:
            raise ValueError("params is empty: the optimizer got no parameters to update")
        _check_non_negative(lr=lr)
        self.lr = float(lr)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (set to None by default, or to zeros), as ``Module.zero_grad``."""
        for p in self.params:
            p.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        for i, (p, state) in enumerate(zip(self.params, self.state, strict=True)):
            if p.grad is None:
                continue
            if p.grad.shape != p.data.shape:
                raise ValueError(
                    f"params[{i}]: grad has shape {tuple(p.grad.shape)} but data has shape "
                    f"{tuple(p.data.shape)}"
                )
            self.update(p, p.grad, state)

    def update(self, p: Parameter, grad: torch.Tensor, state: dict[str, Any]) -> None:
        """Update ``p.data`` in place from ``grad``; implemented by each optimizer."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter state (copied), for checkpointing."""
        return {
            "hyperparameters": {name: getattr(self, name) for name in self.hyperparameter_names},
            "state": [
                {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                for s in self.state
            ],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned; the parameter count must match."""
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(
                f"state_dict has state for {len(states)} parameters, the optimizer has "
                f"{len(self.params)}"
            )
        for name, value in state_dict["hyperparameters"].items():
            if name not in self.hyperparameter_names:
                raise ValueError(
                    f"unexpected hyperparameter {name!r} for {type(self).__name__}; "
                    f"expected one of {self.hyperparameter_names}"
                )
            setattr(self, name, value)
        self.state = [
            {
                k: v.to(device=p.data.device).clone() if isinstance(v, torch.Tensor) else v
                for k, v in s.items()
            }
            for p, s in zip(self.params, states, strict=True)
        ]

    def __repr__(self) -> str:
        settings = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.hyperparameter_names)
        return f"{type(self).__name__}({len(self.params)} parameters, {settings})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay.

    Update rule (as ``torch.optim.SGD``)::

        g = g + wd * p                          (L2 weight decay)
        v = g                       at t = 1    (momentum buffer)
        v = momentum * v + (1 - dampening) * g  after that
        d = g + momentum * v   if nesterov, else d = v     (d = g without momentum)
        p = p - lr * d

    Momentum averages recent gradients, so steps grow along directions where the
    gradient keeps its sign and cancel where it oscillates. Nesterov's version
    applies the momentum step first and takes the gradient "ahead".
    """

    hyperparameter_names = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(
        self,
        params: Parameter | Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_non_negative(momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0, got momentum={momentum}, "
                f"dampening={dampening}"
            )
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weight_decay = weight_decay

    def update(self, p: Parameter, grad: torch.Tensor, state: dict[str, Any]) -> None:
        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * p.data
        if self.momentum != 0.0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = grad.clone()
                state["momentum_buffer"] = buffer
            else:
                buffer.mul_(self.momentum).add_(grad, alpha=1.0 - self.dampening)
            grad = grad + self.momentum * buffer if self.nesterov else buffer
        p.data.add_(grad, alpha=-self.lr)


class RMSprop(Optimizer):
    """RMSprop: divide each gradient by a running root-mean-square of its recent values.

    Update rule (as ``torch.optim.RMSprop``, not centered)::

        g = g + wd * p
        s = alpha * s + (1 - alpha) * g^2        (s starts at 0)
        u = g / (sqrt(s) + eps)
        b = momentum * b + u, p = p - lr * b     with momentum (b starts at 0)
        p = p - lr * u                           without

    Each coordinate gets its own step size lr / sqrt(s): steep, noisy directions
    are slowed down and flat ones sped up.
    """

    hyperparameter_names = ("lr", "alpha", "eps", "weight_decay", "momentum")

    def __init__(
        self,
        params: Parameter | Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_non_negative(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        self.alpha = alpha
        self.eps = eps
        self.weight_decay = weight_decay
        self.momentum = momentum

    def update(self, p: Parameter, grad: torch.Tensor, state: dict[str, Any]) -> None:
        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * p.data
        if not state:
            state["square_avg"] = torch.zeros_like(p.data)
            if self.momentum > 0.0:
                state["momentum_buffer"] = torch.zeros_like(p.data)
        square_avg = state["square_avg"]
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1.0 - self.alpha)
        step = grad / (square_avg.sqrt() + self.eps)
        if self.momentum > 0.0:
            buffer = state["momentum_buffer"]
            buffer.mul_(self.momentum).add_(step)
            step = buffer
        p.data.add_(step, alpha=-self.lr)


class Adam(Optimizer):
    """Adam: momentum (first moment) plus RMSprop scaling (second moment), bias-corrected.

    Update rule (as ``torch.optim.Adam``)::

        g = g + wd * p                                  (L2 decay, decoupled_weight_decay=False)
        p = p - lr * wd * p                             (decoupled_weight_decay=True, AdamW)
        m = beta1 * m + (1 - beta1) * g                 (m, v start at 0)
        v = beta2 * v + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    Bias correction: unrolling m from m_0 = 0 gives
    m_t = (1 - beta1) * sum_{k=1..t} beta1^(t-k) g_k. If the gradients have a
    steady mean E[g], then E[m_t] = E[g] * (1 - beta1) * sum_{k=0..t-1} beta1^k
    = E[g] * (1 - beta1^t). Early on m_t is biased towards 0 (its starting value);
    dividing by (1 - beta1^t) removes that bias, and likewise for v with beta2.

    Weight decay: with the L2 form the decay term passes through the adaptive
    scaling, so parameters with large gradients are decayed less. The decoupled
    form (AdamW, Loshchilov and Hutter) shrinks p directly by lr * wd * p.
    """

    hyperparameter_names = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")

    def __init__(
        self,
        params: Parameter | Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(params, lr)
        beta1, beta2 = betas
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")
        _check_non_negative(eps=eps, weight_decay=weight_decay)
        self.betas = (float(beta1), float(beta2))
        self.eps = eps
        self.weight_decay = weight_decay
        self.decoupled_weight_decay = decoupled_weight_decay

    def update(self, p: Parameter, grad: torch.Tensor, state: dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        if self.weight_decay != 0.0:
            if self.decoupled_weight_decay:
                p.data.mul_(1.0 - self.lr * self.weight_decay)
            else:
                grad = grad + self.weight_decay * p.data
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p.data)
            state["exp_avg_sq"] = torch.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        denominator = v.sqrt() / math.sqrt(bias_correction2) + self.eps
        p.data.addcdiv_(m, denominator, value=-self.lr / bias_correction1)


class AdamW(Adam):
    """Adam with decoupled weight decay (default wd = 0.01), as ``torch.optim.AdamW``."""

    def __init__(
        self,
        params: Parameter | Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)


class LRScheduler:
    """Base class of learning-rate schedules: ``step()`` once per epoch sets ``optimizer.lr``.

    The schedule is a closed-form function ``lr_at(epoch)`` of the epoch count,
    starting from the optimizer's learning rate at construction (``base_lr``).
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a coursekit.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self.optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:
        """The learning rate for a given epoch; implemented by each schedule."""
        raise NotImplementedError(f"{type(self).__name__} must implement lr_at()")

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rate."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last step, in a list as in torch (one group here)."""
        return [self.optimizer.lr]


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    lr(epoch) = base_lr * gamma ^ floor(epoch / step_size)
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"step_size must be a positive integer, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Follow half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs.

    lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    Past ``T_max`` the cosine rises again, as in torch.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        if T_max <= 0:
            raise ValueError(f"T_max must be > 0, got {T_max}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        cosine = (1.0 + math.cos(math.pi * epoch / self.T_max)) / 2.0
        return self.eta_min + (self.base_lr - self.eta_min) * cosine


def _grads(params: Parameter | Iterable[Parameter]) -> list[torch.Tensor]:
    return [p.grad for p in _as_parameter_list(params) if p.grad is not None]


@torch.no_grad()
def clip_grad_norm_(
    params: Parameter | Iterable[Parameter], max_norm: float, eps: float = 1e-6
) -> torch.Tensor:
    """Rescale all gradients together so that their global L2 norm is at most ``max_norm``.

    total = sqrt(sum over parameters of sum(g^2))
    g = g * min(1, max_norm / (total + eps))

    Every gradient is scaled by the same factor, so the direction of the full
    gradient is kept and only its length is limited. Returns ``total``, the norm
    before clipping, as a 0-dim tensor (as ``torch.nn.utils.clip_grad_norm_``).
    Parameters whose grad is None are skipped.
    """
    _check_non_negative(max_norm=max_norm)
    grads = _grads(params)
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    norms = torch.stack([torch.linalg.vector_norm(g).to(device) for g in grads])
    total = torch.linalg.vector_norm(norms)
    scale = torch.clamp(max_norm / (total + eps), max=1.0)
    for g in grads:
        g.mul_(scale.to(device=g.device, dtype=g.dtype))
    return total


@torch.no_grad()
def clip_grad_value_(params: Parameter | Iterable[Parameter], clip_value: float) -> None:
    """Clamp every gradient entry to [-clip_value, clip_value] in place.

    Unlike clipping by norm, this can change the gradient's direction.
    """
    _check_non_negative(clip_value=clip_value)
    for g in _grads(params):
        g.clamp_(-clip_value, clip_value)
