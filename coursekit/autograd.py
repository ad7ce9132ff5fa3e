"""A small tape-based autograd on tensors, built from the course's own backward functions.

Lessons 01-10 wrote every backward pass by hand as a pair::

    out, cache = F.<op>_forward(*inputs)
    grads      = F.<op>_backward(dout, cache)

An autograd engine only has to *remember* which pair produced which tensor, and later call the
backward halves in reverse order. That is all this module does::

    x = Tensor(torch.randn(4, 3), requires_grad=True)
    w = Tensor(torch.randn(3, 2), requires_grad=True)
    loss = ((x @ w).tanh() ** 2).mean()
    loss.backward()            # fills x.grad and w.grad

**Recording.** Every operation on a ``Tensor`` runs its forward pair on the underlying torch
tensors (``.data``) and, if an input requires a gradient, attaches a ``Node`` to the result
(``result.grad_fn``): the operation's name, its input tensors and its backward step with the
cache. The graph is a DAG of tensors linked through their ``grad_fn``; nothing else is stored.

**Backward.** ``loss.backward()`` orders the graph so that every tensor comes after all the
tensors it was computed from (``topological_order``, with an explicit stack: no recursion, so a
chain of 20,000 operations works), then walks that order backwards. Each node receives the
*complete* gradient of its output, because every consumer of that output came later in the
forward order and so ran earlier in the backward walk, and hands one gradient to each input.
Where a tensor feeds several operations the contributions are **added**.

**Broadcasting.** ``a + b`` with ``a`` (N, D) and ``b`` (D,) copies ``b`` along a new leading
dim; the backward of a copy is a sum, so ``b``'s gradient is ``dout.sum(0)``. ``unbroadcast``
does this for any pair of shapes; every elementwise backward calls it, and the engine checks at
every step that a gradient has exactly the shape of the tensor it belongs to.

**What is kept, as in PyTorch.**

* Leaves (tensors made by ``Tensor(..., requires_grad=True)``) *accumulate*: each
  ``backward()`` adds to ``.grad``. Call ``zero_grad()`` between steps.
* Intermediate tensors get their gradient only while the pass runs; their ``.grad`` stays
  None unless ``retain_grad()`` was called on them first (then it accumulates too).
* After ``backward()`` the nodes drop their caches (the memory the forward pass saved), so a
  second ``backward()`` through the same graph raises RuntimeError, like torch. Pass
  ``retain_graph=True`` to keep them: a second call then adds the same gradients to the
  leaves once more.

**Adding operations.** ``from_pair(forward, backward)`` turns any forward/backward pair into an
operation on ``Tensor``; every ``F`` pair is wrapped this way below (``linear``, ``relu``, ...,
``rnn``), and so are the elementary operations ``+ - * / ** @``, ``sum``, ``exp``, ... whose
pairs are written out in this file. ``Function`` is the same idea in PyTorch's form
(``forward(ctx, ...)``, ``backward(ctx, grad)``, ``apply``), for writing an operation in one
class. ``to_torch(forward, backward)`` hands a pair to PyTorch itself, as a
``torch.autograd.Function``, so that hand-written backward passes run inside torch models.

References: Griewank & Walther (2008), *Evaluating Derivatives*, ch. 3-4 (the reverse mode and
its tape); Baydin et al. (2018), *Automatic differentiation in machine learning: a survey*,
JMLR 18; Paszke et al. (2017), *Automatic differentiation in PyTorch*.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from numbers import Number
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from coursekit import functional as F

__all__ = [
    "Function",
    "Node",
    "Tensor",
    "attention",
    "batchnorm",
    "conv2d",
    "dropout",
    "embedding",
    "from_pair",
    "gelu",
    "is_grad_enabled",
    "layernorm",
    "leaky_relu",
    "linear",
    "lstm",
    "lstm_step",
    "maxpool2d",
    "mse",
    "no_grad",
    "relu",
    "rnn",
    "rnn_step",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
    "to_torch",
    "topological_order",
    "unbroadcast",
]

# ---------------------------------------------------------------------------
# 1. Recording on or off
# ---------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()``."""
    return _grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Within this block, operations record nothing (like ``torch.no_grad``).

    Use it for evaluation and for parameter updates: results do not require grad and keep no
    cache. Works as a decorator too.
    """
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


# ---------------------------------------------------------------------------
# 2. The graph: Node and Tensor
# ---------------------------------------------------------------------------


class Node:
    """One recorded operation: its name, its inputs, and its backward step.

    ``inputs`` has one entry per positional argument of the operation: the ``Tensor`` passed
    there, or None for anything else (numbers, integer indices, options). ``run(grad)``
    returns one gradient per entry. PyTorch's counterpart is ``tensor.grad_fn``.
    """

    __slots__ = ("name", "inputs", "_backward")

    def __init__(
        self, name: str, inputs: tuple[Tensor | None, ...], backward: Callable[[Any], Any]
    ) -> None:
        self.name = name
        self.inputs = inputs
        self._backward: Callable[[Any], Any] | None = backward

    def run(self, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """The gradients of the inputs, given the gradient of the output."""
        if self._backward is None:
            raise RuntimeError(
                f"Trying to backward through {self} a second time: its saved cache was freed "
                "after the first backward(). Call backward(retain_graph=True) the first time "
                "if you need to run it again."
            )
        grads = self._backward(grad)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        if len(grads) != len(self.inputs):
            raise TypeError(
                f"{self.name}'s backward returned {len(grads)} gradient(s) for "
                f"{len(self.inputs)} input(s); it must return one per input (None where "
                "there is none)"
            )
        return tuple(grads)

    def release(self) -> None:
        """Drop the backward step and its cache (what torch does after backward())."""
        self._backward = None

    @property
    def next_functions(self) -> tuple[Node | str | None, ...]:
        """Per input: its ``grad_fn``, "AccumulateGrad" for a leaf that requires grad, or None."""
        result: list[Node | str | None] = []
        for t in self.inputs:
            if t is None or not t.requires_grad:
                result.append(None)
            else:
                result.append(t.grad_fn if t.grad_fn is not None else "AccumulateGrad")
        return tuple(result)

    def __repr__(self) -> str:
        return f"<{self.name}Backward>"


def _as_data(data: Any) -> torch.Tensor:
    if isinstance(data, Tensor):
        return data.data
    if isinstance(data, torch.Tensor):
        return data.detach()
    return torch.as_tensor(data, dtype=torch.get_default_dtype() if _is_real(data) else None)


def _is_real(data: Any) -> bool:
    """A Python float, or a (nested) list holding one: stored in the default float dtype."""
    if isinstance(data, float):
        return True
    if isinstance(data, (list, tuple)):
        return any(_is_real(d) for d in data)
    return False


class Tensor:
    """A torch tensor (``.data``) that records the operations applied to it.

    Args:
        data: a torch tensor (kept, not copied), a number or a nested list.
        requires_grad: whether ``backward()`` should compute ``.grad`` for it.
    """

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "_retains_grad", "__weakref__")

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        self.data: torch.Tensor = _as_data(data)
        if requires_grad and not self.data.is_floating_point():
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype} "
                f"(shape {tuple(self.data.shape)})"
            )
        self.requires_grad = bool(requires_grad)
        self.grad: torch.Tensor | None = None
        self.grad_fn: Node | None = None
        self._retains_grad = False

    # ------------------------------------------------------------------ what it is
    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def ndim(self) -> int:
        return self.data.dim()

    def dim(self) -> int:
        return self.data.dim()

    def numel(self) -> int:
        return self.data.numel()

    def item(self) -> float:
        return self.data.item()

    @property
    def is_leaf(self) -> bool:
        """True for a tensor made directly (not by an operation), as in torch."""
        return self.grad_fn is None

    def __repr__(self) -> str:
        text = repr(self.data)
        text = "Tensor(" + text.removeprefix("tensor(")
        if self.grad_fn is not None:
            return f"{text[:-1]}, grad_fn={self.grad_fn!r})"
        if self.requires_grad:
            return f"{text[:-1]}, requires_grad=True)"
        return text

    def __len__(self) -> int:
        return len(self.data)

    # ------------------------------------------------------------------ gradients
    def detach(self) -> Tensor:
        """The same data (shared, not copied), cut from the graph: no grad_fn, no grad."""
        return Tensor(self.data, requires_grad=False)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``grad = None``)."""
        self.grad = None

    def retain_grad(self) -> Tensor:
        """Keep this intermediate tensor's gradient in ``.grad`` during backward (as torch)."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on a Tensor that does not require grad")
        self._retains_grad = True
        return self

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Fill ``.grad`` of every leaf this tensor was computed from.

        ``grad`` is the gradient of some scalar with respect to this tensor; it may be left
        out for a tensor with one element (it is then 1). Leaves add the new gradient to what
        they already hold. Without ``retain_graph`` the caches are freed afterwards.
        """
        if not self.requires_grad:
            raise RuntimeError(
                f"backward() on a Tensor of shape {tuple(self.shape)} that does not require "
                "grad: no input of the computation had requires_grad=True (or it ran under "
                "no_grad())"
            )
        if grad is None:
            if self.numel() != 1:
                raise RuntimeError(
                    "backward() without a gradient works only for a single-element result, "
                    f"but this one has shape {tuple(self.shape)}; pass grad with that shape"
                )
            grad = torch.ones_like(self.data)
        else:
            grad = _as_data(grad).to(dtype=self.dtype, device=self.device)
            if grad.shape != self.shape:
                raise ValueError(
                    f"backward(): grad has shape {tuple(grad.shape)} but the tensor has shape "
                    f"{tuple(self.shape)}; they must be equal"
                )
        _run_backward(self, grad, retain_graph)

    # ------------------------------------------------------------------ operators
    def __add__(self, other: Any) -> Tensor:
        return _add(self, _lift(other, self))

    def __radd__(self, other: Any) -> Tensor:
        return _add(_lift(other, self), self)

    def __sub__(self, other: Any) -> Tensor:
        return _sub(self, _lift(other, self))

    def __rsub__(self, other: Any) -> Tensor:
        return _sub(_lift(other, self), self)

    def __mul__(self, other: Any) -> Tensor:
        return _mul(self, _lift(other, self))

    def __rmul__(self, other: Any) -> Tensor:
        return _mul(_lift(other, self), self)

    def __truediv__(self, other: Any) -> Tensor:
        return _div(self, _lift(other, self))

    def __rtruediv__(self, other: Any) -> Tensor:
        return _div(_lift(other, self), self)

    def __pow__(self, other: Any) -> Tensor:
        return _pow(self, _lift(other, self))

    def __rpow__(self, other: Any) -> Tensor:
        return _pow(_lift(other, self), self)

    def __matmul__(self, other: Any) -> Tensor:
        return _matmul(self, _lift(other, self, numbers=False))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _matmul(_lift(other, self, numbers=False), self)

    def __neg__(self) -> Tensor:
        return _neg(self)

    # ------------------------------------------------------------------ methods
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Sum over ``dim`` (all dims when None)."""
        return _sum(self, dim=dim, keepdim=keepdim)

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Mean over ``dim`` (all dims when None)."""
        return _mean(self, dim=dim, keepdim=keepdim)

    def exp(self) -> Tensor:
        return _exp(self)

    def log(self) -> Tensor:
        return _log(self)

    def relu(self) -> Tensor:
        return relu(self)

    def tanh(self) -> Tensor:
        return tanh(self)

    def sigmoid(self) -> Tensor:
        return sigmoid(self)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """The same values in a new shape (one dim may be -1)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        return _reshape(self, shape=tuple(shape))

    @property
    def T(self) -> Tensor:  # noqa: N802 (torch's name)
        """The dims in reverse order (the transpose of a matrix)."""
        return _permute(self, dims=tuple(reversed(range(self.ndim))))


def _lift(value: Any, like: Tensor, numbers: bool = True) -> Tensor:
    """A Tensor operand as it is; a number or torch tensor as a constant (like's dtype, device)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, torch.Tensor):
        return Tensor(value)
    if numbers and isinstance(value, Number) and not isinstance(value, bool):
        return Tensor(torch.tensor(value, dtype=like.dtype, device=like.device))
    raise TypeError(
        f"unsupported operand: a Tensor of shape {tuple(like.shape)} and "
        f"{type(value).__name__}; use a Tensor, a torch tensor or a number"
    )


# ---------------------------------------------------------------------------
# 3. The engine: order the graph, walk it backwards
# ---------------------------------------------------------------------------


def topological_order(root: Tensor) -> list[Tensor]:
    """Every tensor that ``root`` depends on and that requires grad, inputs before outputs.

    Depth-first search with an explicit stack (no recursion): a tensor is appended once all
    its inputs are, so reading the list backwards visits every consumer of a tensor before
    the tensor itself.
    """
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))  # comes back once everything pushed above it is done
        if t.grad_fn is not None:
            for inp in t.grad_fn.inputs:
                if inp is not None and inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


def _run_backward(root: Tensor, grad: torch.Tensor, retain_graph: bool) -> None:
    """Reverse-mode sweep: one pass over the topological order, from the root back."""
    grads: dict[int, torch.Tensor] = {id(root): grad}  # gradients still being summed
    for t in reversed(topological_order(root)):
        g = grads.pop(id(t), None)
        if g is None:  # nothing flowed here (every consumer returned None)
            continue
        if t.grad_fn is None or t._retains_grad:  # a leaf keeps its gradient, and adds to it
            t.grad = g.clone() if t.grad is None else t.grad.add_(g)
        node = t.grad_fn
        if node is None:
            continue
        input_grads = node.run(g)
        if not retain_graph:
            node.release()
        for position, (inp, ig) in enumerate(zip(node.inputs, input_grads, strict=True)):
            if inp is None or not inp.requires_grad or ig is None:
                continue
            if not isinstance(ig, torch.Tensor) or ig.shape != inp.shape:
                got = tuple(ig.shape) if isinstance(ig, torch.Tensor) else type(ig).__name__
                raise ValueError(
                    f"{node.name}'s backward returned a gradient of shape {got} for input "
                    f"{position}, which has shape {tuple(inp.shape)}; a gradient must have "
                    "the shape of its input (sum over broadcast dims: unbroadcast)"
                )
            key = id(inp)
            grads[key] = ig if key not in grads else grads[key] + ig  # reuse: contributions add


# ---------------------------------------------------------------------------
# 4. Function: one operation with its forward and backward (torch's pattern)
# ---------------------------------------------------------------------------


class Context:
    """What ``forward`` leaves for ``backward``: attributes, and ``save_for_backward``."""

    def __init__(self) -> None:
        self.saved_tensors: tuple[torch.Tensor, ...] = ()
        self.needs_input_grad: tuple[bool, ...] = ()

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors


class Function:
    """Subclass with two static methods, then call ``apply``, as with torch.autograd.Function.

    ``forward(ctx, *args)`` gets torch tensors (the ``.data`` of Tensor arguments) and returns
    a torch tensor; ``backward(ctx, grad)`` returns one gradient per positional argument of
    ``forward`` (None for those that are not tensors or need none), or the gradient alone
    when there is one argument. ``ctx.needs_input_grad`` tells which are needed::

        class Cube(Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x**3

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return grad * 3 * x**2

        y = Cube.apply(t)
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError("a Function subclass defines forward(ctx, ...)")

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> Any:
        raise NotImplementedError("a Function subclass defines backward(ctx, grad)")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run ``forward`` on the data and, if any input requires grad, record a Node."""
        ctx = Context()
        inputs = tuple(a if isinstance(a, Tensor) else None for a in args)
        ctx.needs_input_grad = tuple(t is not None and t.requires_grad for t in inputs)
        raw = tuple(a.data if isinstance(a, Tensor) else a for a in args)
        out = cls.forward(ctx, *raw, **kwargs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"{cls.__name__}.forward must return a torch tensor, got {type(out).__name__}"
            )
        record = _grad_enabled and any(ctx.needs_input_grad)
        result = Tensor(out, requires_grad=record and out.is_floating_point())
        if result.requires_grad:
            result.grad_fn = Node(cls.__name__, inputs, lambda g: cls.backward(ctx, g))
        return result


# ---------------------------------------------------------------------------
# 5. The one adapter: a forward/backward pair becomes an operation on Tensor
# ---------------------------------------------------------------------------


def _float_positions(args: Sequence[Any]) -> list[int]:
    """Positions of the floating-point tensor arguments (Tensor or torch tensor)."""
    return [
        i
        for i, a in enumerate(args)
        if isinstance(a, (Tensor, torch.Tensor)) and _as_data(a).is_floating_point()
    ]


def _spread(grads: Any, positions: Sequence[int], n_args: int, name: str) -> tuple:
    """Put the gradients a pair's backward returned at the positions of their arguments."""
    grads = grads if isinstance(grads, (tuple, list)) else (grads,)
    if len(grads) > len(positions):
        raise TypeError(
            f"{name}'s backward returned {len(grads)} gradients but only {len(positions)} "
            f"argument(s) can receive one (positions {list(positions)})"
        )
    result: list[Any] = [None] * n_args
    for position, g in zip(positions, grads, strict=False):
        result[position] = g
    return tuple(result)


def from_pair(
    forward: Callable[..., tuple[torch.Tensor, Any]],
    backward: Callable[[torch.Tensor, Any], Any],
    *,
    differentiable: Sequence[str] | None = None,
    name: str | None = None,
) -> Callable[..., Tensor]:
    """Turn a pair ``out, cache = forward(*args)``, ``backward(dout, cache)`` into an op on Tensor.

    ``backward`` returns the gradients in argument order: the k gradients go to the
    arguments named in ``differentiable`` (default: the first k floating-point tensor
    arguments, which is how every ``F`` pair orders them). Keyword arguments and
    non-tensor arguments (numbers, integer indices, a generator) are passed through.
    """
    op_name = name or forward.__name__.removesuffix("_forward")
    signature = inspect.signature(forward)
    parameters = list(signature.parameters)
    chosen = _positions_of(op_name, forward, parameters, differentiable)

    class PairFunction(Function):
        @staticmethod
        def forward(ctx: Context, *args: Any, **kwargs: Any) -> torch.Tensor:
            out, ctx.cache = forward(*args, **kwargs)
            ctx.positions = chosen if chosen is not None else _float_positions(args)
            ctx.n_args = len(args)
            return out

        @staticmethod
        def backward(ctx: Context, grad: torch.Tensor) -> tuple:
            grads = backward(grad, ctx.cache)
            return _spread(grads, ctx.positions, ctx.n_args, op_name)

    PairFunction.__name__ = PairFunction.__qualname__ = _camel(op_name)

    def op(*args: Any, **kwargs: Any) -> Tensor:
        bound = signature.bind(*args, **kwargs)  # keyword tensors become positional
        return PairFunction.apply(*bound.args, **bound.kwargs)

    op.__name__ = op.__qualname__ = op_name
    op.__doc__ = (
        f"{op_name} on Tensors: forward {forward.__name__}, gradients from {backward.__name__}."
        f"\n\nSignature of the forward pass: {op_name}{signature}"
    )
    op.function = PairFunction  # type: ignore[attr-defined]
    return op


def _positions_of(
    op_name: str, forward: Callable, parameters: list[str], names: Sequence[str] | None
) -> list[int] | None:
    """The positions of the arguments named in ``differentiable`` (None: decide per call)."""
    if names is None:
        return None
    unknown = [n for n in names if n not in parameters]
    if unknown:
        raise ValueError(
            f"{op_name}: differentiable names {unknown}, which are not arguments of "
            f"{forward.__name__}{tuple(parameters)}"
        )
    return [parameters.index(n) for n in names]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


# ---------------------------------------------------------------------------
# 6. Elementary operations, written as pairs like those of coursekit.functional
# ---------------------------------------------------------------------------


def unbroadcast(grad: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Sum ``grad`` down to ``shape``: the backward of broadcasting ``shape`` to grad's shape.

    Broadcasting adds leading dims and stretches dims of size 1; each copy receives a share of
    the gradient, so the gradient of the original is the sum over the copies: over the added
    leading dims, and over each dim that was 1 (keeping it, as a 1).
    """
    shape = torch.Size(shape)
    if grad.shape == shape:
        return grad
    extra = grad.dim() - len(shape)
    if extra < 0 or any(s not in (1, g) for s, g in zip(shape, grad.shape[extra:], strict=True)):
        raise ValueError(
            f"unbroadcast: a gradient of shape {tuple(grad.shape)} cannot come from broadcasting "
            f"shape {tuple(shape)}"
        )
    stretched = [extra + i for i, s in enumerate(shape) if s == 1 and grad.shape[extra + i] != 1]
    dims = list(range(extra)) + stretched
    summed = grad.sum(dim=dims, keepdim=True) if dims else grad
    return summed.reshape(shape)


def _check_broadcast(op: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: operands have dtypes {a.dtype} and {b.dtype} (shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}); convert one so that they match"
        )
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(
            f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together"
        ) from None


def add_forward(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = a + b (broadcast); da = unbroadcast(dout), db = unbroadcast(dout)."""
    _check_broadcast("add", a, b)
    return a + b, (a.shape, b.shape)


def add_backward(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a_shape, b_shape = cache
    return unbroadcast(dout, a_shape), unbroadcast(dout, b_shape)


def sub_forward(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = a - b; da = unbroadcast(dout), db = -unbroadcast(dout)."""
    _check_broadcast("sub", a, b)
    return a - b, (a.shape, b.shape)


def sub_backward(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a_shape, b_shape = cache
    return unbroadcast(dout, a_shape), -unbroadcast(dout, b_shape)


def mul_forward(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = a * b; da = unbroadcast(dout * b), db = unbroadcast(dout * a)."""
    _check_broadcast("mul", a, b)
    return a * b, (a, b)


def mul_backward(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = cache
    return unbroadcast(dout * b, a.shape), unbroadcast(dout * a, b.shape)


def div_forward(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = a / b; da = dout / b, db = -dout * a / b**2 = -dout * out / b (each unbroadcast)."""
    _check_broadcast("div", a, b)
    out = a / b
    return out, (a.shape, b, out)


def div_backward(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a_shape, b, out = cache
    da = dout / b
    return unbroadcast(da, a_shape), unbroadcast(-da * out, b.shape)


def pow_forward(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = a ** b; da = dout * b * a**(b-1), db = dout * out * log(a) (each unbroadcast)."""
    _check_broadcast("pow", a, b)
    out = a**b
    return out, (a, b, out)


def pow_backward(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a, b, out = cache
    da = dout * b * a ** (b - 1)
    # a**b = exp(b log a); torch uses 0 where a == 0 and b >= 0, so do we.
    db = torch.where((a == 0) & (b >= 0), 0.0, dout * out * torch.log(a))
    return unbroadcast(da, a.shape), unbroadcast(db, b.shape)


def neg_forward(a: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = -a; da = -dout."""
    return -a, None


def neg_backward(dout: torch.Tensor, cache: Any) -> torch.Tensor:
    return -dout


def matmul_forward(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = a @ b as torch.matmul (1-D operands and broadcast batch dims included).

    With both as matrices (a 1-D a is a row (1, K), a 1-D b a column (K, 1)):
    da = dout @ b.T and db = a.T @ dout, batch dims summed back to each operand's shape.
    """
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError(
            f"matmul: both operands need at least 1 dim, got shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    if a2.shape[-1] != b2.shape[-2] or a.dtype != b.dtype:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} (dtypes {a.dtype}, "
            f"{b.dtype}) cannot be multiplied: a's last dim must equal b's "
            f"{'only' if b.dim() == 1 else 'second-to-last'} dim"
        )
    try:
        batch = torch.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"matmul: batch dims of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
            "broadcast together"
        ) from None
    out2_shape = (*batch, a2.shape[-2], b2.shape[-1])
    return torch.matmul(a, b), (a2, b2, a.shape, b.shape, out2_shape)


def matmul_backward(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a2, b2, a_shape, b_shape, out2_shape = cache
    d = dout.reshape(out2_shape)
    da = unbroadcast(d @ b2.mT, a2.shape).reshape(a_shape)
    db = unbroadcast(a2.mT @ d, b2.shape).reshape(b_shape)
    return da, db


def _dims(op: str, x: torch.Tensor, dim: int | Sequence[int] | None) -> tuple[int, ...]:
    """The dims to reduce, as sorted non-negative ints; an out-of-range dim is a ValueError."""
    n = x.dim()
    if dim is None:
        return tuple(range(n))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    bad = [d for d in dims if not -max(n, 1) <= d < max(n, 1)]
    if bad:
        raise ValueError(f"{op}: dim {dim} is out of range for shape {tuple(x.shape)}")
    return tuple(sorted({d % n for d in dims})) if n else ()


def sum_forward(
    x: torch.Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False
) -> tuple[torch.Tensor, Any]:
    """out = x summed over dim. Every summed element gets dout: dx = dout copied back."""
    dims = _dims("sum", x, dim)
    out = x.sum(dim=dims, keepdim=keepdim) if dims else x.clone()
    return out, (x.shape, dims, keepdim)


def sum_backward(dout: torch.Tensor, cache: Any) -> torch.Tensor:
    shape, dims, keepdim = cache
    if not keepdim:
        for d in dims:  # ascending, so every index is right when it is used
            dout = dout.unsqueeze(d)
    return dout.expand(shape)


def mean_forward(
    x: torch.Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False
) -> tuple[torch.Tensor, Any]:
    """out = x averaged over dim: a sum divided by the count M, so dx = dout / M copied back."""
    out, (shape, dims, keepdim) = sum_forward(x, dim, keepdim)
    count = 1
    for d in dims:
        count *= shape[d]
    return out / count, (shape, dims, keepdim, count)


def mean_backward(dout: torch.Tensor, cache: Any) -> torch.Tensor:
    shape, dims, keepdim, count = cache
    return sum_backward(dout / count, (shape, dims, keepdim))


def exp_forward(x: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = exp(x); dx = dout * out."""
    out = torch.exp(x)
    return out, out


def exp_backward(dout: torch.Tensor, cache: Any) -> torch.Tensor:
    return dout * cache


def log_forward(x: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """out = log(x); dx = dout / x."""
    return torch.log(x), x


def log_backward(dout: torch.Tensor, cache: Any) -> torch.Tensor:
    return dout / cache


def reshape_forward(x: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
    """The same values in a new shape; dx = dout in x's shape."""
    try:
        return x.reshape(shape), x.shape
    except RuntimeError:
        raise ValueError(
            f"reshape: shape {tuple(x.shape)} ({x.numel()} elements) cannot be reshaped to "
            f"{tuple(shape)}"
        ) from None


def reshape_backward(dout: torch.Tensor, cache: Any) -> torch.Tensor:
    return dout.reshape(cache)


def permute_forward(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
    """Reorder the dims; dx = dout with the inverse order."""
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return x.permute(dims), tuple(inverse)


def permute_backward(dout: torch.Tensor, cache: Any) -> torch.Tensor:
    return dout.permute(cache)


_add = from_pair(add_forward, add_backward)
_sub = from_pair(sub_forward, sub_backward)
_mul = from_pair(mul_forward, mul_backward)
_div = from_pair(div_forward, div_backward)
_pow = from_pair(pow_forward, pow_backward)
_neg = from_pair(neg_forward, neg_backward)
_matmul = from_pair(matmul_forward, matmul_backward)
_sum = from_pair(sum_forward, sum_backward)
_mean = from_pair(mean_forward, mean_backward)
_exp = from_pair(exp_forward, exp_backward)
_log = from_pair(log_forward, log_backward)
_reshape = from_pair(reshape_forward, reshape_backward)
_permute = from_pair(permute_forward, permute_backward)

# ---------------------------------------------------------------------------
# 7. The course's own pairs, as operations on Tensor
# ---------------------------------------------------------------------------

linear = from_pair(F.linear_forward, F.linear_backward)
relu = from_pair(F.relu_forward, F.relu_backward)
sigmoid = from_pair(F.sigmoid_forward, F.sigmoid_backward)
tanh = from_pair(F.tanh_forward, F.tanh_backward)
leaky_relu = from_pair(F.leaky_relu_forward, F.leaky_relu_backward)
mse = from_pair(F.mse_forward, F.mse_backward, differentiable=("pred",))
softmax_cross_entropy = from_pair(F.softmax_cross_entropy_forward, F.softmax_cross_entropy_backward)
dropout = from_pair(F.dropout_forward, F.dropout_backward)
batchnorm = from_pair(
    F.batchnorm_forward, F.batchnorm_backward, differentiable=("x", "gamma", "beta")
)
layernorm = from_pair(F.layernorm_forward, F.layernorm_backward)
conv2d = from_pair(F.conv2d_forward, F.conv2d_backward)
maxpool2d = from_pair(F.maxpool2d_forward, F.maxpool2d_backward)
embedding = from_pair(F.embedding_forward, F.embedding_backward)
rnn_step = from_pair(F.rnn_step_forward, F.rnn_step_backward)
rnn = from_pair(F.rnn_forward, F.rnn_backward)
softmax = from_pair(F.softmax_forward, F.softmax_backward)
gelu = from_pair(F.gelu_forward, F.gelu_backward)
attention = from_pair(F.attention_forward, F.attention_backward)


def _lstm_step_joined_forward(
    x: torch.Tensor,
    h_prev: torch.Tensor,
    c_prev: torch.Tensor,
    wx: torch.Tensor,
    wh: torch.Tensor,
    b: torch.Tensor,
) -> tuple[torch.Tensor, Any]:
    """F.lstm_step_forward with its two outputs joined into one (N, 2H) tensor [h, c]."""
    (h, c), cache = F.lstm_step_forward(x, h_prev, c_prev, wx, wh, b)
    return torch.cat([h, c], dim=1), cache


def _lstm_step_joined_backward(dout: torch.Tensor, cache: Any) -> tuple:
    """Split dout = [dh, dc] and call F.lstm_step_backward((dh, dc), cache)."""
    dh, dc = dout.chunk(2, dim=1)
    return F.lstm_step_backward((dh, dc), cache)


# An op on Tensor has one output, so lstm_step returns [h, c] joined: h = out[:, :H].
lstm_step = from_pair(_lstm_step_joined_forward, _lstm_step_joined_backward, name="lstm_step")
lstm = from_pair(F.lstm_forward, F.lstm_backward)


# ---------------------------------------------------------------------------
# 8. Handing a pair to PyTorch
# ---------------------------------------------------------------------------


def _flatten(cache: Any, tensors: list[torch.Tensor]) -> Any:
    """The cache with every torch tensor replaced by its index in ``tensors`` (appended)."""
    if isinstance(cache, torch.Tensor):
        tensors.append(cache)
        return _Saved(len(tensors) - 1)
    if type(cache) in (tuple, list):
        return type(cache)(_flatten(c, tensors) for c in cache)
    return cache


def _unflatten(structure: Any, tensors: Sequence[torch.Tensor]) -> Any:
    if isinstance(structure, _Saved):
        return tensors[structure.index]
    if type(structure) in (tuple, list):
        return type(structure)(_unflatten(s, tensors) for s in structure)
    return structure


class _Saved:
    """Where a saved tensor goes back into the cache."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def to_torch(
    forward: Callable[..., tuple[torch.Tensor, Any]],
    backward: Callable[[torch.Tensor, Any], Any],
    *,
    differentiable: Sequence[str] | None = None,
    name: str | None = None,
) -> Callable[..., torch.Tensor]:
    """A function on torch tensors: ``forward``'s result, with gradients from ``backward``.

    It is backed by a ``torch.autograd.Function``: torch records it in its graph like any
    built-in op, and its backward calls the hand-written one. As torch recommends, the
    tensors of the cache go through ``ctx.save_for_backward`` (so torch notices if one is
    modified in place before backward) and the backward is marked ``once_differentiable``:
    it computes plain tensors outside autograd, so there is no graph of the backward to
    differentiate again, and a double backward (``create_graph=True``) raises an error
    instead of silently returning wrong second derivatives.
    The gradients map to the arguments as in ``from_pair``.
    """
    op_name = name or forward.__name__.removesuffix("_forward")
    signature = inspect.signature(forward)
    parameters = list(signature.parameters)
    chosen = _positions_of(op_name, forward, parameters, differentiable)

    def forward_(ctx: Any, kwargs: dict[str, Any], *args: Any) -> torch.Tensor:
        out, cache = forward(*args, **kwargs)
        tensors: list[torch.Tensor] = []
        ctx.structure = _flatten(cache, tensors)
        ctx.save_for_backward(*tensors)
        ctx.positions = chosen if chosen is not None else _float_positions(args)
        ctx.n_args = len(args)
        return out

    @once_differentiable
    def backward_(ctx: Any, grad: torch.Tensor) -> tuple:
        cache = _unflatten(ctx.structure, ctx.saved_tensors)
        grads = backward(grad, cache)
        return (None, *_spread(grads, ctx.positions, ctx.n_args, op_name))  # None: kwargs

    # type() rather than a class statement, so that torch names its node after the op
    # (e.g. LinearFunctionBackward): torch builds that name when the class is created.
    TorchFunction = type(
        _camel(op_name) + "Function",
        (torch.autograd.Function,),
        {"forward": staticmethod(forward_), "backward": staticmethod(backward_)},
    )

    def op(*args: Any, **kwargs: Any) -> torch.Tensor:
        bound = signature.bind(*args, **kwargs)
        return TorchFunction.apply(bound.kwargs, *bound.args)

    op.__name__ = op.__qualname__ = op_name
    op.__doc__ = f"{op_name} on torch tensors, gradients from {backward.__name__}."
    op.function = TorchFunction  # type: ignore[attr-defined]
    return op
