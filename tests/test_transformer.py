"""coursekit.transformer: every module against the same model in torch, step for step.

Float64 gradients within 1e-8 (relative), 20 Adam steps with the same losses (float64
within 1e-10, float32 within 1e-5 relative), and the backward passes use no autograd.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as tF

from coursekit import nn, optim
from coursekit.transformer import (
    GELU,
    GPT,
    MultiHeadAttention,
    PositionalEmbedding,
    TorchGPT,
    TransformerBlock,
)
from tests._autograd_ref import rel_error

F64 = torch.float64


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _torch_attention(x, wqkv, bqkv, wo, bo, n_heads, causal):
    """Multi-head attention with torch ops, weights laid out as coursekit's (in, out)."""
    b, t, c = x.shape
    q, k, v = (x @ wqkv + bqkv).view(b, t, 3, n_heads, c // n_heads).permute(2, 0, 3, 1, 4)
    s = q @ k.transpose(-2, -1) / math.sqrt(c // n_heads)
    if causal:
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, c)
    return o @ wo + bo


def _module_grads(module, x, dout):
    out = module(x)
    dx = module.backward(dout)
    return out, dx, [p.grad for p in module.parameters()]


def _torch_grads(fn, x, params, dout):
    leaves = [t.clone().requires_grad_(True) for t in (x, *params)]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, dout)
    return out.detach(), grads[0], list(grads[1:])


def _assert_all_close(ours, theirs, tol=1e-8):
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        assert rel_error(a, b) < tol, (i, rel_error(a, b))


# ----------------------------------------------------------------------------- modules
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("b", "t", "c", "h"), [(2, 5, 8, 2), (1, 1, 6, 3), (3, 4, 4, 1)])
def test_multi_head_attention_matches_autograd(b, t, c, h, causal) -> None:
    mha = MultiHeadAttention(
        c, h, causal=causal, dtype=F64, generator=torch.Generator().manual_seed(1)
    )
    x, dout = _randn(b, t, c, seed=2), _randn(b, t, c, seed=3)
    out, dx, grads = _module_grads(mha, x, dout)
    params = [p.data for p in mha.parameters()]
    ref_out, ref_dx, ref_grads = _torch_grads(
        lambda x, *p: _torch_attention(x, *p, n_heads=h, causal=causal), x, params, dout
    )
    _assert_all_close([out, dx, *grads], [ref_out, ref_dx, *ref_grads])


def test_multi_head_attention_is_the_heads_side_by_side() -> None:
    # Two heads of width 2 equal two one-head attentions on the matching columns.
    mha = MultiHeadAttention(4, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    x = _randn(1, 3, 4, seed=5)
    mha(x)
    (cache, _) = mha._cache
    q = (x[0] @ mha.qkv.weight.data + mha.qkv.bias.data)[:, :4]
    torch.testing.assert_close(cache[0][0, 1], q[:, 2:])  # head 1's queries


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_transformer_block_matches_autograd(approximate) -> None:
    c, h = 8, 2
    block = TransformerBlock(
        c,
        h,
        mlp_ratio=3,
        approximate=approximate,
        dtype=F64,
        generator=torch.Generator().manual_seed(6),
    )
    for p in block.parameters():  # layer norms away from 1 and 0, so their gradients matter
        p.data += 0.1 * _randn(*p.shape, seed=p.numel())
    x, dout = _randn(2, 5, c, seed=7), _randn(2, 5, c, seed=8)
    out, dx, grads = _module_grads(block, x, dout)

    def ref(x, l1w, l1b, wqkv, bqkv, wo, bo, l2w, l2b, w1, b1, w2, b2):
        x = x + _torch_attention(tF.layer_norm(x, (c,), l1w, l1b), wqkv, bqkv, wo, bo, h, True)
        m = tF.gelu(tF.layer_norm(x, (c,), l2w, l2b) @ w1 + b1, approximate=approximate)
        return x + m @ w2 + b2

    ref_out, ref_dx, ref_grads = _torch_grads(ref, x, [p.data for p in block.parameters()], dout)
    _assert_all_close([out, dx, *grads], [ref_out, ref_dx, *ref_grads])


def test_positional_embedding_and_gelu_modules() -> None:
    pos = PositionalEmbedding(6, 3, dtype=F64, generator=torch.Generator().manual_seed(9))
    x, dout = _randn(2, 4, 3, seed=10), _randn(2, 4, 3, seed=11)
    out, dx, (dw,) = _module_grads(pos, x, dout)
    torch.testing.assert_close(out, x + pos.weight.data[:4])
    torch.testing.assert_close(dx, dout)
    torch.testing.assert_close(dw[:4], dout.sum(0))
    assert (dw[4:] == 0).all()
    act = GELU("tanh")
    out, dx, _ = _module_grads(act, x, dout)
    leaf = x.clone().requires_grad_(True)
    (ref_dx,) = torch.autograd.grad(tF.gelu(leaf, approximate="tanh"), leaf, dout)
    assert rel_error(dx, ref_dx) < 1e-12


# --------------------------------------------------------------------------------- GPT
def _gpt(dtype=F64, seed=0, **sizes):
    options = {"d_model": 16, "n_heads": 4, "n_layers": 2} | sizes
    return GPT(11, 8, dtype=dtype, generator=torch.Generator().manual_seed(seed), **options)


def _batch(seed, b=3, t=8, vocab=11):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (b, t), generator=g), torch.randint(
        0, vocab, (b, t), generator=g
    )


def _step_both(model, twin, loss_fn, idx, y):
    logits = model(idx)
    loss = loss_fn(logits.reshape(-1, model.vocab_size), y.reshape(-1))
    model.zero_grad()
    model.backward(loss_fn.backward().view(logits.shape))
    twin.zero_grad()
    twin_loss = tF.cross_entropy(twin(idx).reshape(-1, model.vocab_size), y.reshape(-1))
    twin_loss.backward()
    return loss.item(), twin_loss.item()


@pytest.mark.parametrize(
    "sizes",
    [{}, {"n_layers": 1, "n_heads": 1}, {"n_layers": 3, "mlp_ratio": 2, "approximate": "tanh"}],
)
def test_gpt_gradients_equal_torch_in_float64(sizes) -> None:
    model = _gpt(**sizes)
    twin = TorchGPT.from_coursekit(model)
    for t in (8, 5, 1):  # a full block, a shorter one, a single token
        idx, y = _batch(t, t=t)
        loss, twin_loss = _step_both(model, twin, nn.SoftmaxCrossEntropyLoss(), idx, y)
        assert abs(loss - twin_loss) <= 1e-12 * abs(twin_loss)
        names = [name for name, _ in model.named_parameters()]
        for name, p, g in zip(names, model.parameters(), twin.ordered_gradients(), strict=True):
            assert rel_error(p.grad, g) < 1e-8, (t, name, rel_error(p.grad, g))


@pytest.mark.parametrize(("dtype", "tol"), [(F64, 1e-10), (torch.float32, 1e-5)])
def test_twenty_adam_steps_give_the_same_losses_as_torch(dtype, tol) -> None:
    model = _gpt(dtype=dtype)
    twin = TorchGPT.from_coursekit(model)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    twin_opt = torch.optim.Adam(twin.ordered_parameters(), lr=1e-2)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    for step in range(20):
        loss, twin_loss = _step_both(model, twin, loss_fn, *_batch(100 + step))
        assert abs(loss - twin_loss) <= tol * abs(twin_loss), (step, loss, twin_loss)
        opt.step()
        twin_opt.step()
    if dtype == F64:  # in float32, Adam's g / sqrt(v) magnifies rounding where g is near 0
        for p, (q, transposed) in zip(model.parameters(), twin._matched(), strict=True):
            assert rel_error(p.data, q.detach().T if transposed else q.detach()) < 1e-8


def test_gpt_backward_uses_no_autograd(monkeypatch) -> None:
    model = _gpt()
    idx, y = _batch(0)

    def forbidden(*args, **kwargs):
        raise AssertionError("autograd was used")

    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    with torch.no_grad():
        logits = model(idx)
        loss_fn(logits.reshape(-1, 11), y.reshape(-1))
        model.backward(loss_fn.backward().view(logits.shape))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_gpt_gradients_accumulate_until_zero_grad() -> None:
    model = _gpt()
    idx, _ = _batch(1)
    dout = _randn(3, 8, 11, seed=12)
    model(idx)
    model.backward(dout)
    first = [p.grad.clone() for p in model.parameters()]
    model(idx)
    model.backward(dout)
    for p, g in zip(model.parameters(), first, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)


def test_gpt_is_causal_a_later_token_changes_no_earlier_logit() -> None:
    model = _gpt()
    idx, _ = _batch(2)
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 11
    torch.testing.assert_close(model(idx)[:, :-1], model(changed)[:, :-1])


def test_gpt2_initialization() -> None:
    model = _gpt(n_layers=4, d_model=64)
    params = dict(model.named_parameters())
    assert params["blocks.0.attn.qkv.weight"].data.std().item() == pytest.approx(0.02, rel=0.05)
    assert params["blocks.3.proj.weight"].data.std().item() == pytest.approx(
        0.02 / math.sqrt(8), rel=0.05
    )
    assert (params["blocks.1.fc.bias"].data == 0).all()
    assert (params["ln_f.weight"].data == 1).all()


def test_generate_is_reproducible_and_crops_the_context() -> None:
    model = _gpt()
    start = torch.zeros(2, 1, dtype=torch.int64)
    a = model.generate(start, 12, generator=torch.Generator().manual_seed(3))
    b = model.generate(start, 12, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 13) and torch.equal(a, b)
    assert ((0 <= a) & (a < 11)).all()


def test_bad_inputs_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="multiple of n_heads"):
        MultiHeadAttention(6, 4)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        MultiHeadAttention(8, 2)(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="block_size=8"):
        _gpt()(torch.zeros(1, 9, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        _gpt()(torch.zeros(9, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="before forward"):
        _gpt().backward(torch.zeros(1, 2, 11))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpt_on_cuda_matches_the_cpu() -> None:
    cpu = _gpt()
    cuda = _gpt().to("cuda")
    idx, _ = _batch(3)
    dout = _randn(3, 8, 11, seed=13)
    for model, where in ((cpu, "cpu"), (cuda, "cuda")):
        model(idx.to(where))
        model.backward(dout.to(where))
    for p, q in zip(cpu.parameters(), cuda.parameters(), strict=True):
        assert q.grad.device.type == "cuda"
        assert rel_error(q.grad.cpu(), p.grad) < 1e-8


def test_the_modules_are_reachable_from_coursekit_nn():
    from coursekit import nn as ck_nn
    from coursekit import transformer

    for name in ("MultiHeadAttention", "TransformerBlock", "PositionalEmbedding", "GPT", "GELU"):
        assert getattr(ck_nn, name) is getattr(transformer, name)
    with pytest.raises(AttributeError, match="no attribute 'Transformer'"):
        ck_nn.Transformer  # noqa: B018
