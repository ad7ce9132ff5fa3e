"""Parallel test workers use one torch thread each; a single run keeps torch's default."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _root_conftest():
    spec = importlib.util.spec_from_file_location("_root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clean_environment(monkeypatch):
    for name in (*VARIABLES, "PYTEST_XDIST_WORKER"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(threads)


def test_an_xdist_worker_and_the_kernels_it_starts_get_one_thread(clean_environment):
    clean_environment.setenv("PYTEST_XDIST_WORKER", "gw1")
    torch.set_num_threads(2)
    _root_conftest().pytest_configure(config=None)
    assert {name: os.environ.get(name) for name in VARIABLES} == dict.fromkeys(VARIABLES, "1")
    assert torch.get_num_threads() == 1


def test_an_explicit_setting_wins(clean_environment):
    clean_environment.setenv("PYTEST_XDIST_WORKER", "gw0")
    clean_environment.setenv("OMP_NUM_THREADS", "2")
    _root_conftest().pytest_configure(config=None)
    assert os.environ["OMP_NUM_THREADS"] == "2" and torch.get_num_threads() == 2


def test_a_single_run_keeps_the_default(clean_environment):
    _root_conftest().pytest_configure(config=None)
    assert not any(name in os.environ for name in VARIABLES)
