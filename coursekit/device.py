"""Picking where tensors live: CUDA if present, then Apple's MPS, then the CPU."""

from __future__ import annotations

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
