"""coursekit.optim: every update rule and schedule against torch.optim, step by step."""

from __future__ import annotations

import math

import pytest
import torch

import coursekit.nn as nn
from coursekit import optim
from coursekit.nn import Parameter

D64 = torch.float64
SHAPES = [(3, 4), (5,), (2, 3, 2)]


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs().clamp_min(1e-3)).max().item()


def make_params(device: str = "cpu") -> tuple[list[Parameter], list[torch.Tensor]]:
    """The same starting values as coursekit Parameters and as torch leaf tensors."""
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(s, dtype=D64, generator=generator).to(device) for s in SHAPES]
    ours = [Parameter(t.clone()) for t in start]
    theirs = [t.clone().requires_grad_() for t in start]
    return ours, theirs


def gradient(p: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A gradient that depends on where the parameter is (of 0.5 * p^2, plus noise),
    so that any difference in an update would grow over the steps."""
    return 0.5 * p + noise


def run_side_by_side(make_ours, make_theirs, steps=50, make_schedules=None, device="cpu"):
    ours, theirs = make_params(device)
    opt, opt_ref = make_ours(ours), make_theirs(theirs)
    sched, sched_ref = make_schedules(opt, opt_ref) if make_schedules else (None, None)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        for p, p_ref in zip(ours, theirs, strict=True):
            noise = torch.randn(p.shape, dtype=D64, generator=generator).to(device)
            p.grad = gradient(p.data, noise)
            p_ref.grad = gradient(p_ref.detach(), noise)
        opt.step()
        opt_ref.step()
        if sched is not None:
            sched.step()
            sched_ref.step()
            assert sched.get_last_lr()[0] == pytest.approx(sched_ref.get_last_lr()[0], rel=1e-12)
        for p, p_ref in zip(ours, theirs, strict=True):
            assert max_rel_diff(p.data, p_ref.detach()) < 1e-10, f"step {step}"
    return ours, theirs


SGD_SETTINGS = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "weight_decay": {"lr": 0.1, "weight_decay": 0.05},
    "dampening": {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
    "everything": {"lr": 0.03, "momentum": 0.7, "nesterov": True, "weight_decay": 0.01},
}


@pytest.mark.parametrize("name", SGD_SETTINGS)
def test_sgd_matches_torch(name):
    kw = SGD_SETTINGS[name]
    run_side_by_side(lambda p: optim.SGD(p, **kw), lambda p: torch.optim.SGD(p, **kw))


RMSPROP_SETTINGS = {
    "default": {},
    "momentum": {"lr": 0.005, "momentum": 0.9},
    "weight_decay_alpha": {"lr": 0.02, "alpha": 0.9, "weight_decay": 0.1, "eps": 1e-6},
}


@pytest.mark.parametrize("name", RMSPROP_SETTINGS)
def test_rmsprop_matches_torch(name):
    kw = RMSPROP_SETTINGS[name]
    run_side_by_side(lambda p: optim.RMSprop(p, **kw), lambda p: torch.optim.RMSprop(p, **kw))


ADAM_SETTINGS = {
    "default": {},
    "l2_weight_decay": {"lr": 0.01, "weight_decay": 0.1},
    "decoupled": {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "betas_eps": {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6},
}


@pytest.mark.parametrize("name", ADAM_SETTINGS)
def test_adam_matches_torch(name):
    kw = ADAM_SETTINGS[name]
    run_side_by_side(lambda p: optim.Adam(p, **kw), lambda p: torch.optim.Adam(p, **kw))


@pytest.mark.parametrize("kw", [{}, {"lr": 0.02, "weight_decay": 0.3, "betas": (0.85, 0.99)}])
def test_adamw_matches_torch(kw):
    run_side_by_side(lambda p: optim.AdamW(p, **kw), lambda p: torch.optim.AdamW(p, **kw))


def test_adam_first_step_has_size_lr():
    """Bias correction: at t = 1, m_hat = g and v_hat = g^2, so the step is lr * sign(g)."""
    p = Parameter(torch.zeros(4, dtype=D64))
    p.grad = torch.tensor([1e-3, -2.0, 50.0, -0.1], dtype=D64)
    optim.Adam([p], lr=0.1, eps=0.0).step()
    assert torch.allclose(p.data, -0.1 * torch.sign(p.grad))


def test_step_lr_matches_torch():
    run_side_by_side(
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        make_schedules=lambda o, r: (
            optim.StepLR(o, step_size=7, gamma=0.5),
            torch.optim.lr_scheduler.StepLR(r, step_size=7, gamma=0.5),
        ),
    )


def test_cosine_annealing_matches_torch_past_t_max():
    run_side_by_side(
        lambda p: optim.Adam(p, lr=0.05),
        lambda p: torch.optim.Adam(p, lr=0.05),
        make_schedules=lambda o, r: (
            optim.CosineAnnealingLR(o, T_max=12, eta_min=0.001),
            torch.optim.lr_scheduler.CosineAnnealingLR(r, T_max=12, eta_min=0.001),
        ),
    )


def test_schedules_closed_forms():
    opt = optim.SGD([Parameter(torch.zeros(1))], lr=1.0)
    step_lr = optim.StepLR(opt, step_size=3, gamma=0.1)
    lrs = [step_lr.get_last_lr()[0]]
    for _ in range(7):
        step_lr.step()
        lrs.append(opt.lr)
    assert lrs == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])

    opt = optim.SGD([Parameter(torch.zeros(1))], lr=0.5)
    cosine = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    for _ in range(2):
        cosine.step()
    assert opt.lr == pytest.approx(0.1 + 0.4 * (1 + math.cos(math.pi / 2)) / 2)
    for _ in range(2):
        cosine.step()
    assert opt.lr == pytest.approx(0.1)


def test_parameters_without_grad_are_skipped():
    ours, theirs = make_params()
    opt = optim.Adam(ours, lr=0.1)
    opt_ref = torch.optim.Adam(theirs, lr=0.1)
    start = ours[1].data.clone()
    for p, p_ref in zip(ours, theirs, strict=True):
        p.grad, p_ref.grad = None, None
    ours[0].grad = torch.ones(SHAPES[0], dtype=D64)
    theirs[0].grad = torch.ones(SHAPES[0], dtype=D64)
    opt.step()
    opt_ref.step()
    assert torch.equal(ours[1].data, start)
    assert max_rel_diff(ours[0].data, theirs[0].detach()) < 1e-12


@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    ours, theirs = make_params()
    for p, p_ref in zip(ours, theirs, strict=True):
        g = torch.randn(p.shape, dtype=D64)
        p.grad, p_ref.grad = g.clone(), g.clone()
    ours.append(Parameter(torch.ones(2, dtype=D64)))  # grad None: skipped
    total = optim.clip_grad_norm_(ours, max_norm)
    total_ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert isinstance(total, torch.Tensor) and total.dim() == 0
    assert total.item() == pytest.approx(total_ref.item(), rel=1e-12)
    for p, p_ref in zip(ours, theirs, strict=False):
        assert max_rel_diff(p.grad, p_ref.grad) < 1e-12
    clipped = math.sqrt(sum((p.grad**2).sum().item() for p in ours[:-1]))
    assert clipped == pytest.approx(min(max_norm, total.item()), rel=1e-5)


def test_clip_grad_norm_keeps_the_direction():
    p = Parameter(torch.zeros(2, dtype=D64))
    p.grad = torch.tensor([3.0, 4.0], dtype=D64)
    assert optim.clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8], dtype=D64), rtol=1e-5)


def test_clip_grad_value_matches_torch():
    ours, theirs = make_params()
    for p, p_ref in zip(ours, theirs, strict=True):
        g = 2 * torch.randn(p.shape, dtype=D64)
        p.grad, p_ref.grad = g.clone(), g.clone()
    optim.clip_grad_value_(ours, 0.7)
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, p_ref in zip(ours, theirs, strict=True):
        assert torch.equal(p.grad, p_ref.grad)
    assert max(p.grad.abs().max().item() for p in ours) == pytest.approx(0.7)


def test_training_a_model_decreases_the_loss_and_zero_grad_clears():
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16, generator=generator), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(64, 2, generator=generator)
    y = (x[:, :1] * x[:, 1:]).sin()
    loss_fn = nn.MSELoss()
    opt = optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(100):
        losses.append(loss_fn(model(x), y).item())
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.3 * losses[0]
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_round_trip_continues_identically():
    ours_a, _ = make_params()
    ours_b, _ = make_params()
    opt_a = optim.Adam(ours_a, lr=0.1)
    for p in ours_a:
        p.grad = torch.ones_like(p.data)
    for _ in range(3):
        opt_a.step()
    for p_a, p_b in zip(ours_a, ours_b, strict=True):
        p_b.data.copy_(p_a.data)
        p_b.grad = p_a.grad.clone()
    opt_b = optim.Adam(ours_b, lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.lr == 0.1
    opt_a.step()
    opt_b.step()
    for p_a, p_b in zip(ours_a, ours_b, strict=True):
        assert torch.equal(p_a.data, p_b.data)


def test_accepts_a_single_parameter_or_any_iterable():
    p = Parameter(torch.zeros(3))
    assert optim.SGD(p, lr=0.1).params == [p]
    assert optim.SGD((q for q in [p]), lr=0.1).params == [p]


def test_bad_arguments_raise_clear_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"model.parameters\(\)"):
        optim.SGD(model, lr=0.1)
    with pytest.raises(TypeError, match=r"torch.Tensor of shape \(2,\)"):
        optim.SGD(torch.zeros(2), lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        optim.Adam([model.weight, torch.zeros(2)])
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(model.parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(model.parameters(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam(model.parameters(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="T_max"):
        optim.CosineAnnealingLR(optim.SGD(model.parameters(), lr=0.1), T_max=0)
    model.weight.grad = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"grad has shape \(3, 3\).*\(2, 2\)"):
        optim.SGD(model.parameters(), lr=0.1).step()


@pytest.mark.gpu
def test_adam_on_cuda_matches_torch():
    kw = {"lr": 0.01, "weight_decay": 0.1}
    ours, _ = run_side_by_side(
        lambda p: optim.Adam(p, **kw), lambda p: torch.optim.Adam(p, **kw), device="cuda"
    )
    assert all(p.data.device.type == "cuda" for p in ours)
