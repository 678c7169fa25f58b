"""The errors of the synthetic corpus: one base class, so callers can catch them all."""

from __future__ import annotations

from trustser._validation import TrustSERError

__all__ = ["EspeakNotFoundError", "SynthesisError", "VoiceError"]


class SynthesisError(TrustSERError, RuntimeError):
    """espeak-ng failed, or the synthetic corpus cannot be built with the given settings."""


class EspeakNotFoundError(SynthesisError, FileNotFoundError):
    """espeak-ng is not installed (or not on PATH)."""


class VoiceError(SynthesisError, ValueError):
    """A voice that does not exist, or whose measured pitch contradicts its gender label."""
