"""tools/gpu_check.py (``make gpu``) on this machine: a quick run of every part, and its report.

Without CUDA the check must say so and still run the rest on the CPU. Two small notebooks
made here stand in for the lessons: one trains with ``fit()`` and has a stored output that
differs, the other raises, so both kinds of notebook failure and the training device show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

pytestmark = pytest.mark.slow


def _notebook(path: Path, *cells) -> Path:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = KERNELSPEC
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> tuple[subprocess.CompletedProcess, str, Path]:
    tmp = tmp_path_factory.mktemp("gpu-check")
    trains = _notebook(
        tmp / "trains.ipynb",
        new_code_cell(
            "from coursekit import data, nn, optim, train\n"
            "X, y = data.make_moons(n=64, noise=0.1, seed=0)\n"
            "model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))"
        ),
        new_code_cell(
            "history = train.fit(model, nn.SoftmaxCrossEntropyLoss(), "
            "optim.Adam(model.parameters(), lr=0.01), (X, y), epochs=2, progress=False)"
        ),
        new_code_cell(
            'print("computed")',
            execution_count=3,
            outputs=[new_output("stream", name="stdout", text="stored\n")],
        ),
    )
    raises = _notebook(
        tmp / "raises.ipynb",
        new_code_cell("x = 1", execution_count=1),
        new_code_cell("raise RuntimeError('on purpose')", execution_count=2),
        new_code_cell("y = 2", execution_count=3),
    )
    out = tmp / "report"
    command = [sys.executable, "tools/gpu_check.py", "--quick", "--out", str(out)]
    result = subprocess.run(
        [*command, "--notebooks", str(trains), str(raises)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    report = (out / "report.md").read_text() if (out / "report.md").exists() else ""
    return result, report, out


def test_summary_line_comes_last_and_the_status_reports_the_failure(check) -> None:
    result, report, out = check
    assert report, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    where = "cuda" if torch.cuda.is_available() else "no CUDA (cpu)"
    assert last.startswith(f"gpu check on {where}: "), last
    assert str(out / "report.md") in last
    assert result.returncode == 1  # a notebook raised; everything else ran
    assert {p.name for p in out.iterdir()} == {"report.md", "check.log", "results.json"}


def test_report_has_every_part(check) -> None:
    _, report, _ = check
    if not torch.cuda.is_available():
        assert "no CUDA" in report
    for part in ("1. pytest -m gpu", "2. benchmark", "3. notebooks", "4. data-parallel"):
        assert f"| {part} |" in report and f"## {part}" in report
    assert "| MLP" in report and report.count("| conv2d") >= 2 and "| maxpool2d" in report
    assert "scalar Value.backward()" in report
    assert "Command: `python -m coursekit.bench --device" in report


def test_notebook_failures_are_told_apart_and_fit_devices_recorded(check) -> None:
    _, report, _ = check
    rows = {
        line.split(" | ")[0].strip("| ").rsplit("/", 1)[-1]: line for line in report.splitlines()
    }
    trains, raises = rows["trains.ipynb"], rows["raises.ipynb"]
    cells = [c.strip() for c in trains.strip("|").split("|")]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert cells[2] == "-" and cells[3] == "Cell 2"  # ran; one stored output differs
    assert cells[4].startswith(f"{device}") and "float32 2 ep" in cells[4]
    cells = [c.strip() for c in raises.strip("|").split("|")]
    assert cells[2] == "Cell 1" and cells[3] == "-" and cells[4] == "no fit()"
    assert "1/2 ran without error, 1 with stored outputs that differ" in report


def test_the_torchrun_script_part_compares_one_process_with_two(tmp_path) -> None:
    # the part runs on GPU machines; here it runs on the CPU (gloo), one short epoch
    from tools.gpu_check import Runner, run_torchrun_script

    runner = Runner(tmp_path / "check.log", {**os.environ, "OMP_NUM_THREADS": "1"})
    ok, line = run_torchrun_script(runner, timeout=300, epochs=1)
    assert ok, line
    assert line.startswith("torchrun script: 1 process (") and "2 processes (" in line
    assert "coursekit.examples.data_parallel" in (tmp_path / "check.log").read_text()
