"""Bulk grading: grade many submitted notebooks, each in a fresh process; tabulate.

    python -m coursekit.grading submissions/ alice_04.ipynb --json grades.json --csv grades.csv

For each notebook:

1. A copy is made in a fresh temporary folder, where the notebook's code runs
   (the submission itself is only read, never written).
2. Its code cells run top to bottom in a fresh process (an IPython shell loaded
   with nothing else, ``worker``), with a time limit for the whole notebook
   (``--timeout``, default 300 s). A cell that raises does not stop the run; a
   cell that hangs or kills the process ends it, and the cells before it are run
   again in a new process, to have the definitions they make.
3. Then the grader grades **every item of the notebook's lesson** (read from the
   file name's two-digit prefix: ``04_vectorized.ipynb``, ``04-alice.ipynb`` ->
   every ``04.*`` item) itself, through the same protocol as check(): it makes
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
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding coursekit/
DEFAULT_ITEM_TIMEOUT = 10.0


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
        lesson: the two-digit lesson from the file name, or None.
        items: item name -> ItemScore, the lesson's items in order.
        total, max_total: points earned and possible.
        flagged: "item: why" for items that scored zero for automatic differentiation,
            coursekit's own implementation or reaching into the grader.
        reason: "ok", or what went wrong: cell errors, a timeout, checks not run.
        seconds: wall time of the run.
        seed: the seed of the test inputs.
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


@dataclass
class _Execution:
    errors: list[tuple[int, str]] = field(default_factory=list)  # (cell number, "Name: value")
    timed_out_at: int | None = None
    died_at: int | None = None
    failure: str | None = None  # the notebook could not be read or the process not started
    kernel_output: str = ""  # the process's last line of output, when it died
    seconds: float = 0.0


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


def _start(workdir: Path, env: dict[str, str], cells, deadline: float, execution: _Execution):
    """A worker that has run ``cells`` (or None when it could not); records what went wrong."""
    worker = _Worker(workdir, env)
    worker.send({"op": "run", "cells": cells})
    current = None
    try:
        while True:
            message = worker.receive(deadline)
            if message is None:
                execution.timed_out_at = current
                worker.kill()
                return None, current
            op = message.get("op")
            if op == "cell":
                current = message.get("number")
            elif op == "cell-error":
                execution.errors.append((message.get("number"), str(message.get("message"))[:500]))
            elif op == "ran":
                return worker, None
    except (EOFError, Malformed, OSError):
        execution.died_at = current
        worker.kill()
        execution.kernel_output = worker.last_words()
        return None, current


def _grade_notebook(path: Path, name: str, timeout: float, seed: int, env: dict) -> Submission:
    import nbformat

    lesson = lesson_of(path)
    expected = [it for it in all_items() if it.lesson == lesson]
    submission = Submission(name=name, lesson=lesson, seed=seed)
    execution = _Execution()
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coursekit-grading-"))
    worker = None
    try:
        copy = workdir / path.name
        shutil.copyfile(path, copy)
        try:
            nb = nbformat.read(copy, as_version=4)
            cells = code_cells(nb)
        except Exception as err:  # not JSON, not a notebook
            execution.failure = f"unreadable notebook: {type(err).__name__}: {err}"
            cells = []
        ran = cells
        if cells:
            deadline = start + timeout
            try:
                worker, stopped_at = _start(workdir, env, cells, deadline, execution)
            except OSError as err:
                execution.failure = f"{type(err).__name__}: {err}"
                worker, stopped_at = None, None
            if worker is None and stopped_at is not None:
                # a cell hung or ended the process: the cells before it give the definitions
                ran = [(n, src) for n, src in cells if n < stopped_at]
                worker, _ = _start(workdir, env, ran, time.monotonic() + timeout, _Execution())
        calls = check_calls(ran)
        sources = [src for _, src in ran]
        numbers = [n for n, _ in ran]
        for it in expected:
            if worker is None and ran and it.name in calls:
                worker, _ = _start(workdir, env, ran, time.monotonic() + timeout, _Execution())
            score, worker = _grade_item(it, calls, sources, numbers, worker, seed)
            submission.items[it.name] = score
            if score.status in ("uses autograd", "uses coursekit", "tampers"):
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


def _reason(execution: _Execution, submission: Submission, timeout: float) -> str:
    parts = []
    last_words = f" ({execution.kernel_output[:200]})" if execution.kernel_output else ""
    if execution.failure:
        parts.append(f"not run: {execution.failure}{last_words}")
    if execution.timed_out_at is not None:
        parts.append(f"timed out at cell {execution.timed_out_at} (limit {timeout:g} s)")
    if execution.died_at is not None:
        parts.append(f"kernel died at cell {execution.died_at}{last_words}")
    if execution.errors:
        cell, message = execution.errors[0]
        if len(message) > 120:
            message = message[:117] + "..."
        more = len(execution.errors) - 1
        parts.append(f"crashed at cell {cell}: {message}" + (f" (+{more} more)" if more else ""))
    missing = [s.item for s in submission.items.values() if s.status == "not run"]
    if missing:
        parts.append("check not run: " + ", ".join(missing))
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
) -> list[Submission]:
    """Grade every notebook in ``paths`` (files or folders); one Submission each, in order.

    ``seed`` fixes the test inputs; by default they are fresh for each call.
    """
    notebooks = find_notebooks(paths)
    jobs = jobs or os.cpu_count() or 1
    seed = secrets.randbits(31) if seed is None else int(seed)
    env = _environment(jobs)
    warm_up()
    done = [0]

    def one(path: Path) -> Submission:
        submission = _grade_notebook(path, str(path), timeout, seed, env)
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
    by_items: dict[tuple[str, ...], list[Submission]] = {}
    for s in submissions:
        by_items.setdefault(tuple(s.items), []).append(s)
    for item_names, group in by_items.items():
        headers = ["submission"]
        headers += [f"{n.split('.', 1)[-1]} ({get_item(n).points})" for n in item_names]
        headers += ["total", "flagged", "reason"]
        rows = [
            [s.name]
            + [str(s.items[n].points) for n in item_names]
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
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_csv(submissions: list[Submission], path: str | Path) -> None:
    """One row per submission: points per item (blank if not part of its lesson), total, reason."""
    columns: list[str] = []
    for s in submissions:
        columns += [n for n in s.items if n not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        header = ["submission", "lesson", *columns, "total", "max_total", "flagged", "reason"]
        writer.writerow(header)
        for s in submissions:
            points = [s.items[n].points if n in s.items else "" for n in columns]
            row = [s.name, s.lesson or "", *points, s.total, s.max_total, "; ".join(s.flagged)]
            writer.writerow([*row, s.reason])


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
        "--timeout", type=float, default=300.0, help="seconds allowed per notebook (default 300)"
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
    submissions = grade_notebooks(
        notebooks, timeout=args.timeout, jobs=args.jobs, progress=not args.quiet, seed=args.seed
    )
    print(format_table(submissions))
    if args.json:
        write_json(submissions, args.json)
    if args.csv:
        write_csv(submissions, args.csv)
    return 0
