"""Guards around the student's code: no automatic differentiation where a backward is
hand-written, and global state restored when the code runs inside the notebook's process.

The ban (``Ban``) closes every route into automatic differentiation in the
process where the student's code runs:

* reverse mode: ``Tensor.backward``, ``torch.autograd.grad`` and
  ``torch.autograd.functional`` all end in ``Variable._execution_engine``, which
  is replaced by a stand-in that refuses; torch.func's ``grad``, ``vjp`` and
  ``jacrev`` need a grad nesting level, refused as well;
* forward mode: ``torch.func.jvp``/``jacfwd``/``hessian``/``linearize`` need a
  jvp nesting level and ``torch.autograd.forward_ad`` a dual level: refused;
* below all of these, the student's code runs with autograd's dispatch keys
  excluded (``torch._C._AutoDispatchBelowAutograd``) and under ``no_grad``, so
  no graph is recorded even through a private engine;
* coursekit's own automatic differentiation (``Value.backward``,
  ``coursekit.autograd``) and coursekit's implementation of the graded operation
  get the body of a stand-in that refuses, so every alias of them refuses too.

Each refusal is recorded, so catching the exception does not help, and putting
a route back (restoring the engine) counts as using it. A source scan
(``scan``) complements the ban; neither is a sandbox against code written to
defeat them (see README, "For instructors").
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.autograd.variable import Variable


class AutogradUsed(BaseException):  # noqa: N818  (a signal, not an error of the grader)
    """Raised when code under the ban runs automatic differentiation.

    A BaseException, so that a student's ``except Exception:`` does not swallow it.
    """


class LibraryUsed(BaseException):  # noqa: N818
    """Raised when code under the ban calls coursekit's own implementation of the graded op."""


# Routes into automatic differentiation that the ban closes, besides the backward engine:
# torch.func's transforms (grad, vjp, jacrev, jvp, jacfwd, hessian, linearize) all enter one
# of these nesting levels, and forward-mode AD (torch.autograd.forward_ad) needs a dual level.
_FUNCTORCH = ("_grad_increment_nesting", "_jvp_increment_nesting")
_FORWARD_AD = ("_enter_dual_level",)
# coursekit's own automatic differentiation.
_COURSEKIT_AD = (
    "coursekit.scalar.Value.backward",
    "coursekit.autograd.Tensor.backward",
    "coursekit.autograd._run_backward",
)


class _ForbiddenEngine:
    """Stands in for autograd's engine: every backward pass is refused and recorded."""

    def __init__(self, real: Any, ban: Ban) -> None:
        self.real = None  # not kept where the student's code can pick it up
        self.ban = ban

    def run_backward(self, *args: Any, **kwargs: Any) -> Any:
        raise self.ban.record("torch.autograd (backward() or torch.autograd.grad)")

    def queue_callback(self, *args: Any, **kwargs: Any) -> Any:
        raise self.ban.record("torch.autograd")

    def is_checkpoint_valid(self) -> bool:
        return True


class Ban:
    """The autograd ban: every route into automatic differentiation refused and recorded.

    ``install()`` replaces autograd's backward engine, torch.func's transforms,
    forward-mode AD's dual levels and coursekit's own backward passes (and the
    functions in ``library``: coursekit's implementations of the graded op) with
    stand-ins that raise ``AutogradUsed`` / ``LibraryUsed`` and remember it.
    ``active()`` wraps one call of the student's code: no grad mode and autograd
    dispatch off below it. ``hit()`` afterwards says whether a route was used, even
    if the student's code caught the exception, or whether something put a route
    back (restoring the engine counts as using it).
    """

    def __init__(self, library: Sequence[str] = ()) -> None:
        self.routes: list[str] = []
        self.libraries: list[str] = []
        self.library = tuple(library)
        self.engine = _ForbiddenEngine(None, self)
        self.saved: list[tuple[Any, str, Any]] = []
        self.swapped: list[tuple[Any, Any]] = []  # (function, original code)
        self.stubs: dict[str, Any] = {}
        self.tampered = ""

    def record(self, route: str) -> AutogradUsed:
        self.routes.append(route)
        return AutogradUsed(route)

    def record_library(self, name: str) -> LibraryUsed:
        self.libraries.append(name)
        return LibraryUsed(name)

    # ------------------------------------------------------------------ installing
    def install(self) -> Ban:
        import torch._C._functorch as functorch_c

        self._set(Variable, "_execution_engine", self.engine)
        modules = [functorch_c, *_modules_holding(_FUNCTORCH)]
        for name in _FUNCTORCH:
            stub = _raiser(self, f"torch.func ({name.split('_')[1]} transform)")
            self.stubs[name] = stub
            for module in modules:
                if hasattr(module, name):
                    self._set(module, name, stub)
        for name in _FORWARD_AD:
            stub = _raiser(
                self, "forward-mode automatic differentiation (torch.autograd.forward_ad)"
            )
            self.stubs[name] = stub
            for module in [torch._C, *_modules_holding((name,))]:
                if hasattr(module, name) and getattr(module, name) is not stub:
                    self._set(module, name, stub)
        for dotted in _COURSEKIT_AD:
            self._swap(dotted, library=False)
        for dotted in self.library:
            self._swap(dotted, library=True)
        return self

    def uninstall(self) -> None:
        for fn, code in reversed(self.swapped):
            fn.__code__ = code
        for owner, name, value in reversed(self.saved):
            setattr(owner, name, value)
        self.saved.clear()
        self.swapped.clear()

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self.saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def _swap(self, dotted: str, library: bool) -> None:
        """Give the function ``dotted`` the body of a stand-in that raises (every alias too)."""
        import inspect

        fn = _lookup(dotted)
        fn = inspect.unwrap(getattr(fn, "__func__", fn)) if callable(fn) else None
        code = getattr(fn, "__code__", None)
        if code is None or code.co_freevars:
            return
        template = _LIBRARY_STUB if library else _AD_STUB
        label = dotted if library else f"{dotted} (coursekit's own automatic differentiation)"
        stub = template.__code__.replace(
            co_name=code.co_name,
            co_qualname=code.co_qualname,
            co_consts=tuple(label if c == "NAME" else c for c in template.__code__.co_consts),
        )
        self.swapped.append((fn, code))
        fn.__code__ = stub

    # ------------------------------------------------------------------ during a call
    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """One call of the student's code: no grad mode, autograd dispatch off."""
        with torch.no_grad(), torch._C._AutoDispatchBelowAutograd():
            yield
            key = torch._C.DispatchKey.AutogradFunctionality
            if not torch._C._dispatch_tls_is_dispatch_key_excluded(key):
                self.tampered = "switched autograd dispatch back on"

    def hit(self) -> tuple[str, dict] | None:
        """("autograd" | "library", details) if the call used a route or put one back."""
        if self.routes:
            return "autograd", {"route": self.routes[0]}
        if self.libraries:
            return "library", {"name": self.libraries[0]}
        problem = self.tampered or self._restored()
        if problem:
            return "autograd", {"route": problem}
        return None

    def _restored(self) -> str:
        import torch._C._functorch as functorch_c

        if Variable._execution_engine is not self.engine:
            return "put torch.autograd's engine back (Variable._execution_engine)"
        for name in _FUNCTORCH:
            if getattr(functorch_c, name, None) is not self.stubs[name]:
                return "put torch.func's transforms back"
        for name in _FORWARD_AD:
            if getattr(torch._C, name, None) is not self.stubs[name]:
                return "put forward-mode automatic differentiation back"
        for fn, _code in self.swapped:
            if fn.__code__.co_filename != __file__:
                return f"put coursekit's {fn.__qualname__} back"
        return ""


def _AD_STUB(*args, **kwargs):  # noqa: N802  (its code becomes the body of a swapped function)
    from coursekit.grading import guard

    raise guard.current_ban().record("NAME")


def _LIBRARY_STUB(*args, **kwargs):  # noqa: N802
    from coursekit.grading import guard

    raise guard.current_ban().record_library("NAME")


_CURRENT: list[Ban] = []


def current_ban() -> Ban:
    """The ban in force (the swapped functions report to it)."""
    return _CURRENT[-1] if _CURRENT else Ban()


def _raiser(ban: Ban, route: str) -> Callable[..., Any]:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise ban.record(route)

    return forbidden


_HOLDERS: dict[tuple[str, ...], list[Any]] = {}


def prepare(library: Sequence[str] = ()) -> None:
    """Import and find, in the grader before it forks, what the ban will replace: the child
    inherits it and installs the ban in a few milliseconds."""
    for names in (_FUNCTORCH, *((n,) for n in _FORWARD_AD)):
        _modules_holding(names)
    for dotted in (*_COURSEKIT_AD, *library):
        _lookup(dotted)


def _modules_holding(names: Sequence[str]) -> list[Any]:
    key = tuple(names)
    if key not in _HOLDERS:
        _HOLDERS[key] = _find_modules_holding(names)
    return _HOLDERS[key]


def _find_modules_holding(names: Sequence[str]) -> list[Any]:
    found = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict) and any(n in namespace for n in names):
            if getattr(module, "__name__", "").startswith("torch"):
                found.append(module)
    return found


def _lookup(dotted: str) -> Any:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


@contextlib.contextmanager
def banned(library: Sequence[str] = ()) -> Iterator[Ban]:
    """The ban, installed for the body and removed after it (for in-process grading)."""
    ban = Ban(library).install()
    _CURRENT.append(ban)
    try:
        yield ban
    finally:
        _CURRENT.remove(ban)
        ban.uninstall()


def install_for_good(library: Sequence[str] = ()) -> Ban:
    """The ban, installed for the rest of this process (the student's process)."""
    ban = Ban(library).install()
    _CURRENT.append(ban)
    return ban


@contextlib.contextmanager
def autograd_forbidden() -> Iterator[Ban]:
    """Compatibility: the ban for the body, under no_grad; yields the Ban (``used``)."""
    with banned() as ban, ban.active():
        yield ban


def has_graph(value: Any) -> bool:
    """True if any tensor in ``value`` (nested in tuples, lists, dicts) has a grad_fn."""
    if isinstance(value, torch.Tensor):
        return value.grad_fn is not None
    if isinstance(value, (tuple, list)):
        return any(has_graph(v) for v in value)
    if isinstance(value, dict):
        return any(has_graph(v) for v in value.values())
    return False


@contextlib.contextmanager
def preserved_global_state() -> Iterator[None]:
    """Restore, on exit, the global state that code commonly changes.

    Covered: torch's, NumPy's and Python's random generators (and CUDA's if it is
    initialised), torch's default dtype, grad mode, number of threads, print
    options, Python's recursion limit and ``sys.stdout``/``sys.stderr``. Used
    where the student's code runs in the notebook's own process; in a forked
    child none of this is needed.
    """
    import numpy as np

    torch_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    numpy_rng = np.random.get_state()  # noqa: NPY002 (the global one is kept)
    python_rng = random.getstate()
    dtype = torch.get_default_dtype()
    grad = torch.is_grad_enabled()
    threads = torch.get_num_threads()
    print_options = dict(torch._tensor_str.PRINT_OPTS.__dict__)
    recursion = sys.getrecursionlimit()
    streams = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
        sys.setrecursionlimit(recursion)
        torch.set_printoptions(**print_options)
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.set_default_dtype(dtype)
        random.setstate(python_rng)
        np.random.set_state(numpy_rng)  # noqa: NPY002
        torch.set_rng_state(torch_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
