"""MNIST-1D end to end: the published table, trained with coursekit only.

Greydanus (2020), "Scaling down deep learning" (arXiv:2011.14439), reports the test
accuracy of three models on MNIST-1D (4000 training and 1000 test signals of length
40, 10 classes): logistic regression 32%, an MLP 68%, a CNN 94%. This module builds
the same three models from ``coursekit.nn`` modules, trains them with
``coursekit.train.fit`` and ``coursekit.optim.Adam`` (hand-written backward passes,
no ``torch.autograd``), and prints our table beside the published one.

What is taken from the mnist1d repository (``notebooks/models.py`` and ``train.py``):

* logistic regression: ``Linear(40, 10)``;
* MLP: ``h1 = relu(Linear(40, 100)(x))``, ``h2 = h1 + relu(Linear(100, 100)(h1))`` (a
  residual block), ``logits = Linear(100, 10)(h2)``;
* CNN: three 1-D convolutions with 25 channels and ReLU, kernel 5, 3, 3, stride 2,
  padding 1 (length 40 -> 19 -> 10 -> 5), then ``Linear(125, 10)``: 5,210 parameters.
  coursekit has ``Conv2d``; a (1, k) kernel on a (N, C, 1, L) input is a 1-D convolution;
* training: Adam, learning rate 1e-2, no weight decay, batch 100, 6000 steps, i.e.
  150 epochs of the 4000 training signals, the test accuracy read after the last step.

What differs: the published loop takes batches in a fixed order, ``fit`` shuffles
each epoch (seeded); the published numbers come from one seed, we report several.

Command line::

    python -m coursekit.examples.mnist1d [--full | --quick] [--seeds N] [--device D] [--out PATH]

``--full`` (the default): the gradient check, then each model for 150 epochs from 5
seeds, and the CNN variants of ``CNN_VARIANTS`` (twice the epochs, 64 channels, random
shifts) from 2 seeds; about 8 minutes on one idle CPU thread. ``--quick``: 3 epochs
and one seed, a smoke test. The recorded full run is
``coursekit/data_files/mnist1d_table.json`` (read it with ``load_table()``); lesson 13
quotes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from coursekit import data, nn, optim, train
from coursekit.device import seeded_generator
from coursekit.gradcheck import GradReport, compare_with_torch

__all__ = [
    "PUBLISHED",
    "PUBLISHED_SETTINGS",
    "REPOSITORY_RERUN",
    "ToSignal",
    "check_gradients",
    "cnn",
    "format_table",
    "gradient_check_summary",
    "load_table",
    "logistic",
    "mlp",
    "models",
    "random_shift",
    "run_table",
    "torch_reference",
    "train_model",
]

#: Test accuracy in Greydanus (2020), table 1 and the mnist1d README.
PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94}

#: The same code rerun by its authors: the mnist1d repository's notebook
#: ``notebooks/mnist1d-classification.ipynb`` prints these test accuracies after 6000
#: steps (one seed, 42) with the models and settings above.
REPOSITORY_RERUN = {"logistic": 0.315, "mlp": 0.651, "cnn": 0.923}

#: The training settings of the mnist1d repository (train.py, get_model_args).
PUBLISHED_SETTINGS = {"lr": 1e-2, "batch_size": 100, "steps": 6000, "weight_decay": 0.0}

#: 6000 steps of 100 signals over 4000 training signals.
PUBLISHED_EPOCHS = PUBLISHED_SETTINGS["steps"] * PUBLISHED_SETTINGS["batch_size"] // 4000

TABLE_FILE = "mnist1d_table.json"

# ---------------------------------------------------------------------------
# the three models
# ---------------------------------------------------------------------------


class ToSignal(nn.Module):
    """Reshape signals x (N, L) to one-channel images (N, 1, 1, L) for ``nn.Conv2d``.

    A convolution with a (1, k) kernel over a height-1 image is a 1-D convolution.
    A reshape moves no numbers, so backward reshapes dout back to (N, L).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"ToSignal: x must be (N, L), got shape {tuple(x.shape)}")
        self._cache = x.shape
        return x.reshape(x.shape[0], 1, 1, x.shape[1])

    def backward(self, dout: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        shape = self._saved_cache()
        return dout.reshape(shape) if input_grad else None


def logistic(
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Logistic regression: logits = x @ W + b, W (40, 10)."""
    return nn.Linear(40, 10, device=device, dtype=dtype, generator=generator)


def mlp(
    hidden: int = 100,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """The published MLP: h1 = relu(x W1 + b1), h2 = h1 + relu(h1 W2 + b2), h2 W3 + b3."""
    kw = {"device": device, "dtype": dtype, "generator": generator}
    return nn.Sequential(
        nn.Linear(40, hidden, **kw),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Linear(hidden, hidden, **kw), nn.ReLU())),
        nn.Linear(hidden, 10, **kw),
    )


def cnn(
    channels: int = 25,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """The published CNN: 3 convolutions (kernel 5, 3, 3; stride 2; padding 1) + a linear layer.

    Lengths 40 -> 19 -> 10 -> 5 (L_out = (L + 2 * 1 - k) // 2 + 1), so the classifier
    sees channels * 5 features.
    """
    kw = {"device": device, "dtype": dtype, "generator": generator}
    return nn.Sequential(
        ToSignal(),
        nn.Conv2d(1, channels, (1, 5), stride=(1, 2), padding=(0, 1), **kw),
        nn.ReLU(),
        nn.Conv2d(channels, channels, (1, 3), stride=(1, 2), padding=(0, 1), **kw),
        nn.ReLU(),
        nn.Conv2d(channels, channels, (1, 3), stride=(1, 2), padding=(0, 1), **kw),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * 5, 10, **kw),
    )


BUILDERS: dict[str, Callable[..., nn.Module]] = {"logistic": logistic, "mlp": mlp, "cnn": cnn}


def models(
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, nn.Module]:
    """The three published models, each initialised from its own generator seeded ``seed``."""
    return {
        name: build(generator=torch.Generator().manual_seed(seed), device=device, dtype=dtype)
        for name, build in BUILDERS.items()
    }


def _build(name: str, seed: int, width: int | None, device: Any, dtype: Any) -> nn.Module:
    if name not in BUILDERS:
        raise ValueError(f"model must be one of {sorted(BUILDERS)}, got {name!r}")
    options: dict[str, Any] = {"generator": torch.Generator().manual_seed(seed)}
    if width is not None:
        if name == "logistic":
            raise ValueError("width: logistic regression has no hidden layer")
        options["hidden" if name == "mlp" else "channels"] = width
    return BUILDERS[name](device=device, dtype=dtype, **options)


# ---------------------------------------------------------------------------
# the same math through torch.autograd, for the gradient check
# ---------------------------------------------------------------------------


def torch_reference(name: str, x: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The logits of model ``name`` written with torch operations, so autograd can differentiate.

    ``params`` are the tensors of ``model.parameters()`` in their order; conv weights
    (F, C, 1, k) are used as torch's Conv1d weights (F, C, k).
    """
    conv1d = torch.nn.functional.conv1d
    if name == "logistic":
        w, b = params
        return x @ w + b
    if name == "mlp":
        w1, b1, w2, b2, w3, b3 = params
        h = torch.relu(x @ w1 + b1)
        h = h + torch.relu(h @ w2 + b2)
        return h @ w3 + b3
    if name == "cnn":
        cw1, cb1, cw2, cb2, cw3, cb3, w, b = params
        h = x.unsqueeze(1)  # (N, 1, L)
        for cw, cb in ((cw1, cb1), (cw2, cb2), (cw3, cb3)):
            h = torch.relu(conv1d(h, cw.squeeze(2), cb, stride=2, padding=1))
        return h.flatten(1) @ w + b
    raise ValueError(f"name must be one of {sorted(BUILDERS)}, got {name!r}")


def check_gradients(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor) -> GradReport:
    """Every gradient of ``model`` + softmax cross-entropy against torch.autograd.

    The hand-written side is the training step's backward: loss = loss_fn(model(x), y),
    then ``model.backward(loss_fn.backward(), input_grad=True)``; it returns dloss/dx
    and dloss/dp for every parameter p. Use float64 (``model`` and ``x``) to compare
    to about 1e-12; the report has one row per gradient (``report.ok()``).
    """
    named = list(model.named_parameters())
    loss_fn = nn.SoftmaxCrossEntropyLoss()

    def forward(x: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, None]:
        for (_, p), v in zip(named, values, strict=True):
            p.data = v
        return loss_fn(model(x), y), None

    def backward(dout: torch.Tensor | float, cache: None) -> tuple[torch.Tensor, ...]:
        model.zero_grad()
        dx = model.backward(loss_fn.backward(dout), input_grad=True)
        return (dx, *(p.grad for _, p in named))

    def reference(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(torch_reference(name, x, values), y)

    originals = [p.data for _, p in named]
    try:
        return compare_with_torch(
            forward,
            backward,
            reference,
            [x, *originals],
            dout=1.0,
            names=["dx", *("d" + n for n, _ in named)],
        )
    finally:
        for (_, p), v in zip(named, originals, strict=True):
            p.data = v


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Roll every signal of x (N, L) circularly by its own random s in [-max_shift, max_shift].

    MNIST-1D itself translates its digits by circular rolls when it builds the data (of
    the padded digit, before noise, shear and resampling to 40 points), so a shifted
    training signal is much like another example of its class.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")
    if x.dim() != 2:
        raise ValueError(f"random_shift: x must be (N, L), got shape {tuple(x.shape)}")
    if max_shift == 0:
        return x
    n, length = x.shape
    s = torch.randint(-max_shift, max_shift + 1, (n, 1), generator=generator)
    idx = (torch.arange(length).unsqueeze(0) - s) % length  # out[i, t] = x[i, t - s_i]
    return torch.gather(x, 1, idx.to(x.device))


def train_model(
    name: str,
    split: data.TrainTest | None = None,
    *,
    seed: int = 0,
    epochs: int = PUBLISHED_EPOCHS,
    lr: float = PUBLISHED_SETTINGS["lr"],
    batch_size: int = PUBLISHED_SETTINGS["batch_size"],
    width: int | None = None,
    shift: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the published model ``name`` on MNIST-1D; returns its test accuracy and curves.

    The model is initialised and the batches shuffled from ``seed``. ``shift`` > 0
    trains on signals rolled by a random amount in [-shift, shift], drawn afresh each
    epoch (augmentation); ``width`` sets the MLP's hidden size or the CNN's channels.
    The test set is only measured, once per epoch, never used to choose anything:
    ``test_acc`` is the accuracy after the last epoch.

    Returns a dict: name, seed, epochs, test_acc, seconds, parameters, device and the
    per-epoch curves train_loss, train_acc, test_loss, test_acc.
    """
    X_train, y_train, X_test, y_test = split if split is not None else data.load_mnist1d()
    model = _build(name, seed, width, device, None)
    adam = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    order = seeded_generator(seed)  # the shuffled order of the batches
    shifts = torch.Generator().manual_seed(seed + 1_000_003)  # the augmentation
    start = time.perf_counter()
    if shift == 0:
        history = train.fit(
            model, loss_fn, adam, (X_train, y_train), (X_test, y_test), epochs=epochs,
            batch_size=batch_size, progress=progress, device=device, generator=order,
        )  # fmt: skip
        curves = {k: history.as_dict()[k] for k in ("train_loss", "train_acc")}
        curves |= {"test_loss": history.val_loss, "test_acc": history.val_acc}
        where = history.device
    else:  # one epoch at a time, each on freshly shifted signals
        curves = {"train_loss": [], "train_acc": [], "test_loss": [], "test_acc": []}
        for _ in range(epochs):
            X_shifted = random_shift(X_train, shift, shifts)
            history = train.fit(
                model, loss_fn, adam, (X_shifted, y_train), (X_test, y_test), epochs=1,
                batch_size=batch_size, progress=False, device=device, generator=order,
            )  # fmt: skip
            for key, values in (
                ("train_loss", history.train_loss),
                ("train_acc", history.train_acc),
                ("test_loss", history.val_loss),
                ("test_acc", history.val_acc),
            ):
                curves[key].append(values[-1])
        where = history.device
    seconds = time.perf_counter() - start
    return {
        "name": name,
        "seed": seed,
        "epochs": epochs,
        "width": width,
        "shift": shift,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_acc": curves["test_acc"][-1],
        "seconds": seconds,
        "device": where,
        "curves": {k: [_four_digits(v) for v in vs] for k, vs in curves.items()},
    }


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


def _four_digits(value: float) -> float:
    """Keep 4 significant digits (a training loss of 3.2e-05 stays 3.2e-05), for a small JSON."""
    return float(f"{value:.4g}")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [r["test_acc"] for r in runs]
    return {
        "seeds": [r["seed"] for r in runs],
        "test_acc": accs,
        "mean": statistics.fmean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "min": min(accs),
        "max": max(accs),
        "epochs": runs[0]["epochs"],
        "parameters": runs[0]["parameters"],
        "seconds_per_run": statistics.fmean(r["seconds"] for r in runs),
    }


def _mean_curves(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    keys = runs[0]["curves"]
    return {
        k: [
            _four_digits(statistics.fmean(vs))
            for vs in zip(*(r["curves"][k] for r in runs), strict=True)
        ]
        for k in keys
    }


#: The CNN variants measured beside the published setting, to explain the gap to 94%.
CNN_VARIANTS: dict[str, dict[str, Any]] = {
    "twice the epochs": {"epochs": 2 * PUBLISHED_EPOCHS},
    "64 channels": {"width": 64},
    "random shifts, up to 4": {"shift": 4},
}


def gradient_check_summary(widths: Sequence[int] = (25,), n: int = 8) -> list[dict[str, Any]]:
    """Check the CNN of each width once, in float64 on n random signals, before training."""
    rows = []
    for channels in widths:
        g = torch.Generator().manual_seed(channels)
        model = cnn(channels, generator=g, device="cpu", dtype=torch.float64)
        x = torch.randn(n, 40, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (n,), generator=g)
        report = check_gradients(model, "cnn", x, y)
        rows.append(
            {
                "channels": channels,
                "gradients": [e.name for e in report.grads],
                "max_rel_error": max(e.rel_error for e in report.grads),
                "ok": report.ok(tol=1e-10),
            }
        )
    return rows


def run_table(
    seeds: Sequence[int] = (0, 1, 2),
    *,
    epochs: int = PUBLISHED_EPOCHS,
    variants: dict[str, dict[str, Any]] | None = None,
    variant_seeds: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train the three models over ``seeds`` and the CNN ``variants``; a JSON-ready dict.

    ``variants`` maps a label to options of ``train_model`` (epochs, width, shift);
    their epochs scale with ``epochs`` / PUBLISHED_EPOCHS, so a short run stays short.
    """
    variants = CNN_VARIANTS if variants is None else variants
    variant_seeds = seeds if variant_seeds is None else variant_seeds
    split = data.load_mnist1d(device=None)
    table: dict[str, Any] = {
        "source": "Greydanus (2020), Scaling down deep learning, arXiv:2011.14439",
        "published": PUBLISHED,
        "repository_rerun": REPOSITORY_RERUN,
        "settings": {**PUBLISHED_SETTINGS, "epochs": epochs, "shuffled": True},
        "threads": torch.get_num_threads(),
        "models": {},
        "cnn_variants": {},
    }
    started = time.perf_counter()
    widths = sorted({25, *(o["width"] for o in variants.values() if "width" in o)})
    table["gradient_check"] = gradient_check_summary(widths)
    if log:
        for row in table["gradient_check"]:
            log(f"gradient check, CNN with {row['channels']} channels, float64: "
                f"largest relative error {row['max_rel_error']:.1e}, "
                f"{'passed' if row['ok'] else 'FAILED'}")  # fmt: skip
    for name in BUILDERS:
        runs = []
        for seed in seeds:
            runs.append(train_model(name, split, seed=seed, epochs=epochs, device=device))
            if log:
                log(f"{name:8s} seed {seed}: test acc {runs[-1]['test_acc']:.3f} "
                    f"({runs[-1]['seconds']:.0f} s)")  # fmt: skip
        table["models"][name] = {**_summary(runs), "curves": _mean_curves(runs)}
        table["device"] = runs[0]["device"]
    for label, options in variants.items():
        options = dict(options)
        options["epochs"] = max(1, round(options.get("epochs", PUBLISHED_EPOCHS) * epochs
                                         / PUBLISHED_EPOCHS))  # fmt: skip
        runs = [train_model("cnn", split, seed=s, device=device, **options) for s in variant_seeds]
        table["cnn_variants"][label] = {**options, **_summary(runs),
                                        "curves": _mean_curves(runs)}  # fmt: skip
        if log:
            log(f"cnn, {label}: test acc {table['cnn_variants'][label]['mean']:.3f}")
    table["seconds"] = time.perf_counter() - started
    return table


def format_table(table: dict[str, Any]) -> str:
    """Our table beside the published one and the repository's rerun, as plain text."""
    names = {"logistic": "logistic regression", "mlp": "MLP", "cnn": "CNN"}
    rerun = table.get("repository_rerun", {})
    rows = [(names[k], PUBLISHED[k], rerun.get(k), v) for k, v in table["models"].items()]
    rows += [(f"CNN, {k}", None, None, v) for k, v in table.get("cnn_variants", {}).items()]
    width = max(len(r[0]) for r in rows)

    def percent(value: float | None) -> str:
        return f"{value:.1%}" if value is not None else ""

    lines = [
        f"{'model':{width}s} {'paper':>6s} {'rerun':>6s} {'ours: mean ± std':>16s} "
        f"{'min':>6s} {'max':>6s} {'seeds':>5s} {'epochs':>6s} {'s/run':>6s}"
    ]
    for label, published, again, r in rows:
        lines.append(
            f"{label:{width}s} {percent(published):>6s} {percent(again):>6s} "
            f"{r['mean']:9.1%} ± {r['std']:4.1%} {r['min']:6.1%} {r['max']:6.1%} "
            f"{len(r['seeds']):5d} {r['epochs']:6d} {r['seconds_per_run']:6.1f}"
        )
    return "\n".join(lines)


def load_table() -> dict[str, Any]:
    """The recorded full run (package data ``coursekit/data_files/mnist1d_table.json``)."""
    text = resources.files("coursekit").joinpath("data_files", TABLE_FILE).read_text()
    return json.loads(text)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m coursekit.examples.mnist1d",
        description="Train logistic regression, an MLP and a CNN on MNIST-1D with coursekit "
        "and print the table beside Greydanus (2020).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the published 150 epochs (default)")
    size.add_argument("--quick", action="store_true", help="3 epochs, one seed: a smoke test")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per model (default 5; the CNN variants take the first 2)",
    )
    parser.add_argument("--device", default=None, help="e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    n_seeds = args.seeds or (1 if args.quick else 5)
    epochs = 3 if args.quick else PUBLISHED_EPOCHS
    table = run_table(
        range(n_seeds),
        epochs=epochs,
        variant_seeds=range(min(n_seeds, 2)),
        device=args.device,
    )
    print(format_table(table))
    print(f"total {table['seconds']:.0f} s on {table['device']}, {table['threads']} thread(s)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.out}")
    return table


if __name__ == "__main__":
    main()
