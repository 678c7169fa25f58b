"""Batched attacks: many waveforms attacked in padded, length-sorted batches.

The batches are the deployed model's own (:mod:`trustser.deployed.batches`: longest first,
identical lengths only for backbones that cannot mask padding), so an attacked clip is
classified exactly as a clean one. :func:`attack_clips` takes 1-D waveforms in the caller's order
and gives results back in that order; ``advance(n)`` is told after every batch how many clips it
finished, for progress reporting.

A randomized model (:class:`~trustser.deployed.batches.Randomized`, e.g. a smoothed classifier)
is judged by one verdict per clip, its prediction with the clip's noise draws fixed by the clip's
seed: the attack judges every iterate by it (:func:`~.functional.pgd`), and a clip's adversarial
prediction is that same verdict on the returned waveform — so a clip counts as attacked only if
the verdict that stopped the attack says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

import trustser.attacks.functional as AF
from trustser.attacks.methods import Attack
from trustser.deployed.batches import Advance, iter_batches, no_advance, per_clip_seeds, verdict
from trustser.end_to_end import EndToEndClassifier

__all__ = ["BatchedAttack", "attack_clips"]


@dataclass(frozen=True)
class BatchedAttack:
    """Per-clip results of :func:`attack_clips`, in the caller's clip order."""

    adv_pred: np.ndarray  # [N] int64 class indices
    snr_db: np.ndarray  # [N] float64 measured SNR
    adversarial: dict[int, torch.Tensor]  # kept clips (CPU, real samples only)


def attack_clips(
    model: EndToEndClassifier | AF.Model,
    waveforms: Sequence[torch.Tensor],
    *,
    attack: Attack,
    labels: Sequence[int],
    batch_size: int,
    identical_only: bool = False,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    keep: frozenset[int] = frozenset(),
    advance: Advance = no_advance,
    clip_seeds: Sequence[int] | None = None,
) -> BatchedAttack:
    """Attack every clip (1-D ``waveforms`` with integer ``labels``) in padded batches.

    Returns each clip's prediction on its adversarial version and the measured SNR; the
    adversarial waveforms of clips in ``keep`` are returned too (to be written as audio). A
    randomized model judges clip ``i`` with its draws fixed by ``clip_seeds[i]`` (default: the
    clip's position ``i``), at every iterate and in the returned prediction.
    """
    if len(labels) != len(waveforms):
        raise ValueError(f"{len(waveforms)} waveforms but {len(labels)} labels")
    seeds = per_clip_seeds(clip_seeds, len(waveforms))
    adv_pred = np.zeros(len(waveforms), dtype=np.int64)
    snr = np.zeros(len(waveforms), dtype=np.float64)
    kept: dict[int, torch.Tensor] = {}
    label_tensor = torch.as_tensor(list(labels), dtype=torch.long)
    for batch in iter_batches(waveforms, batch_size=batch_size, identical_only=identical_only):
        batch = batch.to(device)
        y = label_tensor[list(batch.indices)].to(device)
        judge = verdict(model, [seeds[i] for i in batch.indices])
        adversarial = attack(
            model, batch.waveforms, labels=y, mask=batch.mask, generator=generator, verdict=judge
        )
        with torch.no_grad():
            logits = (judge or model)(adversarial, batch.lengths)
        predicted = logits.argmax(dim=1).cpu().numpy()
        measured = AF.measured_snr(batch.waveforms, adversarial, batch.mask).cpu().numpy()
        for row, index in enumerate(batch.indices):
            adv_pred[index] = predicted[row]
            snr[index] = measured[row]
            if index in keep:
                kept[index] = adversarial[row, : int(batch.lengths[row])].detach().cpu()
        advance(len(batch))
    return BatchedAttack(adv_pred, snr, kept)
