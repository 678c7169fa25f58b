"""Reverberation: a stochastic room impulse response of a given RT60, and its measurement.

The response is Polack's statistical model of a diffuse room: a unit direct path followed by
Gaussian noise under an exponential envelope that falls by 60 dB in RT60 seconds, scaled to
the direct-to-reverberant ratio (DRR) that diffuse-field theory gives for a talker at a fixed
distance in a room of fixed volume. It is exact in its decay by construction, cheap, seeded
and needs no download; docs/robustness.md says why it is used instead of an image-source room
simulator. :func:`schroeder_rt60` measures the decay of any impulse response.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal as sp_signal

from trustser.corruptions.functional import (
    SAMPLE_RATE,
    CorruptionError,
    as_signal,
    to_output,
)

__all__ = [
    "diffuse_drr_db",
    "reverberate",
    "room_impulse_response",
    "schroeder_rt60",
]

_DECAY_60_DB = 3.0 * math.log(10.0)  # ln(10^3): the amplitude envelope exp(−6.91 t/RT60)


def diffuse_drr_db(
    rt60_s: float, *, volume_m3: float, distance_m: float, directivity: float
) -> float:
    """Direct-to-reverberant energy ratio (dB) in a diffuse room (Sabine).

    DRR = 10·log10(Q·A / (16π r²)) with the equivalent absorption area A = 0.161·V / RT60 (m²),
    volume V, talker-to-microphone distance r and the talker's directivity factor Q.
    """
    for name, value in (
        ("rt60_s", rt60_s),
        ("volume_m3", volume_m3),
        ("distance_m", distance_m),
        ("directivity", directivity),
    ):
        if not value > 0:
            raise CorruptionError(f"{name} must be > 0, got {value!r}.")
    absorption_area = 0.161 * volume_m3 / rt60_s
    return 10.0 * math.log10(directivity * absorption_area / (16.0 * math.pi * distance_m**2))


def room_impulse_response(
    rt60_s: float, *, drr_db: float, seed: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """A float64 impulse response ``ceil(rt60_s · sample_rate)`` samples long.

    h[0] = 1 (the direct path, so the reverberant clip stays aligned with the dry one);
    h[n] = g · w[n] · exp(−3·ln(10) · n / (RT60 · fs)) for n ≥ 1, with w white Gaussian noise
    from ``seed`` and g set so that Σ_{n≥1} h[n]² = 10^(−DRR/10). The envelope's energy
    falls 60 dB in ``rt60_s`` seconds, where the response ends.
    """
    if not rt60_s > 0:
        raise CorruptionError(f"rt60_s must be > 0, got {rt60_s!r}.")
    if not math.isfinite(drr_db):
        raise CorruptionError(f"drr_db must be a finite number, got {drr_db!r}.")
    length = max(2, math.ceil(rt60_s * sample_rate))
    n = np.arange(1, length)
    tail = np.random.default_rng(seed).standard_normal(length - 1)
    tail *= np.exp(-_DECAY_60_DB * n / (rt60_s * sample_rate))
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.sum(tail**2)))
    return np.concatenate(([1.0], tail))


def reverberate(waveform: np.ndarray, *, rt60_s: float, drr_db: float, seed: int) -> np.ndarray:
    """Convolve with :func:`room_impulse_response`; keep the first ``len(waveform)`` samples.

    The direct path sits at lag 0, so nothing shifts; the reverberant tail that would ring on
    past the clip's end is cut off. No level normalisation: the microphone hears the direct
    sound plus the room, as in a real room.
    """
    x = as_signal(waveform)
    rir = room_impulse_response(rt60_s, drr_db=drr_db, seed=seed)
    return to_output(sp_signal.oaconvolve(x, rir)[: x.shape[0]], x.shape[0])


def schroeder_rt60(
    impulse_response: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    fit_db: tuple[float, float] = (-5.0, -25.0),
) -> float:
    """RT60 (s) from the Schroeder energy decay curve, fitted between ``fit_db`` (T20 by default).

    EDC(t) = ∫_t^∞ h²(τ) dτ (the backward integral), in dB relative to EDC(0). A straight
    line is fitted by least squares to the EDC between the two levels and extrapolated to a
    60 dB decay: RT60 = −60 / slope (ISO 3382-1).
    """
    h = np.asarray(impulse_response, dtype=np.float64)
    if h.ndim != 1 or h.size < 2 or not np.isfinite(h).all() or not np.any(h):
        raise CorruptionError(
            "schroeder_rt60 needs a finite, non-zero 1-D impulse response of two samples or more."
        )
    upper, lower = fit_db
    if not 0 > upper > lower:
        raise CorruptionError(f"fit_db must be two levels with 0 > upper > lower, got {fit_db!r}.")
    energy = np.cumsum(h[::-1] ** 2)[::-1]
    with np.errstate(divide="ignore"):
        edc_db = 10.0 * np.log10(energy / energy[0])
    inside = np.flatnonzero((edc_db <= upper) & (edc_db >= lower))
    if inside.size < 2:
        raise CorruptionError(
            f"the impulse response does not decay from {upper} to {lower} dB; "
            "it is too short or does not decay."
        )
    times = inside / sample_rate
    slope, _ = np.polyfit(times, edc_db[inside], 1)
    if slope >= 0:
        raise CorruptionError("the impulse response's energy does not decay.")
    return -60.0 / float(slope)
