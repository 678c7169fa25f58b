"""Recurrent layers that take a backward pass in eval mode on CUDA (attacks, saliency).

cuDNN refuses an RNN's backward unless the module is in training mode ("cudnn RNN backward can
only be called in training mode", PyTorch issue 15788), so a waveform gradient through a frozen
``nn.GRU``/``nn.LSTM`` fails on a GPU. Switching the backbone to train mode would turn its dropout
on and change the features being attacked. Instead :func:`run_rnn` runs the layer with cuDNN
disabled — for that call only, and only when a backward may follow: gradients enabled, the layer
in eval mode, on CUDA, and its input or one of its parameters requiring a gradient. Extraction
(``inference_mode``/``no_grad``) and training keep cuDNN's fast kernels. Every recurrent family
calls its RNN layers through :func:`run_rnn` (APC's GRUs, GE2E's LSTMs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["cudnn_off_for_backward", "needs_cudnn_off", "run_rnn"]


def _data(value: Any) -> Any:
    return value.data if isinstance(value, PackedSequence) else value


def _on_cuda(value: Any) -> bool:
    data = _data(value)
    return isinstance(data, torch.Tensor) and data.is_cuda


def needs_cudnn_off(module: nn.Module, inputs: Any) -> bool:
    """True when cuDNN would refuse the backward of ``module`` run on ``inputs`` now."""
    if module.training or not torch.is_grad_enabled() or not torch.backends.cudnn.enabled:
        return False
    if not _on_cuda(inputs):
        return False
    data = _data(inputs)
    return bool(data.requires_grad) or any(p.requires_grad for p in module.parameters())


@contextlib.contextmanager
def cudnn_off_for_backward(module: nn.Module, inputs: Any) -> Iterator[bool]:
    """Disable cuDNN inside the block if :func:`needs_cudnn_off`; yields whether it did."""
    if not needs_cudnn_off(module, inputs):
        yield False
        return
    with torch.backends.cudnn.flags(enabled=False):
        yield True


def run_rnn(rnn: nn.Module, inputs: Any, *args: Any, **kwargs: Any) -> Any:
    """``rnn(inputs, ...)``, differentiable on CUDA in eval mode (see the module docstring)."""
    with cudnn_off_for_backward(rnn, inputs):
        return rnn(inputs, *args, **kwargs)
