"""Reading the student's source for automatic differentiation and for coursekit's own answer.

The ban (``guard``) stops automatic differentiation while the student's code
runs; this scan reads the code itself, so a hit is reported with its line even
when the route used is one the ban cannot see. It reads the graded functions
and the helpers they call that are defined next to them (in check(): found
through the functions' globals; in bulk: in the notebook's code cells).

A hit is one of:

* automatic differentiation: ``torch.autograd``, ``torch.func``/``functorch``,
  forward-mode AD, ``.backward()``, ``requires_grad``, grad mode switched on,
  autograd's engine or dispatch internals, coursekit's own autograd;
* coursekit's own implementation of the graded operation (``library``), e.g.
  ``coursekit.functional.linear_backward`` in 04.linear_backward;
* the grader itself (``coursekit.grading`` beyond check and items).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Attribute or function names that only automatic differentiation uses.
_AD_WORDS = {
    "autograd",
    "functorch",
    "forward_ad",
    "jacrev",
    "jacfwd",
    "jvp",
    "vjp",
    "hessian",
    "hvp",
    "vhp",
    "linearize",
    "make_dual",
    "unpack_dual",
    "dual_level",
    "requires_grad_",
    "enable_grad",
    "_execution_engine",
    "_ImperativeEngine",
    "run_backward",
    "_engine_run_backward",
    "_enter_dual_level",
    "_grad_increment_nesting",
    "_jvp_increment_nesting",
    "_dispatch_tls_set_dispatch_key_excluded",
    "_IncludeDispatchKeyGuard",
    "_ExcludeDispatchKeyGuard",
    "_AutoDispatchBelowAutograd",
}
_AD_MODULES = (
    "torch.autograd",
    "torch.func",
    "functorch",
    "torch._functorch",
    "coursekit.autograd",
)
_GRADER = "coursekit.grading"
_PROTECTED = (
    "coursekit.grading",
    "torch.autograd",
    "torch._C",
    "torch.func",
    "torch._functorch",
    "torch._VF",
    "Variable",
)
_GRADER_ALLOWED = {
    "coursekit.grading",
    "coursekit.grading.check",
    "coursekit.grading.items",
    "coursekit.grading.check.check",
    "coursekit.grading.registry.items",
}


@dataclass(frozen=True)
class Hit:
    """A line that scores zero: ``status`` ("uses autograd", "uses coursekit", "tampers"),
    ``what`` it does, and ``where`` (function and line) with the line itself."""

    status: str
    what: str
    where: str
    line: str

    def message(self) -> str:
        return f"{self.where}: `{self.line}`\nThis line {self.what}."


Resolver = Callable[[str], "str | None"]


def scan_source(
    source: str,
    resolve: Resolver,
    library: Sequence[str],
    label: str,
    first_line: int = 1,
    only: set[str] | None = None,
    lambdas_only: bool = False,
    keep: Callable[[Hit], bool] | None = None,
) -> Hit | None:
    """The first hit in ``source`` (a function's or a cell's code), or None.

    ``resolve(name)`` gives the dotted name a global name stands for (a module, a
    function), or None; ``library`` are coursekit's implementations of the graded op.
    """
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None
    lines = textwrap.dedent(source).splitlines()
    library_set = set(library)

    def hit(status: str, what: str, node: ast.AST) -> Hit:
        number = getattr(node, "lineno", 1)
        text = lines[number - 1].strip() if 0 < number <= len(lines) else ""
        return Hit(status, what, f"{label}, line {number + first_line - 1}", text)

    roots = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)] if lambdas_only else [tree]
    for node in (n for root in roots for n in ast.walk(root)):
        found = _check_node(node, resolve, library_set)
        if found and (only is None or found[0] in only or found[1] in only):
            result = hit(found[0], found[1], node)
            if keep is None or keep(result):
                return result
    return None


def _dotted(node: ast.AST, resolve: Resolver) -> str | None:
    """torch.autograd.grad -> "torch.autograd.grad", with the base name resolved."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    base = resolve(node.id) or node.id
    return ".".join([base, *reversed(parts)])


def _check_node(node: ast.AST, resolve: Resolver, library: set[str]) -> tuple[str, str] | None:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [f"{node.module or ''}.{a.name}" for a in node.names]
        )
        for name in modules:
            if name.startswith(_AD_MODULES) or name in ("torch.func", "torch.autograd"):
                return "uses autograd", "imports automatic differentiation"
            if name in library:
                return "uses coursekit", f"imports coursekit's own {name.rsplit('.', 1)[-1]}"
            if name.startswith(_GRADER) and name not in _GRADER_ALLOWED:
                return "tampers", "reaches into the grader (coursekit.grading)"
        return None
    if isinstance(node, ast.keyword) and node.arg == "requires_grad":
        if not (isinstance(node.value, ast.Constant) and not node.value.value):
            return "uses autograd", "asks autograd to record a graph (requires_grad)"
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in ("requires_grad", "__code__"):
                return "uses autograd", f"sets {target.attr}"
            if isinstance(target, ast.Attribute):
                dotted = _dotted(target, resolve) or ""
                if dotted.startswith(_PROTECTED):
                    return "tampers", f"replaces {dotted}"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "backward":
            return "uses autograd", "runs a backward pass (.backward())"
        if node.func.attr == "set_grad_enabled" and not (
            node.args and isinstance(node.args[0], ast.Constant) and not node.args[0].value
        ):
            return "uses autograd", "switches autograd's grad mode on"
    if isinstance(node, (ast.Attribute, ast.Name)):
        word = node.attr if isinstance(node, ast.Attribute) else node.id
        dotted = _dotted(node, resolve) or ""
        if dotted in library or (isinstance(node, ast.Name) and resolve(node.id) in library):
            name = (resolve(word) if isinstance(node, ast.Name) else dotted) or dotted
            return "uses coursekit", f"calls coursekit's own {name.rsplit('.', 1)[-1]}"
        if dotted.startswith(_AD_MODULES) or (
            isinstance(node, ast.Name) and (resolve(word) or "").startswith(_AD_MODULES)
        ):
            return "uses autograd", "uses automatic differentiation"
        if word in _AD_WORDS:
            return "uses autograd", "uses automatic differentiation"
        if dotted.startswith(_GRADER + ".") and dotted not in _GRADER_ALLOWED:
            return "tampers", "reaches into the grader (coursekit.grading)"
    return None


# ---------------------------------------------------------------------------- check()
def scan_functions(functions: Iterable[Any], library: Sequence[str]) -> Hit | None:
    """Scan the student's functions and the helpers they call (found through their globals)."""
    seen: set[int] = set()
    queue = [fn for fn in functions if callable(fn)]
    while queue and len(seen) < 40:
        fn = inspect.unwrap(queue.pop(0)) if callable(queue[0]) else queue.pop(0)
        fn = getattr(fn, "__func__", fn)
        if id(fn) in seen or not isinstance(fn, types.FunctionType):
            continue
        seen.add(id(fn))
        try:
            lines, first = inspect.getsourcelines(fn)
        except (OSError, TypeError):
            continue
        namespace = fn.__globals__
        resolve = _resolver(namespace)
        label = f"`{fn.__name__}`" if fn.__name__ != "<lambda>" else "a lambda"
        lambda_ = fn.__name__ == "<lambda>"
        found = scan_source("".join(lines), resolve, library, label, first, lambdas_only=lambda_)
        if found:
            return found
        for name in _names(fn.__code__):
            helper = namespace.get(name)
            if isinstance(helper, types.FunctionType) and helper.__module__ == fn.__module__:
                queue.append(helper)
    return None


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _resolver(namespace: dict) -> Resolver:
    def resolve(name: str) -> str | None:
        obj = namespace.get(name)
        if isinstance(obj, types.ModuleType):
            return obj.__name__
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if (
            isinstance(module, str)
            and isinstance(qualname, str)
            and module.startswith(("torch", "coursekit", "functorch"))
        ):
            return f"{module}.{qualname}"
        return None

    return resolve


# ---------------------------------------------------------------------------- bulk
def notebook_resolver(cells: Sequence[str]) -> Resolver:
    """Resolve names through the import statements of the notebook's code cells."""
    aliases: dict[str, str] = {}
    for source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases.get


def definitions(cells: Sequence[str]) -> dict[str, tuple[str, int, int]]:
    """name -> (source, cell number (1-based, code cells counted among all), first line) of the
    last top-level ``def`` of each name in the cells."""
    found: dict[str, tuple[str, int, int]] = {}
    for number, source in enumerate(cells, start=1):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                text = "\n".join(lines[start - 1 : node.end_lineno])
                found[node.name] = (text, number, start)
    return found


# The grader's modules that run in the student's process in bulk grading: a notebook that
# touches them could switch the ban off there. (Patching check() or the comparison is harmless:
# bulk grading does not use the notebook's check(), and compares in its own process.)
_STUDENT_SIDE = ("guard", "student", "worker", "wire", "isolation", "library", "__code__")


def _student_side(hit: Hit) -> bool:
    return any(word in hit.line for word in _STUDENT_SIDE)


def scan_notebook(
    cells: Sequence[str], names: Sequence[str], library: Sequence[str], cell_numbers: Sequence[int]
) -> Hit | None:
    """Scan, in a notebook's code cells, the functions ``names`` and the helpers they call,
    and every cell for reaching into the grader or into autograd's engine."""
    resolve = notebook_resolver(cells)
    defs = definitions(cells)
    queue, seen = list(names), set()
    while queue and len(seen) < 40:
        name = queue.pop(0)
        if name in seen or name not in defs:
            continue
        seen.add(name)
        source, number, first = defs[name]
        label = f"`{name}` (cell {cell_numbers[number - 1]})"
        found = scan_source(source, resolve, library, label, first)
        if found:
            return found
        try:
            tree = ast.parse(textwrap.dedent(source))
        except SyntaxError:
            continue
        queue += [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in defs]
    for number, source in enumerate(cells, start=1):
        found = scan_source(
            source,
            resolve,
            (),
            f"cell {cell_numbers[number - 1]}",
            only={"tampers", "sets __code__"},
            keep=_student_side,
        )
        if found:
            return found
        for word in (
            "_execution_engine",
            "_ImperativeEngine",
            "_grad_increment_nesting",
            "_jvp_increment_nesting",
            "_enter_dual_level",
            "_dispatch_tls_set",
            "DispatchKeyGuard",
        ):
            if word in source:
                line = next(x.strip() for x in source.splitlines() if word in x)
                return Hit(
                    "uses autograd",
                    "reaches into autograd's engine",
                    f"cell {cell_numbers[number - 1]}",
                    line,
                )
    return None
