"""Tests of coursekit.viz.plots: every plot renders and draws what it says it draws."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

import coursekit.viz as viz
from coursekit.viz.plots import (
    plot_activation_histograms,
    plot_decision_boundary,
    plot_filters,
    plot_finite_difference_error,
    plot_function_and_derivative,
    plot_grad_norms,
    plot_history,
    plot_loss_surface,
    to_numpy,
)


@pytest.fixture(autouse=True)
def _agg_and_close_figures():
    """Draw off-screen, and leave no figure open after a test."""
    plt.switch_backend("Agg")
    yield
    plt.close("all")


def _pixel_rgb(ax, x: float, y: float) -> np.ndarray:
    """The RGB color (in [0, 1]) drawn at the data point (x, y) of ``ax``."""
    fig = ax.figure
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    row = image.shape[0] - int(round(py))
    return image[row, int(round(px)), :3] / 255.0


def _assert_region_color(ax, x: float, y: float, color: str) -> None:
    """The region at (x, y) is filled with ``color`` at alpha 0.3 over white."""
    expected = 0.3 * np.array(to_rgb(color)) + 0.7 * np.ones(3)
    np.testing.assert_allclose(_pixel_rgb(ax, x, y), expected, atol=0.02)


# --------------------------------------------------------------------------------------------
# to_numpy
# --------------------------------------------------------------------------------------------


def test_to_numpy_handles_grad_low_precision_and_lists_of_tensors():
    w = torch.tensor([1.5, -2.0], requires_grad=True)
    np.testing.assert_array_equal(to_numpy(w), [1.5, -2.0])
    np.testing.assert_array_equal(to_numpy(w.to(torch.bfloat16)), [1.5, -2.0])
    np.testing.assert_array_equal(to_numpy([torch.tensor(1.0), torch.tensor(2.0)]), [1.0, 2.0])
    np.testing.assert_array_equal(to_numpy([3, 4]), [3, 4])


# --------------------------------------------------------------------------------------------
# plot_history
# --------------------------------------------------------------------------------------------


def test_plot_history_draws_train_and_val_curves_per_metric():
    history = SimpleNamespace(
        train_loss=[1.0, 0.5, 0.25],
        val_loss=[1.1, 0.7, 0.6],
        train_acc=[0.5, 0.8, 0.9],
        val_acc=[0.4, 0.7, 0.75],
    )
    fig = plot_history(history)
    assert isinstance(fig, Figure)
    loss_ax, acc_ax = [ax for ax in fig.axes if ax.get_visible()]
    assert [line.get_label() for line in loss_ax.lines] == ["train", "val"]
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), history.val_loss)
    np.testing.assert_array_equal(acc_ax.lines[0].get_ydata(), history.train_acc)
    assert acc_ax.get_title() == "accuracy"


def test_plot_history_accepts_a_dict_tensors_and_missing_validation():
    history = {"train_loss": [torch.tensor(2.0), torch.tensor(1.0)], "val_loss": []}
    fig = plot_history(history, metrics=("loss",), mark_epoch=2)
    (ax,) = fig.axes
    train, marker = ax.lines
    np.testing.assert_array_equal(train.get_ydata(), [2.0, 1.0])
    np.testing.assert_array_equal(marker.get_xdata(), [2, 2])  # the vertical line at epoch 2


def test_plot_history_draws_into_given_axes():
    _, (a, b) = plt.subplots(1, 2)
    fig = plot_history({"train_loss": [1, 0], "train_acc": [0, 1]}, ax=[a, b])
    assert fig is a.figure
    assert len(a.lines) == 1 and len(b.lines) == 1


def test_plot_history_rejects_a_metric_with_no_values():
    with pytest.raises(ValueError, match="f1"):
        plot_history({"train_loss": [1.0]}, metrics=("loss", "f1"))
    with pytest.raises(ValueError, match="ax"):
        plot_history({"train_loss": [1.0], "train_acc": [1.0]}, ax=plt.subplots()[1])


# --------------------------------------------------------------------------------------------
# plot_decision_boundary
# --------------------------------------------------------------------------------------------


def _corner_data(dtype=torch.float64):
    """Points near the four corners of [-2, 2]^2, labelled by the sign of x1."""
    X = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]], dtype=dtype)
    y = (X[:, 0] > 0).long()
    return X, y


def test_decision_boundary_colors_each_side_by_its_predicted_class():
    X, y = _corner_data()
    ax = plot_decision_boundary(lambda p: p[:, 0], X, y)  # a logit: class 1 where x1 > 0
    scatter = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatter) == 1 and len(scatter[0].get_offsets()) == 4
    _assert_region_color(ax, -1.0, 0.0, "tab:blue")
    _assert_region_color(ax, 1.0, 0.0, "tab:orange")


def test_decision_boundary_takes_argmax_of_class_scores():
    X, _ = _corner_data()
    y = torch.tensor([0, 1, 2, 2])

    def three_classes(p):  # class 2 right of x1 = 0, class 1 top-left, class 0 bottom-left
        return torch.stack([-p[:, 1], p[:, 1], 3 * p[:, 0]], dim=1)

    ax = plot_decision_boundary(three_classes, X, y)
    _assert_region_color(ax, -1, -1, "tab:blue")
    _assert_region_color(ax, -1, 1, "tab:orange")
    _assert_region_color(ax, 1, 0, "tab:green")


def test_decision_boundary_thresholds_probabilities_at_one_half():
    X, y = _corner_data()
    # sigmoid(x1 - 1) < 0.5 at x1 = 0.5, so that point is class 0 for probabilities.
    ax = plot_decision_boundary(lambda p: torch.sigmoid(p[:, 0] - 1.0), X, y)
    _assert_region_color(ax, 0.5, 0, "tab:blue")
    _assert_region_color(ax, 1.5, 0, "tab:orange")


class _RecordingModel:
    """A model in PyTorch's style that remembers how it was called."""

    def __init__(self):
        self.training = True
        self.seen = []

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def forward(self, x):
        self.seen.append((self.training, x.dtype, x.shape))
        return torch.stack([-x[:, 0], x[:, 0]], dim=1)


def test_decision_boundary_runs_a_model_in_eval_mode_on_the_data_dtype():
    X, y = _corner_data(torch.float64)
    model = _RecordingModel()
    plot_decision_boundary(model, X, y, resolution=30)
    assert model.seen == [(False, torch.float64, (900, 2))]
    assert model.training  # put back in train mode


def test_decision_boundary_works_with_a_torch_module_and_numpy_data():
    X, y = _corner_data()
    net = torch.nn.Linear(2, 2)
    ax = plot_decision_boundary(net, X.numpy(), y.numpy(), resolution=20)
    assert len(ax.collections) >= 2
    assert net.training


def test_decision_boundary_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"X: .*\(5, 3\)"):
        plot_decision_boundary(lambda p: p[:, 0], torch.zeros(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="y: expected 5 labels"):
        plot_decision_boundary(lambda p: p[:, 0], torch.zeros(5, 2), torch.zeros(4))


@pytest.mark.gpu
def test_decision_boundary_on_cuda():
    X, y = _corner_data(torch.float32)
    devices = []

    def predict(p):
        devices.append(p.device.type)
        return p[:, 0]

    plot_decision_boundary(predict, X.cuda(), y.cuda(), resolution=10)
    assert devices == ["cuda"]


# --------------------------------------------------------------------------------------------
# Gradient norms and activation histograms
# --------------------------------------------------------------------------------------------


def test_grad_norms_bars_one_per_layer_on_a_log_scale():
    norms = {"fc1": torch.tensor(1e-4), "fc2": 1e-2, "fc3": torch.tensor([1.0])}
    ax = plot_grad_norms(norms)
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, [1e-4, 1e-2, 1.0])
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fc1", "fc2", "fc3"]


def test_grad_norms_line_through_layers_for_comparisons():
    ax = plot_grad_norms([3.0, 2.0, 1.0], kind="line", label="sigmoid", log=False)
    plot_grad_norms([1.0, 1.0, 1.0], ax=ax, kind="line", label="relu", log=False)
    assert [line.get_label() for line in ax.lines] == ["sigmoid", "relu"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [3.0, 2.0, 1.0])
    assert ax.get_yscale() == "linear"


def test_grad_norms_over_training_steps_draw_a_line_per_layer():
    ax = plot_grad_norms({"fc1": torch.tensor([1.0, 0.5, 0.25]), "fc2": [2.0, 2.0, 2.0]})
    assert [line.get_label() for line in ax.lines] == ["fc1", "fc2"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [1.0, 0.5, 0.25])
    assert ax.get_xlabel() == "step"


def test_grad_norms_rejects_bad_input():
    with pytest.raises(ValueError, match="not a mix"):
        plot_grad_norms({"a": 1.0, "b": [1.0, 2.0]})
    with pytest.raises(ValueError, match="kind"):
        plot_grad_norms({"a": 1.0}, kind="pie")
    with pytest.raises(ValueError, match="bar"):
        plot_grad_norms({"a": [1.0, 2.0]}, kind="bar")
    with pytest.raises(ValueError, match="no layers"):
        plot_grad_norms({})


def test_activation_histograms_one_panel_per_layer():
    acts = {
        "layer 1": torch.randn(64, 10),
        "layer 2": torch.tanh(3 * torch.randn(64, 10)),
        "broken": torch.full((4,), float("nan")),
    }
    fig = plot_activation_histograms(acts, bins=20)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3
    assert len(panels[0].patches) == 20
    assert sum(p.get_height() for p in panels[0].patches) == 640
    assert panels[1].get_title().startswith("layer 2\nmean")
    assert panels[2].texts[0].get_text() == "no finite values"


def test_activation_histograms_wrap_many_layers_into_rows():
    fig = plot_activation_histograms({f"l{i}": torch.randn(10) for i in range(7)})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 7 and len(fig.axes) == 10  # a 2 x 5 grid, 3 panels hidden


# --------------------------------------------------------------------------------------------
# Loss surfaces
# --------------------------------------------------------------------------------------------


def test_loss_surface_with_trajectories_and_a_minimum():
    paths = {
        "SGD": [(2.0, 1.0), (1.0, -0.5), (0.5, 0.2)],
        "Adam": torch.tensor([[2.0, 1.0], [1.5, 0.5]]),
    }
    ax = plot_loss_surface(
        lambda x, y: x**2 + 10 * y**2, (-3, 3), (-2, 2), paths, minimum=(0.0, 0.0)
    )
    assert [line.get_label() for line in ax.lines] == ["SGD", "Adam"]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [2.0, 1.0, 0.5])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["SGD", "Adam"]
    starts_and_star = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(starts_and_star) == 3
    assert ax.get_xlim() == (-3, 3)


def test_loss_surface_log_scale_and_rosenbrock():
    ax = plot_loss_surface(
        lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
        (-2, 2),
        (-1, 3),
        log_scale=True,
        resolution=50,
    )
    assert "log10" in ax.get_title()
    assert not ax.lines


def test_loss_surface_rejects_non_elementwise_functions_and_bad_paths():
    with pytest.raises(ValueError, match="elementwise"):
        plot_loss_surface(lambda x, y: (x + y).sum(), (-1, 1), (-1, 1), resolution=10)
    with pytest.raises(ValueError, match=r"trajectories\['bad'\]"):
        plot_loss_surface(lambda x, y: x + y, (-1, 1), (-1, 1), {"bad": [1.0, 2.0]})
    with pytest.raises(ValueError, match="xlim"):
        plot_loss_surface(lambda x, y: x + y, (1, -1), (-1, 1))


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------


def test_filters_form_a_mosaic_of_normalized_filters():
    w = torch.arange(4 * 1 * 2 * 3, dtype=torch.float32).reshape(4, 1, 2, 3) - 5.0
    ax = plot_filters(w, ncols=2)
    (image,) = ax.images
    mosaic = np.ma.filled(image.get_array(), np.nan)
    assert mosaic.shape == (2 * 3 - 1, 2 * 4 - 1)  # 2 x 2 filters of 2 x 3, 1-pixel gaps
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[:, 3]).all()
    first = w[0, 0].numpy() / np.abs(w[0, 0].numpy()).max()
    np.testing.assert_allclose(mosaic[0:2, 0:3], first)
    last = w[3, 0].numpy() / np.abs(w[3, 0].numpy()).max()
    np.testing.assert_allclose(mosaic[3:5, 4:7], last)


def test_filters_in_color_and_by_channel():
    w = torch.randn(5, 3, 4, 4)
    (color,) = plot_filters(w).images
    assert color.get_array().shape == (4, 5 * 5 - 1, 3)
    assert 0.0 <= color.get_array().min() and color.get_array().max() <= 1.0
    (single,) = plot_filters(w, channel=2).images
    expected = w[1, 2].numpy() / np.abs(w[1, 2].numpy()).max()
    np.testing.assert_allclose(np.ma.filled(single.get_array())[:, 5:9], expected, rtol=1e-6)


def test_filters_reject_bad_input():
    with pytest.raises(ValueError, match=r"weight: .*\(3, 3\)"):
        plot_filters(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="channel"):
        plot_filters(torch.zeros(2, 2, 3, 3), channel=2)


# --------------------------------------------------------------------------------------------
# Derivatives and finite differences
# --------------------------------------------------------------------------------------------


def test_function_and_derivative_with_finite_difference_check():
    xs = torch.linspace(-3, 3, 101, dtype=torch.float64)
    ax = plot_function_and_derivative(
        torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, xs, name="tanh", show_finite_differences=True
    )
    f_line, df_line, numeric = ax.lines[:3]
    assert (f_line.get_label(), df_line.get_label()) == ("tanh(x)", "tanh'(x)")
    np.testing.assert_allclose(df_line.get_ydata(), 1 - np.tanh(xs.numpy()) ** 2)
    expected = 1 - np.tanh(numeric.get_xdata()) ** 2
    np.testing.assert_allclose(numeric.get_ydata(), expected, atol=1e-6)


def test_function_and_derivative_accepts_a_list_of_points():
    ax = plot_function_and_derivative(lambda x: x**2, lambda x: 2 * x, [0.0, 1.0, 2.0])
    assert len(ax.lines) == 3  # f, f', and the y = 0 line
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="xs"):
        plot_function_and_derivative(torch.sin, torch.cos, torch.zeros(2, 2))


def _nan_free_runs(line) -> list[np.ndarray]:
    """The x values of each piece of a drawn line (pieces are separated by NaN)."""
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    pieces = np.split(x, np.flatnonzero(np.isnan(y)))
    return [piece[~np.isnan(piece)] if i == 0 else piece[1:] for i, piece in enumerate(pieces)]


def _relu(x):
    return torch.relu(x)


def _relu_slope(x):
    return (x > 0).to(x.dtype)


def _leaky_relu(x):
    return torch.where(x > 0, x, 0.1 * x)


def _leaky_relu_slope(x):
    return torch.where(x > 0, 1.0, 0.1).to(x.dtype)


@pytest.mark.parametrize("points", [101, 100])  # with and without a point at exactly 0
@pytest.mark.parametrize(
    ("f", "df"), [(_relu, _relu_slope), (_leaky_relu, _leaky_relu_slope)], ids=["relu", "leaky"]
)
def test_function_and_derivative_breaks_the_line_at_a_jump(f, df, points):
    xs = torch.linspace(-2, 2, points, dtype=torch.float64)
    ax = plot_function_and_derivative(f, df, xs, name="relu", show_finite_differences=True)
    f_line, df_line = ax.lines[:2]
    runs = _nan_free_runs(df_line)
    assert len(runs) == 2  # left of the jump, right of it
    assert not any((run < 0).any() and (run > 0).any() for run in runs)  # no piece crosses 0
    assert not np.isnan(f_line.get_ydata()).any()  # the function itself is continuous
    drawn = np.asarray(df_line.get_ydata(), float)
    np.testing.assert_array_equal(drawn[~np.isnan(drawn)], df(xs).numpy())  # nothing lost


@pytest.mark.parametrize(
    ("f", "df"),
    [
        (torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
        (torch.sigmoid, lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x))),
        (lambda x: x**2, lambda x: 2 * x),
        (lambda x: x**3, lambda x: 3 * x**2),
        (lambda x: torch.tanh(4 * x), lambda x: 4 * (1 - torch.tanh(4 * x) ** 2)),
        (lambda x: torch.relu(x) ** 2, lambda x: 2 * torch.relu(x)),  # a kink, not a jump
        (lambda x: torch.sqrt(x.abs()), torch.cos),  # a cusp: steep, but continuous
    ],
    ids=["tanh", "sigmoid", "square", "cube", "steep tanh", "kink", "sqrt |x|"],
)
def test_function_and_derivative_keeps_smooth_curves_whole(f, df):
    for xs in (torch.linspace(-3, 3, 61), torch.linspace(-3, 3, 400, dtype=torch.float64)):
        ax = plot_function_and_derivative(f, df, xs)
        for line in ax.lines[:2]:
            assert not np.isnan(line.get_ydata()).any(), line.get_label()
        plt.close("all")


def test_function_and_derivative_breaks_a_jumping_function_too():
    step = plot_function_and_derivative(torch.sign, torch.zeros_like, torch.linspace(-1, 1, 50))
    assert [len(run) for run in _nan_free_runs(step.lines[0])] == [25, 25]


def test_function_and_derivative_at_given_discontinuities():
    xs = torch.linspace(-2, 2, 101, dtype=torch.float64)  # holds 0, up to rounding (-4e-17)
    ax = plot_function_and_derivative(_relu, _relu_slope, xs, discontinuities=[0.0])
    runs = _nan_free_runs(ax.lines[1])
    left, alone, right = runs  # the point at 0 stands alone...
    assert left.max() < 0 < right.min()
    np.testing.assert_allclose(alone, [0.0], atol=1e-15)
    at_zero = ax.lines[2]  # ...drawn as a dot at relu'(0) = 0, the convention
    np.testing.assert_allclose(at_zero.get_xydata(), [[0.0, 0.0]], atol=1e-15)
    assert at_zero.get_color() == ax.lines[1].get_color()

    between = plot_function_and_derivative(
        _relu, _relu_slope, torch.linspace(-2, 2, 100), discontinuities=[0.0]
    )
    assert [len(run) for run in _nan_free_runs(between.lines[1])] == [50, 50]
    never = plot_function_and_derivative(_relu, _relu_slope, xs, discontinuities=[])
    assert not np.isnan(never.lines[1].get_ydata()).any()


def test_function_and_derivative_labels_the_variable():
    xs = torch.linspace(-1, 1, 11)
    ax = plot_function_and_derivative(
        torch.tanh, lambda z: 1 - torch.tanh(z) ** 2, xs, name="tanh", xlabel="z"
    )
    assert ax.get_xlabel() == "z"
    assert [line.get_label() for line in ax.lines[:2]] == ["tanh(z)", "tanh'(z)"]
    named = plot_function_and_derivative(torch.tanh, torch.tanh, xs, names=("a", "da/dz"))
    assert [t.get_text() for t in named.get_legend().get_texts()] == ["a", "da/dz"]
    assert named.get_xlabel() == "x"  # the default, as before
    with pytest.raises(ValueError, match="names"):
        plot_function_and_derivative(torch.tanh, torch.tanh, xs, names=("a",))
    with pytest.raises(ValueError, match=r"df: returned 1 values for the 11 points"):
        plot_function_and_derivative(torch.tanh, lambda z: z.sum(), xs)


def test_finite_difference_error_on_log_log_axes_with_slopes():
    hs = np.logspace(-12, -1, 12)
    x = 1.0
    forward = np.abs((np.sin(x + hs) - np.sin(x)) / hs - np.cos(x))
    central = np.abs((np.sin(x + hs) - np.sin(x - hs)) / (2 * hs) - np.cos(x))
    ax = plot_finite_difference_error(hs, {"forward": forward, "central": central}, slopes=(1, 2))
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["forward", "central", "O(h^1)", "O(h^2)"]
    guide = ax.lines[3].get_ydata()
    np.testing.assert_allclose(guide[1:] / guide[:-1], 100.0)  # h grows 10x, h^2 grows 100x


def test_finite_difference_error_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"errors\['forward'\]: expected 3"):
        plot_finite_difference_error([1e-3, 1e-2, 1e-1], {"forward": [1.0, 2.0]})
    with pytest.raises(ValueError, match="hs"):
        plot_finite_difference_error([0.0, 1e-2], {"forward": [1.0, 2.0]})


# --------------------------------------------------------------------------------------------
# The package's names
# --------------------------------------------------------------------------------------------


def test_viz_exports_and_lazy_graph_import():
    for name in viz.__all__:
        if name in ("draw_graph", "backward_steps"):
            continue
        assert callable(getattr(viz, name)), name
    assert {"draw_graph", "backward_steps"} <= set(viz.__all__)
    with pytest.raises(AttributeError, match="no_such_plot"):
        viz.no_such_plot  # noqa: B018
    if importlib.util.find_spec("coursekit.viz.graph") is not None:
        assert callable(viz.draw_graph) and callable(viz.backward_steps)
