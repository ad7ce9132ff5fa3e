"""Root pytest configuration: applies to tests/ and to the notebooks nbval collects."""

from __future__ import annotations

import os

import pytest

# Thread variables read by torch's OpenMP/MKL/OpenBLAS pools when a process starts.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pytest_configure(config):
    # Under pytest-xdist each worker (and every kernel or subprocess it starts, which inherit
    # the environment) gets one torch thread: N workers with torch's default of one thread
    # per core oversubscribe the machine, and small matrix products then run many times
    # slower (a lesson that runs in 7 s alone took 246 s). A single run keeps the default,
    # as a student's own kernel does. An explicit setting in the environment wins.
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collectstart(collector):
    # nbval compares stderr as well; warnings printed there carry per-run paths.
    # Stdout, rich displays and errors are still compared.
    if getattr(collector, "fspath", None) is not None and str(collector.fspath).endswith(".ipynb"):
        skip = getattr(collector, "skip_compare", None)
        if skip is not None and "stderr" not in skip:
            collector.skip_compare = (*skip, "stderr")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_notebook_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] = _notebook_seconds.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    # Per-notebook totals (budget: ~60 s a lesson, ~30 s a graded notebook on 2 cores).
    if not _notebook_seconds:
        return
    terminalreporter.section("time per notebook")
    for path, seconds in sorted(_notebook_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}")
