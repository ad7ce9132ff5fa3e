"""Tests of coursekit.bench: it runs, prints its table, and compares equal computations.

No timing is asserted: the machine's speed and load are not under test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coursekit import bench
from coursekit.scalar import topological_order

NUMBER = r"([\d.e+-]+)"
# | name | manual (ms) | autograd (ms) | manual / autograd | max rel. error |
ROW = re.compile(rf"^\| ([^|]+) \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \|$")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine, threads waiting for each other crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_command_line_prints_the_table_with_ratios():
    command = [sys.executable, "-m", "coursekit.bench", "--quick", "--repeats", "1"]
    result = subprocess.run(
        [*command, "--device", "cpu", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "machine: cpu" in text and "1 threads" in text and f"torch {torch.__version__}" in text
    rows = [m for line in text.splitlines() if (m := ROW.match(line))]
    kinds = [r[1].split()[0] for r in rows]
    assert kinds[0] == "MLP"
    assert kinds.count("conv2d") == len(bench.QUICK_CONV_SHAPES) >= 2
    assert kinds.count("maxpool2d") == len(bench.QUICK_POOL_SHAPES) >= 2
    later = kinds.index("attention")
    assert kinds[later : later + 3] == ["attention", "tape", "GPT"]
    for r in rows:
        manual, autograd, ratio, error = (float(r[i]) for i in range(2, 6))
        assert ratio > 0
        assert ratio == pytest.approx(manual / autograd, rel=0.05, abs=0.01)
        assert error < 1e-4  # both variants computed the same float32 gradients
    assert re.search(r"scalar Value\.backward\(\).*\| [\d,]+ \|$", text, re.MULTILINE)
    # (d): coursekit | micrograd | ratio | error, present exactly when micrograd is installed
    numbers = rf"\| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \|$"
    against = re.search(rf"^\| Value\.backward\(\) vs micrograd[^|]+{numbers}", text, re.MULTILINE)
    assert (against is not None) == (bench.MicrogradValue is not None)
    if against:  # times are printed to 0.1 ms: the ratio agrees with them up to that rounding
        ours, theirs, ratio, error = (float(against[i]) for i in range(1, 5))
        assert ratio == pytest.approx(ours / theirs, rel=0.15, abs=0.1) and error < 1e-12


def test_run_benchmarks_compares_equal_computations(one_thread):
    results = bench.run_benchmarks("cpu", repeats=1, quick=True, dtype=torch.float64)
    mlp = results[0]
    (scalar,) = [r for r in results if r.nodes is not None and r.micrograd_s is None]
    compared = [r for r in results if r.autograd_s is not None]
    names = [r.name.split()[0] for r in compared]
    assert names == ["MLP", "conv2d", "conv2d", *["maxpool2d"] * 2, "attention", "tape", "GPT"]
    for r in compared:
        assert r.max_rel_error < 1e-12, r.name  # float64: the same math
    assert mlp.ratio == mlp.manual_s / mlp.autograd_s
    assert scalar.autograd_s is None and scalar.nodes > 1000 and scalar.nodes_per_second > 0
    table = bench.format_table(results)
    assert table.count("\n| MLP") == 1 and "| scalar engine |" in table


def test_random_expression_is_reproducible_and_deep():
    a, b = bench.random_expression(500, seed=3), bench.random_expression(500, seed=3)
    assert a.data == b.data
    nodes = topological_order(a)
    assert len(nodes) > 100
    assert {node._op for node in nodes} >= {"+", "-", "*", "tanh", "sigmoid", "relu"}


def test_conv_shapes_cover_strides_paddings_and_kernels():
    """Strides 1 and 2, paddings 0-2, kernels 3 and 5, 3-channel input, batches 8-16."""
    shapes = bench.CONV_SHAPES
    assert {s.stride for s in shapes} == {1, 2} and {s.padding for s in shapes} == {0, 1, 2}
    assert {s.w[2] for s in shapes} == {3, 5}
    assert any(s.x[1] == 3 and 8 <= s.x[0] <= 16 for s in shapes)
    for s in shapes:
        assert s.w[1] == s.x[1], s


def test_time_interleaved_alternates_the_variants():
    calls = []
    bench.time_interleaved(
        lambda: calls.append("a"), lambda: calls.append("b"), repeats=4, device=torch.device("cpu")
    )
    assert calls.count("a") > 4 and calls.count("b") > 4
    # every repetition times both, so neither runs all of its repetitions first
    first_b, last_a = calls.index("b"), len(calls) - 1 - calls[::-1].index("a")
    assert first_b < last_a


def test_bad_repeats_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--repeats", "0"])
    assert exit_info.value.code == 2


def test_mlp_graph_is_the_same_with_either_engine():
    micrograd = pytest.importorskip("micrograd.engine")
    ours, our_leaves = bench.mlp_graph(bench.Value, width=5, depth=3, seed=4)
    theirs, their_leaves = bench.mlp_graph(micrograd.Value, width=5, depth=3, seed=4)
    assert [leaf.data for leaf in our_leaves] == [leaf.data for leaf in their_leaves]
    assert ours.data == pytest.approx(theirs.data, rel=1e-14)
    assert {node._op for node in topological_order(ours)} == {"", "+", "*", "relu"}


def test_micrograd_row_compares_equal_gradients():
    pytest.importorskip("micrograd")
    result = bench.bench_micrograd(repeats=2, quick=True)
    assert result.nodes > 1000 and result.autograd_s is None
    assert result.max_rel_error < 1e-12  # the same gradients, up to the order of the sums
    assert result.micrograd_ratio == result.manual_s / result.micrograd_s
    table = bench.format_table([result])
    assert "| scalar engine vs micrograd |" in table and "| scalar engine |" not in table


def test_micrograd_row_is_skipped_without_micrograd(monkeypatch):
    monkeypatch.setattr(bench, "MicrogradValue", None)  # as if micrograd were not installed
    assert bench.bench_micrograd(repeats=1, quick=True) is None
    results = bench.run_benchmarks("cpu", repeats=1, quick=True)
    assert all(r.micrograd_s is None for r in results)
    assert "micrograd" not in bench.format_table(results)
