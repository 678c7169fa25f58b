"""Symmetric 8-bit quantisation with one float16 scale per row (docs/store-format.md §6.5).

A *row* is one frame of one layer: ``D`` values. Each row gets its own scale
``s = max|x| / 127`` (rounded up to the next float16 if rounding to nearest fell below it), and
its values are stored as ``q = round(x / s)`` in ``[-127, 127]``; reading gives ``q · s``. Because
the scale never falls below ``max|x| / 127``, no value is clipped and every value comes back
within ``s / 2`` of what was written. A row of zeros has scale 0 and reads back as zeros.

Per-row scales are why outlier dimensions do no harm here: a transformer's few huge dimensions
set the scale of their own rows only, never of the other frames or layers, and within a row the
error bound ``s / 2 = max|x| / 254`` is the same for every dimension. One function serves numpy
(the writer, the reader) and torch (extraction quantises on the device), so both give the same
bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "INT8_LEVELS",
    "MAX_ABS_INT8",
    "dequantize",
    "quantize",
    "quantize_torch",
]

INT8_LEVELS = 127  # symmetric: -127 … 127; -128 is never written
FLOAT16_MAX = 65504.0
MAX_ABS_INT8 = FLOAT16_MAX * INT8_LEVELS  # largest |x| whose scale fits in float16


def _round_up_scale(scale16: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Raise float16 scales that rounded below ``peak / 127`` to the next float16 (no clipping)."""
    low = scale16.astype(np.float32) * np.float32(INT8_LEVELS) < peak
    if np.any(low):
        bits = scale16.view(np.uint16)
        bits[low] += 1  # positive finite float16: the next bit pattern is the next larger value
    return scale16


def quantize(rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(codes int8 [..., D], scales float16 [...])`` of float rows ``[..., D]``.

    ``|x - codes · scales| <= scales / 2`` for every value; rows must be finite and
    ``max|x| <= MAX_ABS_INT8`` (checked by the writer, which names the clip).
    """
    x = np.asarray(rows, dtype=np.float32)
    peak = np.abs(x).max(axis=-1) if x.shape[-1] else np.zeros(x.shape[:-1], np.float32)
    scales = _round_up_scale((peak / np.float32(INT8_LEVELS)).astype(np.float16), peak)
    divisor = scales.astype(np.float32)
    divisor[divisor == 0] = 1.0  # zero rows: every value is 0, any divisor gives code 0
    codes = np.rint(x / divisor[..., None])
    np.clip(codes, -INT8_LEVELS, INT8_LEVELS, out=codes)
    return codes.astype(np.int8), scales


def quantize_torch(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`quantize` on a float tensor on any device (the same codes and scales)."""
    x = rows.float()
    peak = x.abs().amax(dim=-1) if x.shape[-1] else x.new_zeros(x.shape[:-1])
    scales = (peak / INT8_LEVELS).to(torch.float16)
    low = scales.float() * INT8_LEVELS < peak
    if bool(low.any()):
        bits = scales.view(torch.int16)
        scales = torch.where(low, bits + 1, bits).view(torch.float16)
    divisor = scales.float()
    divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    codes = torch.round(x / divisor[..., None]).clamp_(-INT8_LEVELS, INT8_LEVELS)
    return codes.to(torch.int8), scales


def dequantize(codes: np.ndarray, scales: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 ``codes · scales`` (``[..., D]`` from ``[..., D]`` and ``[...]``)."""
    result = np.multiply(
        np.asarray(codes, dtype=np.float32),
        np.asarray(scales, dtype=np.float32)[..., None],
        out=out,
    )
    return result
