"""Tests of coursekit.train: accuracy, evaluate, fit and History, and end-to-end training."""

from __future__ import annotations

import json
import math

import pytest
import torch

from coursekit import data, nn, optim, train
from coursekit.device import seeded_generator


def _mlp(d_in: int, hidden: int, d_out: int, seed: int = 0, dtype=torch.float32) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d_in, hidden, generator=g, dtype=dtype),
        nn.ReLU(),
        nn.Linear(hidden, d_out, generator=g, dtype=dtype),
    )


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small matrix products: one thread is fastest, and with several test workers
    sharing the cores, more threads per worker can make training many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def moons():
    X, y = data.make_moons(n=300, noise=0.15, seed=0)
    return data.train_val_split(X, y, val_fraction=0.25, seed=0)


def _fit(model, train_pair, val_pair=None, lr=0.05, seed=0, **kwargs) -> train.History:
    options = {"epochs": 5, "batch_size": 32, "progress": False}
    options.update(kwargs)
    return train.fit(
        model,
        nn.SoftmaxCrossEntropyLoss(),
        optim.Adam(model.parameters(), lr=lr),
        train_pair,
        val_pair,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )


# ----------------------------------------------------------------------------
# accuracy and evaluate
# ----------------------------------------------------------------------------


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert train.accuracy(logits, torch.tensor([0, 1, 2, 1])) == 0.75
    single = torch.tensor([[1.5], [-0.5], [0.2]])  # one logit: class 1 where > 0
    assert train.accuracy(single, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    assert train.accuracy(single.squeeze(1), torch.tensor([1, 0, 1])) == 1.0
    with pytest.raises(ValueError, match=r"\(4,\)"):
        train.accuracy(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="logits"):
        train.accuracy(torch.zeros(2, 3, 4), torch.tensor([0, 1]))


def test_evaluate_matches_a_full_batch_pass_and_leaves_gradients_alone(moons):
    (X, y), _ = moons
    model = _mlp(2, 8, 2)
    model.zero_grad()
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    model(X[:5])
    model.backward(torch.ones(5, 2))  # some gradient that evaluate must not touch
    grads = [p.grad.clone() for p in model.parameters()]

    loss, acc = train.evaluate(model, loss_fn, X, y, batch_size=7)  # batches of unequal size

    logits = model(X)
    expected = torch.nn.functional.cross_entropy(logits, y).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert acc == pytest.approx(train.accuracy(logits, y))
    for before, p in zip(grads, model.parameters(), strict=True):
        assert torch.equal(before, p.grad)
    assert model.training  # the mode is restored
    model.eval()
    train.evaluate(model, loss_fn, X, y)
    assert not model.training


def test_evaluate_uses_eval_mode():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3, generator=g), nn.Dropout(0.9))
    X, y = torch.randn(50, 3), torch.randint(0, 3, (50,))
    loss_a, _ = train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), X, y)
    loss_b, _ = train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), X, y)
    assert loss_a == loss_b  # dropout is off: the result is deterministic


def test_evaluate_regression_has_no_accuracy():
    ds = data.make_housing(n=20, seed=0)
    Xs, _, _ = data.standardize(ds.X)
    model = nn.Linear(4, 1)
    loss, acc = train.evaluate(model, nn.MSELoss(), Xs, ds.y.unsqueeze(1))
    assert acc is None
    assert loss == pytest.approx(((model(Xs) - ds.y.unsqueeze(1)) ** 2).mean().item(), rel=1e-5)


# ----------------------------------------------------------------------------
# fit and History
# ----------------------------------------------------------------------------


def test_fit_learns_moons_and_records_history(moons):
    train_pair, val_pair = moons
    model = _mlp(2, 32, 2)
    history = _fit(model, train_pair, val_pair, epochs=30)
    assert history.epochs == 30
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"):
        assert len(getattr(history, name)) == 30, name
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_acc[-1] > 0.95
    assert history.best_epoch == 1 + min(range(30), key=history.val_loss.__getitem__)
    assert not history.stopped_early and not history.diverged
    assert history.lr == [0.05] * 30
    text = repr(history)
    assert "epochs=30" in text and f"val_acc={history.val_acc[-1]:.4f}" in text
    assert history.device == "cpu" and "device='cpu'" in text
    as_dict = json.loads(json.dumps(history.as_dict()))
    assert (
        as_dict["train_loss"] == history.train_loss and as_dict["best_epoch"] == history.best_epoch
    )
    assert as_dict["device"] == "cpu"
    # the reported validation numbers are those of the final model
    loss, acc = train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), *val_pair)
    assert loss == pytest.approx(history.val_loss[-1]) and acc == history.val_acc[-1]


def test_fit_train_loss_is_the_mean_over_examples(moons):
    """With lr=0 nothing changes, so the epoch's train loss is the full-data loss."""
    train_pair, _ = moons
    model = _mlp(2, 8, 2)
    history = _fit(model, train_pair, lr=0.0, epochs=2, batch_size=50)  # 225 = 4 * 50 + 25
    loss, acc = train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), *train_pair)
    assert history.train_loss == pytest.approx([loss, loss], rel=1e-5)
    assert history.train_acc == [acc, acc]
    assert history.val_loss == [] and history.best_epoch is None


def test_fit_is_reproducible_with_a_generator(moons):
    train_pair, val_pair = moons
    a = _fit(_mlp(2, 16, 2), train_pair, val_pair, seed=1)
    b = _fit(_mlp(2, 16, 2), train_pair, val_pair, seed=1)
    c = _fit(_mlp(2, 16, 2), train_pair, val_pair, seed=2)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert a.train_loss != c.train_loss


def test_fit_regression_has_no_accuracy():
    ds = data.make_housing(n=200, seed=0)
    Xs, _, _ = data.standardize(ds.X)
    y = (ds.y - ds.y.mean()) / ds.y.std()
    model = nn.Linear(4, 1)
    history = train.fit(
        model,
        nn.MSELoss(),
        optim.SGD(model.parameters(), lr=0.05),
        (Xs, y.unsqueeze(1)),
        epochs=20,
        progress=False,
    )
    assert history.train_acc == [] and history.val_acc == []
    assert history.train_loss[-1] < 0.1 < history.train_loss[0]
    assert "acc" not in repr(history)


def test_fit_tracks_gradient_norms_per_parameter(moons):
    train_pair, _ = moons
    model = _mlp(2, 8, 2)
    history = _fit(model, train_pair, epochs=3, track_grad_norms=True)
    assert list(history.grad_norms) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(len(v) == 3 and all(x > 0 for x in v) for v in history.grad_norms.values())
    assert "grad_norms=<4 parameters>" in repr(history)
    assert _fit(_mlp(2, 8, 2), train_pair, epochs=1).grad_norms == {}


def test_fit_with_lr_zero_records_the_exact_mean_gradient_norm():
    """With one full batch and lr=0, the recorded norm is the norm of the full gradient."""
    X, y = data.make_moons(n=64, seed=0)
    model = _mlp(2, 4, 2)
    history = _fit(model, (X, y), lr=0.0, epochs=1, batch_size=64, track_grad_norms=True)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(X), y)
    model.backward(loss_fn.backward())
    for name, p in model.named_parameters():
        assert history.grad_norms[name][0] == pytest.approx(p.grad.norm().item(), rel=1e-5)


class _RecordingSGD(optim.SGD):
    """SGD that remembers the global gradient norm it was asked to apply."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.norms: list[float] = []

    def step(self):
        self.norms.append(math.sqrt(sum((p.grad**2).sum().item() for p in self.params)))
        super().step()


def test_fit_clips_the_global_gradient_norm(moons):
    train_pair, _ = moons
    model = _mlp(2, 16, 2)
    opt = _RecordingSGD(model.parameters(), lr=0.1)
    history = train.fit(
        model,
        nn.SoftmaxCrossEntropyLoss(),
        opt,
        train_pair,
        epochs=2,
        clip=0.01,
        progress=False,
        track_grad_norms=True,
    )
    assert len(opt.norms) == 2 * math.ceil(len(train_pair[0]) / 32)
    assert max(opt.norms) <= 0.01 * (1 + 1e-4)
    assert history.grad_norms["0.weight"][0] > 0.01  # the recorded norms are before clipping

    other = _mlp(2, 16, 2)
    unclipped = _RecordingSGD(other.parameters(), lr=0.1)
    train.fit(other, nn.SoftmaxCrossEntropyLoss(), unclipped, train_pair, epochs=1, progress=False)
    assert max(unclipped.norms) > 0.01


def test_early_stopping_stops_and_restores_the_best_weights():
    # Memorizing a small noisy training set: the validation loss soon rises.
    X, y = data.make_spirals(n_per_class=20, noise=0.6, seed=0)
    X_val, y_val = data.make_spirals(n_per_class=100, noise=0.6, seed=1)
    model = _mlp(2, 128, 3)
    history = _fit(
        model,
        (X, y),
        (X_val, y_val),
        lr=0.05,
        epochs=300,
        batch_size=16,
        early_stopping=train.EarlyStopping(patience=5, min_delta=0.0),
    )
    assert history.stopped_early and history.epochs < 300
    assert history.epochs == history.best_epoch + 5
    assert "stopped_early=True" in repr(history)
    best = history.val_loss[history.best_epoch - 1]
    assert best == min(history.val_loss) < history.val_loss[-1]
    loss, _ = train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), X_val, y_val)
    assert loss == pytest.approx(best, rel=1e-6)  # the weights of the best epoch are back


def test_early_stopping_as_int_and_without_restore():
    X, y = data.make_spirals(n_per_class=20, noise=0.6, seed=0)
    val = data.make_spirals(n_per_class=100, noise=0.6, seed=1)
    model = _mlp(2, 128, 3)
    history = _fit(
        model,
        (X, y),
        val,
        epochs=300,
        batch_size=16,
        early_stopping=train.EarlyStopping(patience=3, restore_best=False),
    )
    assert history.stopped_early and history.epochs == history.best_epoch + 3
    loss, _ = train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), *val)
    assert loss == pytest.approx(history.val_loss[-1], rel=1e-6)  # the last weights kept
    as_int = _fit(_mlp(2, 128, 3), (X, y), val, epochs=300, batch_size=16, early_stopping=3)
    assert as_int.stopped_early and as_int.epochs == as_int.best_epoch + 3


def test_early_stopping_min_delta_counts_small_gains_as_none(moons):
    train_pair, val_pair = moons
    history = _fit(
        _mlp(2, 16, 2),
        train_pair,
        val_pair,
        lr=0.01,
        epochs=50,
        early_stopping=train.EarlyStopping(patience=2, min_delta=10.0),
    )
    assert history.epochs == 3 and history.best_epoch == 1  # no gain is ever 10 nats


def test_fit_steps_the_scheduler_once_per_epoch(moons):
    train_pair, _ = moons
    model = _mlp(2, 8, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    history = train.fit(
        model,
        nn.SoftmaxCrossEntropyLoss(),
        opt,
        train_pair,
        epochs=5,
        scheduler=sched,
        progress=False,
    )
    assert history.lr == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert opt.lr == pytest.approx(0.025)  # lr_at(5) = 0.1 * 0.5 ** (5 // 2)


def test_fit_warns_and_stops_when_the_loss_diverges():
    X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    y = (X @ torch.tensor([[1.0], [2.0], [3.0]])) * 1e3
    model = nn.Linear(3, 1)
    with pytest.warns(RuntimeWarning, match="smaller learning rate"):
        history = train.fit(
            model,
            nn.MSELoss(),
            optim.SGD(model.parameters(), lr=10.0),
            (X, y),
            epochs=50,
            batch_size=8,
            progress=False,
        )
    assert history.diverged and history.epochs < 50
    assert "diverged=True" in repr(history)


def test_fit_casts_data_to_the_model_dtype(moons):
    (X, y), (X_val, y_val) = moons
    model = _mlp(2, 8, 2, dtype=torch.float64)
    history = _fit(model, (X, y), (X_val, y_val), epochs=2, device="cpu")
    assert X.dtype == torch.float32  # the caller's tensors are untouched
    assert all(p.data.dtype == torch.float64 for p in model.parameters())
    assert history.epochs == 2


def test_fit_progress_bar(moons, capsys):
    train_pair, val_pair = moons
    _fit(_mlp(2, 8, 2), train_pair, val_pair, epochs=2, progress=False)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    _fit(_mlp(2, 8, 2), train_pair, val_pair, epochs=2, progress=True)
    shown = capsys.readouterr().err
    assert "2/2" in shown and "val_acc=" in shown and "loss=" in shown
    assert "fit on cpu" in shown  # where it trains


def test_fit_limits_threads_to_the_cores(moons, monkeypatch):
    train_pair, _ = moons
    threads = torch.get_num_threads()
    monkeypatch.setattr(train, "_threads_checked", False)
    monkeypatch.setattr(train.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(train.os, "cpu_count", lambda: 1)
    try:
        torch.set_num_threads(2)
        _fit(_mlp(2, 4, 2), train_pair, epochs=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        _fit(_mlp(2, 4, 2), train_pair, epochs=1)
        assert torch.get_num_threads() == 2  # checked once per process only
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"train": (torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64))}, ValueError, r"\(3,\)"),
        ({"train": torch.zeros(4, 2)}, TypeError, "train"),
        ({"val": ([0.0], [1])}, TypeError, "val"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"clip": -1.0}, ValueError, "clip"),
        ({"early_stopping": 3, "val": None}, ValueError, "val"),
        ({"early_stopping": "yes"}, TypeError, "early_stopping"),
        ({"scheduler": 0.5}, TypeError, "scheduler"),
    ],
)
def test_fit_argument_errors(kwargs, error, message):
    model = _mlp(2, 4, 2)
    options = {
        "train": (torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)),
        "val": (torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64)),
        "progress": False,
    }
    options.update(kwargs)
    with pytest.raises(error, match=message):
        train.fit(
            model, nn.SoftmaxCrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), **options
        )


def test_early_stopping_validates():
    with pytest.raises(ValueError, match="patience"):
        train.EarlyStopping(patience=0)
    with pytest.raises(TypeError, match="patience"):
        train.EarlyStopping(patience=2.5)
    with pytest.raises(ValueError, match="min_delta"):
        train.EarlyStopping(min_delta=-1.0)


@pytest.mark.gpu
def test_fit_on_cuda_moves_model_and_data():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    X, y = data.make_moons(n=256, noise=0.1, seed=0)
    model = _mlp(2, 32, 2)
    history = _fit(model, (X, y), (X, y), epochs=20, device="cuda")
    assert all(p.data.is_cuda for p in model.parameters())
    assert history.val_acc[-1] > 0.9
    X_gpu, y_gpu = X.cuda(), y.cuda()
    history2 = _fit(model, (X_gpu, y_gpu), epochs=1)  # model already there: device inferred
    assert history2.epochs == 1
    loss, acc = train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), X, y)  # CPU data moved
    assert acc > 0.9 and math.isfinite(loss)


# ----------------------------------------------------------------------------
# devices: where fit trains, and what it refuses to mix
# ----------------------------------------------------------------------------


class _Where(nn.Module):
    """The identity, recording the device of every batch and every gradient that passes."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[torch.device] = set()

    def forward(self, x):
        self.devices.add(x.device)
        return x

    def backward(self, dout, input_grad=True):
        self.devices.add(dout.device)
        return dout if input_grad else None


def _dropout_mlp(device, seed=0):
    g = torch.Generator().manual_seed(seed)  # weights drawn on the CPU, copied to the device
    where = _Where()
    model = nn.Sequential(
        where,
        nn.Linear(2, 32, generator=g, device=device),
        nn.ReLU(),
        nn.Dropout(0.3, generator=seeded_generator(seed, device)),  # masks drawn on the device
        nn.Linear(32, 2, generator=g, device=device),
    )
    return model, where


def _fit_with_dropout_on(device, moons_pair):
    """Two identical runs on ``device``; everything must happen there, reproducibly."""
    target = torch.empty(0, device=device).device  # 'cuda' -> cuda:0
    histories = []
    for _ in range(2):
        model, where = _dropout_mlp(device)
        history = train.fit(
            model,
            nn.SoftmaxCrossEntropyLoss(),
            optim.Adam(model.parameters(), lr=0.05),
            *moons_pair,  # CPU tensors: fit copies them to the model's device
            epochs=3,
            progress=False,
            generator=seeded_generator(0, device),
            device=device,
        )
        assert history.device == str(target) and history.as_dict()["device"] == str(target)
        assert where.devices == {target}  # every batch and every gradient was there
        for p in model.parameters():
            assert p.data.device == target and p.grad.device == target
        histories.append(history)
    assert histories[0].train_loss == histories[1].train_loss  # same masks, same order
    assert histories[0].val_acc[-1] > 0.8
    return histories[0]


def test_fit_on_the_cpu_with_a_device_generator_for_dropout(moons):
    history = _fit_with_dropout_on("cpu", moons)
    assert history.device == "cpu"


def test_fit_refuses_data_on_an_accelerator_when_the_model_is_elsewhere(moons):
    """Data on another device than the model would silently train on the model's device.

    The meta device stands in for a GPU: nothing is computed before the check raises.
    """
    (X, y), (X_val, y_val) = moons
    model = _mlp(2, 8, 2)
    with pytest.raises(ValueError, match=r"train X is on meta but the model is on cpu"):
        _fit(model, (X.to("meta"), y))
    with pytest.raises(ValueError, match=r"val y is on meta"):
        _fit(model, (X, y), (X_val, y_val.to("meta")))
    with pytest.raises(ValueError, match=r"X is on meta"):
        train.evaluate(model, nn.SoftmaxCrossEntropyLoss(), X.to("meta"), y)


def test_fit_refuses_parameters_on_several_devices(moons):
    train_pair, _ = moons
    model = _mlp(2, 8, 2)
    model[2].bias.data = model[2].bias.data.to("meta")
    with pytest.raises(ValueError, match=r"2 devices .*2\.bias on meta"):
        _fit(model, train_pair)


def test_fit_refuses_an_optimizer_over_parameters_elsewhere(moons):
    train_pair, _ = moons
    model = _mlp(2, 8, 2)
    stray = nn.Parameter(torch.zeros(3, device="meta"))
    with pytest.raises(ValueError, match=r"optimizer.params\[4\] is on meta"):
        train.fit(
            model,
            nn.SoftmaxCrossEntropyLoss(),
            optim.SGD([*model.parameters(), stray], lr=0.1),
            train_pair,
            progress=False,
        )


class _GeneratorElsewhere(torch.Generator):
    """A generator that reports another device, as a CUDA generator would."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda")


def test_fit_refuses_a_dropout_generator_on_another_device(moons):
    train_pair, _ = moons
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5, generator=_GeneratorElsewhere()))
    with pytest.raises(
        ValueError, match=r"Dropout 1\.generator is a generator on cuda.*seeded_generator"
    ):
        _fit(model, train_pair)


def _cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device("cuda")


@pytest.mark.gpu
def test_fit_on_cuda_with_a_device_generator_for_dropout(moons):
    _cuda()
    history = _fit_with_dropout_on("cuda", moons)
    assert history.device.startswith("cuda")


@pytest.mark.gpu
def test_fit_on_cuda_refuses_mixed_devices(moons):
    cuda = _cuda()
    (X, y), _ = moons
    with pytest.raises(ValueError, match="the model is on cpu"):
        _fit(_mlp(2, 8, 2), (X.to(cuda), y.to(cuda)))  # a CPU model, GPU data
    model, _ = _dropout_mlp("cpu")
    with pytest.raises(ValueError, match="seeded_generator"):  # moved, but its masks are CPU's
        _fit(model, (X, y), device=cuda)


@pytest.mark.gpu
def test_fit_device_moves_the_model_and_its_optimizer_state(moons):
    cuda = _cuda()
    train_pair, val_pair = moons
    model = _mlp(2, 16, 2)
    adam = optim.Adam(model.parameters(), lr=0.05)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    train.fit(model, loss_fn, adam, train_pair, epochs=1, progress=False)  # state on the CPU
    history = train.fit(
        model, loss_fn, adam, train_pair, val_pair, epochs=3, progress=False, device="cuda"
    )
    assert history.device == str(torch.empty(0, device=cuda).device)
    assert all(p.data.is_cuda for p in model.parameters())  # it stays there after fit
    assert all(v.is_cuda for s in adam.state for v in s.values() if isinstance(v, torch.Tensor))
    assert history.val_acc[-1] > 0.8


# ----------------------------------------------------------------------------
# end to end: coursekit only
# ----------------------------------------------------------------------------


def test_mlp_on_digits_reaches_95_percent():
    X, y = data.load_digits()
    train_pair, val_pair = data.train_val_split(X, y, val_fraction=0.2, seed=0)
    model = _mlp(64, 64, 10)
    history = _fit(model, train_pair, val_pair, lr=1e-2, epochs=15, batch_size=64)
    assert history.val_acc[-1] >= 0.95


@pytest.fixture(scope="module")
def mnist1d():
    return data.load_mnist1d()


def _fit_mnist1d(model, split, epochs):
    X_train, y_train, X_test, y_test = split
    history = train.fit(
        model,
        nn.SoftmaxCrossEntropyLoss(),
        optim.Adam(model.parameters(), lr=1e-2),
        (X_train, y_train),
        (X_test, y_test),
        epochs=epochs,
        batch_size=100,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    return history.val_acc[-1]


def test_logistic_regression_on_mnist1d_is_near_the_published_32_percent(mnist1d):
    model = nn.Linear(40, 10, generator=torch.Generator().manual_seed(0))
    assert 0.25 <= _fit_mnist1d(model, mnist1d, epochs=40) <= 0.40


def test_mlp_on_mnist1d_passes_60_percent(mnist1d):
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Linear(40, 100, generator=g),
        nn.ReLU(),
        nn.Linear(100, 100, generator=g),
        nn.ReLU(),
        nn.Linear(100, 10, generator=g),
    )
    assert _fit_mnist1d(model, mnist1d, epochs=40) >= 0.60
