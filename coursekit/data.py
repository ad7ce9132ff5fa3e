"""Offline datasets and mini-batches.

Everything here works without a network and is deterministic given a seed:

    toy 2-D sets       make_moons, make_spirals, make_xor
    regression         make_housing (named features, a known generating function)
    images             load_digits (scikit-learn's bundled 8x8 digits)
    MNIST-1D           load_mnist1d (generated locally with the ``mnist1d`` package)
    text               load_text, CharVocab, char_sequences (a corpus shipped in the package)
    time series        make_traffic, sliding_windows
    splitting          train_val_split, batches
    real MNIST         load_mnist (optional download, with an offline fallback)

Features come back as float32 tensors by default (``dtype=`` changes that), class
labels as int64, regression targets as floats; ``device=`` places the result.
Random numbers are drawn on the CPU from a ``torch.Generator`` seeded with ``seed``
and in float64, so a seed gives the same data on every device and in every dtype.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "CharVocab",
    "Dataset",
    "TrainTest",
    "batches",
    "cache_dir",
    "char_sequences",
    "housing_price",
    "load_digits",
    "load_mnist",
    "load_mnist1d",
    "load_text",
    "make_housing",
    "make_moons",
    "make_spirals",
    "make_traffic",
    "make_xor",
    "sliding_windows",
    "standardize",
    "train_val_split",
]

DeviceLike = torch.device | str | None


class TrainTest(NamedTuple):
    """A train/test split: unpack as ``X_train, y_train, X_test, y_test = ...``."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value: object, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value}")
    return value


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}")
    return dtype


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    return int(seed)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_check_seed(seed))


def _features(x: torch.Tensor, dtype: torch.dtype, device: DeviceLike) -> torch.Tensor:
    """Cast generated float64 CPU data to the requested dtype and device."""
    return x.to(device=device, dtype=_check_dtype(dtype))


def _labels(y: torch.Tensor, device: DeviceLike) -> torch.Tensor:
    return y.to(device=device, dtype=torch.int64)


def _shuffle(
    X: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(len(X), generator=gen)
    return X[order], y[order]


def cache_dir() -> Path:
    """Where generated or downloaded data is cached.

    ``$COURSEKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/coursekit``, else
    ``~/.cache/coursekit``. The folder is created on first use.
    """
    if os.environ.get("COURSEKIT_CACHE"):
        return Path(os.environ["COURSEKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "coursekit"


# ----------------------------------------------------------------------------
# toy 2-D classification sets
# ----------------------------------------------------------------------------


def make_moons(
    n: int = 200,
    noise: float = 0.1,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: DeviceLike = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles (as ``sklearn.datasets.make_moons``).

    Class 0: (cos t, sin t); class 1: (1 - cos t, 0.5 - sin t), t in [0, pi],
    plus Gaussian noise of standard deviation ``noise``; shuffled.
    Returns X (n, 2) and y (n,) int64.
    """
    n = _check_int("n", n, minimum=2)
    noise = _check_float("noise", noise)
    gen = _generator(seed)
    n_outer = n // 2
    n_inner = n - n_outer
    t_outer = torch.linspace(0, math.pi, n_outer, dtype=torch.float64)
    t_inner = torch.linspace(0, math.pi, n_inner, dtype=torch.float64)
    outer = torch.stack([torch.cos(t_outer), torch.sin(t_outer)], dim=1)
    inner = torch.stack([1 - torch.cos(t_inner), 0.5 - torch.sin(t_inner)], dim=1)
    X = torch.cat([outer, inner])
    y = torch.cat([torch.zeros(n_outer), torch.ones(n_inner)])
    X = X + noise * torch.randn(X.shape, generator=gen, dtype=torch.float64)
    X, y = _shuffle(X, y, gen)
    return _features(X, dtype, device), _labels(y, device)


def make_spirals(
    n_per_class: int = 100,
    n_classes: int = 3,
    noise: float = 0.2,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: DeviceLike = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interleaved spiral arms, one per class; not linearly separable.

    Arm k: radius r from 0 to 1, angle t = 4 r + 2 pi k / n_classes + noise * N(0, 1),
    point (r sin t, r cos t). Returns X (n_per_class * n_classes, 2), y int64 (shuffled).
    """
    n_per_class = _check_int("n_per_class", n_per_class)
    n_classes = _check_int("n_classes", n_classes, minimum=2)
    noise = _check_float("noise", noise)
    gen = _generator(seed)
    r = torch.linspace(0, 1, n_per_class, dtype=torch.float64)
    points, labels = [], []
    for k in range(n_classes):
        t = 4 * r + 2 * math.pi * k / n_classes
        t = t + noise * torch.randn(n_per_class, generator=gen, dtype=torch.float64)
        points.append(torch.stack([r * torch.sin(t), r * torch.cos(t)], dim=1))
        labels.append(torch.full((n_per_class,), k))
    X, y = _shuffle(torch.cat(points), torch.cat(labels), gen)
    return _features(X, dtype, device), _labels(y, device)


def make_xor(
    n_per_corner: int | None = None,
    noise: float = 0.1,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: DeviceLike = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The XOR problem: label = x1 XOR x2 for the corners of the unit square.

    With ``n_per_corner=None`` (default): the four points (0,0), (0,1), (1,0), (1,1)
    with labels 0, 1, 1, 0, in that order. Otherwise a noisy cloud of
    ``n_per_corner`` points around each corner (Gaussian, std ``noise``), shuffled.
    y is int64; for an MSE network use ``y.to(X.dtype).unsqueeze(1)``.
    """
    corners = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    xor = torch.tensor([0, 1, 1, 0])
    if n_per_corner is None:
        return _features(corners, dtype, device), _labels(xor, device)
    n_per_corner = _check_int("n_per_corner", n_per_corner)
    noise = _check_float("noise", noise)
    gen = _generator(seed)
    X = corners.repeat_interleave(n_per_corner, dim=0)
    y = xor.repeat_interleave(n_per_corner)
    X = X + noise * torch.randn(X.shape, generator=gen, dtype=torch.float64)
    X, y = _shuffle(X, y, gen)
    return _features(X, dtype, device), _labels(y, device)


# ----------------------------------------------------------------------------
# synthetic housing prices
# ----------------------------------------------------------------------------

HOUSING_FEATURES = ("area_m2", "bedrooms", "age_years", "distance_km")
HOUSING_COEFFICIENTS = {
    "intercept": 60.0,
    "area_m2": 2.5,
    "bedrooms": 10.0,
    "age_years": -1.0,
    "distance_km": -5.0,
    "distance_km^2": 0.08,
}


def housing_price(X: torch.Tensor) -> torch.Tensor:
    """The noise-free price (thousands) of houses with raw features X (N, 4).

    price = 60 + 2.5 area_m2 + 10 bedrooms - 1.0 age_years
            - 5.0 distance_km + 0.08 distance_km^2
    """
    if X.ndim != 2 or X.shape[1] != len(HOUSING_FEATURES):
        raise ValueError(
            f"X must have shape (N, {len(HOUSING_FEATURES)}) with columns "
            f"{HOUSING_FEATURES}, got {tuple(X.shape)}"
        )
    c = HOUSING_COEFFICIENTS
    area, bedrooms, age, distance = X.unbind(dim=1)
    return (
        c["intercept"]
        + c["area_m2"] * area
        + c["bedrooms"] * bedrooms
        + c["age_years"] * age
        + c["distance_km"] * distance
        + c["distance_km^2"] * distance**2
    )


@dataclass(eq=False)
class Dataset:
    """A regression set with named features and the function that generated it."""

    X: torch.Tensor
    y: torch.Tensor
    feature_names: tuple[str, ...]
    target_name: str
    coefficients: dict[str, float] = field(default_factory=dict)
    formula: str = ""
    true_function: Callable[[torch.Tensor], torch.Tensor] | None = None
    """The noise-free target as a function of raw features X (N, n_features)."""

    def describe(self) -> str:
        """A table of the features and target (min, mean, max) and the generating formula."""
        lines = [f"{len(self.X)} examples; target {self.target_name}", ""]
        lines.append(f"{'column':<14}{'min':>10}{'mean':>10}{'max':>10}")
        columns = list(zip(self.feature_names, self.X.unbind(dim=1), strict=True))
        for name, col in [*columns, (self.target_name, self.y)]:
            col = col.double()
            lines.append(
                f"{name:<14}{col.min().item():>10.1f}{col.mean().item():>10.1f}"
                f"{col.max().item():>10.1f}"
            )
        lines += ["", "generated by: " + self.formula]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Dataset(n={len(self.X)}, features={list(self.feature_names)}, "
            f"target={self.target_name!r}, dtype={self.X.dtype}, device={self.X.device})"
        )


def make_housing(
    n: int = 200,
    seed: int = 0,
    noise: float = 20.0,
    *,
    dtype: torch.dtype = torch.float32,
    device: DeviceLike = None,
) -> Dataset:
    """Synthetic house prices, in thousands, from four named raw features.

    Features (columns of X, in this order):
        area_m2      living area, uniform in [40, 200] square metres
        bedrooms     round(area_m2 / 40 + N(0, 0.7)), clipped to 1..6 (correlated with area)
        age_years    uniform in [0, 60]
        distance_km  distance to the city centre, uniform in [0.5, 30]

    Target, known exactly (see ``HOUSING_COEFFICIENTS`` and ``housing_price``):
        price = 60 + 2.5 area_m2 + 10 bedrooms - 1.0 age_years
                - 5.0 distance_km + 0.08 distance_km^2 + noise * N(0, 1)
    Mostly linear; the mild nonlinearity is that each extra kilometre costs less
    the farther out a house is. Least squares on [1, X, distance_km^2] recovers
    the coefficients. Returns a ``Dataset`` (X raw, not standardized; y (n,) float).
    """
    n = _check_int("n", n)
    noise = _check_float("noise", noise)
    gen = _generator(seed)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)

    area = uniform(40, 200)
    bedrooms = torch.round(area / 40 + 0.7 * torch.randn(n, generator=gen, dtype=torch.float64))
    bedrooms = bedrooms.clamp(1, 6)
    age = uniform(0, 60)
    distance = uniform(0.5, 30)
    X = torch.stack([area, bedrooms, age, distance], dim=1)
    y = housing_price(X) + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    formula = (
        "price = 60 + 2.5 area_m2 + 10 bedrooms - 1.0 age_years - 5.0 distance_km "
        f"+ 0.08 distance_km^2 + {noise:g} * N(0, 1)"
    )
    return Dataset(
        X=_features(X, dtype, device),
        y=_features(y, dtype, device),
        feature_names=HOUSING_FEATURES,
        target_name="price_k",
        coefficients=dict(HOUSING_COEFFICIENTS),
        formula=formula,
        true_function=housing_price,
    )


def standardize(
    X: torch.Tensor, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Z-score each column: (X - mean) / std. Returns (X_scaled, mean, std).

    Pass the training set's mean and std to scale validation/test data the same way.
    A constant column (std 0) is left centred but not divided.
    """
    if X.ndim != 2:
        raise ValueError(f"X must have shape (N, D), got {tuple(X.shape)}")
    if mean is None:
        mean = X.mean(dim=0)
    if std is None:
        std = X.std(dim=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
    if mean.shape != X.shape[1:] or std.shape != X.shape[1:]:
        raise ValueError(
            f"mean and std must have shape ({X.shape[1]},), got {tuple(mean.shape)} "
            f"and {tuple(std.shape)}"
        )
    return (X - mean) / std, mean, std


# ----------------------------------------------------------------------------
# images: scikit-learn digits, MNIST-1D, real MNIST
# ----------------------------------------------------------------------------


def load_digits(
    images: bool = False, *, dtype: torch.dtype = torch.float32, device: DeviceLike = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), offline.

    Pixels are scaled from 0..16 to [0, 1]. Returns X (1797, 64), or (1797, 1, 8, 8)
    with ``images=True``, and y (1797,) int64.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    X_np, y_np = sklearn_digits(return_X_y=True)
    X = torch.from_numpy(X_np).to(torch.float64) / 16.0
    if images:
        X = X.reshape(-1, 1, 8, 8)
    return _features(X, dtype, device), _labels(torch.from_numpy(y_np), device)


def _generate_mnist1d(seed: int) -> dict[str, np.ndarray]:
    """Run the mnist1d generator locally (never its download path).

    It seeds numpy's and Python's global random state; both are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    # mnist1d draws from numpy's legacy global generator, so that is what is saved.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        args = get_dataset_args()
        args.seed = seed
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}


def _save_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file, then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_mnist1d(
    seed: int = 42,
    *,
    cache: bool = True,
    dtype: torch.dtype = torch.float32,
    device: DeviceLike = None,
) -> TrainTest:
    """MNIST-1D (Greydanus, 2020): 1-D signals of length 40 in 10 classes.

    Generated locally with the ``mnist1d`` package's default arguments (5000
    examples, 80/20 split); ``seed=42`` is the published dataset's seed, giving
    4000 training and 1000 test examples. The arrays are cached as .npz in
    ``cache_dir()`` so later calls take milliseconds (``cache=False`` regenerates).
    Returns ``TrainTest`` with X (N, 40) float and y (N,) int64.
    """
    seed = _check_seed(seed)
    path = cache_dir() / f"mnist1d_seed{seed}.npz"
    arrays = None
    if cache and path.is_file():
        try:
            with np.load(path) as f:
                arrays = {key: f[key] for key in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError):
            arrays = None  # a damaged cache file is regenerated below
    if arrays is None:
        arrays = _generate_mnist1d(seed)
        if cache:
            try:
                _save_npz_atomically(path, arrays)
            except OSError as err:
                print(f"coursekit: could not cache MNIST-1D at {path} ({err}); continuing.")
    return TrainTest(
        _features(torch.from_numpy(arrays["x"]).double(), dtype, device),
        _labels(torch.from_numpy(arrays["y"]), device),
        _features(torch.from_numpy(arrays["x_test"]).double(), dtype, device),
        _labels(torch.from_numpy(arrays["y_test"]), device),
    )


MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_FILES = {
    "X_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "X_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (MNIST's format): magic, dims, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != math.prod(shape):
        raise ValueError(f"{path}: header says shape {shape}, found {data.size} values")
    return data.reshape(shape)


def _open_url(url: str, timeout: float):
    """urlopen with a hard deadline: also bounds a name lookup, which ignores socket timeouts."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["response"] = urllib.request.urlopen(url, timeout=timeout)
        except BaseException as err:  # handed over to the caller's thread
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer from {url} within {timeout:g} s")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["response"]


def _download(url: str, dest: Path, timeout: float) -> None:
    with _open_url(url, timeout) as response:
        payload = response.read()  # each read is bounded by the socket timeout
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(payload)
    os.replace(tmp, dest)


def _digits_as_mnist(flat: bool, dtype: torch.dtype, device: DeviceLike) -> TrainTest:
    """The 8x8 digits resized to 20x20 and centred in 28x28, as MNIST's digits are."""
    import torch.nn.functional as torch_F

    X, y = load_digits(images=True, dtype=torch.float64)
    X = torch_F.interpolate(X, size=(20, 20), mode="bilinear", align_corners=False)
    X = torch_F.pad(X, (4, 4, 4, 4)).clamp(0, 1)
    (X_tr, y_tr), (X_te, y_te) = train_val_split(X, y, val_fraction=0.2, seed=0)
    if flat:
        X_tr, X_te = X_tr.reshape(len(X_tr), -1), X_te.reshape(len(X_te), -1)
    return TrainTest(
        _features(X_tr, dtype, device),
        _labels(y_tr, device),
        _features(X_te, dtype, device),
        _labels(y_te, device),
    )


def load_mnist(
    root: str | Path | None = None,
    download: bool = True,
    *,
    flat: bool = False,
    fallback: str = "digits",
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 5.0,
    dtype: torch.dtype = torch.float32,
    device: DeviceLike = None,
) -> TrainTest:
    """Real MNIST (60000 train / 10000 test, 28x28), downloaded once and cached.

    Files are looked for in ``root`` (default ``cache_dir() / "mnist"``) and, when
    missing and ``download`` is true, fetched from ``mirrors`` with a ``timeout``
    in seconds (never hangs). When that fails, or offline, it prints why and
    falls back to ``fallback``:
        "digits"   scikit-learn's 8x8 digits upscaled to 28x28 (1438 train / 359 test)
        "mnist1d"  MNIST-1D (4000 train / 1000 test, X (N, 40))
    X is (N, 1, 28, 28) in [0, 1], or (N, 784) with ``flat=True``; y is int64.
    """
    if fallback not in ("digits", "mnist1d"):
        raise ValueError(f"fallback must be 'digits' or 'mnist1d', got {fallback!r}")
    timeout = _check_float("timeout", timeout)
    _check_dtype(dtype)
    root = Path(root).expanduser() if root is not None else cache_dir() / "mnist"
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    try:
        for filename in MNIST_FILES.values():
            dest = root / filename
            if dest.is_file():
                continue
            if not download:
                raise FileNotFoundError(f"{dest} is missing and download=False")
            print(f"Downloading {filename} to {root} ...")
            errors = []
            for mirror in mirrors:
                try:
                    _download(mirror + filename, dest, timeout)
                    break
                except Exception as err:
                    errors.append(f"{mirror}: {err}")
            else:
                raise OSError("could not download " + filename + "; " + "; ".join(errors))
        arrays = {key: _read_idx(root / filename) for key, filename in MNIST_FILES.items()}
    except Exception as err:
        if fallback == "digits":
            what = "scikit-learn's 8x8 digits upscaled to 28x28 (1438 train / 359 test)"
        else:
            what = "MNIST-1D (4000 train / 1000 test, signals of length 40)"
        print(f"MNIST is not available ({err}).\nFalling back to {what}, which needs no network.")
        if fallback == "digits":
            return _digits_as_mnist(flat, dtype, device)
        return load_mnist1d(dtype=dtype, device=device)

    def images(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x.copy()).double() / 255.0
        t = t.reshape(len(t), -1) if flat else t.reshape(len(t), 1, *t.shape[1:])
        return _features(t, dtype, device)

    return TrainTest(
        images(arrays["X_train"]),
        _labels(torch.from_numpy(arrays["y_train"].astype(np.int64)), device),
        images(arrays["X_test"]),
        _labels(torch.from_numpy(arrays["y_test"].astype(np.int64)), device),
    )


# ----------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------

TEXTS = {"sonnets": "shakespeare_sonnets.txt"}


def load_text(name: str = "sonnets") -> str:
    """A public-domain text corpus shipped with the package (see data_files/README.md).

    "sonnets": Shakespeare's 154 sonnets (about 96 000 characters, 62 distinct).
    """
    if name not in TEXTS:
        raise ValueError(f"name must be one of {sorted(TEXTS)}, got {name!r}")
    return (resources.files("coursekit") / "data_files" / TEXTS[name]).read_text(encoding="utf-8")


class CharVocab:
    """A character vocabulary: the sorted distinct characters of a text.

    ``stoi`` maps a character to its id, ``itos`` an id to its character.
    The same text always gives the same vocabulary.
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str")
        self.itos: list[str] = sorted(set(text))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        preview = "".join(self.itos[:20]).replace("\n", "\\n")
        return f"CharVocab(size={len(self)}, chars={preview!r}{'...' if len(self) > 20 else ''})"

    def encode(self, text: str, device: DeviceLike = None) -> torch.Tensor:
        """Character ids of ``text`` as an int64 tensor of shape (len(text),)."""
        try:
            ids = [self.stoi[ch] for ch in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary") from None
        return torch.tensor(ids, dtype=torch.int64, device=device)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text whose character ids are ``ids`` (a 1-D tensor or a sequence of ints)."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= int(i) < len(self.itos):
                raise ValueError(f"id {i} is outside the vocabulary of size {len(self)}")
            out.append(self.itos[int(i)])
        return "".join(out)


def char_sequences(
    text: str | torch.Tensor,
    seq_len: int,
    vocab: CharVocab | None = None,
    stride: int | None = None,
    *,
    device: DeviceLike = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-character prediction pairs: targets are the inputs shifted by one.

    ``text`` is a str (encoded with ``vocab``, by default ``CharVocab(text)``) or a
    1-D tensor of ids. Window i starts at i * stride (default: seq_len, no overlap):
        inputs[i]  = ids[i*stride     : i*stride + seq_len]
        targets[i] = ids[i*stride + 1 : i*stride + seq_len + 1]
    Returns (inputs, targets), both int64 of shape (num_windows, seq_len).
    """
    seq_len = _check_int("seq_len", seq_len)
    stride = seq_len if stride is None else _check_int("stride", stride)
    if isinstance(text, str):
        ids = (vocab or CharVocab(text)).encode(text)
    elif isinstance(text, torch.Tensor):
        if text.ndim != 1 or text.dtype != torch.int64:
            raise ValueError(
                f"text as a tensor must be 1-D int64 ids, got shape {tuple(text.shape)} "
                f"and dtype {text.dtype}"
            )
        ids = text
    else:
        raise TypeError(f"text must be a str or a tensor of ids, got {type(text).__name__}")
    if len(ids) < seq_len + 1:
        raise ValueError(f"text of length {len(ids)} is too short for seq_len={seq_len}")
    chunks = ids.unfold(0, seq_len + 1, stride)  # (num_windows, seq_len + 1)
    return chunks[:, :-1].to(device).contiguous(), chunks[:, 1:].to(device).contiguous()


# ----------------------------------------------------------------------------
# time series
# ----------------------------------------------------------------------------


def _bump(hour: torch.Tensor, centre: float, width: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((hour - centre) / width) ** 2)


def make_traffic(
    n_days: int = 28,
    seed: int = 0,
    noise: float = 0.1,
    *,
    start_weekday: int = 0,
    dtype: torch.dtype = torch.float32,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Synthetic hourly traffic flow (thousands of vehicles per hour) on a city road.

    Hour t of the series has hour of day h = t % 24 and weekday
    (start_weekday + t // 24) % 7, with Monday = 0 and Saturday, Sunday = 5, 6.
        weekday profile  0.08 + 0.95 b(h; 8, 1.2) + 0.85 b(h; 17.5, 1.6) + 0.45 b(h; 13, 3.5)
        weekend profile  0.08 + 0.55 b(h; 13.5, 3.5)
    with b(h; c, w) = exp(-(h - c)^2 / (2 w^2)): morning and evening rush hours on
    weekdays, one broad midday hump at weekends. Each day is scaled by
    (1 + noise * N(0, 1)) and each hour by (1 + noise * N(0, 1)); flow is >= 0.
    Returns a 1-D tensor of length 24 * n_days.
    """
    n_days = _check_int("n_days", n_days)
    noise = _check_float("noise", noise)
    start_weekday = _check_int("start_weekday", start_weekday, minimum=0)
    if start_weekday > 6:
        raise ValueError(f"start_weekday must be in 0..6 (Monday..Sunday), got {start_weekday}")
    gen = _generator(seed)
    t = torch.arange(24 * n_days, dtype=torch.float64)
    hour = t % 24
    weekday = (start_weekday + torch.div(t, 24, rounding_mode="floor")) % 7
    workday = 0.08 + 0.95 * _bump(hour, 8, 1.2) + 0.85 * _bump(hour, 17.5, 1.6)
    workday = workday + 0.45 * _bump(hour, 13, 3.5)
    weekend = 0.08 + 0.55 * _bump(hour, 13.5, 3.5)
    flow = torch.where(weekday >= 5, weekend, workday)
    day_factor = 1 + noise * torch.randn(n_days, generator=gen, dtype=torch.float64)
    hour_factor = 1 + noise * torch.randn(len(t), generator=gen, dtype=torch.float64)
    flow = (flow * day_factor.repeat_interleave(24) * hour_factor).clamp(min=0)
    return _features(flow, dtype, device)


def sliding_windows(
    series: torch.Tensor, window: int, horizon: int = 1, stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forecasting pairs: the past ``window`` values and the next ``horizon`` values.

    For a series (T,) or (T, D), example i starts at s = i * stride:
        X[i] = series[s : s + window]                      (window,) or (window, D)
        Y[i] = series[s + window : s + window + horizon]   (horizon,) or (horizon, D)
    Returns (X, Y) with a leading dimension of (T - window - horizon) // stride + 1.
    """
    if not isinstance(series, torch.Tensor) or series.ndim not in (1, 2):
        shape = tuple(series.shape) if isinstance(series, torch.Tensor) else type(series).__name__
        raise ValueError(f"series must be a tensor of shape (T,) or (T, D), got {shape}")
    window = _check_int("window", window)
    horizon = _check_int("horizon", horizon)
    stride = _check_int("stride", stride)
    length = len(series)
    if length < window + horizon:
        raise ValueError(
            f"series of length {length} is too short for window={window} + horizon={horizon}"
        )
    n = (length - window - horizon) // stride + 1
    starts = torch.arange(n, device=series.device) * stride
    past = starts[:, None] + torch.arange(window, device=series.device)
    future = starts[:, None] + window + torch.arange(horizon, device=series.device)
    return series[past], series[future]


# ----------------------------------------------------------------------------
# splitting and mini-batches
# ----------------------------------------------------------------------------


def _check_pair(X: object, y: object) -> None:
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"X and y must be torch tensors, got {type(X).__name__} and {type(y).__name__}"
        )
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise ValueError(
            f"X and y must have the same number of examples (first dimension), "
            f"got shapes {tuple(X.shape)} and {tuple(y.shape)}"
        )
    if X.device != y.device:
        raise ValueError(f"X and y must be on the same device, got {X.device} and {y.device}")


def train_val_split(
    X: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Shuffle, then hold out round(val_fraction * N) examples for validation.

    Returns ((X_train, y_train), (X_val, y_val)), ready for ``train.fit``.
    """
    _check_pair(X, y)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise TypeError(f"val_fraction must be a float, got {type(val_fraction).__name__}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n = len(X)
    n_val = round(val_fraction * n)
    if n_val < 1 or n_val > n - 1:
        raise ValueError(
            f"val_fraction={val_fraction} of {n} examples leaves an empty train or "
            f"validation set ({n - n_val} / {n_val})"
        )
    order = torch.randperm(n, generator=_generator(seed)).to(X.device)
    val, train = order[:n_val], order[n_val:]
    return (X[train], y[train]), (X[val], y[val])


def batches(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield mini-batches (xb, yb) covering every example once: one epoch.

    With ``shuffle`` the order is a random permutation drawn from ``generator``
    (a CPU ``torch.Generator``; torch's global one if None). The last, smaller
    batch is kept unless ``drop_last``. Number of batches:
    ceil(N / batch_size), or N // batch_size with drop_last.
    The arguments are checked at the call, before the first batch.
    """
    _check_pair(X, y)
    batch_size = _check_int("batch_size", batch_size)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if drop_last and batch_size > len(X):
        raise ValueError(
            f"batch_size={batch_size} with drop_last=True gives no batch from {len(X)} examples"
        )
    n = len(X)
    if shuffle:
        rng_device = generator.device if generator is not None else "cpu"
        order = torch.randperm(n, generator=generator, device=rng_device).to(X.device)
    else:
        order = torch.arange(n, device=X.device)
    stop = n - n % batch_size if drop_last else n

    def iterate() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield X[idx], y[idx]

    return iterate()
