"""The runnable data-parallel script: ``fit()`` on 2 processes under torchrun ends where one
process ends (the same parameters in float64, the same printed accuracy)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coursekit.examples import data_parallel

ROOT = Path(__file__).resolve().parents[1]
# A small run: a few seconds, with uneven shards (batch 50 on 2 ranks is 25 + 25; the last
# batch of 230 % 50 = 30 examples is 15 + 15; on 3 ranks 17 + 17 + 16 and 10 + 10 + 10).
SMALL = ["--epochs", "2", "--train-size", "230", "--batch-size", "50", "--hidden", "16"]


def _run(cmd: list[str], save: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, "-m", "coursekit.examples.data_parallel", *SMALL, "--device", "cpu"]
        + ["--save", str(save)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _numbers(out: str) -> str:
    """The printed loss, accuracy and parameter sum (not the time or the process count)."""
    return re.search(r"final train loss .*", out).group(0)


@pytest.mark.slow  # torch starts in 1 + nproc + 1 processes: about 20 s on 2 cores
@pytest.mark.parametrize("nproc", [2, 3])
def test_torchrun_on_several_processes_prints_what_one_process_prints(tmp_path, nproc):
    one = _run([sys.executable], tmp_path / "one.pt")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    many = _run([*torchrun, "--nproc_per_node", str(nproc)], tmp_path / "many.pt")
    assert one.startswith("1 process (cpu)")
    assert many.startswith(f"{nproc} processes (cpu, gloo)")
    assert many.count("final train loss") == 1  # rank 0 alone prints
    assert _numbers(one) == _numbers(many)
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "many.pt")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == torch.float64
        assert (a[name] - b[name]).abs().max().item() < 1e-10, name
    # the run trained: the parameters left their initial values
    start = data_parallel.build_model(16, torch.float64, seed=0).state_dict()
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-3


def test_one_process_needs_no_process_group():
    out = subprocess.run(
        [sys.executable, "-m", "coursekit.examples.data_parallel", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "torchrun" in out.stdout


def test_the_device_follows_the_gpus():
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert data_parallel.pick_device("cpu", 0, 1) == ("cpu", "gloo")
    if gpus == 0:
        assert data_parallel.pick_device("auto", 1, 2) == ("cpu", "gloo")
        with pytest.raises(SystemExit, match="one GPU per process"):
            data_parallel.pick_device("cuda", 0, 1)
    else:
        assert data_parallel.pick_device("auto", 0, 1) == ("cuda:0", "nccl")
