"""coursekit.init: fans, variances, bounds, generators, and agreement with torch.nn.init."""

from __future__ import annotations

import math

import pytest
import torch

from coursekit import init

D64 = torch.float64


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("shape", "fans"),
    [((7, 3), (7, 3)), ((5, 4, 3, 2), (4 * 3 * 2, 5 * 3 * 2)), ((6, 2, 5), (2 * 5, 6 * 5))],
)
def test_fans_of_linear_and_conv_weights(shape, fans):
    w = torch.empty(shape)
    assert init.calculate_fan_in_and_fan_out(w) == fans
    # torch reads a 2-D weight as (out, in): our 2-D fans are its fans of the transpose.
    torch_layout = w.T if w.dim() == 2 else w
    assert torch.nn.init._calculate_fan_in_and_fan_out(torch_layout) == fans


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(5,\)"):
        init.calculate_fan_in_and_fan_out(torch.empty(5))


# (initializer, kwargs, expected variance from (fan_in, fan_out), uniform bound or None)
CASES = {
    "xavier_uniform": (
        init.xavier_uniform_,
        {"gain": 1.5},
        lambda fi, fo: 1.5**2 * 2 / (fi + fo),
        lambda fi, fo: 1.5 * math.sqrt(6 / (fi + fo)),
    ),
    "xavier_normal": (init.xavier_normal_, {}, lambda fi, fo: 2 / (fi + fo), None),
    "he_uniform": (init.he_uniform_, {}, lambda fi, fo: 2 / fi, lambda fi, fo: math.sqrt(6 / fi)),
    "he_uniform_fan_out": (
        init.he_uniform_,
        {"mode": "fan_out"},
        lambda fi, fo: 2 / fo,
        lambda fi, fo: math.sqrt(6 / fo),
    ),
    "he_normal": (init.he_normal_, {}, lambda fi, fo: 2 / fi, None),
    "he_normal_fan_out": (init.he_normal_, {"mode": "fan_out"}, lambda fi, fo: 2 / fo, None),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("shape", [(1000, 400), (64, 32, 5, 5)], ids=["linear", "conv"])
def test_empirical_variance_and_bound(name, shape):
    fn, kwargs, variance, bound = CASES[name]
    w = torch.empty(shape, dtype=D64)
    assert fn(w, generator=seeded(1), **kwargs) is w  # in place, returns the tensor
    fan_in, fan_out = init.calculate_fan_in_and_fan_out(w)
    expected = variance(fan_in, fan_out)
    # 400 000 samples: the variance estimate is within ~0.5% (about 3 standard errors).
    assert abs(w.var().item() - expected) < 0.01 * expected
    assert abs(w.mean().item()) < 0.01 * math.sqrt(expected)
    if bound is not None:
        a = bound(fan_in, fan_out)
        assert w.abs().max().item() <= a
        assert w.abs().max().item() > 0.999 * a


TORCH_TWINS = {
    "xavier_uniform": (init.xavier_uniform_, torch.nn.init.xavier_uniform_, {"gain": 0.7}, {}),
    "xavier_normal": (init.xavier_normal_, torch.nn.init.xavier_normal_, {"gain": 0.7}, {}),
    "he_uniform": (
        init.he_uniform_,
        torch.nn.init.kaiming_uniform_,
        {},
        {"nonlinearity": "relu"},
    ),
    "he_normal_fan_out": (
        init.he_normal_,
        torch.nn.init.kaiming_normal_,
        {"mode": "fan_out"},
        {"mode": "fan_out", "nonlinearity": "relu"},
    ),
}


@pytest.mark.parametrize("name", TORCH_TWINS)
@pytest.mark.parametrize("dtype", [torch.float32, D64])
def test_same_distribution_as_torch_on_the_transposed_layout(name, dtype):
    ours, theirs, our_kwargs, their_kwargs = TORCH_TWINS[name]
    w = ours(torch.empty(300, 200, dtype=dtype), generator=seeded(7), **our_kwargs)
    w_torch = theirs(
        torch.empty(200, 300, dtype=dtype),
        generator=seeded(7),
        **{
            **our_kwargs,
            **their_kwargs,
        },
    )
    # Same generator, same number of draws, same scale: the same numbers in memory order.
    torch.testing.assert_close(w.flatten(), w_torch.flatten(), rtol=1e-6, atol=0)
    assert abs(w.var().item() - w_torch.var().item()) < 1e-6 * w_torch.var().item()
    assert w.abs().max().item() == pytest.approx(w_torch.abs().max().item(), rel=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_generator_makes_it_reproducible(name):
    fn, kwargs, _, _ = CASES[name]
    first = fn(torch.empty(20, 30), generator=seeded(3), **kwargs)
    second = fn(torch.empty(20, 30), generator=seeded(3), **kwargs)
    other = fn(torch.empty(20, 30), generator=seeded(4), **kwargs)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_zeros_and_ones():
    w = torch.randn(3, 4)
    assert init.zeros_(w) is w and torch.equal(w, torch.zeros(3, 4))
    assert init.ones_(w) is w and torch.equal(w, torch.ones(3, 4))


def test_he_keeps_relu_activations_alive_through_depth_and_xavier_does_not():
    """The variance argument, checked: Var[w] = 2/fan_in keeps the second moment of ReLU
    activations; Var[w] = 1/fan_in (Xavier with fan_in == fan_out) halves it per layer."""

    def second_moment_after(initializer, depth=12, width=256):
        generator = seeded(0)
        h = torch.randn(512, width, dtype=D64, generator=generator)
        for _ in range(depth):
            w = initializer(torch.empty(width, width, dtype=D64), generator=generator)
            h = torch.relu(h @ w)
        return (h**2).mean().item()

    he = second_moment_after(init.he_normal_)
    xavier = second_moment_after(init.xavier_normal_)
    assert 0.5 < he < 2.0
    assert xavier < 2.0**-12 * 4


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="floating-point"):
        init.xavier_uniform_(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="mode"):
        init.he_normal_(torch.empty(3, 3), mode="fan_avg")
    with pytest.raises(TypeError, match="torch.Tensor"):
        init.he_uniform_([[1.0, 2.0]])


@pytest.mark.gpu
def test_cpu_generator_gives_the_same_weights_on_cuda():
    on_cpu = init.xavier_uniform_(torch.empty(30, 20, dtype=D64), generator=seeded(9))
    on_cuda = init.xavier_uniform_(
        torch.empty(30, 20, dtype=D64, device="cuda"), generator=seeded(9)
    )
    assert on_cuda.device.type == "cuda"
    assert torch.equal(on_cuda.cpu(), on_cpu)
    with_cuda_generator = init.he_normal_(
        torch.empty(30, 20, device="cuda"), generator=torch.Generator("cuda").manual_seed(1)
    )
    assert with_cuda_generator.device.type == "cuda"
