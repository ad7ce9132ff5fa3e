"""Plots for the lessons: training curves, decision boundaries, gradients, loss surfaces.

Every function here draws with matplotlib and returns what it drew on (an ``Axes``, or a
``Figure`` when it needs several panels). Each one accepts ``ax=None``: pass an ``Axes`` (or a
list of them for the multi-panel plots) to draw into a figure of your own, or leave it out and
a new figure is made. Nothing here calls ``plt.show()``; in a notebook, end the line with ``;``
so that the returned object is not shown a second time.

Tensors may live on any device: they are copied to the CPU (``.detach().cpu()``) before drawing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

__all__ = [
    "plot_history",
    "plot_decision_boundary",
    "plot_grad_norms",
    "plot_activation_histograms",
    "plot_loss_surface",
    "plot_filters",
    "plot_function_and_derivative",
    "plot_finite_difference_error",
    "to_numpy",
]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def to_numpy(values: Any) -> np.ndarray:
    """A NumPy copy of a tensor (on any device, any dtype), a list of tensors, or array-like."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.is_floating_point() and values.dtype not in (torch.float32, torch.float64):
            values = values.float()  # bfloat16 and float16 have no NumPy twin everywhere
        return values.numpy()
    if isinstance(values, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in values):
        return np.array([to_numpy(v) for v in values])
    return np.asarray(values)


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.5)) -> Axes:
    """The given Axes, or the Axes of a new figure."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _new_axes_grid(
    ax: Axes | Sequence[Axes] | None, count: int, panel_size: float = 3.2, max_cols: int = 5
) -> list[Axes]:
    """``count`` Axes: the given ones, or a new figure with a grid of panels."""
    if ax is not None:
        axes = [ax] if isinstance(ax, Axes) else list(np.ravel(ax))
        if len(axes) < count:
            raise ValueError(f"ax: need {count} Axes for {count} panels, got {len(axes)}")
        return axes[:count]
    ncols = min(count, max_cols)
    nrows = math.ceil(count / ncols)
    _, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size * ncols, 0.85 * panel_size * nrows),
        squeeze=False,
        layout="constrained",
    )
    axes = list(grid.ravel())
    for spare in axes[count:]:
        spare.set_visible(False)
    return axes[:count]


def _scalar(value: Any) -> float:
    """A Python float from a number, a one-element array or a one-element tensor."""
    return float(to_numpy(value).reshape(-1)[0])


def _class_colors(num_classes: int) -> ListedColormap:
    """One distinct color per class (the ``tab10`` palette, then ``tab20``)."""
    palette = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    return ListedColormap([palette(i) for i in range(num_classes)])


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------


def _history_series(history: Any, key: str) -> list[float]:
    """``history.<key>`` (or ``history[key]``) as a list of floats; empty when absent."""
    if isinstance(history, Mapping):
        values = history.get(key, [])
    else:
        values = getattr(history, key, [])
    return [_scalar(v) for v in (values or [])]


def plot_history(
    history: Any,
    metrics: Sequence[str] = ("loss", "acc"),
    ax: Axes | Sequence[Axes] | None = None,
    mark_epoch: int | None = None,
) -> Figure:
    """Training and validation curves, one panel per metric.

    ``history`` is a ``coursekit.train.History`` (lists ``train_loss``, ``val_loss``,
    ``train_acc``, ``val_acc``, one value per epoch) or a dict with those keys. For each name
    ``m`` in ``metrics`` the panel shows ``train_m`` and ``val_m`` (whichever were recorded).
    ``mark_epoch`` draws a dashed vertical line, e.g. at the epoch early stopping kept.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    series = {
        m: {split: _history_series(history, f"{split}_{m}") for split in ("train", "val")}
        for m in metrics
    }
    empty = [m for m, s in series.items() if not s["train"] and not s["val"]]
    if empty:
        raise ValueError(
            f"metrics: history has no values for {empty} "
            f"(looked for {[f'train_{m}' for m in empty]} and {[f'val_{m}' for m in empty]})"
        )
    axes = _new_axes_grid(ax, len(metrics), panel_size=4.5)
    titles = {"loss": "loss", "acc": "accuracy"}
    for panel, metric in zip(axes, metrics, strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            values = series[metric][split]
            if values:
                epochs = np.arange(1, len(values) + 1)
                panel.plot(epochs, values, style, marker="o", markersize=3, label=split)
        if mark_epoch is not None:
            panel.axvline(mark_epoch, color="gray", linestyle=":", label=f"epoch {mark_epoch}")
        panel.set_xlabel("epoch")
        panel.set_ylabel(titles.get(metric, metric))
        panel.set_title(titles.get(metric, metric))
        panel.grid(alpha=0.3)
        panel.legend()
    return axes[0].figure


# --------------------------------------------------------------------------------------------
# Decision boundaries of a classifier on 2-D inputs
# --------------------------------------------------------------------------------------------


def _parameter_device_dtype(model: Any) -> tuple[torch.device, torch.dtype] | None:
    """Device and dtype of the model's first parameter, if it has any."""
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return None
    for p in parameters():
        data = p if isinstance(p, torch.Tensor) else getattr(p, "data", None)
        if isinstance(data, torch.Tensor):
            return data.device, data.dtype
    return None


def _predict_classes(
    predict: Callable[[torch.Tensor], Any], points: torch.Tensor, threshold: float | None
) -> np.ndarray:
    """Class ids predicted for ``points`` (M, 2).

    The prediction may be class ids (integers), one score per class (M, K) -> argmax, or one
    score per point (M,) or (M, 1) -> ``score > threshold``.
    """
    with torch.no_grad():
        scores = to_numpy(predict(points))
    scores = scores.reshape(len(points), -1)
    if np.issubdtype(scores.dtype, np.integer) or scores.dtype == bool:
        return scores[:, 0].astype(np.int64)
    if scores.shape[1] > 1:
        return scores.argmax(axis=1)
    if threshold is None:  # probabilities live in [0, 1]; anything else is taken as a logit
        threshold = 0.5 if scores.min() >= 0.0 and scores.max() <= 1.0 else 0.0
    return (scores[:, 0] > threshold).astype(np.int64)


def plot_decision_boundary(
    predict_fn_or_model: Callable[[torch.Tensor], Any] | Any,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    resolution: int = 200,
    margin: float = 0.5,
    threshold: float | None = None,
    title: str | None = None,
) -> Axes:
    """Regions of the plane colored by the predicted class, with the data on top.

    ``predict_fn_or_model`` maps a batch of points (M, 2) to class ids, to class scores
    (M, K) (the class is the argmax), or to one score per point (the class is
    ``score > threshold``; by default 0.5 for probabilities in [0, 1], else 0 for logits).
    A model with ``forward`` is called in eval mode (restored afterwards). The grid of
    ``resolution`` x ``resolution`` points has X's dtype and device (or the model's).
    """
    X_np, y_np = to_numpy(X), to_numpy(y).reshape(-1)
    if X_np.ndim != 2 or X_np.shape[1] != 2:
        raise ValueError(f"X: expected 2-D points of shape (N, 2), got {tuple(X_np.shape)}")
    if len(y_np) != len(X_np):
        raise ValueError(
            f"y: expected {len(X_np)} labels for X {tuple(X_np.shape)}, got {len(y_np)}"
        )
    if resolution < 2:
        raise ValueError(f"resolution: need at least 2 grid points per axis, got {resolution}")

    if isinstance(X, torch.Tensor):
        device, dtype = X.device, X.dtype if X.is_floating_point() else torch.float32
    else:
        device, dtype = _parameter_device_dtype(predict_fn_or_model) or (
            torch.device("cpu"),
            torch.float32,
        )
    (x_lo, y_lo), (x_hi, y_hi) = X_np.min(axis=0) - margin, X_np.max(axis=0) + margin
    xs, ys = np.linspace(x_lo, x_hi, resolution), np.linspace(y_lo, y_hi, resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    points = torch.tensor(np.c_[grid_x.ravel(), grid_y.ravel()], dtype=dtype, device=device)

    model = predict_fn_or_model
    predict = model if callable(model) else getattr(model, "forward", None)
    if predict is None:
        raise TypeError(
            f"predict_fn_or_model: expected a function or a model with forward(), "
            f"got {type(model).__name__}"
        )
    was_training = getattr(model, "training", None)
    if was_training and callable(getattr(model, "eval", None)):
        model.eval()  # no dropout, running batchnorm statistics
    try:
        classes = _predict_classes(predict, points, threshold).reshape(grid_x.shape)
    finally:
        if was_training and callable(getattr(model, "train", None)):
            model.train()

    num_classes = int(max(classes.max(), y_np.max())) + 1
    colors = _class_colors(num_classes)
    ax = _new_axes(ax, figsize=(5.5, 5.0))
    levels = np.arange(num_classes + 1) - 0.5
    ax.contourf(grid_x, grid_y, classes, levels=levels, cmap=colors, alpha=0.3)
    ax.scatter(
        X_np[:, 0],
        X_np[:, 1],
        c=y_np,
        cmap=colors,
        vmin=-0.5,
        vmax=num_classes - 0.5,
        s=14,
        edgecolors="k",
        linewidths=0.3,
    )
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------------------------
# Vanishing and exploding gradients
# --------------------------------------------------------------------------------------------


def _as_float_or_series(value: Any) -> float | np.ndarray:
    array = to_numpy(value).astype(np.float64)
    return _scalar(array) if array.size == 1 else array.reshape(-1)


def plot_grad_norms(
    norms_by_layer: Mapping[str, Any] | Sequence[Any],
    ax: Axes | None = None,
    kind: str = "auto",
    log: bool = True,
    label: str | None = None,
    title: str | None = None,
) -> Axes:
    """Gradient norm of each layer: does it shrink (vanishing) or grow (exploding) with depth?

    ``norms_by_layer`` maps layer names to norms (a list is named "layer 0", "layer 1", ...).
    - One number per layer: ``kind="bar"`` draws one bar per layer; ``kind="line"`` draws one
      line through the layers (call it again with the same ``ax`` and another ``label`` to
      compare e.g. sigmoid and ReLU networks). ``"auto"`` means bars.
    - A sequence per layer (the norm at each training step): one line per layer against the
      step. ``"auto"`` means lines.
    ``log`` uses a logarithmic y axis, where vanishing gradients show as a straight slope.
    """
    if kind not in ("auto", "bar", "line"):
        raise ValueError(f"kind: expected 'auto', 'bar' or 'line', got {kind!r}")
    if not isinstance(norms_by_layer, Mapping):
        norms_by_layer = {f"layer {i}": v for i, v in enumerate(norms_by_layer)}
    if not norms_by_layer:
        raise ValueError("norms_by_layer: no layers given")
    names = list(norms_by_layer)
    values = [_as_float_or_series(norms_by_layer[name]) for name in names]
    over_time = [isinstance(v, np.ndarray) for v in values]
    if any(over_time) and not all(over_time):
        raise ValueError(
            "norms_by_layer: give either one number per layer or one sequence per layer, not a mix"
        )

    ax = _new_axes(ax, figsize=(max(5.0, 0.6 * len(names) + 2.0), 4.0))
    if all(over_time):
        if kind == "bar":
            raise ValueError("kind: 'bar' needs one number per layer, got a sequence per layer")
        for name, series in zip(names, values, strict=True):
            ax.plot(np.arange(len(series)), series, label=name)
        ax.set_xlabel("step")
        ax.legend(fontsize="small", ncol=2 if len(names) > 6 else 1)
    else:
        positions = np.arange(len(names))
        if kind == "line":
            ax.plot(positions, values, marker="o", label=label)
            if label is not None:
                ax.legend()
        else:
            ax.bar(positions, values, label=label, color="tab:blue")
        ax.set_xticks(positions)
        if len(names) > 6:
            ax.set_xticklabels(names, rotation=45, ha="right")
        else:
            ax.set_xticklabels(names)
        ax.set_xlabel("layer (input side on the left)")
    if log:
        ax.set_yscale("log")
    ax.set_axisbelow(True)  # grid lines behind the bars
    ax.set_ylabel("gradient norm")
    ax.set_title(title or "gradient norm per layer")
    ax.grid(alpha=0.3, which="both" if log else "major")
    return ax


def plot_activation_histograms(
    activations: Mapping[str, Any],
    ax: Axes | Sequence[Axes] | None = None,
    bins: int = 50,
    what: str = "activations",
) -> Figure:
    """One histogram per layer of the values in ``activations`` (layer name -> tensor).

    Saturated sigmoid/tanh units pile up at the ends of their range; collapsing or exploding
    values show as a histogram that shrinks to a spike or spreads out layer after layer. The
    same plot works for gradients (set ``what="gradients"`` for the labels). Each panel's
    title gives the layer's mean and standard deviation.
    """
    if not activations:
        raise ValueError("activations: no layers given")
    axes = _new_axes_grid(ax, len(activations), panel_size=3.0)
    for panel, (name, values) in zip(axes, activations.items(), strict=True):
        flat = to_numpy(values).astype(np.float64).reshape(-1)
        finite = flat[np.isfinite(flat)]
        if finite.size == 0:
            panel.text(0.5, 0.5, "no finite values", ha="center", transform=panel.transAxes)
        else:
            panel.hist(finite, bins=bins, color="tab:blue", alpha=0.8)
            panel.set_title(f"{name}\nmean {finite.mean():+.2g}, std {finite.std():.2g}")
        panel.set_xlabel(what)
        panel.set_yticks([])
    return axes[0].figure


# --------------------------------------------------------------------------------------------
# Loss surfaces and optimizer trajectories
# --------------------------------------------------------------------------------------------


def plot_loss_surface(
    f: Callable[[torch.Tensor, torch.Tensor], Any],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    trajectories: Mapping[str, Any] | None = None,
    ax: Axes | None = None,
    resolution: int = 200,
    levels: int = 30,
    log_scale: bool = False,
    minimum: tuple[float, float] | None = None,
) -> Axes:
    """Contour lines of a function of two variables, with optimizer paths drawn on top.

    ``f(x, y)`` takes two float64 tensors of the same shape and returns the values elementwise
    (e.g. ``lambda x, y: x**2 + 10 * y**2``). ``trajectories`` maps a name (e.g. "SGD",
    "momentum", "Adam") to the points visited, a list of (x, y) pairs or a (T, 2) tensor.
    ``log_scale`` spaces the contours by log(f - min f), for valleys like Rosenbrock's.
    ``minimum`` marks a known minimizer with a star.
    """
    (x_lo, x_hi), (y_lo, y_hi) = xlim, ylim
    if not (x_lo < x_hi and y_lo < y_hi):
        raise ValueError(f"xlim, ylim: expected (low, high) with low < high, got {xlim}, {ylim}")
    xs = torch.linspace(float(x_lo), float(x_hi), resolution, dtype=torch.float64)
    ys = torch.linspace(float(y_lo), float(y_hi), resolution, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    values = to_numpy(f(grid_x, grid_y)).astype(np.float64)
    if values.shape != tuple(grid_x.shape):
        raise ValueError(
            f"f: expected values of shape {tuple(grid_x.shape)} for inputs of that shape, "
            f"got {values.shape}; f must work elementwise on tensors"
        )

    ax = _new_axes(ax, figsize=(6.0, 5.0))
    if log_scale:
        shifted = values - np.nanmin(values)
        positive = shifted[shifted > 0]
        floor = positive.min() if positive.size else 1.0
        contour_values, label = np.log10(shifted + floor), "log10(f - min f)"
    else:
        contour_values, label = values, "f"
    ax.contour(to_numpy(grid_x), to_numpy(grid_y), contour_values, levels=levels, cmap="viridis")
    ax.set_title(f"contours of {label}")

    for name, path in (trajectories or {}).items():
        points = to_numpy(path).astype(np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(
                f"trajectories[{name!r}]: expected a list of (x, y) points, shape (T, 2), "
                f"got {points.shape}"
            )
        (line,) = ax.plot(points[:, 0], points[:, 1], marker="o", markersize=3, label=name)
        ax.scatter(points[:1, 0], points[:1, 1], color=line.get_color(), marker="s", s=40)
    if minimum is not None:
        ax.scatter([minimum[0]], [minimum[1]], marker="*", s=200, color="gold", edgecolors="k")
    if trajectories:
        ax.legend()
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return ax


# --------------------------------------------------------------------------------------------
# Convolution filters
# --------------------------------------------------------------------------------------------


def plot_filters(
    weight: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    ncols: int = 8,
    channel: int | None = None,
    title: str | None = None,
) -> Axes:
    """The filters of a conv layer, weight (F, C, KH, KW), as a grid of small images.

    With C == 3 (and ``channel`` None) each filter is shown in color; otherwise one input
    channel is shown (``channel``), or the mean over input channels when ``channel`` is None.
    Each filter is scaled on its own: blue is negative, red positive, white zero.
    """
    w = to_numpy(weight).astype(np.float64)
    if w.ndim != 4:
        raise ValueError(f"weight: expected a conv weight (F, C, KH, KW), got shape {w.shape}")
    num_filters, channels, kh, kw = w.shape
    if channel is not None and not 0 <= channel < channels:
        raise ValueError(f"channel: expected 0 <= channel < {channels}, got {channel}")
    color = channels == 3 and channel is None
    if color:
        images = w.transpose(0, 2, 3, 1)  # (F, KH, KW, 3)
        lo = images.min(axis=(1, 2, 3), keepdims=True)
        span = images.max(axis=(1, 2, 3), keepdims=True) - lo
        images = (images - lo) / np.where(span > 0, span, 1.0)  # each filter in [0, 1]
    else:
        images = w.mean(axis=1) if channel is None else w[:, channel]  # (F, KH, KW)
        scale = np.abs(images).max(axis=(1, 2), keepdims=True)
        images = images / np.where(scale > 0, scale, 1.0)  # each filter in [-1, 1]

    ncols = max(1, min(ncols, num_filters))
    nrows = math.ceil(num_filters / ncols)
    # One mosaic image, filters separated by a one-pixel gap (NaN shows as the background).
    shape = (nrows * (kh + 1) - 1, ncols * (kw + 1) - 1) + ((3,) if color else ())
    mosaic = np.full(shape, 1.0 if color else np.nan)
    for index in range(num_filters):
        row, col = divmod(index, ncols)
        top, left = row * (kh + 1), col * (kw + 1)
        mosaic[top : top + kh, left : left + kw] = images[index]

    ax = _new_axes(ax, figsize=(0.9 * ncols + 0.5, 0.9 * nrows + 0.5))
    if color:
        ax.imshow(mosaic, interpolation="nearest")
    else:
        ax.imshow(mosaic, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{num_filters} filters, {kh}x{kw}")
    return ax


# --------------------------------------------------------------------------------------------
# Derivatives and finite differences (lessons 01 and 03)
# --------------------------------------------------------------------------------------------


def _jumps(x: np.ndarray, y: np.ndarray, factor: float = 10.0) -> np.ndarray:
    """Indices i where y jumps between x[i] and x[i + 1].

    A smooth curve changes by about (its slope) * (spacing) from one point to the next, and
    its slope changes little from one interval to the next. So the step i is a jump when
    |y[i+1] - y[i]| is more than ``factor`` times what the slopes of the neighbouring
    intervals predict for its spacing, and not negligible (over 0.1% of the curve's range).
    """
    dx, dy = np.abs(np.diff(x)), np.abs(np.diff(y))
    if dy.size < 2:
        return np.array([], dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(dx > 0, dy / dx, np.nan)
    before = np.concatenate([[np.nan], slope[:-1]])
    after = np.concatenate([slope[1:], [np.nan]])
    neighbour_slope = np.nan_to_num(np.fmax(before, after), nan=0.0)
    finite = y[np.isfinite(y)]
    negligible = 1e-3 * (finite.max() - finite.min()) if finite.size else 0.0
    is_jump = (dy > factor * neighbour_slope * dx) & (dy > negligible)
    return np.flatnonzero(is_jump)


def _with_gaps(x: np.ndarray, y: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y with a NaN point inserted after each index in ``after``: plot() leaves a gap."""
    after = np.unique(after)
    midpoints = (x[after] + x[after + 1]) / 2
    return np.insert(x, after + 1, midpoints), np.insert(y, after + 1, np.nan)


def plot_function_and_derivative(
    f: Callable[[torch.Tensor], Any],
    df: Callable[[torch.Tensor], Any],
    xs: torch.Tensor | np.ndarray | Sequence[float],
    ax: Axes | None = None,
    name: str = "f",
    show_finite_differences: bool = False,
    h: float = 1e-3,
    *,
    xlabel: str = "x",
    names: Sequence[str] | None = None,
    discontinuities: Sequence[float] | None = None,
) -> Axes:
    """f(x) and its derivative f'(x) on the points ``xs``.

    ``f`` and ``df`` take a tensor and work elementwise (e.g. ``torch.tanh`` and
    ``lambda x: 1 - torch.tanh(x) ** 2``). With ``show_finite_differences`` the central
    difference (f(x + h) - f(x - h)) / (2h) is drawn as dots on top of f', a check by eye.

    A curve that jumps (the derivative of ReLU at 0) is drawn with a gap there instead of
    a vertical line that the function never takes: the jumps are found from the points
    themselves (a step much larger than the neighbouring slopes predict), or, for f', given
    as ``discontinuities``, the x positions where f' jumps; a point of ``xs`` at one of them
    (up to rounding: ``torch.linspace(-5, 5, 401)`` misses 0 by 3e-16) is drawn as a dot,
    the value f' is given there (ReLU's derivative at 0 is 0 by convention).
    ``discontinuities=[]`` never breaks f'.

    ``xlabel`` names the variable (``xlabel="z"`` gives the axis label z and the legend
    f(z), f'(z)); ``names`` replaces the two legend entries, e.g. ``("a", "da/dz")``.
    """
    x = xs if isinstance(xs, torch.Tensor) else torch.as_tensor(np.asarray(xs, dtype=np.float64))
    if x.ndim != 1:
        raise ValueError(f"xs: expected a 1-D sequence of points, got shape {tuple(x.shape)}")
    if names is None:
        names = (f"{name}({xlabel})", f"{name}'({xlabel})")
    if isinstance(names, str) or len(names) != 2:
        raise ValueError(f"names: expected two legend entries (f, f'), got {names!r}")
    ax = _new_axes(ax)
    x_np = to_numpy(x).astype(np.float64)
    f_np = to_numpy(f(x)).astype(np.float64).reshape(-1)
    df_np = to_numpy(df(x)).astype(np.float64).reshape(-1)
    for which, values in (("f", f_np), ("df", df_np)):
        if values.shape != x_np.shape:
            raise ValueError(
                f"{which}: returned {values.size} values for the {x_np.size} points of xs "
                "(expected one value per point)"
            )
    ax.plot(*_with_gaps(x_np, f_np, _jumps(x_np, f_np)), label=names[0])
    if discontinuities is None:
        df_breaks, on_a_jump = _jumps(x_np, df_np), np.zeros_like(x_np, dtype=bool)
    else:
        at = np.asarray(discontinuities, dtype=np.float64).reshape(1, -1)
        rounding = 1e-6 * np.median(np.abs(np.diff(x_np))) if x_np.size > 1 else 0.0
        on_a_jump = (np.abs(x_np[:, None] - at) <= rounding).any(axis=1)  # linspace misses 0
        straddles = ((x_np[:-1, None] < at) & (at < x_np[1:, None])).any(axis=1)
        around_a_point = on_a_jump[1:] | on_a_jump[:-1]  # a point on a jump stands alone
        df_breaks = np.flatnonzero(straddles | around_a_point)
    (df_line,) = ax.plot(*_with_gaps(x_np, df_np, df_breaks), label=names[1])
    if show_finite_differences:
        every = max(1, len(x) // 25)
        x_few = x[::every]
        numeric = (to_numpy(f(x_few + h)) - to_numpy(f(x_few - h))) / (2 * h)
        ax.plot(to_numpy(x_few), numeric, "k.", label="central difference")
    if on_a_jump.any():
        ax.plot(x_np[on_a_jump], df_np[on_a_jump], "o", color=df_line.get_color(), markersize=4)
    ax.axhline(0.0, color="gray", linewidth=0.5)
    ax.set_xlabel(xlabel)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_finite_difference_error(
    hs: Sequence[float] | np.ndarray | torch.Tensor,
    errors: Mapping[str, Any],
    ax: Axes | None = None,
    slopes: Iterable[int] = (),
) -> Axes:
    """Error of finite-difference derivatives against the step size h, on log-log axes.

    ``errors`` maps a method name (e.g. "forward", "central") to its absolute error at each h.
    Truncation error falls with h (slope 1 for forward, 2 for central differences); rounding
    error grows like eps / h, so each curve has a best h. ``slopes`` adds dashed guide lines
    proportional to h^p for each p given.
    """
    h = to_numpy(hs).astype(np.float64).reshape(-1)
    if h.size < 2 or np.any(h <= 0):
        raise ValueError(f"hs: expected at least two positive step sizes, got {h.size} values")
    if not errors:
        raise ValueError("errors: no methods given")
    ax = _new_axes(ax)
    all_errors = []
    for name, values in errors.items():
        err = np.abs(to_numpy(values).astype(np.float64).reshape(-1))
        if err.shape != h.shape:
            raise ValueError(
                f"errors[{name!r}]: expected {h.size} values (one per h), got {err.size}"
            )
        err = np.where(err > 0, err, np.nan)  # an exact zero cannot be drawn on a log scale
        ax.loglog(h, err, marker="o", markersize=3, label=name)
        all_errors.append(err)
    y_range = ax.get_ylim()
    largest = int(np.argmax(h))
    at_largest_h = [err[largest] for err in all_errors if np.isfinite(err[largest])]
    anchor = float(np.median(at_largest_h)) if at_largest_h else 1.0
    for p in slopes:
        guide = anchor * (h / h[largest]) ** p  # through the errors' median at the largest h
        ax.loglog(h, guide, "--", color="gray", linewidth=0.8, label=f"O(h^{p})")
    ax.set_ylim(y_range)  # the guides do not stretch the view
    ax.set_xlabel("step size h")
    ax.set_ylabel("absolute error")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return ax
