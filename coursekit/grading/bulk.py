"""Bulk grading: run many submitted notebooks, collect their check() results, tabulate.

    python -m coursekit.grading submissions/ alice_04.ipynb --json grades.json --csv grades.csv

For each notebook:

1. A copy is made in a fresh temporary folder; the kernel runs there (the
   submission itself is only read, never written).
2. It runs top to bottom in a fresh ``python3`` kernel. A cell that raises does
   not stop the run (later checks still count); the whole notebook has a time
   limit (``--timeout``, default 300 s), after which the kernel is killed.
3. Every check() in the kernel appends its result to a log file named by the
   environment variable COURSEKIT_GRADING_LOG, which is how the scores come back.
4. The items expected from a notebook are those of its lesson, read from the
   file name's two-digit prefix (``04_vectorized.ipynb``, ``04-alice.ipynb`` ->
   every ``04.*`` item); an expected item whose check() never ran scores 0
   ("check not run"). An item checked more than once keeps its best score.

Notebooks run in parallel (``--jobs``, default: the number of CPU cores).
A student who rewrites the grader inside their own notebook can fake the log:
this is grading of honest work, not a security boundary.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from coursekit.grading.check import LOG_VARIABLE
from coursekit.grading.registry import all_items, get_item

_LESSON = re.compile(r"^(\d\d)(?:[_\-. ]|$)")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding coursekit/


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
        items: item name -> ItemScore, expected items first.
        total, max_total: points earned and possible.
        reason: "ok", or what went wrong: cell errors, a timeout, checks not run.
        seconds: wall time of the run.
    """

    name: str
    lesson: str | None
    items: dict[str, ItemScore] = field(default_factory=dict)
    total: int = 0
    max_total: int = 0
    reason: str = "ok"
    seconds: float = 0.0


@dataclass
class _Execution:
    errors: list[tuple[int, str]] = field(default_factory=list)  # (cell number, "Name: value")
    timed_out_at: int | None = None
    died_at: int | None = None
    failure: str | None = None  # the notebook could not be read or the kernel not started
    records: list[dict] = field(default_factory=list)
    kernel_output: str = ""  # the kernel's last line of output, when it died or did not start
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
async def _execute(path: Path, timeout: float) -> _Execution:
    """Run a copy of the notebook in a fresh kernel; collect errors and check() records."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    report = _Execution()
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coursekit-grading-"))
    try:
        copy = workdir / path.name
        shutil.copyfile(path, copy)
        log = workdir / ".coursekit-grading-log.jsonl"
        try:
            nb = nbformat.read(copy, as_version=4)
        except Exception as err:  # not JSON, not a notebook
            report.failure = f"unreadable notebook: {type(err).__name__}: {err}"
            return report
        deadline = start + timeout
        client = NotebookClient(
            nb,
            timeout=int(timeout),
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            kernel_name="python3",
            allow_errors=True,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(workdir)}},
        )
        env = {**os.environ, LOG_VARIABLE: str(log), "MPLBACKEND": "Agg"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        index = 0
        kernel_log = open(workdir / ".kernel-output.txt", "wb")  # closed below
        try:
            async with client.async_setup_kernel(env=env, stdout=kernel_log, stderr=kernel_log):
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    if time.monotonic() >= deadline:
                        raise CellTimeoutError("the notebook ran out of time")
                    await client.async_execute_cell(cell, index)
                    for output in cell.get("outputs", []):
                        if output.get("output_type") == "error":
                            message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
                            report.errors.append((index + 1, message.strip().rstrip(":")))
        except (CellTimeoutError, TimeoutError):
            report.timed_out_at = index + 1
        except DeadKernelError:
            report.died_at = index + 1
        except Exception as err:  # the kernel did not start, or the connection broke
            report.failure = f"{type(err).__name__}: {err}"
        finally:
            kernel_log.close()
        if report.failure or report.died_at is not None:  # the kernel's last words may say why
            lines = (workdir / ".kernel-output.txt").read_text(errors="replace").splitlines()
            report.kernel_output = next((x.strip() for x in reversed(lines) if x.strip()), "")
        if log.exists():
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    report.records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    finally:
        report.seconds = time.monotonic() - start
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _score(path: Path, name: str, execution: _Execution, timeout: float) -> Submission:
    lesson = lesson_of(path)
    submission = Submission(name=name, lesson=lesson, seconds=round(execution.seconds, 1))
    expected = [it.name for it in all_items() if it.lesson == lesson]
    best: dict[str, dict] = {}
    for record in execution.records:
        item = record.get("item") if isinstance(record, dict) else None
        if not isinstance(item, str) or get_item(item) is None:
            continue
        if not isinstance(record.get("points", 0), int):
            continue
        if item not in best or record.get("points", 0) >= best[item].get("points", 0):
            best[item] = record
    for item in expected + [i for i in best if i not in expected]:
        max_points = get_item(item).points
        if item in best:
            r = best[item]
            score = ItemScore(
                item,
                int(r.get("points", 0)),
                max_points,
                r.get("status", "?"),
                r.get("feedback", ""),
            )
        else:
            score = ItemScore(item, 0, max_points, "not run", "check not run")
        submission.items[item] = score
    submission.total = sum(s.points for s in submission.items.values())
    submission.max_total = sum(s.max_points for s in submission.items.values())
    submission.reason = _reason(execution, submission, timeout)
    return submission


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


async def _grade_all(
    paths: list[Path], names: list[str], timeout: float, jobs: int, progress: bool
) -> list[Submission]:
    slots = asyncio.Semaphore(max(1, jobs))
    done = 0

    async def one(path: Path, name: str) -> Submission:
        nonlocal done
        async with slots:
            execution = await _execute(path, timeout)
        submission = _score(path, name, execution, timeout)
        done += 1
        if progress:
            print(
                f"[{done}/{len(paths)}] {name}: {submission.total}/{submission.max_total} "
                f"({submission.seconds:.1f} s) {submission.reason}",
                file=sys.stderr,
                flush=True,
            )
        return submission

    return list(await asyncio.gather(*(one(p, n) for p, n in zip(paths, names, strict=True))))


def grade_notebooks(
    paths: list[str | Path],
    *,
    timeout: float = 300.0,
    jobs: int | None = None,
    progress: bool = False,
) -> list[Submission]:
    """Grade every notebook in ``paths`` (files or folders); one Submission each, in order."""
    notebooks = find_notebooks(paths)
    names = [str(p) for p in notebooks]
    jobs = jobs or os.cpu_count() or 1
    work = _grade_all(notebooks, names, timeout, jobs, progress)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no event loop is running here
        return asyncio.run(work)
    # Called from a running event loop (a Jupyter cell): run the grading in a thread of its own.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


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
        headers += ["total", "reason"]
        rows = [
            [s.name]
            + [str(s.items[n].points) for n in item_names]
            + [f"{s.total}/{s.max_total}", s.reason]
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
        writer.writerow(["submission", "lesson", *columns, "total", "max_total", "reason"])
        for s in submissions:
            points = [s.items[n].points if n in s.items else "" for n in columns]
            writer.writerow([s.name, s.lesson or "", *points, s.total, s.max_total, s.reason])


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursekit.grading",
        description="Run submitted notebooks in fresh kernels and tabulate their check() scores.",
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
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        notebooks = find_notebooks(args.paths)
    except FileNotFoundError as err:
        parser.error(str(err))
    if not notebooks:
        parser.error("no notebooks found in " + ", ".join(args.paths))
    submissions = grade_notebooks(
        notebooks, timeout=args.timeout, jobs=args.jobs, progress=not args.quiet
    )
    print(format_table(submissions))
    if args.json:
        write_json(submissions, args.json)
    if args.csv:
        write_csv(submissions, args.csv)
    return 0
