"""coursekit: the companion library of *Backprop from Scratch*.

Every layer here has a hand-written forward and backward pass on PyTorch
tensors, so the same code runs on CPU and GPU, and every gradient is checked
against ``torch.autograd``.  Modules, one idea each::

    coursekit.functional   forward/backward pairs (import as F)
    coursekit.scalar       Value: scalar reverse-mode autodiff
    coursekit.autograd     Tensor: a tape-based autograd on the pairs; to_torch()
    coursekit.gradcheck    finite differences and comparison with torch.autograd
    coursekit.nn           Module, layers, Sequential, losses
    coursekit.init         Xavier/He initializers
    coursekit.optim        SGD, RMSprop, Adam, gradient clipping
    coursekit.data         offline datasets and mini-batches
    coursekit.train        fit() and evaluate()
    coursekit.checkpoint   bytes kept for backward, activation checkpointing
    coursekit.amp          LossScaler: dynamic loss scaling for float16
    coursekit.distributed  launch(), all_reduce_gradients(): data parallelism
    coursekit.flops        FLOPs counted by torch, timed against a matrix-product peak
    coursekit.rumelhart1986  the 1986 back-propagation experiments, many seeds at once
    coursekit.viz          plots and widgets for the lessons
    coursekit.grading      check() for the graded exercises
    coursekit.device       default_device(), describe()
"""

from coursekit.device import default_device, describe

__version__ = "0.1.0"
__all__ = ["__version__", "default_device", "describe"]
