"""Tests of lesson 07's graded items: correct code passes, classic mistakes are named."""

from __future__ import annotations

import pytest
import torch

from coursekit import functional as F
from coursekit.grading import check, items
from coursekit.grading.context import grade
from coursekit.grading.isolation import LocalSession
from coursekit.grading.registry import get_item
from tests import _item_suite as suite

ITEMS_07 = {"07.dropout": 3, "07.l2_grad": 1}


# ---------------------------------------------------------------------------- correct code
def dropout_forward(x, p, generator):
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p
    mask = keep.to(x.dtype) / (1 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout * cache


def dropout_forward_keeps_bool(x, p, generator):
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p
    return x * keep / (1 - p), (keep, p)


def dropout_backward_keeps_bool(dout, cache):
    keep, p = cache
    return torch.where(keep, dout / (1 - p), torch.zeros_like(dout))


def dropout_forward_with_coursekit(x, p, generator):
    return F.dropout_forward(x, p, train=True, generator=generator)


def dropout_backward_with_coursekit(dout, cache):
    return F.dropout_backward(dout, cache)


def l2_grad(w, lam):
    return 2 * lam * w


def l2_grad_by_parts(w, lam):
    return lam * (w + w)


SOLUTIONS = {
    "07.dropout": [
        (dropout_forward, dropout_backward),
        (dropout_forward_keeps_bool, dropout_backward_keeps_bool),
        (dropout_forward_with_coursekit, dropout_backward_with_coursekit),
    ],
    "07.l2_grad": [(l2_grad,), (l2_grad_by_parts,)],
}


# ---------------------------------------------------------------------------- classic mistakes
def forward_unscaled(x, p, generator):
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p).to(x.dtype)
    return x * keep, keep


def forward_inverted_mask(x, p, generator):
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) < p).to(x.dtype)
    return x * keep / (1 - p), keep / (1 - p)


def forward_global_rng(x, p, generator):
    keep = (torch.rand(x.shape, dtype=x.dtype) >= p).to(x.dtype)
    return x * keep / (1 - p), keep / (1 - p)


def forward_as_float32(x, p, generator):
    out, mask = dropout_forward(x, p, generator)
    return out.float(), mask


def forward_times_keep_prob(x, p, generator):
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p).to(x.dtype)
    return x * keep * (1 - p), keep * (1 - p)


def backward_without_mask(dout, cache):
    return dout.clone()


def backward_unscaled(dout, cache):
    return dout * (cache != 0).to(dout.dtype)


def forward_keeping_generator(x, p, generator):
    out, _ = dropout_forward(x, p, generator)
    return out, (generator, p)


def backward_redraws_mask(dout, cache):
    generator, p = cache
    keep = torch.rand(dout.shape, generator=generator, dtype=dout.dtype) >= p
    return dout * keep / (1 - p)


def backward_in_place(dout, cache):
    return dout.mul_(cache)


def l2_without_two(w, lam):
    return lam * w


def l2_halved(w, lam):
    return lam * w / 2


def l2_doubled_twice(w, lam):
    return 4 * lam * w


def l2_penalty(w, lam):
    return lam * (w**2).sum()


def l2_without_lam(w, lam):
    return 2 * w


def l2_decay_step(w, lam):
    return w - 2 * lam * w


def l2_with_autograd(w, lam):
    leaf = w.clone().requires_grad_(True)
    with torch.enable_grad():
        (lam * (leaf**2).sum()).backward()
    return leaf.grad


MISTAKES = [
    ("07.dropout", (forward_unscaled, dropout_backward), "1/(1 - p) scaling is missing"),
    ("07.dropout", (forward_times_keep_prob, dropout_backward), "multiplied the kept entries"),
    ("07.dropout", (forward_inverted_mask, dropout_backward), "mask is inverted"),
    ("07.dropout", (forward_global_rng, dropout_backward), "from the generator you are given"),
    ("07.dropout", (forward_as_float32, dropout_backward), "dtype"),
    ("07.dropout", (dropout_forward, backward_without_mask), "does not use the mask"),
    ("07.dropout", (forward_keeping_generator, backward_redraws_mask), "drawn again"),
    ("07.dropout", (dropout_forward, backward_in_place), "in place"),
    ("07.dropout", (dropout_forward, backward_unscaled), "missing in the backward"),
    ("07.l2_grad", (l2_without_two,), "factor 2 is missing"),
    ("07.l2_grad", (l2_halved,), "wrong lambda convention"),
    ("07.l2_grad", (l2_doubled_twice,), "counted twice"),
    ("07.l2_grad", (l2_penalty,), "shape of w"),
    ("07.l2_grad", (l2_without_lam,), "lam is missing"),
    ("07.l2_grad", (l2_decay_step,), "not the weights after a decay step"),
    ("07.l2_grad", (l2_with_autograd,), "uses torch.autograd"),
]


def _mistake_id(entry) -> str:
    name, fns, _ = entry
    return f"{name}-{'+'.join(fn.__name__ for fn in fns)}"


# ---------------------------------------------------------------------------- tests
def test_lesson_07_items_are_listed_with_their_points():
    table = items("07")
    assert {name: it.points for name, it in table.items()} == ITEMS_07
    assert all(it.hand_written for it in table.values())


@pytest.mark.parametrize("name", list(ITEMS_07))
def test_reference_solution_gets_full_marks(name):
    for fns in SOLUTIONS[name]:
        result = check(name, *fns)
        if any(suite.calls_coursekit(fn) for fn in fns):
            assert result.status == "uses coursekit" and result.points == 0, str(result)
            continue
        assert result.passed, str(result)
        assert result.points == result.max_points == ITEMS_07[name]


@pytest.mark.parametrize("name", list(ITEMS_07))
def test_reference_solution_passes_on_many_seeds(name):
    it, threads = get_item(name), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(10):
            for fns in SOLUTIONS[name]:
                session = LocalSession(fns, it.hand_written, library=())
                outcome = grade(it, None, seed, session=session)
                assert outcome.status == "passed", f"seed {seed}: {outcome.feedback}"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("name", "fns", "words"), MISTAKES, ids=[_mistake_id(m) for m in MISTAKES])
def test_classic_mistake_fails_with_a_hint_naming_it(name, fns, words):
    outcome = grade(get_item(name), fns, seed=0)
    assert outcome.status != "passed"
    assert words in outcome.feedback, outcome.feedback
    assert "Test case" in outcome.feedback


def test_mistakes_are_named_on_other_seeds_too():
    for seed in (1, 7):
        for name, fns, words in MISTAKES:
            outcome = grade(get_item(name), fns, seed)
            assert words in outcome.feedback, f"seed {seed}, {fns}: {outcome.feedback}"


def test_a_stub_scores_zero_without_crashing():
    def stub(*args):
        raise NotImplementedError("write your code here")

    for name in ITEMS_07:
        functions = (stub,) * len(get_item(name).functions)
        result = check(name, *functions)
        assert not result.passed and result.points == 0
        assert result.status == "not implemented"


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
