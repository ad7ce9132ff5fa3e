"""coursekit's own implementations of each graded operation: an exercise that calls them
scores zero ("calls coursekit's own linear_backward"), like one that uses autograd."""

from __future__ import annotations

_F = "coursekit.functional."
_A = "coursekit.autograd."
_R1986 = tuple(f"coursekit.rumelhart1986.{name}" for name in ("train", "gradients", "backward"))

LIBRARY: dict[str, tuple[str, ...]] = {
    "02.mul_backward": (_A + "mul_backward",),
    "02.pow_backward": (_A + "pow_backward",),
    "02.exp_backward": (_A + "exp_backward",),
    "02.tanh_backward": (_F + "tanh_backward",),
    "02.topological_order": ("coursekit.scalar.topological_order", _A + "topological_order"),
    "03.sigmoid": (_F + "sigmoid_forward", _F + "sigmoid_backward"),
    "03.tanh": (_F + "tanh_forward", _F + "tanh_backward"),
    "03.relu": (_F + "relu_forward", _F + "relu_backward"),
    "03.leaky_relu": (_F + "leaky_relu_forward", _F + "leaky_relu_backward"),
    "03.gd_step": (_F + "mse_backward", _F + "linear_backward"),
    "04.linear_backward": (_F + "linear_backward",),
    "04.find_the_bug": (_F + "linear_backward",),
    "04.broadcast_backward": (_A + "unbroadcast",),
    "05.softmax_cross_entropy": (
        _F + "softmax_cross_entropy_forward",
        _F + "softmax_cross_entropy_backward",
    ),
    "05.dlogits": (_F + "softmax_cross_entropy_backward",),
    "05.mlp_backward": (
        _F + "linear_backward",
        _F + "relu_backward",
        _F + "softmax_cross_entropy_backward",
    ),
    "06.momentum_step": ("coursekit.optim.SGD.step",),
    "06.adam_step": ("coursekit.optim.Adam.step",),
    "07.dropout": (_F + "dropout_forward", _F + "dropout_backward"),
    "08.batchnorm_backward": (_F + "batchnorm_backward",),
    "08.clip_grad_norm": ("coursekit.optim.clip_grad_norm_",),
    "08.he_init": ("coursekit.init.he_normal_", "coursekit.init.he_uniform_"),
    "09.conv2d_backward": (_F + "conv2d_backward",),
    "09.maxpool_backward": (_F + "maxpool2d_backward",),
    "10.rnn_step_backward": (_F + "rnn_step_backward",),
    "10.bptt": (_F + "rnn_backward", _F + "rnn_step_backward"),
    "10.lstm_step_backward": (_F + "lstm_step_backward", _F + "lstm_backward"),
    "11.unbroadcast": (_A + "unbroadcast",),
    "12.saved_bytes": (
        "coursekit.checkpoint.saved_bytes",
        "coursekit.checkpoint.saved_bytes_per_module",
        "coursekit.checkpoint.torch_saved_bytes",
    ),
    "12.flops": ("coursekit.flops.count_flops",),
    "12.average_gradients": ("coursekit.distributed.all_reduce_gradients",),
    "12.loss_scaler_step": ("coursekit.amp.LossScaler.step", "coursekit.amp.LossScaler.unscale_"),
    # the capstone may use coursekit's pieces, but not the lesson's ready-made 1986 trainer
    "13.xor": _R1986,
    "13.encoder": _R1986,
    "13.symmetry": _R1986,
    "14.softmax_backward": (_F + "softmax_backward",),
    "14.attention_backward": (_F + "attention_backward", _F + "softmax_backward"),
    "14.layernorm_backward": (_F + "layernorm_backward",),
}


def library_of(item: str) -> tuple[str, ...]:
    """Dotted names of coursekit's implementations of the item's operation (may be empty)."""
    return LIBRARY.get(item, ())
