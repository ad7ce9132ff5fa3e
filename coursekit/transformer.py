"""A small GPT built from hand-written backward passes (lesson 14).

Modules in the style of ``coursekit.nn`` (``forward`` keeps a cache, ``backward(dout)``
accumulates parameter gradients and returns dx), each one a few ``coursekit.functional``
pairs glued together with reshapes:

    GELU                  F.gelu
    MultiHeadAttention    Linear (q, k, v in one product), F.attention per head, Linear
    TransformerBlock      pre-norm: x + attn(LN(x)), then x + MLP(LN(x)), MLP = Linear, GELU, Linear
    PositionalEmbedding   a learned vector per position, added to the token vectors
    GPT                   token + position embeddings, blocks, a final LayerNorm, a Linear head

The layout follows GPT-2 (Radford et al., 2019) as Karpathy's nanoGPT writes it: one
(C, 3C) projection for queries, keys and values, heads split from its output, the
layer norm before each sub-layer (pre-norm, Xiong et al., 2020) and once more before the
head, and GPT-2's initialization. ``TorchGPT`` is the same model from ``torch.nn`` layers;
``TorchGPT.from_coursekit(model)`` copies the weights, so the two can be trained side
by side and compared step for step.

Shapes: B sequences of T tokens, model width C = d_model, H heads of width C / H.
"""

from __future__ import annotations

import math

import torch

import coursekit.functional as F
from coursekit import init
from coursekit.nn import (
    Embedding,
    LayerNorm,
    Linear,
    Module,
    Parameter,
    Sequential,
    _check_size,
    _dtype,
)

__all__ = [
    "GELU",
    "MultiHeadAttention",
    "TransformerBlock",
    "PositionalEmbedding",
    "GPT",
    "TorchGPT",
]


def _check_sequence(name: str, x: torch.Tensor, width: int) -> tuple[int, int, int]:
    """x is a float (B, T, width) tensor; returns (B, T, width)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != width:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: x must be (B, T, {width}), got {shape}")
    return x.shape[0], x.shape[1], x.shape[2]


class GELU(Module):
    """out = x Phi(x) (``approximate="tanh"``: GPT-2's tanh form); backward F.gelu_backward."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f'GELU: approximate must be "none" or "tanh", got {approximate!r}')
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.gelu_forward(x, approximate=self.approximate)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        return F.gelu_backward(dout, self._saved_cache()) if input_grad else None

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class MultiHeadAttention(Module):
    """Multi-head self-attention (Vaswani et al., 2017): x (B, T, C) -> (B, T, C).

    q, k, v = split(x W_qkv + b_qkv) into H heads of width C/H, each (B, H, T, C/H);
    o = attention(q, k, v) per head (F.attention_forward, causal by default);
    out = concat(heads) W_o + b_o. ``qkv.weight`` is (C, 3C): columns [0, C) make q,
    [C, 2C) k, [2C, 3C) v, each in H blocks of C/H, one per head.
    Backward runs the same steps in reverse: Linear, attention, Linear; the heads'
    dq, dk, dv are stacked back into the (B*T, 3C) gradient of the first product.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.d_model = _check_size("d_model", d_model)
        self.n_heads = _check_size("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        self.causal = bool(causal)
        options = {"bias": bias, "device": device, "dtype": dtype, "generator": generator}
        self.qkv = Linear(d_model, 3 * d_model, **options)
        self.proj = Linear(d_model, d_model, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = _check_sequence("MultiHeadAttention", x, self.d_model)
        h = self.n_heads
        qkv = self.qkv(x.reshape(b * t, c)).view(b, t, 3, h, c // h).permute(2, 0, 3, 1, 4)
        o, cache = F.attention_forward(qkv[0], qkv[1], qkv[2], causal=self.causal)
        self._cache = (cache, (b, t, c))
        return self.proj(o.transpose(1, 2).reshape(b * t, c)).view(b, t, c)

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        cache, (b, t, c) = self._saved_cache()
        h = self.n_heads
        do = self.proj.backward(dout.reshape(b * t, c))  # (B*T, C)
        dq, dk, dv = F.attention_backward(do.view(b, t, h, c // h).transpose(1, 2), cache)
        dqkv = torch.stack((dq, dk, dv)).permute(1, 3, 0, 2, 4).reshape(b * t, 3 * c)
        dx = self.qkv.backward(dqkv, input_grad=input_grad)
        return dx.view(b, t, c) if input_grad else None

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, causal={self.causal}"


class TransformerBlock(Module):
    """A pre-norm transformer block: x + attn(LN1(x)), then + MLP(LN2(.)), MLP = fc, GELU, proj.

    Backward: each residual sum sends dout both ways, so
    dx1 = dout + LN2'(MLP'(dout)) and dx = dx1 + LN1'(attn'(dx1)): the identity path
    carries dout to the block's input unchanged, whatever the branches do.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        mlp_ratio: int = 4,
        causal: bool = True,
        approximate: str = "none",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.d_model = _check_size("d_model", d_model)
        hidden = _check_size("mlp_ratio", mlp_ratio) * d_model
        options = {"device": device, "dtype": dtype}
        self.ln1 = LayerNorm(d_model, **options)
        self.attn = MultiHeadAttention(
            d_model, n_heads, causal=causal, generator=generator, **options
        )
        self.ln2 = LayerNorm(d_model, **options)
        self.fc = Linear(d_model, hidden, generator=generator, **options)
        self.act = GELU(approximate)
        self.proj = Linear(hidden, d_model, generator=generator, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = _check_sequence("TransformerBlock", x, self.d_model)
        x = x + self.attn(self.ln1(x))
        m = self.proj(self.act(self.fc(self.ln2(x).reshape(b * t, c))))
        self._cache = (b, t, c)
        return x + m.view(b, t, c)

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        b, t, c = self._saved_cache()
        dm = self.fc.backward(self.act.backward(self.proj.backward(dout.reshape(b * t, c))))
        dx1 = dout + self.ln2.backward(dm.view(b, t, c))
        return dx1 + self.ln1.backward(self.attn.backward(dx1)) if input_grad else None


class PositionalEmbedding(Module):
    """A learned vector per position: x (B, T, C) -> x + weight[:T], weight (max_len, C).

    Backward: dx = dout; the rows 0..T-1 of dweight are dout summed over the batch
    (F.embedding_backward with the positions 0..T-1 as ids).
    """

    def __init__(
        self,
        max_len: int,
        d_model: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.max_len = _check_size("max_len", max_len)
        self.d_model = _check_size("d_model", d_model)
        w = torch.empty(max_len, d_model, device=device, dtype=_dtype(dtype))
        self.weight = Parameter(init.normal_(w, 0.0, 0.02, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, t, _ = _check_sequence("PositionalEmbedding", x, self.d_model)
        if t > self.max_len:
            raise ValueError(f"PositionalEmbedding: T={t} is longer than max_len={self.max_len}")
        positions = torch.arange(t, device=self.weight.device)
        pos, self._cache = F.embedding_forward(positions, self.weight.data)
        return x + pos

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        cache = self._saved_cache()
        self.weight.accumulate_grad(F.embedding_backward(dout.sum(0), cache))
        return dout if input_grad else None

    def extra_repr(self) -> str:
        return f"{self.max_len}, {self.d_model}"


class GPT(Module):
    """A decoder-only transformer language model: ids (B, T) -> logits (B, T, vocab_size).

    x = tok(ids) + pos; x = block_L(...block_1(x)); logits = LN_f(x) W_head + b_head.
    GPT-2's initialization: weights from N(0, 0.02), biases 0, and the two projections
    that write into the residual stream (``attn.proj``, ``proj``) from
    N(0, 0.02 / sqrt(2 n_layers)), so the stream's variance does not grow with depth.
    ``backward(dlogits)`` fills every parameter's gradient and returns None (ids get none).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        mlp_ratio: int = 4,
        approximate: str = "none",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = _check_size("vocab_size", vocab_size)
        self.block_size = _check_size("block_size", block_size)
        self.n_layers = _check_size("n_layers", n_layers)
        options = {"device": device, "dtype": dtype, "generator": generator}
        self.tok = Embedding(vocab_size, d_model, **options)
        self.pos = PositionalEmbedding(block_size, d_model, **options)
        self.blocks = Sequential(
            *(
                TransformerBlock(d_model, n_heads, mlp_ratio, True, approximate, **options)
                for _ in range(n_layers)
            )
        )
        self.ln_f = LayerNorm(d_model, device=device, dtype=dtype)
        self.head = Linear(d_model, vocab_size, **options)
        self._init_gpt2(generator)

    def _init_gpt2(self, generator: torch.Generator | None) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.n_layers)
        for name, p in self.named_parameters():
            if name.startswith("ln") or ".ln" in name or name.startswith("pos."):
                continue  # layer norms keep 1 and 0; positions are drawn already
            if name.endswith("bias"):
                p.data.zero_()
            else:
                std = residual_std if name.endswith("proj.weight") else 0.02
                init.normal_(p.data, 0.0, std, generator=generator)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"GPT: idx must be (B, T) int64 ids, got {shape}")
        b, t = idx.shape
        if t > self.block_size:
            raise ValueError(f"GPT: T={t} is longer than block_size={self.block_size}")
        x = self.ln_f(self.blocks(self.pos(self.tok(idx))))
        self._cache = x.shape
        return self.head(x.reshape(b * t, -1)).view(b, t, self.vocab_size)

    def backward(self, dout: torch.Tensor, input_grad: bool = False) -> None:
        b, t, c = self._saved_cache()
        dx = self.head.backward(dout.reshape(b * t, self.vocab_size)).view(b, t, c)
        dx = self.blocks.backward(self.ln_f.backward(dx), input_grad=True)
        self.tok.backward(self.pos.backward(dx))
        return None

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Append max_new_tokens ids to idx (B, T), each drawn from softmax(logits / temperature).

        The context is cropped to the last block_size ids.
        """
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size :])[:, -1] / temperature
            probs = F.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


# ---------------------------------------------------------------------------
# The same model from torch.nn layers, for step-for-step comparisons
# ---------------------------------------------------------------------------


class _TorchBlock(torch.nn.Module):
    def __init__(self, d_model: int, n_heads: int, hidden: int, approximate: str) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = torch.nn.LayerNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.attn_proj = torch.nn.Linear(d_model, d_model)
        self.ln2 = torch.nn.LayerNorm(d_model)
        self.fc = torch.nn.Linear(d_model, hidden)
        self.act = torch.nn.GELU(approximate=approximate)
        self.proj = torch.nn.Linear(hidden, d_model)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).view(b, t, 3, h, c // h).permute(2, 0, 3, 1, 4)
        s = q @ k.transpose(-2, -1) / math.sqrt(c // h)
        above = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        p = torch.softmax(s.masked_fill(above, float("-inf")), dim=-1)
        return self.attn_proj((p @ v).transpose(1, 2).reshape(b, t, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))
        return x + self.proj(self.act(self.fc(self.ln2(x))))


class TorchGPT(torch.nn.Module):
    """``GPT`` written with torch.nn layers and torch ops, differentiated by torch.autograd.

    Attention is the plain maths (softmax of masked scores, times v), not a fused kernel.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        mlp_ratio: int = 4,
        approximate: str = "none",
    ) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(vocab_size, d_model)
        self.pos = torch.nn.Parameter(torch.zeros(block_size, d_model))
        self.blocks = torch.nn.ModuleList(
            _TorchBlock(d_model, n_heads, mlp_ratio * d_model, approximate) for _ in range(n_layers)
        )
        self.ln_f = torch.nn.LayerNorm(d_model)
        self.head = torch.nn.Linear(d_model, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    @classmethod
    def from_coursekit(cls, model: GPT) -> TorchGPT:
        """A TorchGPT with the same sizes, dtype, device and weights as ``model``."""
        first = model.blocks[0]
        twin = cls(
            model.vocab_size,
            model.block_size,
            model.tok.embedding_dim,
            first.attn.n_heads,
            model.n_layers,
            first.fc.out_features // first.d_model,
            first.act.approximate,
        ).to(device=model.tok.weight.device, dtype=model.tok.weight.dtype)
        with torch.no_grad():
            for ours, (theirs, transposed) in zip(model.parameters(), twin._matched(), strict=True):
                theirs.copy_(ours.data.T if transposed else ours.data)
        return twin

    def _matched(self) -> list[tuple[torch.nn.Parameter, bool]]:
        """Parameters in ``GPT.parameters()``'s order, each with "is a transposed Linear weight"."""
        pairs = [(self.tok.weight, False), (self.pos, False)]
        for blk in self.blocks:
            for layer in (blk.ln1, blk.qkv, blk.attn_proj, blk.ln2, blk.fc, blk.proj):
                linear = isinstance(layer, torch.nn.Linear)
                pairs += [(layer.weight, linear), (layer.bias, False)]
        for layer in (self.ln_f, self.head):
            pairs += [(layer.weight, isinstance(layer, torch.nn.Linear)), (layer.bias, False)]
        return pairs

    def ordered_gradients(self) -> list[torch.Tensor]:
        """Each parameter's .grad in ``GPT.parameters()``'s order, laid out as coursekit's."""
        return [p.grad.T if transposed else p.grad for p, transposed in self._matched()]

    def ordered_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters in ``GPT.parameters()``'s order (for an optimizer)."""
        return [p for p, _ in self._matched()]
