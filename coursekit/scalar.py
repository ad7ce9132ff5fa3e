"""Value: scalar reverse-mode automatic differentiation, small enough to read in one sitting.

Every arithmetic operation on ``Value`` objects builds a node of an expression graph::

    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    L = (a * b).tanh()
    L.backward()          # fills a.grad = dL/da and b.grad = dL/db

A node remembers its inputs (``_prev``), the operation that made it (``_op``) and a small
closure (``_backward``) that applies the chain rule *locally*: it takes the node's own gradient
``out.grad = dL/dout`` and adds ``dL/dout * dout/dinput`` to the gradient of each input.
``backward()`` runs those closures once each, from the output back to the leaves, in reverse
topological order, so that a node's gradient is complete before it is passed on.

Two rules make the result correct:

* **Accumulate.** A node used twice (``a * a``, or ``a`` feeding two branches) receives one
  contribution per use, so the closures *add* (``+=``) to ``grad`` instead of assigning.
* **No recursion.** The graph is ordered with an explicit stack (``topological_order``), so a
  chain of a million nodes works without hitting Python's recursion limit.

Calling ``backward()`` twice follows PyTorch: gradients of leaves (inputs made with ``Value(x)``)
accumulate, so they end up doubled; gradients of intermediate nodes are recomputed from zero
on every call, because PyTorch does not keep them between calls either (it frees them unless
``retain_grad()`` is asked for). Without that reset an intermediate would pass its old
gradient on a second time and the leaves would get three times, not twice, their gradient.
Set ``grad = 0.0`` on the leaves (``zero_grad``) before a fresh backward pass.

Memory: a node takes about 0.7 kB (the float, its inputs, its closure). Each node refers
to itself through its ``_backward`` closure, so a graph is freed by Python's cycle collector
(``gc``) rather than the moment it is dropped; ``gc.collect()`` frees it at once. Freeing a
very deep graph is safe: CPython releases long chains of objects without deep C recursion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from numbers import Real

__all__ = ["Value", "topological_order"]


def _no_backward() -> None:
    """The backward step of a leaf: it has no inputs to pass a gradient to."""


class Value:
    """A scalar that remembers how it was computed, so that gradients can flow back through it.

    Attributes:
        data: the value itself (a Python float).
        grad: dL/d(this value) after ``L.backward()``; 0.0 before.
        _prev: the input ``Value`` objects this one was computed from (empty for a leaf).
        _op: the name of the operation that produced it ('+', '*', 'tanh', ...; '' for a leaf).
        label: an optional name, shown when the graph is drawn.
        _backward: the local chain-rule step; adds this node's gradient contribution to its inputs.
    """

    __slots__ = ("data", "grad", "_prev", "_op", "label", "_backward")

    def __init__(
        self,
        data: float,
        _prev: Iterable[Value] = (),
        _op: str = "",
        label: str = "",
    ) -> None:
        if isinstance(data, Value):
            raise TypeError("Value(data): data must be a number, not a Value (use it directly)")
        try:
            self.data = float(data)
        except (TypeError, ValueError):
            raise TypeError(
                f"Value(data): data must be a real number, got {type(data).__name__}"
            ) from None
        self.grad = 0.0
        self._prev: tuple[Value, ...] = tuple(_prev)
        self._op = _op
        self.label = label
        self._backward: Callable[[], None] = _no_backward

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        text = f"Value(data={self.data:.4f}, grad={self.grad:.4f}"
        if self._op:
            text += f", op={self._op!r}"
        if self.label:
            text += f", label={self.label!r}"
        return text + ")"

    # ------------------------------------------------------------ binary operations
    def __add__(self, other: Value | float) -> Value:
        """out = a + b.   Local derivatives: dout/da = 1, dout/db = 1."""
        other = _as_value(other, "+")
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __sub__(self, other: Value | float) -> Value:
        """out = a - b.   Local derivatives: dout/da = 1, dout/db = -1."""
        other = _as_value(other, "-")
        out = Value(self.data - other.data, (self, other), "-")

        def _backward() -> None:
            self.grad += out.grad
            other.grad -= out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | float) -> Value:
        """out = a * b.   Local derivatives: dout/da = b, dout/db = a."""
        other = _as_value(other, "*")
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __truediv__(self, other: Value | float) -> Value:
        """out = a / b.   Local derivatives: dout/da = 1 / b, dout/db = -a / b**2."""
        other = _as_value(other, "/")
        if other.data == 0.0:
            raise ZeroDivisionError("Value division: the divisor is 0.0")
        out = Value(self.data / other.data, (self, other), "/")

        def _backward() -> None:
            self.grad += out.grad / other.data
            other.grad += -self.data / other.data**2 * out.grad

        out._backward = _backward
        return out

    def __pow__(self, exponent: float) -> Value:
        """out = a ** n for a constant number n.   Local derivative: dout/da = n * a ** (n - 1)."""
        if isinstance(exponent, Value) or not isinstance(exponent, Real):
            raise TypeError(
                "Value ** exponent: the exponent must be a plain number (int or float), "
                f"got {type(exponent).__name__}; for a Value exponent write (b * a.log()).exp()"
            )
        n = float(exponent)
        if self.data < 0 and not n.is_integer():
            raise ValueError(
                f"Value ** exponent: a negative base ({self.data}) with a fractional "
                f"exponent ({n}) has no real result"
            )
        if self.data == 0 and n < 0:
            raise ZeroDivisionError(f"Value ** exponent: 0.0 to the negative power {n}")
        out = Value(self.data**n, (self,), f"**{exponent}")

        def _backward() -> None:
            self.grad += n * self.data ** (n - 1) * out.grad

        out._backward = _backward
        return out

    # Right-hand versions, so that plain numbers work on either side: 2 * a, 1 - a, 1 / a.
    def __radd__(self, other: float) -> Value:
        """out = other + a."""
        return _as_value(other, "+") + self

    def __rsub__(self, other: float) -> Value:
        """out = other - a."""
        return _as_value(other, "-") - self

    def __rmul__(self, other: float) -> Value:
        """out = other * a."""
        return _as_value(other, "*") * self

    def __rtruediv__(self, other: float) -> Value:
        """out = other / a."""
        return _as_value(other, "/") / self

    def __neg__(self) -> Value:
        """out = -a.   Local derivative: dout/da = -1."""
        out = Value(-self.data, (self,), "neg")

        def _backward() -> None:
            self.grad -= out.grad

        out._backward = _backward
        return out

    # ------------------------------------------------------------- unary functions
    def exp(self) -> Value:
        """out = e ** a.   Local derivative: dout/da = e ** a = out."""
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward() -> None:
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def log(self) -> Value:
        """out = ln(a), for a > 0.   Local derivative: dout/da = 1 / a."""
        if self.data <= 0:
            raise ValueError(f"Value.log: the argument must be positive, got {self.data}")
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:
            self.grad += out.grad / self.data

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        """out = tanh(a).   Local derivative: dout/da = 1 - tanh(a)**2 = 1 - out**2."""
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward() -> None:
            self.grad += (1.0 - out.data**2) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        """out = 1 / (1 + e ** -a).   Local derivative: dout/da = out * (1 - out).

        Computed without overflow for large |a|: for a < 0 it uses the equal form
        e ** a / (1 + e ** a), so e is never raised to a large positive power.
        """
        if self.data >= 0:
            s = 1.0 / (1.0 + math.exp(-self.data))
        else:
            e = math.exp(self.data)
            s = e / (1.0 + e)
        out = Value(s, (self,), "sigmoid")

        def _backward() -> None:
            self.grad += out.data * (1.0 - out.data) * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        """out = max(0, a).   Local derivative: dout/da = 1 if a > 0 else 0 (0 at a = 0)."""
        out = Value(self.data if self.data > 0 else 0.0, (self,), "relu")

        def _backward() -> None:
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad

        out._backward = _backward
        return out

    # ------------------------------------------------------------------- backward
    def backward(self, grad: float = 1.0) -> None:
        """Fill ``.grad`` of every node this value depends on with d(self)/d(node).

        1. Order the graph so that every node comes after its inputs (``topological_order``).
        2. Reset the gradient of every intermediate node to 0 (leaves keep theirs and
           accumulate, as in PyTorch) and seed this node: self.grad += grad (dL/dL = 1).
        3. Walk the order backwards, so each node's gradient is complete before its
           ``_backward`` passes it on to its inputs.
        """
        order = topological_order(self)
        for node in order:
            if node._prev:
                node.grad = 0.0
        self.grad += float(grad)
        for node in reversed(order):
            node._backward()

    def zero_grad(self) -> None:
        """Set ``grad = 0.0`` on this node and every node it depends on."""
        for node in topological_order(self):
            node.grad = 0.0


def _as_value(x: Value | float, op: str) -> Value:
    """Wrap a plain number as a leaf ``Value``; pass a ``Value`` through unchanged."""
    if isinstance(x, Value):
        return x
    if isinstance(x, Real):
        return Value(x)
    raise TypeError(
        f"Value {op} operand: expected a Value or a real number, got {type(x).__name__}"
    )


def topological_order(root: Value) -> list[Value]:
    """Every node reachable from ``root`` exactly once, each after all of its inputs; root last.

    A depth-first search with an explicit stack instead of recursion, so the depth of the
    graph is limited by memory, not by Python's recursion limit. A node is looked at twice
    while it is on top of the stack: the first time, its inputs are pushed above it; when it
    is on top again, everything above it (its inputs, and theirs) has been placed in the
    order, so it can be placed too. A node pushed twice (used by two nodes) is placed once.
    """
    if not isinstance(root, Value):
        raise TypeError(f"topological_order(root): root must be a Value, got {type(root).__name__}")
    order: list[Value] = []
    placed: set[Value] = set()  # nodes already in order
    expanded: set[Value] = set()  # nodes whose inputs have been pushed
    stack: list[Value] = [root]
    while stack:
        node = stack[-1]
        if node in placed:  # a second copy of a node that is already in order
            stack.pop()
        elif node in expanded:  # back on top: all of its inputs are placed
            stack.pop()
            placed.add(node)
            order.append(node)
        else:  # first visit: deal with its inputs first
            expanded.add(node)
            stack.extend(child for child in node._prev if child not in placed)
    return order
