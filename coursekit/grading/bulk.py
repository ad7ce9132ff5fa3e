"""Bulk grading: grade many submitted notebooks, each in a fresh process; tabulate.

    python -m coursekit.grading submissions/ alice_04.ipynb --json grades.json --csv grades.csv
    make grade ARGS="submissions/ --lesson 05 --csv grades.csv --feedback feedback/"

For each notebook:

1. A copy is made in a fresh temporary folder, where the notebook's code runs
   (the submission itself is only read, never written).
2. Its code cells run top to bottom in a fresh process (an IPython shell loaded
   with nothing else, ``worker``), with a time limit for the whole notebook
   (``--timeout``, default 300 s) and one for each cell (``--cell-timeout``, default
   60 s). A cell that raises does not stop the run; a cell that runs past its limit
   is interrupted (KeyboardInterrupt) and the run goes on. A cell that ignores the
   interrupt or kills the process ends it, and the cells before it are run again in a
   new process, to have the definitions they make.
3. Then the grader grades **every item of the notebook's lesson** itself. The lesson is
   ``--lesson NN`` when given, else the one ``make exercises`` wrote into the notebook's
   metadata (``metadata.coursekit.lesson``), else ``NN_`` anywhere in the file name
   (``smithalice_1001_55555_05_mlp.ipynb`` -> 05); the gradebook says which. It grades
   through the same protocol as check(): it makes
   the inputs, computes the references and compares, while the functions the
   notebook passed to its own check() call (``check("04.linear_backward",
   linear_backward)``) run in a child of that process, which only sends data
   back. What the notebook printed, logged, patched or reported does not count;
   an item without a check() call in the cells that ran scores 0 ("check not run").
   Hand-written items are also scanned in the notebook's source (``scan``): a hit
   scores 0 and is listed in the "flagged" column.
4. Points are integers, at most each item's worth, and only the lesson's items
   count. The test inputs are fresh for each run (one seed per run, in the JSON
   output), unless ``--seed`` fixes them.

The gradebook (``--csv``) has one row per submission: the student (``--id-pattern``, a
regular expression on the path whose first group, or the group named ``id``, is the
student; by default the folder under the one given, else the file name without the
lesson part), the lesson as text, per item its points and its status (passed, failed,
not implemented, not run, flagged), the total and a reason quoting the cells that went
wrong by their code-cell number and first line. ``--feedback DIR`` writes one plain
text file per student with each item's feedback, to hand back.

Notebooks run in parallel (``--jobs``, default: the number of CPU cores), each
process with one torch thread (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1) so they do not
oversubscribe the cores. What the guarantees are, and are not, is in the README
("For instructors").
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from coursekit.grading.check import flagged, to_result
from coursekit.grading.context import Outcome, grade
from coursekit.grading.isolation import PipeSession, StudentGone, default_memory_budget
from coursekit.grading.library import library_of
from coursekit.grading.reference import warm_up
from coursekit.grading.registry import Item, all_items, get_item
from coursekit.grading.scan import scan_notebook
from coursekit.grading.wire import FrameReader, Malformed, write_frame

_LESSON = re.compile(r"^(\d\d)(?:[_\-. ]|$)")
_LESSON_ANYWHERE = re.compile(r"(?<![0-9])(\d\d)_")
_TEMP_FILE = re.compile(r"\((?:<ipython-input-[\w-]+>|(?:[^()]*/)?[\w-]+\.py), (line \d+)\)")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding coursekit/
DEFAULT_ITEM_TIMEOUT = 10.0
DEFAULT_CELL_TIMEOUT = 60.0
INTERRUPT_GRACE = 5.0  # seconds a cell has to stop after the interrupt
FLAGGING = ("uses autograd", "uses coursekit", "tampers")


@dataclass
class ItemScore:
    """One item of one submission."""

    item: str
    points: int
    max_points: int
    status: str
    feedback: str


@dataclass
class Submission:
    """The grade of one notebook.

    Attributes:
        name: how the notebook is shown (its path as given).
        lesson: the two-digit lesson ("05", text), or None when none was found.
        items: item name -> ItemScore, the lesson's items in the order the notebook checks
            them (items it never checks last).
        total, max_total: points earned and possible.
        flagged: "item: why" for items that scored zero for automatic differentiation,
            coursekit's own implementation or reaching into the grader.
        reason: "ok", or what went wrong: cell errors, a timeout, checks not run.
        seconds: wall time of the run.
        seed: the seed of the test inputs.
        student: the student's identifier (see ``student_id``).
        lesson_source: where the lesson came from: "--lesson", "notebook metadata",
            "file name" or "none".
    """

    name: str
    lesson: str | None
    items: dict[str, ItemScore] = field(default_factory=dict)
    total: int = 0
    max_total: int = 0
    flagged: list[str] = field(default_factory=list)
    reason: str = "ok"
    seconds: float = 0.0
    seed: int | None = None
    student: str = ""
    lesson_source: str = "none"


@dataclass
class _Execution:
    errors: list[tuple[int, str]] = field(default_factory=list)  # (cell number, "Name: value")
    interrupted: list[int] = field(default_factory=list)  # cells stopped at their time limit
    timed_out_at: int | None = None
    died_at: int | None = None
    failure: str | None = None  # the notebook could not be read or the process not started
    kernel_output: str = ""  # the process's last line of output, when it died
    seconds: float = 0.0
    labels: dict[int, str] = field(default_factory=dict)  # cell number -> "code cell 3 (`x`)"
    empty: bool = False  # the notebook has no code at all
    notes: list[str] = field(default_factory=list)  # lesson disagreements, unknown items


# ----------------------------------------------------------------------------- finding work
def find_notebooks(paths: list[str | Path]) -> list[Path]:
    """The notebooks named, and those inside the folders named (recursively), in order."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found += sorted(
                p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
            )
        elif entry.suffix == ".ipynb" and entry.is_file():
            found.append(entry)
        else:
            raise FileNotFoundError(f"{entry}: not a notebook (.ipynb) or a folder")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def lesson_of(path: Path) -> str | None:
    """ "04" for 04_vectorized.ipynb; None if the name has no two-digit prefix."""
    match = _LESSON.match(path.name)
    return match.group(1) if match else None


def lesson_in_name(path: Path) -> str | None:
    """The lesson from ``NN_`` anywhere in the file name (a two-digit prefix first), the first
    that has graded items: ``smithalice_1001_55555_05_mlp.ipynb`` -> "05"."""
    known = {it.lesson for it in all_items()}
    prefix = lesson_of(path)
    found = ([prefix] if prefix else []) + _LESSON_ANYWHERE.findall(path.name)
    return next((n for n in found if n in known), None)


def lesson_in_metadata(nb) -> str | None:
    """The lesson ``make exercises`` wrote into the notebook, if any."""
    meta = nb.get("metadata", {}).get("coursekit", {}) if nb is not None else {}
    lesson = meta.get("lesson") if isinstance(meta, dict) else None
    return lesson if isinstance(lesson, str) and re.fullmatch(r"\d\d", lesson) else None


def choose_lesson(path: Path, nb, given: str | None) -> tuple[str | None, str, str | None]:
    """(lesson, where it came from, a note when the sources disagree).

    ``--lesson`` is the instructor's word and wins; then the notebook's metadata, which
    survives renaming by a learning platform; then ``NN_`` in the file name.
    """
    in_meta = lesson_in_metadata(nb)
    if given is not None:
        note = None
        if in_meta is not None and in_meta != given:
            note = f"graded as lesson {given} (--lesson); the notebook's metadata says {in_meta}"
        return given, "--lesson", note
    if in_meta is not None:
        return in_meta, "notebook metadata", None
    in_name = lesson_in_name(path)
    if in_name is not None:
        return in_name, "file name", None
    return None, "none", None


def student_id(path: Path, root: Path | None, pattern: str | None = None) -> str:
    """Who handed in ``path``: the first group (or the group named ``id``) of ``pattern``
    searched in the path; by default the first folder under ``root`` (the folder given on
    the command line), else the file name without its lesson part."""
    text = path.as_posix()
    if pattern:
        match = re.search(pattern, text)
        if match:
            groups = match.groupdict()
            return groups.get("id") or (match.group(1) if match.groups() else match.group(0))
        return path.stem
    if root is not None:
        with contextlib.suppress(ValueError):
            parts = path.resolve().relative_to(root.resolve()).parts
            if len(parts) > 1:
                return parts[0]
    stem = path.stem
    match = _LESSON.match(stem) or _LESSON_ANYWHERE.search(stem)
    if match is None:
        return stem
    before, after = stem[: match.start()], stem[match.end() :]
    return before.strip("_-. ") or after.strip("_-. ") or stem


def _roots(paths: list[str | Path]) -> dict[Path, Path | None]:
    """Each notebook found -> the folder named on the command line it was found in."""
    roots: dict[Path, Path | None] = {}
    for entry in map(Path, paths):
        for nb in find_notebooks([entry]):
            roots.setdefault(nb.resolve(), entry if entry.is_dir() else None)
    return roots


# ----------------------------------------------------------------------------- running
def code_cells(nb) -> list[tuple[int, str]]:
    """(cell number, counting every cell from 1; source) of each code cell."""
    return [(i + 1, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def check_calls(cells: list[tuple[int, str]]) -> dict[str, tuple[list[str], int]]:
    """item -> (the expressions passed to the notebook's last check() of it, cell number)."""
    found: dict[str, tuple[list[str], int]] = {}
    for number, source in cells:
        try:
            tree = ast.parse(_python(source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _name_of(node.func) == "check" and node.args):
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            expressions = [ast.get_source_segment(_python(source), a) or "" for a in node.args[1:]]
            found[first.value] = (expressions, number)
    return found


def _python(source: str) -> str:
    """A cell's source as Python (magics and shell escapes turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


class _Worker:
    """The student's process of one submission (``python -m coursekit.grading.worker``)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.log = open(workdir / ".worker-output.txt", "ab")  # closed in kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "coursekit.grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own session: everything it starts can be found
        )
        self.read_fd = self.process.stdout.fileno()
        self.write_fd = self.process.stdin.fileno()
        self.reader = FrameReader()
        self.workdir = workdir

    def send(self, header: dict) -> None:
        write_frame(self.write_fd, header, [])

    def receive(self, deadline: float) -> dict | None:
        """The next message; None when the deadline passes; raises EOFError when it ended."""
        while True:
            message = self.reader.next()
            if message is not None:
                return message[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.read_fd], [], [], remaining)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise EOFError
                self.reader.feed(chunk)

    def last_words(self) -> str:
        lines = (self.workdir / ".worker-output.txt").read_text(errors="replace").splitlines()
        return next((x.strip() for x in reversed(lines) if x.strip()), "")

    def kill(self) -> None:
        """SIGKILL the process and everything in its session, then reap it."""
        for pid in _session_members(self.process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.log.close()


def _session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` (Linux /proc; elsewhere none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[3]) == sid:
            found.append(int(entry.parent.name))
    return found


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class _ItemSession(PipeSession):
    """The grader's end of one item's conversation with a child of the worker."""

    def __init__(self, worker: _Worker, pid: int, limit: float) -> None:
        super().__init__(worker.read_fd, worker.write_fd, limit)
        self.reader = worker.reader
        self.worker, self.pid = worker, pid

    def kill_child(self) -> None:
        if self.pid and _parent_of(self.pid) == self.worker.process.pid:  # its child, not another
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)


def _start(
    workdir: Path,
    env: dict[str, str],
    cells,
    deadline: float,
    execution: _Execution,
    cell_timeout: float | None = None,
):
    """A worker that has run ``cells`` (or None when it could not); records what went wrong.

    A cell running past ``cell_timeout`` seconds gets a KeyboardInterrupt and the run goes
    on; one still running ``INTERRUPT_GRACE`` seconds later, or past ``deadline`` (the whole
    notebook's limit), ends the worker.
    """
    worker = _Worker(workdir, env)
    worker.send({"op": "run", "cells": cells})
    current, cell_deadline, interrupted = None, float("inf"), False
    try:
        while True:
            message = worker.receive(min(deadline, cell_deadline))
            if message is None:
                if time.monotonic() < deadline and not interrupted and current is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(worker.process.pid, signal.SIGINT)
                    execution.interrupted.append(current)
                    cell_deadline, interrupted = time.monotonic() + INTERRUPT_GRACE, True
                    continue
                execution.timed_out_at = current
                worker.kill()
                return None, current
            op = message.get("op")
            if op == "cell":
                current, interrupted = message.get("number"), False
                if cell_timeout:
                    cell_deadline = time.monotonic() + cell_timeout
            elif op == "cell-error":
                execution.errors.append((message.get("number"), str(message.get("message"))[:500]))
            elif op == "ran":
                return worker, None
    except (EOFError, Malformed, OSError):
        execution.died_at = current
        worker.kill()
        execution.kernel_output = worker.last_words()
        return None, current


def _label(index: int, source: str) -> str:
    """ "code cell 3 (`while True:`)": a code cell by its number among code cells, and its
    first line."""
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    if len(first) > 40:
        first = first[:37] + "..."
    return f"code cell {index}" + (f" (`{first}`)" if first else "")


def _grade_notebook(
    path: Path,
    name: str,
    timeout: float,
    seed: int,
    env: dict,
    *,
    lesson: str | None = None,
    student: str = "",
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
) -> Submission:
    import nbformat

    execution = _Execution()
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coursekit-grading-"))
    worker = None
    submission = Submission(name=name, lesson=None, seed=seed, student=student or path.stem)
    try:
        copy = workdir / "submission.ipynb"  # its own name may not be a safe file name
        shutil.copyfile(path, copy)
        nb = None
        try:
            nb = nbformat.read(copy, as_version=4)
            cells = code_cells(nb)
        except Exception as err:  # not JSON, not a notebook
            execution.failure = f"unreadable notebook: {type(err).__name__}: {err}"
            cells = []
        chosen, submission.lesson_source, note = choose_lesson(path, nb, lesson)
        submission.lesson = chosen
        if note:
            execution.notes.append(note)
        if chosen is None:
            execution.notes.append(
                "no lesson: none in the notebook's metadata or the file name (use --lesson NN)"
            )
        execution.labels = {n: _label(k, src) for k, (n, src) in enumerate(cells, start=1)}
        execution.empty = nb is not None and not any(src.strip() for _, src in cells)
        ran = cells
        if cells:
            deadline = start + timeout
            try:
                worker, stopped_at = _start(workdir, env, cells, deadline, execution, cell_timeout)
            except OSError as err:
                execution.failure = f"{type(err).__name__}: {err}"
                worker, stopped_at = None, None
            if worker is None and stopped_at is not None:
                # a cell hung or ended the process: the cells before it give the definitions
                ran = [(n, src) for n, src in cells if n < stopped_at]
                worker, _ = _start(
                    workdir, env, ran, time.monotonic() + timeout, _Execution(), cell_timeout
                )
        calls = check_calls(ran)
        unknown = sorted(n for n in check_calls(cells) if get_item(n) is None)
        if unknown:
            execution.notes.append(
                "checks items that are not the course's (defined in the notebook?), "
                "not graded: " + ", ".join(unknown)
            )
        sources = [src for _, src in ran]
        numbers = [n for n, _ in ran]
        expected = [it for it in all_items() if it.lesson == chosen]
        order = [n for n in check_calls(cells) if n in {it.name for it in expected}]
        expected.sort(key=lambda it: order.index(it.name) if it.name in order else len(order))
        for it in expected:
            if worker is None and ran and it.name in calls:
                worker, _ = _start(
                    workdir, env, ran, time.monotonic() + timeout, _Execution(), cell_timeout
                )
            score, worker = _grade_item(it, calls, sources, numbers, worker, seed)
            submission.items[it.name] = score
            if score.status in FLAGGING:
                submission.flagged.append(f"{it.name.split('.', 1)[-1]}: {score.status}")
    finally:
        if worker is not None:
            with contextlib.suppress(OSError):
                worker.send({"op": "quit"})
            worker.kill()
        execution.seconds = time.monotonic() - start
        shutil.rmtree(workdir, ignore_errors=True)
    submission.seconds = round(execution.seconds, 1)
    submission.total = sum(min(s.points, s.max_points) for s in submission.items.values())
    submission.max_total = sum(s.max_points for s in submission.items.values())
    submission.reason = _reason(execution, submission, timeout)
    return submission


def _grade_item(it: Item, calls, sources, numbers, worker, seed: int):
    """(ItemScore, the worker to use next: None when it had to be ended)."""
    item_seed = zlib.crc32(f"{seed}:{it.name}".encode())
    if it.name not in calls:
        return ItemScore(it.name, 0, it.points, "not run", "check not run"), worker
    expressions, _cell = calls[it.name]
    if len(expressions) != len(it.functions):
        feedback = (
            f"check() passes {len(expressions)} function(s); the item takes {len(it.functions)}"
        )
        return ItemScore(it.name, 0, it.points, "invalid call", feedback), worker
    if it.hand_written:
        names = [e for e in expressions if e.isidentifier()]
        hit = scan_notebook(sources, names, library_of(it.name), numbers)
        if hit is not None:
            result = flagged(it, hit)
            return ItemScore(it.name, 0, it.points, result.status, result.feedback), worker
    if worker is None:
        return ItemScore(it.name, 0, it.points, "not run", "the notebook did not run"), None
    limit = max(DEFAULT_ITEM_TIMEOUT, it.timeout or 0.0)
    request = {
        "op": "item",
        "name": it.name,
        "functions": expressions,
        "hand_written": it.hand_written,
        "library": list(library_of(it.name)),
        "memory": default_memory_budget(),
    }
    deadline = time.monotonic() + limit
    try:
        worker.send(request)
        answer = worker.receive(deadline)
    except (EOFError, Malformed, OSError):
        answer = None
    if answer is None or answer.get("op") not in ("forked", "missing"):
        worker.kill()
        return ItemScore(it.name, 0, it.points, "error", "the notebook's process stopped"), None
    if answer["op"] == "missing":
        feedback = f"Could not find the functions passed to check(): {answer.get('message')}"
        return ItemScore(it.name, 0, it.points, "not defined", feedback[:500]), worker
    pid = answer.get("pid") if type(answer.get("pid")) is int else 0
    session = _ItemSession(worker, pid, limit)
    names = [e if e.isidentifier() else p for e, p in zip(expressions, it.functions, strict=True)]
    outcome: Outcome = grade(it, None, item_seed, session=session, names=names)
    result = to_result(it, outcome, item_seed, limit)
    score = ItemScore(
        it.name, min(result.points, it.points), it.points, result.status, result.feedback
    )
    if outcome.status in ("timeout", "crashed", "malformed"):
        session.kill_child()
        worker.kill()  # its pipes may hold half a message: start afresh for the next item
        return score, None
    try:
        session.close()  # "end": the child exits, the worker says so
        done = worker.receive(time.monotonic() + 5)
    except (EOFError, Malformed, OSError, StudentGone):
        done = None
    if done is None or done.get("op") != "item-done":
        session.kill_child()
        worker.kill()
        return score, None
    return score, worker


def category(score: ItemScore) -> str:
    """The gradebook's status of an item: passed, failed, not implemented, not run, flagged."""
    if score.status in ("passed", "not implemented", "not run"):
        return score.status
    if score.status in FLAGGING:
        return "flagged"
    if score.status == "not defined":
        return "not run"
    return "failed"


def _clean(message: str) -> str:
    """An error message without the temporary file IPython compiled the cell in."""
    message = _TEMP_FILE.sub(r"(\1)", message)
    return message[:117] + "..." if len(message) > 120 else message


def _reason(execution: _Execution, submission: Submission, timeout: float) -> str:
    """What went wrong, in words; "ok" only when every item passed and nothing went wrong."""
    parts = list(execution.notes)

    def cell(number: int | None) -> str:
        return execution.labels.get(number, f"cell {number}") if number else "a cell"

    last_words = f" ({execution.kernel_output[:200]})" if execution.kernel_output else ""
    if execution.failure:
        parts.append(f"not run: {execution.failure}{last_words}")
    if execution.empty:
        parts.append("empty submission: no code")
    for number in execution.interrupted:
        if number != execution.timed_out_at:
            parts.append(f"{cell(number)} interrupted at the cell time limit")
    if execution.timed_out_at is not None and execution.timed_out_at in execution.interrupted:
        parts.append(
            f"{cell(execution.timed_out_at)} did not stop when interrupted at the cell time "
            "limit; the cells after it did not run"
        )
    elif execution.timed_out_at is not None:
        parts.append(f"timed out at {cell(execution.timed_out_at)} (limit {timeout:g} s)")
    if execution.died_at is not None:
        parts.append(f"kernel died at {cell(execution.died_at)}{last_words}")
    errors = [(n, m) for n, m in execution.errors if not m.startswith("KeyboardInterrupt")]
    if errors:
        number, message = errors[0]
        more = len(errors) - 1
        parts.append(
            f"crashed at {cell(number)}: {_clean(message)}" + (f" (+{more} more)" if more else "")
        )
    by_status: dict[str, list[str]] = {}
    for score in submission.items.values():
        by_status.setdefault(category(score), []).append(score.item)
    if by_status.get("not run"):
        parts.append("check not run: " + ", ".join(by_status["not run"]))
    for status in ("not implemented", "failed"):
        if by_status.get(status):
            parts.append(f"{status}: " + ", ".join(by_status[status]))
    if not submission.items and submission.lesson is not None:
        parts.append(f"lesson {submission.lesson} has no graded items")
    return "; ".join(parts) or "ok"


def _environment(jobs: int) -> dict[str, str]:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("COURSEKIT_GRADING_LOG", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    if jobs > 1:  # parallel notebooks: one thread each, so they do not oversubscribe the cores
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def grade_notebooks(
    paths: list[str | Path],
    *,
    timeout: float = 300.0,
    jobs: int | None = None,
    progress: bool = False,
    seed: int | None = None,
    lesson: str | None = None,
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
    id_pattern: str | None = None,
) -> list[Submission]:
    """Grade every notebook in ``paths`` (files or folders); one Submission each, in order.

    ``seed`` fixes the test inputs; by default they are fresh for each call. ``lesson``
    ("05") grades every notebook as that lesson. ``cell_timeout`` (seconds, None: none)
    interrupts a cell and goes on; ``timeout`` bounds the whole notebook. ``id_pattern``:
    see ``student_id``.
    """
    if lesson is not None and not re.fullmatch(r"\d\d", lesson):
        raise ValueError(f"lesson must be two digits such as 05, got {lesson!r}")
    if id_pattern is not None:
        re.compile(id_pattern)
    roots = _roots(paths)
    notebooks = find_notebooks(paths)
    jobs = jobs or os.cpu_count() or 1
    seed = secrets.randbits(31) if seed is None else int(seed)
    env = _environment(jobs)
    warm_up()
    done = [0]

    def one(path: Path) -> Submission:
        student = student_id(path, roots.get(path.resolve()), id_pattern)
        submission = _grade_notebook(
            path,
            str(path),
            timeout,
            seed,
            env,
            lesson=lesson,
            student=student,
            cell_timeout=cell_timeout,
        )
        done[0] += 1
        if progress:
            print(
                f"[{done[0]}/{len(notebooks)}] {path}: {submission.total}/{submission.max_total} "
                f"({submission.seconds:.1f} s) {submission.reason}",
                file=sys.stderr,
                flush=True,
            )
        return submission

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, notebooks))


# ----------------------------------------------------------------------------- reports
def format_table(submissions: list[Submission]) -> str:
    """A plain-text score table, one block per lesson: points per item, total, reason."""
    blocks = []
    by_lesson: dict[str | None, list[Submission]] = {}
    for s in submissions:
        by_lesson.setdefault(s.lesson, []).append(s)
    for group in by_lesson.values():
        item_names: list[str] = []
        for s in group:
            item_names += [n for n in s.items if n not in item_names]
        headers = ["submission", "student"]
        headers += [f"{n.split('.', 1)[-1]} ({get_item(n).points})" for n in item_names]
        headers += ["total", "flagged", "reason"]
        rows = [
            [s.name, s.student]
            + [str(s.items[n].points) if n in s.items else "" for n in item_names]
            + [f"{s.total}/{s.max_total}", ", ".join(s.flagged) or "-", s.reason]
            for s in group
        ]
        widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers) - 1)]

        def line(cells: list[str], widths: list[int] = widths) -> str:
            text = "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True))
            return f"{text}  {cells[-1]}"

        rule = "-" * (sum(widths) + 2 * len(widths) + len("reason"))
        blocks.append("\n".join([line(headers), rule, *map(line, rows)]))
    return "\n\n".join(blocks)


def write_json(submissions: list[Submission], path: str | Path) -> None:
    """The full gradebook: every item's points, status and feedback, per submission."""
    data = {"submissions": [asdict(s) for s in submissions]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_csv(submissions: list[Submission], path: str | Path) -> None:
    """A gradebook, one row per submission: the student, the lesson (text, "05"), per item its
    points (column ``<item>``, blank if not part of its lesson) and its status (column
    ``<item> status``: passed, failed, not implemented, not run, flagged), in the order the
    notebooks check them, then total, flagged and the reason."""
    columns: list[str] = []
    for s in submissions:
        columns += [n for n in s.items if n not in columns]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        per_item = [c for n in columns for c in (n, f"{n} status")]
        header = ["student", "submission", "lesson", "lesson from", *per_item]
        writer.writerow([*header, "total", "max_total", "flagged", "reason"])
        for s in submissions:
            cells: list = []
            for n in columns:
                score = s.items.get(n)
                cells += [score.points, category(score)] if score else ["", ""]
            row = [s.student, s.name, s.lesson or "", s.lesson_source, *cells]
            writer.writerow([*row, s.total, s.max_total, "; ".join(s.flagged), s.reason])


def feedback_text(s: Submission) -> str:
    """What to hand back to a student: the score, then each item's feedback."""
    lines = [
        f"Student: {s.student}",
        f"Notebook: {Path(s.name).name}",
        f"Lesson: {s.lesson or '?'}",
        f"Score: {s.total} / {s.max_total}",
    ]
    if s.reason != "ok":
        lines.append(f"Notes: {s.reason}")
    for score in s.items.values():
        lines += ["", f"== {score.item}: {score.points} / {score.max_points} ({score.status})"]
        lines.append(score.feedback.strip() or "-")
    return "\n".join(lines) + "\n"


def write_feedback(submissions: list[Submission], folder: str | Path) -> list[Path]:
    """One plain text file per submission, ``<student>_<lesson>.txt``, in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for s in submissions:
        stem = re.sub(r"[^\w.-]+", "_", f"{s.student}_{s.lesson or 'unknown'}").strip("._")
        path, n = folder / f"{stem or 'submission'}.txt", 1
        while path in written:
            n += 1
            path = folder / f"{stem}_{n}.txt"
        path.write_text(feedback_text(s), encoding="utf-8")
        written.append(path)
    return written


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursekit.grading",
        description="Grade submitted notebooks: run each in a fresh process, grade every item of "
        "its lesson, tabulate.",
    )
    parser.add_argument("paths", nargs="+", help="notebooks (.ipynb) and folders of notebooks")
    parser.add_argument("--json", metavar="FILE", help="write the full results as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write a gradebook as CSV")
    parser.add_argument(
        "--feedback", metavar="DIR", help="write one plain text feedback file per student"
    )
    parser.add_argument(
        "--lesson",
        metavar="NN",
        help="grade every notebook as this lesson (default: the notebook's metadata, "
        "else NN_ in its file name)",
    )
    parser.add_argument(
        "--id-pattern",
        metavar="REGEX",
        help="the student's id: the first group (or group 'id') of REGEX in the path "
        "(default: the folder under the one given, else the file name without the lesson)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds allowed per notebook (default 300)"
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=DEFAULT_CELL_TIMEOUT,
        help=f"seconds a cell may run before it is interrupted (default {DEFAULT_CELL_TIMEOUT:g};"
        " 0: no limit)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks run at once (default: the number of CPU cores)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="fix the test inputs (default: fresh each run)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        notebooks = find_notebooks(args.paths)
    except FileNotFoundError as err:
        parser.error(str(err))
    if not notebooks:
        parser.error("no notebooks found in " + ", ".join(args.paths))
    if args.lesson is not None and not re.fullmatch(r"\d\d", args.lesson):
        parser.error(f"--lesson takes two digits such as 05, not {args.lesson!r}")
    if args.id_pattern is not None:
        try:
            re.compile(args.id_pattern)
        except re.error as err:
            parser.error(f"--id-pattern: {err}")
    submissions = grade_notebooks(
        args.paths,
        timeout=args.timeout,
        jobs=args.jobs,
        progress=not args.quiet,
        seed=args.seed,
        lesson=args.lesson,
        cell_timeout=args.cell_timeout or None,
        id_pattern=args.id_pattern,
    )
    print(format_table(submissions))
    if args.json:
        write_json(submissions, args.json)
    if args.csv:
        write_csv(submissions, args.csv)
    if args.feedback:
        written = write_feedback(submissions, args.feedback)
        print(f"feedback: {len(written)} files in {args.feedback}", file=sys.stderr)
    return 0
