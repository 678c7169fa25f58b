"""Length-sorted buckets of clips, zero-padded with masks: batched attacks without a per-clip loop.

Sorting by length before chunking keeps padding small. Backbones that cannot mask padding
(``masks_padding`` False, e.g. wav2vec2 with GroupNorm in its first convolution) only ever see
batches of identical length, so their features equal those of each clip alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

__all__ = ["PaddedBatch", "iter_batches", "length_buckets", "pad_batch"]


@dataclass(frozen=True)
class PaddedBatch:
    """Clips ``indices`` (positions in the caller's list) padded to ``[B, S_max]``."""

    indices: tuple[int, ...]
    waveforms: torch.Tensor  # [B, S_max], zeros past each length
    lengths: torch.Tensor  # [B] int64
    mask: torch.Tensor  # [B, S_max] bool, True on real samples

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device | str) -> PaddedBatch:
        return PaddedBatch(
            self.indices, self.waveforms.to(device), self.lengths.to(device), self.mask.to(device)
        )


def length_buckets(
    lengths: Sequence[int], *, batch_size: int, identical_only: bool = False
) -> list[list[int]]:
    """Group positions ``0..N-1`` into batches of at most ``batch_size``, longest clips first.

    With ``identical_only`` a batch never mixes lengths. Ties keep the input order, so the
    grouping is deterministic.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    if not identical_only:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    buckets: list[list[int]] = []
    for position in order:
        last = buckets[-1] if buckets else None
        if last and len(last) < batch_size and int(lengths[last[0]]) == int(lengths[position]):
            last.append(position)
        else:
            buckets.append([position])
    return buckets


def pad_batch(waveforms: Sequence[torch.Tensor], indices: Sequence[int]) -> PaddedBatch:
    """Stack ``waveforms[i]`` for ``i`` in ``indices`` (1-D tensors) with zero padding."""
    if not indices:
        raise ValueError("cannot build an empty batch")
    clips = [waveforms[i] for i in indices]
    for i, clip in zip(indices, clips, strict=True):
        if clip.dim() != 1 or clip.numel() == 0:
            raise ValueError(f"clip {i} must be a non-empty 1-D waveform, got {tuple(clip.shape)}")
    lengths = torch.tensor([clip.numel() for clip in clips], dtype=torch.long)
    width = int(lengths.max())
    padded = torch.zeros(len(clips), width, dtype=clips[0].dtype)
    for row, clip in enumerate(clips):
        padded[row, : clip.numel()] = clip
    mask = torch.arange(width)[None, :] < lengths[:, None]
    return PaddedBatch(tuple(int(i) for i in indices), padded, lengths, mask)


def iter_batches(
    waveforms: Sequence[torch.Tensor], *, batch_size: int, identical_only: bool = False
) -> Iterator[PaddedBatch]:
    """Padded batches over ``waveforms`` in :func:`length_buckets` order."""
    lengths = [int(w.numel()) for w in waveforms]
    for bucket in length_buckets(lengths, batch_size=batch_size, identical_only=identical_only):
        yield pad_batch(waveforms, bucket)
