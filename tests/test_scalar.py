"""Tests of coursekit.scalar.Value (against torch.autograd) and of its graph drawing."""

from __future__ import annotations

import functools
import gc
import math
import random
import sys
import types

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch  # noqa: E402

from coursekit.gradcheck import rel_error  # noqa: E402
from coursekit.scalar import Value, topological_order  # noqa: E402
from coursekit.viz import graph as graph_module  # noqa: E402
from coursekit.viz.graph import backward_steps, draw_graph  # noqa: E402

# ------------------------------------------------------------------ random expressions
# Each operation is written once and applied both to Values and to float64 torch scalars,
# which support the same operators and methods. Arguments are shaped so that every
# operation stays in its domain (log of a positive number, no division by ~0, ...).
OPERATIONS = [
    lambda a, b: a + b,
    lambda a, b: a - b,
    lambda a, b: a * b,
    lambda a, b: a / (1.5 + b * b),
    lambda a, b: a**2,
    lambda a, b: a**3,
    lambda a, b: (a * a + 0.25) ** 1.5,
    lambda a, b: (a * a + 0.5) ** -0.5,
    lambda a, b: 1.5 + a,  # radd
    lambda a, b: 2.0 - a,  # rsub
    lambda a, b: 0.5 * a,  # rmul
    lambda a, b: 3.0 / (1.0 + a * a),  # rtruediv
    lambda a, b: -a,
    lambda a, b: a.tanh().exp(),
    lambda a, b: (a * a + 0.5).log(),
    lambda a, b: a.tanh(),
    lambda a, b: (3.0 * a).sigmoid(),
    lambda a, b: a.relu(),
]
EVERY_OP_KIND = {"+", "-", "*", "/", "**", "neg", "exp", "log", "tanh", "sigmoid", "relu"}


def build_pair(seed: int, leaf_values: list[float], n_ops: int):
    """The same random expression as a Value graph and as a torch graph."""
    rng = random.Random(seed)
    leaves = [Value(v, label=f"x{i}") for i, v in enumerate(leaf_values)]
    tleaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in leaf_values]
    pool, tpool = list(leaves), list(tleaves)
    for _ in range(n_ops):
        op = rng.choice(OPERATIONS)
        i, j = rng.randrange(len(pool)), rng.randrange(len(pool))
        pool.append(op(pool[i], pool[j]))
        tpool.append(op(tpool[i], tpool[j]))
    # The root adds up every node, so each one has a gradient and many are used twice.
    root = functools.reduce(lambda a, b: a + b, pool[len(leaves) :])
    troot = functools.reduce(lambda a, b: a + b, tpool[len(leaves) :])
    return leaves, tleaves, root, troot


def op_kind(op: str) -> str:
    return "**" if op.startswith("**") else op


def assert_matches_torch(leaves, tleaves, root, troot) -> None:
    assert math.isclose(root.data, troot.item(), rel_tol=1e-12, abs_tol=1e-12)
    got = torch.tensor([leaf.grad for leaf in leaves], dtype=torch.float64)
    expected = torch.stack([t.grad if t.grad is not None else torch.zeros(()) for t in tleaves])
    assert rel_error(got, expected) < 1e-9, (got, expected)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    leaf_values=st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=4),
    n_ops=st.integers(1, 12),
)
def test_random_expressions_match_torch(seed, leaf_values, n_ops):
    leaves, tleaves, root, troot = build_pair(seed, leaf_values, n_ops)
    root.backward()
    troot.backward()
    assert_matches_torch(leaves, tleaves, root, troot)


def test_seeded_expressions_cover_every_op_and_match_torch():
    seen = set()
    for seed in range(40):
        rng = random.Random(1000 + seed)
        values = [rng.uniform(-2, 2) for _ in range(3)]
        leaves, tleaves, root, troot = build_pair(seed, values, n_ops=15)
        seen |= {op_kind(node._op) for node in topological_order(root) if node._op}
        root.backward()
        troot.backward()
        assert_matches_torch(leaves, tleaves, root, troot)
    assert seen == EVERY_OP_KIND


# -------------------------------------------------------------- single operations
@pytest.mark.parametrize("x", [-1000.0, -40.0, -1.0, 0.0, 2.0, 40.0, 1000.0])
def test_sigmoid_is_stable_and_matches_torch(x):
    v = Value(x)
    out = v.sigmoid()
    out.backward()
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    torch.sigmoid(t).backward()
    assert math.isfinite(out.data) and math.isfinite(v.grad)
    assert out.data == pytest.approx(torch.sigmoid(t).item(), rel=1e-15, abs=1e-300)
    assert v.grad == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-300)


def test_relu_gradient_at_zero_is_zero_like_torch():
    v = Value(0.0)
    v.relu().backward()
    t = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    torch.relu(t).backward()
    assert v.grad == t.grad.item() == 0.0


def test_every_op_docstring_gives_its_local_derivative():
    for name in ["__add__", "__sub__", "__mul__", "__truediv__", "__pow__", "__neg__",
                 "exp", "log", "tanh", "sigmoid", "relu"]:  # fmt: skip
        doc = getattr(Value, name).__doc__
        assert doc is not None and "derivative" in doc.lower(), name


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="data"):
        Value("three")
    with pytest.raises(TypeError, match="exponent"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(TypeError, match="operand"):
        Value(2.0) + "x"
    with pytest.raises(ValueError, match="positive"):
        Value(-1.0).log()
    with pytest.raises(ValueError, match="negative base"):
        Value(-8.0) ** 0.5
    with pytest.raises(ZeroDivisionError):
        Value(1.0) / 0.0
    with pytest.raises(TypeError, match="root"):
        topological_order(3.0)


def test_value_uses_slots_and_keeps_its_inputs_in_prev():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    assert not hasattr(c, "__dict__")
    assert c._prev == (a, b) and c._op == "*"
    assert a._prev == () and a._op == ""


# ------------------------------------------------------------ the three classic bugs
def test_deep_chain_has_no_recursion_limit():
    n = 1_000_000
    x = Value(2.0)
    y = x
    gc.disable()  # building is not under test; the cycle collector's passes would triple its time
    try:
        for _ in range(n):
            y = y.relu()
    finally:
        gc.enable()
    assert n > 10 * sys.getrecursionlimit()
    y.backward()
    assert x.grad == 1.0  # the gradient went through all n nodes
    assert y.grad == 1.0 and y._prev[0].grad == 1.0
    # Freeing a million linked nodes (the cycle collector breaks each node's reference to
    # itself through its _backward closure) must not overflow the C stack either.
    del y
    gc.collect()
    assert x.grad == 1.0


def test_node_used_twice_accumulates():
    a = Value(3.0)
    (a + a).backward()
    assert a.grad == 2.0  # d(a + a)/da = 1 + 1, not 1

    b = Value(3.0)
    (b * b).backward()
    assert b.grad == 6.0  # 2b

    # a node feeding two branches
    c = Value(0.7)
    h = c * 2.0
    out = h.tanh() + h * c
    out.backward()
    tc = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    th = tc * 2.0
    (th.tanh() + th * tc).backward()
    assert c.grad == pytest.approx(tc.grad.item(), rel=1e-13)


def test_backward_twice_matches_torch():
    values = {"a": 0.8, "b": -1.3, "c": 0.4}
    a, b, c = (Value(v, label=k) for k, v in values.items())
    h = a * b + c  # intermediate, used twice below
    out = h.tanh() * h + (h * a).sigmoid()

    ta, tb, tc = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values.values())
    th = ta * tb + tc
    tout = th.tanh() * th + (th * ta).sigmoid()
    tout.backward(retain_graph=True)
    once = [t.grad.clone() for t in (ta, tb, tc)]
    (dh_once,) = torch.autograd.grad(tout, th, retain_graph=True)
    tout.backward()

    out.backward()
    h_grad_once = h.grad
    out.backward()
    for v, t, g1 in zip((a, b, c), (ta, tb, tc), once, strict=True):
        assert v.grad == pytest.approx(t.grad.item(), rel=1e-13)  # same as torch ...
        assert v.grad == pytest.approx(2 * g1.item(), rel=1e-13)  # ... exactly twice
    # The intermediate's gradient is recomputed, not compounded.
    assert h.grad == pytest.approx(dh_once.item(), rel=1e-13)
    assert h.grad == pytest.approx(h_grad_once, rel=1e-15)
    assert out.grad == 1.0


def test_zero_grad_resets_every_node():
    a = Value(2.0)
    out = (a * a).exp()
    out.backward()
    out.zero_grad()
    assert all(node.grad == 0.0 for node in topological_order(out))


# ----------------------------------------------------------------- topological order
def test_topological_order_lists_each_node_once_after_its_inputs():
    rng = random.Random(7)
    leaves = [Value(rng.uniform(-1, 1)) for _ in range(5)]
    pool = list(leaves)
    for _ in range(200):
        pool.append(rng.choice(pool[-20:]) * rng.choice(pool[-20:]) + rng.choice(pool))
    root = pool[-1]
    order = topological_order(root)
    position = {id(node): i for i, node in enumerate(order)}
    assert len(position) == len(order)  # each node once
    assert order[-1] is root
    for node in order:
        assert all(position[id(p)] < position[id(node)] for p in node._prev)
    # every node reachable from root is listed
    reachable, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) not in reachable:
            reachable.add(id(node))
            stack.extend(node._prev)
    assert reachable == set(position)


def recursive_order(root: Value) -> list[Value]:
    """The recursive depth-first search that topological_order replaces (micrograd's)."""
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    return order


@pytest.mark.parametrize("seed", range(5))
def test_topological_order_is_the_recursive_search_without_recursion(seed):
    # A network-shaped graph (leaves used by many nodes, long sums) and a random one.
    rng = random.Random(seed)
    inputs = [Value(rng.uniform(-1, 1)) for _ in range(4)]
    weights = [Value(rng.uniform(-1, 1)) for _ in range(4)]
    units = [sum((w * x for w, x in zip(weights, inputs, strict=True)), Value(0.0)).relu()]
    units += [(units[-1] * w + x).tanh() for w, x in zip(weights, inputs, strict=True)]
    _, _, random_root, _ = build_pair(seed, [0.5, -1.0, 2.0], n_ops=30)
    for root in (units[-1] + units[0], random_root):
        assert [id(n) for n in topological_order(root)] == [id(n) for n in recursive_order(root)]
    leaf = Value(1.0)
    assert topological_order(leaf) == [leaf]


def test_backward_on_a_200000_node_chain_with_reuse():
    # v <- (v * a + v) * b uses v twice and the leaves a, b at every step; (1 + a) b = 1 keeps
    # the gradient near 1 over the whole chain, so it is a real check, not an underflow to 0.
    def chain(x, a, b, steps=66_667):  # three new nodes per step
        v = x
        for _ in range(steps):
            v = (v * a + v) * b
        return v

    x, a, b = Value(0.3), Value(0.25), Value(0.8)
    gc.disable()  # building is not under test
    try:
        v = chain(x, a, b)
    finally:
        gc.enable()
    assert len(topological_order(v)) > 200_000
    v.backward()
    first = [x.grad, a.grad, b.grad]
    leaves = [torch.tensor(d, dtype=torch.float64, requires_grad=True) for d in (0.3, 0.25, 0.8)]
    chain(*leaves).backward()
    for ours, theirs in zip(first, leaves, strict=True):
        assert ours == pytest.approx(theirs.grad.item(), rel=1e-9)
    assert 0.5 < x.grad < 2  # the gradient went through every node
    v.backward()  # a second call: leaves accumulate, intermediate nodes restart
    assert [x.grad, a.grad, b.grad] == pytest.approx([2 * g for g in first], rel=1e-9)


# ----------------------------------------------------------------------------- repr
def test_repr_shows_data_grad_op_and_label():
    out = Value(1.0).tanh()
    out.grad = 0.42
    assert repr(out) == "Value(data=0.7616, grad=0.4200, op='tanh')"
    assert repr(Value(-2.0, label="w")) == "Value(data=-2.0000, grad=0.0000, label='w')"


# ---------------------------------------------------------------------- drawing
def small_neuron():
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    n = x1 * w1 + x2 * w2 + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    return o, {"x1": x1, "x2": x2, "w1": w1, "w2": w2, "b": b, "n": n}


def figure_texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_text()]  # not arrows


def test_draw_graph_renders_with_matplotlib():
    o, nodes = small_neuron()
    o.backward()
    fig = draw_graph(o, backend="matplotlib")
    assert isinstance(fig, Figure)
    fig.canvas.draw()  # really renders
    texts = figure_texts(fig)
    value_boxes = [t for t in texts if "data" in t]
    assert len(value_boxes) == len(topological_order(o))
    assert "o\ndata 0.7071\ngrad 1.0000" in texts
    assert "w1\ndata -3.0000\ngrad 1.0000" in texts
    assert sorted(t for t in texts if "data" not in t) == ["*", "*", "+", "+", "tanh"]

    no_grad = draw_graph(o, backend="matplotlib", show_grad=False, rankdir="TB")
    assert not any("grad" in t for t in figure_texts(no_grad))


def test_draw_graph_default_works_without_graphviz():
    o, _ = small_neuron()
    result = draw_graph(o)
    if graph_module.graphviz_available():
        assert type(result).__name__ == "Digraph"
    else:
        assert isinstance(result, Figure)


def test_draw_graph_highlight_and_snapshot_grads():
    o, nodes = small_neuron()
    steps = backward_steps(o)
    step = next(s for s in steps if s.node is nodes["n"])
    fig = draw_graph(o, highlight=step.node, grads=step.grads, backend="matplotlib")
    texts = figure_texts(fig)
    assert "n\ndata 0.8814\ngrad 0.5000" in texts
    assert "w1\ndata -3.0000\ngrad 0.0000" in texts  # not reached yet at this step
    colors = {p.get_facecolor() for p in fig.axes[0].patches}
    plain = draw_graph(o, backend="matplotlib")
    assert colors != {p.get_facecolor() for p in plain.axes[0].patches}


def test_draw_graph_rejects_bad_arguments():
    o, _ = small_neuron()
    with pytest.raises(ValueError, match="rankdir"):
        draw_graph(o, rankdir="RL")
    with pytest.raises(ValueError, match="max_nodes"):
        draw_graph(o, max_nodes=3)
    with pytest.raises(ValueError, match="highlight"):
        draw_graph(o, highlight=Value(1.0))
    with pytest.raises(TypeError, match="root"):
        draw_graph(1.0)


def test_draw_graph_builds_a_graphviz_digraph_when_available(monkeypatch):
    class FakeDigraph:
        def __init__(self, **kwargs):
            self.kwargs, self.nodes, self.edges = kwargs, [], []

        def node(self, name, **attrs):
            self.nodes.append((name, attrs))

        def edge(self, tail, head, **attrs):
            self.edges.append((tail, head))

    monkeypatch.setitem(sys.modules, "graphviz", types.SimpleNamespace(Digraph=FakeDigraph))
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: "/usr/bin/dot")
    o, nodes = small_neuron()
    dot = draw_graph(o, rankdir="TB", highlight=nodes["n"])
    assert isinstance(dot, FakeDigraph)
    assert dot.kwargs["graph_attr"]["rankdir"] == "TB"
    n_values, n_ops = 10, 5  # 5 leaves + 5 results; ops: 2 *, 2 +, tanh
    assert len(dot.nodes) == n_values + n_ops
    assert len(dot.edges) == n_ops + 2 * 4 + 1  # op->result, two inputs per binary, one for tanh
    highlighted = [attrs for _, attrs in dot.nodes if "n |" in attrs.get("label", "")]
    assert highlighted and highlighted[0]["fillcolor"] == graph_module._HIGHLIGHT_COLOR


def lesson_02_graph():
    """L = (tanh(w*x + b) - y)**2 with every node labelled, as drawn in lesson 02."""
    x, w, b, y = (Value(d, label=n) for n, d in [("x", 1.5), ("w", -0.8), ("b", 0.4), ("y", 0.5)])
    u = w * x
    z = u + b
    a = z.tanh()
    r = a - y
    loss = r**2
    for node, name in [(u, "u"), (z, "z"), (a, "a"), (r, "r"), (loss, "L")]:
        node.label = name
    return loss


def graph_with_reuse():
    """A graph where a leaf and an intermediate result are used again several columns later."""
    a, b, c = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c")
    e = a * b
    d = e + c
    f = d * a  # a: used in the first column and in the third
    t = f.tanh()
    g = t + e  # e: used in the second column and in the fifth
    s = g * g  # the same input twice
    h = s + b  # b: used in the first column and in the last
    for node, name in [(e, "e"), (d, "d"), (f, "f"), (t, "t"), (g, "g"), (s, "s"), (h, "h")]:
        node.label = name
    return h


def drawn_columns(fig: Figure, rankdir: str) -> dict[str, int]:
    """label -> column of every value box in a drawing (0 = the column nearest the inputs)."""
    along_the_flow = {}  # LR: x grows along the flow; TB: y shrinks
    for text in fig.axes[0].texts:
        if "data" in text.get_text():
            x, y = text.get_position()
            along_the_flow[text.get_text().split("\n")[0]] = x if rankdir == "LR" else -y
    positions = sorted({round(a, 6) for a in along_the_flow.values()})
    return {name: positions.index(round(a, 6)) for name, a in along_the_flow.items()}


def arrow_paths(fig: Figure) -> list[np.ndarray]:
    """Points sampled along every arrow (line and head), in data coordinates."""
    paths = []
    for patch in fig.axes[0].patches:
        if isinstance(patch, FancyArrowPatch):
            t = np.linspace(0.0, 1.0, 25)
            points = [segment(t) for segment, _ in patch.get_path().iter_bezier()]
            paths.append(np.concatenate(points))
    return paths


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
@pytest.mark.parametrize("make_graph", [lesson_02_graph, graph_with_reuse])
def test_draw_graph_puts_every_node_right_before_its_first_consumer(make_graph, rankdir):
    root = make_graph()
    nodes = topological_order(root)
    columns = drawn_columns(draw_graph(root, backend="matplotlib", rankdir=rankdir), rankdir)
    assert len(columns) == len(nodes)
    first_consumer_column = {}
    for node in nodes:
        for parent in node._prev:
            earliest = first_consumer_column.get(parent.label, columns[node.label])
            first_consumer_column[parent.label] = min(earliest, columns[node.label])
    for node in nodes[:-1]:
        assert columns[node.label] == first_consumer_column[node.label] - 1, node.label
    assert columns[root.label] == max(columns.values())
    if make_graph is lesson_02_graph:  # the leaves b and y sit right before their operations
        assert [columns[name] for name in "wxbyL"] == [0, 0, 1, 3, 5]


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
@pytest.mark.parametrize("make_graph", [lesson_02_graph, graph_with_reuse, small_neuron])
def test_draw_graph_arrows_pass_through_no_box_and_no_circle(make_graph, rankdir):
    root = make_graph()
    root = root[0] if isinstance(root, tuple) else root
    fig = draw_graph(root, backend="matplotlib", rankdir=rankdir)
    patches = fig.axes[0].patches
    boxes = [p for p in patches if isinstance(p, FancyBboxPatch)]
    circles = [p for p in patches if isinstance(p, Circle)]
    paths = arrow_paths(fig)
    nodes = topological_order(root)
    n_inputs = sum(len(node._prev) for node in nodes)
    assert len(paths) == len(circles) + n_inputs  # op -> result, and one per input
    inside = 0.03  # arrows start and end on the outlines: only look strictly inside
    for points in paths:
        x, y = points[:, 0], points[:, 1]
        for box in boxes:
            in_box = (
                (x > box.get_x() + inside)
                & (x < box.get_x() + box.get_width() - inside)
                & (y > box.get_y() + inside)
                & (y < box.get_y() + box.get_height() - inside)
            )
            assert not in_box.any(), f"an arrow passes through a box at {points[in_box][0]}"
        for circle in circles:
            distance = np.hypot(x - circle.center[0], y - circle.center[1])
            assert (distance > 0.9 * circle.radius).all(), "an arrow passes through a circle"


def polylines_cross(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether a segment of one polyline properly crosses a segment of the other."""
    p, q = first[:-1, None, :], first[1:, None, :]  # (n, 1, 2): segments pq of the first
    r, s = second[None, :-1, :], second[None, 1:, :]  # (1, m, 2): segments rs of the second

    def side(a, b, c):  # sign of the turn a -> b -> c
        return np.sign(
            (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
            - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
        )

    return bool(((side(p, q, r) * side(p, q, s) < 0) & (side(r, s, p) * side(r, s, q) < 0)).any())


def test_draw_graph_tree_has_no_crossing_arrows():
    """In a tree each node feeds one operation: the ordering leaves no two arrows crossing."""
    for root in (lesson_02_graph(), small_neuron()[0]):
        paths = arrow_paths(draw_graph(root, backend="matplotlib"))
        for i, first in enumerate(paths):
            for second in paths[i + 1 :]:
                assert not polylines_cross(first, second)


@settings(max_examples=50, deadline=None)
@given(
    desired=st.lists(st.floats(-10, 10), min_size=1, max_size=8),
    gap=st.floats(0.1, 3.0),
)
def test_pack_keeps_order_and_gaps_and_moves_as_little_as_possible(desired, gap):
    gaps = [gap] * (len(desired) - 1)
    packed = graph_module._pack(desired, gaps)
    assert all(b - a >= g - 1e-9 for a, b, g in zip(packed, packed[1:], gaps, strict=False))
    if all(b - a >= g for a, b, g in zip(desired, desired[1:], gaps, strict=False)):
        assert packed == pytest.approx(desired)  # already fine: nothing moves
    assert sum(packed) == pytest.approx(sum(desired))  # least squares: the mean stays put


# ------------------------------------------------------------------- backward steps
def test_backward_steps_replay_backward_node_by_node():
    o, nodes = small_neuron()
    steps = backward_steps(o)
    order = topological_order(o)
    non_leaves = [node for node in reversed(order) if node._prev]
    assert [s.node for s in steps] == [o, *non_leaves]
    assert [s.index for s in steps] == list(range(len(steps)))
    assert steps[0].grads[o] == 1.0
    assert all(g == 0.0 for node, g in steps[0].grads.items() if node is not o)
    for before, after in zip(steps, steps[1:], strict=False):
        # a step changes only the gradients of its node's inputs ...
        changed = {id(node) for node in order if after.grads[node] != before.grads[node]}
        assert changed <= {id(p) for p in after.node._prev}
        assert after.description
    for k, s in enumerate(steps):
        # ... and a node's gradient is complete before it is passed on: it never changes later
        assert all(later.grads[s.node] == s.grads[s.node] for later in steps[k:])
    # the final state is exactly what backward() gives on the same graph
    o2, _ = small_neuron()
    o2.backward()
    final = [node.grad for node in order]
    assert final == [node.grad for node in topological_order(o2)]
    assert list(steps[-1].grads.values()) == final
    assert nodes["w1"].grad == pytest.approx(1.0) and nodes["x1"].grad == pytest.approx(-1.5)
