"""Audio loading: any file soundfile reads → mono float32 at 16 kHz, first ``max_seconds``.

Every later stage (extraction, attacks) loads through :func:`load_audio`, so the waveform an
attack perturbs is exactly the one whose features were cached. The output length is a pure
function of the header (:func:`expected_num_samples`), which lets extraction plan the store offsets
before decoding anything; :func:`load_audio` enforces that invariant.

Truncated files: when a WAV ``data`` chunk (or an AIFF ``SSND`` chunk) declares more bytes than
the file holds, libsndfile reports, and decodes, only the frames that are really there. We keep
that behaviour (the header's frame count then equals the decoded length, so planning stays
exact) but make it visible: :class:`AudioInfo` and :class:`Audio` carry ``truncated=True`` and
:func:`load_audio` emits a :class:`TruncatedAudioWarning`, or raises with
``allow_truncated=False``. Formats whose decoder fails on a cut stream (FLAC) raise
:class:`AudioError`.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from trustser._validation import TrustSERError

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "MIN_SECONDS",
    "TARGET_SAMPLE_RATE",
    "Audio",
    "AudioError",
    "AudioInfo",
    "SilentAudioWarning",
    "TruncatedAudioWarning",
    "audio_info",
    "expected_num_samples",
    "load_audio",
    "resample",
    "resampled_length",
]

TARGET_SAMPLE_RATE = 16_000
DEFAULT_MAX_SECONDS = 6.0  # the paper keeps the first 6 s of every utterance
MIN_SECONDS = 0.05  # below this no encoder yields a meaningful frame

# Extra source samples kept past the crop point so the resampler's filter sees real signal,
# not an artificial edge, at the end of the kept window.
_CROP_MARGIN_SECONDS = 0.01

# libsndfile's parse log names a data chunk whose declared size exceeds the file like
# "data : 32000 (should be 15978)" (WAV) or "SSND : 32008 (should be 15981)" (AIFF).
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers leave these placeholder sizes when the length is unknown: not truncation.
_UNKNOWN_CHUNK_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}


class AudioError(TrustSERError, ValueError):
    """A file that cannot be used as speech input; names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        message = f"cannot use audio file {self.path!r}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class SilentAudioWarning(UserWarning):
    """The file decoded to all-zero samples: allowed, but almost certainly a data problem."""


class TruncatedAudioWarning(UserWarning):
    """The file's data chunk is cut short; only the samples present were loaded."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about a file, read without decoding it.

    ``num_frames`` is what libsndfile will actually decode; ``truncated`` says the header
    declared more audio than the file holds.
    """

    path: str
    sample_rate: int
    num_frames: int
    channels: int
    format: str
    truncated: bool = False

    @property
    def duration(self) -> float:
        return self.num_frames / self.sample_rate


@dataclass(frozen=True)
class Audio:
    """A decoded, mono, resampled and cropped waveform plus what happened on the way."""

    waveform: torch.Tensor  # (time,) float32
    sample_rate: int
    source_sample_rate: int
    source_num_frames: int
    source_channels: int
    cropped: bool  # longer than max_seconds: only the start was kept
    silent: bool  # every sample is zero
    truncated: bool = False  # the file's data chunk was cut short; what was there was loaded

    @property
    def num_samples(self) -> int:
        return int(self.waveform.shape[-1])

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


def _libsndfile_reason(error: Exception) -> str:
    text = str(error).split("\n")[0]
    # "Error opening '/long/path.wav': Format not recognised." → "Format not recognised."
    text = re.sub(r"^Error opening .*?: ", "", text)
    return text.strip() or type(error).__name__


def _describe_soundfile_error(path: Path, error: Exception) -> AudioError:
    size = path.stat().st_size if path.exists() else None
    if size == 0:
        return AudioError(path, "the file is empty (0 bytes)", "re-export or remove it")
    return AudioError(
        path,
        f"not a readable audio file or truncated ({_libsndfile_reason(error)})",
        "check the file with `soxi`/`ffprobe` or re-export it as WAV/FLAC",
    )


def _is_truncated(extra_info: str) -> bool:
    for match in _SHORT_CHUNK.finditer(extra_info):
        declared, present = int(match[1]), int(match[2])
        if declared not in _UNKNOWN_CHUNK_SIZES and declared > present:
            return True
    return False


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of ``path``; raises :class:`AudioError` if it is not usable audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file", "check the manifest's path or the corpus root")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as error:  # LibsndfileError subclasses RuntimeError
        raise _describe_soundfile_error(path, error) from None
    truncated = _is_truncated(str(getattr(info, "extra_info", "")))
    if info.frames <= 0:
        reason = "the file holds no samples"
        if truncated:
            reason += " (the header declares audio data, but the file ends before it: truncated)"
        raise AudioError(path, reason, "re-export or remove it")
    return AudioInfo(
        path=str(path),
        sample_rate=int(info.samplerate),
        num_frames=int(info.frames),
        channels=int(info.channels),
        format=str(info.format),
        truncated=truncated,
    )


def resampled_length(num_frames: int, source_rate: int, target_rate: int) -> int:
    """Samples :func:`load_audio` returns for ``num_frames`` input samples before any crop.

    ``ceil(num_frames · target_rate / source_rate)``, in exact integer arithmetic. It is a pure
    function of the header, so the store can plan every clip's rows before decoding; the
    resampler's output is held to it (:func:`resample`).
    """
    num_frames, source_rate, target_rate = int(num_frames), int(source_rate), int(target_rate)
    if source_rate == target_rate:
        return num_frames
    return -(-num_frames * target_rate // source_rate)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 ``samples`` with soxr (high quality), to exactly
    :func:`resampled_length` samples.

    soxr handles any ratio in C (24 414 → 16 000 Hz costs what 48 000 → 16 000 Hz costs), where a
    polyphase filter with one phase per step of the reduced ratio grows with the ratio's
    denominator. soxr's one-shot output rounds the length to nearest, which can fall one short
    of the planned ``ceil``: the input is extended by a few zeros (the signal past the end is
    silence either way) and the output cut to the planned length.
    """
    import soxr

    length = resampled_length(samples.shape[0], source_rate, target_rate)
    if source_rate == target_rate:
        return samples
    tail = np.zeros(-(-int(source_rate) // int(target_rate)) + 1, dtype=np.float32)
    out = soxr.resample(
        np.concatenate([np.asarray(samples, dtype=np.float32), tail]),
        int(source_rate),
        int(target_rate),
        quality="HQ",
    )
    if out.shape[0] < length:  # cannot happen for soxr's rounding; never return a wrong length
        raise RuntimeError(f"soxr returned {out.shape[0]} samples, fewer than the planned {length}")
    return np.ascontiguousarray(out[:length], dtype=np.float32)


def expected_num_samples(
    num_frames: int,
    source_rate: int,
    *,
    sample_rate: int = TARGET_SAMPLE_RATE,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> int:
    """Length of :func:`load_audio`'s output, from header facts alone (plans store offsets)."""
    length = resampled_length(num_frames, source_rate, sample_rate)
    if max_seconds is not None:
        length = min(length, _max_samples(max_seconds, sample_rate))
    return length


def _max_samples(max_seconds: float, sample_rate: int) -> int:
    return round(max_seconds * sample_rate)


def load_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int = TARGET_SAMPLE_RATE,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    min_seconds: float = MIN_SECONDS,
    allow_truncated: bool = True,
    warn: bool = True,
) -> Audio:
    """Decode ``path`` to mono float32 at ``sample_rate``, keeping the first ``max_seconds``.

    Raises :class:`AudioError` (one type, naming the file) for missing, empty, non-audio,
    undecodable, NaN/inf-bearing or too-short files. All-zero audio loads, with ``silent=True``
    and a :class:`SilentAudioWarning`. A WAV/AIFF whose data chunk is cut short loads what is
    there with ``truncated=True`` and a :class:`TruncatedAudioWarning` (or raises when
    ``allow_truncated`` is false). ``warn=False`` leaves the warnings out: callers that report
    ``silent``/``truncated`` themselves (extraction records them per clip) pass it, since
    warnings raised in worker threads reach the user as raw source lines.
    """
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds!r}")
    info = audio_info(path)
    if info.truncated and not allow_truncated:
        raise AudioError(
            path,
            f"truncated: the header declares more audio than the file holds "
            f"(only {info.num_frames} frames are present)",
            "re-export the file, or allow truncated files",
        )
    stop = info.num_frames
    if max_seconds is not None:
        keep = math.ceil((max_seconds + _CROP_MARGIN_SECONDS) * info.sample_rate)
        stop = min(stop, keep)
    try:
        data, _ = sf.read(str(path), frames=stop, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as error:
        raise _describe_soundfile_error(Path(path), error) from None
    if data.shape[0] < stop:
        raise AudioError(
            path,
            f"decoded {data.shape[0]} frames but the header promises {stop}: the file is truncated",
            "re-export the file from its source",
        )
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioError(
            path, f"{bad} samples are NaN or infinite", "re-export the file from its source"
        )
    # numpy throughout: small torch ops pay for waking the intra-op thread pool on every call.
    mono = np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
    if info.sample_rate != sample_rate:
        mono = resample(mono, info.sample_rate, sample_rate)
    full_length = expected_num_samples(
        info.num_frames, info.sample_rate, sample_rate=sample_rate, max_seconds=None
    )
    cropped = False
    if max_seconds is not None:
        limit = _max_samples(max_seconds, sample_rate)
        cropped = full_length > limit
        mono = mono[:limit]
    duration = mono.shape[-1] / sample_rate
    if duration < min_seconds:
        raise AudioError(
            path,
            f"too short: {duration * 1000:.1f} ms < {min_seconds * 1000:.0f} ms",
            "encoders need at least a few frames; drop the clip from the manifest",
        )
    silent = not bool(np.any(mono))
    if silent and warn:
        warnings.warn(f"{path}: every sample is zero", SilentAudioWarning, stacklevel=2)
    if info.truncated and warn:
        warnings.warn(
            f"{path}: the data chunk is cut short; loaded the {info.num_frames} frames present",
            TruncatedAudioWarning,
            stacklevel=2,
        )
    return Audio(
        waveform=torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)),
        sample_rate=sample_rate,
        source_sample_rate=info.sample_rate,
        source_num_frames=info.num_frames,
        source_channels=info.channels,
        cropped=cropped,
        silent=silent,
        truncated=info.truncated,
    )
