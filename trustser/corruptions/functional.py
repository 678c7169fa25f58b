"""Stateless corruption transforms of one 16 kHz mono waveform: noise, level, tilt, telephone.

Each function takes a 1-D float waveform and keyword-only parameters and returns a float32
array of the same length. Anything random draws from ``numpy.random.default_rng(seed)`` and
nothing else, so the same waveform, parameters and seed give the same output. The arithmetic
runs in float64; only the result is float32. Formulas and the reasons for each choice are in
docs/robustness.md; :mod:`trustser.corruptions.suite` fixes the severities.

Levels are relative to the clip as a whole: the SNR compares the noise with the clip's mean
power over all its samples (pauses included), the convention of
:func:`trustser.attacks.functional.white_noise`. An all-zero clip therefore stays all zero
under the additive corruptions (a noise at a finite SNR below silence is silence).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sp_signal

from trustser._validation import TrustSERError
from trustser.audio import TARGET_SAMPLE_RATE

__all__ = [
    "SAMPLE_RATE",
    "CorruptionError",
    "add_at_snr",
    "as_signal",
    "clipping",
    "gain",
    "measured_snr_db",
    "mu_law",
    "pink_noise",
    "pink_noise_signal",
    "spectral_tilt",
    "telephone",
    "to_output",
    "white_noise",
]

SAMPLE_RATE = TARGET_SAMPLE_RATE  # every transform works at the rate the encoders are fed


class CorruptionError(TrustSERError, ValueError):
    """A waveform, parameter or talker pool a corruption cannot use; the message says why."""


def as_signal(waveform: np.ndarray, name: str = "waveform") -> np.ndarray:
    """``waveform`` as a float64 copy after checking it is a non-empty, finite 1-D float array."""
    array = np.asarray(waveform)
    if array.ndim != 1:
        raise CorruptionError(
            f"{name} must be one mono channel of shape (samples,), got shape {array.shape}; "
            "average the channels first (trustser.audio.load_audio does)."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise CorruptionError(
            f"{name} must hold floats in [-1, 1], got dtype {array.dtype}; "
            "convert integer PCM first (trustser.audio.load_audio does)."
        )
    if array.size == 0:
        raise CorruptionError(f"{name} is empty; a corruption needs at least one sample.")
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise CorruptionError(f"{name} has {bad} NaN or infinite samples; clean the clip first.")
    return array.astype(np.float64)


def to_output(values: np.ndarray, num_samples: int) -> np.ndarray:
    """The first ``num_samples`` of ``values`` as contiguous float32, zero-padded if shorter."""
    out = np.zeros(num_samples, dtype=np.float32)
    kept = min(num_samples, values.shape[0])
    out[:kept] = values[:kept]
    if not np.isfinite(out).all():  # float32 overflow of a huge gain, say
        raise CorruptionError(
            "the corrupted waveform overflows float32; the input is far outside [-1, 1]."
        )
    return out


def _check_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CorruptionError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def add_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + a·noise`` with ``a`` set so that 10·log10(P_signal / P_added) = ``snr_db``.

    P is the mean square over every sample. A silent ``signal`` is returned unchanged.
    """
    snr_db = _check_number("snr_db", snr_db)
    signal_power = float(np.mean(signal**2))
    if signal_power == 0.0:
        return signal.copy()
    noise_power = float(np.mean(noise**2))
    if noise_power == 0.0:
        raise CorruptionError("the noise to add is silent, so no SNR can be set.")
    scale = math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return signal + scale * noise


def measured_snr_db(clean: np.ndarray, corrupted: np.ndarray) -> float:
    """10·log10(Σ clean² / Σ (corrupted − clean)²) in dB; ``inf`` if nothing was added."""
    clean = np.asarray(clean, dtype=np.float64)
    added = np.asarray(corrupted, dtype=np.float64) - clean
    added_energy = float(np.sum(added**2))
    if added_energy == 0.0:
        return math.inf
    return 10.0 * math.log10(float(np.sum(clean**2)) / added_energy)


def white_noise(waveform: np.ndarray, *, snr_db: float, seed: int) -> np.ndarray:
    """Add white Gaussian noise at exactly ``snr_db`` (flat spectrum, 0 Hz to 8 kHz)."""
    x = as_signal(waveform)
    noise = np.random.default_rng(seed).standard_normal(x.shape[0])
    return to_output(add_at_snr(x, noise, snr_db), x.shape[0])


def pink_noise_signal(
    num_samples: int, *, seed: int, low_hz: float = 20.0, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Gaussian noise whose power spectral density falls as 1/f above ``low_hz`` (none below).

    White Gaussian noise is shaped in the frequency domain by 1/√f, so every octave above
    ``low_hz`` carries the same power (−3.01 dB per octave in the density). Below ``low_hz``
    the noise is empty: 1/f keeps growing towards 0 Hz, and inaudible rumble would otherwise
    take a large share of the noise power the SNR is set by.
    """
    low_hz = _check_number("low_hz", low_hz)
    if not 0.0 < low_hz < sample_rate / 2:
        raise CorruptionError(
            f"low_hz must lie between 0 and the Nyquist frequency ({sample_rate / 2:g} Hz), "
            f"got {low_hz!r}."
        )
    white = np.random.default_rng(seed).standard_normal(num_samples)
    spectrum = sp_fft.rfft(white)
    freqs = sp_fft.rfftfreq(num_samples, d=1.0 / sample_rate)
    shape = np.zeros_like(freqs)
    keep = freqs >= low_hz
    shape[keep] = 1.0 / np.sqrt(freqs[keep])
    return sp_fft.irfft(spectrum * shape, n=num_samples)


def pink_noise(
    waveform: np.ndarray, *, snr_db: float, seed: int, low_hz: float = 20.0
) -> np.ndarray:
    """Add pink (1/f) noise from :func:`pink_noise_signal` at exactly ``snr_db``."""
    x = as_signal(waveform)
    noise = pink_noise_signal(x.shape[0], seed=seed, low_hz=low_hz)
    return to_output(add_at_snr(x, noise, snr_db), x.shape[0])


def gain(waveform: np.ndarray, *, gain_db: float) -> np.ndarray:
    """Scale the amplitude by 10^(gain_db / 20); no clipping (a quiet or distant talker)."""
    x = as_signal(waveform)
    return to_output(x * 10.0 ** (_check_number("gain_db", gain_db) / 20.0), x.shape[0])


def clipping(waveform: np.ndarray, *, gain_db: float, limit: float = 1.0) -> np.ndarray:
    """Amplify by ``gain_db`` and hard-clip to [−limit, limit] (an overdriven input stage)."""
    x = as_signal(waveform)
    limit = _check_number("limit", limit)
    if limit <= 0:
        raise CorruptionError(f"limit must be > 0, got {limit!r}.")
    loud = x * 10.0 ** (_check_number("gain_db", gain_db) / 20.0)
    return to_output(np.clip(loud, -limit, limit), x.shape[0])


def spectral_tilt(
    waveform: np.ndarray,
    *,
    db_per_octave: float,
    reference_hz: float = 1000.0,
    low_hz: float = 125.0,
    high_hz: float = 8000.0,
) -> np.ndarray:
    """Tilt the spectrum by ``db_per_octave`` between two shelves, keeping the clip's RMS.

    The gain is a straight line in log-frequency, G(f) = s · log2(min(max(f, f_lo), f_hi) /
    f_ref) dB: ``s`` dB per octave between the shelf corners ``low_hz`` and ``high_hz``, flat
    outside them, 0 dB at ``reference_hz``. It is applied exactly, as a zero-phase filter in the
    frequency domain (zero-padded by 0.25 s so the filter's ringing does not wrap around).
    The result is rescaled to the input's RMS, so the tilt changes the balance of low and high
    frequencies (a cheap microphone, a muffled or a thin channel), not the level, which
    :func:`gain` covers.
    """
    x = as_signal(waveform)
    db_per_octave = _check_number("db_per_octave", db_per_octave)
    reference_hz = _check_number("reference_hz", reference_hz)
    low_hz, high_hz = _check_number("low_hz", low_hz), _check_number("high_hz", high_hz)
    if not 0 < low_hz <= reference_hz <= high_hz:
        raise CorruptionError(
            "spectral_tilt needs 0 < low_hz <= reference_hz <= high_hz, got "
            f"{low_hz!r}, {reference_hz!r}, {high_hz!r}."
        )
    n = x.shape[0]
    n_fft = sp_fft.next_fast_len(n + SAMPLE_RATE // 4, real=True)
    freqs = sp_fft.rfftfreq(n_fft, d=1.0 / SAMPLE_RATE)
    gain_db = db_per_octave * np.log2(np.clip(freqs, low_hz, high_hz) / reference_hz)
    tilted = sp_fft.irfft(sp_fft.rfft(x, n_fft) * 10.0 ** (gain_db / 20.0), n_fft)[:n]
    tilted_rms = math.sqrt(float(np.mean(tilted**2)))
    if tilted_rms > 0:
        tilted *= math.sqrt(float(np.mean(x**2))) / tilted_rms
    return to_output(tilted, n)


def mu_law(waveform: np.ndarray, *, mu: int = 255, bits: int = 8) -> np.ndarray:
    """Encode and decode with μ-law companding to ``bits`` bits (sign + magnitude code).

    F(x) = sgn(x)·ln(1 + μ|x|)/ln(1 + μ) on x clipped to [−1, 1]; |F(x)| is rounded to one of
    2^(bits−1) − 1 steps, so zero stays zero; F⁻¹(y) = sgn(y)·((1 + μ)^|y| − 1)/μ. With μ = 255
    and 8 bits this is the continuous form of ITU-T G.711 μ-law, whose table is an
    8-segment piecewise-linear approximation of the same curve.
    """
    if bits < 2 or mu <= 0:
        raise CorruptionError(f"mu_law needs mu > 0 and bits >= 2, got mu={mu!r}, bits={bits!r}.")
    x = np.clip(np.asarray(waveform, dtype=np.float64), -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    steps = 2 ** (bits - 1) - 1
    quantized = np.round(compressed * steps) / steps
    return np.sign(quantized) * ((1.0 + mu) ** np.abs(quantized) - 1.0) / mu


def _line_filter(low_hz: float, high_hz: float, order: int, rate: int) -> np.ndarray:
    """Butterworth high-pass + low-pass (second-order sections) for :func:`telephone`.

    The line applies the filter four times (send and receive, each forwards and backwards), so
    the corners are moved out until the four passes together are −3 dB at ``low_hz`` and
    ``high_hz``. One pass of a digital (bilinear) order-N Butterworth low-pass has power gain
    1/(1 + (w/w_c)^2N), w = tan(πf/rate) (the high-pass: (w_c/w)^2N), so each corner sits where
    that ratio is r = (2^(1/4) − 1)^(1/2N) at its band edge.
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise CorruptionError(f"filter_order must be a positive integer, got {order!r}.")
    if not 0 < low_hz < high_hz < rate / 2:
        raise CorruptionError(
            f"telephone needs 0 < low_hz < high_hz < channel_rate/2 = {rate / 2:g} Hz, got "
            f"low_hz={low_hz!r}, high_hz={high_hz!r}."
        )
    ratio = (2.0**0.25 - 1.0) ** (1.0 / (2 * order))
    warp = np.pi / rate
    low_corner = math.atan(math.tan(warp * low_hz) * ratio) / warp
    high_corner = math.atan(math.tan(warp * high_hz) / ratio) / warp
    high_pass = sp_signal.butter(order, low_corner, btype="highpass", fs=rate, output="sos")
    low_pass = sp_signal.butter(order, high_corner, btype="lowpass", fs=rate, output="sos")
    return np.concatenate([high_pass, low_pass])


def telephone(
    waveform: np.ndarray,
    *,
    low_hz: float = 300.0,
    high_hz: float = 3400.0,
    channel_rate: int = 8000,
    mu: int = 255,
    bits: int = 8,
    filter_order: int = 8,
) -> np.ndarray:
    """A narrowband telephone line: 8 kHz, 300–3400 Hz, μ-law (ITU-T G.711/G.712), back to 16 kHz.

    Down-sample to ``channel_rate`` (polyphase, with its anti-aliasing filter), band-limit
    (send filter), μ-law encode/decode (:func:`mu_law`), band-limit again (receive filter, which
    also removes the quantisation noise outside the band), and up-sample to 16 kHz. The filters
    are Butterworth high- and low-pass of ``filter_order`` run forwards and backwards (zero
    phase, so the clip stays time-aligned), placed so the whole line is −3 dB at ``low_hz``
    and ``high_hz`` (:func:`_line_filter`).
    """
    x = as_signal(waveform)
    low_hz, high_hz = _check_number("low_hz", low_hz), _check_number("high_hz", high_hz)
    if isinstance(channel_rate, bool) or not isinstance(channel_rate, int) or channel_rate <= 0:
        raise CorruptionError(f"channel_rate must be a positive integer, got {channel_rate!r}.")
    if SAMPLE_RATE % channel_rate:
        raise CorruptionError(
            f"channel_rate must divide {SAMPLE_RATE} Hz (8000, say), got {channel_rate!r}."
        )
    band = _line_filter(low_hz, high_hz, filter_order, channel_rate)
    factor = SAMPLE_RATE // channel_rate
    narrow = sp_signal.resample_poly(x, 1, factor)
    narrow = sp_signal.sosfiltfilt(band, narrow)
    narrow = sp_signal.sosfiltfilt(band, mu_law(narrow, mu=mu, bits=bits))
    return to_output(sp_signal.resample_poly(narrow, factor, 1), x.shape[0])
