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

The design follows Andrej Karpathy's micrograd (https://github.com/karpathy/micrograd, MIT
licence): the attributes ``data``, ``grad``, ``_prev``, ``_op``, ``label``, the ``_backward``
closures, the topological sort and the graph drawing all come from there. Two choices differ:
the graph is ordered without recursion (micrograd's recursive sort stops at Python's recursion
limit, about a thousand nodes deep), and a second ``backward()`` follows PyTorch (below), where
micrograd's would pass the first call's gradients of intermediate nodes on a second time.

Two rules make the result correct:

* **Accumulate.** A node used twice (``a * a``, or ``a`` feeding two branches) receives one
  contribution per use, so the closures *add* (``+=``) to ``grad`` instead of assigning.
* **No recursion.** The graph is ordered with an explicit stack (``topological_order``), so a
  chain of a million nodes works without hitting Python's recursion limit. It visits each node
  once, so ``backward()`` is also faster than micrograd's recursive one
  (``python -m coursekit.bench`` measures both on the same network-shaped graph).

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

    The recursive depth-first search ("place a node's inputs, then the node") with Python's
    call stack replaced by a list, so the depth of a graph is limited by memory, not by the
    recursion limit. Each entry of ``stack`` is what one recursive call would hold: a node,
    and an iterator over its inputs that remembers how far the node has got through them.
    The loop looks at the entry on top and resumes its iterator: an input not seen before is
    pushed (its own inputs come first); once the iterator is used up, every input is in
    ``order``, so the node is placed. Each node is pushed at most once and each edge is
    looked at once, so the cost is linear in the size of the graph. A leaf has no inputs to
    wait for, so it goes into ``order`` at once instead of through the stack (a shortcut
    that saves a third of the pushes in a typical network, where weights are leaves). The
    order is the one the recursive search gives.
    """
    if not isinstance(root, Value):
        raise TypeError(f"topological_order(root): root must be a Value, got {type(root).__name__}")
    order: list[Value] = []
    seen = {root}  # nodes already pushed or placed
    stack = [(root, iter(root._prev))]  # (node, its inputs not looked at yet)
    while stack:
        node, inputs = stack[-1]
        for child in inputs:  # resume where this node stopped
            if child in seen:
                continue
            seen.add(child)
            if not child._prev:  # a leaf: nothing to wait for
                order.append(child)
                continue
            stack.append((child, iter(child._prev)))  # place the child's inputs first,
            break  # then come back to this node's remaining inputs
        else:  # every input of node is placed: node can follow them
            stack.pop()
            order.append(node)
    return order
