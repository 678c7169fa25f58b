"""Configured attacks: an SNR (and PGD's settings) bound once, the math in ``functional``.

Each configured attack turns its target SNR into a per-clip radius with
:func:`~trustser.attacks.functional.snr_epsilon` and is one functional call, so the
waveform-level definitions live in exactly one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

import trustser.attacks.functional as AF
from trustser._validation import TrustSERError
from trustser.runs import ATTACK_METHODS

__all__ = [
    "EOT",
    "FGSM",
    "METHODS",
    "PGD",
    "Attack",
    "AttackError",
    "WhiteNoise",
    "check_snr",
    "make_attack",
]

METHODS: tuple[str, ...] = ATTACK_METHODS  # ("fgsm", "pgd", "noise")


class AttackError(TrustSERError, ValueError):
    """A bad attack request (method, SNR, missing heads or provenance); one clear sentence."""


def check_snr(snr_db: float) -> float:
    """Accept a finite SNR above 0 dB; a perturbation as loud as the speech is not an attack."""
    value = float(snr_db)
    if not math.isfinite(value) or value <= 0:
        raise AttackError(
            f"SNR must be a finite number of dB above 0 (got {snr_db!r}); "
            "the paper attacks at 45 dB, try --snr 45 35 25."
        )
    return value


@dataclass(frozen=True)
class Attack:
    """A configured attack, what the runner needs: a ``method`` name, a target SNR, a batched
    call ``attack(model, waveforms, labels=, mask=, generator=)`` and its ``settings()``.

    Every attack turns the checked SNR into each clip's radius ε. A subclass names its
    ``method`` and the functional call it is (``perturb``, given the model, the batch and ε;
    ``uses_model`` False for the noise control, which gets neither model nor labels;
    ``uses_generator`` False for FGSM, which draws nothing), adds keyword arguments that depend
    on ε in :meth:`_options` and the settings that ``summary.json`` records in :meth:`_details`.
    """

    snr_db: float = 45.0
    method: ClassVar[str]
    perturb: ClassVar[Callable[..., torch.Tensor]]
    uses_model: ClassVar[bool] = True
    uses_generator: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_snr(self.snr_db)

    def __call__(
        self,
        model: AF.Model,
        waveforms: torch.Tensor,
        *,
        labels: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        epsilon = AF.snr_epsilon(waveforms, mask, self.snr_db)
        drawn = {"generator": generator} if self.uses_generator else {}
        if not self.uses_model:
            return self.perturb(waveforms, mask=mask, epsilon=epsilon, **drawn)
        return self.perturb(
            model,
            waveforms,
            labels=labels,
            mask=mask,
            epsilon=epsilon,
            **drawn,
            **self._options(epsilon),
        )

    def _options(self, epsilon: torch.Tensor) -> dict[str, Any]:
        return {}

    def _details(self) -> dict[str, object]:
        raise NotImplementedError

    def settings(self) -> dict[str, object]:
        """What ``summary.json`` records about this attack."""
        return {"method": self.method, "snr_db": self.snr_db, **self._details()}


@dataclass(frozen=True)
class FGSM(Attack):
    """One signed-gradient step of L∞ radius ε = RMS(x)·10^(−snr_db/20) per clip (deterministic)."""

    method: ClassVar[str] = "fgsm"
    perturb: ClassVar[Callable[..., torch.Tensor]] = staticmethod(AF.fgsm)
    uses_generator: ClassVar[bool] = False

    def _details(self) -> dict[str, object]:
        return {"norm": "linf", "zero_gradient_samples": "fixed ±1 tie signs"}


@dataclass(frozen=True)
class PGD(Attack):
    """``steps`` projected signed-gradient steps inside the same L∞ ball as :class:`FGSM`,
    starting at FGSM's point and keeping each clip's strongest iterate (never weaker than FGSM).

    ``step_size`` is a fraction of each clip's ε (α = step_size·ε); ``None`` means 2.5/steps.
    """

    steps: int = 10
    step_size: float | None = None
    random_start: bool = False
    method: ClassVar[str] = "pgd"
    perturb: ClassVar[Callable[..., torch.Tensor]] = staticmethod(AF.pgd)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise AttackError(f"PGD needs a whole number of steps >= 1 (got {self.steps!r}).")
        if self.step_size is not None and not (
            math.isfinite(self.step_size) and self.step_size > 0
        ):
            raise AttackError(
                f"PGD step size is a positive fraction of ε (got {self.step_size!r}); "
                f"leave it out for the default 2.5/steps = {2.5 / self.steps:g}."
            )

    @property
    def relative_step(self) -> float:
        """α / ε actually used."""
        return 2.5 / self.steps if self.step_size is None else float(self.step_size)

    def _options(self, epsilon: torch.Tensor) -> dict[str, Any]:
        return {
            "steps": int(self.steps),
            "step_size": epsilon * self.relative_step,
            "random_start": self.random_start,
        }

    def _details(self) -> dict[str, object]:
        return {
            "norm": "linf",
            "steps": int(self.steps),
            "step_size": self.relative_step,
            "step_size_units": "fraction of epsilon",
            "random_start": self.random_start,
            "first_iterate": "the FGSM point",
            "keeps": "each clip's first misclassified iterate, else its highest-loss iterate",
        }


@dataclass(frozen=True)
class WhiteNoise(Attack):
    """White Gaussian noise at exactly ``snr_db`` over each clip's real samples (a control)."""

    method: ClassVar[str] = "noise"
    perturb: ClassVar[Callable[..., torch.Tensor]] = staticmethod(AF.white_noise)
    uses_model: ClassVar[bool] = False  # noise ignores the model and the labels

    def _details(self) -> dict[str, object]:
        return {"distribution": "gaussian"}


@dataclass(frozen=True)
class EOT:
    """The adaptive attack on a randomized defence: ``plain`` (FGSM or PGD) with each gradient
    averaged over ``samples`` draws of the defence's noise (expectation over transformation),
    in the same L∞ ball — FGSM is its one-step case. Same ``method`` and SNR as ``plain``, so its
    results land where the plain attack's would (``attack-<method>-<snr>/``)."""

    plain: FGSM | PGD
    samples: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.plain, (FGSM, PGD)):
            raise AttackError("the adaptive EOT attack extends FGSM or PGD, not the noise control.")
        if isinstance(self.samples, bool) or int(self.samples) != self.samples or self.samples < 1:
            raise AttackError(
                f"EOT needs a whole number of noise draws >= 1 (got {self.samples!r})."
            )

    @property
    def snr_db(self) -> float:
        return self.plain.snr_db

    @property
    def method(self) -> str:
        return self.plain.method

    def __call__(
        self,
        model: AF.Model,
        waveforms: torch.Tensor,
        *,
        labels: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        epsilon = AF.snr_epsilon(waveforms, mask, self.snr_db)
        if isinstance(self.plain, PGD):
            options = self.plain._options(epsilon)
        else:  # FGSM: one full step of ε
            options = {"steps": 1, "step_size": epsilon, "random_start": False}
        return AF.eot_pgd(
            model,
            waveforms,
            labels=labels,
            mask=mask,
            epsilon=epsilon,
            samples=int(self.samples),
            generator=generator,
            **options,
        )

    def settings(self) -> dict[str, object]:
        return {
            **self.plain.settings(),
            "adaptive": "expectation over transformation (EOT)",
            "eot_samples": int(self.samples),
            "eot_gradient": "mean over draws of each draw's loss-gradient direction",
        }


def make_attack(
    method: str,
    snr_db: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = False,
) -> FGSM | PGD | WhiteNoise:
    """The configured attack for ``method`` (``fgsm``, ``pgd`` or ``noise``) at ``snr_db``."""
    if method not in METHODS:
        raise AttackError(f"unknown attack method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "fgsm":
        return FGSM(snr_db)
    if method == "pgd":
        return PGD(snr_db, steps=steps, step_size=step_size, random_start=random_start)
    return WhiteNoise(snr_db)
