"""Recurrent layers that stay differentiable to the waveform on every device.

cuDNN's RNN kernels refuse a backward pass in eval mode ("cudnn RNN backward can only be called in
training mode", PyTorch issue 15788), and a frozen backbone is always in eval mode. Train mode
would switch on dropout where a layer has any, so instead :func:`run_recurrent` runs the layer
with cuDNN switched off — for that call only, and only when a backward pass may follow (gradients
enabled, the layer on CUDA and in eval mode, and its input or a parameter requiring a gradient).
Extraction under ``torch.no_grad()`` keeps the cuDNN kernels.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["cudnn_blocks_backward", "run_recurrent"]


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def cudnn_blocks_backward(rnn: nn.Module, inputs: torch.Tensor | PackedSequence) -> bool:
    """True when calling ``rnn(inputs)`` now would leave a backward pass that cuDNN refuses."""
    if rnn.training or not torch.is_grad_enabled():
        return False
    data = inputs.data if isinstance(inputs, PackedSequence) else inputs
    if not _is_cuda(data.device):
        return False
    if not torch.backends.cudnn.enabled:
        return False
    return data.requires_grad or any(p.requires_grad for p in rnn.parameters())


def run_recurrent(
    rnn: nn.Module, inputs: torch.Tensor | PackedSequence, hx: Any = None
) -> tuple[Any, Any]:
    """``rnn(inputs, hx)`` (an ``nn.GRU``/``nn.LSTM``/``nn.RNN``), with cuDNN off when it would
    refuse the backward pass (see the module docstring); the result is the module's own."""
    guard = (
        torch.backends.cudnn.flags(enabled=False)
        if cudnn_blocks_backward(rnn, inputs)
        else contextlib.nullcontext()
    )
    with guard:
        return rnn(inputs, hx)
