"""Weight initialization from variance arguments (Xavier/Glorot and He/Kaiming).

Every function fills a tensor in place and returns it, like ``torch.nn.init``.

Layout. A linear weight here is laid out ``(fan_in, fan_out)``, as in
``F.linear_forward`` (out = x @ w + b). ``torch.nn.Linear`` stores the transpose,
``(out, in)``, so for 2-D weights our fans are the transpose of torch's. A
convolution weight ``(F, C, KH, KW)`` has the same layout as torch's:
fan_in = C * KH * KW and fan_out = F * KH * KW.

Why the variance matters. For one unit y = sum_i w_i x_i with independent,
zero-mean w and x: Var[y] = fan_in * Var[w] * Var[x]. The forward signal keeps
its size when Var[w] = 1 / fan_in; the backward signal dx = dy @ w.T keeps its
size when Var[w] = 1 / fan_out. Xavier/Glorot takes the compromise
Var[w] = 2 / (fan_in + fan_out). A ReLU zeroes half of its inputs, halving the
second moment, so He/Kaiming doubles it: Var[w] = 2 / fan_in.

A uniform distribution on [-a, a] has variance a^2 / 3, so a = sqrt(3 * Var[w]).

Generators. Each function takes an optional ``torch.Generator``. When the
generator lives on another device than the tensor (say, a CPU generator and a
CUDA tensor), the numbers are drawn on the generator's device and copied over,
so one seed gives the same weights on every device.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "calculate_fan_in_and_fan_out",
    "he_normal_",
    "he_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


def calculate_fan_in_and_fan_out(w: torch.Tensor) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight tensor.

    2-D ``(D_in, D_out)`` (our linear layout): fan_in = D_in, fan_out = D_out.
    4-D ``(F, C, KH, KW)`` (convolution): fan_in = C * KH * KW, fan_out = F * KH * KW.
    Any other rank >= 3 is read like a convolution weight ``(out, in, *kernel)``.
    """
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if w.dim() < 2:
        raise ValueError(
            f"fan_in and fan_out need a weight with at least 2 dimensions, got w of shape "
            f"{tuple(w.shape)}"
        )
    if w.dim() == 2:
        return w.shape[0], w.shape[1]
    receptive_field = math.prod(w.shape[2:])
    return w.shape[1] * receptive_field, w.shape[0] * receptive_field


def _check_floating(w: torch.Tensor, name: str = "w") -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {w.dtype}")


def _draw(w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The tensor to fill: ``w`` itself, or a scratch tensor on the generator's device."""
    if generator is None or generator.device == w.device:
        return w
    return torch.empty(w.shape, dtype=w.dtype, device=generator.device)


@torch.no_grad()
def uniform_(
    w: torch.Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``w`` with draws from the uniform distribution U(a, b); Var = (b - a)^2 / 12."""
    _check_floating(w)
    target = _draw(w, generator)
    target.uniform_(a, b, generator=generator)
    if target is not w:
        w.copy_(target)
    return w


@torch.no_grad()
def normal_(
    w: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``w`` with draws from the normal distribution N(mean, std^2)."""
    _check_floating(w)
    target = _draw(w, generator)
    target.normal_(mean, std, generator=generator)
    if target is not w:
        w.copy_(target)
    return w


@torch.no_grad()
def zeros_(w: torch.Tensor) -> torch.Tensor:
    """Fill ``w`` with zeros (the usual start for biases)."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    return w.zero_()


@torch.no_grad()
def ones_(w: torch.Tensor) -> torch.Tensor:
    """Fill ``w`` with ones (the usual start for a normalization's scale gamma)."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    return w.fill_(1.0)


def _xavier_std(w: torch.Tensor, gain: float) -> float:
    fan_in, fan_out = calculate_fan_in_and_fan_out(w)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_uniform_(
    w: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Xavier/Glorot uniform: w ~ U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).

    This gives Var[w] = gain^2 * 2 / (fan_in + fan_out), the compromise between
    keeping the forward variance (Var[w] = 1/fan_in) and the backward variance
    (Var[w] = 1/fan_out). Suited to tanh and sigmoid layers.
    """
    _check_floating(w)
    bound = math.sqrt(3.0) * _xavier_std(w, gain)
    return uniform_(w, -bound, bound, generator=generator)


def xavier_normal_(
    w: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Xavier/Glorot normal: w ~ N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check_floating(w)
    return normal_(w, 0.0, _xavier_std(w, gain), generator=generator)


def _he_std(w: torch.Tensor, mode: str) -> float:
    fan_in, fan_out = calculate_fan_in_and_fan_out(w)
    if mode == "fan_in":
        fan = fan_in
    elif mode == "fan_out":
        fan = fan_out
    else:
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return math.sqrt(2.0 / fan)


def he_uniform_(
    w: torch.Tensor, mode: str = "fan_in", generator: torch.Generator | None = None
) -> torch.Tensor:
    """He/Kaiming uniform for ReLU layers: w ~ U(-a, a) with a = sqrt(6 / fan_in).

    Var[w] = 2 / fan_in: a ReLU passes on only half of the second moment, and the
    factor 2 gives it back, so activations keep their size through depth.
    ``mode="fan_out"`` uses 2 / fan_out instead, which keeps the backward
    gradients' size. Same as ``torch.nn.init.kaiming_uniform_(..., nonlinearity="relu")``
    on the transposed layout.
    """
    _check_floating(w)
    bound = math.sqrt(3.0) * _he_std(w, mode)
    return uniform_(w, -bound, bound, generator=generator)


def he_normal_(
    w: torch.Tensor, mode: str = "fan_in", generator: torch.Generator | None = None
) -> torch.Tensor:
    """He/Kaiming normal for ReLU layers: w ~ N(0, 2 / fan_in) (or 2 / fan_out)."""
    _check_floating(w)
    return normal_(w, 0.0, _he_std(w, mode), generator=generator)
