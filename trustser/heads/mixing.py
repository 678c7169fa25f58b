"""The layer mix read straight from stored frames, one fused pass per direction (compiled).

A head's first step averages the ``L`` standardised layers of every frame with its softmax
weights ``w``: :math:`m_{f,d} = \\sum_l w_l (x_{f,l,d} - \\mu_{l,d}) / \\sigma_{l,d}`. The float32
path widens each batch to standardised float32 ``[L, F, D]`` first, then reads it again forward
and backward. Here the stored rows (``[N, L, D]`` in the store's dtype: float16, float32, or
int8 codes with a scale per frame and layer) are read where they lie, through the batch's frame
``index``:

- forward, one pass: widen, standardise and mix each frame in registers, writing ``m [F, D]``;
- backward, one pass: the gradient of the weights,
  :math:`\\partial\\mathcal{L}/\\partial w_l = \\sum_{f,d} g_{f,d} (x_{f,l,d} - \\mu_{l,d}) /
  \\sigma_{l,d}`, as per-frame partial sums ``[F, L]`` (no reduction across frames inside the
  kernel, so its result does not depend on how threads split the frames) summed by torch.

Both kernels are ``torch.compile``-d once per process with dynamic shapes (clip lengths and batch
sizes never recompile). :func:`compiled_mixer` compiles and checks them on the fit's own rows
before training; where compiling fails (no C++ compiler, an unsupported op) it raises
:class:`CompileFailed`, and the estimator warns in one line and trains on its eager bfloat16
path instead — never a crash, and never a fit that changes path half-way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["CompileFailed", "FrameMixer", "compiled_mixer"]


class CompileFailed(RuntimeError):
    """The layer mix could not be compiled (or disagreed with plain torch) here; the message
    is one line saying why."""


def _widened(
    rows: torch.Tensor,
    index: torch.Tensor | None,
    scales: torch.Tensor | None,
    mean: torch.Tensor,
    inverse: torch.Tensor,
) -> torch.Tensor:
    """Standardised float32 values ``[F, L, D]`` of the frames ``index`` of ``rows``."""
    x = rows if index is None else rows[index]
    x = x.float()
    if scales is not None:
        x = x * (scales if index is None else scales[index]).float()[:, :, None]
    return (x - mean) * inverse


def _mix(weights: torch.Tensor, dtype: torch.dtype, *stored: Any) -> torch.Tensor:
    """The mixed frames ``[F, D]`` in ``dtype``; ``stored`` is ``(rows, index, scales, mean,
    inverse)``."""
    return (_widened(*stored) * weights[:, None]).sum(1).to(dtype)


def _mix_partials(grad: torch.Tensor, *stored: Any) -> torch.Tensor:
    """Per frame and layer, ``Σ_d grad[f, d] · x̂[f, l, d]``: ``[F, L]``."""
    return (_widened(*stored) * grad.float()[:, None, :]).sum(-1)


@functools.cache
def _compiled_kernels() -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    compile_ = functools.partial(torch.compile, dynamic=True, fullgraph=True)
    return compile_(_mix), compile_(_mix_partials)


class _MixFrames(torch.autograd.Function):
    """Forward and backward of the mix as the two compiled kernels; gradient for the weights
    only (the stored frames are data)."""

    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, mixer: FrameMixer, *inputs: Any) -> torch.Tensor:
        ctx.mixer, ctx.inputs = mixer, inputs
        return mixer.run(mixer.forward_kernel, weights.detach(), mixer.dtype, *inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        partials = ctx.mixer.run(ctx.mixer.backward_kernel, grad.contiguous(), *ctx.inputs)
        return (partials.sum(0), None) + (None,) * len(ctx.inputs)


class FrameMixer:
    """The layer mix as two kernels: compiled (:func:`compiled_mixer` makes one known to work)
    or, from :meth:`eager`, the same functions uncompiled (slow: a reference for tests). The
    mixed frames come out in ``dtype`` — bfloat16 for the bfloat16 path, so the frame network
    reads them without a cast, and their gradient comes back without one."""

    def __init__(
        self,
        forward_kernel: Callable[..., torch.Tensor],
        backward_kernel: Callable[..., torch.Tensor],
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        self.forward_kernel, self.backward_kernel = forward_kernel, backward_kernel
        self.dtype = dtype

    @classmethod
    def eager(cls, dtype: torch.dtype = torch.float32) -> FrameMixer:
        """The kernels uncompiled: what the compiled mixer computes, in plain torch."""
        return cls(_mix, _mix_partials, dtype)

    @staticmethod
    def run(kernel: Callable[..., torch.Tensor], first: torch.Tensor, *inputs: Any) -> torch.Tensor:
        """``kernel`` as the autograd function calls it — no autograd, no autocast — so the
        check before training compiles the very graph training uses."""
        with torch.no_grad(), torch.autocast(first.device.type, enabled=False):
            return kernel(first, *inputs)

    def __call__(self, weights: torch.Tensor, *stored: torch.Tensor | None) -> torch.Tensor:
        """``[F, D]`` in :attr:`dtype`: ``stored`` is ``(rows, index, scales, mean, inverse)`` as
        :func:`_widened` reads it — frames ``index`` of ``rows`` (``None``: every row, in order)
        widened (times ``scales`` for int8 codes), standardised — mixed with ``weights``."""
        return _MixFrames.apply(weights, self, *stored)


def _first_rows(values: torch.Tensor | None, count: int) -> torch.Tensor | None:
    """The first ``count`` rows, a view where ``values`` is one and a tensor of its own where
    it is not: the compiled graph guards on whether an input views another."""
    if values is None:
        return None
    return values[:count] if values._base is not None else values[:count].clone()


def compiled_mixer(
    rows: torch.Tensor,
    scales: torch.Tensor | None,
    device: torch.device,
    *,
    indexed: bool,
    dtype: torch.dtype = torch.bfloat16,
) -> FrameMixer:
    """The compiled mixer for rows of this dtype and layout on ``device``, compiled and checked
    against plain torch on two of ``rows``' frames; raises :class:`CompileFailed` (one line)
    where compiling fails. ``indexed``: frames will be read through an index (on CPU; elsewhere
    the batch's rows are gathered and moved first)."""
    forward_kernel, backward_kernel = _compiled_kernels()
    num_layers, dim = int(rows.shape[1]), int(rows.shape[2])
    # probe sizes unlike L and D, so that no size is specialised on an accidental equality
    frames, stored = [n for n in (5, 7, 11, 13, 17) if n not in (num_layers, dim)][:2]
    stored = min(stored, int(rows.shape[0]))
    index = torch.arange(frames - 1, -1, -1) % stored
    if indexed:  # the kernel reads the rows where they lie, through the index
        probe_rows, probe_scales = _first_rows(rows, stored), _first_rows(scales, stored)
    else:  # the batch's rows gathered in order and moved (trustser.heads.estimator)
        probe_rows = rows.index_select(0, index).to(device)
        probe_scales = None if scales is None else scales.index_select(0, index).to(device)
    weights = torch.softmax(torch.arange(num_layers, dtype=torch.float32, device=device), 0)
    mean = torch.full((num_layers, dim), 0.5, device=device)
    inverse = torch.full((num_layers, dim), 2.0, device=device)
    inputs = (probe_rows, index if indexed else None, probe_scales, mean, inverse)
    grad = torch.ones(frames, dim, dtype=dtype, device=device)
    try:
        mixed = FrameMixer.run(forward_kernel, weights, dtype, *inputs)
        partials = FrameMixer.run(backward_kernel, grad, *inputs)
    except Exception as error:  # compiling fails in many ways (no compiler, no triton, ...)
        first_line = (str(error).strip().splitlines() or [""])[0][:160]
        raise CompileFailed(f"{type(error).__name__}: {first_line}") from error
    if not torch.allclose(
        mixed.float(), _mix(weights, dtype, *inputs).float(), rtol=1e-2, atol=1e-2
    ):
        raise CompileFailed("the compiled layer mix disagrees with plain torch")
    if not torch.allclose(partials, _mix_partials(grad, *inputs), rtol=1e-4, atol=1e-3):
        raise CompileFailed("the compiled gradient of the layer mix disagrees with plain torch")
    return FrameMixer(forward_kernel, backward_kernel, dtype)
