"""The list of graded items, and the decorator that adds one.

An item is a function that receives a grading context and the student's
functions, builds fresh random test cases, calls the student's functions on
them and compares what comes back with a reference::

    @item("04.linear_backward", points=3, signature="fn(dout, cache) -> (dx, dw, db)",
          description="dx, dw, db of out = x @ w + b", covers="batch 1, odd and square shapes")
    def _(ctx, fn):
        for n, d, h in [(4, 3, 5), (1, 3, 5)]:
            with ctx.case(f"x ({n}, {d}), w ({d}, {h})"):
                ...
                got = ctx.call(fn, dout, (x, w, b), names=("dout", "cache"))
                ctx.compare(got, expected, names=("dx", "dw", "db"), batch=n)

The names of the parameters after ``ctx`` are the functions the student passes
(``fn``, or ``forward, backward``): check() uses them to explain a wrong call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """A graded item: its name, its worth and the function that grades it.

    Attributes:
        name: "LL.short_name", LL the lesson number.
        points: points for passing it.
        description: one line: what the student writes.
        signature: what the student passes to check(), e.g. "fn(x) -> tensor".
        functions: names of the student's functions, in the order check() takes them.
        hand_written: True when the answer must be computed by hand, so using
            torch.autograd scores zero.
        covers: what the test cases include, shown when the item passes.
        timeout: seconds the whole item may take, or None for check()'s default.
        grade: the grading function, ``grade(ctx, *functions)``.
    """

    name: str
    points: int
    description: str
    signature: str
    functions: tuple[str, ...]
    hand_written: bool
    covers: str
    timeout: float | None
    grade: Callable[..., None]

    @property
    def lesson(self) -> str:
        """The lesson number as written in the name, e.g. "04"."""
        return self.name.split(".", 1)[0]


_ITEMS: dict[str, Item] = {}


def item(
    name: str,
    *,
    points: int,
    description: str,
    signature: str,
    covers: str,
    hand_written: bool = True,
    timeout: float | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the decorated function as the grader of item ``name``."""
    if "." not in name:
        raise ValueError(f"item name {name!r} must look like 'LL.short_name', e.g. '04.linear'")
    if name in _ITEMS:
        raise ValueError(f"item {name!r} is registered twice")

    def register(grade: Callable[..., None]) -> Callable[..., None]:
        params = list(inspect.signature(grade).parameters)[1:]  # after ctx
        _ITEMS[name] = Item(
            name=name,
            points=points,
            description=description,
            signature=signature,
            functions=tuple(params),
            hand_written=hand_written,
            covers=covers,
            timeout=timeout,
            grade=grade,
        )
        return grade

    return register


def get_item(name: str) -> Item | None:
    """The item called ``name``, or None."""
    return _ITEMS.get(name)


def all_items() -> list[Item]:
    """Every registered item, by lesson, in the order each lesson registers them."""
    return sorted(_ITEMS.values(), key=lambda it: it.lesson)


class ItemTable(dict):
    """A dict ``name -> Item`` that prints as a table of names, points and descriptions."""

    def __repr__(self) -> str:
        if not self:
            return "(no items)"
        width = max(len(name) for name in self)
        lines = [
            f"{name:<{width}}  {it.points} pt{'s' if it.points != 1 else ' '}  {it.description}"
            for name, it in self.items()
        ]
        total = sum(it.points for it in self.values())
        lines.append(f"{'total':<{width}}  {total} points")
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{it.points}</td>"
            f"<td>{html.escape(it.description)}</td>"
            f"<td><code>{html.escape(it.signature)}</code></td></tr>"
            for name, it in self.items()
        )
        return (
            "<table><tr><th>item</th><th>points</th><th>what you write</th>"
            f"<th>you pass</th></tr>{rows}</table>"
        )


def items(lesson: str | None = None) -> ItemTable:
    """Every graded item (or those of one lesson, e.g. ``items("04")``), with its points.

    Returns a dict ``name -> Item``; each Item has ``points``, ``description`` and
    ``signature``. It prints as a table.
    """
    chosen = all_items()
    if lesson is not None:
        prefix = str(lesson).rstrip(".")
        chosen = [it for it in chosen if it.lesson == prefix or it.name.startswith(prefix + ".")]
    return ItemTable((it.name, it) for it in chosen)
