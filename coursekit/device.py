"""Picking where tensors live: CUDA if present, then Apple's MPS, then the CPU.

A lesson picks its device once, ``device = default_device()``, builds its models
and data there and trains there. Random numbers drawn *on* that device while
training (dropout masks, the shuffled order of ``fit``) come from a generator on
the same device: ``seeded_generator(seed, device)``.
"""

from __future__ import annotations

import numbers
import os
import platform

import torch


def default_device() -> torch.device:
    """The fastest device available: ``cuda``, then ``mps``, then ``cpu``.

    Set the environment variable ``COURSEKIT_DEVICE`` (e.g. ``cpu``) to override.
    """
    forced = os.environ.get("COURSEKIT_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device | str | None = None) -> str:
    """A one-line description of a device, e.g. ``'cuda: NVIDIA H100 (79.1 GiB)'``."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda: {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return f"mps: Apple GPU ({platform.machine()})"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def set_threads(n: int | None = None) -> int:
    """Use ``n`` intra-op threads (default: the cores this process may use).

    Too many threads for the cores available (oversubscription) can make small
    matrix products many times slower; this keeps torch at one per core.
    """
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, int(n or 1))
    torch.set_num_threads(n)
    return n


def seeded_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default: the CPU), seeded with ``seed``.

    A generator draws on its own device, and torch refuses to fill a CUDA tensor
    from a CPU generator: dropout masks for a model on the GPU need a CUDA
    generator (``nn.Dropout`` raises otherwise). On the CPU this draws exactly what
    ``torch.Generator().manual_seed(seed)`` draws. Other devices use other
    algorithms (CUDA: Philox, the CPU: Mersenne Twister), so the same seed gives a
    reproducible stream on each device, but not the same numbers on every device.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    device = torch.device(device) if device is not None else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(int(seed))
