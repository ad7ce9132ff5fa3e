"""Tests of coursekit.rumelhart1986 (the 1986 experiments) and coursekit.viz.hinton.

The gradients are compared with torch.autograd in float64; training many seeds at once is
compared with training them one at a time; and the key facts of lesson 13's tables are checked
at fewer seeds than the notebook uses.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from coursekit import rumelhart1986 as R
from coursekit.viz.hinton import hinton_diagram

DTYPE = torch.float64


def _autograd_grads(weights: dict, X: torch.Tensor, d: torch.Tensor) -> dict:
    """dE/dw by torch.autograd, on leaf copies of the weights."""
    leaves = {k: w.detach().clone().requires_grad_(True) for k, w in weights.items()}
    R.error(leaves, X, d).sum().backward()
    return {k: w.grad for k, w in leaves.items()}


@pytest.mark.parametrize(
    "net, patterns, seeds",
    [
        (R.Net(5, 3, 4), 7, [0, 1]),  # every size different
        (R.Net(3, 1, 2, direct=True), 5, [4, 5, 6]),  # with direct input -> output weights
        (R.Net(2, 2, 1), 4, [7]),
    ],
)
def test_gradients_match_autograd(net, patterns, seeds):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(patterns, net.inputs, generator=g, dtype=DTYPE)
    d = torch.rand(patterns, net.outputs, generator=g, dtype=DTYPE)
    weights = R.init_weights(net, seeds, r=2.0)  # large weights: sigmoids far from linear
    ours = R.gradients(weights, X, d)
    ref = _autograd_grads(weights, X, d)
    assert ours.keys() == ref.keys()
    for name in ref:
        assert ours[name].shape == ref[name].shape == weights[name].shape, name
        err = ((ours[name] - ref[name]).abs().max() / ref[name].abs().max()).item()
        assert err < 1e-12, f"{name}: relative error {err:.2e}"


def test_gradients_use_no_autograd():
    net = R.Net(2, 2, 1)
    X, d = R.xor_patterns()
    weights = R.init_weights(net, [0], r=0.3)
    with torch.no_grad():
        grads = R.gradients(weights, X, d)
    assert all(not g.requires_grad for g in grads.values())
    assert torch.allclose(grads["W1"], _autograd_grads(weights, X, d)["W1"], rtol=1e-12, atol=0)


def test_error_is_half_the_summed_square():
    X, d = R.xor_patterns()
    weights = R.init_weights(R.Net(2, 2, 1), [0, 1], r=0.3)
    _, y = R.forward(weights, X)
    for s in range(2):
        expected = 0.5 * sum((y[s, p, 0].item() - d[p, 0].item()) ** 2 for p in range(4))
        assert R.error(weights, X, d)[s].item() == pytest.approx(expected, rel=1e-14)


def test_many_seeds_at_once_equal_one_at_a_time():
    X, d = R.xor_patterns()
    net = R.Net(2, 1, 1, direct=True)
    settings = dict(eps=0.5, alpha=0.9, r=0.3, max_sweeps=400)
    together = R.train(net, X, d, [3, 4, 5, 14], **settings)
    for i, seed in enumerate(together.seeds):
        alone = R.train(net, X, d, [seed], **settings)
        assert alone.sweeps[0].item() == together.sweeps[i].item()
        assert alone.converged[0].item() == together.converged[i].item()
        for name, w in alone.weights.items():
            torch.testing.assert_close(w[0], together.weights[name][i], rtol=1e-10, atol=1e-12)


def test_start_continues_from_given_weights():
    X, y = R.xor_patterns()
    net = R.Net(2, 2, 1)
    settings = dict(eps=0.5, alpha=0.9, r=0.3, max_sweeps=30)
    fresh = R.train(net, X, y, [1, 2], **settings)
    same = R.train(net, X, y, [1, 2], start=R.init_weights(net, [1, 2], r=0.3), **settings)
    for name, w in fresh.weights.items():
        assert torch.equal(w, same.weights[name])
    with pytest.raises(ValueError, match="start"):
        R.train(net, X, y, [1], start=R.init_weights(net, [1, 2], r=0.3), **settings)


def test_one_sweep_is_a_momentum_step_on_the_summed_gradient():
    X, d = R.symmetry_patterns()
    net = R.Net(6, 2, 1)
    start = R.init_weights(net, [0], r=0.3)
    grads = R.gradients(start, X, d)
    two = R.train(net, X, d, [0], eps=0.1, alpha=0.9, r=0.3, max_sweeps=1)
    for name in start:
        torch.testing.assert_close(two.weights[name], start[name] - 0.1 * grads[name])


def test_patterns():
    X, d = R.symmetry_patterns()
    assert X.shape == (64, 6) and d.shape == (64, 1) and d.sum().item() == 8
    assert torch.equal(d[:, 0].bool(), (X == X.flip(1)).all(dim=1))
    X, d = R.encoder_patterns(8)
    assert torch.equal(X, torch.eye(8, dtype=DTYPE)) and torch.equal(X, d)
    X, d = R.xor_patterns()
    assert d[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0]


def test_bad_input_raises():
    weights = R.init_weights(R.Net(2, 2, 1), [0], r=0.3)
    with pytest.raises(ValueError, match="X must be"):
        R.forward(weights, torch.zeros(4, 3, dtype=DTYPE))
    with pytest.raises(ValueError, match="y must be"):
        R.error(weights, torch.zeros(4, 2, dtype=DTYPE), torch.zeros(4, 2, dtype=DTYPE))
    with pytest.raises(ValueError, match="seed dimension"):
        R.forward({k: w[0] for k, w in weights.items()}, torch.zeros(4, 2, dtype=DTYPE))
    with pytest.raises(ValueError, match="seeds"):
        R.init_weights(R.Net(2, 2, 1), [], r=0.3)
    with pytest.raises(ValueError, match="eps"):
        R.train(R.Net(2, 2, 1), *R.xor_patterns(), [0], eps=-1, alpha=0.9, r=0.3, max_sweeps=1)


def test_summary_counts_successes_and_their_quartiles():
    X, d = R.xor_patterns()
    result = R.train(R.Net(2, 2, 1), X, d, [0, 1], eps=0.5, alpha=0.9, r=0.3, max_sweeps=1)
    result.converged = torch.tensor([True, True, True, False, True])
    result.sweeps = torch.tensor([100, 200, 300, 9, 400])
    result.seeds = [0, 1, 2, 3, 4]
    s = R.summarize(result)
    assert (s.seeds, s.successes, s.rate) == (5, 4, 0.8)
    assert (s.q1, s.median, s.q3) == (175.0, 250.0, 325.0)
    assert "80%" in R.format_table({"XOR": (result, "558")})


# ----------------------------------------------------------------------------- the tables' facts


def test_xor_learns_from_most_starts():
    X, d = R.xor_patterns()
    for net in (R.Net(2, 2, 1), R.Net(2, 1, 1, direct=True)):
        result = R.train(net, X, d, range(20), eps=0.5, alpha=0.9, r=0.3, max_sweeps=3000)
        assert R.summarize(result).rate >= 0.85, str(net)  # notebook: 49 and 48 of 50
        _, y = R.forward(result.weights, X)
        learned = result.converged
        assert ((y[learned] - d).abs() < 0.1).all()


def test_encoder_codes_are_distinct():
    X, d = R.encoder_patterns()
    result = R.train(R.Net(8, 3, 8), X, d, range(10), eps=0.25, alpha=0.9, r=0.3, max_sweeps=3000)
    assert result.converged.sum().item() >= 8
    codes = R.hidden_codes(result.weights, X)[result.converged]
    gaps = torch.cdist(codes, codes) + 10 * torch.eye(8, dtype=DTYPE)  # ignore each code's own
    assert (gaps.amin(dim=(1, 2)) > 0.2).all(), "two patterns share a hidden code"


def test_symmetry_nets_are_antisymmetric_and_1_2_4():
    X, d = R.symmetry_patterns()
    result = R.train(R.Net(6, 2, 1), X, d, range(12), eps=0.1, alpha=0.9, r=0.3, max_sweeps=3000)
    learned = result.converged
    assert learned.sum().item() >= 6
    W1 = result.weights["W1"][learned]
    assert (R.antisymmetry(W1) < 0.01).all()  # mirror weights equal and opposite
    _, y = R.forward(result.one(int(learned.nonzero()[0])), X)
    assert torch.equal((y[0] > 0.5).to(DTYPE), d)  # all 64 patterns right
    ratios = R.pair_ratios(W1)  # (n, 2, 3), sorted sizes over the smallest
    family_124 = ((ratios - torch.tensor([1.0, 2.0, 4.0], dtype=DTYPE)).abs() < 0.1).all(dim=2)
    assert family_124.any()
    assert (family_124.all(dim=1) == family_124.any(dim=1)).all()  # both hidden units agree


def test_distinct_codes_and_ratios_on_hand_made_weights():
    codes = torch.tensor([[[0.1, 0.9], [0.9, 0.1]], [[0.1, 0.9], [0.2, 0.8]]], dtype=DTYPE)
    assert R.distinct_codes(codes).tolist() == [True, False]
    W1 = torch.tensor([[1.0, -2.0, 4.0, -4.0, 2.0, -1.0]], dtype=DTYPE).T[None]  # (1, 6, 1)
    assert R.antisymmetry(W1).item() == 0.0
    assert R.pair_ratios(W1)[0, 0].tolist() == [1.0, 2.0, 4.0]
    W1[0, 0, 0] = 1.5
    assert R.antisymmetry(W1).item() == pytest.approx(0.5 / 4)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_train_keeps_device_and_dtype(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA")
    X, d = R.xor_patterns()
    result = R.train(
        R.Net(2, 2, 1),
        X,
        d,
        [0, 1],
        eps=0.5,
        alpha=0.9,
        r=0.3,
        max_sweeps=50,
        device=device,
        dtype=torch.float32,
    )
    assert (
        result.weights["W1"].device.type == device and result.weights["W1"].dtype == torch.float32
    )
    cpu = R.train(R.Net(2, 2, 1), X, d, [0, 1], eps=0.5, alpha=0.9, r=0.3, max_sweeps=50)
    torch.testing.assert_close(
        result.weights["W1"].cpu().double(), cpu.weights["W1"], rtol=1e-4, atol=1e-5
    )


# ----------------------------------------------------------------------------- Hinton diagram


def test_hinton_diagram_draws_one_square_per_weight():
    plt.switch_backend("Agg")
    w = torch.tensor([[1.0, -4.0, 0.0], [2.0, -1.0, 0.25]])
    ax = hinton_diagram(w, col_labels=["a", "b", "c"], annotate=True)
    squares = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(squares) == 6
    areas = np.array([p.get_width() * p.get_height() for p in squares]).reshape(2, 3)
    np.testing.assert_allclose(areas, 0.8**2 * np.abs(w.numpy()) / 4.0)  # area ~ |w|
    colors = [p.get_facecolor()[:3] for p in squares]
    assert colors[0] == (1.0, 1.0, 1.0) and colors[1] == (0.0, 0.0, 0.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    plt.close("all")


def test_hinton_diagram_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        hinton_diagram(torch.zeros(3))
    with pytest.raises(ValueError, match="row_labels"):
        hinton_diagram(torch.ones(2, 2), row_labels=["one"])
