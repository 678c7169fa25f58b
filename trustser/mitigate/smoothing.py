"""Randomized smoothing at inference: the mean softmax over N noisy copies of each clip.

``SmoothedClassifier(model, snr_db=30, samples=8)`` wraps any end-to-end classifier
``model(waveforms, lengths) -> logits``. Each call draws, for every clip ``b`` and copy ``n``,
white Gaussian noise at exactly the SNR ``s`` over the clip's real samples,

.. math::

    \\sigma_b = \\mathrm{RMS}(x_b) \\cdot 10^{-s/20}, \\qquad
    p(c \\mid x_b) = \\frac{1}{N} \\sum_{n=1}^{N} \\mathrm{softmax}(f(x_b + \\sigma_b \\varepsilon_{b,n}))_c,

and returns ``log p`` as its logits (same argmax, and a cross-entropy an attack can
differentiate). The noise comes from the wrapper's own generator (seeded at construction), so a
run is deterministic given the seed, while every call sees fresh draws — which is what the
adaptive EOT attack (:func:`trustser.attacks.functional.eot_pgd`) averages over.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trustser._validation import check_positive
from trustser.batching import length_mask

__all__ = ["SmoothedClassifier", "noise_sigma"]


def noise_sigma(waveforms: torch.Tensor, lengths: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Per clip ``[B]``: the noise standard deviation giving SNR ``snr_db`` over real samples."""
    mask = length_mask(lengths.to(waveforms.device), waveforms.shape[1]).to(waveforms.dtype)
    power = (waveforms.detach() ** 2 * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return torch.sqrt(power) * 10.0 ** (-float(snr_db) / 20.0)


class SmoothedClassifier(nn.Module):
    """``forward(waveforms [B, S], lengths [B]) -> log mean softmax [B, C]`` over ``samples``
    noisy copies at ``snr_db``; ``model`` is the undefended end-to-end classifier."""

    def __init__(self, model: nn.Module, *, snr_db: float, samples: int, seed: int = 0) -> None:
        super().__init__()
        if not math.isfinite(float(snr_db)) or float(snr_db) < 0:
            raise ValueError(
                f"smoothing noise SNR must be a finite number >= 0 dB, got {snr_db!r}."
            )
        if isinstance(samples, bool) or int(samples) != samples:
            raise ValueError(f"samples must be a whole number, got {samples!r}.")
        check_positive("samples", int(samples))
        self.model = model
        self.snr_db, self.samples = float(snr_db), int(samples)
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    @property
    def masks_padding(self) -> bool:
        return bool(getattr(self.model, "masks_padding", False))

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    @property
    def head(self) -> nn.Module:
        return self.model.head

    def train(self, mode: bool = True) -> SmoothedClassifier:
        return super().train(False)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, length = waveforms.shape
        sigma = noise_sigma(waveforms, lengths, self.snr_db)[:, None]
        mask = length_mask(lengths.to(waveforms.device), length).to(waveforms.dtype)
        total = None
        for _ in range(self.samples):
            draw = torch.randn((batch, length), generator=self.generator)
            noisy = waveforms + sigma * draw.to(waveforms.device, waveforms.dtype) * mask
            proba = torch.softmax(self.model(noisy, lengths).float(), dim=1)
            total = proba if total is None else total + proba
        return torch.log((total / self.samples).clamp_min(1e-12))
