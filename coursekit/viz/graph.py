"""Drawing the expression graph of a ``Value``, and stepping through its backward pass.

``draw_graph(L)`` shows every ``Value`` that ``L`` depends on as a box (label, data, grad) and
every operation as a circle between its inputs and its result, in the style of Graphviz
drawings of micrograd. It uses Graphviz when both the ``graphviz`` Python package and its
``dot`` program are installed, and otherwise lays the graph out with matplotlib alone:

* every node sits in the column right before the operation that first uses it (the result
  in the last column), so every arrow points forward, from inputs to results, and each
  input sits next to the operation it feeds;
* within a column, nodes are ordered to keep arrows from crossing, and placed near their
  neighbours, so most arrows come out straight;
* arrows bend only in the free space between columns, and an arrow that skips columns runs
  through a free lane, so no arrow passes through a box.

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
import statistics
from collections.abc import Callable, Mapping
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
# The matplotlib drawing is a small layered layout, the method Graphviz's dot uses too:
#
# 1. columns: the root goes in the last column and every other node in the column right
#    before its first consumer, so each input sits next to the operation that uses it;
# 2. bends: an arrow that skips columns (a node used again further on) gets a bend slot in
#    every column it passes, a free lane that no box occupies;
# 3. order: within a column, slots are sorted by the mean position of their neighbours
#    (barycenter ordering), sweeping both ways a few times and keeping the order with the
#    fewest crossing arrows;
# 4. positions: every slot moves toward the median position of its neighbours while keeping
#    the order and the gaps, so most arrows come out straight.
#
# Arrows leave a box from the middle of its outgoing side and bend only in the free space in
# front of the operation circles, so they never pass through a box or a circle.
#
# Sizes are in data units; the figure maps one unit to _INCHES_PER_UNIT inches, so the text
# (in points) always fits its box whatever the size of the graph.
_BOX_WIDTH = 2.2
_OP_RADIUS = 0.42
_CURVE_GAP = 1.4  # box -> next operation circle: the room where arrows bend
_ARROW_GAP = 0.5  # operation circle -> its result: a short straight arrow
_ROW_GAP = 0.45  # between neighbouring boxes of a column
_BEND_HALF = 0.3  # half the width of the lane a bend takes across the flow
_INCHES_PER_UNIT = 0.5
_FONT_SIZE = 8
_PORT_SPREAD = math.radians(28)  # angle between the arrows entering one operation circle
_ORDER_SWEEPS = 4
_POSITION_SWEEPS = 12


@dataclass(eq=False)  # compared by identity, like Value
class _Bend:
    """Where an arrow crosses a column it skips: a lane in that column, with no box."""

    column: int


@dataclass
class _Edge:
    """One input arrow: from ``source``'s box through ``bends`` into ``target``'s operation."""

    source: Value
    target: Value
    bends: list[_Bend]

    def slots(self) -> list[Value | _Bend]:
        return [self.source, *self.bends, self.target]


def _columns(nodes: list[Value]) -> dict[Value, int]:
    """Column of every node: the root last, every other node right before its first consumer.

    The root's column is the length of the longest path from a leaf to it, which leaves
    room for every chain. ``nodes`` is in topological order, so walking it backwards meets
    every consumer before its inputs.
    """
    longest_path: dict[Value, int] = {}
    for node in nodes:
        longest_path[node] = 1 + max((longest_path[p] for p in node._prev), default=-1)
    users = _consumers(nodes)
    root = nodes[-1]
    column = {root: longest_path[root]}
    for node in reversed(nodes[:-1]):
        column[node] = min(column[user] for user in users[node]) - 1
    return column


def _consumers(nodes: list[Value]) -> dict[Value, list[Value]]:
    """For every node, the nodes that take it as an input."""
    users: dict[Value, list[Value]] = {node: [] for node in nodes}
    for node in nodes:
        for parent in node._prev:
            users[parent].append(node)
    return users


def _edges(nodes: list[Value], column: dict[Value, int]) -> list[_Edge]:
    """Every input arrow, with a bend in each column strictly between its two ends."""
    return [
        _Edge(parent, node, [_Bend(c) for c in range(column[parent] + 1, column[node])])
        for node in nodes
        for parent in node._prev
    ]


def _neighbours(edges: list[_Edge]) -> tuple[dict, dict]:
    """The slots each slot is joined to in the column before (left) and after (right)."""
    left: dict[Value | _Bend, list] = {}
    right: dict[Value | _Bend, list] = {}
    for edge in edges:
        path = edge.slots()
        for a, b in zip(path[:-1], path[1:], strict=True):
            right.setdefault(a, []).append(b)
            left.setdefault(b, []).append(a)
    return left, right


def _first_order(nodes: list[Value], edges: list[_Edge], column: dict) -> list[list]:
    """Slots per column in a starting order: depth-first from the root, first operand first."""
    rank: dict[Value, int] = {}
    stack = [nodes[-1]]
    while stack:
        node = stack.pop()
        if node not in rank:
            rank[node] = len(rank)
            stack.extend(reversed(node._prev))
    keyed = [(rank[n], column[n], n) for n in nodes]
    keyed += [(rank[e.target], b.column, b) for e in edges for b in e.bends]
    columns: list[list] = [[] for _ in range(max(column.values()) + 1)]
    for _, col, slot in sorted(keyed, key=lambda item: item[0]):
        columns[col].append(slot)
    return columns


def _crossings(columns: list[list], right: dict) -> int:
    """How many pairs of arrows cross between neighbouring columns."""
    total = 0
    for here, there in zip(columns[:-1], columns[1:], strict=True):
        where = {slot: i for i, slot in enumerate(there)}
        links = [(i, where[b]) for i, a in enumerate(here) for b in right.get(a, [])]
        total += sum(
            1
            for k, (a1, b1) in enumerate(links)
            for a2, b2 in links[k + 1 :]
            if (a1 - a2) * (b1 - b2) < 0
        )
    return total


def _sort_by_barycenter(slots: list, neighbours: dict, other_column: list) -> list:
    """``slots`` sorted by the mean index of their neighbours in ``other_column``.

    Slots with no neighbour there keep their place; ties keep their current order.
    """
    index = {slot: i for i, slot in enumerate(other_column)}

    def barycenter(slot) -> float:
        return sum(index[n] for n in neighbours[slot]) / len(neighbours[slot])

    movable = iter(sorted((s for s in slots if s in neighbours), key=barycenter))
    return [next(movable) if s in neighbours else s for s in slots]


def _order(columns: list[list], left: dict, right: dict) -> list[list]:
    """Barycenter sweeps, right to left then left to right; the order with fewest crossings."""
    best, fewest = [list(c) for c in columns], _crossings(columns, right)
    for _ in range(_ORDER_SWEEPS):
        for j in reversed(range(len(columns) - 1)):  # by the positions of the consumers
            columns[j] = _sort_by_barycenter(columns[j], right, columns[j + 1])
        for j in range(1, len(columns)):  # by the positions of the inputs
            columns[j] = _sort_by_barycenter(columns[j], left, columns[j - 1])
        crossings = _crossings(columns, right)
        if crossings < fewest:
            best, fewest = [list(c) for c in columns], crossings
    return best


def _pack(desired: list[float], gaps: list[float]) -> list[float]:
    """The positions closest to ``desired`` (least squares) that keep ``gaps[i]`` between slot
    i and slot i + 1, in this order.

    With offset_i = gaps[0] + ... + gaps[i - 1] and y_i = t_i + offset_i, the conditions
    y_(i+1) - y_i >= gaps[i] become t_0 <= t_1 <= ...: an isotonic regression of the targets
    desired_i - offset_i, solved by pooling adjacent blocks that are out of order.
    """
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    blocks: list[list[float]] = []  # [sum of targets, count], block means non-decreasing
    for target in (d - o for d, o in zip(desired, offsets, strict=True)):
        blocks.append([target, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    means = [total / count for total, count in blocks for _ in range(int(count))]
    return [t + o for t, o in zip(means, offsets, strict=True)]


def _positions(
    columns: list[list], left: dict, right: dict, half_size: Callable[[Value | _Bend], float]
) -> dict:
    """Across-the-flow coordinate of every slot: near its neighbours, no overlaps.

    Starts with each column stacked around 0, then moves each slot toward the median position
    of its neighbours (both sides), column by column, forwards and backwards. The median
    rather than the mean lines a node up with one neighbour, which makes chains straight.
    """
    position: dict = {}

    def gaps(column: list) -> list[float]:
        return [half_size(a) + half_size(b) for a, b in zip(column[:-1], column[1:], strict=True)]

    for column in columns:
        packed = _pack([0.0] * len(column), gaps(column))
        position.update(zip(column, packed, strict=True))
    for _ in range(_POSITION_SWEEPS):
        for column in [*columns, *reversed(columns)]:
            desired = []
            for slot in column:
                near = left.get(slot, []) + right.get(slot, [])
                desired.append(statistics.median(position[n] for n in near) if near else 0.0)
            position.update(zip(column, _pack(desired, gaps(column)), strict=True))
    return position


def _s_curve(start, end, end_direction) -> list[tuple[float, float]]:
    """Control points of a cubic Bezier leaving ``start`` along the flow and arriving at ``end``
    heading in ``end_direction`` (a unit vector); it stays between the two along the flow."""
    reach = (end[0] - start[0]) / 2
    return [
        (start[0] + reach, start[1]),
        (end[0] - reach * end_direction[0], end[1] - reach * end_direction[1]),
        end,
    ]


def _draw_with_matplotlib(nodes, grad_of, show_grad, rankdir, highlight, ax):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path

    n_lines = max(len(_node_lines(n, 0.0, show_grad)) for n in nodes)
    box_height = 0.3 + 0.28 * n_lines
    # A box's size along the flow (inputs -> result) and across it, for this direction.
    box_along, box_across = _BOX_WIDTH, box_height
    if rankdir == "TB":
        box_along, box_across = box_across, box_along
    column_step = box_along + _CURVE_GAP + 2 * _OP_RADIUS + _ARROW_GAP

    def half_size(slot) -> float:
        return _BEND_HALF if isinstance(slot, _Bend) else (box_across + _ROW_GAP) / 2

    column = _columns(nodes)
    edges = _edges(nodes, column)
    left, right = _neighbours(edges)
    columns = _order(_first_order(nodes, edges, column), left, right)
    across = _positions(columns, left, right, half_size)

    # Everything below is computed in (along, across) coordinates, then placed on the page.
    def place(along: float, across_: float) -> tuple[float, float]:
        """Position along the flow and across it -> (x, y) on the page for rankdir."""
        return (along, -across_) if rankdir == "LR" else (across_, -along)

    def box_center(node: Value) -> tuple[float, float]:
        return (column[node] * column_step, across[node])

    def op_along(col: int) -> float:
        """Where the operation circles of column ``col`` sit along the flow."""
        return col * column_step - box_along / 2 - _ARROW_GAP - _OP_RADIUS

    def op_center(node: Value) -> tuple[float, float]:
        return (op_along(column[node]), across[node])

    along_hi = max(column.values()) * column_step + box_along / 2
    across_lo = min(across[s] - (box_across / 2 if isinstance(s, Value) else 0.1) for s in across)
    across_hi = max(across[s] + (box_across / 2 if isinstance(s, Value) else 0.1) for s in across)
    pad = 0.4
    (x0, y0), (x1, y1) = (
        place(-box_along / 2 - pad, across_lo - pad),
        place(along_hi + pad, across_hi + pad),
    )
    x_lo, x_hi, y_lo, y_hi = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
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

    def arrow(points: list[tuple[float, float]], codes: list[int], bold: bool) -> None:
        ax.add_patch(
            FancyArrowPatch(
                path=Path([place(*p) for p in points], codes),
                arrowstyle="-|>",
                mutation_scale=10,
                color="#c2410c" if bold else "#475569",
                linewidth=2.0 if bold else 1.0,
                zorder=1,
            )
        )

    # The input arrows of each operation enter its circle at ports spread over the side facing
    # the inputs, the topmost input at the topmost port, so arrows into one circle never cross.
    inputs_of: dict[Value, list[_Edge]] = {node: [] for node in nodes}
    for edge in edges:
        inputs_of[edge.target].append(edge)
    for node in nodes:
        incoming = sorted(inputs_of[node], key=lambda e: across[e.slots()[-2]])
        for i, edge in enumerate(incoming):
            angle = (i - (len(incoming) - 1) / 2) * _PORT_SPREAD
            direction = (math.cos(angle), -math.sin(angle))  # from the port to the centre
            cx, cy = op_center(node)
            port = (cx - _OP_RADIUS * direction[0], cy - _OP_RADIUS * direction[1])
            start_along, start_across = box_center(edge.source)
            points = [(start_along + box_along / 2, start_across)]
            codes = [Path.MOVETO]
            for bend in edge.bends:  # a straight lane through the skipped column
                lane_start = (op_along(bend.column) - _OP_RADIUS, across[bend])
                lane_end = (bend.column * column_step + box_along / 2, across[bend])
                points += [*_s_curve(points[-1], lane_start, (1.0, 0.0)), lane_end]
                codes += [Path.CURVE4] * 3 + [Path.LINETO]
            points += _s_curve(points[-1], port, direction)
            codes += [Path.CURVE4] * 3
            arrow(points, codes, bold=node is highlight)

    for node in nodes:
        x, y = place(*box_center(node))
        half_w, half_h = _BOX_WIDTH / 2, box_height / 2  # on the page, whatever rankdir
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
        bold = node is highlight
        along, across_ = op_center(node)
        ax.add_patch(
            Circle(
                place(along, across_),
                _OP_RADIUS,
                facecolor=_OP_COLOR,
                edgecolor="#334155",
                linewidth=2.0 if bold else 1.0,
                zorder=2,
            )
        )
        label_size = _FONT_SIZE if len(node._op) <= 4 else _FONT_SIZE - 2
        ax.text(
            *place(along, across_),
            node._op,
            ha="center",
            va="center",
            fontsize=label_size,
            zorder=3,
        )
        result_side = column[node] * column_step - box_along / 2
        arrow(
            [(along + _OP_RADIUS, across_), (result_side, across_)],
            [Path.MOVETO, Path.LINETO],
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
