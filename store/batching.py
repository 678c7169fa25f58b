"""Length-bucketed minibatches: padded ``[B, L, T, D]`` tensors with a frame mask.

Clips of similar length share a batch so little compute goes to padding. With shuffling, the
batches (not the clips inside them) are permuted, and the pools they are cut from are re-drawn
from the seed, so every epoch sees different batches — deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["POOL_BATCHES", "Batch", "bucket_batches", "pad_batch"]

POOL_BATCHES = 32  # shuffled ids are length-sorted within pools of this many batches


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


def bucket_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """Index arrays of length-bucketed batches over ``lengths`` (stable, deterministic).

    Without ``shuffle``: indices sorted by length (ties keep their order) and cut into batches.
    With ``shuffle``: indices permuted by ``seed``, sorted by length within pools of
    ``POOL_BATCHES`` batches, cut, and the batch order permuted.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    lengths = np.asarray(lengths, dtype=np.int64)
    count = lengths.size
    if count == 0:
        return []
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        batches = [order[i : i + batch_size] for i in range(0, count, batch_size)]
    else:
        rng = np.random.default_rng(seed)
        permuted = rng.permutation(count)
        pool = batch_size * POOL_BATCHES
        batches = []
        for start in range(0, count, pool):
            chunk = permuted[start : start + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + batch_size] for i in range(0, chunk.size, batch_size))
        batches = [batches[i] for i in rng.permutation(len(batches))]
    if drop_last:
        batches = [b for b in batches if b.size == batch_size]
    return batches


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
    mask = np.arange(t_max)[None, :] < lengths[:, None]
    return Batch(
        ids=list(ids),
        hidden=torch.from_numpy(hidden),
        mask=torch.from_numpy(mask),
        lengths=torch.from_numpy(lengths),
    )
