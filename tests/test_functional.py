"""coursekit.functional: every backward against torch.autograd, plus edge cases.

The comparisons run in float64 (relative error below 1e-8) and in float32 (against
the float64 reference, looser tolerance). TestAgainstAutogradOnCuda repeats every
comparison of TestAgainstAutograd on a CUDA device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import coursekit.functional as F
from tests._autograd_ref import autograd_reference, compare_with_autograd, rel_error

TOL = {torch.float64: 1e-8, torch.float32: 5e-5}
DTYPES = [pytest.param(torch.float64, id="float64"), pytest.param(torch.float32, id="float32")]


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Ints:
    """An int64 input tensor of the given shape with values in [0, high)."""

    high: int
    shape: tuple[int, ...]


def make_inputs(specs: list[Any], device: str, dtype: torch.dtype, seed: int = 0) -> list[Any]:
    """Random inputs: a shape gives a standard normal tensor, Ints(...) class ids.

    Values are drawn on the CPU in float64 and then converted, so every device and
    dtype sees the same numbers.
    """
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for spec in specs:
        if isinstance(spec, Ints):
            t = torch.randint(0, spec.high, spec.shape, generator=gen)
        else:
            t = torch.randn(spec, generator=gen, dtype=torch.float64).to(dtype)
        inputs.append(t.to(device))
    return inputs


# ------------------------------------------------------------- references written with torch
def linear_ref(x, w, b):
    return x @ w + b


def layernorm_ref(x, gamma, beta, eps=1e-5):
    return tF.layer_norm(x, x.shape[-1:], gamma, beta, eps)


def rnn_step_ref(x, h_prev, wx, wh, b):
    return torch.tanh(x @ wx + h_prev @ wh + b)


def rnn_ref(x, h0, wx, wh, b):
    """The RNN unrolled as a Python loop of torch ops; autograd does BPTT through it."""
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ wx + h @ wh + b)
        hs.append(h)
    return torch.stack(hs, dim=1)


def softmax_ref(x, dim=-1):
    return torch.softmax(x, dim=dim)


def attention_ref(q, k, v, causal=False):
    return tF.scaled_dot_product_attention(q, k, v, is_causal=causal)


def lstm_ref(x, h0, c0, wx, wh, b):
    """The LSTM unrolled as a Python loop of torch ops (gates i, f, g, o)."""
    h, c, hs = h0, c0, []
    for t in range(x.shape[1]):
        i, f, g, o = (x[:, t] @ wx + h @ wh + b).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs, dim=1)


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One forward/backward pair on inputs of given shapes, and its torch reference."""

    op: str
    specs: tuple[Any, ...]
    reference: Callable[..., torch.Tensor]
    options: dict[str, Any] = field(default_factory=dict)
    wrt: tuple[int, ...] | None = None  # inputs that get a gradient (default: the float ones)
    dout: float | None = None  # upstream gradient of a loss (None: a random tensor)

    @property
    def id(self) -> str:
        shapes = ",".join(
            f"int{s.shape}" if isinstance(s, Ints) else str(tuple(s)) for s in self.specs
        )
        opts = "".join(f",{k}={v}" for k, v in self.options.items())
        return f"{self.op}[{shapes}{opts}]".replace(" ", "")

    def run(self, device: str, dtype: torch.dtype, seed: int = 0) -> None:
        inputs = make_inputs(list(self.specs), device, dtype, seed)
        compare_with_autograd(
            getattr(F, f"{self.op}_forward"),
            getattr(F, f"{self.op}_backward"),
            self.reference,
            inputs,
            tol=TOL[dtype],
            wrt=self.wrt,
            dout=self.dout,
            options=self.options,
        )


CASES = [
    # elementwise: batch of one, a size-1 feature dim, more than two dims
    Case("relu", ((4, 7),), torch.relu),
    Case("relu", ((1, 1),), torch.relu),
    Case("sigmoid", ((4, 7),), torch.sigmoid),
    Case("sigmoid", ((1,),), torch.sigmoid),
    Case("tanh", ((2, 3, 5),), torch.tanh),
    Case("tanh", ((1, 1),), torch.tanh),
    Case("leaky_relu", ((4, 7),), tF.leaky_relu),
    Case("leaky_relu", ((3, 1),), tF.leaky_relu, {"negative_slope": 0.2}),
    # linear: non-square weights, batch of one, size-1 dims
    Case("linear", ((5, 3), (3, 4), (4,)), linear_ref),
    Case("linear", ((1, 6), (6, 2), (2,)), linear_ref),
    Case("linear", ((7, 1), (1, 1), (1,)), linear_ref),
    # losses: dout is the upstream gradient of the scalar
    Case("mse", ((6, 3), (6, 3)), tF.mse_loss, wrt=(0,), dout=0.7),
    Case("mse", ((1,), (1,)), tF.mse_loss, wrt=(0,), dout=1.0),
    Case("softmax_cross_entropy", ((5, 4), Ints(4, (5,))), tF.cross_entropy, wrt=(0,), dout=1.3),
    Case("softmax_cross_entropy", ((1, 3), Ints(3, (1,))), tF.cross_entropy, wrt=(0,), dout=1.0),
    Case("softmax_cross_entropy", ((4, 1), Ints(1, (4,))), tF.cross_entropy, wrt=(0,), dout=1.0),
    # layer norm over the last dim, of 2-D and 3-D inputs
    Case("layernorm", ((4, 6), (6,), (6,)), layernorm_ref),
    Case("layernorm", ((2, 3, 5), (5,), (5,)), layernorm_ref, {"eps": 1e-3}),
    Case("layernorm", ((1, 3), (3,), (3,)), layernorm_ref),
    # convolution and pooling (the stride x padding grid has its own test)
    Case("conv2d", ((2, 3, 7, 9), (4, 3, 3, 2), (4,)), tF.conv2d, {"stride": 2, "padding": 1}),
    Case("conv2d", ((1, 1, 1, 1), (1, 1, 1, 1), (1,)), tF.conv2d),
    Case("conv2d", ((1, 2, 5, 6), (3, 2, 1, 1), (3,)), tF.conv2d, {"stride": (2, 1)}),
    Case("maxpool2d", ((2, 3, 7, 9),), tF.max_pool2d, {"kernel_size": 3, "stride": 2}),
    Case("maxpool2d", ((1, 2, 4, 6),), tF.max_pool2d, {"kernel_size": 2}),
    Case("maxpool2d", ((1, 1, 5, 4),), tF.max_pool2d, {"kernel_size": (2, 3), "stride": 1}),
    # recurrence
    Case("rnn_step", ((3, 4), (3, 5), (4, 5), (5, 5), (5,)), rnn_step_ref),
    Case("rnn_step", ((1, 1), (1, 1), (1, 1), (1, 1), (1,)), rnn_step_ref),
    Case("rnn", ((2, 6, 3), (2, 4), (3, 4), (4, 4), (4,)), rnn_ref),
    Case("rnn", ((1, 1, 1), (1, 1), (1, 1), (1, 1), (1,)), rnn_ref),
    Case("lstm", ((2, 6, 3), (2, 4), (2, 4), (3, 16), (4, 16), (16,)), lstm_ref),
    Case("lstm", ((1, 1, 1), (1, 1), (1, 1), (1, 4), (1, 4), (4,)), lstm_ref),
    # look-up table: 5 rows, 12 look-ups, so rows repeat
    Case("embedding", (Ints(5, (3, 4)), (5, 3)), tF.embedding, wrt=(1,)),
    Case("embedding", (Ints(2, (1,)), (2, 1)), tF.embedding, wrt=(1,)),
    # attention pieces (more in tests/test_attention.py): Tq != Tk, T = 1, head dims, causal
    Case("softmax", ((4, 7),), softmax_ref),
    Case("softmax", ((2, 3, 5),), softmax_ref, {"dim": 1}),
    Case("gelu", ((4, 7),), tF.gelu),
    Case("gelu", ((2, 3, 5),), tF.gelu, {"approximate": "tanh"}),
    Case("attention", ((2, 5, 4), (2, 3, 4), (2, 3, 6)), attention_ref),
    Case("attention", ((2, 2, 6, 3), (2, 2, 6, 3), (2, 2, 6, 3)), attention_ref, {"causal": True}),
    Case("attention", ((1, 2), (1, 2), (1, 1)), attention_ref, {"causal": True}),
]
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


# --------------------------------------------------- the comparisons, on CPU (and on CUDA below)
class TestAgainstAutograd:
    """Forward values and every gradient against torch.autograd on ``device``."""

    device = "cpu"

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("case", CASE_PARAMS)
    def test_case(self, case: Case, dtype: torch.dtype) -> None:
        for seed in (0, 1):
            case.run(self.device, dtype, seed)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("stride", [1, 2, 3])
    @pytest.mark.parametrize("padding", [0, 1, 2])
    def test_conv2d_stride_padding(self, stride: int, padding: int, dtype: torch.dtype) -> None:
        # odd sizes, a non-square image and a non-square kernel
        x, w, b = make_inputs([(2, 3, 7, 9), (4, 3, 3, 2), (4,)], self.device, dtype)
        options = {"stride": stride, "padding": padding}
        compare_with_autograd(
            F.conv2d_forward,
            F.conv2d_backward,
            tF.conv2d,
            [x, w, b],
            tol=TOL[dtype],
            options=options,
        )

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_conv2d_pairs_of_stride_and_padding(self, dtype: torch.dtype) -> None:
        x, w, b = make_inputs([(1, 2, 6, 5), (3, 2, 2, 3), (3,)], self.device, dtype)
        options = {"stride": (2, 1), "padding": (0, 2)}
        compare_with_autograd(
            F.conv2d_forward,
            F.conv2d_backward,
            tF.conv2d,
            [x, w, b],
            tol=TOL[dtype],
            options=options,
        )

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize(
        ("x_shape", "w_shape", "stride", "padding"),
        [
            ((2, 3, 8, 7), (4, 3, 5, 5), 2, 2),  # kernel 5, one row and column no window reads
            ((3, 3, 9, 10), (2, 3, 5, 3), (2, 3), (1, 2)),  # unequal strides and paddings
            ((1, 3, 5, 5), (1, 3, 5, 5), 1, 0),  # the kernel covers the image: a 1x1 output
            ((2, 1, 7, 7), (3, 1, 3, 3), 3, 0),  # stride 3 leaves one row and column unread
            ((2, 2, 11, 4), (3, 2, 2, 4), (3, 1), (2, 0)),  # kernel as wide as the image
            ((1, 3, 4, 4), (2, 3, 1, 1), 2, 2),  # 1x1 kernel reading padding only at the border
        ],
    )
    def test_conv2d_awkward_shapes(self, x_shape, w_shape, stride, padding, dtype) -> None:
        x, w, b = make_inputs([x_shape, w_shape, w_shape[:1]], self.device, dtype, seed=3)
        compare_with_autograd(
            F.conv2d_forward,
            F.conv2d_backward,
            tF.conv2d,
            [x, w, b],
            tol=TOL[dtype],
            options={"stride": stride, "padding": padding},
        )

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_maxpool_ties_route_like_torch(self, dtype: torch.dtype) -> None:
        # Every window of a constant image is a tie; torch picks one input per window.
        x = torch.zeros(2, 3, 6, 5, dtype=dtype, device=self.device)
        x[0, 0, :2, :2] = 1.0  # a tie between four maxima in one window
        dout = make_inputs([(2, 3, 2, 2)], self.device, dtype)[0]
        xs = x.clone().requires_grad_(True)
        tF.max_pool2d(xs, 3, stride=2).backward(dout)
        out, cache = F.maxpool2d_forward(x, 3, stride=2)
        assert torch.equal(out, tF.max_pool2d(x, 3, stride=2))
        assert torch.equal(F.maxpool2d_backward(dout, cache), xs.grad)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_maxpool_overlapping_windows_add_their_gradients(self, dtype: torch.dtype) -> None:
        # x[2, 2] is the maximum of all four 3x3 windows (stride 2) of a 5x5 image.
        x = make_inputs([(1, 1, 5, 5)], self.device, dtype)[0] * 0.1
        x[0, 0, 2, 2] = 10.0
        out, cache = F.maxpool2d_forward(x, 3, stride=2)
        assert out.shape == (1, 1, 2, 2) and bool((out == 10).all())
        dout = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=dtype, device=self.device)
        dx = F.maxpool2d_backward(dout, cache)
        assert dx[0, 0, 2, 2].item() == 10.0  # 1 + 2 + 3 + 4: added, not overwritten
        assert dx.count_nonzero().item() == 1
        compare_with_autograd(
            F.maxpool2d_forward,
            F.maxpool2d_backward,
            tF.max_pool2d,
            [x],
            tol=TOL[dtype],
            dout=dout,
            options={"kernel_size": 3, "stride": 2},
        )

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_embedding_repeated_indices_accumulate(self, dtype: torch.dtype) -> None:
        idx = torch.tensor([[1, 3, 1], [1, 0, 3]], device=self.device)
        w = make_inputs([(5, 2)], self.device, dtype)[0]
        compare_with_autograd(
            F.embedding_forward,
            F.embedding_backward,
            tF.embedding,
            [idx, w],
            tol=TOL[dtype],
            wrt=(1,),
        )
        # with dout = 1 everywhere, row v of dw counts how often v was looked up
        out, cache = F.embedding_forward(idx, w)
        dw = F.embedding_backward(torch.ones_like(out), cache)
        counts = torch.tensor([1, 3, 0, 2, 0], dtype=dtype, device=self.device)
        torch.testing.assert_close(dw, counts[:, None].expand(5, 2))

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_rnn_gradient_flows_back_from_later_steps(self, dtype: torch.dtype) -> None:
        # A loss on the last output only: every earlier input still gets a gradient.
        inputs = make_inputs([(2, 5, 3), (2, 4), (3, 4), (4, 4), (4,)], self.device, dtype)
        dout = torch.zeros(2, 5, 4, dtype=dtype, device=self.device)
        dout[:, -1] = 1.0
        _, (dx, dh0, *_) = compare_with_autograd(
            F.rnn_forward, F.rnn_backward, rnn_ref, inputs, tol=TOL[dtype], dout=dout
        )
        assert bool((dx[:, 0].abs().sum(-1) > 0).all()) and bool(dh0.abs().sum() > 0)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_rnn_equals_rnn_steps_chained(self, dtype: torch.dtype) -> None:
        x, h0, wx, wh, b = make_inputs(
            [(3, 4, 2), (3, 5), (2, 5), (5, 5), (5,)], self.device, dtype
        )
        hs, _ = F.rnn_forward(x, h0, wx, wh, b)
        h = h0
        for t in range(4):
            h, _ = F.rnn_step_forward(x[:, t], h, wx, wh, b)
            assert rel_error(hs[:, t], h) < TOL[dtype]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize(
        ("shape", "momentum", "eps"), [((6, 4), 0.1, 1e-5), ((3, 1), 0.3, 1e-3), ((9, 3), 1.0, 0.1)]
    )
    def test_batchnorm_train(self, shape, momentum, eps, dtype: torch.dtype) -> None:
        x, gamma, beta, mean0 = make_inputs(
            [shape, shape[1:], shape[1:], shape[1:]], self.device, dtype
        )
        x = 3 * x + 2  # a mean and a scale for the normalization to remove
        var0 = torch.rand(shape[1:], dtype=dtype, device=self.device) + 0.5
        ours_mean, ours_var = mean0.clone(), var0.clone()
        torch_mean, torch_var = mean0.double().clone(), var0.double().clone()  # float64 reference

        def reference(x, gamma, beta):
            return tF.batch_norm(x, torch_mean, torch_var, gamma, beta, True, momentum, eps)

        def forward(x, gamma, beta):
            return F.batchnorm_forward(x, gamma, beta, ours_mean, ours_var, True, momentum, eps)

        compare_with_autograd(
            forward, F.batchnorm_backward, reference, [x, gamma, beta], tol=TOL[dtype]
        )
        # running statistics: torch's update (unbiased variance), done in place
        assert rel_error(ours_mean, torch_mean) < TOL[dtype]
        assert rel_error(ours_var, torch_var) < TOL[dtype]
        expected_var = (1 - momentum) * var0 + momentum * x.var(0, correction=1)
        assert rel_error(ours_var, expected_var) < TOL[dtype]

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_batchnorm_train_without_running_statistics(self, dtype: torch.dtype) -> None:
        x, gamma, beta = make_inputs([(5, 3), (3,), (3,)], self.device, dtype)

        def forward(x, gamma, beta):
            return F.batchnorm_forward(x, gamma, beta, None, None)

        def reference(x, gamma, beta):
            return tF.batch_norm(x, None, None, gamma, beta, training=True)

        compare_with_autograd(
            forward, F.batchnorm_backward, reference, [x, gamma, beta], tol=TOL[dtype]
        )

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_batchnorm_eval_uses_running_statistics(self, dtype: torch.dtype) -> None:
        x, gamma, beta, mean = make_inputs([(4, 3), (3,), (3,), (3,)], self.device, dtype)
        var = torch.rand(3, dtype=dtype, device=self.device) + 0.5
        mean_before, var_before = mean.clone(), var.clone()

        def forward(x, gamma, beta):
            return F.batchnorm_forward(x, gamma, beta, mean, var, train=False)

        def reference(x, gamma, beta):
            return tF.batch_norm(x, mean.double(), var.double(), gamma, beta, training=False)

        compare_with_autograd(
            forward, F.batchnorm_backward, reference, [x, gamma, beta], tol=TOL[dtype]
        )
        assert torch.equal(mean, mean_before) and torch.equal(var, var_before)
        # a batch of one is fine in eval mode
        out, _ = F.batchnorm_forward(x[:1], gamma, beta, mean, var, train=False)
        assert out.shape == (1, 3)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("p", [0.3, 0.8])
    def test_dropout_matches_autograd_with_the_same_mask(
        self, p: float, dtype: torch.dtype
    ) -> None:
        x = make_inputs([(6, 5)], self.device, dtype)[0]
        # the documented rule, with a generator seeded like the one given to the op
        gen = torch.Generator(device=self.device).manual_seed(7)
        keep = torch.rand(x.shape, generator=gen, dtype=dtype, device=self.device) >= p

        def reference(x):
            return x * keep / (1 - p)

        def forward(x):
            gen = torch.Generator(device=self.device).manual_seed(7)
            return F.dropout_forward(x, p, train=True, generator=gen)

        out, _ = compare_with_autograd(forward, F.dropout_backward, reference, [x], tol=TOL[dtype])
        assert bool(((out == 0) == ~keep).all())  # x has no zeros, so zeros are the dropped ones


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
class TestAgainstAutogradOnCuda(TestAgainstAutograd):
    """Every comparison above, on the GPU, in float32 and float64."""

    device = "cuda"

    @pytest.fixture(autouse=True)
    def _full_precision_float32(self):
        """TF32 would round float32 products to about 1e-3; compare exact float32 instead."""
        saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            with torch.backends.cudnn.flags(enabled=False):  # torch's own conv, without TF32
                yield
        finally:
            torch.set_float32_matmul_precision(saved)

    def test_outputs_stay_on_the_gpu(self) -> None:
        x, w, b = make_inputs([(3, 2), (2, 4), (4,)], "cuda", torch.float32)
        out, cache = F.linear_forward(x, w, b)
        assert out.is_cuda and all(
            g.is_cuda for g in F.linear_backward(torch.ones_like(out), cache)
        )

    def test_generator_on_another_device_is_rejected(self) -> None:
        x = torch.ones(3, device="cuda")
        with pytest.raises(ValueError, match="generator"):
            F.dropout_forward(x, 0.5, generator=torch.Generator())

    def test_cpu_and_cuda_agree(self) -> None:
        for case in CASES:
            gpu = make_inputs(list(case.specs), "cuda", torch.float64)
            cpu = make_inputs(list(case.specs), "cpu", torch.float64)
            forward = getattr(F, f"{case.op}_forward")
            out_gpu, _ = forward(*gpu, **case.options)
            out_cpu, _ = forward(*cpu, **case.options)
            assert rel_error(out_gpu.cpu(), out_cpu) < 1e-12, case.id


# ------------------------------------------------------------ grad mode and input requirements
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_works_under_no_grad(case: Case) -> None:
    with torch.no_grad():
        case.run("cpu", torch.float64)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_same_numbers_when_inputs_require_grad(case: Case) -> None:
    plain = make_inputs(list(case.specs), "cpu", torch.float64)
    tracked = [t.clone().requires_grad_(t.is_floating_point()) for t in plain]
    forward = getattr(F, f"{case.op}_forward")
    backward = getattr(F, f"{case.op}_backward")
    results = []
    for inputs in (plain, tracked):
        out, cache = forward(*inputs, **case.options)
        dout = case.dout if case.dout is not None else torch.ones_like(out)
        grads = backward(dout, cache)
        results.append([out, *(grads if isinstance(grads, tuple) else (grads,))])
    for a, b in zip(*results, strict=True):
        assert rel_error(a, b) < 1e-14


def test_loss_backward_accepts_a_0_dim_tensor_dout() -> None:
    logits, y = make_inputs([(4, 3), Ints(3, (4,))], "cpu", torch.float64)
    _, cache = F.softmax_cross_entropy_forward(logits, y)
    as_float = F.softmax_cross_entropy_backward(0.5, cache)
    as_tensor = F.softmax_cross_entropy_backward(torch.tensor(0.5, dtype=torch.float64), cache)
    torch.testing.assert_close(as_float, as_tensor, rtol=0, atol=0)
    pred, target = make_inputs([(4, 3), (4, 3)], "cpu", torch.float32)
    _, cache = F.mse_forward(pred, target)
    dpred = F.mse_backward(torch.tensor(2.0, dtype=torch.float64), cache)
    assert dpred.dtype == torch.float32
    torch.testing.assert_close(dpred, F.mse_backward(2.0, cache))


# --------------------------------------------------------------------------- dropout
def test_dropout_is_reproducible_with_a_generator() -> None:
    x = torch.randn(50, 20)
    out1, _ = F.dropout_forward(x, 0.5, generator=torch.Generator().manual_seed(3))
    out2, _ = F.dropout_forward(x, 0.5, generator=torch.Generator().manual_seed(3))
    out3, _ = F.dropout_forward(x, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_preserves_the_mean(p: float) -> None:
    x = torch.full((200_000,), 2.0, dtype=torch.float64)
    out, mask = F.dropout_forward(x, p, generator=torch.Generator().manual_seed(0))
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - p) < 0.006  # more than 5 standard deviations
    assert abs(out.mean().item() - 2.0) < 0.02
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0 / (1 - p)))
    dx = F.dropout_backward(torch.ones_like(x), mask)
    assert abs(dx.mean().item() - 1.0) < 0.01


@pytest.mark.parametrize("options", [{"p": 0.5, "train": False}, {"p": 0.0}])
def test_dropout_is_the_identity_in_eval_mode_and_for_p_0(options: dict[str, Any]) -> None:
    x = torch.randn(4, 5)
    out, cache = F.dropout_forward(x, **options)
    dout = torch.randn(4, 5)
    assert torch.equal(out, x) and torch.equal(F.dropout_backward(dout, cache), dout)


def test_dropout_with_p_1_drops_everything() -> None:
    x = torch.randn(4, 5, dtype=torch.float64)
    out, cache = F.dropout_forward(x, 1.0)
    dx = F.dropout_backward(torch.ones_like(x), cache)
    assert torch.equal(out, torch.zeros_like(x)) and torch.equal(dx, torch.zeros_like(x))
    assert bool(torch.isfinite(out).all())


# ---------------------------------------------------------------- property-based (hypothesis)
_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
_values = st.floats(-60, 60, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(["relu", "sigmoid", "tanh", "leaky_relu"]),
    x=hnp.arrays(np.float64, _shapes, elements=_values),
    slope=st.floats(0, 1),
)
def test_elementwise_ops_match_autograd(op: str, x: np.ndarray, slope: float) -> None:
    options = {"negative_slope": slope} if op == "leaky_relu" else {}
    reference = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(
        op, tF.leaky_relu
    )
    compare_with_autograd(
        getattr(F, f"{op}_forward"),
        getattr(F, f"{op}_backward"),
        reference,
        [torch.from_numpy(x)],
        tol=1e-8,
        options=options,
    )


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7)),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_linear_matches_autograd(sizes: tuple[int, int, int], seed: int, scale: float) -> None:
    n, d, h = sizes
    inputs = [t * scale for t in make_inputs([(n, d), (d, h), (h,)], "cpu", torch.float64, seed)]
    compare_with_autograd(F.linear_forward, F.linear_backward, linear_ref, inputs, tol=1e-8)


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 6),
    c=st.integers(1, 6),
    dout=st.floats(-3, 3, allow_nan=False),
)
def test_softmax_cross_entropy_matches_autograd(data, n: int, c: int, dout: float) -> None:
    logits = data.draw(hnp.arrays(np.float64, (n, c), elements=st.floats(-100, 100)))
    y = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    compare_with_autograd(
        F.softmax_cross_entropy_forward,
        F.softmax_cross_entropy_backward,
        tF.cross_entropy,
        [torch.from_numpy(logits), torch.from_numpy(y)],
        tol=1e-8,
        wrt=(0,),
        dout=dout,
    )


# --------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_is_stable_at_extremes(dtype: torch.dtype) -> None:
    x = torch.tensor([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, cache = F.sigmoid_forward(x)
        dx = F.sigmoid_backward(torch.ones_like(x), cache)
    assert bool(torch.isfinite(s).all()) and bool(torch.isfinite(dx).all())
    assert s[0].item() == 0.0 and s[2].item() == 0.5 and s[-1].item() == 1.0
    torch.testing.assert_close(s, torch.sigmoid(x))
    assert dx[0].item() == 0.0 and dx[2].item() == 0.25 and dx[-1].item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_cross_entropy_is_stable_for_huge_logits(dtype: torch.dtype) -> None:
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    y = torch.tensor([0, 2])
    loss, cache = F.softmax_cross_entropy_forward(logits, y)
    dlogits = F.softmax_cross_entropy_backward(1.0, cache)
    # row 0 is certain and right (loss 0); row 1 splits between two classes (loss log 2)
    assert torch.isfinite(loss) and abs(loss.item() - np.log(2) / 2) < 1e-6
    torch.testing.assert_close(loss, tF.cross_entropy(logits, y))
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.25, -0.25]], dtype=dtype)
    torch.testing.assert_close(dlogits, expected)


def test_softmax_rows_sum_to_one_for_huge_inputs() -> None:
    x = torch.tensor([[1e4, 0.0, -1e4], [1.0, 2.0, 3.0]])
    p = F.softmax(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(2))
    torch.testing.assert_close(p, torch.softmax(x, dim=-1))
    torch.testing.assert_close(F.softmax(x, dim=0), torch.softmax(x, dim=0))


# --------------------------------------------------------------------------- bad input
def _t(*shape: int, dtype: torch.dtype = torch.float64, device: str = "cpu") -> torch.Tensor:
    return torch.ones(shape, dtype=dtype, device=device)


_LONG = torch.int64
BAD_INPUTS = [
    # (call, exception, fragments the message must contain)
    (lambda: F.linear_forward(_t(5, 2), _t(3, 4), _t(4)), ValueError, ["w", "(3, 4)", "(5, 2)"]),
    (lambda: F.linear_forward(_t(5, 2), _t(2, 4), _t(3)), ValueError, ["b", "(3,)", "(2, 4)"]),
    (lambda: F.linear_forward(_t(5), _t(5, 4), _t(4)), ValueError, ["x", "(5,)", "2-D"]),
    (lambda: F.linear_forward(_t(5, 2, dtype=_LONG), _t(2, 4), _t(4)), TypeError, ["x", "int64"]),
    (lambda: F.linear_forward(_t(5, 2), _t(2, 4, dtype=torch.float32), _t(4)), TypeError, ["w"]),
    (lambda: F.linear_forward(_t(5, 2), _t(2, 4, device="meta"), _t(4)), ValueError, ["w", "meta"]),
    (lambda: F.linear_forward([[1.0]], _t(1, 1), _t(1)), TypeError, ["x", "list"]),
    (lambda: F.relu_forward(_t(3, dtype=torch.int32)), TypeError, ["x", "int32"]),
    (lambda: F.leaky_relu_forward(_t(3), "0.1"), TypeError, ["negative_slope"]),
    (lambda: F.mse_forward(_t(4, 3), _t(3, 4)), ValueError, ["target", "(3, 4)", "(4, 3)"]),
    (
        lambda: F.softmax_cross_entropy_forward(_t(3, 4), _t(3, dtype=torch.int32)),
        TypeError,
        ["y", "int32"],
    ),
    (
        lambda: F.softmax_cross_entropy_forward(_t(3, 4), _t(2, dtype=_LONG)),
        ValueError,
        ["y", "(2,)", "(3, 4)"],
    ),
    (
        lambda: F.softmax_cross_entropy_forward(_t(3, 4), torch.tensor([0, 4, 1])),
        ValueError,
        ["y", "[0, 4)"],
    ),
    (lambda: F.dropout_forward(_t(3), 1.5), ValueError, ["p", "1.5"]),
    (lambda: F.dropout_forward(_t(3), "half"), TypeError, ["p"]),
    (
        lambda: F.batchnorm_forward(_t(4, 3), _t(2), _t(3), _t(3), _t(3)),
        ValueError,
        ["gamma", "(2,)", "(4, 3)"],
    ),
    (
        lambda: F.batchnorm_forward(_t(1, 3), _t(3), _t(3), _t(3), _t(3)),
        ValueError,
        ["x", "(1, 3)", "at least 2"],
    ),
    (
        lambda: F.batchnorm_forward(_t(4, 3), _t(3), _t(3), None, None, train=False),
        ValueError,
        ["running_mean"],
    ),
    (lambda: F.layernorm_forward(_t(4, 3), _t(4), _t(3)), ValueError, ["gamma", "(4,)", "(4, 3)"]),
    (
        lambda: F.conv2d_forward(_t(1, 3, 5, 5), _t(2, 4, 3, 3), _t(2)),
        ValueError,
        ["w", "(2, 4, 3, 3)", "(1, 3, 5, 5)"],
    ),
    (
        lambda: F.conv2d_forward(_t(1, 3, 2, 5), _t(2, 3, 3, 3), _t(2)),
        ValueError,
        ["kernel", "(1, 3, 2, 5)"],
    ),
    (
        lambda: F.conv2d_forward(_t(1, 3, 5, 5), _t(2, 3, 3, 3), _t(2), stride=0),
        ValueError,
        ["stride"],
    ),
    (lambda: F.conv2d_forward(_t(3, 5, 5), _t(2, 3, 3, 3), _t(2)), ValueError, ["x", "4-D"]),
    (lambda: F.maxpool2d_forward(_t(1, 1, 4, 4), 5), ValueError, ["kernel", "(1, 1, 4, 4)"]),
    (lambda: F.maxpool2d_forward(_t(1, 1, 4, 4), 2, stride=(1,)), ValueError, ["stride"]),
    (
        lambda: F.rnn_step_forward(_t(2, 3), _t(2, 4), _t(3, 4), _t(4, 5), _t(4)),
        ValueError,
        ["wh", "(4, 5)"],
    ),
    (
        lambda: F.rnn_forward(_t(2, 5, 3), _t(3, 4), _t(3, 4), _t(4, 4), _t(4)),
        ValueError,
        ["h0", "(3, 4)", "(2, 5, 3)"],
    ),
    (
        lambda: F.rnn_forward(_t(2, 3), _t(2, 4), _t(3, 4), _t(4, 4), _t(4)),
        ValueError,
        ["x", "3-D"],
    ),
    (lambda: F.embedding_forward(_t(3), _t(5, 2)), TypeError, ["idx", "float64"]),
    (lambda: F.embedding_forward(torch.tensor([0, 5]), _t(5, 2)), ValueError, ["idx", "(5, 2)"]),
    (lambda: F.embedding_forward(torch.tensor([0, 1]), _t(5)), ValueError, ["w", "(5,)"]),
    (
        lambda: F.linear_backward(_t(5, 3), F.linear_forward(_t(5, 2), _t(2, 4), _t(4))[1]),
        ValueError,
        ["dout", "(5, 3)", "(5, 4)"],
    ),
    (
        lambda: F.mse_backward(_t(2), F.mse_forward(_t(2), _t(2))[1]),
        ValueError,
        ["dout", "(2,)"],
    ),
    (
        lambda: F.relu_backward(None, F.relu_forward(_t(2))[1]),
        TypeError,
        ["dout", "NoneType"],
    ),
]


@pytest.mark.parametrize(("call", "error", "fragments"), BAD_INPUTS)
def test_bad_input_gives_a_clear_error(call, error: type[Exception], fragments: list[str]) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert message.split(":")[0].endswith(("_forward", "_backward")), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_reference_helper_detects_a_wrong_gradient() -> None:
    """The comparison helper itself must be able to fail."""

    def wrong_backward(dout, cache):
        return dout  # forgets the derivative of tanh

    with pytest.raises(AssertionError, match="gradient"):
        compare_with_autograd(
            F.tanh_forward,
            wrong_backward,
            torch.tanh,
            [torch.randn(3, 4, dtype=torch.float64)],
            tol=1e-8,
        )
    out, (grad,) = autograd_reference(torch.tanh, [torch.zeros(2)], 1.0, wrt=(0,))
    torch.testing.assert_close(grad, torch.ones(2, dtype=torch.float64))


# --------------------------------------------------------------------------- issue-10 edge cases
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_backward_gives_0_for_inf_and_nan_dout_where_x_is_not_positive(
    dtype: torch.dtype,
) -> None:
    x = torch.tensor([-2.0, 0.0, 3.0, -1.0, 0.5, float("nan")], dtype=dtype)
    dout = torch.tensor(
        [float("inf"), float("nan"), float("inf"), float("-inf"), 2.0, 4.0], dtype=dtype
    )
    _, cache = F.relu_forward(x)
    leaf = x.clone().requires_grad_()
    torch.relu(leaf).backward(dout)
    dx = F.relu_backward(dout, cache)
    torch.testing.assert_close(dx, leaf.grad, rtol=0, atol=0, equal_nan=True)
    assert dx[:2].eq(0).all() and dx[3] == 0


def test_relu_backward_rejects_a_dout_of_another_dtype() -> None:
    _, cache = F.relu_forward(torch.randn(3, 2, dtype=torch.float32))
    with pytest.raises(TypeError, match=r"relu_backward: dout .*float64.*float32"):
        F.relu_backward(torch.ones(3, 2, dtype=torch.float64), cache)
    dx = F.relu_backward(torch.ones(3, 2, dtype=torch.float32), cache)
    assert dx.dtype == torch.float32


def test_relu_backward_leaves_dout_unchanged() -> None:
    _, cache = F.relu_forward(torch.tensor([-1.0, 2.0]))
    dout = torch.tensor([5.0, 7.0])
    F.relu_backward(dout, cache)
    assert dout.tolist() == [5.0, 7.0]


def test_softmax_cross_entropy_backward_keeps_the_logits_dtype() -> None:
    logits64, y = make_inputs([(5, 4), Ints(4, (5,))], "cpu", torch.float64)
    logits32 = logits64.to(torch.float32)
    _, cache32 = F.softmax_cross_entropy_forward(logits32, y)
    _, cache64 = F.softmax_cross_entropy_forward(logits64, y)
    dout = torch.tensor(0.3, dtype=torch.float64)
    d32 = F.softmax_cross_entropy_backward(dout, cache32)
    assert d32.dtype == torch.float32
    expected = F.softmax_cross_entropy_backward(dout, cache64)
    torch.testing.assert_close(d32, expected.to(torch.float32), rtol=1e-6, atol=1e-7)
    assert dout.item() == 0.3  # the upstream gradient is not modified


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan")])
def test_normalization_requires_a_positive_eps(eps: float) -> None:
    x = torch.ones(4, 3, dtype=torch.float64)  # constant features: var = 0
    d = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"batchnorm_forward: eps must be > 0"):
        F.batchnorm_forward(x, d, d, None, None, eps=eps)
    with pytest.raises(ValueError, match=r"layernorm_forward: eps must be > 0"):
        F.layernorm_forward(x, d, d, eps=eps)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan")])
def test_batchnorm_requires_momentum_in_0_1(momentum: float) -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    d = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"batchnorm_forward: momentum.* \[0, 1\]"):
        F.batchnorm_forward(x, d, d, d.clone(), d.clone(), momentum=momentum)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_batchnorm_accepts_momentum_at_the_ends(momentum: float) -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    d = torch.ones(3, dtype=torch.float64)
    running_mean = torch.zeros(3, dtype=torch.float64)
    F.batchnorm_forward(x, d, d, running_mean, d.clone(), momentum=momentum)
    expected = x.mean(0) if momentum == 1.0 else torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(running_mean, expected)


def test_maxpool_tie_goes_to_the_first_maximum_in_row_major_order() -> None:
    x = torch.tensor([[[[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]]], dtype=torch.float64)
    out, cache = F.maxpool2d_forward(x, 2)
    dx = F.maxpool2d_backward(torch.ones_like(out), cache)
    # window 1: 1s at (0, 1), (1, 0), (1, 1) -> (0, 1); window 2: a 1 at (0, 2) only
    expected = torch.tensor([[[[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]], dtype=torch.float64)
    torch.testing.assert_close(dx, expected, rtol=0, atol=0)
    zeros = torch.zeros(1, 1, 2, 2, dtype=torch.float64)  # an all-zero window, as after a ReLU
    out, cache = F.maxpool2d_forward(zeros, 2)
    dx = F.maxpool2d_backward(torch.full_like(out, 3.0), cache)
    assert dx.sum().item() == 3.0 and dx[0, 0, 0, 0].item() == 3.0


# ---------------------------------------------------------------- LSTM step (a pair of outputs)
# lstm_step returns out = (h, c) and its backward takes (dh, dc), so it is tested here rather
# than through Case, whose forward has one output.
LSTM_DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]
LSTM_SHAPES = [(3, 4, 5), (1, 1, 1), (2, 7, 3), (4, 2, 6)]  # (N, D, H): D > H, D < H, size 1


def lstm_step_ref(x, h_prev, c_prev, wx, wh, b):
    """The LSTM cell in torch ops, gates i, f, g, o; autograd differentiates it."""
    i, f, g, o = (x @ wx + h_prev @ wh + b).chunk(4, dim=1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _lstm_inputs(n: int, d: int, hidden: int, device: str, dtype: torch.dtype, seed: int = 0):
    x, h, c, wx, wh, b = make_inputs(
        [(n, d), (n, hidden), (n, hidden), (d, 4 * hidden), (hidden, 4 * hidden), (4 * hidden,)],
        device,
        dtype,
        seed,
    )
    return [x, h, c * 2, wx / d**0.5, wh / hidden**0.5, b]  # gates neither linear nor saturated


@pytest.mark.parametrize("device", LSTM_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LSTM_SHAPES, ids=str)
def test_lstm_step_matches_autograd(shape, dtype: torch.dtype, device: str) -> None:
    n, d, hidden = shape
    for seed in (0, 1):
        inputs = _lstm_inputs(n, d, hidden, device, dtype, seed)
        before = [t.clone() for t in inputs]
        (h, c), cache = F.lstm_step_forward(*inputs)
        dh, dc = make_inputs([(n, hidden), (n, hidden)], device, dtype, seed + 10)
        dh_before, dc_before = dh.clone(), dc.clone()
        grads = F.lstm_step_backward((dh, dc), cache)

        leaves = [t.detach().double().clone().requires_grad_(True) for t in inputs]
        with torch.enable_grad():
            h_ref, c_ref = lstm_step_ref(*leaves)
            ref = torch.autograd.grad((h_ref, c_ref), leaves, (dh.double(), dc.double()))
        for ours, theirs in [(h, h_ref), (c, c_ref), *zip(grads, ref, strict=True)]:
            assert ours.dtype == dtype and ours.device.type == device
            assert rel_error(ours, theirs) < TOL[dtype]
        assert [tuple(g.shape) for g in grads] == [tuple(t.shape) for t in inputs]
        assert all(torch.equal(a, b) for a, b in zip(inputs, before, strict=True))
        assert torch.equal(dh, dh_before) and torch.equal(dc, dc_before)


@pytest.mark.parametrize("shape", LSTM_SHAPES, ids=str)
def test_lstm_step_matches_torch_lstm_cell(shape) -> None:
    n, d, hidden = shape
    x, h, c, wx, wh, b = _lstm_inputs(n, d, hidden, "cpu", torch.float64, seed=3)
    cell = torch.nn.LSTMCell(d, hidden, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(wx.T)
        cell.weight_hh.copy_(wh.T)
        cell.bias_ih.copy_(b * 0.25)  # torch's two biases only ever appear as their sum
        cell.bias_hh.copy_(b * 0.75)
    x_, h_, c_ = (t.clone().requires_grad_(True) for t in (x, h, c))
    h_ref, c_ref = cell(x_, (h_, c_))
    dh, dc = make_inputs([(n, hidden), (n, hidden)], "cpu", torch.float64, seed=4)
    torch.autograd.backward((h_ref, c_ref), (dh, dc))

    (h1, c1), cache = F.lstm_step_forward(x, h, c, wx, wh, b)
    dx, dh_prev, dc_prev, dwx, dwh, db = F.lstm_step_backward((dh, dc), cache)
    assert rel_error(h1, h_ref.detach()) < 1e-12 and rel_error(c1, c_ref.detach()) < 1e-12
    for ours, theirs in [
        (dx, x_.grad),
        (dh_prev, h_.grad),
        (dc_prev, c_.grad),
        (dwx, cell.weight_ih.grad.T),
        (dwh, cell.weight_hh.grad.T),
        (db, cell.bias_ih.grad),
        (db, cell.bias_hh.grad),
    ]:
        assert rel_error(ours, theirs) < 1e-8


def test_lstm_step_backward_with_only_dh_or_only_dc() -> None:
    x, h, c, wx, wh, b = _lstm_inputs(2, 3, 4, "cpu", torch.float64, seed=5)
    _, cache = F.lstm_step_forward(x, h, c, wx, wh, b)
    dh = make_inputs([(2, 4)], "cpu", torch.float64, seed=6)[0]
    for pair, full in [
        ((dh, None), (dh, torch.zeros_like(dh))),
        ((None, dh), (torch.zeros_like(dh), dh)),
    ]:
        for ours, theirs in zip(
            F.lstm_step_backward(pair, cache), F.lstm_step_backward(full, cache), strict=True
        ):
            assert torch.equal(ours, theirs)


def test_lstm_cell_state_path_is_the_forget_gate() -> None:
    # With dh = 0, dc_prev = dc * f exactly: the cell state's gradient path has no matrix.
    x, h, c, wx, wh, b = _lstm_inputs(3, 2, 5, "cpu", torch.float64, seed=7)
    _, cache = F.lstm_step_forward(x, h, c, wx, wh, b)
    dc = make_inputs([(3, 5)], "cpu", torch.float64, seed=8)[0]
    f = torch.sigmoid((x @ wx + h @ wh + b)[:, 5:10])
    dc_prev = F.lstm_step_backward((None, dc), cache)[2]
    assert rel_error(dc_prev, dc * f) < 1e-14


@pytest.mark.parametrize(
    ("args", "error", "fragments"),
    [
        (((2, 3), (2, 4), (2, 4), (3, 16), (4, 16), (16,)), None, []),
        (((2, 3), (2, 4), (2, 4), (3, 12), (4, 16), (16,)), ValueError, ["wx", "(3, 12)", "16"]),
        (((2, 3), (2, 4), (2, 5), (3, 16), (4, 16), (16,)), ValueError, ["c_prev", "(2, 5)"]),
        (((2, 3), (2, 4), (2, 4), (3, 16), (4, 16), (4,)), ValueError, ["b", "(4,)", "4 * H"]),
        (((2, 3), (3, 4), (3, 4), (3, 16), (4, 16), (16,)), ValueError, ["h_prev", "(3, 4)"]),
        (((2, 5), (2, 4), (2, 4), (3, 16), (4, 16), (16,)), ValueError, ["wx", "(2, 5)"]),
        (((2, 3, 1), (2, 4), (2, 4), (3, 16), (4, 16), (16,)), ValueError, ["x", "(N, D)"]),
    ],
)
def test_lstm_step_bad_shapes_give_a_clear_error(args, error, fragments) -> None:
    inputs = [torch.zeros(shape, dtype=torch.float64) for shape in args]
    if error is None:
        F.lstm_step_forward(*inputs)
        return
    with pytest.raises(error) as info:
        F.lstm_step_forward(*inputs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_lstm_step_bad_dout_gives_a_clear_error() -> None:
    x, h, c, wx, wh, b = _lstm_inputs(2, 3, 4, "cpu", torch.float64)
    _, cache = F.lstm_step_forward(x, h, c, wx, wh, b)
    with pytest.raises(TypeError, match=r"\(dh, dc\)"):
        F.lstm_step_backward(torch.ones(2, 4, dtype=torch.float64), cache)
    with pytest.raises(ValueError, match=r"dc has shape \(2, 5\)"):
        F.lstm_step_backward((None, torch.ones(2, 5, dtype=torch.float64)), cache)
    with pytest.raises(TypeError, match="float32"):
        F.lstm_step_backward((torch.ones(2, 4, dtype=torch.float32), None), cache)
    with pytest.raises(TypeError, match="float64"):
        F.lstm_step_forward(x, h, c.float(), wx, wh, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_equals_lstm_steps_chained_forward_and_backward(dtype: torch.dtype) -> None:
    x, h0, c0, wx, wh, b = make_inputs(
        [(3, 5, 2), (3, 4), (3, 4), (2, 16), (4, 16), (16,)], "cpu", dtype, seed=9
    )
    hs, cache = F.lstm_forward(x, h0, c0, wx, wh, b)
    dout = make_inputs([(3, 5, 4)], "cpu", dtype, seed=10)[0]
    dx, dh0, dc0, dwx, dwh, db = F.lstm_backward(dout, cache)
    h, c, caches = h0, c0, []
    for t in range(5):
        (h, c), step_cache = F.lstm_step_forward(x[:, t], h, c, wx, wh, b)
        caches.append(step_cache)
        assert rel_error(hs[:, t], h) < TOL[dtype]
    assert rel_error(cache[-1][:, -1], c) < TOL[dtype]  # the last cell state
    dh, dc, sums = torch.zeros_like(h0), torch.zeros_like(c0), [0, 0, 0]
    for t in reversed(range(5)):
        dx_t, dh, dc, *weights = F.lstm_step_backward((dout[:, t] + dh, dc), caches[t])
        assert rel_error(dx[:, t], dx_t) < TOL[dtype]
        sums = [s + w for s, w in zip(sums, weights, strict=True)]
    for ours, chained in [(dh0, dh), (dc0, dc), (dwx, sums[0]), (dwh, sums[1]), (db, sums[2])]:
        assert rel_error(ours, chained) < TOL[dtype]
