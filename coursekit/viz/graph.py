"""Drawing the expression graph of a ``Value``, and stepping through its backward pass.

``draw_graph(L)`` shows every ``Value`` that ``L`` depends on as a box (label, data, grad) and
every operation as a circle between its inputs and its result, in the style of Graphviz
drawings of micrograd. It uses Graphviz when both the ``graphviz`` Python package and its
``dot`` program are installed, and otherwise lays the graph out with matplotlib alone:

* a node's column is the length of the longest path from a leaf to it (leaves in column 0),
  so every arrow points forward, from inputs to results;
* within a column, nodes are ordered by the mean position of their inputs, which keeps
  most arrows short and uncrossed.

``backward_steps(L)`` runs ``L``'s backward pass one node at a time and records the
gradients after each local step, so a widget can replay it::

    steps = backward_steps(L)
    draw_graph(L, highlight=steps[3].node, grads=steps[3].grads)

or, with Previous/Next buttons (``coursekit.viz.step_through``)::

    step_through(steps, lambda s: draw_graph(L, highlight=s.node, grads=s.grads),
                 caption=lambda s: s.description)
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coursekit.scalar import Value, topological_order

if TYPE_CHECKING:  # imported lazily at run time: matplotlib is slow to import
    from matplotlib.axes import Axes

__all__ = ["BackwardStep", "backward_steps", "draw_graph", "graphviz_available"]

# Colours shared by both renderers.
_LEAF_COLOR = "#dbeafe"  # light blue: inputs and parameters
_NODE_COLOR = "#f1f5f9"  # light grey: intermediate results
_HIGHLIGHT_COLOR = "#fdba74"  # orange: the node whose backward step is shown
_INPUT_HIGHLIGHT_COLOR = "#fef3c7"  # pale yellow: the inputs that step sends gradient to
_OP_COLOR = "#ffffff"  # operation circles


def graphviz_available() -> bool:
    """True when the ``graphviz`` Python package imports and its ``dot`` program is on PATH."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def draw_graph(
    root: Value,
    *,
    show_grad: bool = True,
    rankdir: str = "LR",
    highlight: Value | None = None,
    grads: Mapping[Value, float] | None = None,
    backend: str = "auto",
    ax: Axes | None = None,
    max_nodes: int = 200,
) -> Any:
    """Draw the expression graph that computes ``root``.

    Args:
        root: the output ``Value``; every node it depends on is drawn.
        show_grad: also print each node's gradient.
        rankdir: ``"LR"`` (inputs on the left) or ``"TB"`` (inputs at the top).
        highlight: a node to colour, with its inputs and the arrows into it (used to show
            one step of the backward pass).
        grads: gradients to print instead of the nodes' current ``.grad`` (a snapshot from
            ``backward_steps``); nodes missing from it fall back to ``.grad``.
        backend: ``"auto"`` (Graphviz if available, else matplotlib), ``"graphviz"`` or
            ``"matplotlib"``.
        ax: matplotlib only: draw into these axes instead of a new figure.
        max_nodes: refuse graphs larger than this (the drawing would be unreadable).

    Returns:
        a ``graphviz.Digraph`` (it renders itself in Jupyter) or a matplotlib ``Figure``.
    """
    if not isinstance(root, Value):
        raise TypeError(f"draw_graph(root): root must be a Value, got {type(root).__name__}")
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"draw_graph(rankdir): expected 'LR' or 'TB', got {rankdir!r}")
    if backend not in ("auto", "graphviz", "matplotlib"):
        raise ValueError(
            f"draw_graph(backend): expected 'auto', 'graphviz' or 'matplotlib', got {backend!r}"
        )
    nodes = topological_order(root)
    if len(nodes) > max_nodes:
        raise ValueError(
            f"draw_graph(root): the graph has {len(nodes)} nodes, more than max_nodes="
            f"{max_nodes}; draw a smaller expression or raise max_nodes"
        )
    if highlight is not None and not any(node is highlight for node in nodes):
        raise ValueError("draw_graph(highlight): that node is not part of root's graph")

    use_graphviz = backend == "graphviz" or (backend == "auto" and graphviz_available())
    if backend == "graphviz" and not graphviz_available():
        raise RuntimeError(
            "draw_graph(backend='graphviz'): needs the graphviz Python package and the "
            "Graphviz 'dot' program; use backend='matplotlib' instead"
        )
    grad_of = _grad_lookup(grads)
    if use_graphviz:
        return _draw_with_graphviz(nodes, grad_of, show_grad, rankdir, highlight)
    return _draw_with_matplotlib(nodes, grad_of, show_grad, rankdir, highlight, ax)


# --------------------------------------------------------------------------- helpers
def _grad_lookup(grads: Mapping[Value, float] | None):
    """A function node -> gradient to display (from the snapshot when one is given)."""
    if grads is None:
        return lambda node: node.grad
    return lambda node: grads.get(node, node.grad)


def _node_lines(node: Value, grad: float, show_grad: bool) -> list[str]:
    """The text of a value box: its label (if any), its data, and its gradient."""
    lines = [node.label] if node.label else []
    lines.append(f"data {node.data:.4f}")
    if show_grad:
        lines.append(f"grad {grad:.4f}")
    return lines


def _fill_color(node: Value, highlight: Value | None) -> str:
    if highlight is not None:
        if node is highlight:
            return _HIGHLIGHT_COLOR
        if any(node is parent for parent in highlight._prev):
            return _INPUT_HIGHLIGHT_COLOR
    return _NODE_COLOR if node._prev else _LEAF_COLOR


# ------------------------------------------------------------------------- graphviz
def _draw_with_graphviz(nodes, grad_of, show_grad, rankdir, highlight):
    """One record node per Value, one small circle per operation, edges in between."""
    import graphviz

    dot = graphviz.Digraph(format="svg", graph_attr={"rankdir": rankdir})
    for node in nodes:
        name = str(id(node))
        label = " | ".join(_node_lines(node, grad_of(node), show_grad))
        dot.node(
            name,
            label="{ " + label + " }" if rankdir == "LR" else label,
            shape="record",
            style="filled",
            fillcolor=_fill_color(node, highlight),
        )
        if node._op:
            dot.node(name + node._op, label=node._op, shape="circle")
            dot.edge(name + node._op, name, penwidth="2" if node is highlight else "1")
            for parent in node._prev:
                dot.edge(str(id(parent)), name + node._op)
    return dot


# ----------------------------------------------------------------------- matplotlib
# Layout sizes in data units; the figure maps one unit to _INCHES_PER_UNIT inches, so the
# text (in points) always fits its box whatever the size of the graph.
_BOX_WIDTH = 2.2
_OP_RADIUS = 0.42
_GAP = 0.45  # free space around an operation circle, and between neighbouring boxes
_INCHES_PER_UNIT = 0.5
_FONT_SIZE = 8


def _layers(nodes: list[Value]) -> dict[Value, int]:
    """Column of every node: 0 for a leaf, else 1 + the largest column among its inputs.

    ``nodes`` is in topological order, so every input has its column before it is needed.
    """
    layer: dict[Value, int] = {}
    for node in nodes:
        layer[node] = 1 + max((layer[p] for p in node._prev), default=-1)
    return layer


def _rows(nodes: list[Value], layer: dict[Value, int]) -> dict[Value, float]:
    """Row of every node: leaves in order of appearance, then by the mean row of the inputs."""
    columns: dict[int, list[Value]] = {}
    for node in nodes:
        columns.setdefault(layer[node], []).append(node)
    row: dict[Value, float] = {}
    for col in sorted(columns):
        members = columns[col]
        if col > 0:
            members.sort(key=lambda n: sum(row[p] for p in n._prev) / len(n._prev))
        offset = (len(members) - 1) / 2  # centre every column on row 0
        for i, node in enumerate(members):
            row[node] = i - offset
    return row


def _boundary_point(center, toward, half_w, half_h, radius=None):
    """Where the segment from ``center`` to ``toward`` leaves a box (or a circle)."""
    dx, dy = toward[0] - center[0], toward[1] - center[1]
    if dx == 0 and dy == 0:
        return center
    if radius is not None:
        scale = radius / (dx * dx + dy * dy) ** 0.5
    else:
        scale = min(half_w / abs(dx) if dx else math.inf, half_h / abs(dy) if dy else math.inf)
    return (center[0] + dx * scale, center[1] + dy * scale)


def _draw_with_matplotlib(nodes, grad_of, show_grad, rankdir, highlight, ax):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyBboxPatch

    layer = _layers(nodes)
    row = _rows(nodes, layer)
    n_lines = max(len(_node_lines(n, 0.0, show_grad)) for n in nodes)
    box_h = 0.3 + 0.28 * n_lines
    half_w, half_h = _BOX_WIDTH / 2, box_h / 2

    # A box's size along the flow (inputs -> result) and across it, for this direction.
    box_along, box_across = 2 * half_w, 2 * half_h
    if rankdir == "TB":
        box_along, box_across = box_across, box_along
    column_step = box_along + 2 * _OP_RADIUS + 4 * _GAP  # box, gap, circle, gap, next box
    row_step = box_across + _GAP

    def place(along: float, across: float) -> tuple[float, float]:
        """Position along the flow and across it -> (x, y) on the page for rankdir."""
        return (along, -across) if rankdir == "LR" else (across, -along)

    value_xy = {n: place(layer[n] * column_step, row[n] * row_step) for n in nodes}
    op_xy = {  # each operation's circle sits halfway between its result and the column before
        n: place((layer[n] - 0.5) * column_step, row[n] * row_step) for n in nodes if n._op
    }

    xs = [x for x, _ in value_xy.values()]
    ys = [y for _, y in value_xy.values()]
    pad = max(half_w, half_h) + 0.4
    x_lo, x_hi = min(xs) - pad, max(xs) + pad
    y_lo, y_hi = min(ys) - pad, max(ys) + pad
    if ax is None:
        fig = plt.figure(
            figsize=((x_hi - x_lo) * _INCHES_PER_UNIT, (y_hi - y_lo) * _INCHES_PER_UNIT)
        )
        ax = fig.add_axes((0, 0, 1, 1))
        plt.close(fig)  # shown by Jupyter from the return value, not twice
    else:
        fig = ax.figure
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal")
    ax.axis("off")

    def arrow(start, end, bold: bool) -> None:
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#c2410c" if bold else "#475569",
                "lw": 2.0 if bold else 1.0,
                "shrinkA": 0,
                "shrinkB": 0,
            },
            zorder=1,
        )

    for node in nodes:
        x, y = value_xy[node]
        ax.add_patch(
            FancyBboxPatch(
                (x - half_w, y - half_h),
                2 * half_w,
                2 * half_h,
                boxstyle="round,pad=0,rounding_size=0.12",
                facecolor=_fill_color(node, highlight),
                edgecolor="#c2410c" if node is highlight else "#334155",
                linewidth=2.0 if node is highlight else 1.0,
                zorder=2,
            )
        )
        text = "\n".join(_node_lines(node, grad_of(node), show_grad))
        ax.text(
            x, y, text, ha="center", va="center", fontsize=_FONT_SIZE, family="monospace", zorder=3
        )
        if not node._op:
            continue
        ox, oy = op_xy[node]
        bold = node is highlight
        ax.add_patch(
            Circle(
                (ox, oy),
                _OP_RADIUS,
                facecolor=_OP_COLOR,
                edgecolor="#334155",
                linewidth=2.0 if bold else 1.0,
                zorder=2,
            )
        )
        label_size = _FONT_SIZE if len(node._op) <= 4 else _FONT_SIZE - 2
        ax.text(ox, oy, node._op, ha="center", va="center", fontsize=label_size, zorder=3)
        arrow(
            _boundary_point((ox, oy), (x, y), 0, 0, radius=_OP_RADIUS),
            _boundary_point((x, y), (ox, oy), half_w, half_h),
            bold,
        )
        for parent in node._prev:
            px, py = value_xy[parent]
            arrow(
                _boundary_point((px, py), (ox, oy), half_w, half_h),
                _boundary_point((ox, oy), (px, py), 0, 0, radius=_OP_RADIUS),
                bold,
            )
    return fig


# -------------------------------------------------------------------- backward steps
@dataclass
class BackwardStep:
    """The state of a backward pass after one local step.

    Attributes:
        index: 0 for the seed (root.grad = 1), then 1, 2, ... one per non-leaf node.
        node: the node whose local backward just ran (the root for the seed step).
        grads: the gradient of every node of the graph after this step.
        description: one line saying what the step did, for a widget's caption.
    """

    index: int
    node: Value
    grads: dict[Value, float]
    description: str


def _name(node: Value) -> str:
    """How a step's caption names a node: its label, else its operation in angle brackets."""
    if node.label:
        return node.label
    return f"<{node._op}>" if node._op else "<leaf>"


def backward_steps(root: Value) -> list[BackwardStep]:
    """Run ``root.backward()`` one local step at a time, recording the gradients after each.

    Follows ``Value.backward`` exactly (same order, same reset of intermediate gradients,
    leaves accumulate), so afterwards every ``.grad`` equals what ``root.backward()`` gives.
    Leaves are skipped: their backward step has no inputs to pass a gradient to. Each
    snapshot copies every gradient, so keep this to graphs small enough to draw.
    """
    if not isinstance(root, Value):
        raise TypeError(f"backward_steps(root): root must be a Value, got {type(root).__name__}")
    order = topological_order(root)
    for node in order:
        if node._prev:
            node.grad = 0.0
    root.grad += 1.0

    def snapshot() -> dict[Value, float]:
        return {node: node.grad for node in order}

    steps = [
        BackwardStep(0, root, snapshot(), f"seed: {_name(root)}.grad = 1 (the output's own slope)"),
    ]
    for node in reversed(order):
        if not node._prev:
            continue
        node._backward()
        inputs = ", ".join(f"{_name(p)}.grad = {p.grad:.4f}" for p in node._prev)
        description = f"{_name(node)} = {node._op}(...) with grad {node.grad:.4f} -> {inputs}"
        steps.append(BackwardStep(len(steps), node, snapshot(), description))
    return steps
