"""Graded items of lesson 11 (from manual to automatic): unbroadcast, the tape's backward pass,
and a custom torch.autograd.Function.

References come from torch.autograd: the gradient of ``x.expand(shape)`` for unbroadcast, the
same computation run with torch tensors for the graph, and ``torch.logsumexp`` for the custom
function. The classic mistakes are recomputed directly: a gradient not summed over broadcast
dims or summed without keeping the size-1 dims, ``=`` instead of ``+=`` where a node is reused,
nodes visited before all of their consumers, an overflowing forward, and a backward that
forgets the upstream gradient or broadcasts it along the wrong dim.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from coursekit import functional as F
from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.registry import item


def _expand_grad(x: torch.Tensor, out_shape: tuple[int, ...], grad: torch.Tensor) -> torch.Tensor:
    """d/dx of sum(x.expand(out_shape) * grad), by torch.autograd."""
    leaf = x.clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(leaf.expand(out_shape), leaf, grad)
    return g.detach()


# ---------------------------------------------------------------------------- 11.unbroadcast
_SUM_HINT = (
    "the gradient is not summed over the broadcast dims: broadcasting copied the operand, and "
    "the backward of a copy is a sum. Sum over the leading dims that broadcasting added and "
    "over every dim where `shape` has a 1 and grad does not."
)


@item(
    "11.unbroadcast",
    points=2,
    description="the backward of broadcasting: sum a gradient back to its operand's shape",
    signature="fn(grad, shape) -> tensor of shape `shape`",
    covers="leading dims added, size-1 dims stretched, both at once, no broadcast, a 0-dim shape",
    timeout=30.0,
)
def unbroadcast(ctx: GradingContext, fn) -> None:
    cases = [
        ((4,), (3, 4)),
        ((3, 1), (3, 5)),
        ((3, 1), (2, 3, 4)),
        ((1, 1, 4), (2, 3, 4)),
        ((2, 1, 4), (2, 3, 4)),
        ((4, 1), (5, 4, 3)),
        ((2, 3), (2, 3)),
        ((), (2, 3)),
    ]
    for shape, out_shape in cases:
        x = ctx.randn(*shape)
        grad = ctx.randn(*out_shape)
        with ctx.case(f"grad {out_shape} back to shape {shape}"):
            expected = _expand_grad(x, out_shape, grad)
            extra = len(out_shape) - len(shape)
            leading = tuple(range(extra))
            stretched = tuple(
                extra + i for i, s in enumerate(shape) if s == 1 and out_shape[extra + i] != 1
            )
            mistakes: list[Mistake] = []
            if out_shape != shape:
                mistakes.append(Mistake(grad, _SUM_HINT, shape_only=True))
                count = 1
                for d in leading + stretched:
                    count *= out_shape[d]
                mistakes.append(
                    Mistake(
                        expected / count,
                        "the gradient is averaged over the broadcast dims; it is a sum: each "
                        "copy of an element passes its whole gradient back to it.",
                    )
                )
            if stretched:
                no_keepdim = grad.sum(dim=leading + stretched)
                if no_keepdim.shape != expected.shape:
                    mistakes.append(
                        Mistake(
                            no_keepdim,
                            "the size-1 dims are dropped: summing over a dim that was 1 in "
                            "`shape` must keep it (`keepdim=True`), so the result has exactly "
                            f"the shape {shape}.",
                            shape_only=True,
                        )
                    )
                only_leading = grad.sum(dim=leading) if leading else grad
                mistakes.append(
                    Mistake(
                        only_leading,
                        "only the leading dims are summed: a dim of size 1 in `shape` was "
                        "stretched too, so sum over it as well (keeping it, as a 1).",
                        shape_only=True,
                    )
                )
            if leading:
                only_stretched = grad.sum(dim=stretched, keepdim=True) if stretched else grad
                mistakes.append(
                    Mistake(
                        only_stretched,
                        "the leading dims that broadcasting added are not summed: grad has "
                        f"{len(out_shape)} dims and `shape` {len(shape)}, so sum over the "
                        f"first {extra} as well.",
                        shape_only=True,
                    )
                )
            got = ctx.call(fn, grad, shape, names=("grad", "shape"))
            ctx.compare(got, expected, ("grad",), mistakes={"grad": mistakes})


# ---------------------------------------------------------------------------- 11.backward
@dataclass(eq=False)
class GraphNode:
    """One tensor of a recorded graph, as the tape keeps it.

    Attributes:
        name: a label ("x", "h1", ...); leaves are identified by it.
        value: the tensor computed in the forward pass.
        inputs: the nodes it was computed from, in argument order (empty for a leaf).
        backward_step: ``backward_step(dout) -> tuple`` of one gradient per input, each with
            the shape of that input (None for a leaf).
    """

    name: str
    value: torch.Tensor
    inputs: tuple[GraphNode, ...] = ()
    backward_step: Callable[[torch.Tensor], tuple[torch.Tensor, ...]] | None = field(
        default=None, repr=False
    )

    def __repr__(self) -> str:
        inputs = ", ".join(n.name for n in self.inputs)
        return f"GraphNode({self.name!r}, shape {tuple(self.value.shape)}, inputs ({inputs}))"


def _as_tuple(grads: Any) -> tuple:
    return grads if isinstance(grads, tuple) else (grads,)


class _NodeOps:
    """Builds a graph of GraphNodes with the course's pairs (what the tape records)."""

    def __init__(self) -> None:
        self.count = 0

    def leaf(self, name: str, value: torch.Tensor) -> GraphNode:
        return GraphNode(name, value)

    def _op(self, forward: Callable, backward: Callable, *inputs: GraphNode) -> GraphNode:
        out, cache = forward(*(n.value for n in inputs))
        self.count += 1
        name = f"{forward.__name__.removesuffix('_forward')}{self.count}"

        def node_backward(dout: torch.Tensor) -> tuple:
            return _as_tuple(backward(dout, cache))

        return GraphNode(name, out, inputs, node_backward)

    def linear(self, x, w, b):
        return self._op(F.linear_forward, F.linear_backward, x, w, b)

    def tanh(self, x):
        return self._op(F.tanh_forward, F.tanh_backward, x)

    def add(self, a, b):
        return self._op(_add_forward, _add_backward, a, b)

    def mul(self, a, b):
        return self._op(_mul_forward, _mul_backward, a, b)

    def sum(self, x):
        return self._op(_sum_forward, _sum_backward, x)


def _unbroadcast(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    extra = grad.dim() - len(shape)
    dims = list(range(extra)) + [
        extra + i for i, s in enumerate(shape) if s == 1 and grad.shape[extra + i] != 1
    ]
    return (grad.sum(dim=dims, keepdim=True) if dims else grad).reshape(shape)


def _add_forward(a, b):
    return a + b, (a.shape, b.shape)


def _add_backward(dout, cache):
    return _unbroadcast(dout, cache[0]), _unbroadcast(dout, cache[1])


def _mul_forward(a, b):
    return a * b, (a, b)


def _mul_backward(dout, cache):
    a, b = cache
    return _unbroadcast(dout * b, a.shape), _unbroadcast(dout * a, b.shape)


def _sum_forward(x):
    return x.sum(), x.shape


def _sum_backward(dout, shape):
    return dout.expand(shape)


class _TorchOps:
    """The same graphs with torch tensors, for the reference gradients."""

    def leaf(self, name: str, value: torch.Tensor) -> torch.Tensor:
        return value.clone().requires_grad_(True)

    def linear(self, x, w, b):
        return x @ w + b

    def tanh(self, x):
        return torch.tanh(x)

    def add(self, a, b):
        return a + b

    def mul(self, a, b):
        return a * b

    def sum(self, x):
        return x.sum()


def _shared_weights(ops, v):
    """Two layers with the same w and b, and a skip product that reuses the first layer."""
    x, w, b = ops.leaf("x", v["x"]), ops.leaf("w", v["w"]), ops.leaf("b", v["b"])
    a1 = ops.tanh(ops.linear(x, w, b))
    a2 = ops.tanh(ops.linear(a1, w, b))
    return ops.sum(ops.mul(a2, a1)), [x, w, b]


def _square_and_broadcast(ops, v):
    """A node multiplied by itself, a broadcast vector, and a non-scalar root."""
    x, c = ops.leaf("x", v["x"]), ops.leaf("c", v["c"])
    p = ops.mul(x, c)
    q = ops.tanh(p)
    return ops.add(ops.mul(q, q), p), [x, c]


def _ladder(ops, v, depth=5):
    """h <- tanh(h) + h * c, five times: every h feeds two nodes, c feeds every level."""
    x, c = ops.leaf("x", v["x"]), ops.leaf("c", v["c"])
    h = x
    for _ in range(depth):
        h = ops.add(ops.tanh(h), ops.mul(h, c))
    return ops.sum(h), [x, c]


def _reverse_topological(root: GraphNode, recursive_style: bool) -> list[GraphNode]:
    """Reverse topological order: stack-based (as in the lesson) or the recursive build order."""
    order: list[GraphNode] = []
    seen: set[int] = set()
    if recursive_style:  # for child in inputs: build(child); then append(node)
        stack: list[tuple[GraphNode, int]] = [(root, 0)]
        seen.add(id(root))
        while stack:
            node, i = stack.pop()
            if i < len(node.inputs):
                stack.append((node, i + 1))
                child = node.inputs[i]
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, 0))
            else:
                order.append(node)
        return order[::-1]
    pending: list[tuple[GraphNode, bool]] = [(root, False)]
    while pending:
        node, done = pending.pop()
        if done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            pending.append((node, True))
            pending.extend((n, False) for n in node.inputs)
    return order[::-1]


def _run(order: list[GraphNode], root: GraphNode, dout: torch.Tensor, accumulate: bool) -> dict:
    grads = {id(root): dout}
    leaves: dict[str, torch.Tensor] = {}
    for node in order:
        g = grads.get(id(node))
        if g is None:
            continue
        if not node.inputs:
            leaves[node.name] = g
            continue
        for inp, gi in zip(node.inputs, node.backward_step(g), strict=True):
            if accumulate and id(inp) in grads:
                grads[id(inp)] = grads[id(inp)] + gi
            else:
                grads[id(inp)] = gi
    return leaves


def _breadth_first(root: GraphNode, dout: torch.Tensor) -> dict:
    """Visit each node once, when first reached from the root: before all consumers are done."""
    grads, leaves, queue, done = {id(root): dout}, {}, [root], set()
    while queue:
        node = queue.pop(0)
        if id(node) in done:
            continue
        done.add(id(node))
        if not node.inputs:
            leaves[node.name] = grads[id(node)]
            continue
        for inp, gi in zip(node.inputs, node.backward_step(grads[id(node)]), strict=True):
            grads[id(inp)] = grads[id(inp)] + gi if id(inp) in grads else gi
            queue.append(inp)
    return leaves


_ASSIGN_HINT = (
    "where a node is used more than once (a shared weight, `q * q`, a skip connection) its "
    "gradient is the SUM of what each consumer sends back. Add contributions (`+=`, or "
    "`grads[n] = grads[n] + g` when one already exists) instead of assigning them."
)
_ORDER_HINT = (
    "some nodes passed their gradient on before all of their consumers had added theirs. "
    "Order the graph topologically first (each node after all of its inputs, e.g. a "
    "depth-first search that appends a node after its inputs), then walk that order from the "
    "root backwards, so that every node's gradient is complete when it runs."
)


@item(
    "11.backward",
    points=3,
    description="the tape's backward pass: reverse topological order, with accumulation",
    signature="fn(root, dout) -> {leaf name: gradient}; a node has .name, .value, .inputs "
    "(empty for a leaf) and .backward_step(dout) -> one gradient per input",
    covers="shared weights over two layers, a node multiplied by itself with a non-scalar "
    "root, a five-level ladder where every node feeds two others",
    timeout=30.0,
)
def backward(ctx: GradingContext, fn) -> None:
    n, d, h = 4, 3, 3
    graphs = [
        ("two layers sharing w and b, with a skip product", _shared_weights,
         {"x": (n, d), "w": (d, d), "b": (d,)}, 0.7),
        ("q * q and a broadcast vector c, root of shape (N, D)", _square_and_broadcast,
         {"x": (n, h), "c": (h,)}, 1.0),
        ("a ladder h <- tanh(h) + h * c, five levels", _ladder, {"x": (n, h), "c": (h,)}, 0.5),
    ]  # fmt: skip
    for description, build, shapes, scale in graphs:
        values = {k: ctx.randn(*s, scale=scale) for k, s in shapes.items()}
        with ctx.case(description):
            root, _ = build(_NodeOps(), values)
            dout = (
                ctx.randn(*root.value.shape)
                if root.value.dim()
                else torch.ones((), dtype=torch.float64)
            )
            with torch.enable_grad():
                ref_root, ref_leaves = build(_TorchOps(), values)
                ref_grads = torch.autograd.grad(ref_root, ref_leaves, dout)
            expected = {k: g.detach() for k, g in zip(shapes, ref_grads, strict=True)}
            variants = [
                (_run(_reverse_topological(root, False), root, dout, False), _ASSIGN_HINT),
                (_run(_reverse_topological(root, True), root, dout, False), _ASSIGN_HINT),
                (_breadth_first(root, dout), _ORDER_HINT),
            ]
            mistakes = {
                name: [Mistake(wrong[name], hint) for wrong, hint in variants if name in wrong]
                for name in shapes
            }
            got = ctx.call(fn, root, dout, names=("root", "dout"))
            ctx.compare(
                got,
                expected,
                tuple(shapes),
                mistakes=mistakes,
                what="grads",
            )


# ---------------------------------------------------------------------------- 11.custom_function
# What forward leaves for backward, per ctx key. It lives in the process that runs the student's
# forward and backward, so it survives between the two calls wherever they run.
_SAVED: dict[str, dict[str, Any]] = {}
_KEYS = itertools.count()


class FunctionCtx:
    """Stands in for the ``ctx`` torch passes to a Function's forward and backward.

    ``save_for_backward(*tensors)`` / ``saved_tensors`` and plain attributes (``ctx.p = ...``)
    work as in torch; ``needs_input_grad`` is ``(True,)``.
    """

    def __init__(self, key: str) -> None:
        object.__setattr__(self, "key", key)

    def _store(self) -> dict[str, Any]:
        return _SAVED.setdefault(object.__getattribute__(self, "key"), {})

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self._store()["saved_tensors"] = tuple(tensors)

    @property
    def saved_tensors(self) -> tuple[torch.Tensor, ...]:
        return self._store().get("saved_tensors", ())

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        return (True,)

    def mark_non_differentiable(self, *tensors: torch.Tensor) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        pass

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "key":
            object.__setattr__(self, name, value)
        else:
            self._store()[name] = value

    def __getattr__(self, name: str) -> Any:
        if name == "key":
            raise AttributeError(name)
        try:
            return self._store()[name]
        except KeyError:
            raise AttributeError(f"ctx has no attribute {name!r}: set it in forward") from None


def _new_ctx() -> FunctionCtx:
    return FunctionCtx(f"ctx{next(_KEYS)}")


def _single(dx: Any) -> Any:
    """backward may return (dx,) for its one input, as torch allows."""
    return dx[0] if isinstance(dx, (tuple, list)) and len(dx) == 1 else dx


_OVERFLOW_HINT = (
    "the forward overflows: exp(x) is inf for x > 709. Subtract the maximum "
    "m = x.amax(-1, keepdim=True) first: m + log(sum(exp(x - m))) is the same number, and "
    "every exp is at most 1."
)
_KEEPDIM_HINT = (
    "`grad` has the shape of the output, x's shape without the last dim. Give it that dim back "
    "before multiplying (`grad.unsqueeze(-1)` or `grad[..., None]`), so that it is broadcast "
    "along the last dim, the one that was reduced."
)


@item(
    "11.custom_function",
    points=3,
    description="LogSumExp over the last dim as a torch.autograd.Function: stable forward, "
    "hand-written backward",
    signature="check(name, LogSumExp.forward, LogSumExp.backward): forward(ctx, x) -> (...,), "
    "backward(ctx, grad) -> dx (..., D)",
    covers="1-, 2- and 3-dim inputs, a square matrix, entries near +-1000, "
    "and gradcheck's two Jacobians",
    timeout=60.0,
)
def custom_function(ctx: GradingContext, forward, backward) -> None:
    cases = [((4, 5), 1.0), ((3, 3), 1.0), ((6,), 2.0), ((2, 3, 4), 1.0), ((3, 4), 1000.0)]
    for shape, scale in cases:
        x = ctx.randn(*shape, scale=scale)
        grad = ctx.randn(*shape[:-1])
        with ctx.case(f"x {shape}" + (f", entries about +-{scale:g}" if scale > 10 else "")):
            leaf = x.clone().requires_grad_(True)
            with torch.enable_grad():
                out_ref = torch.logsumexp(leaf, dim=-1)
                (dx_ref,) = torch.autograd.grad(out_ref, leaf, grad)
            softmax = torch.softmax(x, dim=-1)
            out_mistakes = [
                Mistake(torch.log(torch.exp(x).sum(-1)), _OVERFLOW_HINT),
                Mistake(
                    out_ref.unsqueeze(-1),
                    "the output keeps the reduced dim: it should have x's shape without the "
                    "last dim (keepdim=False), like torch.logsumexp(x, dim=-1).",
                    shape_only=True,
                ),
            ]
            dx_mistakes = [
                Mistake(
                    softmax,
                    "the backward ignores the upstream gradient: d logsumexp / dx = softmax(x), "
                    "and the chain rule multiplies it by `grad`, broadcast along the last dim.",
                ),
                Mistake(
                    -dx_ref,
                    "the sign of dx is flipped: d/dx_j log sum_k exp(x_k) = +exp(x_j) / sum.",
                ),
            ]
            if len(shape) == 2 and shape[0] == shape[1]:
                dx_mistakes.append(Mistake(grad * softmax, _KEEPDIM_HINT))
            fctx = _new_ctx()
            out = ctx.call(forward, fctx, x, names=("ctx", "x"), opaque=("ctx",))
            ctx.compare(out, out_ref.detach(), ("out",), mistakes={"out": out_mistakes},
                        what="`forward`'s output", nonfinite_hint=_OVERFLOW_HINT)  # fmt: skip
            dx = ctx.call(
                backward, fctx, grad, names=("ctx", "grad"), opaque=("ctx",),
                error_hint=_KEEPDIM_HINT,
            )  # fmt: skip
            ctx.compare(_single(dx), dx_ref.detach(), ("dx",), mistakes={"dx": dx_mistakes},
                        what="`backward`'s dx")  # fmt: skip
    for shape in [(3, 4), (5,)]:
        x = ctx.randn(*shape)
        with ctx.case(f"gradcheck on x {shape}: your backward against finite differences of "
                      "your forward"):  # fmt: skip
            analytical, numerical = _jacobians(ctx, forward, backward, x)
            ctx.compare(
                analytical,
                numerical,
                ("the Jacobian from your backward (rows: outputs, columns: inputs)",),
            )


def _jacobians(ctx: GradingContext, forward, backward, x: torch.Tensor, eps: float = 1e-6):
    """gradcheck's two Jacobians: analytical (one backward per output element) and numerical
    (central differences of forward, one column per input element)."""

    def run_forward(inp: torch.Tensor, fctx: FunctionCtx) -> torch.Tensor:
        out = ctx.call(forward, fctx, inp, names=("ctx", "x"), opaque=("ctx",))
        if not isinstance(out, torch.Tensor):
            ctx.fail(f"`forward` returned {type(out).__name__}, not a tensor.")
        return out

    out = run_forward(x, _new_ctx())
    rows, cols = out.numel(), x.numel()
    analytical = torch.zeros(rows, cols, dtype=x.dtype)
    for i in range(rows):
        fctx = _new_ctx()
        run_forward(x, fctx)
        unit = torch.zeros(rows, dtype=x.dtype)
        unit[i] = 1.0
        dx = _single(ctx.call(backward, fctx, unit.reshape(out.shape), names=("ctx", "grad"),
                              opaque=("ctx",)))  # fmt: skip
        if not isinstance(dx, torch.Tensor) or dx.numel() != cols:
            ctx.fail(f"`backward` returned {type(dx).__name__} where dx with {cols} entries "
                     "was expected.")  # fmt: skip
        analytical[i] = dx.reshape(-1)
    numerical = torch.zeros(rows, cols, dtype=x.dtype)
    flat = x.reshape(-1)
    for j in range(cols):
        plus, minus = flat.clone(), flat.clone()
        plus[j] += eps
        minus[j] -= eps
        f_plus = run_forward(plus.reshape(x.shape), _new_ctx())
        f_minus = run_forward(minus.reshape(x.shape), _new_ctx())
        numerical[:, j] = ((f_plus - f_minus) / (2 * eps)).reshape(-1)
    return analytical, numerical
