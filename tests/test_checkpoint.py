"""coursekit.checkpoint: exact bytes kept for backward, and activation checkpointing."""

from __future__ import annotations

import pytest
import torch

from coursekit import nn
from coursekit.checkpoint import (
    Checkpoint,
    checkpoint_sequential,
    measure_peak,
    saved_bytes,
    saved_bytes_per_module,
    torch_saved_bytes,
)

D64 = torch.float64


def deep_mlp(depth: int, width: int, seed: int = 0, dropout: bool = False, bn: bool = False):
    g = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(5, width, dtype=D64, generator=g), nn.Tanh()]
    for _ in range(depth):
        layers += [nn.Linear(width, width, dtype=D64, generator=g), nn.ReLU()]
        if bn:
            layers.append(nn.BatchNorm1d(width, dtype=D64))
        if dropout:
            layers.append(nn.Dropout(0.3, generator=torch.Generator().manual_seed(seed + 1)))
    layers.append(nn.Linear(width, 3, dtype=D64, generator=g))
    return nn.Sequential(*layers)


def grads_of(model, x, y, input_grad=False):
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    model.zero_grad()
    loss = loss_fn(model(x), y)
    dx = model.backward(loss_fn.backward(), input_grad=input_grad)
    return loss, [p.grad.clone() for p in model.parameters()], dx


@pytest.mark.parametrize("segments", [1, 2, 3, 7])
@pytest.mark.parametrize(("dropout", "bn"), [(False, False), (True, False), (False, True)])
def test_checkpointed_gradients_equal_plain_gradients_exactly(segments, dropout, bn):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 5, generator=g, dtype=D64), torch.randint(3, (9,), generator=g)
    plain = deep_mlp(3, 6, dropout=dropout, bn=bn)
    ckpt_model = deep_mlp(3, 6, dropout=dropout, bn=bn)
    ckpt = checkpoint_sequential(ckpt_model, segments)
    loss_a, grads_a, dx_a = grads_of(plain, x, y, input_grad=True)
    loss_b, grads_b, dx_b = grads_of(ckpt, x, y, input_grad=True)
    assert loss_a.item() == loss_b.item()
    assert len(grads_a) == len(grads_b) == len(ckpt.parameters())
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(dx_a, dx_b)
    # running statistics are updated once per step, as without checkpointing
    for (_, a), (_, b) in zip(plain.named_buffers(), ckpt_model.named_buffers(), strict=True):
        assert torch.equal(a, b)


def test_checkpointed_gradients_match_autograd():
    g = torch.Generator().manual_seed(2)
    model = deep_mlp(2, 4)
    x, y = torch.randn(5, 5, generator=g, dtype=D64), torch.randint(3, (5,), generator=g)
    _, grads, _ = grads_of(checkpoint_sequential(model, 2), x, y)
    leaves = [p.data.clone().requires_grad_(True) for p in model.parameters()]
    h = torch.tanh(x @ leaves[0] + leaves[1])
    for k in (2, 4):
        h = torch.relu(h @ leaves[k] + leaves[k + 1])
    loss = torch.nn.functional.cross_entropy(h @ leaves[6] + leaves[7], y)
    expected = torch.autograd.grad(loss, leaves)
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_checkpoint_keeps_only_its_input_and_the_rng_does_not_move():
    model = deep_mlp(2, 8, dropout=True)
    x = torch.randn(4, 5, dtype=D64)
    ck = Checkpoint(model)
    state = torch.get_rng_state()
    out = ck(x)
    assert all(m._cache is None for m in model.modules())
    assert saved_bytes(ck) == x.untyped_storage().nbytes()
    ck.backward(torch.ones_like(out))
    assert all(m._cache is None for m in model.modules())
    assert torch.equal(torch.get_rng_state(), state)


def test_saved_bytes_counts_each_storage_once_and_no_parameters():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 11, generator=g), nn.ReLU(), nn.Linear(11, 3, generator=g))
    x = torch.randn(13, 7)
    model(x)
    rows = saved_bytes_per_module(model)
    by_name = {name: n for name, _, n in rows}
    assert by_name["0"] == 13 * 7 * 4  # x (w is a parameter)
    assert by_name["1"] == 13 * 11 * 4  # the ReLU's output...
    assert by_name["2"] == 0  # ...is the next Linear's input: counted once
    assert saved_bytes(model) == 13 * 7 * 4 + 13 * 11 * 4
    model.to(torch.float64)
    model(x.double())
    assert saved_bytes(model) == 2 * (13 * 7 * 4 + 13 * 11 * 4)


def test_coursekit_and_torch_keep_the_same_activations():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 9, generator=g), nn.ReLU(), nn.Linear(9, 4, generator=g))
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    x, y = torch.randn(8, 6), torch.randint(4, (8,))
    loss_fn(model(x), y)
    ours = saved_bytes(model) + saved_bytes(loss_fn)
    leaves = [p.data.clone().requires_grad_(True) for p in model.parameters()]

    def torch_model(x):
        h = torch.relu(torch.addmm(leaves[1], x, leaves[0]))
        return torch.nn.functional.cross_entropy(torch.addmm(leaves[3], h, leaves[2]), y)

    theirs, rows = torch_saved_bytes(torch_model, x, exclude=tuple(leaves))
    # torch also keeps nll_loss's total_weight, one float32 number
    assert theirs == ours + 4
    assert any(name == "ReluBackward0" for name, _, _ in rows)


def test_sqrt_segments_use_less_memory_than_plain():
    n, one = 16, 64 * 32 * 8  # 16 layers; one activation (64, 32) in float64
    x = torch.randn(64, 32, dtype=D64)
    peaks = {}
    for k in (1, 2, 4, 8, 16):
        g = torch.Generator().manual_seed(0)
        layers = [nn.Linear(32, 32, dtype=D64, generator=g) for _ in range(n)]
        model = checkpoint_sequential(layers, k) if k > 1 else nn.Sequential(*layers)
        with measure_peak(model) as meter:
            out = model(x)
            model.backward(torch.ones_like(out))
        peaks[k] = meter.peak
    # k segment inputs are kept; a segment's own first input is one of them, so
    # recomputing a segment of n/k layers adds n/k - 1 more
    assert peaks == {k: (k + n // k - 1) * one for k in (1, 2, 4, 8, 16)}
    assert min(peaks, key=peaks.get) == 4  # sqrt(16)


def test_checkpoint_sequential_rejects_bad_segments():
    model = deep_mlp(1, 3)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sequential(model, 0)
    with pytest.raises(ValueError, match="at most one segment per layer"):
        checkpoint_sequential(model, len(model) + 1)
    with pytest.raises(TypeError, match="Module"):
        Checkpoint(lambda x: x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_checkpoint_on_cuda():
    model = deep_mlp(3, 8, dropout=True).to("cuda")
    plain = deep_mlp(3, 8, dropout=True).to("cuda")
    for layer in list(model) + list(plain):
        if isinstance(layer, nn.Dropout):
            layer.generator = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(6, 5, dtype=D64, device="cuda")
    y = torch.randint(3, (6,), device="cuda")
    _, a, _ = grads_of(plain, x, y)
    _, b, _ = grads_of(checkpoint_sequential(model, 3), x, y)
    for ga, gb in zip(a, b, strict=True):
        assert torch.equal(ga, gb)
