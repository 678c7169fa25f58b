"""Errors raised by the backbones: each names the backbone, what happened and what to do."""

from __future__ import annotations

from trustser._validation import TrustSERError

__all__ = [
    "BackboneError",
    "BackboneInputError",
    "CT2FormatError",
    "UnknownBackboneError",
    "WeightsChecksumError",
    "WeightsNotFoundError",
]


class BackboneError(TrustSERError):
    """Base class for backbone errors caused by the user's input or environment."""


class UnknownBackboneError(BackboneError):
    """A name that is neither a registry entry nor a recognised ``kind:...`` spec."""


class WeightsNotFoundError(BackboneError):
    """Pretrained weights are not available locally and could not be fetched."""


class BackboneInputError(BackboneError):
    """A waveform batch the backbone cannot process (shape, dtype, length)."""


class CT2FormatError(BackboneError):
    """A CTranslate2 ``model.bin`` that is truncated, foreign, or of an unsupported version."""


class WeightsChecksumError(BackboneError):
    """Installed weights whose size or SHA-256 is not the one recorded for their release."""
