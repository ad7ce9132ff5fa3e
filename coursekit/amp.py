"""Mixed precision: a dynamic loss scaler for float16 gradients.

float16 has 5 exponent bits: its largest value is 65504 and its smallest normal
value 2^-14 = 6.1e-5 (subnormals go down to 2^-24 = 6.0e-8, with fewer digits).
Gradients are often far smaller, so in float16 they round to zero. Multiplying
the loss by a scale S multiplies every gradient by S (backprop is linear in
dout), which lifts them into range; dividing by S afterwards, in float32,
gives the true gradients back. Too large an S overflows to inf, so the scale
is adjusted while training (Micikevicius et al. 2018, "Mixed precision training"):

* a step whose gradients hold an inf or NaN is skipped, and S is halved;
* after ``growth_interval`` steps in a row without one, S is doubled.

``LossScaler`` follows ``torch.amp.GradScaler``: the same defaults (initial scale
2^16, growth 2, backoff 0.5, interval 2000) and the same decisions on the same
sequence of overflows. bfloat16 keeps float32's 8 exponent bits (range up to
3.4e38, smallest normal 1.2e-38) with fewer digits, so it needs no scaling.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["LossScaler"]


class LossScaler:
    """Scale the loss's gradient, unscale the parameter gradients, skip steps that overflow.

    One training step::

        scaler = LossScaler()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(scaler.scale(1.0)))  # dout = S instead of 1
        scaler.step(optimizer, params)   # unscale; optimizer.step() unless inf/NaN
        scaler.update()                  # halve S after an overflow, double it after
                                         # growth_interval clean steps

    ``params`` are the parameters whose ``.grad`` the optimizer uses.
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        if not init_scale > 0:
            raise ValueError(f"LossScaler: init_scale must be positive, got {init_scale}")
        if not growth_factor > 1:
            raise ValueError(f"LossScaler: growth_factor must be above 1, got {growth_factor}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"LossScaler: backoff_factor must be in (0, 1), got {backoff_factor}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int):
            raise TypeError(f"LossScaler: growth_interval must be an int, got {growth_interval!r}")
        if growth_interval < 1:
            raise ValueError(f"LossScaler: growth_interval must be >= 1, got {growth_interval}")
        self.scale_value = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.good_steps = 0  # clean steps in a row since the last change of scale
        self.found_inf: bool | None = None  # set by unscale_, used by step and update
        self.skipped = 0  # steps skipped so far

    def get_scale(self) -> float:
        """The current scale S."""
        return self.scale_value

    def scale(self, value: Any) -> Any:
        """``value * S``: pass ``scaler.scale(1.0)`` as the loss's dout (or scale a loss tensor)."""
        return value * self.scale_value

    def unscale_(self, params: Iterable[Any]) -> bool:
        """Divide every ``.grad`` by S, in place; True if any holds an inf or NaN."""
        if self.found_inf is not None:
            raise RuntimeError("LossScaler.unscale_: already called since the last update()")
        inv = 1.0 / self.scale_value
        found = False
        for p in params:
            if p.grad is None:
                continue
            finite = bool(torch.isfinite(p.grad).all())
            found = found or not finite
            p.grad.mul_(inv)
        self.found_inf = found
        return found

    def step(self, optimizer: Any, params: Iterable[Any]) -> bool:
        """Unscale (if not done yet) and take ``optimizer.step()`` unless the gradients overflowed.

        Returns True when the step was taken.
        """
        if self.found_inf is None:
            self.unscale_(params)
        if self.found_inf:
            self.skipped += 1
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Adjust S: backoff after an overflow, growth after ``growth_interval`` clean steps."""
        if self.found_inf is None:
            raise RuntimeError("LossScaler.update: call unscale_() or step() first")
        if self.found_inf:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.good_steps = 0
        self.found_inf = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale_value,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "good_steps": self.good_steps,
        }

    def __repr__(self) -> str:
        return (
            f"LossScaler(scale={self.scale_value:g}, good_steps={self.good_steps}, "
            f"growth_interval={self.growth_interval}, skipped={self.skipped})"
        )
