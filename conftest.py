"""Root pytest configuration: applies to tests/ and to the notebooks nbval collects."""

from __future__ import annotations

import pytest


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
