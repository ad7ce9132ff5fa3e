"""What one lesson's items do beyond the checks every item gets (tests/test_grading_items.py):
coursekit's own implementations agree with the grader, and an item's particular conventions."""

from __future__ import annotations

import pytest
import torch

from coursekit.grading import check
from coursekit.grading.context import grade
from coursekit.grading.isolation import LocalSession
from coursekit.grading.registry import get_item
from tests.grading_fixtures.lesson_11 import LogSumExp


def _agrees_but_scores_zero(name: str, *fns) -> None:
    """Right when the library is allowed, zero in check(), where an exercise may not call it."""
    session = LocalSession(fns, True, library=())
    outcome = grade(get_item(name), None, 0, session=session)
    assert outcome.status == "passed", outcome.feedback
    result = check(name, *fns)
    assert result.status == "uses coursekit" and result.points == 0, str(result)
    assert "coursekit's own" in result.feedback


# ---------------------------------------------------------------------------- lessons 03-05
def test_functional_module_passes_the_pair_items():
    F = pytest.importorskip("coursekit.functional")
    pairs = {
        "03.sigmoid": (F.sigmoid_forward, F.sigmoid_backward),
        "03.tanh": (F.tanh_forward, F.tanh_backward),
        "03.relu": (F.relu_forward, F.relu_backward),
        "03.leaky_relu": (F.leaky_relu_forward, F.leaky_relu_backward),
        # F's cache is its own business; the item hands over (x, w, b).
        "04.linear_backward": (
            lambda dout, xwb: F.linear_backward(dout, F.linear_forward(*xwb)[1]),
        ),
        "05.softmax_cross_entropy": (
            F.softmax_cross_entropy_forward,
            F.softmax_cross_entropy_backward,
        ),
    }
    for name, fns in pairs.items():
        _agrees_but_scores_zero(name, *fns)


# ---------------------------------------------------------------------------- lesson 06
def test_coursekit_optimizers_pass_as_steps():
    """coursekit.optim's update rules, wrapped as one-step functions, give the references'
    answers, and score zero in check(), where the exercise may not call them."""
    from coursekit.nn import Parameter
    from coursekit.optim import SGD, Adam

    def sgd_step(w, grad, velocity, lr, momentum):
        p = Parameter(w.clone())
        p.grad = grad.clone()
        optimizer = SGD([p], lr=lr, momentum=momentum)
        if momentum:
            optimizer.state[0]["momentum_buffer"] = velocity.clone()
        optimizer.step()
        buffer = optimizer.state[0].get("momentum_buffer", grad)
        return p.data, buffer.clone()

    def ck_adam_step(w, grad, m, v, t, lr, beta1, beta2, eps):
        p = Parameter(w.clone())
        p.grad = grad.clone()
        optimizer = Adam([p], lr=lr, betas=(beta1, beta2), eps=eps)
        optimizer.state[0].update(step=t - 1, exp_avg=m.clone(), exp_avg_sq=v.clone())
        optimizer.step()
        return p.data, optimizer.state[0]["exp_avg"], optimizer.state[0]["exp_avg_sq"]

    _agrees_but_scores_zero("06.momentum_step", sgd_step)
    _agrees_but_scores_zero("06.adam_step", ck_adam_step)


# ---------------------------------------------------------------------------- lesson 07
def test_coursekit_sgd_weight_decay_is_the_l2_gradient_with_wd_equal_two_lambda():
    """SGD(weight_decay=2 * lam) adds exactly the L2 gradient: wrapped, it passes the item."""
    from coursekit.nn import Parameter
    from coursekit.optim import SGD

    def decay_of_sgd(w, lam):
        p = Parameter(w.clone())
        p.grad = torch.zeros_like(w)
        SGD([p], lr=1.0, weight_decay=2 * lam).step()  # w_new = w - 1.0 * (0 + wd * w)
        return w - p.data

    assert grade(get_item("07.l2_grad"), (decay_of_sgd,), 0).status == "passed"


# ---------------------------------------------------------------------------- lesson 08
def test_coursekit_clip_and_init_pass_the_items():
    """coursekit.optim.clip_grad_norm_ and coursekit.init.he_normal_, wrapped, give the
    references' answers, and score zero in check(), where the exercise may not call them."""
    from coursekit import init
    from coursekit.nn import Parameter
    from coursekit.optim import clip_grad_norm_

    def ck_clip(grads, max_norm):
        params = [Parameter(torch.zeros_like(g)) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        total = clip_grad_norm_(params, max_norm)
        return [p.grad for p in params], total

    def ck_he(fan_in, fan_out, generator):
        w = torch.empty(fan_in, fan_out, dtype=torch.float64)
        return init.he_normal_(w, generator=generator)

    _agrees_but_scores_zero("08.clip_grad_norm", ck_clip)
    _agrees_but_scores_zero("08.he_init", ck_he)


# ---------------------------------------------------------------------------- lesson 11
def test_custom_function_takes_the_two_static_methods():
    assert get_item("11.custom_function").functions == ("forward", "backward")


def test_the_custom_function_reference_is_a_working_torch_function():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(LogSumExp.apply, (x,))
