"""Minibatches of stored features: padded ``[B, L, T, D]`` tensors with a frame mask.

Which clips share a batch is :func:`trustser.batching.length_batches` (length-sorted, shuffled
in pools by the seed); this module pads the chosen clips' rows into one :class:`Batch`, the type
every consumer of features (heads, probes) reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trustser.batching import length_mask

__all__ = ["Batch", "pad_batch"]


@dataclass
class Batch:
    """One minibatch: ``hidden [B, L, T, D]`` float32, ``mask [B, T]`` bool, ``lengths [B]`` int64."""

    ids: list[str]
    hidden: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: str | torch.device, *, non_blocking: bool = False) -> Batch:
        """The same batch on ``device``."""
        return Batch(
            ids=self.ids,
            hidden=self.hidden.to(device, non_blocking=non_blocking),
            mask=self.mask.to(device, non_blocking=non_blocking),
            lengths=self.lengths.to(device, non_blocking=non_blocking),
        )


def pad_batch(ids: Sequence[str], clips: Sequence[np.ndarray]) -> Batch:
    """Stack clips stored as ``[T_i, L, D]`` rows into a zero-padded ``[B, L, T_max, D]`` batch."""
    if not clips:
        raise ValueError("pad_batch needs at least one clip")
    lengths = np.array([c.shape[0] for c in clips], dtype=np.int64)
    _, num_layers, dim = clips[0].shape
    t_max = int(lengths.max())
    hidden = np.zeros((len(clips), num_layers, t_max, dim), dtype=np.float32)
    for b, rows in enumerate(clips):
        hidden[b, :, : rows.shape[0]] = rows.transpose(1, 0, 2)
    lengths = torch.from_numpy(lengths)
    return Batch(
        ids=list(ids),
        hidden=torch.from_numpy(hidden),
        mask=length_mask(lengths, t_max),
        lengths=lengths,
    )
