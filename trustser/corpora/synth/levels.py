"""Levels of the synthetic clips: active-speech RMS, per-voice normalisation, gain and noise.

espeak-ng voices differ in loudness, so each voice is scaled to a common active-speech level
measured on its calibration sentence; each clip then gets its own random gain and white noise.
"""

from __future__ import annotations

import math

import numpy as np

from trustser.corpora.synth.design import SAMPLE_RATE

__all__ = ["TARGET_ACTIVE_RMS", "active_rms", "apply_gain_and_noise", "level_gain"]

TARGET_ACTIVE_RMS = 0.05  # -26 dBFS over active speech, for a neutral utterance at 0 dB gain
PEAK_LIMIT = 0.99  # a clip whose peak would exceed this is scaled down, never clipped


def active_rms(x: np.ndarray) -> float:
    """RMS over 20 ms frames within 30 dB of the loudest ones (speech, not trailing silence)."""
    frame = SAMPLE_RATE // 50
    usable = x[: x.size - x.size % frame].reshape(-1, frame) if x.size >= frame else x[None, :]
    power = (usable**2).mean(axis=1)
    active = power[power >= 1e-3 * np.percentile(power, 95)]
    return float(math.sqrt(active.mean())) if active.size else 0.0


def level_gain(calibration_rms: float) -> float:
    """Factor that brings a voice whose calibration clip has ``calibration_rms`` to the target."""
    return TARGET_ACTIVE_RMS / calibration_rms if calibration_rms > 0 else 1.0


def apply_gain_and_noise(
    clean: np.ndarray, *, voice_gain: float, gain_db: float, snr_db: float, noise_seed: int
) -> tuple[np.ndarray, float]:
    """The clip as written: voice level, random gain, white noise at ``snr_db``, peak limit.

    The SNR is relative to the active-speech RMS of the scaled clip. Returns the float32 clip and
    the factor it was scaled down by to keep its peak at :data:`PEAK_LIMIT` (1.0 when it was not).
    """
    signal = clean * voice_gain * 10.0 ** (gain_db / 20.0)
    rng = np.random.default_rng(noise_seed)
    noise_rms = active_rms(signal) / 10.0 ** (snr_db / 20.0)
    noisy = signal + noise_rms * rng.standard_normal(signal.size)
    peak = float(np.abs(noisy).max())
    peak_scale = min(1.0, PEAK_LIMIT / peak) if peak > 0 else 1.0
    return (noisy * peak_scale).astype(np.float32), peak_scale
