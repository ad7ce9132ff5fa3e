"""References for grading: gradients from torch.autograd on fresh float64 inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def autograd_grads(
    f: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    dout: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, ...]:
    """The gradients of ``sum(f(*inputs) * dout)`` with respect to every input.

    That is what a backward pass receiving the upstream gradient ``dout`` must
    return. The inputs are copied, so the caller's tensors never require grad.
    """
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    with torch.enable_grad():
        out = f(*leaves)
        dout = torch.as_tensor(dout, dtype=out.dtype).expand_as(out)
        grads = torch.autograd.grad(out, leaves, grad_outputs=dout, allow_unused=True)
    return tuple(
        torch.zeros_like(leaf) if g is None else g.detach()
        for leaf, g in zip(leaves, grads, strict=True)
    )


def describe_shapes(**tensors: torch.Tensor) -> str:
    """ "x (4, 3), w (3, 5)": the shapes of the named tensors, for a test case's description."""
    return ", ".join(f"{name} {tuple(t.shape)}" for name, t in tensors.items())


_warm = False


def warm_up() -> None:
    """Run torch.autograd once in this process (its first use costs about a second).

    Called before the first check() forks: a forked child inherits the warm state,
    so each check() takes a fraction of a second instead of paying again. Touches
    no random generator and restores grad mode.
    """
    global _warm
    if _warm:
        return
    x = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(2, 3)
    y = torch.tensor([0, 2])
    autograd_grads(
        lambda x: torch.nn.functional.cross_entropy(torch.relu(x) @ torch.tanh(x.T) @ x, y), [x]
    )
    _warm = True
