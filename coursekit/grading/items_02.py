"""Graded items of lesson 02 (computational graphs and reverse mode).

The four local backward steps take and return tensors (or plain floats, for
mul); the topological order works on graphs of ``coursekit.scalar.Value``.
"""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import autograd_grads, describe_shapes
from coursekit.grading.registry import item

_FORGOT_DOUT = (
    "Multiply the local derivative by dout, the gradient arriving from above: "
    "that product is the chain rule."
)


@item(
    "02.mul_backward",
    points=1,
    description="the local backward of out = a * b",
    signature="fn(a, b, dout) -> (da, db)",
    covers="tensors of several shapes and plain Python floats",
)
def mul_backward(ctx: GradingContext, fn) -> None:
    for shape in [(5,), (3, 4), None, (1,), None]:
        if shape is None:  # plain floats
            a, b, dout = ctx.random_float(), ctx.random_float(), ctx.random_float()
            description = f"floats a = {a:.4g}, b = {b:.4g}, dout = {dout:.4g}"
            ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
            tdout = torch.tensor(dout, dtype=torch.float64)
        else:
            ta, tb, tdout = ctx.randn(*shape), ctx.randn(*shape), ctx.randn(*shape)
            a, b, dout = ta, tb, tdout
            description = describe_shapes(a=ta, b=tb, dout=tdout)
        with ctx.case(description):
            expected = autograd_grads(lambda x, y: x * y, [ta, tb], tdout)
            got = ctx.call(fn, a, b, dout, names=("a", "b", "dout"))
            if shape is None:
                _check_float_answer(ctx, got)
            swapped = "d(a*b)/da = b and d(a*b)/db = a: each gradient uses the *other* input."
            mistakes = {
                "da": [Mistake(ta * tdout, swapped), Mistake(tb, _FORGOT_DOUT)],
                "db": [Mistake(tb * tdout, swapped), Mistake(ta, _FORGOT_DOUT)],
            }
            ctx.compare(
                got, expected, ("da", "db"), mistakes=mistakes, shape_of={"da": "a", "db": "b"}
            )


def _check_float_answer(ctx: GradingContext, got) -> None:
    """With plain-float inputs there is no input dtype to keep; a float32 tensor loses digits."""
    if not isinstance(got, (tuple, list)):
        return
    for name, value in zip(("da", "db"), got, strict=False):
        if isinstance(value, torch.Tensor) and value.dtype != torch.float64:
            ctx.fail(
                f"{name} is a {value.dtype} tensor, but a, b and dout were plain Python floats, "
                "which carry about 16 digits (float64) and have no torch dtype to keep.",
                "Return plain floats: with floats in, `b * dout` is already a float. "
                "torch.tensor(some_float) makes a float32 tensor and rounds away about "
                "9 of those digits.",
            )


@item(
    "02.pow_backward",
    points=1,
    description="the local backward of out = a ** n, n a constant",
    signature="fn(a, n, dout) -> da",
    covers="integer, fractional and negative exponents, negative bases for integer n",
)
def pow_backward(ctx: GradingContext, fn) -> None:
    cases = [
        ((5,), 3.0, True),
        ((3, 4), 0.5, False),
        ((6,), -1.0, True),
        ((2, 3), 2.0, True),
        ((4,), 1.5, False),
    ]
    for shape, n, allow_negative in cases:
        a = ctx.randn(*shape) if allow_negative else ctx.uniform(*shape, low=0.5, high=2.0)
        dout = ctx.randn(*shape)
        with ctx.case(f"{describe_shapes(a=a, dout=dout)}, n = {n}"):
            (expected,) = autograd_grads(lambda t, n=n: t**n, [a], dout)
            mistakes = [
                Mistake(
                    n * a**n * dout,
                    "The exponent of the derivative is n - 1: d(a**n)/da = n * a**(n - 1).",
                ),
                Mistake(a ** (n - 1) * dout, "The factor n is missing: d(a**n)/da = n * a**(n-1)."),
                Mistake(n * a ** (n - 1), _FORGOT_DOUT),
            ]
            got = ctx.call(fn, a, n, dout, names=("a", "n", "dout"))
            ctx.compare(got, expected, ("da",), mistakes={"da": mistakes}, shape_of={"da": "a"})


@item(
    "02.exp_backward",
    points=1,
    description="the local backward of out = exp(a)",
    signature="fn(a, dout) -> da",
    covers="several shapes",
)
def exp_backward(ctx: GradingContext, fn) -> None:
    for shape in [(5,), (3, 4), (), (2, 2, 3)]:
        a, dout = ctx.randn(*shape), ctx.randn(*shape)
        with ctx.case(describe_shapes(a=a, dout=dout)):
            (expected,) = autograd_grads(torch.exp, [a], dout)
            mistakes = [
                Mistake(torch.exp(a), _FORGOT_DOUT),
                Mistake(dout * a, "The derivative of exp(a) is exp(a) itself, not a."),
                Mistake(
                    dout,
                    "You passed dout through unchanged: multiply it by the local "
                    "derivative, d(exp(a))/da = exp(a).",
                ),
            ]
            got = ctx.call(fn, a, dout, names=("a", "dout"))
            ctx.compare(got, expected, ("da",), mistakes={"da": mistakes}, shape_of={"da": "a"})


@item(
    "02.tanh_backward",
    points=1,
    description="the local backward of out = tanh(a)",
    signature="fn(a, dout) -> da",
    covers="several shapes, large |a|",
)
def tanh_backward(ctx: GradingContext, fn) -> None:
    for shape, scale in [((5,), 1.0), ((3, 4), 1.0), ((), 1.0), ((8,), 20.0)]:
        a, dout = ctx.randn(*shape, scale=scale), ctx.randn(*shape)
        with ctx.case(describe_shapes(a=a, dout=dout) + (", large |a|" if scale > 1 else "")):
            # 1 - tanh(a)**2 cancels at large |a|: the reference is dout / cosh(a)**2 (no
            # cancellation), and any correct formula may be off by a few ulps of |dout|
            expected = dout / torch.cosh(a) ** 2
            t = torch.tanh(a)
            mistakes = [
                Mistake(
                    dout * (1 - a**2), "The derivative is 1 - tanh(a)**2: square tanh(a), not a."
                ),
                Mistake(dout * (1 - t), "The derivative is 1 - tanh(a)**2: the square is missing."),
                Mistake(1 - t**2, _FORGOT_DOUT),
                Mistake(
                    dout,
                    "You passed dout through unchanged: multiply it by the local "
                    "derivative 1 - tanh(a)**2.",
                ),
            ]
            got = ctx.call(fn, a, dout, names=("a", "dout"))
            slack = 8 * torch.finfo(torch.float64).eps * dout.abs()
            ctx.compare(
                got, expected, ("da",), mistakes={"da": mistakes}, shape_of={"da": "a"}, slack=slack
            )


# ------------------------------------------------------------------------- topological order
def _random_dag(ctx: GradingContext, value_cls, leaves: int, ops: int):
    """A random expression graph: each new node combines earlier ones, so nodes are shared."""
    pool = [value_cls(ctx.random_float()) for _ in range(leaves)]
    for _ in range(ops):
        i, j = (int(k) for k in ctx.randint(len(pool), 2))
        kind = int(ctx.randint(3))
        if kind == 0:
            pool.append(pool[i] + pool[j])
        elif kind == 1:
            pool.append(pool[i] * pool[j])
        else:
            pool.append(pool[i].tanh())
    root = pool[-1]
    for node in pool[-6:-1]:  # tie a few recent nodes in, so the graph is wide as well as deep
        root = root + node
    return root


def _graphs(ctx: GradingContext, value_cls):
    """(description, root) pairs, built one at a time (the last is a 100_000-node chain)."""
    a = value_cls(2.0)
    yield "a single leaf", a

    a, b, c = value_cls(2.0), value_cls(-3.0), value_cls(10.0)
    yield "L = tanh(a * b + c)", (a * b + c).tanh()

    a, b = value_cls(1.5), value_cls(-0.5)
    d = a * b
    e = d + a  # a is used twice
    yield "a diamond: d = a * b; e = d + a; L = e * e (a and e are each used twice)", e * e

    a = value_cls(0.7)
    yield "L = a * a (one node, both inputs of the same operation)", a * a

    yield "a random graph of 300 operations on 8 leaves", _random_dag(ctx, value_cls, 8, 300)

    x = value_cls(0.5)
    for _ in range(100_000):
        x = x.tanh()
    yield "a chain of 100_001 nodes (x.tanh().tanh()...)", x


def _reachable(root) -> dict[int, object]:
    """id -> node for every node reachable from root (iteratively)."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(node._prev)
    return seen


def _type_name(value) -> str:
    """The short name of a value's type (also of one that stayed in the student's process)."""
    name = getattr(value, "type_name", None) if type(value).__name__ == "Opaque" else None
    return (name or type(value).__name__).rsplit(".", 1)[-1]


def _describe_node(node) -> str:
    op = getattr(node, "_op", "") or "leaf"
    return f"a node ({op}, data {node.data:.4g})"


@item(
    "02.topological_order",
    points=2,
    description="every node reachable from root once, each after all of its inputs",
    signature="fn(root) -> list of Value nodes, root last",
    covers="a leaf, shared nodes, a diamond, a random graph, a 100_001-node chain",
    timeout=20.0,
)
def topological_order(ctx: GradingContext, fn) -> None:
    from coursekit.scalar import Value

    for description, root in _graphs(ctx, Value):
        with ctx.case(description):
            nodes = _reachable(root)
            inputs = {key: tuple(node._prev) for key, node in nodes.items()}
            got = ctx.call(fn, root, names=("root",))
            _check_order(ctx, got, root, nodes, inputs, Value)


def _check_order(ctx: GradingContext, got, root, nodes, inputs, value_cls) -> None:
    fn = f"`{ctx.function_name}`"
    if got is None:
        ctx.fail(f"{fn} returned None.", "Did you forget the `return` statement?")
    if not isinstance(got, (list, tuple)):
        ctx.fail(f"{fn} should return a list of nodes, got a {type(got).__name__}.")
    strangers = [v for v in got if not isinstance(v, value_cls)]
    if strangers:
        ctx.fail(
            f"{fn} returned a list containing a {_type_name(strangers[0])}; every entry "
            "should be a Value node of the graph.",
            "Append the nodes themselves, not their .data or their labels.",
        )
    position: dict[int, int] = {}
    for index, node in enumerate(got):
        if id(node) in position:
            ctx.fail(
                f"{_describe_node(node)} appears twice in the list (positions "
                f"{position[id(node)]} and {index}).",
                "A node used by several others (like a in a * a, or a diamond) must be listed "
                "once: keep a set of visited nodes and skip nodes already in it.",
            )
        position[id(node)] = index
    extra = [node for node in got if id(node) not in nodes]
    if extra:
        ctx.fail(f"The list contains {len(extra)} node(s) that root does not depend on.")
    if len(position) < len(nodes):
        ctx.fail(
            f"The list has {len(position)} of the {len(nodes)} nodes reachable from root.",
            "Visit every input of every node (all of node._prev), not only the first one.",
        )
    if got[-1] is not root:
        backwards = got[0] is root
        ctx.fail(
            "root must come last; " + ("it is first." if backwards else "it is not last."),
            "Your list seems reversed: a node must come after all of its inputs, so the "
            "leaves come first and root last."
            if backwards
            else None,
        )
    for key, node in nodes.items():
        for child in inputs[key]:
            if position[id(child)] > position[key]:
                ctx.fail(
                    f"{_describe_node(node)} (position {position[key]}) comes before its input "
                    f"{_describe_node(child)} (position {position[id(child)]}).",
                    "Append a node only after all of its inputs have been appended: in a "
                    "depth-first search, that is when you leave the node, not when you enter it.",
                )
