"""Memory kept for backward, counted exactly, and activation checkpointing.

Every coursekit module keeps in ``_cache`` what its backward needs, so the
memory a model holds between forward and backward can be counted exactly:

    saved_bytes(model)            bytes held by all caches (each storage once, parameters apart)
    saved_bytes_per_module(model) the same, per module, in forward order
    torch_saved_bytes(fn, *args)  what torch.autograd keeps for the same computation
                                  (``torch.autograd.graph.saved_tensors_hooks``)
    measure_peak(model)           a context manager recording the largest total seen
                                  after any module's forward or backward

Activation checkpointing (Chen et al. 2016, "Training deep nets with sublinear
memory cost") trades compute for memory: ``Checkpoint(block)`` keeps only the
block's input; its backward runs the block's forward again to rebuild the
caches, then backward through it. Cut a chain of n layers into k checkpointed
segments (``checkpoint_sequential``): between forward and backward only the k
segment inputs are kept, and during the backward of one segment its n/k caches.
Memory ~ k + n/k, smallest at k = sqrt(n): O(sqrt(n)) memory for one extra forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from coursekit.nn import Module, Sequential

__all__ = [
    "Checkpoint",
    "checkpoint_sequential",
    "measure_peak",
    "saved_bytes",
    "saved_bytes_per_module",
    "tensors_in",
    "torch_saved_bytes",
]


# ---------------------------------------------------------------------------- counting
def tensors_in(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside a cache: nested tuples, lists, dicts, or a tensor itself."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors_in(item)


def _storage(t: torch.Tensor) -> tuple[tuple[str, int], int]:
    """(key, bytes) of the memory block behind ``t``: views of one block share it."""
    s = t.untyped_storage()
    return (str(t.device), s.data_ptr()), s.nbytes()


def _parameter_keys(model: Module) -> set[tuple[str, int]]:
    keys = set()
    for p in model.parameters():
        keys.add(_storage(p.data)[0])
    return keys


def saved_bytes_per_module(model: Module) -> list[tuple[str, Module, int]]:
    """(name, module, bytes) for every module with a cache, in forward order.

    A memory block (a tensor's storage) shared by several caches, like a ReLU's
    output that is also the next Linear's input, is counted once, for the first
    module that keeps it. Parameters are not counted: they are kept anyway.
    """
    seen = _parameter_keys(model)
    rows = []
    for name, module in model.named_modules():
        cache = getattr(module, "_cache", None)
        if cache is None:
            continue
        total = 0
        for t in tensors_in(cache):
            key, nbytes = _storage(t)
            if key not in seen:
                seen.add(key)
                total += nbytes
        rows.append((name, module, total))
    return rows


def saved_bytes(model: Module) -> int:
    """Bytes held by the caches of ``model``'s modules now (each storage once, no parameters)."""
    return sum(n for _, _, n in saved_bytes_per_module(model))


def torch_saved_bytes(
    fn: Callable[..., Any], *args: Any, exclude: tuple[torch.Tensor, ...] = ()
) -> tuple[int, list[tuple[str, tuple[int, ...], int]]]:
    """Bytes torch.autograd saves for backward while ``fn(*args)`` runs.

    Every tensor autograd saves passes through the pack hook of
    ``torch.autograd.graph.saved_tensors_hooks``; each storage is counted once,
    and the storages of ``exclude`` (the parameters) not at all. Returns
    (total bytes, [(name of the backward node, shape, new bytes), ...]).
    """
    skip = {_storage(t)[0] for t in exclude}
    seen: set[tuple[str, int]] = set()
    rows: list[tuple[str, tuple[int, ...], int]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        key, nbytes = _storage(t)
        node = type(t.grad_fn).__name__ if t.grad_fn is not None else "(input)"
        new = 0 if key in seen or key in skip else nbytes
        seen.add(key)
        rows.append((node, tuple(t.shape), new))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(r[2] for r in rows), rows


class _Peak:
    """The largest value of saved_bytes(model) seen so far (``peak``, in bytes)."""

    def __init__(self) -> None:
        self.peak = 0


@contextlib.contextmanager
def measure_peak(model: Module) -> Iterator[_Peak]:
    """Record the peak of ``saved_bytes(model)`` after every forward and backward of a module.

    with measure_peak(model) as m:
        ...forward and backward...
    m.peak   # bytes

    Inside a ``Checkpoint`` this sees the recomputed caches of one segment at a time.
    """
    meter = _Peak()
    wrapped: list[tuple[Module, str]] = []

    def wrap(module: Module, name: str) -> None:
        original = getattr(module, name)

        def call(*a: Any, **k: Any) -> Any:
            out = original(*a, **k)
            meter.peak = max(meter.peak, saved_bytes(model))
            return out

        setattr(module, name, call)  # an instance attribute hides the class's method
        wrapped.append((module, name))

    for module in model.modules():
        wrap(module, "forward")
        wrap(module, "backward")
    try:
        yield meter
    finally:
        for module, name in wrapped:
            delattr(module, name)


# ---------------------------------------------------------------------------- checkpointing
def _drop_caches(block: Module) -> None:
    for module in block.modules():
        module._cache = None


def _generators(block: Module) -> list[torch.Generator]:
    return [
        g
        for module in block.modules()
        if isinstance(g := getattr(module, "generator", None), torch.Generator)
    ]


class Checkpoint(Module):
    """Run ``block`` keeping only its input; recompute its forward during backward.

    forward(x):     out = block(x), then every cache inside the block is dropped;
                    only x (and the random-number state) is kept.
    backward(dout): block(x) again, which rebuilds the caches, then
                    block.backward(dout), then the caches are dropped again.

    The gradients are exactly those of the plain block: the recomputation does the
    same operations on the same numbers. Random layers (dropout) draw the same masks,
    because the random state of the first forward is restored for the second; buffers
    (batchnorm's running statistics) are restored after the recomputation, so they
    are updated once per step, as without checkpointing.
    """

    def __init__(self, block: Module) -> None:
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Checkpoint: block must be a Module, got {type(block).__name__}")
        self.block = block

    def _rng_state(self, x: torch.Tensor) -> dict[str, Any]:
        state: dict[str, Any] = {
            "cpu": torch.get_rng_state(),
            "generators": [g.get_state() for g in _generators(self.block)],
        }
        if x.is_cuda:
            state["cuda"] = (x.device, torch.cuda.get_rng_state(x.device))
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["cpu"])
        for g, s in zip(_generators(self.block), state["generators"], strict=True):
            g.set_state(s)
        if "cuda" in state:
            device, s = state["cuda"]
            torch.cuda.set_rng_state(s, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rng = self._rng_state(x)
        out = self.block(x)
        _drop_caches(self.block)
        self._cache = x  # the only activation kept
        self._rng = rng  # a few kB of random-number state, not an activation
        return out

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        x, rng = self._saved_cache(), self._rng
        now = self._rng_state(x)
        buffers = [
            (m, n, getattr(m, n).clone()) for m in self.block.modules() for n in m._buffer_names
        ]
        self._set_rng_state(rng)  # the same dropout masks as in the first forward
        self.block(x)  # recompute: the caches are back
        self._set_rng_state(now)
        for module, name, value in buffers:  # running statistics: updated once, not twice
            getattr(module, name).copy_(value)
        dx = self.block.backward(dout, input_grad=input_grad)
        _drop_caches(self.block)
        return dx

    def extra_repr(self) -> str:
        return ""


def checkpoint_sequential(model: Sequential | list[Module], segments: int) -> Sequential:
    """``model``'s layers cut into ``segments`` consecutive pieces, each one a ``Checkpoint``.

    The layers (and so the parameters) are shared with ``model``, not copied. Pieces
    differ in length by at most one layer. ``segments = round(sqrt(len(model)))``
    gives the O(sqrt(n)) memory of Chen et al. (2016).
    """
    layers = list(model)
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise ValueError(
            f"checkpoint_sequential: segments must be a positive int, got {segments!r}"
        )
    if segments > len(layers):
        raise ValueError(
            f"checkpoint_sequential: {segments} segments for {len(layers)} layers; "
            "at most one segment per layer"
        )
    size, extra = divmod(len(layers), segments)
    pieces, start = [], 0
    for k in range(segments):
        stop = start + size + (1 if k < extra else 0)
        pieces.append(Checkpoint(Sequential(*layers[start:stop])))
        start = stop
    return Sequential(*pieces)
