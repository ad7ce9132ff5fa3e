"""``make gpu``: everything a GPU can tell about the course, in one command and one report.

Four parts run in this order, and none stops the others:

1. ``pytest -m gpu``: every test marked ``gpu`` (skipped without CUDA);
2. ``python -m coursekit.bench --device cuda`` (``cpu`` without CUDA);
3. every lesson and solution notebook under nbval with the sanitizer, on CUDA when there
   is one (the notebooks pick ``default_device()``): a cell that raises is a failure (what
   ``--nbval-lax`` checks); a stored output that differs is reported, not failed. One
   pass gives both, since nbval tells the two apart (``--two-passes`` runs ``--nbval-lax``
   and then ``--nbval`` instead, twice the time). Each notebook's time is recorded, and
   the device of every ``coursekit.train.fit`` run in it (``History.device``, or else where
   the model's parameters are);
4. a 2-process data-parallel step with ``coursekit.distributed`` (skipped until that
   module exists; NCCL is tried only with two or more GPUs), and on a GPU machine the
   torchrun script ``coursekit.examples.data_parallel`` on 2 processes against 1.

It writes ``report.md`` (device, versions, result per part, the benchmark table, the
notebooks' times and devices), ``check.log`` (every command's output) and
``results.json`` into ``--out`` and prints a one-line summary last. Without CUDA it says
"no CUDA" and runs the rest on the CPU. ``--quick`` runs a small subset (for the tests).

On a GPU machine whose Python has torch but not the notebook tools, ``--wheels DIR``
installs the wheels in DIR (``make gpu-wheels`` downloads them) into a private folder
first, with ``pip install --no-index --no-deps``; torch itself is never installed.
Exit status: 0 when every part that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEEDED_MODULES = ("torch", "pytest", "xdist", "nbval", "nbformat", "nbclient", "ipykernel")
# In --quick mode: the gpu test file alone, and the shortest lesson.
QUICK_GPU_TESTS = ("tests/test_gpu.py",)
QUICK_NOTEBOOKS = ("notebooks/01_derivatives.ipynb",)
SUITES_ELSEWHERE = ("browser", "colab", "nbgrader")


@dataclass
class Part:
    """One part of the check and what came of it."""

    name: str
    status: str = "not run"  # "pass", "fail", "skip", "timeout", "not run"
    summary: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- running
class Runner:
    """Runs commands with a time limit each, appending their output to one log file."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log, self.env = log, env

    def run(self, command: list[str], timeout: float, **env: str) -> tuple[int | None, str]:
        """(exit status or None on timeout, output). A timeout kills the whole process group
        (notebook kernels included)."""
        with self.log.open("a") as f:
            f.write(f"\n$ {' '.join(command)}\n")
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=max(timeout, 1.0))
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            code = None
        with self.log.open("a") as f:
            f.write(out)
            f.write(f"[exit status {code if code is not None else 'timeout'}]\n")
        return code, out


def _junit_counts(path: Path) -> dict[str, Any]:
    """Test counts and failed test ids from a JUnit XML file (empty when it is missing)."""
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in root.iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    failed = []
    for case in root.iter("testcase"):
        for problem in (*case.findall("failure"), *case.findall("error")):
            message = (problem.get("message") or "").splitlines()
            first = message[0][:160] if message else ""
            failed.append(f"{case.get('classname')}::{case.get('name')}: {first}")
    counts["failed"] = failed
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


# ------------------------------------------------------------------------ environment
def install_wheels(wheels: Path, target: Path, log: Path) -> str:
    """pip install every wheel of ``wheels`` into ``target`` (no index, no dependencies)."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        return f"no wheels in {wheels}"
    command = [
        sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(target),
        *map(str, found),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    with log.open("a") as f:
        f.write(
            f"$ {' '.join(command[:12])} ... ({len(found)} wheels)\n{result.stdout}{result.stderr}"
        )
    if result.returncode != 0:
        return f"pip install of {len(found)} wheels failed (see check.log)"
    return f"installed {len(found)} wheels from {wheels} into {target}"


def probe(env: dict[str, str]) -> dict[str, Any]:
    """Versions, the device and what is missing, asked of a fresh interpreter with ``env``."""
    code = textwrap.dedent(
        f"""
        import importlib, importlib.metadata as md, json, platform, shutil, subprocess
        info = {{"python": platform.python_version(), "missing": [], "versions": {{}}}}
        for name in {NEEDED_MODULES!r}:
            try:
                importlib.import_module(name)
            except Exception as error:
                info["missing"].append(f"{{name}} ({{type(error).__name__}}: {{error}})")
        for dist in ("torch", "numpy", "pytest", "pytest-xdist", "nbval", "nbclient",
                     "ipykernel", "matplotlib"):
            try:
                info["versions"][dist] = md.version(dist)
            except md.PackageNotFoundError:
                pass
        try:
            import torch
            info["cuda"] = torch.cuda.is_available()
            info["torch_cuda"] = torch.version.cuda
            if info["cuda"]:
                p = torch.cuda.get_device_properties(0)
                info["gpu"] = f"{{p.name}} ({{p.total_memory / 2**30:.1f}} GiB)"
                info["gpus"] = torch.cuda.device_count()
                info["cudnn"] = torch.backends.cudnn.version()
                info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        except Exception as error:
            info["cuda"] = False
            info["torch_error"] = repr(error)
        if shutil.which("nvidia-smi"):
            r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                                "--format=csv,noheader"], capture_output=True, text=True)
            info["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
        print(json.dumps(info))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"python": platform.python_version(), "missing": ["?"], "cuda": False,
                "probe_error": result.stderr[-2000:]}  # fmt: skip


# ------------------------------------------------------------------------------ parts
def part_gpu_tests(runner: Runner, tmp: Path, quick: bool, cuda: bool, timeout: float) -> Part:
    part = Part("1. pytest -m gpu")
    xml = tmp / "gpu-tests.xml"
    # The browser, Colab and nbgrader suites need tools a GPU machine lacks (and no GPU).
    targets = (
        list(QUICK_GPU_TESTS)
        if quick
        else ["tests", *(f"--ignore=tests/{d}" for d in SUITES_ELSEWHERE)]
    )
    command = [sys.executable, "-m", "pytest", "-m", "gpu", *targets, "-q", "-rfE",
               "--continue-on-collection-errors", "-p", "no:cacheprovider",
               f"--junitxml={xml}"]  # fmt: skip
    start = time.perf_counter()
    code, out = runner.run(command, timeout)
    part.seconds = time.perf_counter() - start
    counts = _junit_counts(xml)
    part.details = counts
    if code is None:
        part.status, part.summary = "timeout", f"stopped after {timeout:.0f} s"
    elif code == 5 or counts.get("tests", 0) == 0:
        part.status, part.summary = "fail", "no gpu test was collected"
    elif code != 0 or counts.get("failures") or counts.get("errors"):
        part.status = "fail"
    else:
        part.status = "pass" if cuda else "skip"
    if counts and code is not None:
        part.summary = (
            f"{counts['passed']} passed, {counts['failures'] + counts['errors']} failed, "
            f"{counts['skipped']} skipped" + ("" if cuda else " (no CUDA)")
        )
    return part


def part_bench(runner: Runner, quick: bool, cuda: bool, timeout: float) -> Part:
    part = Part("2. benchmark")
    device = "cuda" if cuda else "cpu"
    command = [sys.executable, "-m", "coursekit.bench", "--device", device]
    command += ["--quick", "--repeats", "1"] if quick else []
    start = time.perf_counter()
    code, out = runner.run(command, timeout)
    part.seconds = time.perf_counter() - start
    command_text = " ".join(["python", *command[1:]])
    first = out.find("machine:")  # the benchmark's own output, without warnings before it
    part.details = {
        "device": device,
        "command": command_text,
        "output": out[first:].strip() if first >= 0 else out,
    }
    # The rows of the first table (manual against autograd), up to its blank line.
    table = out[out.find("| benchmark | manual") :].split("\n\n")[0]
    ratios = [
        (m[1].strip(), float(m[2]))
        for m in re.finditer(r"^\| ([^|]+) \|[^|]+\|[^|]+\| ([\d.]+) \|", table, re.MULTILINE)
    ]
    part.details["ratios"] = ratios
    if code is None:
        part.status, part.summary = "timeout", f"stopped after {timeout:.0f} s"
    elif code != 0 or not ratios:
        part.status, part.summary = "fail", f"exit status {code}"
    else:
        part.status = "pass"
        worst = max(ratios, key=lambda r: r[1])
        row = worst[0].removesuffix(", fwd+bwd")
        part.summary = f"{len(ratios)} rows on {device}, largest ratio {worst[1]:.2f} ({row})"
    return part


def part_notebooks(
    runner: Runner, tmp: Path, notebooks: list[str], jobs: int, two_passes: bool, timeout: float
) -> Part:
    part = Part("3. notebooks")
    record, fit_log = tmp / "notebooks.json", tmp / "fits.jsonl"
    ipython_dir = tmp / "ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-record-fit.py").write_text(
        "from tools.nbrecord import install_fit_recorder\n\ninstall_fit_recorder()\n"
    )
    env = {
        "COURSEKIT_NBRECORD": str(record),
        "COURSEKIT_FIT_LOG": str(fit_log),
        "IPYTHONDIR": str(ipython_dir),
        # A few threads per kernel: several kernels share the cores.
        "OMP_NUM_THREADS": env_threads(jobs),
    }
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tools.nbrecord",
            "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg",
            "-q", "--tb=short", "--timeout=300", "--rootdir", str(ROOT),
            "-c", str(ROOT / "pyproject.toml")]  # fmt: skip
    if jobs > 1:
        base += ["-n", str(jobs), "--dist", "loadscope"]
    modes = ["--nbval-lax", "--nbval"] if two_passes else ["--nbval"]
    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    timed_out = False
    for mode in modes:
        left = timeout - (time.perf_counter() - start)
        code, _ = runner.run([*base, mode, *notebooks], left, **env)
        timed_out = timed_out or code is None
        this = json.loads(record.read_text()) if record.exists() else {}
        record.unlink(missing_ok=True)
        for path, entry in this.items():
            merged = results.setdefault(
                display_path(path), {"seconds": {}, "raised": [], "differs": [], "other": []}
            )
            merged["seconds"][mode.lstrip("-")] = round(entry["seconds"], 1)
            merged["cells"] = entry["cells"]
            merged["raised"] = sorted({*merged["raised"], *entry["raised"]})
            merged["other"] = sorted({*merged["other"], *entry["other"]})
            if mode == "--nbval":
                merged["differs"] = entry["differs"]
        if code is None:
            break
    part.seconds = time.perf_counter() - start
    fits: dict[str, list[dict[str, Any]]] = {}
    if fit_log.exists():
        for line in fit_log.read_text().splitlines():
            entry = json.loads(line)
            fits.setdefault(display_path(entry.pop("notebook")), []).append(entry)
    for path in notebooks:
        results.setdefault(
            path, {"seconds": {}, "raised": [], "differs": [], "other": [], "cells": 0}
        )
        results[path]["fits"] = fits.get(path, [])
    part.details = {"notebooks": results}
    not_run = [p for p, r in results.items() if not r["cells"]]
    broken = [p for p, r in results.items() if r["raised"] or r["other"]]
    differ = [p for p, r in results.items() if r["differs"]]
    ran = len(notebooks) - len(not_run)
    part.summary = (
        f"{ran - len(broken)}/{len(notebooks)} ran without error, "
        f"{len(differ)} with stored outputs that differ"
    )
    if timed_out:
        part.status, part.summary = "timeout", f"stopped after {timeout:.0f} s; " + part.summary
    else:
        part.status = "fail" if broken or not_run else "pass"
    return part


def display_path(path: str | Path) -> str:
    """A notebook path as pytest's node id or the command line gave it, relative to the
    repository when inside it (node ids are relative to the repository root)."""
    full = (ROOT / path).resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(full)


def env_threads(jobs: int) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return str(max(1, (cores or 1) // max(jobs, 1)))


def part_data_parallel(runner: Runner, cuda: bool, gpus: int, timeout: float) -> Part:
    part = Part("4. data-parallel")
    lesson_12 = sorted(ROOT.glob("notebooks/12_*.ipynb"))
    if importlib.util.find_spec("coursekit.distributed") is None:
        part.status = "skip"
        part.summary = "coursekit.distributed does not exist yet" + (
            "" if lesson_12 else " (no lesson 12)"
        )
        return part
    # gloo on the CPU; gloo with CUDA tensors (two processes may share one GPU); NCCL needs
    # a GPU per process.
    runs = [("cpu", "gloo")] + ([("cuda", "gloo")] if cuda else [])
    runs += [("cuda", "nccl")] if cuda and gpus >= 2 else []
    start = time.perf_counter()
    results = []
    failed = False
    share = timeout / (len(runs) + (1 if cuda else 0))
    for device, backend in runs:
        code, out = runner.run(
            [sys.executable, "-m", "tools.gpu_check", "--data-parallel", device, backend],
            share,
        )
        last = out.strip().splitlines()[-1] if out.strip() else ""
        results.append(f"{backend} on {device}: {last if code == 0 else f'failed ({last[:200]})'}")
        failed = failed or code != 0
    if cuda and gpus < 2:
        results.append("nccl skipped: one GPU (NCCL needs a GPU per process)")
    if cuda:  # the CPU run of the script is a CI test (tests/test_data_parallel_example.py)
        ok, line = run_torchrun_script(runner, share)
        results.append(line)
        failed = failed or not ok
    part.seconds = time.perf_counter() - start
    part.status = "fail" if failed else "pass"
    part.summary = "; ".join(results)
    return part


def run_torchrun_script(runner: Runner, timeout: float, epochs: int = 3) -> tuple[bool, str]:
    """``coursekit.examples.data_parallel`` alone and under torchrun on 2 processes: (the
    test accuracies agree, a summary). Devices follow the machine: one process trains on
    the GPU; two use NCCL with a GPU each, else gloo on the CPU."""
    script = ["-m", "coursekit.examples.data_parallel", "--epochs", str(epochs)]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    found = []
    for command in ([sys.executable, *script], [sys.executable, *torchrun, *script]):
        code, out = runner.run(command, timeout / 2)
        head = re.search(r"^(\d+ process(?:es)? \([^)]*\))", out, re.M)
        accuracy = re.search(r"test accuracy ([\d.]+%)", out)
        if code != 0 or head is None or accuracy is None:
            last = out.strip().splitlines()[-1][:200] if out.strip() else "no output"
            return False, f"torchrun script failed ({last})"
        found.append(f"{head.group(1)} {accuracy.group(1)}")
    same = found[0].rsplit(" ", 1)[1] == found[1].rsplit(" ", 1)[1]
    verdict = "the same test accuracy" if same else "MISMATCH in test accuracy"
    return same, f"torchrun script: {found[0]}, {found[1]}: {verdict}"


def _data_parallel_worker(rank: int, world_size: int, device: str) -> list[Any]:
    """One rank: half of a batch through a small MLP, gradients averaged over the ranks."""
    import torch

    from coursekit import distributed, nn

    dev = torch.device(device, rank % torch.cuda.device_count()) if device == "cuda" else device
    model = _data_parallel_model().to(dev)
    x, y = _data_parallel_batch()
    half = len(x) // world_size
    x, y = x[rank * half : (rank + 1) * half].to(dev), y[rank * half : (rank + 1) * half].to(dev)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    distributed.all_reduce_gradients(model.parameters())
    return [p.grad.cpu() for p in model.parameters()]


def _data_parallel_model() -> Any:
    """The same small float64 MLP in every process."""
    import torch

    from coursekit import nn

    g, d64 = torch.Generator().manual_seed(0), torch.float64
    return nn.Sequential(
        nn.Linear(6, 16, dtype=d64, generator=g),
        nn.Tanh(),
        nn.Linear(16, 3, dtype=d64, generator=g),
    )


def _data_parallel_batch() -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (8,), generator=g
    )


def run_data_parallel(device: str, backend: str) -> int:
    """2 processes, each on half the batch, against one process on the whole batch."""

    from coursekit import distributed, nn
    from tools.gpu_check import _data_parallel_worker as worker  # importable by the workers

    start = time.perf_counter()
    grads = distributed.launch(worker, nprocs=2, args=(device,), backend=backend)
    model = _data_parallel_model()
    x, y = _data_parallel_batch()
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    error = 0.0
    for rank_grads in grads:
        for g, p in zip(rank_grads, model.parameters(), strict=True):
            error = max(
                error, ((g - p.grad).abs().max() / p.grad.abs().max().clamp_min(1e-30)).item()
            )
    ok = error < 1e-10
    print(
        f"{'ok' if ok else 'MISMATCH'}: both ranks' averaged gradients match one process on the "
        f"whole batch (max rel. error {error:.1e}, {time.perf_counter() - start:.1f} s)"
    )
    return 0 if ok else 1


# ----------------------------------------------------------------------------- report
STATUS = {
    "pass": "pass",
    "fail": "**FAIL**",
    "skip": "skipped",
    "timeout": "**TIMEOUT**",
    "not run": "not run",
}


def write_report(
    out: Path, info: dict[str, Any], parts: list[Part], setup: str, total: float
) -> str:
    cuda = info.get("cuda")
    device = (
        f"{info.get('gpu')}, compute capability {info.get('capability')}, "
        f"{info.get('gpus')} GPU(s); CUDA {info.get('torch_cuda')}, cuDNN {info.get('cudnn')}"
        if cuda
        else "no CUDA: everything ran on the CPU"
    )
    lines = [
        "# GPU check of the course",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{total:.0f} s in all",
        f"- device: {device}",
    ]
    if info.get("nvidia_smi"):
        lines.append(f"- nvidia-smi: {info['nvidia_smi']}")
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    lines += [
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs; Python {info.get('python')}",
        f"- versions: {versions}",
        f"- set-up: {setup}",
    ]
    if info.get("missing"):
        lines.append(f"- missing modules: {', '.join(info['missing'])}")
    lines += ["", "| part | result | summary | seconds |", "|---|---|---|---:|"]
    for p in parts:
        lines.append(f"| {p.name} | {STATUS[p.status]} | {p.summary} | {p.seconds:.0f} |")

    for p in parts:
        lines += ["", f"## {p.name}", ""]
        if p.name.startswith("1.") and p.details.get("failed"):
            lines += ["Failed:", "", *(f"- `{f}`" for f in p.details["failed"])]
        elif p.name.startswith("1."):
            lines.append(p.summary or p.status)
        if p.name.startswith("2."):
            lines += [
                p.details.get("output") or p.summary,
                "",
                f"Command: `{p.details.get('command')}`",
            ]
        if p.name.startswith("3."):
            lines += [
                "Per notebook: seconds (per pass), cells that raised, cells whose stored "
                "output differs (nbval with tests/nbval_sanitize.cfg; reported, not failed), "
                "and each `fit()` run: device, dtype, epochs, seconds.",
                "",
                "| notebook | seconds | raised | outputs differ | training runs |",
                "|---|---:|---|---|---|",
            ]
            for path, r in sorted(p.details.get("notebooks", {}).items()):
                seconds = " + ".join(f"{s:.0f}" for s in r["seconds"].values()) or "not run"
                fits = (
                    "; ".join(
                        f"{f['device']} {f['dtype']} {f['epochs']} ep {f['seconds']:.2f} s"
                        for f in r.get("fits", [])
                    )
                    or "no fit()"
                )
                raised = ", ".join(r["raised"] + r["other"]) or "-"
                differs = ", ".join(r["differs"]) or "-"
                lines.append(f"| {path} | {seconds} | {raised} | {differs} | {fits} |")
        if p.name.startswith("4."):
            lines.append(p.summary)
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {"info": info, "parts": [vars(p) for p in parts], "seconds": total},
            indent=1,
            default=str,
        )
    )
    return text


def summary_line(info: dict[str, Any], parts: list[Part], out: Path, total: float) -> str:
    where = f"cuda ({info.get('gpu')})" if info.get("cuda") else "no CUDA (cpu)"
    pieces = [
        f"{p.name.split(' ', 1)[1]}: {p.status}" + (f" ({p.summary})" if p.summary else "")
        for p in parts
    ]
    return (
        f"gpu check on {where}: "
        + "; ".join(pieces)
        + f". {total:.0f} s, report {out / 'report.md'}"
    )


# ------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=".gpu-check", help="folder for report.md (default .gpu-check)"
    )
    parser.add_argument("--wheels", default=None, help="install the wheels of this folder first")
    parser.add_argument("--quick", action="store_true", help="a small subset, for the tests")
    parser.add_argument(
        "--notebooks", nargs="*", default=None, help="default: notebooks/ and solutions/"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks in parallel (default: cores / 2, at most 8)",
    )
    parser.add_argument("--two-passes", action="store_true", help="nbval-lax, then nbval")
    parser.add_argument(
        "--budget", type=float, default=450.0, help="seconds for all parts (default 450)"
    )
    parser.add_argument(
        "--data-parallel", nargs=2, metavar=("DEVICE", "BACKEND"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # coursekit and tools, without an install
    if args.data_parallel:
        return run_data_parallel(*args.data_parallel)

    start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "check.log"
    log.write_text("")
    tmp = Path(tempfile.mkdtemp(prefix="coursekit-gpu-check-"))
    env = dict(os.environ)
    paths = [str(ROOT)]
    setup = "nothing to install"
    wheels = Path(args.wheels) if args.wheels else None
    if wheels is not None and wheels.is_dir() and any(wheels.glob("*.whl")):
        if probe(env | {"PYTHONPATH": os.pathsep.join([*paths, env.get("PYTHONPATH", "")])}).get(
            "missing"
        ):
            site = Path(tempfile.gettempdir()) / "coursekit-gpu-site"
            setup = install_wheels(wheels, site, log)
            paths.insert(0, str(site))
        else:
            setup = f"every module needed is already there; {wheels} not used"
    env["PYTHONPATH"] = os.pathsep.join(p for p in [*paths, env.get("PYTHONPATH", "")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("COURSEKIT_DEVICE", None)  # the notebooks pick the GPU themselves
    info = probe(env)
    cuda = bool(info.get("cuda"))
    runner = Runner(log, env)

    notebooks = [display_path(p) for p in args.notebooks] if args.notebooks else None
    if notebooks is None:
        notebooks = (
            list(QUICK_NOTEBOOKS)
            if args.quick
            else sorted(
                str(p.relative_to(ROOT))
                for d in ("notebooks", "solutions")
                for p in (ROOT / d).glob("*.ipynb")
            )
        )
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    jobs = args.jobs or max(1, min(8, cores // 2, len(notebooks)))

    def left(reserve: float = 0.0) -> float:
        return args.budget - (time.perf_counter() - start) - reserve

    parts: list[Part] = []
    if info.get("missing"):
        parts.append(Part("0. set-up", "fail", "missing: " + ", ".join(info["missing"])))
    parts.append(part_gpu_tests(runner, tmp, args.quick, cuda, min(150.0, left(240))))
    parts.append(part_bench(runner, args.quick, cuda, min(120.0, left(180))))
    parts.append(part_notebooks(runner, tmp, notebooks, jobs, args.two_passes, left(40)))
    parts.append(part_data_parallel(runner, cuda, int(info.get("gpus") or 0), max(left(), 20.0)))

    total = time.perf_counter() - start
    write_report(out, info, parts, setup, total)
    shutil.rmtree(tmp, ignore_errors=True)
    print(summary_line(info, parts, out, total))
    return 1 if any(p.status in ("fail", "timeout") for p in parts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
