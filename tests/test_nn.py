"""coursekit.nn: whole models against their torch.nn twins, and the Module machinery."""

from __future__ import annotations

import pytest
import torch

import coursekit.nn as nn
from coursekit.nn import Module, Parameter

D64 = torch.float64


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b|, relative to the largest entry of either."""
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-12)
    return (a - b).abs().max().item() / scale


# ---------------------------------------------------------------------------
# Building the torch.nn twin of a coursekit model, with the same weights
# ---------------------------------------------------------------------------


class TakeLast(Module):
    """Keep the last time step: (N, T, H) -> (N, H). A user-written module."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self._cache = h.shape
        return h[:, -1]

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        shape = self._saved_cache()
        dh = dout.new_zeros(shape)
        dh[:, -1] = dout
        return dh if input_grad else None


class TorchTakeLast(torch.nn.Module):
    def forward(self, h):
        return h[:, -1]


class TorchResidual(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


class TorchRNNSequence(torch.nn.Module):
    """torch.nn.RNN returns (output, h_n); keep the output sequence."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


class TorchSeededDropout(torch.nn.Module):
    """Inverted dropout drawing its mask as F.dropout_forward documents, from a given generator."""

    def __init__(self, p, generator):
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x):
        if not self.training:
            return x
        keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return x * (keep >= self.p) / (1 - self.p)


def copy_generator(generator: torch.Generator, copies: dict) -> torch.Generator:
    """One copy per generator, so layers sharing a generator share its copy too."""
    if id(generator) not in copies:
        copies[id(generator)] = torch.Generator(device=generator.device)
        copies[id(generator)].set_state(generator.get_state())
    return copies[id(generator)]


@torch.no_grad()
def twin(
    m: Module, generators: dict | None = None
) -> tuple[torch.nn.Module, list[tuple[Parameter, torch.Tensor, bool]]]:
    """(torch module, [(our parameter, torch parameter, transposed?)]) with copied weights."""
    generators = {} if generators is None else generators
    kw = {"dtype": m.parameters()[0].dtype if m.parameters() else D64}
    if isinstance(m, nn.Sequential):
        parts = [twin(child, generators) for child in m]
        return torch.nn.Sequential(*[t for t, _ in parts]), [p for _, ps in parts for p in ps]
    if isinstance(m, nn.Residual):
        block, pairs = twin(m.block, generators)
        return TorchResidual(block), pairs
    if isinstance(m, nn.Linear):
        t = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, **kw)
        t.weight.copy_(m.weight.data.T)
        pairs = [(m.weight, t.weight, True)]
        if m.bias is not None:
            t.bias.copy_(m.bias.data)
            pairs.append((m.bias, t.bias, False))
        return t, pairs
    if isinstance(m, nn.Conv2d):
        t = torch.nn.Conv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            bias=m.bias is not None,
            **kw,
        )
        t.weight.copy_(m.weight.data)
        pairs = [(m.weight, t.weight, False)]
        if m.bias is not None:
            t.bias.copy_(m.bias.data)
            pairs.append((m.bias, t.bias, False))
        return t, pairs
    if isinstance(m, nn.BatchNorm1d):
        t = torch.nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum, **kw)
        t.weight.copy_(m.weight.data)
        t.bias.copy_(m.bias.data)
        t.running_mean.copy_(m.running_mean)
        t.running_var.copy_(m.running_var)
        return t, [(m.weight, t.weight, False), (m.bias, t.bias, False)]
    if isinstance(m, nn.LayerNorm):
        t = torch.nn.LayerNorm(m.normalized_shape, eps=m.eps, **kw)
        t.weight.copy_(m.weight.data)
        t.bias.copy_(m.bias.data)
        return t, [(m.weight, t.weight, False), (m.bias, t.bias, False)]
    if isinstance(m, nn.Embedding):
        t = torch.nn.Embedding(m.num_embeddings, m.embedding_dim, **kw)
        t.weight.copy_(m.weight.data)
        return t, [(m.weight, t.weight, False)]
    if isinstance(m, nn.RNN):
        rnn = torch.nn.RNN(m.input_size, m.hidden_size, nonlinearity="tanh", batch_first=True, **kw)
        rnn.weight_ih_l0.copy_(m.weight_ih.data.T)
        rnn.weight_hh_l0.copy_(m.weight_hh.data.T)
        rnn.bias_ih_l0.copy_(m.bias.data)  # b = b_ih + b_hh with b_hh = 0,
        rnn.bias_hh_l0.zero_()  # so dL/db = dL/db_ih (= dL/db_hh)
        pairs = [
            (m.weight_ih, rnn.weight_ih_l0, True),
            (m.weight_hh, rnn.weight_hh_l0, True),
            (m.bias, rnn.bias_ih_l0, False),
        ]
        return TorchRNNSequence(rnn), pairs
    if isinstance(m, nn.Dropout):
        return TorchSeededDropout(m.p, copy_generator(m.generator, generators)), []
    simple = {
        nn.ReLU: lambda: torch.nn.ReLU(),
        nn.Sigmoid: lambda: torch.nn.Sigmoid(),
        nn.Tanh: lambda: torch.nn.Tanh(),
        nn.LeakyReLU: lambda: torch.nn.LeakyReLU(m.negative_slope),
        nn.MaxPool2d: lambda: torch.nn.MaxPool2d(m.kernel_size, m.stride),
        nn.Flatten: lambda: torch.nn.Flatten(m.start_dim, m.end_dim),
        TakeLast: lambda: TorchTakeLast(),
    }
    return simple[type(m)](), []


def torch_loss(loss_fn: Module) -> torch.nn.Module:
    if isinstance(loss_fn, nn.MSELoss):
        return torch.nn.MSELoss()
    return torch.nn.CrossEntropyLoss()


def assert_matches_torch(
    model: Module, loss_fn: Module, x: torch.Tensor, y: torch.Tensor, input_grad: bool = False
) -> None:
    """Loss, every parameter gradient (and dx if asked) equal torch's to 1e-8."""
    reference, pairs = twin(model)
    reference.train(model.training)
    assert len(pairs) == len(model.parameters())

    loss = loss_fn(model(x), y)
    dx = model.backward(loss_fn.backward(), input_grad=input_grad)

    x_ref = x.clone().requires_grad_(input_grad)
    loss_ref = torch_loss(loss_fn)(reference(x_ref), y)
    loss_ref.backward()

    assert loss.dim() == 0
    assert rel_error(loss, loss_ref.detach()) < 1e-12
    for ours, theirs, transposed in pairs:
        expected = theirs.grad.T if transposed else theirs.grad
        assert ours.grad.shape == ours.data.shape
        assert rel_error(ours.grad, expected) < 1e-8
    if input_grad:
        assert rel_error(dx, x_ref.grad) < 1e-8
    else:
        assert dx is None


# ---------------------------------------------------------------------------
# Whole models against torch
# ---------------------------------------------------------------------------


def mlp(generator: torch.Generator | None = None) -> nn.Sequential:
    opts = {"dtype": D64, "generator": generator}
    return nn.Sequential(
        nn.Linear(5, 8, **opts),
        nn.ReLU(),
        nn.Linear(8, 8, **opts),
        nn.Tanh(),
        nn.Linear(8, 6, **opts),
        nn.Sigmoid(),
        nn.Linear(6, 6, **opts),
        nn.LeakyReLU(0.1),
        nn.Linear(6, 3, **opts),
    )


@pytest.mark.parametrize("input_grad", [False, True])
def test_mlp_gradients_match_torch_with_cross_entropy(input_grad):
    x = torch.randn(7, 5, dtype=D64)
    y = torch.randint(0, 3, (7,))
    assert_matches_torch(mlp(), nn.SoftmaxCrossEntropyLoss(), x, y, input_grad=input_grad)


def test_mlp_gradients_match_torch_with_mse():
    x = torch.randn(9, 5, dtype=D64)
    y = torch.randn(9, 3, dtype=D64)
    assert_matches_torch(mlp(), nn.MSELoss(), x, y, input_grad=True)


@pytest.mark.parametrize("input_grad", [False, True])
def test_cnn_gradients_match_torch(input_grad):
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=D64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, (3, 2), stride=2, bias=False, dtype=D64),
        nn.LeakyReLU(),
        nn.Flatten(),
        nn.Linear(5 * 2 * 2, 3, dtype=D64),
    )
    x = torch.randn(3, 2, 10, 9, dtype=D64)
    y = torch.randint(0, 3, (3,))
    assert_matches_torch(model, nn.SoftmaxCrossEntropyLoss(), x, y, input_grad=input_grad)


def test_rnn_language_model_matches_torch():
    vocab, n, t = 11, 4, 6
    model = nn.Sequential(
        nn.Embedding(vocab, 5, dtype=D64),
        nn.RNN(5, 7, dtype=D64),
        TakeLast(),
        nn.Linear(7, vocab, dtype=D64),
    )
    idx = torch.randint(0, vocab, (n, t))
    y = torch.randint(0, vocab, (n,))
    assert_matches_torch(model, nn.SoftmaxCrossEntropyLoss(), idx, y)
    # Embedding ids get no gradient, even on request.
    assert model.backward(torch.ones(n, vocab, dtype=D64), input_grad=True) is None


def test_rnn_with_given_h0_matches_torch_including_h0_grad():
    rnn = nn.RNN(3, 4, dtype=D64)
    reference, pairs = twin(rnn)
    x = torch.randn(2, 5, 3, dtype=D64)
    h0 = torch.randn(2, 4, dtype=D64)
    dout = torch.randn(2, 5, 4, dtype=D64)

    out = rnn(x, h0)
    dx = rnn.backward(dout)

    x_ref, h0_ref = x.clone().requires_grad_(), h0.clone().requires_grad_()
    out_ref, _ = reference.rnn(x_ref, h0_ref.unsqueeze(0))
    out_ref.backward(dout)
    assert rel_error(out, out_ref.detach()) < 1e-12
    assert rel_error(dx, x_ref.grad) < 1e-8
    assert rel_error(rnn.h0_grad, h0_ref.grad) < 1e-8
    for ours, theirs, transposed in pairs:
        assert rel_error(ours.grad, theirs.grad.T if transposed else theirs.grad) < 1e-8


def residual_mlp(generator: torch.Generator | None = None) -> nn.Sequential:
    """Dropout masks come from ``generator`` (default: a CPU one with a fixed seed)."""
    generator = torch.Generator().manual_seed(1234) if generator is None else generator
    # No bias before a batch norm: it would be subtracted again, and its gradient is 0.
    return nn.Sequential(
        nn.Linear(6, 10, bias=False, dtype=D64),
        nn.BatchNorm1d(10, dtype=D64),
        nn.ReLU(),
        nn.Residual(
            nn.Sequential(
                nn.Linear(10, 10, bias=False, dtype=D64),
                nn.BatchNorm1d(10, momentum=0.2, dtype=D64),
                nn.Tanh(),
                nn.Dropout(0.3, generator=generator),
                nn.Linear(10, 10, dtype=D64),
            )
        ),
        nn.Residual(nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(10, 10, dtype=D64))),
        nn.Dropout(0.25, generator=generator),
        nn.Linear(10, 4, dtype=D64),
    )


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("input_grad", [False, True])
def test_residual_mlp_with_batchnorm_and_dropout_matches_torch(training, input_grad):
    model = residual_mlp().train(training)
    with torch.no_grad():  # running statistics other than the defaults, for eval mode
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(16, 6, dtype=D64)
    y = torch.randint(0, 4, (16,))
    assert_matches_torch(model, nn.SoftmaxCrossEntropyLoss(), x, y, input_grad=input_grad)


def test_residual_backward_adds_the_skip_path():
    block = nn.Linear(4, 4, dtype=D64)
    residual = nn.Residual(block)
    x = torch.randn(3, 4, dtype=D64)
    dout = torch.randn(3, 4, dtype=D64)
    assert torch.allclose(residual(x), x + x @ block.weight.data + block.bias.data)
    dx = residual.backward(dout)
    assert torch.allclose(dx, dout + dout @ block.weight.data.T)


def test_layernorm_matches_torch_on_3d_input():
    norm = nn.LayerNorm(6, eps=1e-4, dtype=D64)
    with torch.no_grad():
        norm.weight.data.normal_()
        norm.bias.data.normal_()
    reference, pairs = twin(norm)
    x = torch.randn(2, 3, 6, dtype=D64)
    dout = torch.randn(2, 3, 6, dtype=D64)
    out = norm(x)
    dx = norm.backward(dout)
    x_ref = x.clone().requires_grad_()
    out_ref = reference(x_ref)
    out_ref.backward(dout)
    assert rel_error(out, out_ref.detach()) < 1e-12
    assert rel_error(dx, x_ref.grad) < 1e-8
    for ours, theirs, _ in pairs:
        assert rel_error(ours.grad, theirs.grad) < 1e-8


def test_embedding_matches_torch_with_repeated_ids():
    emb = nn.Embedding(5, 3, dtype=D64)
    reference, pairs = twin(emb)
    idx = torch.tensor([[0, 2, 2], [4, 0, 2]])
    dout = torch.randn(2, 3, 3, dtype=D64)
    out = emb(idx)
    assert emb.backward(dout) is None
    out_ref = reference(idx)
    out_ref.backward(dout)
    assert torch.equal(out, out_ref.detach())
    assert rel_error(emb.weight.grad, reference.weight.grad) < 1e-12
    assert torch.all(emb.weight.grad[[1, 3]] == 0)


def test_float32_models_keep_their_dtype():
    model = nn.Sequential(nn.Linear(4, 5, dtype=torch.float32), nn.Tanh(), nn.Linear(5, 2))
    x = torch.randn(3, 4)
    loss_fn = nn.MSELoss()
    loss = loss_fn(model(x), torch.randn(3, 2))
    model.backward(loss_fn.backward())
    assert loss.dtype == torch.float32
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------------------
# Gradient bookkeeping
# ---------------------------------------------------------------------------


def test_parameter_grad_is_none_before_backward():
    model = mlp()
    assert all(p.grad is None for p in model.parameters())


def test_gradients_accumulate_over_two_backward_calls():
    model, loss_fn = mlp(), nn.SoftmaxCrossEntropyLoss()
    batches = [(torch.randn(4, 5, dtype=D64), torch.randint(0, 3, (4,))) for _ in range(2)]

    separate = []
    for x, y in batches:
        model.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        separate.append([p.grad.clone() for p in model.parameters()])

    model.zero_grad()
    for x, y in batches:
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
    for p, g1, g2 in zip(model.parameters(), *separate, strict=True):
        assert rel_error(p.grad, g1 + g2) < 1e-12


def test_zero_grad_sets_to_none_or_to_zeros():
    model, loss_fn = mlp(), nn.MSELoss()
    loss_fn(model(torch.randn(4, 5, dtype=D64)), torch.randn(4, 3, dtype=D64))
    model.backward(loss_fn.backward())
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p.data)) for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_first_layer_skips_input_gradient_unless_asked(monkeypatch):
    calls = []
    original = nn.F.linear_backward

    def counting_linear_backward(dout, cache):
        calls.append(1)
        return original(dout, cache)

    monkeypatch.setattr(nn.F, "linear_backward", counting_linear_backward)
    model = nn.Sequential(nn.Linear(3, 4, dtype=D64), nn.ReLU(), nn.Linear(4, 2, dtype=D64))
    x = torch.randn(5, 3, dtype=D64)
    model(x)
    assert model.backward(torch.ones(5, 2, dtype=D64)) is None
    assert len(calls) == 1  # only the second layer needed dx
    grads_without = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    dx = model.backward(torch.ones(5, 2, dtype=D64), input_grad=True)
    assert len(calls) == 3
    assert dx.shape == x.shape
    for p, g in zip(model.parameters(), grads_without, strict=True):
        assert rel_error(p.grad, g) < 1e-12


def test_single_layer_backward_returns_dx_by_default():
    layer = nn.Linear(3, 2, dtype=D64)
    x = torch.randn(4, 3, dtype=D64)
    layer(x)
    dout = torch.randn(4, 2, dtype=D64)
    assert torch.allclose(layer.backward(dout), dout @ layer.weight.data.T)
    assert layer.backward(dout, input_grad=False) is None


@pytest.mark.parametrize(
    "module",
    [
        nn.Linear(2, 2),
        nn.ReLU(),
        nn.Tanh(),
        nn.Sigmoid(),
        nn.LeakyReLU(),
        nn.Dropout(),
        nn.BatchNorm1d(2),
        nn.LayerNorm(2),
        nn.Conv2d(1, 1, 1),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Embedding(2, 2),
        nn.RNN(2, 2),
        nn.Residual(nn.Linear(2, 2)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_backward_before_forward_raises(module):
    with pytest.raises(RuntimeError, match="before forward"):
        module.backward(torch.ones(2, 2))


@pytest.mark.parametrize("loss_fn", [nn.MSELoss(), nn.SoftmaxCrossEntropyLoss()])
def test_loss_backward_before_forward_raises(loss_fn):
    with pytest.raises(RuntimeError, match="before forward"):
        loss_fn.backward()


def test_parameters_are_found_recursively_in_order():
    model = residual_mlp()
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "0.weight",
        "1.weight",
        "1.bias",
        "3.block.0.weight",
        "3.block.1.weight",
        "3.block.1.bias",
        "3.block.4.weight",
        "3.block.4.bias",
        "4.block.1.weight",
        "4.block.1.bias",
        "6.weight",
        "6.bias",
    ]
    assert [p for _, p in model.named_parameters()] == model.parameters()


def test_shared_parameter_is_listed_once():
    first = nn.Linear(3, 3)
    second = nn.Linear(3, 3)
    second.weight = first.weight
    assert len(nn.Sequential(first, second).parameters()) == 3


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------


def test_train_and_eval_propagate_to_every_child():
    model = residual_mlp()
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_batchnorm_train_and_eval_follow_torch_over_several_steps():
    norm = nn.BatchNorm1d(3, momentum=0.3, dtype=D64)
    reference, _ = twin(norm)
    for step in range(4):
        x = torch.randn(8, 3, dtype=D64) * 3 + step
        with torch.no_grad():
            assert rel_error(norm(x), reference(x)) < 1e-12
    assert rel_error(norm.running_mean, reference.running_mean) < 1e-12
    assert rel_error(norm.running_var, reference.running_var) < 1e-12

    norm.eval()
    reference.eval()
    running_mean = norm.running_mean.clone()
    x = torch.randn(5, 3, dtype=D64)
    out = norm(x)
    with torch.no_grad():
        assert rel_error(out, reference(x)) < 1e-12
    assert torch.equal(norm.running_mean, running_mean)  # eval does not update
    expected = (x - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    assert rel_error(out, expected) < 1e-12


def test_dropout_is_the_identity_in_eval_mode():
    dropout = nn.Dropout(0.5).eval()
    x = torch.randn(20, 20)
    assert torch.equal(dropout(x), x)
    assert torch.equal(dropout.backward(torch.ones(20, 20)), torch.ones(20, 20))
    dropout.train()
    assert (dropout(x) == 0).any()


def test_dropout_generator_makes_masks_reproducible():
    x = torch.ones(50, 50)
    first = nn.Dropout(0.4, generator=torch.Generator().manual_seed(3))(x)
    second = nn.Dropout(0.4, generator=torch.Generator().manual_seed(3))(x)
    assert torch.equal(first, second)


# ---------------------------------------------------------------------------
# state_dict, to(), repr
# ---------------------------------------------------------------------------


def test_state_dict_round_trip_restores_outputs_and_buffers():
    source = residual_mlp().eval()
    with torch.no_grad():
        source[1].running_mean.normal_()
    target = residual_mlp().eval()
    state = source.state_dict()
    assert "1.running_mean" in state and "1.running_var" in state
    assert "3.block.1.running_var" in state

    result = target.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = torch.randn(5, 6, dtype=D64)
    assert torch.equal(target(x), source(x))
    assert torch.equal(target[1].running_mean, source[1].running_mean)


def test_state_dict_holds_copies():
    model = nn.Linear(2, 2)
    state = model.state_dict()
    model.weight.data.add_(1.0)
    assert not torch.equal(state["weight"], model.weight.data)


def test_load_state_dict_reports_missing_and_unexpected_keys():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    state = model.state_dict()
    del state["2.bias"]
    state["2.scale"] = torch.ones(1)
    expected = r"missing keys \['2.bias'\].*unexpected keys \['2.scale'\]"
    with pytest.raises(ValueError, match=expected):
        model.load_state_dict(state)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["2.bias"]
    assert result.unexpected_keys == ["2.scale"]


def test_load_state_dict_shape_mismatch_names_key_and_shapes_and_copies_nothing():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    before = model.state_dict()
    state = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)).state_dict()
    state["1.weight"] = torch.zeros(1, 3)
    with pytest.raises(ValueError, match=r"'1.weight'.*\(1, 3\).*\(3, 1\)"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_load_state_dict_keeps_the_models_dtype():
    model = nn.Linear(2, 2, dtype=torch.float32)
    model.load_state_dict(nn.Linear(2, 2, dtype=D64).state_dict())
    assert model.weight.dtype == torch.float32


def test_to_converts_parameters_gradients_and_buffers():
    model = nn.Sequential(nn.Linear(3, 4, dtype=torch.float32), nn.BatchNorm1d(4))
    loss_fn = nn.MSELoss()
    loss_fn(model(torch.randn(5, 3)), torch.randn(5, 4))
    model.backward(loss_fn.backward())
    assert model.to(torch.float64) is model
    assert all(p.dtype == D64 and p.grad.dtype == D64 for p in model.parameters())
    assert model[1].running_var.dtype == D64
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(torch.ones(5, 4, dtype=D64))  # the old cache is gone
    with pytest.raises(TypeError, match="floating-point"):
        model.to(dtype=torch.int64)


def test_repr_lists_layers_and_sizes():
    text = repr(residual_mlp())
    for piece in [
        "Sequential(",
        "(0): Linear(in_features=6, out_features=10, bias=False)",
        "(1): BatchNorm1d(10",
        "(3): Residual(",
        "(block): Sequential(",
        "Dropout(p=0.3)",
        "LeakyReLU(negative_slope=0.2)",
        "(6): Linear(in_features=10, out_features=4, bias=True)",
    ]:
        assert piece in text
    assert "Conv2d(3, 8, kernel_size=(5, 5)" in repr(nn.Conv2d(3, 8, 5))
    assert repr(nn.RNN(3, 4)) == "RNN(3, 4)"


def test_sequential_indexing_len_and_iteration():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    model = nn.Sequential(*layers)
    assert len(model) == 3
    assert list(model) == layers
    assert model[-1] is layers[2]
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]


# ---------------------------------------------------------------------------
# Construction and errors
# ---------------------------------------------------------------------------


def test_linear_init_matches_torch_bound_and_generator_reproduces_it():
    layer = nn.Linear(400, 300, dtype=D64)
    bound = 1 / 400**0.5
    assert layer.weight.shape == (400, 300)
    assert layer.weight.data.abs().max() <= bound
    assert layer.weight.data.abs().max() > 0.99 * bound
    assert abs(layer.weight.data.var().item() - bound**2 / 3) < 0.03 * bound**2 / 3
    same = [nn.Linear(4, 3, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(same[0].weight.data, same[1].weight.data)
    assert torch.equal(same[0].bias.data, same[1].bias.data)


def test_constructors_take_dtype_and_default_to_torch_default():
    assert nn.Linear(2, 2).weight.dtype == torch.get_default_dtype()
    for layer in [
        nn.Linear(2, 2, dtype=D64),
        nn.Conv2d(1, 2, 3, dtype=D64),
        nn.BatchNorm1d(2, dtype=D64),
        nn.LayerNorm(2, dtype=D64),
        nn.Embedding(3, 2, dtype=D64),
        nn.RNN(2, 3, dtype=D64),
    ]:
        assert all(p.dtype == D64 for p in layer.parameters())


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="argument 1 must be a Module"):
        nn.Sequential(nn.ReLU(), torch.nn.ReLU())
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm((3, 4))
    with pytest.raises(ValueError, match="p is a probability"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*\(2, 4\)"):
        nn.Residual(nn.Linear(3, 4))(torch.randn(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        Parameter(torch.zeros(2, 3)).accumulate_grad(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="x"):
        nn.Linear(3, 2)(torch.randn(4, 5))  # F names the argument and the shapes


def assert_same_gradients_on(device: str) -> None:
    """The model moved to ``device`` gives the CPU model's gradients."""
    cpu_model = residual_mlp().eval()
    moved_model = residual_mlp(torch.Generator(device).manual_seed(0)).eval()
    moved_model.load_state_dict(cpu_model.state_dict())
    moved_model.to(device)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    x = torch.randn(16, 6, dtype=D64)
    y = torch.randint(0, 4, (16,))
    for model, on in [(cpu_model, "cpu"), (moved_model, device)]:
        loss_fn(model(x.to(on)), y.to(on))
        model.backward(loss_fn.backward())
    for p_cpu, p_moved in zip(cpu_model.parameters(), moved_model.parameters(), strict=True):
        assert p_moved.grad.device.type == device
        assert rel_error(p_moved.grad.cpu(), p_cpu.grad) < 1e-10


@pytest.mark.gpu
def test_model_on_cuda_matches_cpu():
    assert_same_gradients_on("cuda")


# --------------------------------------------------------------------------- LSTM
def _torch_lstm_twin(m: nn.LSTM) -> torch.nn.LSTM:
    """torch.nn.LSTM with m's weights: torch's are the transposes, and b = b_ih + b_hh."""
    t = torch.nn.LSTM(m.input_size, m.hidden_size, batch_first=True, dtype=D64)
    with torch.no_grad():
        t.weight_ih_l0.copy_(m.weight_ih.data.T)
        t.weight_hh_l0.copy_(m.weight_hh.data.T)
        t.bias_ih_l0.copy_(m.bias.data)
        t.bias_hh_l0.zero_()
    return t


@pytest.mark.parametrize("given_state", [False, True], ids=["zero state", "given state"])
def test_lstm_matches_torch_including_state_grads(given_state):
    gen = torch.Generator().manual_seed(3)
    lstm = nn.LSTM(3, 4, dtype=D64, generator=gen)
    reference = _torch_lstm_twin(lstm)
    x = torch.randn(2, 7, 3, dtype=D64, generator=gen)
    h0, c0 = (torch.randn(2, 4, dtype=D64, generator=gen) for _ in range(2))
    dout = torch.randn(2, 7, 4, dtype=D64, generator=gen)

    out = lstm(x, (h0, c0)) if given_state else lstm(x)
    dx = lstm.backward(dout)

    x_ref = x.clone().requires_grad_()
    state = [t.clone() if given_state else torch.zeros_like(t) for t in (h0, c0)]
    state = [t.requires_grad_() for t in state]
    out_ref, (h_n, c_n) = reference(x_ref, (state[0][None], state[1][None]))
    out_ref.backward(dout)
    assert rel_error(out, out_ref.detach()) < 1e-12
    assert rel_error(lstm.last_state[0], h_n[0].detach()) < 1e-12
    assert rel_error(lstm.last_state[1], c_n[0].detach()) < 1e-12
    assert rel_error(dx, x_ref.grad) < 1e-8
    assert rel_error(lstm.h0_grad, state[0].grad) < 1e-8
    assert rel_error(lstm.c0_grad, state[1].grad) < 1e-8
    assert rel_error(lstm.weight_ih.grad, reference.weight_ih_l0.grad.T) < 1e-8
    assert rel_error(lstm.weight_hh.grad, reference.weight_hh_l0.grad.T) < 1e-8
    assert rel_error(lstm.bias.grad, reference.bias_ih_l0.grad) < 1e-8


def test_lstm_language_model_matches_torch_and_continues_a_sequence():
    gen = torch.Generator().manual_seed(4)
    embed = nn.Embedding(9, 5, dtype=D64, generator=gen)
    lstm = nn.LSTM(5, 6, dtype=D64, generator=gen)
    ids = torch.randint(0, 9, (3, 8), generator=gen)
    whole = lstm(embed(ids))
    first = lstm(embed(ids[:, :5]))
    rest = lstm(embed(ids[:, 5:]), lstm.last_state)  # carry (h, c) on
    assert rel_error(torch.cat([first, rest], 1), whole) < 1e-12

    t_embed = torch.nn.Embedding(9, 5, dtype=D64)
    with torch.no_grad():
        t_embed.weight.copy_(embed.weight.data)
    reference = _torch_lstm_twin(lstm)
    dout = torch.randn(3, 8, 6, dtype=D64, generator=gen)
    embed.zero_grad()
    lstm.zero_grad()
    lstm(embed(ids))
    embed.backward(lstm.backward(dout))
    reference(t_embed(ids))[0].backward(dout)
    assert rel_error(embed.weight.grad, t_embed.weight.grad) < 1e-8
    assert rel_error(lstm.weight_hh.grad, reference.weight_hh_l0.grad.T) < 1e-8


def test_lstm_float32_keeps_its_dtype_and_checks_its_input():
    lstm = nn.LSTM(2, 3, dtype=torch.float32)
    out = lstm(torch.randn(4, 5, 2))
    assert out.dtype == torch.float32 and out.shape == (4, 5, 3)
    assert lstm.backward(torch.ones(4, 5, 3)).dtype == torch.float32
    assert repr(lstm) == "LSTM(2, 3)"
    assert [tuple(p.shape) for p in lstm.parameters()] == [(2, 12), (3, 12), (12,)]
    with pytest.raises(ValueError, match=r"\(N, T, input_size\)"):
        lstm(torch.randn(4, 2))
    with pytest.raises(ValueError, match="dout has shape"):
        lstm.backward(torch.ones(4, 3))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.LSTM(2, 2).backward(torch.ones(1, 1, 2))
