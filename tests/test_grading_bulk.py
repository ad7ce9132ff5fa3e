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
    ItemScore,
    Submission,
    _Execution,
    _reason,
    check_calls,
    choose_lesson,
    code_cells,
    find_notebooks,
    format_table,
    lesson_in_name,
    lesson_of,
    main,
    student_id,
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


CHECKS = [f'check("{item}", {CHECKED.get(name, name)})' for name, item in ITEM_OF.items()]
FORGE_LOG = """import json, os
for item, points in [("04.linear_backward", 1000004), ("04.broadcast_backward", 2),
                     ("04.grad_shapes", 1), ("03.relu", 2)]:
    record = {"item": item, "passed": True, "points": points, "max_points": 3,
              "status": "passed", "feedback": "All test cases passed."}
    for path in [os.environ.get("COURSEKIT_GRADING_LOG"), ".coursekit-grading-log.jsonl"]:
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\\n")
print("PASS 04.linear_backward: 3/3 points")"""
PATCH_CHECK = """import coursekit.grading as grading
import coursekit.grading.check as check_module
import coursekit.grading.context as context
from coursekit.grading.result import Result
context.TOLERANCE = float("inf")
context.GradingContext._compare_one = lambda *args, **kwargs: None
def _grade(name, functions, timeout):
    return Result(name, True, 3, 3, "All test cases passed.")
check_module._grade = _grade
def check(name, *functions, **options):
    return _grade(name, functions, None)
grading.check = check"""
AUTOGRAD_LINEAR = """def linear_backward(dout, cache):
    x, w, b = (t.clone().requires_grad_(True) for t in cache)
    with torch.enable_grad():
        (x @ w + b).backward(dout)
    return x.grad, w.grad, b.grad"""
LIBRARY_LINEAR = """import coursekit.functional as F

def linear_backward(dout, cache):
    return F.linear_backward(dout, F.linear_forward(*cache)[1])"""


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
    assert lesson_in_name(Path("smithalice_1001_55555_05_mlp.ipynb")) == "05"
    assert lesson_in_name(Path("04-alice.ipynb")) == "04"
    assert lesson_in_name(Path("alice_1001.ipynb")) is None


def test_lesson_comes_from_the_option_then_the_metadata_then_the_name():
    nb = notebook()
    lms = Path("smithalice_1001_55555_05_mlp.ipynb")
    assert choose_lesson(lms, nb, None) == ("05", "file name", None)
    nb.metadata["coursekit"] = {"lesson": "04"}
    assert choose_lesson(lms, nb, None) == ("04", "notebook metadata", None)
    lesson, source, note = choose_lesson(lms, nb, "05")
    assert (lesson, source) == ("05", "--lesson") and "metadata says 04" in note
    assert choose_lesson(Path("alice.ipynb"), new_notebook(), None) == (None, "none", None)


def test_student_id_from_folder_name_or_pattern(tmp_path):
    root = tmp_path / "subs"
    assert student_id(root / "alice" / "05_mlp.ipynb", root) == "alice"
    assert student_id(root / "smithalice_1001_55555_05_mlp.ipynb", root) == (
        "smithalice_1001_55555"
    )
    assert student_id(root / "04-bob.ipynb", root) == "bob"
    pattern = r"/(?P<id>[a-z]+)_\d+_"
    assert student_id(root / "smithalice_1001_55555_05_mlp.ipynb", root, pattern) == "smithalice"


def test_gradebook_reasons_quote_code_cells_and_an_empty_notebook_is_not_ok():
    s = _submission("a", {})
    execution = _Execution(
        errors=[(5, "SyntaxError: invalid syntax (1144914132.py, line 6)")],
        labels={5: "code cell 3 (`def f(x:`)"},
    )
    assert _reason(execution, s, 300).startswith(
        "crashed at code cell 3 (`def f(x:`): SyntaxError: invalid syntax (line 6); "
    )
    assert _reason(_Execution(empty=True), s, 300).startswith("empty submission: no code; ")


def test_folders_are_searched_and_checkpoints_skipped(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir()
    for rel in ["04_x.ipynb", "a/04_y.ipynb", "a/.ipynb_checkpoints/04_y-checkpoint.ipynb"]:
        nbformat.write(notebook(), tmp_path / rel)
    found = find_notebooks([tmp_path, tmp_path / "04_x.ipynb"])
    assert sorted(p.name for p in found) == ["04_x.ipynb", "04_y.ipynb"]
    with pytest.raises(FileNotFoundError, match="not a notebook"):
        find_notebooks([tmp_path / "missing.txt"])


def _submission(name: str, points: dict[str, int], flagged=(), reason="ok") -> Submission:
    maxima = {"04.linear_backward": 3, "04.broadcast_backward": 2, "04.grad_shapes": 1}
    items = {
        item: ItemScore(
            item, points.get(item, 0), top, "passed" if item in points else "not run", ""
        )
        for item, top in maxima.items()
    }
    return Submission(
        name,
        "04",
        items,
        sum(points.values()),
        sum(maxima.values()),
        list(flagged),
        reason,
    )


def test_check_calls_name_the_functions_of_each_item():
    nb = exercise(CORRECT)
    nb.cells.append(
        new_code_cell('%matplotlib inline\ncheck("04.grad_shapes", lambda x, w: (x, w, (w[1],)))')
    )
    calls = check_calls(code_cells(nb))
    assert calls["04.linear_backward"] == (["linear_backward"], 4)
    assert calls["04.grad_shapes"][0] == ["lambda x, w: (x, w, (w[1],))"]  # the last call wins


def test_reasons_name_errors_timeouts_and_checks_not_run():
    s = _submission("a", {"04.linear_backward": 3})
    execution = _Execution(errors=[(4, "ZeroDivisionError: division by zero"), (9, "NameError: x")])
    assert _reason(execution, s, 300) == (
        "crashed at cell 4: ZeroDivisionError: division by zero (+1 more); "
        "check not run: 04.broadcast_backward, 04.grad_shapes"
    )
    assert _reason(_Execution(timed_out_at=7), s, 30).startswith("timed out at cell 7 (limit 30 s)")
    died = _Execution(died_at=3, kernel_output="Killed")
    assert _reason(died, s, 30).startswith("kernel died at cell 3 (Killed)")


def test_reports_as_table_json_and_csv(tmp_path):
    subs = [
        _submission("04_a.ipynb", {"04.linear_backward": 3, "04.grad_shapes": 1}),
        _submission("04_b.ipynb", {}, flagged=["linear_backward: uses autograd"], reason="x"),
    ]
    subs[0].student, subs[1].student = "a", "b"
    table = format_table(subs).splitlines()
    assert table[0].split()[:4] == ["submission", "student", "linear_backward", "(3)"]
    assert table[2].split()[:7] == ["04_a.ipynb", "a", "3", "0", "1", "4/6", "-"]
    assert table[3].split()[:7] == ["04_b.ipynb", "b", "0", "0", "0", "0/6", "linear_backward:"]
    write_json(subs, tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["submissions"][0]["items"]["04.linear_backward"]["points"] == 3
    write_csv(subs, tmp_path / "g.csv")
    rows = list(csv.DictReader((tmp_path / "g.csv").open()))
    assert rows[0]["04.linear_backward"] == "3" and rows[0]["total"] == "4"
    assert rows[0]["04.linear_backward status"] == "passed" and rows[0]["student"] == "a"
    assert rows[0]["04.broadcast_backward status"] == "not run" and rows[0]["lesson"] == "04"
    assert rows[1]["flagged"] == "linear_backward: uses autograd"


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
        # A cell that swallows the interrupt: stopped after a grace, the cells before it rerun.
        "04_stubborn.ipynb": notebook(
            CORRECT["linear_backward"],
            'check("04.linear_backward", linear_backward)',
            "while True:\n    try:\n        while True:\n            pass\n"
            "    except KeyboardInterrupt:\n        pass",
            CORRECT["grad_shapes"],
            'check("04.grad_shapes", grad_shapes)',
        ),
        # A notebook that forges its own results: stubs, plus a log line giving far more points
        # than the item is worth (and an item of another lesson).
        "04_forged_log.ipynb": notebook(
            *(stub(n) for n in CORRECT),
            FORGE_LOG,
        ),
        # A notebook that patches check() and the grader's comparison to pass everything.
        "04_patched.ipynb": notebook(*(stub(n) for n in CORRECT), PATCH_CHECK, *CHECKS),
        # Right answers by forbidden means: autograd, coursekit's own implementation.
        "04_autograd.ipynb": exercise({**CORRECT, "linear_backward": AUTOGRAD_LINEAR}),
        "04_library.ipynb": exercise({**CORRECT, "linear_backward": LIBRARY_LINEAR}),
    }
    for name, nb in submissions.items():
        nbformat.write(nb, folder / name)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    out = tmp_path_factory.mktemp("out")
    command = [sys.executable, "-m", "coursekit.grading", str(folder), "--timeout", "40"]
    command += ["--cell-timeout", "4"]
    command += ["--jobs", "2", "--json", str(out / "g.json"), "--csv", str(out / "g.csv")]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=400)
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


def test_bulk_forged_log_grades_what_the_functions_do(graded):
    s = graded["by_name"]["04_forged_log.ipynb"]
    assert s["total"] == 0 and set(s["items"]) == set(ITEM_OF.values())  # 03.relu is not added
    assert all(item["points"] <= item["max_points"] for item in s["items"].values())
    assert {i["status"] for i in s["items"].values()} == {"not run"}  # it never calls check()


def test_bulk_patched_check_grades_what_the_functions_do(graded):
    s = graded["by_name"]["04_patched.ipynb"]
    assert s["total"] == 0
    assert {i["status"] for i in s["items"].values()} == {"not implemented"}


def test_bulk_flags_autograd_and_coursekit_calls(graded):
    for name, status in (
        ("04_autograd.ipynb", "uses autograd"),
        ("04_library.ipynb", "uses coursekit"),
    ):
        s = graded["by_name"][name]
        linear = s["items"]["04.linear_backward"]
        assert (linear["points"], linear["status"]) == (0, status), linear
        assert s["total"] == 9 - 3 and s["flagged"] == [f"linear_backward: {status}"]
    quoted = graded["by_name"]["04_library.ipynb"]["items"]["04.linear_backward"]["feedback"]
    assert "F.linear_backward(dout, F.linear_forward(*cache)[1])" in quoted


def test_bulk_points_are_capped_integers_and_the_seed_is_recorded(graded):
    for s in graded["by_name"].values():
        assert s["total"] <= s["max_total"] == 9
        for item in s["items"].values():
            assert isinstance(item["points"], int) and 0 <= item["points"] <= item["max_points"]
    assert len({s["seed"] for s in graded["by_name"].values()}) == 1


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
    assert s["total"] == 0 and s["reason"].startswith("not implemented: 04.linear_backward")
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
    assert s["reason"] == "check not run: 04.grad_shapes; failed: 04.broadcast_backward"


def test_bulk_crashing_notebook_keeps_later_checks(graded):
    s = graded["by_name"]["04_crash.ipynb"]
    assert s["total"] == 9
    assert s["reason"] == "crashed at code cell 2 (`1 / 0`): ZeroDivisionError: division by zero"


def test_bulk_hanging_cell_is_interrupted_and_the_run_goes_on(graded):
    s = graded["by_name"]["04_hang.ipynb"]
    assert points(s) == {
        "04.linear_backward": 3,
        "04.grad_shapes": 1,
        "04.broadcast_backward": 0,
        "04.find_the_bug": 0,
    }, (s["reason"], s["items"]["04.grad_shapes"])
    assert list(s["items"]) == [  # notebook order: the items it checks first
        "04.linear_backward",
        "04.grad_shapes",
        "04.broadcast_backward",
        "04.find_the_bug",
    ]
    assert s["reason"].startswith(
        "code cell 4 (`while True:`) interrupted at the cell time limit; "
        "check not run: 04.broadcast_backward, 04.find_the_bug"
    )
    assert s["seconds"] < 35


def test_bulk_cell_that_ignores_the_interrupt_is_stopped(graded):
    s = graded["by_name"]["04_stubborn.ipynb"]
    assert points(s)["04.linear_backward"] == 3 and points(s)["04.grad_shapes"] == 0
    assert s["reason"].startswith("code cell 4 (`while True:`) did not stop when interrupted")


def test_bulk_prints_a_table_and_writes_csv(graded):
    lines = graded["stdout"].splitlines()
    assert lines[0].split()[:3] == ["submission", "student", "linear_backward"]
    assert len(lines) == 2 + 10
    correct = next(line for line in lines if "04_correct.ipynb" in line)
    assert correct.split()[1:] == ["correct", "3", "2", "1", "3", "9/9", "-", "ok"]
    rows = {Path(r["submission"]).name: r for r in graded["csv"]}
    assert rows["04_mixed.ipynb"]["04.linear_backward"] == "3"
    assert rows["04_hang.ipynb"]["total"] == "4"


def test_bulk_reports_a_usage_error_without_notebooks(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2 and "no notebooks found" in capsys.readouterr().err
