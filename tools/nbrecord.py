"""What happened in each notebook of an nbval run: used by ``tools/gpu_check.py``.

Two halves, both switched on by environment variables that ``gpu_check`` sets:

- a pytest plugin (``-p tools.nbrecord``): per notebook, the seconds its cells took,
  the cells that raised, and the cells whose stored outputs differ (nbval's two kinds
  of failure), written as JSON to ``$COURSEKIT_NBRECORD`` after every cell. Before a
  notebook's first cell it sets ``$COURSEKIT_NOTEBOOK``, which the notebook's kernel,
  started right after, inherits.
- ``install_fit_recorder()``, run in each kernel by an IPython start-up file: it wraps
  ``coursekit.train.fit`` so that every training run appends one JSON line (notebook,
  device, dtype, epochs, seconds) to ``$COURSEKIT_FIT_LOG``. The notebook sees the
  same ``fit``; nothing is printed.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest

RECORD_ENV = "COURSEKIT_NBRECORD"
FIT_LOG_ENV = "COURSEKIT_FIT_LOG"
NOTEBOOK_ENV = "COURSEKIT_NOTEBOOK"

# nbval's messages for the two kinds of cell failure.
RAISED = ("Cell execution caused an exception", "Timeout of")
DIFFERS = "Cell outputs differ"


# ------------------------------------------------------------------------- pytest plugin
_notebooks: dict[str, dict[str, Any]] = {}
_is_worker = False


def pytest_configure(config: pytest.Config) -> None:
    global _is_worker
    _is_worker = hasattr(config, "workerinput")  # pytest-xdist: the controller writes


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = str(item.path)
    if path.endswith(".ipynb"):
        os.environ[NOTEBOOK_ENV] = path  # before nbval starts this notebook's kernel


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    target = os.environ.get(RECORD_ENV)
    path = str(report.location[0])  # relative to the root dir, or to it with "../"
    if _is_worker or not target or not path.endswith(".ipynb"):
        return
    entry = _notebooks.setdefault(
        path, {"seconds": 0.0, "cells": 0, "raised": [], "differs": [], "other": []}
    )
    entry["seconds"] += report.duration
    if report.when == "call":
        entry["cells"] += 1
    if report.failed:
        cell = report.nodeid.split("::", 1)[-1]
        text = str(report.longrepr)
        if any(marker in text for marker in RAISED):
            kind = "raised"
        elif DIFFERS in text:
            kind = "differs"
        else:  # the kernel died, a set-up error, ...
            kind = "other"
        entry[kind].append(f"{cell} ({report.when})" if report.when != "call" else cell)
    Path(target).write_text(json.dumps(_notebooks, indent=1))


# ---------------------------------------------------------------- inside each kernel
def install_fit_recorder() -> None:
    """Wrap coursekit.train.fit so that each call logs where it trained (see module doc)."""
    log = os.environ.get(FIT_LOG_ENV)
    if not log:
        return
    import coursekit.train as train

    if getattr(train.fit, "_recorded", False):
        return
    original = train.fit

    @functools.wraps(original)
    def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
        history = original(model, *args, **kwargs)
        device = getattr(history, "device", None)
        params = list(model.parameters()) if hasattr(model, "parameters") else []
        if device is None and params:
            device = str(params[0].data.device)
        entry = {
            "notebook": os.environ.get(NOTEBOOK_ENV, "?"),
            "device": None if device is None else str(device),
            "dtype": str(params[0].data.dtype).replace("torch.", "") if params else None,
            "epochs": getattr(history, "epochs", None),
            "seconds": round(sum(getattr(history, "seconds", []) or []), 3),
        }
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")
        return history

    fit._recorded = True  # type: ignore[attr-defined]
    train.fit = fit
