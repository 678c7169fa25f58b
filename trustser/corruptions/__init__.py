"""Robustness to real-world channels: a suite of seeded, deterministic waveform corruptions.

``functional`` holds the stateless transforms (white and pink noise, gain, clipping, spectral
tilt, the telephone line), ``babble`` the mix of other talkers, ``rooms`` reverberation and its
RT60 measurement, ``codec`` MP3 and Opus round trips through libsndfile, and ``suite`` the
registry of corruptions and severities with the per-clip seeds. ``babble_pool`` (imported on
its own: it reads manifests, one layer up) picks other speakers' clips for babble. Every
transform maps a float 16 kHz mono waveform to a float32 waveform of the same length. See
docs/robustness.md.
"""

from trustser.corruptions.babble import Talker, babble, choose_talkers
from trustser.corruptions.codec import codec_roundtrip, lossy_codec
from trustser.corruptions.functional import (
    SAMPLE_RATE,
    CorruptionError,
    clipping,
    gain,
    measured_snr_db,
    pink_noise,
    spectral_tilt,
    telephone,
    white_noise,
)
from trustser.corruptions.rooms import reverberate, room_impulse_response, schroeder_rt60
from trustser.corruptions.suite import (
    CORRUPTIONS,
    DEFAULT_SUITE,
    SUITE_VERSION,
    Corruption,
    CorruptionCase,
    Severity,
    clip_seed,
    corruption_names,
    get_case,
    get_corruption,
    suite,
)

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_SUITE",
    "SAMPLE_RATE",
    "SUITE_VERSION",
    "Corruption",
    "CorruptionCase",
    "CorruptionError",
    "Severity",
    "Talker",
    "babble",
    "choose_talkers",
    "clip_seed",
    "clipping",
    "codec_roundtrip",
    "corruption_names",
    "gain",
    "get_case",
    "get_corruption",
    "lossy_codec",
    "measured_snr_db",
    "pink_noise",
    "reverberate",
    "room_impulse_response",
    "schroeder_rt60",
    "spectral_tilt",
    "suite",
    "telephone",
    "white_noise",
]
