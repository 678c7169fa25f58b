"""Configured attacks: an SNR (and PGD's settings) bound once, the math in ``functional``.

Each configured attack turns its target SNR into a per-clip radius with
:func:`~trustser.attacks.functional.snr_epsilon` and is one functional call, so the
waveform-level definitions live in exactly one place.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
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
    "AttackBatch",
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
class AttackBatch:
    """One padded batch as an attack receives it: the model, the waveforms ``[B, S]``, true
    ``labels``, ``mask``, each clip's L∞ radius ``epsilon [B]``, the CPU ``generator`` of its
    random draws and the ``verdict`` that judges a randomized model (None: the model itself)."""

    model: AF.Model
    waveforms: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    epsilon: torch.Tensor
    generator: torch.Generator | None
    verdict: AF.Model | None

    def pgd(self, *, gradient: AF.Gradient = AF.loss_gradient, **options: Any) -> torch.Tensor:
        """:func:`~.functional.pgd` on this batch with ``gradient`` and ``options``."""
        return AF.pgd(
            self.model,
            self.waveforms,
            labels=self.labels,
            mask=self.mask,
            epsilon=self.epsilon,
            generator=self.generator,
            verdict=self.verdict,
            gradient=gradient,
            **options,
        )


class Attack(ABC):
    """A configured attack, what the runner needs: a ``method`` name, a target ``snr_db``, a
    batched call ``attack(model, waveforms, labels=, mask=, generator=, verdict=)`` and its
    ``settings()`` (what ``summary.json`` records).

    The call turns the SNR into each clip's L∞ radius ε (:func:`~.functional.snr_epsilon`, here
    only) and hands it to :meth:`perturb`, which a subclass implements as one functional call.
    ``verdict`` judges the iterates of an attack against a randomized model
    (:func:`~.functional.pgd`); attacks that choose among no iterates ignore it.
    """

    method: str
    snr_db: float

    def __call__(
        self,
        model: AF.Model,
        waveforms: torch.Tensor,
        *,
        labels: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        verdict: AF.Model | None = None,
    ) -> torch.Tensor:
        epsilon = AF.snr_epsilon(waveforms, mask, self.snr_db)
        return self.perturb(
            AttackBatch(model, waveforms, labels, mask, epsilon, generator, verdict)
        )

    @abstractmethod
    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        """The adversarial waveforms of ``batch`` (at its per-clip radius ε)."""

    @abstractmethod
    def settings(self) -> dict[str, object]:
        """What ``summary.json`` records about this attack."""


@dataclass(frozen=True)
class _AtSNR(Attack):
    """An attack configured by its own target SNR (FGSM, PGD, the noise control)."""

    snr_db: float = 45.0
    method: ClassVar[str]

    def __post_init__(self) -> None:
        check_snr(self.snr_db)

    def _details(self) -> dict[str, object]:
        raise NotImplementedError

    def settings(self) -> dict[str, object]:
        return {"method": self.method, "snr_db": self.snr_db, **self._details()}


@dataclass(frozen=True)
class FGSM(_AtSNR):
    """One signed-gradient step of L∞ radius ε = RMS(x)·10^(−snr_db/20) per clip (deterministic)."""

    method: ClassVar[str] = "fgsm"

    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        return AF.fgsm(
            batch.model,
            batch.waveforms,
            labels=batch.labels,
            mask=batch.mask,
            epsilon=batch.epsilon,
        )

    def pgd_options(self, epsilon: torch.Tensor) -> dict[str, Any]:
        """FGSM as :func:`~.functional.pgd`'s one-step case: one full step of ε."""
        return {"steps": 1, "step_size": epsilon, "random_start": False}

    def _details(self) -> dict[str, object]:
        return {"norm": "linf", "zero_gradient_samples": "fixed ±1 tie signs"}


@dataclass(frozen=True)
class PGD(_AtSNR):
    """``steps`` projected signed-gradient steps inside the same L∞ ball as :class:`FGSM`,
    starting at FGSM's point and keeping each clip's strongest iterate (never weaker than FGSM).

    ``step_size`` is a fraction of each clip's ε (α = step_size·ε); ``None`` means 2.5/steps.
    """

    steps: int = 10
    step_size: float | None = None
    random_start: bool = False
    method: ClassVar[str] = "pgd"

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

    def pgd_options(self, epsilon: torch.Tensor) -> dict[str, Any]:
        """The keyword arguments of :func:`~.functional.pgd` at per-clip radius ``epsilon``."""
        return {
            "steps": int(self.steps),
            "step_size": epsilon * self.relative_step,
            "random_start": self.random_start,
        }

    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        return batch.pgd(**self.pgd_options(batch.epsilon))

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
class WhiteNoise(_AtSNR):
    """White Gaussian noise at exactly ``snr_db`` over each clip's real samples (a control that
    ignores the model and the labels)."""

    method: ClassVar[str] = "noise"

    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        return AF.white_noise(
            batch.waveforms, mask=batch.mask, epsilon=batch.epsilon, generator=batch.generator
        )

    def _details(self) -> dict[str, object]:
        return {"distribution": "gaussian"}


@dataclass(frozen=True)
class EOT(Attack):
    """The adaptive attack on a randomized defence: ``plain`` (FGSM or PGD) with each gradient
    averaged over ``samples`` draws of the defence's noise (expectation over transformation,
    :func:`~.functional.eot`), in the same L∞ ball — FGSM is its one-step case. Same ``method``
    and SNR as ``plain``, so its results land where the plain attack's would
    (``attack-<method>-<snr>/``)."""

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
    def snr_db(self) -> float:  # type: ignore[override]
        return self.plain.snr_db

    @property
    def method(self) -> str:  # type: ignore[override]
        return self.plain.method

    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        return batch.pgd(
            gradient=AF.eot(int(self.samples)), **self.plain.pgd_options(batch.epsilon)
        )

    def settings(self) -> dict[str, object]:
        return {
            **self.plain.settings(),
            "adaptive": "expectation over transformation (EOT)",
            "eot_samples": int(self.samples),
            "eot_gradient": "mean over draws of the raw loss gradient, rescaled once per clip",
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
