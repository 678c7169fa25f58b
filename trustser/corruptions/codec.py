"""Lossy codecs: encode a clip to MP3 or Ogg Opus in memory with libsndfile and decode it back.

``soundfile`` (libsndfile, already the toolkit's audio reader) writes MP3 through LAME and
Ogg Opus through libopus, so no codec binary or extra package is needed. libsndfile takes a
``compression_level`` in [0, 1] rather than a bitrate; :func:`compression_level` inverts its
mapping (for Opus as measured on libsndfile 1.2.2) so a severity is stated in kbit/s; the
tests check the bitrate on the encoded bytes. Decoding can start late: LAME writes no gapless header at MPEG-2 bitrates of
32 kbit/s and below, so the decoder's output carries the encoder and decoder delay (1105
samples with LAME/mpg123). That delay is a property of the codec and its setting, not of the
clip, so :func:`codec_delay` measures it once per setting on a fixed probe signal and
:func:`codec_roundtrip` removes it; the result is then cut or zero-padded to the input length.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft

from trustser.corruptions.functional import SAMPLE_RATE, CorruptionError, as_signal, to_output

__all__ = [
    "CODECS",
    "Codec",
    "codec_delay",
    "codec_roundtrip",
    "compression_level",
    "lossy_codec",
]

_MAX_DELAY = 4096  # samples searched for the codec's delay (LAME + mpg123 need 1105)


@dataclass(frozen=True)
class Codec:
    """A libsndfile format/subtype pair and the bitrates (kbit/s) it can be asked for at 16 kHz."""

    name: str
    format: str
    subtype: str
    min_kbps: float
    max_kbps: float
    allowed_kbps: tuple[float, ...] = ()  # a fixed set (MP3's MPEG-2 table); empty: the range


CODECS: dict[str, Codec] = {
    # MPEG-2 Layer III (16 kHz), constant bitrate: the standard's bitrate table.
    "mp3": Codec(
        "mp3",
        "MP3",
        "MPEG_LAYER_III",
        8,
        160,
        (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    ),
    # Opus in Ogg, libopus's variable bitrate around the target.
    "opus": Codec("opus", "OGG", "OPUS", 6, 256),
}


def _codec(name: str) -> Codec:
    try:
        codec = CODECS[name]
    except KeyError:
        raise CorruptionError(
            f"codec {name!r} is not supported; choose one of {', '.join(map(repr, CODECS))}."
        ) from None
    if codec.format not in sf.available_formats() or codec.subtype not in sf.available_subtypes(
        codec.format
    ):
        raise CorruptionError(
            f"this libsndfile ({sf.__libsndfile_version__}) cannot write {codec.format} "
            f"{codec.subtype}; install soundfile from its PyPI wheel, which bundles a "
            "libsndfile with MP3 (LAME, mpg123) and Opus."
        )
    return codec


def compression_level(codec: str, bitrate_kbps: float) -> float:
    """libsndfile's ``compression_level`` that asks ``codec`` for ``bitrate_kbps`` at 16 kHz.

    MP3 (MPEG-2, constant bitrate): libsndfile sets int(160 − 152·level) kbit/s, so
    level = (160 − kbps)/152, nudged by half a kbit/s against the truncation. Opus: libsndfile
    1.2.2 targets 6 + 250·(1 − level) kbit/s (read off its encoded sizes), so
    level = 1 − (kbps − 6)/250.
    """
    spec = _codec(codec)
    if spec.allowed_kbps and bitrate_kbps not in spec.allowed_kbps:
        raise CorruptionError(
            f"{codec} at 16 kHz (MPEG-2 Layer III) offers {list(spec.allowed_kbps)} kbit/s, "
            f"not {bitrate_kbps!r}."
        )
    if not spec.min_kbps <= bitrate_kbps <= spec.max_kbps:
        raise CorruptionError(
            f"{codec} bitrate must lie in [{spec.min_kbps:g}, {spec.max_kbps:g}] kbit/s, "
            f"got {bitrate_kbps!r}."
        )
    if codec == "mp3":
        return min(1.0, max(0.0, (160.0 - bitrate_kbps - 0.5) / 152.0))
    return min(1.0, max(0.0, 1.0 - (bitrate_kbps - 6.0) / 250.0))


def _encode_decode(x: np.ndarray, spec: Codec, bitrate_kbps: float) -> tuple[np.ndarray, int]:
    """Decoded samples (delay not removed) and the size of the encoded stream in bytes."""
    buffer = io.BytesIO()
    options = {"compression_level": compression_level(spec.name, bitrate_kbps)}
    if spec.name == "mp3":
        options["bitrate_mode"] = "CONSTANT"
    sf.write(
        buffer,
        x.astype(np.float32),
        SAMPLE_RATE,
        format=spec.format,
        subtype=spec.subtype,
        **options,
    )
    size = buffer.tell()
    buffer.seek(0)
    decoded, rate = sf.read(buffer, dtype="float64", always_2d=True)
    if rate != SAMPLE_RATE:
        raise CorruptionError(f"{spec.name} decoded at {rate} Hz instead of {SAMPLE_RATE} Hz.")
    return decoded[:, 0], size


def _probe() -> np.ndarray:
    """One second of a fixed, speech-band noise burst (50 ms onset) between two silences."""
    burst = np.random.default_rng(20_240_024).standard_normal(SAMPLE_RATE)
    spectrum = sp_fft.rfft(burst)
    freqs = sp_fft.rfftfreq(SAMPLE_RATE, d=1.0 / SAMPLE_RATE)
    spectrum[(freqs < 100) | (freqs > 3500)] = 0.0
    burst = sp_fft.irfft(spectrum, SAMPLE_RATE)
    burst *= 0.1 / np.sqrt(np.mean(burst**2)) * np.minimum(1.0, np.arange(SAMPLE_RATE) / 800)
    silence = np.zeros(SAMPLE_RATE // 2)
    return np.concatenate([silence, burst, silence])


@cache
def codec_delay(codec: str, bitrate_kbps: float) -> int:
    """Samples by which ``codec`` at ``bitrate_kbps`` delays its decoded output (0 if gapless).

    Measured once per setting: the lag in [0, 4096) that maximises the cross-correlation of
    the decoded probe with the probe.
    """
    probe = _probe()
    decoded, _ = _encode_decode(probe, _codec(codec), bitrate_kbps)
    n_fft = sp_fft.next_fast_len(decoded.shape[0] + probe.shape[0], real=True)
    correlation = sp_fft.irfft(
        sp_fft.rfft(decoded, n_fft) * np.conj(sp_fft.rfft(probe, n_fft)), n_fft
    )
    return int(np.argmax(correlation[:_MAX_DELAY]))


def codec_roundtrip(
    waveform: np.ndarray, *, codec: str, bitrate_kbps: float
) -> tuple[np.ndarray, int]:
    """``waveform`` through ``codec`` at ``bitrate_kbps`` and back: (float32 clip, encoded bytes).

    The codec's delay (:func:`codec_delay`) is removed and the result cut or zero-padded to the
    input length, so the output is time-aligned with the input. Samples beyond [−1, 1] are
    clipped by the encoder, as in any file.
    """
    x = as_signal(waveform)
    spec = _codec(codec)
    decoded, size = _encode_decode(x, spec, bitrate_kbps)
    delay = codec_delay(codec, bitrate_kbps)
    return to_output(decoded[delay:], x.shape[0]), size


def lossy_codec(waveform: np.ndarray, *, codec: str, bitrate_kbps: float) -> np.ndarray:
    """The decoded clip of :func:`codec_roundtrip` (the suite's transform)."""
    return codec_roundtrip(waveform, codec=codec, bitrate_kbps=bitrate_kbps)[0]
