"""Lesson 02's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch


# ---------------------------------------------------------------------------- correct
def mul_backward(a, b, dout):
    return b * dout, a * dout


def pow_backward(a, n, dout):
    return n * a ** (n - 1) * dout


def exp_backward(a, dout):
    return torch.exp(a) * dout


def tanh_backward(a, dout):
    return (1 - torch.tanh(a) ** 2) * dout


def topological_order(root):
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif node not in visited:
            visited.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev if child not in visited)
    return order


SOLUTIONS = {
    "02.mul_backward": [mul_backward],
    "02.pow_backward": [pow_backward],
    "02.exp_backward": [exp_backward],
    "02.tanh_backward": [tanh_backward],
    "02.topological_order": [topological_order],
}
# 25 seeds each; 02.topological_order builds a 100_001-node chain each time, so seed 0 only
# (its mistakes too).
SEEDS = {**dict.fromkeys(SOLUTIONS, 25), "02.topological_order": 1}


# ---------------------------------------------------------------------------- mistakes
def mul_swapped(a, b, dout):
    return a * dout, b * dout


def mul_without_dout(a, b, dout):
    return b, a


def mul_float32_tensors(a, b, dout):
    return torch.tensor(b * dout), torch.tensor(a * dout)  # float32 when a, b are floats


def pow_exponent_n(a, n, dout):
    return n * a**n * dout


def exp_without_dout(a, dout):
    return torch.exp(a)


def tanh_of_input(a, dout):
    return (1 - a**2) * dout


def topo_recursive(root):
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    return order


def topo_no_visited_set(root):
    order, stack = [], [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev)
    return order


def topo_preorder(root):
    order, visited, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if node not in visited:
            visited.add(node)
            order.append(node)
            stack.extend(node._prev)
    return order


def topo_first_input_only(root):
    order, node = [], root
    while True:
        order.append(node)
        if not node._prev:
            return order[::-1]
        node = node._prev[0]


MISTAKES = [
    ("02.mul_backward", mul_swapped, "uses the *other* input"),
    ("02.mul_backward", mul_without_dout, "by dout"),
    ("02.mul_backward", mul_float32_tensors, "plain Python floats"),
    ("02.pow_backward", pow_exponent_n, "n - 1"),
    ("02.exp_backward", exp_without_dout, "by dout"),
    ("02.tanh_backward", tanh_of_input, "square tanh(a), not a"),
    ("02.topological_order", topo_recursive, "explicit stack"),
    ("02.topological_order", topo_no_visited_set, "appears twice"),
    ("02.topological_order", topo_preorder, "seems reversed"),
    ("02.topological_order", topo_first_input_only, "not only the first one"),
]
