"""coursekit.amp.LossScaler against torch.amp.GradScaler on scripted overflow sequences."""

from __future__ import annotations

import pytest
import torch

from coursekit import nn, optim
from coursekit.amp import LossScaler

# 1 = the gradients of that step hold an inf (or a NaN), 0 = clean
SEQUENCES = [
    [0] * 7,
    [1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1],
    [1] * 5 + [0] * 8,
]


@pytest.mark.parametrize("events", SEQUENCES)
@pytest.mark.parametrize("interval", [1, 3, 2000])
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -float("inf")])
def test_scaler_matches_torch_grad_scaler(events, interval, bad):
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(4, 3, generator=g)
    ours_p = nn.Parameter(w0.clone())
    theirs_p = torch.nn.Parameter(w0.clone())
    ours_opt = optim.SGD([ours_p], lr=0.1)
    theirs_opt = torch.optim.SGD([theirs_p], lr=0.1)
    ours = LossScaler(growth_interval=interval)
    theirs = torch.amp.GradScaler("cpu", growth_interval=interval)
    theirs.scale(torch.ones(()))  # creates its scale tensor
    for step, overflow in enumerate(events):
        grad = torch.randn(4, 3, generator=g) * 1e-3
        assert ours.get_scale() == theirs.get_scale(), step
        scaled = grad * ours.get_scale()
        if overflow:
            scaled[step % 4, step % 3] = bad
        ours_p.grad = scaled.clone()
        theirs_p.grad = scaled.clone()
        took = ours.step(ours_opt, [ours_p])
        theirs.step(theirs_opt)
        ours.update()
        theirs.update()
        assert took == (not overflow)
        assert torch.equal(ours_p.data, theirs_p.data), step
        assert ours.get_scale() == theirs.get_scale(), step
        assert ours.good_steps == theirs.state_dict()["_growth_tracker"], step
    assert ours.skipped == sum(events)


def test_defaults_are_torch_s():
    ours, theirs = LossScaler(), torch.amp.GradScaler("cpu")
    assert ours.get_scale() == theirs.get_scale() == 2.0**16
    assert ours.growth_interval == theirs.get_growth_interval() == 2000
    assert ours.growth_factor == theirs.get_growth_factor() == 2.0
    assert ours.backoff_factor == theirs.get_backoff_factor() == 0.5


def test_unscale_divides_and_scale_multiplies():
    s = LossScaler(init_scale=8.0)
    assert s.scale(1.0) == 8.0
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([8.0, -16.0])
    assert s.unscale_([p]) is False
    assert p.grad.tolist() == [1.0, -2.0]
    with pytest.raises(RuntimeError, match="already"):
        s.unscale_([p])
    s.update()
    with pytest.raises(RuntimeError, match="first"):
        s.update()


def test_small_gradients_survive_float16_only_when_scaled():
    g = torch.full((3,), 1e-8)
    assert g.half().float().abs().max().item() == 0.0  # below fp16's smallest subnormal 6e-8
    s = LossScaler()
    back = (g * s.get_scale()).half().float() / s.get_scale()
    assert torch.allclose(back, g, rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"init_scale": 0.0}, "init_scale"),
        ({"growth_factor": 1.0}, "growth_factor"),
        ({"backoff_factor": 1.0}, "backoff_factor"),
        ({"growth_interval": 0}, "growth_interval"),
    ],
)
def test_bad_settings_raise(kwargs, words):
    with pytest.raises(ValueError, match=words):
        LossScaler(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_scaler_matches_torch_grad_scaler_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    ours_p = nn.Parameter(torch.zeros(5, device="cuda"))
    theirs_p = torch.nn.Parameter(torch.zeros(5, device="cuda"))
    ours_opt = optim.SGD([ours_p], lr=0.1)
    theirs_opt = torch.optim.SGD([theirs_p], lr=0.1)
    ours = LossScaler(growth_interval=2)
    theirs = torch.amp.GradScaler("cuda", growth_interval=2)
    theirs.scale(torch.ones((), device="cuda"))
    for overflow in [0, 0, 1, 0, 0, 0, 1, 1, 0]:
        scaled = torch.randn(5, generator=g, device="cuda") * ours.get_scale()
        if overflow:
            scaled[2] = float("nan")
        ours_p.grad, theirs_p.grad = scaled.clone(), scaled.clone()
        ours.step(ours_opt, [ours_p])
        theirs.step(theirs_opt)
        ours.update()
        theirs.update()
        assert torch.equal(ours_p.data, theirs_p.data)
        assert ours.get_scale() == theirs.get_scale()
