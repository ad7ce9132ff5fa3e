"""Layers as objects: ``Module``, ``Parameter``, ``Sequential``, layers and losses.

Each module wraps one forward/backward pair of ``coursekit.functional`` (F):

    out = module(x)            forward: calls F.<op>_forward, keeps the cache
    dx = module.backward(dout) backward: calls F.<op>_backward with that cache,
                               adds the parameter gradients to each ``p.grad``
                               and returns the gradient with respect to x

A training step therefore reads::

    loss = loss_fn(model(x), y)        # forward, through the model and the loss
    model.backward(loss_fn.backward()) # backward: dloss/dpred, then back through the model
    optimizer.step()
    optimizer.zero_grad()

Conventions, those of ``torch.nn``:

- ``p.grad`` is None until the first backward pass; every backward pass then
  *adds* to it (gradients accumulate) until ``zero_grad()`` sets it back to None.
- ``train()`` / ``eval()`` switch the ``training`` flag of a module and all of its
  children (dropout and batch normalization behave differently in the two modes).
- Parameters are found by looking at a module's attributes, in the order they
  were set: own parameters first, then those of each child module.
- Linear weights are laid out ``(in_features, out_features)`` so that
  out = x @ w + b, the transpose of ``torch.nn.Linear.weight``.

Gradient with respect to the input. ``backward(dout, input_grad=True)``: with
``input_grad=False`` a module only accumulates its parameter gradients and
returns None, skipping the work for dx where it can (``Linear`` skips the
product dout @ w.T). ``Sequential.backward`` defaults to ``input_grad=False``,
because a whole model's input is data, which needs no gradient; pass
``input_grad=True`` to get it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch

import coursekit.functional as F
from coursekit import init

__all__ = [
    "BatchNorm1d",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "LSTM",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "Parameter",
    "RNN",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropyLoss",
    "Tanh",
]


# ---------------------------------------------------------------------------
# Parameter and Module
# ---------------------------------------------------------------------------


class Parameter:
    """A tensor that is learned: ``.data`` holds its value, ``.grad`` its gradient.

    ``grad`` is None until the first backward pass; ``accumulate_grad`` adds to it.
    """

    def __init__(self, data: torch.Tensor) -> None:
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"Parameter data must be a torch.Tensor, got {type(data).__name__}")
        self.data: torch.Tensor = data.detach()
        self.grad: torch.Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    def numel(self) -> int:
        """The number of scalar values in the parameter."""
        return self.data.numel()

    def accumulate_grad(self, grad: torch.Tensor) -> None:
        """grad_total += grad (a copy is stored on the first call, so no tensor is shared)."""
        if grad.shape != self.data.shape:
            raise ValueError(
                f"gradient of shape {tuple(grad.shape)} does not match the parameter's shape "
                f"{tuple(self.data.shape)}"
            )
        if self.grad is None:
            self.grad = grad.detach().clone()
        else:
            self.grad.add_(grad)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradient: set it to None (default), or fill it with zeros."""
        if set_to_none:
            self.grad = None
        elif self.grad is not None:
            self.grad.zero_()

    def __repr__(self) -> str:
        shape = tuple(self.data.shape)
        return f"Parameter(shape={shape}, dtype={self.dtype}, device={self.device})"


def _dotted(prefix: str, name: str) -> str:
    """'block' inside '3' is '3.block'; at the top level it is just 'block'."""
    return f"{prefix}.{name}" if prefix else name


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` could not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of every layer and model.

    A subclass calls ``super().__init__()``, sets its parameters and sub-modules as
    attributes, and implements ``forward`` (keeping in ``self._cache`` what backward
    needs) and ``backward(dout, input_grad=True)``.
    """

    def __init__(self) -> None:
        self.training = True
        self._buffer_names: list[str] = []
        self._cache: Any = None

    # -- the two passes ----------------------------------------------------

    def forward(self, *inputs: Any) -> Any:
        """Compute the output and keep in ``self._cache`` what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """Accumulate parameter gradients; return dx (or None when ``input_grad`` is False)."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward()")

    def __call__(self, *inputs: Any, **options: Any) -> Any:
        return self.forward(*inputs, **options)

    def _saved_cache(self) -> Any:
        """The cache of the last forward pass; a clear error if there was none."""
        cache = getattr(self, "_cache", None)
        if cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before forward(): "
                "run a forward pass first, backward needs what it saved"
            )
        return cache

    # -- finding parameters, buffers and children ---------------------------

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules, with their attribute names, in the order they were set."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every module inside it, depth first, with dotted names."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(_dotted(prefix, name))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter): own parameters first, then each child's; no duplicates."""
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield _dotted(prefix, name), value

    def parameters(self) -> list[Parameter]:
        """Every Parameter of the module and its children, in a fixed order."""
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, tensor: torch.Tensor) -> None:
        """Keep a tensor that is state but not learned (e.g. running statistics).

        Buffers are saved in ``state_dict`` and moved by ``to``, but have no gradient.
        """
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"buffer {name!r} must be a torch.Tensor, got {type(tensor).__name__}")
        if not hasattr(self, "_buffer_names"):
            self._buffer_names = []
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        setattr(self, name, tensor)

    def named_buffers(self) -> Iterator[tuple[str, torch.Tensor]]:
        for prefix, module in self.named_modules():
            for name in getattr(module, "_buffer_names", []):
                yield _dotted(prefix, name), getattr(module, name)

    # -- modes and gradients -------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode on this module and its children."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode: dropout is off, batch normalization uses its running statistics."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget all parameter gradients: set them to None (default), or to zeros."""
        for p in self.parameters():
            p.zero_grad(set_to_none=set_to_none)

    # -- saving, loading, moving ------------------------------------------

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """name -> the live tensor (parameter data or buffer), per module: params, buffers."""
        tensors: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    tensors[_dotted(prefix, name)] = value.data
            for name in getattr(module, "_buffer_names", []):
                tensors[_dotted(prefix, name)] = getattr(module, name)
        return tensors

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer by dotted name, e.g. ``'0.weight'``.

        The tensors are copies (unlike torch, which shares them), so a saved state
        does not change as training goes on.
        """
        return {name: t.clone() for name, t in self._state_tensors().items()}

    @torch.no_grad()
    def load_state_dict(
        self, state_dict: dict[str, torch.Tensor], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy values into the parameters and buffers, keeping their dtype and device.

        With ``strict=True`` (default), missing or unexpected keys raise ValueError
        listing them; a shape mismatch always raises ValueError. Nothing is copied
        unless every check passes. Returns the missing and unexpected keys.
        """
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"load_state_dict: state_dict[{name!r}] must be a torch.Tensor, "
                    f"got {type(value).__name__}"
                )
            if value.shape != target.shape:
                raise ValueError(
                    f"load_state_dict: size mismatch for {name!r}: the state_dict has shape "
                    f"{tuple(value.shape)}, the model has shape {tuple(target.shape)}"
                )
        for name, target in own.items():
            if name in state_dict:
                target.copy_(state_dict[name])
        return IncompatibleKeys(missing, unexpected)

    def to(
        self,
        device: torch.device | str | torch.dtype | None = None,
        dtype: torch.dtype | None = None,
    ) -> Module:
        """Move parameters, gradients and buffers to ``device`` and/or cast them to ``dtype``.

        Only floating-point tensors change dtype. ``model.to(torch.float64)`` also works.
        The cache of the last forward pass is dropped (it lives on the old device).
        """
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"to(): dtype must be a floating-point dtype, got {dtype}")

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        for module in self.modules():
            for value in vars(module).values():
                if isinstance(value, Parameter):
                    value.data = move(value.data)
                    if value.grad is not None:
                        value.grad = move(value.grad)
            for name in getattr(module, "_buffer_names", []):
                setattr(module, name, move(getattr(module, name)))
            module._cache = None
        return self

    # -- printing -----------------------------------------------------------

    def extra_repr(self) -> str:
        """The settings shown between the parentheses of ``repr``, e.g. sizes."""
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [self.extra_repr()] if self.extra_repr() else []
        for name, child in children:
            lines.append(f"({name}): " + repr(child).replace("\n", "\n  "))
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _dtype(dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None else torch.get_default_dtype()


def _uniform(
    shape: tuple[int, ...],
    bound: float,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """A new tensor with entries drawn from U(-bound, bound)."""
    w = torch.empty(shape, device=device, dtype=_dtype(dtype))
    return init.uniform_(w, -bound, bound, generator=generator)


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------


class Sequential(Module):
    """Modules applied one after the other: out = m_k(...m_2(m_1(x))).

    Backward runs them in reverse order, each module's dx being the dout of the
    one before it. Indexable (``model[0]``, ``model[1:]``), with ``len`` and iteration.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: argument {i} must be a Module, got {type(module).__name__}"
                )
            setattr(self, str(i), module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = module(x)
        return x

    def backward(self, dout: torch.Tensor, input_grad: bool = False) -> torch.Tensor | None:
        """Backward through every module, last first.

        Every module but the first must return its dx (the next module's dout);
        the first one returns dx only when ``input_grad`` is True (default False:
        a model's input is data, and its gradient is not needed).
        """
        modules = list(self)
        for i in reversed(range(len(modules))):
            dout = modules[i].backward(dout, input_grad=input_grad or i > 0)
        return dout if input_grad else None

    def __len__(self) -> int:
        return sum(1 for _ in self.named_children())

    def __iter__(self) -> Iterator[Module]:
        return self.children()

    def __getitem__(self, index: int | slice) -> Module:
        modules = list(self)
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]


class Residual(Module):
    """A skip connection around a block: out = x + block(x).

    Backward: the sum sends dout down both paths, so dx = dout + block's dx.
    The identity path lets gradients reach early layers undiminished.
    """

    def __init__(self, block: Module) -> None:
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual: block must be a Module, got {type(block).__name__}")
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if out.shape != x.shape:
            raise ValueError(
                f"Residual: the block maps x of shape {tuple(x.shape)} to shape "
                f"{tuple(out.shape)}; x + block(x) needs the same shape"
            )
        self._cache = True  # nothing to keep, but forward has run
        return x + out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        self._saved_cache()
        if not input_grad:
            self.block.backward(dout, input_grad=False)
            return None
        return dout + self.block.backward(dout, input_grad=True)


# ---------------------------------------------------------------------------
# Layers with parameters
# ---------------------------------------------------------------------------


class Linear(Module):
    """Fully connected layer: out = x @ weight + bias, x (N, in_features) -> (N, out_features).

    ``weight`` is (in_features, out_features), the transpose of torch's. Both are
    initialized as in torch, from U(-1/sqrt(in_features), 1/sqrt(in_features)).
    Backward: dx = dout @ weight.T; dweight = x.T @ dout; dbias = dout.sum(0).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_size("in_features", in_features)
        self.out_features = _check_size("out_features", out_features)
        bound = 1.0 / math.sqrt(in_features)
        shape = (in_features, out_features)
        self.weight = Parameter(_uniform(shape, bound, device, dtype, generator))
        self.bias = (
            Parameter(_uniform((out_features,), bound, device, dtype, generator)) if bias else None
        )

    def _bias_data(self) -> torch.Tensor:
        """The bias, or zeros for a layer without one (F.linear_forward always adds a bias)."""
        if self.bias is not None:
            return self.bias.data
        return self.weight.data.new_zeros(self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, cache = F.linear_forward(x, self.weight.data, self._bias_data())
        self._cache = (x, cache)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        x, cache = self._saved_cache()
        if input_grad:
            dx, dw, db = F.linear_backward(dout, cache)
        else:
            # The same dw and db as F.linear_backward, without the product for dx.
            if dout.shape != (x.shape[0], self.out_features):
                raise ValueError(
                    f"Linear.backward: dout has shape {tuple(dout.shape)} but the forward "
                    f"output has shape {(x.shape[0], self.out_features)}"
                )
            dx, dw, db = None, x.T @ dout, dout.sum(0)
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Conv2d(Module):
    """2-D convolution (cross-correlation, as torch): x (N, C, H, W) -> (N, F, Ho, Wo).

    ``weight`` is (out_channels, in_channels, KH, KW), as in torch, and ``bias``
    (out_channels,); both start from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    fan_in = in_channels * KH * KW, torch's default.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = _check_size("in_channels", in_channels)
        self.out_channels = _check_size("out_channels", out_channels)
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.kernel_size = (_check_size("kernel_size", kh), _check_size("kernel_size", kw))
        self.stride = stride
        self.padding = padding
        bound = 1.0 / math.sqrt(in_channels * kh * kw)
        shape = (out_channels, in_channels, kh, kw)
        self.weight = Parameter(_uniform(shape, bound, device, dtype, generator))
        self.bias = (
            Parameter(_uniform((out_channels,), bound, device, dtype, generator)) if bias else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            b = self.bias.data
        else:  # F.conv2d_forward always adds a bias
            b = self.weight.data.new_zeros(self.out_channels)
        out, self._cache = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        dx, dw, db = F.conv2d_backward(dout, self._saved_cache())
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx if input_grad else None

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        return text if self.bias is not None else text + ", bias=False"


class BatchNorm1d(Module):
    """Batch normalization of x (N, num_features), each feature over the batch.

    out = weight * (x - mean) / sqrt(var + eps) + bias, with ``weight`` (gamma)
    starting at 1 and ``bias`` (beta) at 0. In training mode mean and var are
    the batch's, and the buffers ``running_mean``/``running_var`` follow them:
    running = (1 - momentum) * running + momentum * batch value. In evaluation
    mode the running values are used instead.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_features = _check_size("num_features", num_features)
        self.eps = eps
        self.momentum = momentum
        options = {"device": device, "dtype": _dtype(dtype)}
        self.weight = Parameter(torch.ones(num_features, **options))
        self.bias = Parameter(torch.zeros(num_features, **options))
        self.register_buffer("running_mean", torch.zeros(num_features, **options))
        self.register_buffer("running_var", torch.ones(num_features, **options))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.batchnorm_forward(
            x,
            self.weight.data,
            self.bias.data,
            self.running_mean,
            self.running_var,
            train=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        dx, dgamma, dbeta = F.batchnorm_backward(dout, self._saved_cache())
        self.weight.accumulate_grad(dgamma)
        self.bias.accumulate_grad(dbeta)
        return dx if input_grad else None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LayerNorm(Module):
    """Layer normalization over the last dim of x (..., D): each vector by its own mean and var.

    out = weight * (x - mean) / sqrt(var + eps) + bias; ``weight`` starts at 1,
    ``bias`` at 0. The same in training and evaluation mode.
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int],
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(normalized_shape, int):
            shape = tuple(normalized_shape)
            if len(shape) != 1:
                raise ValueError(
                    f"LayerNorm normalizes the last dim only: normalized_shape must be an int "
                    f"or a 1-tuple, got {normalized_shape!r}"
                )
            normalized_shape = shape[0]
        dim = _check_size("normalized_shape", normalized_shape)
        self.normalized_shape = (dim,)
        self.eps = eps
        options = {"device": device, "dtype": _dtype(dtype)}
        self.weight = Parameter(torch.ones(dim, **options))
        self.bias = Parameter(torch.zeros(dim, **options))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.layernorm_forward(x, self.weight.data, self.bias.data, eps=self.eps)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        dx, dgamma, dbeta = F.layernorm_backward(dout, self._saved_cache())
        self.weight.accumulate_grad(dgamma)
        self.bias.accumulate_grad(dbeta)
        return dx if input_grad else None

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class Embedding(Module):
    """A table of learned vectors: out[...] = weight[idx[...]], weight (num_embeddings, dim).

    ``idx`` holds int64 ids of any shape; out has shape idx.shape + (embedding_dim,).
    ``weight`` starts from N(0, 1), as in torch. The ids get no gradient, so
    backward returns None.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = _check_size("num_embeddings", num_embeddings)
        self.embedding_dim = _check_size("embedding_dim", embedding_dim)
        w = torch.empty(num_embeddings, embedding_dim, device=device, dtype=_dtype(dtype))
        self.weight = Parameter(init.normal_(w, 0.0, 1.0, generator=generator))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.embedding_forward(idx, self.weight.data)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> None:
        self.weight.accumulate_grad(F.embedding_backward(dout, self._saved_cache()))
        return None

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class RNN(Module):
    """A vanilla (Elman) RNN, batch first: x (N, T, input_size) -> h (N, T, hidden_size).

    h_t = tanh(x_t @ weight_ih + h_{t-1} @ weight_hh + bias) for t = 1 .. T, from the
    initial state h0 (zeros unless given). ``weight_ih`` is (input_size, hidden_size), ``weight_hh``
    (hidden_size, hidden_size): torch's ``weight_ih_l0``/``weight_hh_l0`` transposed.
    torch has two biases, b_ih and b_hh, which only ever appear as their sum;
    ``bias`` is that sum. All start from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
    forward returns the whole hidden sequence; backward (through time) returns dx
    and keeps the gradient with respect to h0 in ``self.h0_grad``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(
            _uniform((input_size, hidden_size), bound, device, dtype, generator)
        )
        self.weight_hh = Parameter(
            _uniform((hidden_size, hidden_size), bound, device, dtype, generator)
        )
        self.bias = Parameter(_uniform((hidden_size,), bound, device, dtype, generator))
        self.h0_grad: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        if h0 is None:
            if not isinstance(x, torch.Tensor) or x.dim() != 3:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"RNN: x must be 3-D (N, T, input_size), got {shape}")
            h0 = x.new_zeros(x.shape[0], self.hidden_size)
        hs, self._cache = F.rnn_forward(
            x, h0, self.weight_ih.data, self.weight_hh.data, self.bias.data
        )
        return hs

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        dx, dh0, dwx, dwh, db = F.rnn_backward(dout, self._saved_cache())
        self.weight_ih.accumulate_grad(dwx)
        self.weight_hh.accumulate_grad(dwh)
        self.bias.accumulate_grad(db)
        self.h0_grad = dh0
        return dx if input_grad else None

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class LSTM(Module):
    """An LSTM over a sequence, batch first: x (N, T, input_size) -> h (N, T, hidden_size).

    ``F.lstm_forward``: each step is ``F.lstm_step_forward`` (gates i, f, g, o in torch's
    order), c_t = f_t * c_{t-1} + i_t * g_t, h_t = o_t * tanh(c_t), for t = 1 .. T, from
    the initial state (h_0, c_0) (zeros unless given as ``state``). ``weight_ih`` is
    (input_size, 4 * hidden_size), ``weight_hh`` (hidden_size, 4 * hidden_size): torch's
    ``weight_ih_l0``/``weight_hh_l0`` transposed; ``bias`` is the sum of torch's two
    biases. All start from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as in torch.
    forward returns every h_t and keeps the last state (h_T, c_T) in ``self.last_state``
    (to continue a sequence, pass it back as ``state``); backward (through time,
    ``F.lstm_backward``) takes the gradient of every h_t from outside, returns dx and
    keeps the gradients of h_0 and c_0 in ``self.h0_grad`` and ``self.c0_grad``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        bound = 1.0 / math.sqrt(hidden_size)
        gates = 4 * hidden_size
        self.weight_ih = Parameter(_uniform((input_size, gates), bound, device, dtype, generator))
        self.weight_hh = Parameter(_uniform((hidden_size, gates), bound, device, dtype, generator))
        self.bias = Parameter(_uniform((gates,), bound, device, dtype, generator))
        self.last_state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.h0_grad: torch.Tensor | None = None
        self.c0_grad: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] == 0:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"LSTM: x must be 3-D (N, T, input_size) with T >= 1, got {shape}")
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        hs, self._cache = F.lstm_forward(
            x, *state, self.weight_ih.data, self.weight_hh.data, self.bias.data
        )
        self.last_state = (hs[:, -1], self._cache[-1][:, -1])
        return hs

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        dx, dh0, dc0, dwx, dwh, db = F.lstm_backward(dout, self._saved_cache())
        self.weight_ih.accumulate_grad(dwx)
        self.weight_hh.accumulate_grad(dwh)
        self.bias.accumulate_grad(db)
        self.h0_grad, self.c0_grad = dh0, dc0
        return dx if input_grad else None

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


# ---------------------------------------------------------------------------
# Layers without parameters
# ---------------------------------------------------------------------------


class ReLU(Module):
    """out = max(x, 0); dx = dout * (x > 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.relu_forward(x)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        cache = self._saved_cache()
        return F.relu_backward(dout, cache) if input_grad else None


class LeakyReLU(Module):
    """out = x where x > 0, negative_slope * x elsewhere; dx = dout times that slope."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.leaky_relu_forward(x, self.negative_slope)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        cache = self._saved_cache()
        return F.leaky_relu_backward(dout, cache) if input_grad else None

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """out = s = 1 / (1 + exp(-x)); dx = dout * s * (1 - s)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.sigmoid_forward(x)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        cache = self._saved_cache()
        return F.sigmoid_backward(dout, cache) if input_grad else None


class Tanh(Module):
    """out = t = tanh(x); dx = dout * (1 - t^2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.tanh_forward(x)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        cache = self._saved_cache()
        return F.tanh_backward(dout, cache) if input_grad else None


class Dropout(Module):
    """Inverted dropout: in training mode, zero each element with probability p and
    scale the others by 1 / (1 - p); the identity in evaluation mode.

    ``generator`` (optional) makes the masks reproducible; it must be on the
    device type of the inputs (a CUDA generator for CUDA tensors).
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is a probability, must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, mask = F.dropout_forward(x, self.p, train=self.training, generator=self.generator)
        self._cache = (mask,)  # the mask is None when dropout is the identity
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        (mask,) = self._saved_cache()
        return F.dropout_backward(dout, mask) if input_grad else None

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MaxPool2d(Module):
    """Max pooling over kernel_size windows of x (N, C, H, W); stride defaults to kernel_size.

    Backward routes each dout to the position of its window's maximum.
    """

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self._cache = F.maxpool2d_forward(x, self.kernel_size, self.stride)
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        cache = self._saved_cache()
        return F.maxpool2d_backward(dout, cache) if input_grad else None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(Module):
    """Merge dims start_dim..end_dim into one, e.g. (N, C, H, W) -> (N, C*H*W).

    A reshape moves no numbers, so backward reshapes dout back to the input's shape.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._cache = x.shape
        return x.flatten(self.start_dim, self.end_dim)

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        input_shape = self._saved_cache()
        if dout.numel() != math.prod(input_shape):
            raise ValueError(
                f"Flatten.backward: dout has shape {tuple(dout.shape)}, which does not hold "
                f"the {math.prod(input_shape)} values of the input shape {tuple(input_shape)}"
            )
        return dout.reshape(input_shape) if input_grad else None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


# ---------------------------------------------------------------------------
# Losses: loss = loss_fn(pred, target) is a 0-dim tensor (a mean over the batch);
# loss_fn.backward() returns dloss/dpred, the dout that starts the model's backward.
# ---------------------------------------------------------------------------


class MSELoss(Module):
    """loss = mean((pred - target)^2); backward: dpred = 2 * (pred - target) / M * dout."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss, self._cache = F.mse_forward(pred, target)
        return loss

    def backward(self, dout: float | torch.Tensor = 1.0) -> torch.Tensor:  # type: ignore[override]
        return F.mse_backward(dout, self._saved_cache())


class SoftmaxCrossEntropyLoss(Module):
    """Softmax then cross-entropy: logits (N, C), y (N,) int64 class ids -> mean loss.

    Backward: dlogits = (softmax(logits) - onehot(y)) / N * dout. The same loss as
    ``torch.nn.CrossEntropyLoss``.
    """

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss, self._cache = F.softmax_cross_entropy_forward(logits, y)
        return loss

    def backward(self, dout: float | torch.Tensor = 1.0) -> torch.Tensor:  # type: ignore[override]
        return F.softmax_cross_entropy_backward(dout, self._saved_cache())


# Lesson 14's modules live in coursekit.transformer (they are built from the modules above);
# they are reachable here too, as nn.MultiHeadAttention etc., like torch.nn's.
_TRANSFORMER_MODULES = (
    "GELU",
    "GPT",
    "MultiHeadAttention",
    "PositionalEmbedding",
    "TransformerBlock",
)


def __getattr__(name: str) -> Any:
    if name in _TRANSFORMER_MODULES:
        from coursekit import transformer

        return getattr(transformer, name)
    raise AttributeError(f"module 'coursekit.nn' has no attribute {name!r}")
