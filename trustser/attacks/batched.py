"""Batched execution: classify or attack many waveforms in padded, length-sorted batches.

Which clips share a batch is :func:`trustser.batching.length_batches`, longest first: sorting by
length keeps padding small. Backbones that cannot mask padding (``masks_padding`` False, e.g.
wav2vec2 with GroupNorm in its first convolution) only ever see batches of identical length, so
their features equal those of each clip alone. :func:`predict_clips` and :func:`attack_clips`
take 1-D waveforms in the caller's order and give results back in that order; ``advance(n)`` is
told after every batch how many clips it finished, for progress reporting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

import trustser.attacks.functional as AF
from trustser.batching import length_batches, length_mask
from trustser.end_to_end import EndToEndClassifier

__all__ = [
    "Advance",
    "BatchedAttack",
    "PaddedBatch",
    "attack_clips",
    "iter_batches",
    "pad_batch",
    "predict_clips",
]


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


Advance = Callable[[int], None]


@dataclass(frozen=True)
class BatchedAttack:
    """Per-clip results of :func:`attack_clips`, in the caller's clip order."""

    adv_pred: np.ndarray  # [N] int64 class indices
    snr_db: np.ndarray  # [N] float64 measured SNR
    adversarial: dict[int, torch.Tensor]  # kept clips (CPU, real samples only)


def _no_advance(_: int) -> None:
    return None


def predict_clips(
    model: EndToEndClassifier | AF.Model,
    waveforms: Sequence[torch.Tensor],
    *,
    batch_size: int,
    identical_only: bool = False,
    device: torch.device | str = "cpu",
    advance: Advance = _no_advance,
) -> np.ndarray:
    """Logits ``[N, C]`` (float32, CPU) of 1-D ``waveforms`` in padded, length-sorted batches."""
    out: list[torch.Tensor | None] = [None] * len(waveforms)
    with torch.no_grad():
        for batch in iter_batches(waveforms, batch_size=batch_size, identical_only=identical_only):
            batch = batch.to(device)
            logits = model(batch.waveforms, batch.lengths).float().cpu()
            for row, index in enumerate(batch.indices):
                out[index] = logits[row]
            advance(len(batch))
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.stack(out).numpy()  # type: ignore[arg-type]


def attack_clips(
    model: EndToEndClassifier | AF.Model,
    waveforms: Sequence[torch.Tensor],
    *,
    attack: Callable[..., torch.Tensor],
    labels: Sequence[int],
    batch_size: int,
    identical_only: bool = False,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    keep: frozenset[int] = frozenset(),
    advance: Advance = _no_advance,
) -> BatchedAttack:
    """Attack every clip (1-D ``waveforms`` with integer ``labels``) in padded batches.

    Returns each clip's prediction on its adversarial version and the measured SNR; the
    adversarial waveforms of clips in ``keep`` are returned too (to be written as audio).
    """
    if len(labels) != len(waveforms):
        raise ValueError(f"{len(waveforms)} waveforms but {len(labels)} labels")
    adv_pred = np.zeros(len(waveforms), dtype=np.int64)
    snr = np.zeros(len(waveforms), dtype=np.float64)
    kept: dict[int, torch.Tensor] = {}
    label_tensor = torch.as_tensor(list(labels), dtype=torch.long)
    for batch in iter_batches(waveforms, batch_size=batch_size, identical_only=identical_only):
        batch = batch.to(device)
        y = label_tensor[list(batch.indices)].to(device)
        adversarial = attack(model, batch.waveforms, labels=y, mask=batch.mask, generator=generator)
        with torch.no_grad():
            logits = model(adversarial, batch.lengths)
        predicted = logits.argmax(dim=1).cpu().numpy()
        measured = AF.measured_snr(batch.waveforms, adversarial, batch.mask).cpu().numpy()
        for row, index in enumerate(batch.indices):
            adv_pred[index] = predicted[row]
            snr[index] = measured[row]
            if index in keep:
                kept[index] = adversarial[row, : int(batch.lengths[row])].detach().cpu()
        advance(len(batch))
    return BatchedAttack(adv_pred, snr, kept)
