"""Running a deployed end-to-end model over many waveforms, in padded, length-sorted batches.

Which clips share a batch is :func:`trustser.batching.length_batches`, longest first: sorting by
length keeps padding small. Backbones that cannot mask padding (``masks_padding`` False, e.g.
wav2vec2 with GroupNorm in its first convolution) only ever see batches of identical length, so
their outputs equal those of each clip alone. :func:`predict_clips` takes 1-D waveforms in the
caller's order and gives logits back in that order; ``advance(n)`` is told after every batch
how many clips it finished, for progress reporting. The attacks cut their batches here too.

A randomized model (:class:`Randomized`, e.g. randomized smoothing) draws fresh noise at every
call; its prediction of a clip is its output with the clip's draws fixed by a per-clip seed
(:func:`verdict`), so a clip is classified the same way in any batch and on every call: the clean
evaluation, every attack iterate and the adversarial prediction agree on what the model says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from trustser.batching import length_batches, length_mask

__all__ = [
    "Advance",
    "PaddedBatch",
    "Randomized",
    "iter_batches",
    "no_advance",
    "pad_batch",
    "per_clip_seeds",
    "predict_clips",
    "verdict",
]

Advance = Callable[[int], None]
Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (waveforms, lengths) -> logits


@runtime_checkable
class Randomized(Protocol):
    """A model whose every call draws fresh noise. ``seeded(clip_seeds)`` is the same model with
    clip ``b``'s draws fixed by ``clip_seeds[b]``: deterministic, and independent of the batch."""

    def seeded(self, clip_seeds: Sequence[int]) -> Predict: ...


def verdict(model: Callable[..., torch.Tensor], clip_seeds: Sequence[int]) -> Predict | None:
    """What classifies a batch whose clip ``b`` has seed ``clip_seeds[b]``: a randomized model's
    seeded prediction, or None for a deterministic model (which is its own verdict)."""
    return model.seeded(clip_seeds) if isinstance(model, Randomized) else None


def no_advance(_: int) -> None:
    """The ``advance`` of a caller that shows no progress."""
    return None


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
    return PaddedBatch(tuple(int(i) for i in indices), padded, lengths, length_mask(lengths, width))


def iter_batches(
    waveforms: Sequence[torch.Tensor], *, batch_size: int, identical_only: bool = False
) -> Iterator[PaddedBatch]:
    """Padded batches over ``waveforms``, longest first (ties in input order), ``batch_size`` at most.

    With ``identical_only`` a batch never mixes lengths.
    """
    lengths = [int(w.numel()) for w in waveforms]
    for bucket in length_batches(
        lengths, batch_size=batch_size, descending=True, identical_only=identical_only
    ):
        yield pad_batch(waveforms, bucket)


def predict_clips(
    model: nn.Module,
    waveforms: Sequence[torch.Tensor],
    *,
    batch_size: int,
    identical_only: bool = False,
    device: torch.device | str = "cpu",
    advance: Advance = no_advance,
    clip_seeds: Sequence[int] | None = None,
) -> np.ndarray:
    """Logits ``[N, C]`` (float32, CPU) of 1-D ``waveforms`` in padded, length-sorted batches.

    A :class:`Randomized` model classifies clip ``i`` with its draws fixed by ``clip_seeds[i]``
    (default: the clip's position ``i``), as its attack judges it; other models ignore them.
    """
    seeds = per_clip_seeds(clip_seeds, len(waveforms))
    out: list[torch.Tensor | None] = [None] * len(waveforms)
    with torch.no_grad():
        for batch in iter_batches(waveforms, batch_size=batch_size, identical_only=identical_only):
            batch = batch.to(device)
            judge = verdict(model, [seeds[i] for i in batch.indices]) or model
            logits = judge(batch.waveforms, batch.lengths).float().cpu()
            for row, index in enumerate(batch.indices):
                out[index] = logits[row]
            advance(len(batch))
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.stack(out).numpy()  # type: ignore[arg-type]


def per_clip_seeds(clip_seeds: Sequence[int] | None, count: int) -> list[int]:
    """One seed per clip: ``clip_seeds``, checked, or the clips' positions."""
    if clip_seeds is None:
        return list(range(count))
    if len(clip_seeds) != count:
        raise ValueError(f"{count} waveforms but {len(clip_seeds)} clip seeds")
    return [int(s) for s in clip_seeds]
