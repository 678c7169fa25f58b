"""Randomized smoothing at inference (``<backbone>@smooth-s<s>-n<N>``): the mean softmax over N
noisy copies of each clip.

``SmoothedClassifier(model, snr_db=30, samples=8)`` wraps any end-to-end classifier
``model(waveforms, lengths) -> logits``. Each call draws, for every clip ``b`` and copy ``n``,
white Gaussian noise at exactly the SNR ``s`` over the clip's real samples,

.. math::

    \\sigma_b = \\mathrm{RMS}(x_b) \\cdot 10^{-s/20}, \\qquad
    p(c \\mid x_b) = \\frac{1}{N} \\sum_{n=1}^{N} \\mathrm{softmax}(f(x_b + \\sigma_b \\varepsilon_{b,n}))_c,

and returns ``log p`` as its logits (same argmax, and a cross-entropy an attack can
differentiate). A call draws fresh noise from the wrapper's own generator (seeded at
construction): what the adaptive EOT attack (:func:`trustser.attacks.functional.eot`) averages
its gradients over. Its **prediction** of a clip is :meth:`SmoothedClassifier.seeded`: the same
mean over N copies, with the clip's N draws fixed by a per-clip seed, so a clip is classified the
same way on every call and in any batch — in the clean evaluation, at every attack iterate and
in the attack's verdict alike (:class:`trustser.deployed.batches.Randomized`).

As a variant (:data:`KIND`) nothing is trained: the base's emotion heads classify behind the
smoothing, so its clean predictions come from running the deployed model over every fold's test
clips (:func:`trustser.deployed.evaluate_end_to_end`); it is attacked adaptively; it costs N
forward passes per clip; and it exposes its base's representation (noise at inference leaves
the cached hidden states an adversary trains on unchanged), so it inherits the base's privacy
runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trustser._validation import check_positive
from trustser.batching import length_mask
from trustser.deployed import evaluate_end_to_end
from trustser.variants.kind import FitRequest, Variant, VariantError, VariantFit, VariantKind

__all__ = [
    "DEFAULT_NOISE_SNR",
    "DEFAULT_SAMPLES",
    "KIND",
    "SmoothedClassifier",
    "SmoothingKind",
    "noise_sigma",
]

DEFAULT_NOISE_SNR = 30.0
DEFAULT_SAMPLES = 8


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
        """``log p`` over N copies with fresh noise from the wrapper's generator."""
        shape = tuple(waveforms.shape)
        return self._smoothed(
            waveforms, lengths, lambda: torch.randn(shape, generator=self.generator)
        )

    def seeded(self, clip_seeds: Sequence[int]) -> Callable[[torch.Tensor, torch.Tensor], Tensor]:
        """This classifier with clip ``b``'s N draws fixed by ``clip_seeds[b]``: its prediction.

        Copy ``n`` of clip ``b`` is the ``n``-th draw over the clip's real samples of a CPU
        generator seeded by ``clip_seeds[b]``, so the output depends on the clip and its seed
        only (not on the call, the batch, its padding or the device). Differentiable like
        :meth:`forward`.
        """
        seeds = [int(s) for s in clip_seeds]

        def predict(waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            if len(seeds) != waveforms.shape[0]:
                raise ValueError(f"{waveforms.shape[0]} clips but {len(seeds)} clip seeds")
            generators = [torch.Generator().manual_seed(s) for s in seeds]
            real = [int(n) for n in lengths]

            def draw() -> torch.Tensor:
                noise = torch.zeros(tuple(waveforms.shape))
                for row, (generator, n) in enumerate(zip(generators, real, strict=True)):
                    noise[row, :n] = torch.randn(n, generator=generator)
                return noise

            return self._smoothed(waveforms, lengths, draw)

        return predict

    def _smoothed(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, draw: Callable[[], Tensor]
    ) -> torch.Tensor:
        """``log`` of the mean softmax over N copies ``x + σ · draw()`` (noise on real samples)."""
        sigma = noise_sigma(waveforms, lengths, self.snr_db)[:, None]
        mask = length_mask(lengths.to(waveforms.device), waveforms.shape[1]).to(waveforms.dtype)
        total = None
        for _ in range(self.samples):
            noise = draw().to(waveforms.device, waveforms.dtype)
            noisy = waveforms + sigma * noise * mask
            proba = torch.softmax(self.model(noisy, lengths).float(), dim=1)
            total = proba if total is None else total + proba
        return torch.log((total / self.samples).clamp_min(1e-12))


class SmoothingKind(VariantKind):
    """``smooth-s<s>-n<N>``: the base's emotion heads behind :class:`SmoothedClassifier`."""

    word = "smooth"
    label = "randomized smoothing"
    summary = "randomized smoothing over N noisy copies at SNR s"
    form = "smooth-s<SNR dB>-n<N copies> (e.g. smooth-s30-n8)"
    _TAG = re.compile(r"^smooth-s(?P<snr>[0-9]+(?:\.[0-9]+)?)-n(?P<n>[1-9][0-9]*)$")

    def parse(self, tag: str) -> dict[str, Any] | None:
        match = self._TAG.match(tag)
        return {"snr_db": float(match["snr"]), "samples": int(match["n"])} if match else None

    def tag(self, *, snr_db: float, samples: int) -> str:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise VariantError(f"smoothing needs samples >= 1 noisy copies, got {samples!r}.")
        if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not snr_db >= 0:
            raise VariantError(f"the smoothing noise SNR must be a number >= 0 dB, got {snr_db!r}.")
        return f"smooth-s{float(snr_db):g}-n{samples}"

    def describe(self, params: Mapping[str, Any]) -> str:
        return f"randomized smoothing, {params['samples']} copies at {params['snr_db']:g} dB"

    def description(self, variant: Variant, request: FitRequest) -> dict[str, Any]:
        return {
            "name": variant.name,
            "base_backbone": variant.base,
            "kind": "smoothing",
            "noise_snr_db": variant.params["snr_db"],
            "samples": variant.params["samples"],
            "trained": "nothing: the base's emotion heads behind randomized smoothing",
            "seed": request.seed,
        }

    def randomized(self, params: Mapping[str, Any]) -> bool:
        return True

    def exposes_base_representation(self, params: Mapping[str, Any]) -> bool:
        return True

    def uses_base_heads(self, params: Mapping[str, Any]) -> bool:
        return True

    def inference_passes(self, params: Mapping[str, Any]) -> int:
        return int(params["samples"])

    def end_to_end(self, params: Mapping[str, Any]) -> str | None:
        return (
            "randomized smoothing adds noise to the waveform before the backbone, and the cache "
            f"holds no hidden states of noisy copies: the backbone runs on {params['samples']} "
            "noisy copies of every clip"
        )

    def defence(self, params: Mapping[str, Any], base: str) -> dict[str, Any]:
        return {
            "kind": "randomized smoothing",
            "noise_snr_db": params["snr_db"],
            "samples": params["samples"],
            "heads_of": base,
        }

    def planned(self, base: str, settings: Mapping[str, Any]) -> list[Variant]:
        samples = int(settings.get("smoothing_samples", DEFAULT_SAMPLES))
        return [
            self.variant(base, snr_db=float(snr), samples=samples)
            for snr in settings.get("smoothing_snr", ())
        ]

    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        """Nothing to train: classify every fold's test clips end to end behind the smoothing."""
        metrics = evaluate_end_to_end(
            request.store,
            variant.name,
            variant,
            description=self.description(variant, request),
            runs=request.runs,
            folds=request.folds,
            device=request.device,
            batch_size=request.batch_size,
            seed=request.seed,
        )
        return VariantFit(variant.name, metrics=metrics)

    def wrap(self, variant: Variant, model: nn.Module, *, fold: str, seed: int) -> nn.Module:
        return SmoothedClassifier(
            model, snr_db=variant.params["snr_db"], samples=variant.params["samples"], seed=seed
        )


KIND = SmoothingKind()
