"""Hinton diagrams: a weight matrix drawn as squares, as in the 1986 back-propagation papers.

Each weight is a square whose *area* is proportional to its size |w|; white squares are
positive weights, black squares negative, on a grey background (Rumelhart, Hinton & Williams
1986, and Hinton's later papers). Small weights shrink to dots, so the eye finds the structure
of a trained net at once: which weights are large, which have the same sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from coursekit.viz.plots import to_numpy

__all__ = ["hinton_diagram"]

FILL = 0.8  # the side of the largest square, as a fraction of its cell


def hinton_diagram(
    weights: Any,
    ax: Axes | None = None,
    *,
    max_weight: float | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    annotate: bool = False,
    title: str | None = None,
) -> Axes:
    """Draw a 2-D weight matrix (rows, cols) as a Hinton diagram and return the Axes.

    Entry (i, j) is drawn at row i (top to bottom), column j, as a square of side
    0.8 sqrt(|w_ij| / max_weight) (so its area is proportional to |w_ij|, and the largest leaves a
    margin in its cell): white for w > 0, black for w < 0. ``max_weight`` defaults to the
    largest |w|; pass the same value to several diagrams to compare them. ``annotate`` writes
    each weight's value under its square, as the paper's figures do. Accepts a tensor on any
    device, a NumPy array or nested lists.
    """
    w = np.asarray(to_numpy(weights), dtype=float)
    if w.ndim != 2:
        raise ValueError(f"hinton_diagram: weights must be 2-D (rows, cols), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("hinton_diagram: weights contain inf or nan")
    rows, cols = w.shape
    for name, labels, n in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels is not None and len(labels) != n:
            raise ValueError(
                f"hinton_diagram: {name} has {len(labels)} entries for {n} {name[:3]}s"
            )
    if max_weight is None:
        max_weight = float(np.abs(w).max()) or 1.0
    if not max_weight > 0:
        raise ValueError(f"hinton_diagram: max_weight must be positive, got {max_weight}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * cols + 1.5, 0.6 * rows + 1.0), layout="constrained")

    ax.set_facecolor("0.5")
    ax.set_aspect("equal")
    for i in range(rows):
        for j in range(cols):
            value = w[i, j]
            side = FILL * np.sqrt(min(abs(value) / max_weight, 1.0))
            ax.add_patch(
                Rectangle(
                    (j - side / 2, i - side / 2),
                    side,
                    side,
                    facecolor="white" if value > 0 else "black",
                    edgecolor="none",
                )
            )
            if annotate:
                ax.text(j, i + 0.45, f"{value:.1f}", ha="center", va="center", fontsize=7)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5 + (0.1 if annotate else 0.0), -0.5)
    ax.set_xticks(range(cols), col_labels if col_labels is not None else range(cols))
    ax.set_yticks(range(rows), row_labels if row_labels is not None else range(rows))
    ax.tick_params(length=0)
    if title:
        ax.set_title(title)
    return ax
