"""Tests of coursekit.data: determinism, shapes and dtypes, batching, and the loaders."""

from __future__ import annotations

import gzip
import random
import urllib.request

import numpy as np
import pytest
import torch

from coursekit import data

# ----------------------------------------------------------------------------
# toy 2-D sets
# ----------------------------------------------------------------------------

TOY_SETS = {
    "moons": lambda **kw: data.make_moons(n=101, noise=0.2, **kw),
    "spirals": lambda **kw: data.make_spirals(n_per_class=30, n_classes=4, **kw),
    "xor_cloud": lambda **kw: data.make_xor(n_per_corner=25, noise=0.2, **kw),
}


@pytest.mark.parametrize("name", TOY_SETS)
def test_toy_sets_are_deterministic_given_a_seed(name):
    make = TOY_SETS[name]
    X1, y1 = make(seed=3)
    X2, y2 = make(seed=3)
    X3, _ = make(seed=4)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.equal(X1, X3)


@pytest.mark.parametrize("name", TOY_SETS)
def test_toy_sets_shapes_dtypes_and_dtype_option(name):
    make = TOY_SETS[name]
    X, y = make(seed=0)
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert X.ndim == 2 and X.shape[1] == 2 and y.shape == (len(X),)
    X64, y64 = make(seed=0, dtype=torch.float64, device="cpu")
    assert X64.dtype == torch.float64 and torch.equal(y, y64)
    # the same data in both dtypes (drawn in float64, then rounded)
    torch.testing.assert_close(X64.float(), X)


def test_moons_sizes_and_labels():
    X, y = data.make_moons(n=101, noise=0.0, seed=0)
    assert X.shape == (101, 2)
    assert (y == 0).sum() == 50 and (y == 1).sum() == 51
    # without noise, class 0 lies on the unit circle around the origin
    radius = X[y == 0].norm(dim=1)
    torch.testing.assert_close(radius, torch.ones_like(radius))


def test_spirals_has_every_class_equally():
    X, y = data.make_spirals(n_per_class=30, n_classes=4, seed=0)
    assert X.shape == (120, 2)
    assert torch.equal(torch.bincount(y), torch.full((4,), 30))
    assert X.norm(dim=1).max() <= 1.0 + 1e-6


def test_xor_four_points():
    X, y = data.make_xor()
    assert torch.equal(X, torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    assert torch.equal(y, torch.tensor([0, 1, 1, 0]))


def test_xor_cloud_labels_follow_the_corners():
    X, y = data.make_xor(n_per_corner=50, noise=0.05, seed=1)
    assert X.shape == (200, 2)
    corner = (X > 0.5).long()
    assert torch.equal(corner[:, 0] ^ corner[:, 1], y)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: data.make_moons(n=1), ValueError),
        (lambda: data.make_moons(n=10.0), TypeError),
        (lambda: data.make_moons(noise=-0.1), ValueError),
        (lambda: data.make_moons(seed=1.5), TypeError),
        (lambda: data.make_moons(dtype=torch.int64), TypeError),
        (lambda: data.make_spirals(n_classes=1), ValueError),
        (lambda: data.make_xor(n_per_corner=0), ValueError),
    ],
)
def test_toy_sets_reject_bad_arguments(call, error):
    with pytest.raises(error):
        call()


# ----------------------------------------------------------------------------
# housing
# ----------------------------------------------------------------------------


def _design(X: torch.Tensor) -> torch.Tensor:
    """[1, area, bedrooms, age, distance, distance^2]: the known generating basis."""
    X = X.double()
    return torch.cat([torch.ones(len(X), 1, dtype=X.dtype), X, X[:, 3:4] ** 2], dim=1)


def test_housing_fields_and_shapes():
    ds = data.make_housing(n=50, seed=0)
    assert ds.X.shape == (50, 4) and ds.y.shape == (50,)
    assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.float32
    assert ds.feature_names == ("area_m2", "bedrooms", "age_years", "distance_km")
    assert set(ds.coefficients) == {"intercept", *ds.feature_names, "distance_km^2"}
    area, bedrooms, age, distance = ds.X.unbind(1)
    assert area.min() >= 40 and area.max() <= 200
    assert torch.equal(bedrooms, bedrooms.round()) and bedrooms.min() >= 1 and bedrooms.max() <= 6
    assert age.min() >= 0 and age.max() <= 60
    assert distance.min() >= 0.5 and distance.max() <= 30
    text = ds.describe()
    for name in ds.feature_names:
        assert name in text and name in repr(ds)
    assert "0.08 distance_km^2" in text


def test_housing_is_deterministic():
    a, b, c = (data.make_housing(n=30, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.y, c.y)


def test_housing_noise_free_target_is_the_documented_function():
    ds = data.make_housing(n=40, seed=1, noise=0.0, dtype=torch.float64)
    torch.testing.assert_close(ds.y, ds.true_function(ds.X))
    c = ds.coefficients
    area, bedrooms, age, distance = ds.X.unbind(1)
    by_hand = 60 + 2.5 * area + 10 * bedrooms - 1.0 * age - 5.0 * distance + 0.08 * distance**2
    torch.testing.assert_close(ds.y, by_hand)
    assert c["area_m2"] == 2.5 and c["distance_km^2"] == 0.08


@pytest.mark.parametrize("noise, n, tolerance", [(0.0, 100, 1e-8), (20.0, 20000, 0.15)])
def test_least_squares_recovers_the_housing_coefficients(noise, n, tolerance):
    ds = data.make_housing(n=n, seed=2, noise=noise, dtype=torch.float64)
    coef = torch.linalg.lstsq(_design(ds.X), ds.y.unsqueeze(1)).solution.squeeze(1)
    expected = torch.tensor(list(ds.coefficients.values()), dtype=torch.float64)
    relative = ((coef - expected).abs() / expected.abs()).max().item()
    assert relative < tolerance, (coef, expected)


def test_standardize_uses_given_statistics():
    X = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    Xs, mean, std = data.standardize(X)
    torch.testing.assert_close(Xs.mean(0), torch.zeros(2))
    assert torch.equal(mean, torch.tensor([3.0, 5.0])) and std[1] == 1.0  # constant column
    X_new = torch.tensor([[5.0, 6.0]])
    out, _, _ = data.standardize(X_new, mean, std)
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        data.standardize(torch.zeros(3))


# ----------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------


def test_digits_flat_and_images():
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(y.tolist()) == set(range(10))
    images, y2 = data.load_digits(images=True, dtype=torch.float64)
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float64
    assert torch.equal(images.reshape(1797, 64).float(), X) and torch.equal(y, y2)


# ----------------------------------------------------------------------------
# MNIST-1D
# ----------------------------------------------------------------------------


def test_mnist1d_generates_published_sizes_then_hits_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEKIT_CACHE", str(tmp_path))
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002

    first = data.load_mnist1d()
    X_train, y_train, X_test, y_test = first
    assert X_train.shape == (4000, 40) and X_test.shape == (1000, 40)
    assert X_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert y_train.shape == (4000,) and y_test.shape == (1000,)
    assert set(y_train.tolist()) == set(range(10))
    assert (tmp_path / "mnist1d_seed42.npz").is_file()
    # the generator seeds numpy and random globally; the caller's state is restored
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002
    assert random.getstate() == py_state

    def no_generation(*args, **kwargs):
        raise AssertionError("the second call must read the cache, not regenerate")

    with monkeypatch.context() as patch:
        patch.setattr(data, "_generate_mnist1d", no_generation)
        second = data.load_mnist1d(dtype=torch.float64)
    assert second.X_train.dtype == torch.float64
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b.to(a.dtype))

    # generating again gives the same data; cache=False neither reads nor writes the cache
    (tmp_path / "mnist1d_seed42.npz").unlink()
    third = data.load_mnist1d(cache=False)
    assert not any(tmp_path.iterdir())
    for a, b in zip(first, third, strict=True):
        assert torch.equal(a, b)


def test_mnist1d_repairs_a_damaged_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEKIT_CACHE", str(tmp_path))
    (tmp_path / "mnist1d_seed7.npz").write_bytes(b"not a zip file")
    fake = {
        "x": np.zeros((8, 40)),
        "y": np.arange(8),
        "x_test": np.ones((2, 40)),
        "y_test": np.arange(2),
    }
    monkeypatch.setattr(data, "_generate_mnist1d", lambda seed: fake)
    X_train, y_train, X_test, _ = data.load_mnist1d(seed=7)
    assert X_train.shape == (8, 40) and X_test.shape == (2, 40)
    with np.load(tmp_path / "mnist1d_seed7.npz") as f:
        assert np.array_equal(f["y"], np.arange(8))


# ----------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------


def test_text_corpus_loads():
    text = data.load_text()
    assert text == data.load_text("sonnets")
    assert text.startswith("THE SONNETS\nby William Shakespeare")
    assert 20_000 < len(text) < 200_000
    assert "From fairest creatures we desire increase," in text
    headings = [line for line in text.splitlines() if line and set(line) <= set("IVXLC")]
    assert len(headings) == 154 and headings[-1] == "CLIV"
    with pytest.raises(ValueError, match="sonnets"):
        data.load_text("no such text")


def test_char_vocab_round_trips():
    text = data.load_text()
    vocab = data.CharVocab(text)
    assert vocab.itos == sorted(set(text)) and len(vocab) == len(set(text))
    assert all(vocab.stoi[ch] == i for i, ch in enumerate(vocab.itos))
    ids = vocab.encode(text)
    assert ids.dtype == torch.int64 and ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    assert vocab.decode(ids[:5].tolist()) == text[:5]
    assert "size=" in repr(vocab)


def test_char_vocab_errors():
    vocab = data.CharVocab("abc")
    with pytest.raises(ValueError, match="'z'"):
        vocab.encode("abz")
    with pytest.raises(ValueError, match="outside"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError):
        data.CharVocab("")


def test_char_sequences_are_shifted_by_one():
    text = "hello world, hello backprop"
    vocab = data.CharVocab(text)
    inputs, targets = data.char_sequences(text, seq_len=5)
    assert inputs.dtype == targets.dtype == torch.int64
    assert inputs.shape == targets.shape == ((len(text) - 1 - 5) // 5 + 1, 5)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert vocab.decode(inputs[0]) == "hello" and vocab.decode(targets[0]) == "ello "
    assert vocab.decode(inputs[1]) == " worl"  # non-overlapping windows by default
    # overlapping windows from ids, with stride 1: every position starts a window
    ids = vocab.encode(text)
    inputs1, targets1 = data.char_sequences(ids, seq_len=4, stride=1)
    assert len(inputs1) == len(text) - 4
    assert torch.equal(inputs1[:, 0], ids[:-4]) and torch.equal(targets1[:, -1], ids[4:])


def test_char_sequences_errors():
    with pytest.raises(ValueError, match="too short"):
        data.char_sequences("abc", seq_len=3)
    with pytest.raises(ValueError, match="seq_len"):
        data.char_sequences("abcdef", seq_len=0)
    with pytest.raises(ValueError, match="int64"):
        data.char_sequences(torch.zeros(10), seq_len=2)
    with pytest.raises(TypeError):
        data.char_sequences([1, 2, 3], seq_len=1)


# ----------------------------------------------------------------------------
# traffic and forecasting windows
# ----------------------------------------------------------------------------


def _autocorrelation(x: torch.Tensor, lag: int) -> float:
    """Pearson correlation of the series with itself ``lag`` steps later."""
    return torch.corrcoef(torch.stack([x[:-lag], x[lag:]]).double())[0, 1].item()


def test_traffic_shape_determinism_and_positivity():
    series = data.make_traffic(n_days=14, seed=1)
    assert series.shape == (14 * 24,) and series.dtype == torch.float32
    assert series.min() >= 0
    assert torch.equal(series, data.make_traffic(n_days=14, seed=1))
    assert not torch.equal(series, data.make_traffic(n_days=14, seed=2))


def test_traffic_has_a_daily_period():
    series = data.make_traffic(n_days=28, seed=0)
    assert _autocorrelation(series, 24) > 0.7
    assert _autocorrelation(series, 24) > _autocorrelation(series, 12) + 0.5
    assert _autocorrelation(series, 168) > _autocorrelation(series, 24)  # weekly cycle too


def test_traffic_rush_hours_and_weekends():
    series = data.make_traffic(n_days=28, seed=0, noise=0.0, start_weekday=0)
    days = series.reshape(4, 7, 24)  # week, weekday (Monday first), hour
    monday = days[0, 0]
    assert monday[6:11].argmax().item() + 6 == 8  # morning rush at 8:00
    assert monday[15:21].argmax().item() + 15 in (17, 18)  # evening rush
    assert days[:, 5:].mean() < 0.8 * days[:, :5].mean()  # quieter weekends
    assert torch.equal(days[0], days[1])  # noise=0: every week is the same
    shifted = data.make_traffic(n_days=7, seed=0, noise=0.0, start_weekday=5)
    torch.testing.assert_close(shifted[:24], days[0, 5])  # starts on a Saturday


def test_sliding_windows_values():
    series = torch.arange(10.0)
    X, Y = data.sliding_windows(series, window=3, horizon=2)
    assert X.shape == (6, 3) and Y.shape == (6, 2)
    assert torch.equal(X[0], torch.tensor([0.0, 1, 2])) and torch.equal(
        Y[0], torch.tensor([3.0, 4])
    )
    assert torch.equal(X[-1], torch.tensor([5.0, 6, 7])) and torch.equal(
        Y[-1], torch.tensor([8.0, 9])
    )
    X2, Y2 = data.sliding_windows(series, window=4, horizon=1, stride=3)
    assert X2.shape == (2, 4)  # (10 - 4 - 1) // 3 + 1 windows, starting at 0 and 3
    assert torch.equal(X2[1], torch.tensor([3.0, 4, 5, 6])) and torch.equal(
        Y2[:, 0], torch.tensor([4.0, 7])
    )


def test_sliding_windows_multivariate_and_errors():
    series = torch.arange(20.0).reshape(10, 2)
    X, Y = data.sliding_windows(series, window=4, horizon=1)
    assert X.shape == (6, 4, 2) and Y.shape == (6, 1, 2)
    assert torch.equal(Y[2, 0], series[6])
    with pytest.raises(ValueError, match="too short"):
        data.sliding_windows(torch.arange(4.0), window=4, horizon=1)
    with pytest.raises(ValueError, match="series"):
        data.sliding_windows(torch.zeros(2, 2, 2), window=1)
    with pytest.raises(ValueError, match="window"):
        data.sliding_windows(torch.arange(4.0), window=0)


# ----------------------------------------------------------------------------
# train_val_split and batches
# ----------------------------------------------------------------------------


def test_train_val_split_partitions_the_data():
    X = torch.arange(50.0).unsqueeze(1)
    y = torch.arange(50)
    (X_tr, y_tr), (X_val, y_val) = data.train_val_split(X, y, val_fraction=0.2, seed=0)
    assert len(X_val) == 10 and len(X_tr) == 40
    assert torch.equal(X_tr[:, 0].long(), y_tr) and torch.equal(X_val[:, 0].long(), y_val)
    assert sorted(torch.cat([y_tr, y_val]).tolist()) == list(range(50))
    (_, y_tr2), _ = data.train_val_split(X, y, val_fraction=0.2, seed=0)
    (_, y_tr3), _ = data.train_val_split(X, y, val_fraction=0.2, seed=1)
    assert torch.equal(y_tr, y_tr2) and not torch.equal(y_tr, y_tr3)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"val_fraction": 0.0}, ValueError),
        ({"val_fraction": 1.0}, ValueError),
        ({"val_fraction": 0.01}, ValueError),  # rounds to an empty validation set
        ({"val_fraction": "0.2"}, TypeError),
    ],
)
def test_train_val_split_errors(kwargs, error):
    with pytest.raises(error):
        data.train_val_split(torch.zeros(10, 2), torch.zeros(10), **kwargs)
    with pytest.raises(ValueError, match=r"\(10, 2\) and \(9,\)"):
        data.train_val_split(torch.zeros(10, 2), torch.zeros(9))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8)])
def test_batches_cover_every_example_once(n, batch_size, shuffle):
    X = torch.arange(n).float().unsqueeze(1) * 10
    y = torch.arange(n)
    got = list(data.batches(X, y, batch_size, shuffle=shuffle))
    sizes = [len(yb) for _, yb in got]
    assert len(got) == -(-n // batch_size)
    assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size
    seen = torch.cat([yb for _, yb in got])
    assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in got:
        assert torch.equal(xb[:, 0], yb.float() * 10)  # pairs stay together
    if not shuffle:
        assert torch.equal(seen, y)


def test_batches_drop_last():
    X, y = torch.zeros(10, 2), torch.arange(10)
    got = list(data.batches(X, y, 3, drop_last=True))
    assert [len(yb) for _, yb in got] == [3, 3, 3]
    assert len(set(torch.cat([yb for _, yb in got]).tolist())) == 9
    assert len(list(data.batches(X, y, 5, drop_last=True))) == 2


def test_batches_shuffle_is_reproducible_with_a_generator():
    X, y = torch.zeros(100, 1), torch.arange(100)

    def order(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([yb for _, yb in data.batches(X, y, 7, generator=gen)]).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert order(0) != list(range(100))


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((torch.zeros(4, 2), torch.zeros(3), 2), {}, ValueError, r"\(4, 2\) and \(3,\)"),
        ((torch.zeros(4, 2), torch.zeros(4), 0), {}, ValueError, "batch_size"),
        ((torch.zeros(4, 2), torch.zeros(4), 2.0), {}, TypeError, "batch_size"),
        ((torch.zeros(4, 2), torch.zeros(4), True), {}, TypeError, "batch_size"),
        (([1, 2], torch.zeros(2), 1), {}, TypeError, "tensors"),
        ((torch.zeros(4, 2), torch.zeros(4), 5), {"drop_last": True}, ValueError, "no batch"),
        ((torch.zeros(4, 2), torch.zeros(4), 2), {"generator": 0}, TypeError, "generator"),
    ],
)
def test_batches_errors_are_raised_at_the_call(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        data.batches(*args, **kwargs)  # no next(): the checks are eager


# ----------------------------------------------------------------------------
# real MNIST: offline paths only
# ----------------------------------------------------------------------------


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_load_mnist_reads_cached_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = {
        "X_train": rng.integers(0, 256, (6, 28, 28)),
        "X_test": rng.integers(0, 256, (2, 28, 28)),
    }
    labels = {"y_train": np.arange(6), "y_test": np.array([7, 3])}
    for key, filename in data.MNIST_FILES.items():
        _write_idx(tmp_path / filename, images[key] if key.startswith("X") else labels[key])
    X_train, y_train, X_test, y_test = data.load_mnist(root=tmp_path, download=False)
    assert X_train.shape == (6, 1, 28, 28) and X_test.shape == (2, 1, 28, 28)
    torch.testing.assert_close(X_train[:, 0], torch.from_numpy(images["X_train"] / 255).float())
    assert y_train.dtype == torch.int64 and y_test.tolist() == [7, 3]
    flat = data.load_mnist(root=tmp_path, download=False, flat=True)
    assert flat.X_train.shape == (6, 784)


def test_load_mnist_falls_back_to_digits_when_unreachable(tmp_path, capsys):
    # nothing listens on the discard port of this machine: the connection is refused
    out = data.load_mnist(root=tmp_path, mirrors=("http://127.0.0.1:9/",), timeout=2.0)
    message = capsys.readouterr().out
    assert "Falling back to scikit-learn's 8x8 digits upscaled to 28x28" in message
    X_train, y_train, X_test, y_test = out
    assert X_train.shape == (1438, 1, 28, 28) and X_test.shape == (359, 1, 28, 28)
    assert X_train.min() >= 0 and X_train.max() <= 1
    assert X_train[:, :, :4].abs().max() == 0  # a 4-pixel empty border, as MNIST's
    assert y_train.dtype == torch.int64 and len(y_test) == 359
    assert not list(tmp_path.glob("*.gz"))


def test_load_mnist_fallback_without_download(tmp_path, capsys, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("download=False must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    out = data.load_mnist(root=tmp_path, download=False, flat=True)
    assert "download=False" in capsys.readouterr().out
    assert out.X_train.shape == (1438, 784)


def test_load_mnist_does_not_hang_on_a_silent_server(tmp_path, capsys, monkeypatch):
    never = __import__("threading").Event()

    def silent(*args, **kwargs):
        never.wait(30)  # a server that never answers (also a name lookup that hangs)
        raise OSError("unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", silent)
    out = data.load_mnist(root=tmp_path, mirrors=("http://example.invalid/",), timeout=0.2)
    never.set()
    assert "within 0.2 s" in capsys.readouterr().out
    assert out.X_train.shape == (1438, 1, 28, 28)


def test_load_mnist_fallback_to_mnist1d(tmp_path, capsys, monkeypatch):
    fake = data.TrainTest(
        torch.zeros(4, 40),
        torch.zeros(4, dtype=torch.int64),
        torch.zeros(1, 40),
        torch.zeros(1, dtype=torch.int64),
    )
    monkeypatch.setattr(data, "load_mnist1d", lambda **kwargs: fake)
    out = data.load_mnist(root=tmp_path, download=False, fallback="mnist1d")
    assert "Falling back to MNIST-1D" in capsys.readouterr().out
    assert out is fake
    with pytest.raises(ValueError, match="fallback"):
        data.load_mnist(root=tmp_path, fallback="cifar")
