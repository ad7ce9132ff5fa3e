"""The training loop: ``fit()``, ``evaluate()``, ``accuracy()`` and ``History``.

One epoch of ``fit`` is the loop every lesson writes by hand::

    model.train()
    for xb, yb in batches(X, y, batch_size, shuffle=True):
        optimizer.zero_grad()
        pred = model(xb)                    # forward
        loss = loss_fn(pred, yb)            # a 0-dim tensor, mean over the batch
        model.backward(loss_fn.backward())  # dloss/dpred, then back through the model
        clip_grad_norm_(params, clip)       # optional
        optimizer.step()

followed by an evaluation on the validation set. No autograd is involved: the
gradients are the hand-written backward passes of ``coursekit.nn``.

Where training runs: on the device of the model's parameters, or on
``fit(..., device=...)``, which moves the model there first. Data is copied to
that device. What would silently run somewhere else raises instead: data on a
GPU with the model on the CPU, parameters spread over several devices, an
optimizer holding parameters elsewhere, a dropout generator on another device.
The progress bar and ``History.device`` say where training ran.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from coursekit.data import batches
from coursekit.device import set_threads
from coursekit.optim import clip_grad_norm_

__all__ = ["EarlyStopping", "History", "accuracy", "evaluate", "fit"]

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for ``patience`` epochs.

    An epoch improves when val_loss < best_val_loss - min_delta. With
    ``restore_best`` the model gets back the weights of its best epoch at the end.
    """

    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int):
            raise TypeError(f"patience must be an int, got {type(self.patience).__name__}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")


@dataclass
class History:
    """What happened during ``fit``, one entry per epoch.

    train_loss / train_acc are running means over the epoch's batches (in train
    mode, so with dropout active); val_loss / val_acc are measured after the epoch
    in eval mode. Accuracies are recorded for classification (int64 targets) only.
    grad_norms maps each parameter name to the mean L2 norm of its gradient
    (before clipping) over the epoch's batches, when ``track_grad_norms``.
    lr is the optimizer's learning rate during each epoch; seconds the epoch's wall time.
    device is where the training ran, e.g. ``'cpu'`` or ``'cuda:0'``.
    Epoch numbers count from 1: ``val_loss[best_epoch - 1]`` is the best val loss.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    device: str | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    diverged: bool = False

    @property
    def epochs(self) -> int:
        """The number of epochs that ran."""
        return len(self.train_loss)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-serializable)."""
        return {
            "epochs": self.epochs,
            "train_loss": list(self.train_loss),
            "train_acc": list(self.train_acc),
            "val_loss": list(self.val_loss),
            "val_acc": list(self.val_acc),
            "grad_norms": {name: list(v) for name, v in self.grad_norms.items()},
            "lr": list(self.lr),
            "seconds": list(self.seconds),
            "device": self.device,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "diverged": self.diverged,
        }

    def __repr__(self) -> str:
        parts = [f"epochs={self.epochs}"]
        if self.device is not None:
            parts.append(f"device={self.device!r}")
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            values = getattr(self, name)
            if values:
                parts.append(f"{name}={values[-1]:.4f}")
        if self.best_epoch is not None:
            parts.append(f"best_epoch={self.best_epoch}")
        if self.stopped_early:
            parts.append("stopped_early=True")
        if self.diverged:
            parts.append("diverged=True")
        if self.grad_norms:
            parts.append(f"grad_norms=<{len(self.grad_norms)} parameters>")
        return "History(" + ", ".join(parts) + ")"


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

_threads_checked = False


def _avoid_oversubscription() -> None:
    """Once per process: no more torch threads than cores (too many made runs 20x slower)."""
    global _threads_checked
    if _threads_checked:
        return
    _threads_checked = True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and torch.get_num_threads() > cores:
        set_threads(cores)


def _parameters(model: Any) -> list[Any]:
    return list(model.parameters()) if hasattr(model, "parameters") else []


def _named_parameters(model: Any) -> list[tuple[str, Any]]:
    if hasattr(model, "named_parameters"):
        return list(model.named_parameters())
    return [(f"param{i}", p) for i, p in enumerate(_parameters(model))]


def _model_device_dtype(model: Any) -> tuple[torch.device | None, torch.dtype | None]:
    """The device and dtype of the model's parameters (None, None without parameters).

    Parameters on more than one device raise: no device would be "the model's".
    """
    named = _named_parameters(model)
    if not named:
        return None, None
    devices = {p.data.device for _, p in named}
    if len(devices) > 1:
        where = ", ".join(f"{name} on {p.data.device}" for name, p in named)
        raise ValueError(
            f"the model's parameters are on {len(devices)} devices ({where}); "
            "put them on one with model.to(device), or pass fit(..., device=...)"
        )
    return named[0][1].data.device, named[0][1].data.dtype


def _on(device: torch.device | str) -> torch.device:
    """The device a tensor created on ``device`` gets (``'cuda'`` -> ``cuda:0``)."""
    return torch.empty(0, device=device).device


def _check_data_device(name: str, t: torch.Tensor, device: torch.device | None) -> None:
    """Data on an accelerator while the model is elsewhere: a silent slow path, so raise.

    CPU data is fine: it is copied to the model's device, as every data loader does.
    """
    if device is not None and t.device.type != "cpu" and t.device != device:
        raise ValueError(
            f"{name} is on {t.device} but the model is on {device}: training would run on "
            f"{device}. Build the model on the data's device (nn.Linear(..., device=device)), "
            "move it with model.to(device), or pass fit(..., device=...)"
        )


def _check_generators(model: Any, device: torch.device) -> None:
    """A generator inside the model (dropout masks) must draw on the training device."""
    if not hasattr(model, "named_modules"):
        return
    for prefix, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator) and value.device.type != device.type:
                where = f"{prefix}.{attr}" if prefix else attr
                raise ValueError(
                    f"{type(module).__name__} {where} is a generator on {value.device} but "
                    f"training runs on {device}; create it with "
                    f"coursekit.device.seeded_generator(seed, device)"
                )


def _move_optimizer_state(optimizer: Any, device: torch.device) -> None:
    """Momentum buffers and moments follow the parameters to ``device``."""
    for state in getattr(optimizer, "state", None) or []:
        if isinstance(state, dict):
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.to(device)


def _check_optimizer_device(optimizer: Any, device: torch.device) -> None:
    for i, p in enumerate(getattr(optimizer, "params", None) or []):
        data = getattr(p, "data", None)
        if isinstance(data, torch.Tensor) and data.device != device:
            raise ValueError(
                f"optimizer.params[{i}] is on {data.device} but training runs on {device}: "
                "build the optimizer from model.parameters() of the model being trained"
            )


def _check_pair(name: str, pair: object) -> Pair:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise TypeError(f"{name} must be a tuple (X, y) of tensors, got {type(pair).__name__}")
    X, y = pair
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"{name} must be a tuple (X, y) of tensors, got "
            f"({type(X).__name__}, {type(y).__name__})"
        )
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y) or len(X) == 0:
        raise ValueError(
            f"{name}: X and y must hold the same number (> 0) of examples, got shapes "
            f"{tuple(X.shape)} and {tuple(y.shape)}"
        )
    return X, y


def _to(t: torch.Tensor, device: torch.device | None, dtype: torch.dtype | None) -> torch.Tensor:
    """Move to the model's device; floating data also takes the model's dtype."""
    cast = dtype is not None and t.is_floating_point()
    return t.to(device=device, dtype=dtype if cast else None)


def _is_classification(y: torch.Tensor) -> bool:
    return y.dtype == torch.int64


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The number of right predictions, as a tensor on the logits' device (no sync)."""
    if logits.ndim == 2 and logits.shape[1] > 1:
        predicted = logits.argmax(dim=1)
    elif logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        predicted = (logits.reshape(-1) > 0).to(torch.int64)
    else:
        raise ValueError(
            f"logits must have shape (N, C) or (N,) / (N, 1) for two classes, "
            f"got {tuple(logits.shape)}"
        )
    if y.shape != (len(logits),):
        raise ValueError(
            f"y must have shape ({len(logits)},) to match logits {tuple(logits.shape)}, "
            f"got {tuple(y.shape)}"
        )
    return (predicted == y).sum()


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of examples whose predicted class is y.

    logits (N, C): the prediction is argmax over C. logits (N,) or (N, 1): a
    single logit for two classes, predicting class 1 where it is > 0.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("logits and y must be torch tensors")
    if len(logits) == 0:
        raise ValueError("accuracy of an empty batch is undefined (logits has 0 rows)")
    return _correct(logits, y).item() / len(logits)


# ----------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: Any, loss_fn: Any, X: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> tuple[float, float | None]:
    """Mean loss and accuracy over (X, y), in eval mode; gradients are not touched.

    Returns (loss, acc); acc is None unless y holds int64 class ids. The model's
    train/eval mode is restored afterwards. It runs on the model's device: CPU data
    is copied there, data on another accelerator raises ValueError.
    """
    X, y = _check_pair("(X, y)", (X, y))
    device, dtype = _model_device_dtype(model)
    _check_data_device("X", X, device)
    _check_data_device("y", y, device)
    X, y = _to(X, device, dtype), _to(y, device, dtype)
    was_training = getattr(model, "training", True)
    model.eval()
    try:
        total_loss = torch.zeros((), dtype=torch.float64, device=X.device)
        total_correct = torch.zeros((), dtype=torch.int64, device=X.device)
        for xb, yb in batches(X, y, batch_size, shuffle=False):
            pred = model(xb)
            total_loss += loss_fn(pred, yb).detach().double() * len(xb)
            if _is_classification(yb):
                total_correct += _correct(pred, yb)
    finally:
        model.train(was_training)
    loss = total_loss.item() / len(X)
    acc = total_correct.item() / len(X) if _is_classification(y) else None
    return loss, acc


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------


def fit(
    model: Any,
    loss_fn: Any,
    optimizer: Any,
    train: Pair,
    val: Pair | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    clip: float | None = None,
    early_stopping: int | EarlyStopping | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    track_grad_norms: bool = False,
    scheduler: Any = None,
) -> History:
    """Train ``model`` on ``train = (X, y)`` with mini-batches; returns a ``History``.

    model        a coursekit Module (forward, backward, parameters, train/eval)
    loss_fn      loss = loss_fn(pred, y) (0-dim), dpred = loss_fn.backward()
    optimizer    .zero_grad() and .step(), e.g. optim.Adam(model.parameters(), lr=1e-3)
    val          (X_val, y_val), evaluated after every epoch
    clip         max global gradient norm (optim.clip_grad_norm_), or None
    early_stopping  patience (int) or EarlyStopping(patience, min_delta, restore_best);
                 monitors the validation loss, so needs ``val``
    progress     a progress bar (tqdm: a widget in Jupyter, text in a terminal), showing
                 the device: "fit on cuda:0"
    device       where to train. None (default): where the model's parameters are.
                 Given: the model is moved there in place (``model.to(device)``, its
                 optimizer's state with it), so it stays there after fit.
                 The data is copied to the training device (the caller's tensors are
                 untouched) and floating data takes the model's dtype. Raises
                 ValueError instead of mixing devices silently: parameters on several
                 devices, data on a GPU while the model is elsewhere (with device=None),
                 an optimizer holding parameters on another device, or a generator
                 inside the model (nn.Dropout) on another device type.
    generator    torch.Generator for the shuffling (reproducible order), on any device:
                 the order is drawn on the generator's device
                 (``coursekit.device.seeded_generator(seed, device)``)
    track_grad_norms  record each parameter's gradient norm per epoch
    scheduler    anything with .step(), called once after every epoch (optim.StepLR, ...)

    Data-parallel: when a ``torch.distributed`` process group is set up (``launch``
    or torchrun, lesson 12), every rank calls fit with the same model, data and
    seeded ``generator`` (so all draw the same batches); each rank runs forward and
    backward on its contiguous shard of every batch, the gradients are averaged over
    the ranks (weighted by shard size, so the result is the whole batch's gradient)
    before clipping and the step, and the reported losses and accuracies cover the
    whole batch. Every batch needs at least one example per rank. Only rank 0 shows
    a progress bar. Batchnorm's running statistics stay per rank.
    """
    X, y = _check_pair("train", train)
    if val is not None:
        X_val, y_val = _check_pair("val", val)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if clip is not None and not (isinstance(clip, int | float) and clip > 0):
        raise ValueError(f"clip must be a positive max gradient norm or None, got {clip!r}")
    if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
        early_stopping = EarlyStopping(patience=early_stopping)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            "early_stopping must be an int patience or an EarlyStopping, "
            f"got {type(early_stopping).__name__}"
        )
    if early_stopping is not None and val is None:
        raise ValueError("early_stopping monitors the validation loss: pass val=(X_val, y_val)")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")

    _avoid_oversubscription()
    params = _parameters(model)
    if device is not None:
        device = _on(device)
        elsewhere = {p.data.device for p in params} - {device}
        if elsewhere:
            if not callable(getattr(model, "to", None)):
                raise TypeError(
                    f"fit(device={device}): the model has parameters on "
                    f"{', '.join(map(str, elsewhere))} and no .to() to move them; "
                    "build it on the device you train on"
                )
            model.to(device)
            _move_optimizer_state(optimizer, device)
    model_device, dtype = _model_device_dtype(model)
    if device is None:
        device = model_device if model_device is not None else X.device
        data = {"train X": X, "train y": y}
        if val is not None:
            data.update({"val X": X_val, "val y": y_val})
        for name, t in data.items():
            _check_data_device(name, t, device)
    _check_optimizer_device(optimizer, device)
    _check_generators(model, device)
    X, y = _to(X, device, dtype), _to(y, device, dtype)
    if val is not None:
        X_val, y_val = _to(X_val, device, dtype), _to(y_val, device, dtype)
    classification = _is_classification(y)
    named = _named_parameters(model) if track_grad_norms else []

    rank, world = _process_group()
    if world > 1:
        generator = _same_generator_on_every_rank(generator, X.device)

    history = History(device=str(X.device))
    if track_grad_norms:
        history.grad_norms = {name: [] for name, _ in named}
    best_loss, best_state, epochs_without_improvement = math.inf, None, 0
    keep_best = early_stopping is not None and early_stopping.restore_best

    bar = tqdm(
        range(1, epochs + 1),
        desc=f"fit on {history.device}" + (f", {world} processes" if world > 1 else ""),
        unit="epoch",
        disable=not progress or rank != 0,
        leave=True,
    )
    with torch.no_grad():
        for epoch in bar:
            start = time.perf_counter()
            model.train()
            total_loss = torch.zeros((), dtype=torch.float64, device=X.device)
            total_correct = torch.zeros((), dtype=torch.int64, device=X.device)
            norm_sums = torch.zeros(len(named), dtype=torch.float64, device=X.device)
            n_batches = 0
            for xb, yb in batches(X, y, batch_size, shuffle=True, generator=generator):
                if world > 1:
                    batch_len = len(xb)
                    xb, yb = _my_shard(xb, rank, world), _my_shard(yb, rank, world)
                optimizer.zero_grad()
                pred = model(xb)
                loss = loss_fn(pred, yb)
                dpred = loss_fn.backward()
                model.backward(dpred)
                if world > 1:
                    _average_gradients(params, len(xb) * world / batch_len)
                if track_grad_norms:
                    norm_sums += torch.stack(
                        [
                            torch.linalg.vector_norm(p.grad).double()
                            if p.grad is not None
                            else torch.zeros((), dtype=torch.float64, device=X.device)
                            for _, p in named
                        ]
                    )
                if clip is not None:
                    clip_grad_norm_(params, clip)
                optimizer.step()
                total_loss += loss.detach().double() * len(xb)
                if classification:
                    total_correct += _correct(pred, yb)
                n_batches += 1

            if world > 1:  # every rank saw its shards: add them up
                torch.distributed.all_reduce(total_loss)
                torch.distributed.all_reduce(total_correct)
            history.train_loss.append(total_loss.item() / len(X))
            if classification:
                history.train_acc.append(total_correct.item() / len(X))
            for (name, _), value in zip(named, (norm_sums / n_batches).tolist(), strict=True):
                history.grad_norms[name].append(value)
            if hasattr(optimizer, "lr"):
                history.lr.append(float(optimizer.lr))
            postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
            if classification:
                postfix["acc"] = f"{history.train_acc[-1]:.3f}"

            if val is not None:
                val_loss, val_acc = evaluate(model, loss_fn, X_val, y_val, max(batch_size, 256))
                history.val_loss.append(val_loss)
                postfix["val_loss"] = f"{val_loss:.4f}"
                if val_acc is not None:
                    history.val_acc.append(val_acc)
                    postfix["val_acc"] = f"{val_acc:.3f}"
                min_delta = early_stopping.min_delta if early_stopping is not None else 0.0
                if val_loss < best_loss - min_delta:
                    best_loss, epochs_without_improvement = val_loss, 0
                    history.best_epoch = epoch
                    if keep_best:
                        best_state = model.state_dict()
                else:
                    epochs_without_improvement += 1
            bar.set_postfix(postfix)

            if scheduler is not None:
                scheduler.step()
            history.seconds.append(time.perf_counter() - start)

            if not math.isfinite(history.train_loss[-1]):
                history.diverged = True
                warnings.warn(
                    f"fit: the training loss became {history.train_loss[-1]} at epoch {epoch}; "
                    "stopping (try a smaller learning rate, or clip=...)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            if early_stopping is not None and epochs_without_improvement >= early_stopping.patience:
                history.stopped_early = True
                break
    bar.close()

    if keep_best and best_state is not None and history.best_epoch != history.epochs:
        model.load_state_dict(best_state)
    return history


# ----------------------------------------------------------------------------
# data parallel (lesson 12)
# ----------------------------------------------------------------------------


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when there is none."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _same_generator_on_every_rank(
    generator: torch.Generator | None, device: torch.device
) -> torch.Generator:
    """The shuffling generator, identical on every rank: the one given (each rank seeds
    its own the same way), or one seeded by rank 0 and broadcast."""
    if generator is not None:
        return generator
    seed = torch.randint(2**62, (1,), device=device)
    torch.distributed.broadcast(seed, src=0)
    return torch.Generator().manual_seed(int(seed.item()))


def _my_shard(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous part of a batch (sizes differ by at most one)."""
    if len(t) < world:
        raise ValueError(
            f"fit: a batch of {len(t)} examples cannot give each of {world} processes one; "
            f"use a batch size (and a training-set size modulo it) of at least {world}"
        )
    return torch.tensor_split(t, world)[rank]


def _average_gradients(params: list[Any], weight: float) -> None:
    """Average weight * grad over the ranks. With weight = world * shard / batch this is the
    whole batch's gradient: sum over ranks of (shard_r / batch) * grad_r."""
    from coursekit.distributed import all_reduce_gradients

    if weight != 1.0:
        for p in params:
            if p.grad is not None:
                p.grad.mul_(weight)
    all_reduce_gradients(params)
