"""Guards around the student's code: no autograd where a backward is hand-written,
and global state restored when the code runs inside the student's own process.

Every route into torch.autograd's engine (``Tensor.backward``,
``torch.autograd.grad``, ``torch.autograd.functional``, ``torch.func``) ends in
``Variable._execution_engine.run_backward``. While ``autograd_forbidden()`` is
active that engine is replaced by one whose ``run_backward`` records the use and
raises ``AutogradUsed``; the student's code also runs under ``torch.no_grad()``
with inputs that do not require grad, so an output attached to a graph
(``grad_fn`` set) means grad mode was switched back on on purpose.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch.autograd.variable import Variable


class AutogradUsed(BaseException):  # noqa: N818  (a signal, not an error of the grader)
    """Raised when code under ``autograd_forbidden()`` runs torch.autograd.

    A BaseException, so that a student's ``except Exception:`` does not swallow it.
    """


class _ForbiddenEngine:
    """Stands in for autograd's engine: every backward pass is refused and recorded."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.used = False

    def run_backward(self, *args: Any, **kwargs: Any) -> Any:
        self.used = True
        raise AutogradUsed("torch.autograd was used (backward() or torch.autograd.grad)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@contextlib.contextmanager
def autograd_forbidden() -> Iterator[_ForbiddenEngine]:
    """Run the body under torch.no_grad() with autograd's engine disabled.

    Yields the stand-in engine; its ``used`` attribute tells, afterwards, whether the
    body tried to run a backward pass (even if it caught the exception).
    """
    real = Variable._execution_engine
    engine = _ForbiddenEngine(real)
    Variable._execution_engine = engine
    try:
        with torch.no_grad():
            yield engine
    finally:
        Variable._execution_engine = real


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
