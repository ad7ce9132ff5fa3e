"""Every lesson and solution trains on the device it chose: a check that reads the code.

What the check looks for, in the code cells of every notebook in notebooks/ and
solutions/ (parsed with ``ast``; IPython magics are dropped):

* **Training calls.** (a) A call of ``fit(...)`` (also ``train.fit(...)``): the model is
  its first argument, or ``model=``. (b) An **optimizer loop**: a ``for`` or ``while``
  loop that calls ``<name>.step()``, where ``<name>`` is bound to an optimizer,
  ``optim.<Name>(params, ...)`` (coursekit's or ``torch.optim``'s), whose ``params``
  contain ``<module>.parameters()``; those modules are the models it trains. An
  optimizer over hand-made ``Parameter`` lists (the two-variable paths and the update
  rule checks of lesson 06) trains no model: it is a derivation check, not counted.
* **The chosen device.** A notebook with a training call binds ``device =
  coursekit.default_device()`` (or ``default_device()``) exactly once, at the top level.
  Every lesson in notebooks/ does, whether it trains or not.
* **The model placed on it.** A trained model is on the chosen device when the call is
  ``fit(..., device=device)``, when the model is moved with ``<model>.to(device)``, or
  when every layer with parameters it is built from gets ``device=device`` (or
  ``device=<tensor>.device``), or is stated to stay on the CPU with ``device="cpu"``
  (a derivation check in float64, next to the scalar engine or a torch twin: the code
  says so, nothing is left there silently). A layer with parameters is a
  ``coursekit.nn`` or ``coursekit.transformer`` class whose constructor takes
  ``device``. "Built from" follows a name to every value assigned to it (in the
  enclosing function, then at the top level), a call of a function defined in the
  notebook to what it returns, and a container (``nn.Sequential(...)``, lists,
  ``*args``) to its elements. A model whose layers cannot be found this way counts as
  not placed: keep the code that builds a model readable.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from coursekit import nn as ck_nn
from coursekit import transformer as ck_transformer

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))

# coursekit.nn classes whose constructor takes `device`: the layers with parameters.
LAYERS_WITH_PARAMETERS = {
    name
    for module in (ck_nn, ck_transformer)
    for name, obj in vars(module).items()
    if inspect.isclass(obj)
    and issubclass(obj, ck_nn.Module)
    and "device" in inspect.signature(obj.__init__).parameters
}
# Imported by name from coursekit.transformer (``GPT(...)``), not only as ``nn.<Name>``.
TRANSFORMER_LAYERS = {name for name in LAYERS_WITH_PARAMETERS if name in vars(ck_transformer)}

FuncNode = ast.FunctionDef | ast.AsyncFunctionDef
Scope = ast.Module | FuncNode


@dataclass
class Report:
    """What the check found in one notebook's code."""

    training_calls: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def notebook_code(path: Path) -> str:
    """The code cells of a notebook, one after another, with IPython magics blanked."""
    return "\n".join(line for line, _ in _numbered_lines(path))


def _numbered_lines(path: Path) -> list[tuple[str, str]]:
    """(code line, "cell C line L") for every line of ``notebook_code(path)``."""
    nb = nbformat.read(path, as_version=4)
    lines: list[tuple[str, str]] = []
    for c, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for k, line in enumerate(cell.source.splitlines(), start=1):
            code = "" if line.lstrip().startswith(("%", "!")) else line
            lines.append((code, f"cell {c} line {k}"))
        lines.append(("", f"cell {c}"))
    return lines


def _in_cells(problem: str, path: Path) -> str:
    """A problem's line numbers of the joined code, as cells of the notebook."""
    where = [place for _, place in _numbered_lines(path)]
    return re.sub(r"\bline (\d+)", lambda m: where[int(m.group(1)) - 1], problem)


def _is_device(node: ast.AST | None) -> bool:
    """``device`` or ``<something>.device``: the chosen device, or a tensor's; or the CPU
    named explicitly (``"cpu"``, ``torch.device("cpu")``) for a derivation check."""
    if isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] == "device":
        node = node.args[0] if len(node.args) == 1 else None
    return (
        (isinstance(node, ast.Name) and node.id == "device")
        or (isinstance(node, ast.Attribute) and node.attr == "device")
        or (isinstance(node, ast.Constant) and node.value == "cpu")
    )


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _dotted(node: ast.AST) -> str:
    """``optim.Adam`` for an Attribute chain of Names, '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _is_default_device_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] == "default_device"


class _Checker:
    def __init__(self, source: str) -> None:
        self.tree = ast.parse(source)
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.functions: dict[str, list[FuncNode]] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, FuncNode):
                self.functions.setdefault(node.name, []).append(node)
        self.report = Report()

    # -- scopes and names ------------------------------------------------------

    def scope_of(self, node: ast.AST) -> Scope:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, FuncNode):
                return node
        return self.tree

    def enclosing(self, scope: Scope) -> Scope | None:
        return None if scope is self.tree else self.scope_of(scope)

    def _own_nodes(self, scope: Scope):
        """The nodes of a scope, not those of functions defined inside it."""
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            yield node
            if not isinstance(node, FuncNode | ast.Lambda | ast.ClassDef):
                stack.extend(ast.iter_child_nodes(node))

    def assigned_values(self, name: str, scope: Scope) -> list[tuple[ast.AST, Scope]]:
        """Every value bound to ``name``, in ``scope`` or else the scopes around it."""
        while scope is not None:
            found = []
            for node in self._own_nodes(scope):
                if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        found += [(v, scope) for v in self._match(target, node.value, name)]
            if found:
                return found
            scope = self.enclosing(scope)
        return []

    def _match(self, target: ast.AST, value: ast.AST | None, name: str) -> list[ast.AST]:
        if value is None:
            return []
        if isinstance(target, ast.Name):
            return [value] if target.id == name else []
        if isinstance(target, ast.Tuple | ast.List):
            if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
                return [
                    v
                    for t, e in zip(target.elts, value.elts, strict=True)
                    for v in self._match(t, e, name)
                ]
            if any(isinstance(t, ast.Name) and t.id == name for t in target.elts):
                return [value]  # unpacked from a call: follow the call
        return []

    def moved_to_device(self, name: str, scope: Scope) -> bool:
        """``name.to(device)`` somewhere in the scope or around it."""
        while scope is not None:
            for node in self._own_nodes(scope):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "to"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == name
                    and (any(map(_is_device, node.args)) or _is_device(_keyword(node, "device")))
                ):
                    return True
            scope = self.enclosing(scope)
        return False

    # -- what a model is built from -------------------------------------------

    def layers(self, expr: ast.AST, scope: Scope, seen: set[int]) -> list[tuple[ast.Call, bool]]:
        """(constructor call, placed on the device?) of each layer with parameters in expr.

        A model moved with ``.to(device)`` gives one entry (the call, True).
        """
        if id(expr) in seen:
            return []
        seen.add(id(expr))
        if isinstance(expr, ast.Name):
            if self.moved_to_device(expr.id, scope):
                return [(ast.Call(func=expr, args=[], keywords=[]), True)]
            return [
                layer
                for value, where in self.assigned_values(expr.id, scope)
                for layer in self.layers(value, where, seen)
            ]
        if isinstance(expr, ast.Call):
            name = _dotted(expr.func)
            if isinstance(expr.func, ast.Attribute) and expr.func.attr == "to":
                if any(map(_is_device, expr.args)) or _is_device(_keyword(expr, "device")):
                    return [(expr, True)]
                return self.layers(expr.func.value, scope, seen)
            last = name.split(".")[-1]
            if last in LAYERS_WITH_PARAMETERS and (
                "nn" in name.split(".") or last in TRANSFORMER_LAYERS
            ):
                return [(expr, _is_device(_keyword(expr, "device")))]
            if name.startswith("nn.") or ".nn." in name:  # containers, activations, dropout
                parts = [*expr.args, *(k.value for k in expr.keywords)]
                return [x for part in parts for x in self.layers(part, scope, seen)]
            if isinstance(expr.func, ast.Name) and expr.func.id in self.functions:
                found = []
                for function in self.functions[expr.func.id]:
                    for node in self._own_nodes(function):
                        if isinstance(node, ast.Return) and node.value is not None:
                            found += self.layers(node.value, function, seen)
                return found
            return []
        if isinstance(expr, ast.List | ast.Tuple | ast.Set):
            return [x for elt in expr.elts for x in self.layers(elt, scope, seen)]
        if isinstance(expr, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            return self.layers(expr.elt, scope, seen)
        if isinstance(expr, ast.Starred):
            return self.layers(expr.value, scope, seen)
        if isinstance(expr, ast.IfExp):
            return self.layers(expr.body, scope, seen) + self.layers(expr.orelse, scope, seen)
        if isinstance(expr, ast.BinOp):
            return self.layers(expr.left, scope, seen) + self.layers(expr.right, scope, seen)
        return []

    def parameter_owners(self, expr: ast.AST, scope: Scope, seen: set[int]) -> list[ast.AST]:
        """The ``m`` of every ``m.parameters()`` in an optimizer's ``params`` expression."""
        if id(expr) in seen:
            return []
        seen.add(id(expr))
        if isinstance(expr, ast.Call):
            if isinstance(expr.func, ast.Attribute) and expr.func.attr == "parameters":
                return [expr.func.value]
            parts = [*expr.args, *(k.value for k in expr.keywords)]
            return [m for part in parts for m in self.parameter_owners(part, scope, seen)]
        if isinstance(expr, ast.Name):
            return [
                m
                for value, where in self.assigned_values(expr.id, scope)
                for m in self.parameter_owners(value, where, seen)
            ]
        return [
            m
            for child in ast.iter_child_nodes(expr)
            for m in self.parameter_owners(child, scope, seen)
        ]

    # -- the check -------------------------------------------------------------

    def check_model(self, what: str, model: ast.AST, scope: Scope) -> None:
        found = self.layers(model, scope, set())
        label = ast.unparse(model)
        if not found:
            self.report.problems.append(
                f"line {model.lineno}: {what} trains {label}, but no layer with parameters "
                "could be traced to where it is built (see this test's docstring)"
            )
        for call, placed in found:
            if not placed:
                self.report.problems.append(
                    f"line {model.lineno}: {what} trains {label}, whose "
                    f"{_dotted(call.func)}(...) at line {call.lineno} gets no device=device"
                )

    def run(self) -> Report:
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            if _dotted(node.func).split(".")[-1] == "fit" and (
                node.args or _keyword(node, "model")
            ):
                self.report.training_calls.append(f"line {node.lineno}: fit")
                if not _is_device(_keyword(node, "device")):
                    model = node.args[0] if node.args else _keyword(node, "model")
                    self.check_model("fit(...)", model, self.scope_of(node))
        for loop in ast.walk(self.tree):
            if isinstance(loop, ast.For | ast.While):
                self.check_loop(loop)
        self.check_device_choice()
        return self.report

    def check_loop(self, loop: ast.For | ast.While) -> None:
        scope = self.scope_of(loop)
        for node in ast.walk(loop):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "step"
                and isinstance(node.func.value, ast.Name)
                and not node.args
            ):
                continue
            # the innermost loop around the step call owns it
            parent = self.parents[node]
            while not isinstance(parent, ast.For | ast.While):
                parent = self.parents[parent]
            if parent is not loop:
                continue
            name = node.func.value.id
            for value, where in self.assigned_values(name, scope):
                if not (isinstance(value, ast.Call) and "optim" in _dotted(value.func).split(".")):
                    continue
                params = value.args[0] if value.args else _keyword(value, "params")
                owners = self.parameter_owners(params, where, set()) if params else []
                if not owners:
                    continue  # hand-made Parameters: a derivation check
                self.report.training_calls.append(f"line {node.lineno}: {name}.step() loop")
                for owner in owners:
                    self.check_model(f"the loop of {name}.step()", owner, where)

    def check_device_choice(self) -> None:
        if not self.report.training_calls:
            return
        chosen = self.device_bindings()
        if len(chosen) != 1:
            self.report.problems.append(
                f"{len(chosen)} top-level bindings device = coursekit.default_device() "
                "(expected exactly one: the device is chosen once)"
            )

    def device_bindings(self) -> list[ast.AST]:
        bindings = []
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "device" for t in node.targets
            ):
                if not _is_default_device_call(node.value):
                    self.report.problems.append(
                        f"line {node.lineno}: device is bound to {ast.unparse(node.value)}, "
                        "not to coursekit.default_device()"
                    )
                bindings.append(node)
        return bindings


def check_training_devices(source: str) -> Report:
    """Read notebook (or any Python) code; report its training calls and their problems."""
    return _Checker(source).run()


def chosen_devices(source: str) -> int:
    """How many top-level ``device = ...default_device()`` bindings the code has."""
    checker = _Checker(source)
    return sum(_is_default_device_call(node.value) for node in checker.device_bindings())


# ----------------------------------------------------------------------------
# the checker itself, on small programs: it must be able to fail
# ----------------------------------------------------------------------------

HEADER = """
import coursekit
from coursekit import nn, optim
from coursekit.train import fit

device = coursekit.default_device()
"""


def _check(body: str, header: str = HEADER) -> Report:
    return check_training_devices(header + textwrap.dedent(body))


def test_checker_flags_fit_on_a_model_with_a_layer_left_on_the_cpu():
    report = _check("""
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2, device=device))
        fit(model, loss_fn, optim.SGD(model.parameters(), lr=0.1), (X, y))
    """)
    assert report.training_calls == ["line 9: fit"]
    assert len(report.problems) == 1
    assert "nn.Linear(...) at line 8 gets no device=device" in report.problems[0]


def test_checker_accepts_each_way_of_placing_the_model():
    placed_layers = _check("""
        model = nn.Sequential(nn.Conv2d(1, 4, 3, device=device), nn.ReLU(), nn.Flatten(),
                              nn.Linear(64, 2, device=X.device))
        history = train.fit(model, loss_fn, opt, (X, y))
    """)
    moved = _check("""
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU())
        model.to(device)
        fit(model, loss_fn, opt, (X, y))
    """)
    by_fit = _check("""
        fit(nn.Linear(2, 2), loss_fn, opt, (X, y), device=device)
    """)
    stated_cpu = _check("""
        model = nn.Sequential(
            nn.Linear(2, 8, device="cpu"), nn.Linear(8, 2, device=torch.device("cpu"))
        )
        fit(model, loss_fn, opt, (X, y))
    """)
    gpt = _check("""
        model = GPT(65, 32, device=device)
        opt = optim.Adam(model.parameters(), lr=1e-2)
        for step in range(3):
            opt.step()
    """)
    for report in (placed_layers, moved, by_fit, stated_cpu, gpt):
        assert len(report.training_calls) == 1 and report.problems == []
    unplaced_gpt = _check("""
        model = GPT(65, 32)
        fit(model, loss_fn, opt, (X, y))
    """)
    assert "GPT(...) at line 8 gets no device=device" in unplaced_gpt.problems[0]


def test_checker_follows_functions_names_and_containers():
    bad = _check("""
        def block(width):
            return nn.Residual(nn.Sequential(nn.Linear(width, width, device=device), nn.Tanh()))

        def make(depth, drop=0.0):
            layers = [block(8) for _ in range(depth)]
            head = nn.Linear(8, 2)  # forgotten
            return nn.Sequential(*layers, *([nn.Dropout(drop)] if drop else []), head)

        for seed in range(3):
            model = make(4)
            fit(model, loss_fn, opt, (X, y))
    """)
    assert len(bad.problems) == 1 and "at line 13 gets no device" in bad.problems[0]
    good = _check("""
        def make(depth):
            layers = [nn.Linear(8, 8, device=device) for _ in range(depth)]
            return nn.Sequential(*layers)

        def train_one(seed):
            model = make(seed)
            return model, fit(model, loss_fn, opt, (X, y))
    """)
    assert good.training_calls and good.problems == []


def test_checker_flags_an_optimizer_loop_over_a_module_left_on_the_cpu():
    report = _check("""
        rnn = nn.RNN(4, 8, generator=g)
        head = nn.Linear(8, 1, device=device)
        params = rnn.parameters() + head.parameters()
        opt = optim.Adam(params, lr=0.01)
        for step in range(10):
            loss = step_loss()
            opt.step()
    """)
    assert report.training_calls == ["line 14: opt.step() loop"]
    assert len(report.problems) == 1 and "nn.RNN(...) at line 8" in report.problems[0]


def test_checker_leaves_loops_over_hand_made_parameters_alone():
    """Optimizers stepping hand-made Parameters (derivation checks) train no model."""
    report = _check("""
        p = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        sgd = optim.SGD([p], lr=0.1)
        torch_sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        for _ in range(5):
            p.grad = torch.ones(2)
            sgd.step()
            torch_sgd.step()
    """)
    assert report.training_calls == [] and report.problems == []


def test_checker_wants_the_device_chosen_once():
    no_choice = _check(
        """
        model = nn.Linear(2, 2, device=device)
        fit(model, loss_fn, opt, (X, y))
        """,
        header="from coursekit import nn\nfrom coursekit.train import fit\n",
    )
    assert no_choice.problems and "0 top-level bindings" in no_choice.problems[0]
    literal = _check(
        """
        device = "cpu"
        fit(nn.Linear(2, 2, device=device), loss_fn, opt, (X, y))
        """,
        header="",
    )
    assert any("not to coursekit.default_device()" in p for p in literal.problems)
    twice = _check("""
        device = coursekit.default_device()
        fit(nn.Linear(2, 2, device=device), loss_fn, opt, (X, y))
    """)
    assert any("2 top-level bindings" in p for p in twice.problems)


def test_checker_flags_a_model_it_cannot_trace():
    report = _check("""
        model = load_model_from_disk()
        fit(model, loss_fn, opt, (X, y))
    """)
    assert len(report.problems) == 1 and "could be traced" in report.problems[0]


# ----------------------------------------------------------------------------
# the notebooks
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_training_call_runs_on_the_chosen_device(path):
    report = check_training_devices(notebook_code(path))
    assert report.problems == [], "\n".join(_in_cells(p, path) for p in report.problems)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_chooses_its_device_once(path):
    assert chosen_devices(notebook_code(path)) == 1


def test_the_check_sees_the_training_of_the_lessons():
    """The check is only as good as what it finds: the lessons' known training calls."""
    found = {
        path.name[:2]: len(check_training_devices(notebook_code(path)).training_calls)
        for path in LESSONS
    }
    assert found["05"] >= 2 and found["06"] >= 1 and found["07"] >= 1 and found["09"] >= 1
    assert found["10"] == 2  # the character model's loop and the traffic forecaster's


def test_nbval_ignores_device_lines_and_only_them():
    """tests/nbval_sanitize.cfg: a printed line starting with "device:" names the machine."""
    from nbval.plugin import get_sanitize_patterns

    rules = get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())

    def sanitize(text: str) -> str:
        for regex, replace in rules:
            text = re.sub(regex, replace, text)
        return text

    on_cpu = "loss 0.25\ndevice: cpu: x86_64, 2 threads\naccuracy 0.98\n"
    on_gpu = "loss 0.25\ndevice: cuda: NVIDIA H100 80GB HBM3 (79.1 GiB)\naccuracy 0.98\n"
    assert sanitize(on_cpu) == sanitize(on_gpu)
    assert sanitize(on_cpu.replace("0.98", "0.97")) != sanitize(on_gpu)  # the rest is compared
    assert sanitize("the device: cpu\n") == "the device: cpu\n"  # only at a line's start
