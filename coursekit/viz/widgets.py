"""Interactive helpers for the lessons: a learning-rate explorer and a step-by-step viewer.

They use only the parts of ipywidgets that versions 7.6+ and 8 share, so they run on Colab
(ipywidgets 7) and in a current JupyterLab (ipywidgets 8) alike. Each helper returns an
object whose ``.widget`` is the container to show; evaluating the object as the last line
of a cell shows it too (it defines ``_ipython_display_``), or call ``display(obj.widget)``.

Figures are drawn into a ``widgets.Output`` and closed right after, so they do not pile up.
Every control can also be driven from code (``explorer.slider.value = 0.5``,
``stepper.next()``), which is how the tests check them without a browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "LearningRateExplorer",
    "learning_rate_explorer",
    "gradient_descent_1d",
    "classify_run",
    "Stepper",
    "step_through",
    "show_in_output",
]


def show_in_output(output: widgets.Output, draw: Callable[[], Any]) -> Any:
    """Replace what ``output`` shows by what ``draw()`` makes, and return that.

    ``draw`` may return a matplotlib Figure or Axes (shown, then closed), return None after
    drawing with pyplot (every new figure is shown, then closed), or return anything else
    that Jupyter can display (e.g. an SVG or HTML object).
    """
    figures_before = set(plt.get_fignums())
    with output:
        output.clear_output(wait=True)
        result = draw()
        if isinstance(result, Axes):
            result = result.figure
        if isinstance(result, Figure):
            display(result)
            plt.close(result)
        elif result is None:
            for number in sorted(set(plt.get_fignums()) - figures_before):
                figure = plt.figure(number)
                display(figure)
                plt.close(figure)
        else:
            display(result)
    return result


# --------------------------------------------------------------------------------------------
# Learning rate: converge, oscillate or diverge
# --------------------------------------------------------------------------------------------


def gradient_descent_1d(
    grad_fn: Callable[[float], Any], x0: float, lr: float, steps: int, blow_up: float = 1e12
) -> list[float]:
    """The iterates x_0, x_1, ... of x_{t+1} = x_t - lr * grad(x_t).

    Stops early once an iterate is no longer finite or its size passes ``blow_up``.
    """
    xs = [float(x0)]
    for _ in range(steps):
        try:
            x = xs[-1] - lr * float(grad_fn(xs[-1]))
        except OverflowError:
            x = math.inf
        xs.append(x)
        if not math.isfinite(x) or abs(x) > blow_up:
            break
    return xs


def classify_run(xs: Sequence[float], losses: Sequence[float]) -> str:
    """ "diverges", "oscillates" or "converges": what gradient descent did.

    Diverges: the loss ends higher than it started (or overflowed). Oscillates: the iterates
    jump back and forth across the minimum (the step changes sign most of the time).
    """
    if not all(math.isfinite(v) for v in losses) or losses[-1] > losses[0]:
        return "diverges"
    steps = [b - a for a, b in zip(xs[:-1], xs[1:], strict=True) if b != a]
    sign_changes = sum(1 for s, t in zip(steps[:-1], steps[1:], strict=True) if s * t < 0)
    if len(steps) >= 2 and sign_changes > (len(steps) - 1) / 2:
        return "oscillates"
    return "converges"


class LearningRateExplorer:
    """Gradient descent on a 1-D loss, redrawn whenever the learning-rate slider moves.

    Left panel: the loss curve and the iterates on it; right panel: the loss at each step.

    Attributes:
        widget: the container to display (slider, status line, plot).
        slider: the ``FloatLogSlider`` for the learning rate.
        output: the ``Output`` the figure is drawn into.
        last_trajectory: the iterates x_0, x_1, ... of the last run.
        last_losses: the loss at each iterate.
        last_status: "converges", "oscillates" or "diverges".
        last_figure: the (closed) figure of the last run, for inspection.
    """

    def __init__(
        self,
        loss_fn: Callable[[float], Any],
        grad_fn: Callable[[float], Any],
        x0: float,
        lrs: tuple[float, float] = (1e-3, 1.0),
        steps: int = 20,
        lr: float | None = None,
        xlim: tuple[float, float] | None = None,
    ) -> None:
        lr_min, lr_max = (float(v) for v in lrs)
        if not 0 < lr_min < lr_max:
            raise ValueError(f"lrs: expected (min, max) with 0 < min < max, got {lrs}")
        if steps < 1:
            raise ValueError(f"steps: expected at least 1 step, got {steps}")
        if xlim is not None and not xlim[0] < xlim[1]:
            raise ValueError(f"xlim: expected (low, high) with low < high, got {xlim}")
        if lr is None:
            lr = math.sqrt(lr_min * lr_max)  # the middle of the slider on its log scale
        if not lr_min <= lr <= lr_max:
            raise ValueError(f"lr: expected a value inside lrs={lrs}, got {lr}")
        self.loss_fn, self.grad_fn = loss_fn, grad_fn
        self.x0, self.steps = float(x0), int(steps)
        self.xlim = xlim if xlim is not None else self._default_xlim(lr_min, lr_max)

        self.slider = widgets.FloatLogSlider(
            value=lr,
            base=10,
            min=math.log10(lr_min),
            max=math.log10(lr_max),
            step=(math.log10(lr_max) - math.log10(lr_min)) / 100,
            description="learning rate",
            readout_format=".3g",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="420px"),
        )
        self.status = widgets.HTML()
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox([self.slider, self.status]), self.output])
        self.last_trajectory: list[float] = []
        self.last_losses: list[float] = []
        self.last_status = ""
        self.last_figure: Figure | None = None
        self.slider.observe(self._on_slider_change, names="value")
        self.redraw(lr)

    def _loss(self, x: float) -> float:
        try:
            return float(self.loss_fn(x))
        except OverflowError:
            return math.inf

    def _default_xlim(self, lr_min: float, lr_max: float) -> tuple[float, float]:
        """A view centred on the lowest point that runs across the slider's range reach,
        wide enough to include x0."""
        candidates = [self.x0]
        for k in range(9):
            lr = lr_min * (lr_max / lr_min) ** (k / 8)
            xs = gradient_descent_1d(self.grad_fn, self.x0, lr, self.steps)
            candidates += [x for x in xs if abs(x) < 1e6]
        centre = min(candidates, key=self._loss)
        half_width = 1.5 * max(abs(self.x0 - centre), 1e-3 * max(1.0, abs(centre)), 0.5)
        return centre - half_width, centre + half_width

    def _on_slider_change(self, change: dict[str, Any]) -> None:
        self.redraw(change["new"])

    def run(self, lr: float) -> tuple[list[float], list[float]]:
        """The iterates and their losses for one learning rate (nothing is drawn)."""
        xs = gradient_descent_1d(self.grad_fn, self.x0, lr, self.steps)
        return xs, [self._loss(x) for x in xs]

    def redraw(self, lr: float) -> Figure:
        """Run gradient descent with ``lr``, update the status line and redraw the plot."""
        xs, losses = self.run(lr)
        self.last_trajectory, self.last_losses = xs, losses
        self.last_status = classify_run(xs, losses)
        colour = {"converges": "green", "oscillates": "darkorange", "diverges": "red"}
        self.status.value = (
            f"<b style='color:{colour[self.last_status]}'>lr = {lr:.3g}: {self.last_status}</b>"
        )
        self.last_figure = show_in_output(self.output, lambda: self._draw(lr, xs, losses))
        return self.last_figure

    def _draw(self, lr: float, xs: list[float], losses: list[float]) -> Figure:
        fig, (curve, history) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        lo, hi = self.xlim
        grid = [lo + (hi - lo) * i / 300 for i in range(301)]
        grid_losses = [self._loss(x) for x in grid]
        curve.plot(grid, grid_losses, color="gray", label="loss")
        shown = [(x, v) for x, v in zip(xs, losses, strict=True) if math.isfinite(v)]
        curve.plot(
            [x for x, _ in shown],
            [v for _, v in shown],
            "o-",
            color="tab:red",
            markersize=4,
            linewidth=0.8,
            label="iterates",
        )
        curve.plot([xs[0]], [losses[0]], "ks", label="start")
        curve.set_xlim(lo, hi)
        finite_grid = [v for v in grid_losses if math.isfinite(v)]
        if finite_grid:
            low, high = min(finite_grid), max(finite_grid)
            pad = 0.05 * (high - low or 1.0)
            curve.set_ylim(low - pad, high + pad)
        curve.set_xlabel("x")
        curve.set_ylabel("loss")
        curve.set_title(f"lr = {lr:.3g}: {self.last_status}")
        curve.legend(fontsize="small")

        steps = list(range(len(shown)))
        history.plot(steps, [v for _, v in shown], "o-", markersize=3)
        if shown and min(v for _, v in shown) > 0:
            history.set_yscale("log")
        history.set_xlabel("step")
        history.set_ylabel("loss")
        history.set_title("loss after each step")
        history.grid(alpha=0.3)
        return fig

    def _ipython_display_(self) -> None:
        display(self.widget)


def learning_rate_explorer(
    loss_fn: Callable[[float], Any],
    grad_fn: Callable[[float], Any],
    x0: float,
    lrs: tuple[float, float] = (1e-3, 1.0),
    steps: int = 20,
    lr: float | None = None,
    xlim: tuple[float, float] | None = None,
) -> LearningRateExplorer:
    """A slider for the learning rate of gradient descent on a 1-D loss, and its trajectory.

    ``loss_fn(x)`` and ``grad_fn(x)`` take a float and return a number; gradient descent
    runs ``steps`` steps from ``x0``. For loss = a x^2 / 2 (gradient a x) it converges for
    lr < 1/a, oscillates for 1/a < lr < 2/a and diverges for lr > 2/a. Example::

        explorer = learning_rate_explorer(lambda x: x**2, lambda x: 2 * x, x0=3.0)
        explorer          # shows the slider and the plot
    """
    return LearningRateExplorer(loss_fn, grad_fn, x0, lrs=lrs, steps=steps, lr=lr, xlim=xlim)


# --------------------------------------------------------------------------------------------
# Stepping through frames, e.g. the nodes of a backward pass
# --------------------------------------------------------------------------------------------


class Stepper:
    """Previous/Next buttons (and a slider) over a list of frames, each drawn on demand.

    Attributes:
        widget: the container to display.
        frames: the frames, in order.
        index: the position of the frame shown.
        previous_button, next_button, slider, caption, output: the parts of ``widget``.
        last_result: what ``draw`` returned for the frame shown.
    """

    def __init__(
        self,
        frames: Iterable[Any],
        draw: Callable[[Any], Any],
        caption: Callable[[Any], str] | None = None,
        start: int = 0,
    ) -> None:
        self.frames = list(frames)
        if not self.frames:
            raise ValueError("frames: nothing to step through (got no frames)")
        if not 0 <= start < len(self.frames):
            raise ValueError(f"start: expected 0 <= start < {len(self.frames)}, got {start}")
        self.draw, self.describe = draw, caption
        self.previous_button = widgets.Button(description="◀ Previous")
        self.next_button = widgets.Button(description="Next ▶")
        self.slider = widgets.IntSlider(
            value=start, min=0, max=len(self.frames) - 1, description="step", readout=False
        )
        self.caption = widgets.HTML()
        self.output = widgets.Output()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.previous_button, self.next_button, self.slider, self.caption]),
                self.output,
            ]
        )
        self.last_result: Any = None
        self.previous_button.on_click(lambda _button: self.previous())
        self.next_button.on_click(lambda _button: self.next())
        self.slider.observe(lambda change: self._show(change["new"]), names="value")
        self._show(start)

    @property
    def index(self) -> int:
        return int(self.slider.value)

    def show(self, index: int) -> None:
        """Jump to frame ``index`` (clamped to the first and last frame)."""
        self.slider.value = min(max(int(index), 0), len(self.frames) - 1)
        # The slider's observer draws the frame; setting the same value again draws nothing.

    def next(self) -> None:
        """Go one frame forward (stays on the last frame)."""
        self.show(self.index + 1)

    def previous(self) -> None:
        """Go one frame back (stays on the first frame)."""
        self.show(self.index - 1)

    def _show(self, index: int) -> None:
        frame = self.frames[index]
        self.previous_button.disabled = index == 0
        self.next_button.disabled = index == len(self.frames) - 1
        text = f"step {index + 1} / {len(self.frames)}"
        if self.describe is not None:
            text += f": {html.escape(str(self.describe(frame)))}"
        self.caption.value = text
        self.last_result = show_in_output(self.output, lambda: self.draw(frame))

    def _ipython_display_(self) -> None:
        display(self.widget)


def step_through(
    frames: Iterable[Any],
    draw: Callable[[Any], Any],
    caption: Callable[[Any], str] | None = None,
    start: int = 0,
) -> Stepper:
    """A Previous/Next viewer that calls ``draw(frame)`` for the frame shown.

    ``draw`` returns a Figure or Axes, or draws with pyplot and returns None, or returns
    anything Jupyter can display. ``caption(frame)`` adds a line of text. Example, the
    squares of 0..4 one at a time::

        def draw(n):
            fig, ax = plt.subplots()
            ax.bar(range(n + 1), [k * k for k in range(n + 1)])
            return fig

        step_through(range(5), draw, caption=lambda n: f"{n} squared is {n * n}")

    The backward pass of a scalar graph ``L``, one node at a time::

        steps = backward_steps(L)
        step_through(
            steps,
            lambda s: draw_graph(L, highlight=s.node, grads=s.grads),
            caption=lambda s: s.description,
        )
    """
    return Stepper(frames, draw, caption=caption, start=start)
