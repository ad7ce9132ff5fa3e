"""Bulk grading: notebooks run in fresh kernels, their scores come back, submissions untouched."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from coursekit.grading.bulk import (
    Submission,
    _Execution,
    _score,
    find_notebooks,
    format_table,
    lesson_of,
    main,
    write_csv,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]

CORRECT = {
    "linear_backward": """def linear_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(dim=0)""",
    "broadcast_backward": """def broadcast_backward(dout, shape):
    lead = dout.dim() - len(shape)
    dx = dout.sum(dim=tuple(range(lead))) if lead else dout
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and dx.shape[i] != 1)
    return dx.sum(dim=dims, keepdim=True) if dims else dx""",
    "grad_shapes": """def grad_shapes(x_shape, w_shape):
    return tuple(x_shape), tuple(w_shape), (w_shape[1],)""",
    "find_the_bug": """def matmul_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout


def scale_shift_backward(dout, cache):
    x, gamma = cache
    return dout * gamma, (dout * x).sum(dim=0), dout.sum(dim=0)


def max_backward(dout, cache):
    x, y = cache
    return torch.where(x > y, dout, 0.0), torch.where(x > y, 0.0, dout)""",
}
ITEM_OF = {
    "linear_backward": "04.linear_backward",
    "broadcast_backward": "04.broadcast_backward",
    "grad_shapes": "04.grad_shapes",
    "find_the_bug": "04.find_the_bug",
}
# The functions each check() call passes (one, except for the three repairs of 04.find_the_bug).
CHECKED = {"find_the_bug": "matmul_backward, scale_shift_backward, max_backward"}


def stub(name: str) -> str:
    """The function(s) as the generated exercise notebook has them."""
    stubs = []
    for head in (line for line in CORRECT[name].splitlines() if line.startswith("def ")):
        function = head[4 : head.index("(")]
        message = f"{function}: write your code here"
        stubs.append(f'{head}\n    # YOUR CODE HERE\n    raise NotImplementedError("{message}")')
    return "\n\n\n".join(stubs)


def notebook(*cells: str):
    """A lesson-04-like notebook: markdown, the import, then the given code cells."""
    return new_notebook(
        cells=[
            new_markdown_cell("# Lesson 04: exercises"),
            new_code_cell("import torch\nfrom coursekit.grading import check"),
            *(new_code_cell(source) for source in cells),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )


def exercise(functions: dict[str, str], skip_checks: tuple[str, ...] = ()):
    """Function cells followed by their check() cells (minus those in ``skip_checks``)."""
    cells = []
    for name, source in functions.items():
        cells.append(source)
        if name not in skip_checks:
            cells.append(f'check("{ITEM_OF[name]}", {CHECKED.get(name, name)})')
    return notebook(*cells)


# ---------------------------------------------------------------------------- without kernels
def test_lesson_is_read_from_the_file_name():
    assert lesson_of(Path("04_vectorized.ipynb")) == "04"
    assert lesson_of(Path("sub/04-alice.ipynb")) == "04"
    assert lesson_of(Path("alice_04.ipynb")) is None
    assert lesson_of(Path("123_x.ipynb")) is None


def test_folders_are_searched_and_checkpoints_skipped(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir()
    for rel in ["04_x.ipynb", "a/04_y.ipynb", "a/.ipynb_checkpoints/04_y-checkpoint.ipynb"]:
        nbformat.write(notebook(), tmp_path / rel)
    found = find_notebooks([tmp_path, tmp_path / "04_x.ipynb"])
    assert sorted(p.name for p in found) == ["04_x.ipynb", "04_y.ipynb"]
    with pytest.raises(FileNotFoundError, match="not a notebook"):
        find_notebooks([tmp_path / "missing.txt"])


def _record(item, points, status="passed"):
    return {"item": item, "points": points, "status": status, "feedback": "..."}


def test_scores_keep_the_best_check_and_name_what_is_missing():
    execution = _Execution(
        errors=[(4, "ZeroDivisionError: division by zero"), (9, "NameError: x")],
        records=[
            _record("04.linear_backward", 0, "failed"),
            _record("04.linear_backward", 3),
            _record("03.relu", 2),  # an item of another lesson still counts
            _record("99.no_such_item", 5),  # an unknown item does not
        ],
    )
    s = _score(Path("04_alice.ipynb"), "04_alice.ipynb", execution, 300)
    assert list(s.items) == [
        "04.linear_backward",
        "04.broadcast_backward",
        "04.grad_shapes",
        "04.find_the_bug",
        "03.relu",
    ]
    assert s.items["04.linear_backward"].points == 3
    assert s.items["04.grad_shapes"].status == "not run"
    assert (s.total, s.max_total) == (5, 11)
    assert s.reason == (
        "crashed at cell 4: ZeroDivisionError: division by zero (+1 more); "
        "check not run: 04.broadcast_backward, 04.grad_shapes, 04.find_the_bug"
    )


def test_timeouts_and_dead_kernels_are_reasons():
    s = _score(Path("04_a.ipynb"), "a", _Execution(timed_out_at=7, died_at=None), 30)
    assert s.reason.startswith("timed out at cell 7 (limit 30 s)")
    s = _score(Path("04_a.ipynb"), "a", _Execution(died_at=3, kernel_output="Killed"), 30)
    assert s.reason.startswith("kernel died at cell 3 (Killed)")


def test_reports_as_table_json_and_csv(tmp_path):
    execution = _Execution(records=[_record("04.linear_backward", 3), _record("04.grad_shapes", 1)])
    subs = [
        _score(Path("04_a.ipynb"), "04_a.ipynb", execution, 300),
        _score(Path("04_b.ipynb"), "04_b.ipynb", _Execution(), 300),
    ]
    table = format_table(subs).splitlines()
    assert table[0].split()[:3] == ["submission", "linear_backward", "(3)"]
    assert table[2].split()[:6] == ["04_a.ipynb", "3", "0", "1", "0", "4/9"]
    assert table[3].split()[:6] == ["04_b.ipynb", "0", "0", "0", "0", "0/9"]
    write_json(subs, tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["submissions"][0]["items"]["04.linear_backward"]["points"] == 3
    write_csv(subs, tmp_path / "g.csv")
    rows = list(csv.DictReader((tmp_path / "g.csv").open()))
    assert rows[0]["04.linear_backward"] == "3" and rows[0]["total"] == "4"
    assert rows[1]["reason"].startswith("check not run: 04.linear_backward")
    assert isinstance(subs[0], Submission)


# ---------------------------------------------------------------------------- with kernels
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade a folder of generated submissions once with the command line; share the results."""
    folder = tmp_path_factory.mktemp("submissions")
    wrong_broadcast = CORRECT["broadcast_backward"].replace("keepdim=True", "keepdim=False")
    submissions = {
        "04_correct.ipynb": exercise(CORRECT),
        "04_stubs.ipynb": exercise({name: stub(name) for name in CORRECT}),
        "04_mixed.ipynb": exercise(
            {**CORRECT, "broadcast_backward": wrong_broadcast}, skip_checks=("grad_shapes",)
        ),
        "04_crash.ipynb": notebook("1 / 0", *(c.source for c in exercise(CORRECT).cells[2:])),
        "04_hang.ipynb": notebook(
            CORRECT["linear_backward"],
            'check("04.linear_backward", linear_backward)',
            "while True:\n    pass",
            CORRECT["grad_shapes"],
            'check("04.grad_shapes", grad_shapes)',
        ),
    }
    for name, nb in submissions.items():
        nbformat.write(nb, folder / name)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    out = tmp_path_factory.mktemp("out")
    command = [sys.executable, "-m", "coursekit.grading", str(folder), "--timeout", "35"]
    command += ["--jobs", "3", "--json", str(out / "g.json"), "--csv", str(out / "g.csv")]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=170)
    assert run.returncode == 0, run.stderr
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    data = json.loads((out / "g.json").read_text())
    by_name = {Path(s["name"]).name: s for s in data["submissions"]}
    return {
        "stdout": run.stdout,
        "by_name": by_name,
        "csv": list(csv.DictReader((out / "g.csv").open())),
        "before": before,
        "after": after,
    }


def points(submission: dict) -> dict[str, int]:
    return {name: item["points"] for name, item in submission["items"].items()}


def test_bulk_never_writes_to_a_submission(graded):
    assert graded["after"] == graded["before"]


def test_bulk_all_correct(graded):
    s = graded["by_name"]["04_correct.ipynb"]
    assert points(s) == {
        "04.linear_backward": 3,
        "04.broadcast_backward": 2,
        "04.grad_shapes": 1,
        "04.find_the_bug": 3,
    }
    assert (s["total"], s["max_total"], s["reason"]) == (9, 9, "ok")


def test_bulk_all_stubs(graded):
    s = graded["by_name"]["04_stubs.ipynb"]
    assert s["total"] == 0 and s["reason"] == "ok"
    assert {i["status"] for i in s["items"].values()} == {"not implemented"}


def test_bulk_mixed(graded):
    s = graded["by_name"]["04_mixed.ipynb"]
    assert points(s) == {
        "04.linear_backward": 3,
        "04.broadcast_backward": 0,
        "04.grad_shapes": 0,
        "04.find_the_bug": 3,
    }
    assert "keep the size-1 dims" in s["items"]["04.broadcast_backward"]["feedback"]
    assert s["items"]["04.grad_shapes"]["feedback"] == "check not run"
    assert s["reason"] == "check not run: 04.grad_shapes"


def test_bulk_crashing_notebook_keeps_later_checks(graded):
    s = graded["by_name"]["04_crash.ipynb"]
    assert s["total"] == 9
    assert s["reason"] == "crashed at cell 3: ZeroDivisionError: division by zero"


def test_bulk_hanging_notebook_is_stopped(graded):
    s = graded["by_name"]["04_hang.ipynb"]
    assert points(s) == {
        "04.linear_backward": 3,
        "04.broadcast_backward": 0,
        "04.grad_shapes": 0,
        "04.find_the_bug": 0,
    }
    assert s["reason"].startswith("timed out at cell 5 (limit 35 s)")
    assert "check not run: 04.broadcast_backward, 04.grad_shapes" in s["reason"]


def test_bulk_prints_a_table_and_writes_csv(graded):
    lines = graded["stdout"].splitlines()
    assert lines[0].split()[:2] == ["submission", "linear_backward"]
    assert len(lines) == 2 + 5
    correct = next(line for line in lines if "04_correct.ipynb" in line)
    assert correct.split()[1:] == ["3", "2", "1", "3", "9/9", "ok"]
    rows = {Path(r["submission"]).name: r for r in graded["csv"]}
    assert rows["04_mixed.ipynb"]["04.linear_backward"] == "3"
    assert rows["04_hang.ipynb"]["total"] == "3"


def test_bulk_reports_a_usage_error_without_notebooks(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2 and "no notebooks found" in capsys.readouterr().err
