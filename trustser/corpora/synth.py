"""A small synthetic emotional corpus rendered locally with espeak-ng: the offline demo default.

Four emotions are prosody profiles (pitch level, pitch range, speaking rate, loudness via SSML
``<prosody>``, word gap via ``-g``) applied to several male and female espeak-ng voices. Every
speaker gets its own random scaling of each profile, every utterance its own jitter, gain and white
noise, so the classes overlap the way real speakers do: a frozen Whisper tiny.en with a linear
probe separates the emotions well above chance but far from perfectly (see
``docs/synthetic-corpus.md``). It is a smoke-test corpus and a controlled test bed (``bias``), not a
benchmark.

The layout written by :func:`synthesize` (and read back by :func:`prepare`)::

    DIR/manifest.jsonl   the manifest (relative paths), written last: its presence marks completion
    DIR/synth.json       the full generator configuration, per-speaker draws and measured f0
    DIR/wav/<id>.wav     16 kHz mono PCM-16 clips

Everything is a pure function of the arguments and ``seed``: the same call gives byte-identical
WAVs and manifest on the same espeak-ng version.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len
from scipy.signal import resample_poly

from trustser._validation import TrustSERError
from trustser.corpora._common import CorpusLayoutError, reuse_existing
from trustser.folds import rotating_folds
from trustser.manifest import (
    EMOTIONS,
    GENDERS,
    Manifest,
    ManifestError,
    Utterance,
    read_manifest,
    validate,
    write_manifest,
)

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_NUM_SENTENCES",
    "DEFAULT_NUM_SPEAKERS",
    "EMOTION_PROFILES",
    "FOLD_SCHEME",
    "GENDER_F0_BOUNDARY_HZ",
    "GENERATOR_VERSION",
    "LABELS",
    "MANIFEST_NAME",
    "NAME",
    "NUM_FOLDS",
    "SAMPLE_RATE",
    "SENTENCES",
    "SIZES",
    "SOURCE",
    "VOICES",
    "Bias",
    "EspeakNotFoundError",
    "PitchStats",
    "Prosody",
    "SynthesisError",
    "Voice",
    "VoiceError",
    "check_voice",
    "espeak_version",
    "estimate_f0",
    "find_espeak",
    "parse_bias",
    "parse_voice",
    "pitch_stats",
    "prepare",
    "synthesize",
]

NAME = "synth"
SOURCE = "rendered locally with espeak-ng: `trustser data synth -o DIR` (docs/synthetic-corpus.md)"
LABELS: tuple[str, ...] = EMOTIONS  # neutral, happy, sad, angry
SAMPLE_RATE = 16_000
# Bump whenever profiles, sentences, voices or post-processing change: it is part of the manifest
# version string, so caches built from an older corpus are not silently reused.
GENERATOR_VERSION = 1
MANIFEST_NAME = "manifest.jsonl"  # written last: its presence marks a complete corpus
CONFIG_NAME = "synth.json"
WAV_DIR = "wav"

SIZES: dict[str, tuple[int, int]] = {
    # name: (speakers, sentences per speaker); clips = speakers × sentences × 4 emotions
    "tiny": (6, 2),  # 48 clips: tests and quick wiring checks
    "small": (6, 6),  # 144 clips
    "default": (10, 10),  # 400 clips, 5 folds: `make demo`
    "large": (20, 24),  # 1,920 clips, 10 folds
}
DEFAULT_NUM_SPEAKERS, DEFAULT_NUM_SENTENCES = SIZES["default"]
NUM_FOLDS = DEFAULT_NUM_SPEAKERS // 2  # one female/male pair per fold (default size)
FOLD_SCHEME = (
    "one female/male voice pair per fold: fold k tests pair k, dev = pair k+1, train = the rest"
)

# Neutral, everyday sentences of 5-9 words (1.5-4 s when spoken): the text carries no emotion, so
# only prosody and voice can.
SENTENCES: tuple[str, ...] = (
    "The train leaves the station at nine.",
    "Please put the folder on the kitchen table.",
    "We talked about the weather for a while.",
    "The meeting has been moved to Thursday afternoon.",
    "She bought two loaves of bread this morning.",
    "The bus stops at the corner every hour.",
    "I left my umbrella in the car.",
    "The library closes at six on weekdays.",
    "He painted the fence a pale shade of green.",
    "They are moving to a new apartment next month.",
    "The package arrived earlier than we expected.",
    "Turn left at the second traffic light.",
    "The report is due at the end of the week.",
    "We need more paper for the printer.",
    "The garden looks different in the autumn.",
    "My brother works at the hospital downtown.",
    "The keys are in the drawer by the door.",
    "The film starts at half past seven.",
    "She read the letter twice before answering.",
    "The shop on the corner sells fresh fish.",
    "Our neighbours have a large brown dog.",
    "The lecture was about the history of maps.",
    "I will call you when I get home.",
    "The coffee machine on the third floor is new.",
    "He walked to the market along the river.",
    "The tickets are booked for the early flight.",
    "There is a small lake behind the school.",
    "The chairs were stacked against the wall.",
    "We usually have dinner at around eight.",
    "The window in the hallway is open.",
    "The phone was lying on the sofa.",
    "The museum is free on the first Sunday.",
    "She has finished painting the living room.",
    "The boat crossed the bay in an hour.",
    "The new schedule starts on Monday morning.",
    "They planted tomatoes along the fence.",
    "The clock in the tower strikes every hour.",
    "He put the groceries in the fridge.",
    "The road to the village was recently repaved.",
    "I found the recipe in an old notebook.",
)
CALIBRATION_TEXT = (
    "The meeting has been moved to Thursday afternoon. She bought two loaves of bread this morning."
)

# A median f0 on the wrong side of this boundary contradicts the voice's gender label. Every
# built-in voice stays at least 15 Hz away from it, even at the extremes of the per-speaker
# pitch draw (measured: female 160-240 Hz, male 95-120 Hz).
GENDER_F0_BOUNDARY_HZ = 145.0
# espeak-ng amplitude (0-200, default 100): low enough that even the loudest built-in voice at
# 230 % volume stays below full scale in its int16 output (measured peak 0.80); levels are
# normalised per voice afterwards.
ESPEAK_AMPLITUDE = 30
TARGET_ACTIVE_RMS = 0.05  # -26 dBFS over active speech, for a neutral utterance at 0 dB gain


class SynthesisError(TrustSERError, RuntimeError):
    """espeak-ng failed, or the synthetic corpus cannot be built with the given settings."""


class EspeakNotFoundError(SynthesisError, FileNotFoundError):
    """espeak-ng is not installed (or not on PATH)."""


class VoiceError(SynthesisError, ValueError):
    """A voice that does not exist, or whose measured pitch contradicts its gender label."""


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (``language+variant``) and the gender it is labelled with."""

    name: str
    gender: str

    def __post_init__(self) -> None:
        if self.gender not in GENDERS:
            raise VoiceError(
                f"voice {self.name!r}: gender={self.gender!r}; expected 'female' or 'male'."
            )


# Female/male pairs; speakers are taken pair by pair, so N speakers are the first N/2 pairs. The
# language part varies the accent (en = British, en-us, en-gb-x-rp, en-029 Caribbean, Scottish).
# Note: `en-gb+f3` would speak the default male voice in espeak-ng 1.51 (the variant is ignored).
VOICES: tuple[tuple[Voice, Voice], ...] = (
    (Voice("en+f1", "female"), Voice("en+m1", "male")),
    (Voice("en-us+f2", "female"), Voice("en-us+m2", "male")),
    (Voice("en-gb-x-rp+f3", "female"), Voice("en-gb-x-rp+m3", "male")),
    (Voice("en-029+f4", "female"), Voice("en-029+m4", "male")),
    (Voice("en-us+f5", "female"), Voice("en-gb-scotland+m6", "male")),
    (Voice("en+Andrea", "female"), Voice("en+m7", "male")),
    (Voice("en+anika", "female"), Voice("en-us+m8", "male")),
    (Voice("en+linda", "female"), Voice("en+Denis", "male")),
    (Voice("en+Alicia", "female"), Voice("en+sandro", "male")),
    (Voice("en+steph", "female"), Voice("en+victor", "male")),
)


@dataclass(frozen=True)
class Prosody:
    """espeak-ng prosody settings, or a deviation from them.

    ``pitch``, ``range``, ``rate`` and ``volume`` are percentages of espeak-ng's defaults (100 =
    unchanged; ``rate`` 100 = 175 words per minute); ``gap`` is the extra pause between words in
    units of 10 ms (espeak-ng ``-g``). As a deviation (an emotion profile) the same fields are
    differences in percentage points and gap units.
    """

    pitch: float = 0.0
    range: float = 0.0
    rate: float = 0.0
    volume: float = 0.0
    gap: float = 0.0

    def vector(self) -> np.ndarray:
        return np.array(
            [self.pitch, self.range, self.rate, self.volume, self.gap], dtype=np.float64
        )

    @classmethod
    def from_vector(cls, values: Sequence[float]) -> Prosody:
        return cls(*(float(v) for v in values))

    def rounded(self) -> Prosody:
        """Integer settings, as espeak-ng applies them (it truncates SSML values to integers)."""
        low = np.array([5, 0, 40, 10, 0])
        high = np.array([300, 400, 250, 300, 30])
        values = np.clip(np.rint(self.vector()), low, high)
        return Prosody.from_vector(values)

    def ssml(self, text: str) -> str:
        p = self.rounded()
        return (
            f'<speak><prosody pitch="{p.pitch:.0f}%" range="{p.range:.0f}%" '
            f'rate="{p.rate:.0f}%" volume="{p.volume:.0f}%">{html.escape(text)}</prosody></speak>'
        )


NEUTRAL_SETTINGS = Prosody(pitch=100, range=100, rate=100, volume=100, gap=0)

# Emotion profiles as deviations from a speaker's neutral settings. Directions follow the vocal
# correlates of emotion in acted speech (Scherer 2003; Banse & Scherer 1996): happy and angry are
# higher, wider, faster and louder than neutral (angry louder and faster, happy wider); sad is
# lower, flatter, slower, softer and pausier. Magnitudes are tuned so that happy and angry overlap
# while both stay apart from neutral, which keeps a planted bias detectable (see
# docs/synthetic-corpus.md for the measured separability).
EMOTION_PROFILES: dict[str, Prosody] = {
    "neutral": Prosody(),
    "happy": Prosody(pitch=30, range=60, rate=10, volume=20, gap=0),
    "sad": Prosody(pitch=-16, range=-45, rate=-18, volume=-25, gap=3),
    "angry": Prosody(pitch=25, range=30, rate=20, volume=55, gap=0),
}

# Random variation, in the units of Prosody: a speaker's own neutral settings, how strongly the
# speaker expresses each emotion (a scale per emotion and a per-dimension wobble) and the
# per-utterance jitter.
SPEAKER_BASE_SD = Prosody(pitch=8, range=15, rate=8, volume=0, gap=0.5)
SPEAKER_SCALE_RANGE = (0.6, 1.3)
SPEAKER_DIMENSION_SD = 0.25
UTTERANCE_JITTER_SD = Prosody(pitch=8, range=20, rate=6, volume=12, gap=1.2)
GAIN_DB_RANGE = (-6.0, 6.0)
SNR_DB_RANGE = (15.0, 40.0)


@dataclass(frozen=True)
class Bias:
    """Make one emotion's prosody differ by gender on purpose (a controlled fairness test bed).

    For speakers of ``gender``, the ``emotion`` profile is moved toward ``toward`` by ``strength``
    (0 = unchanged, 1 = identical to ``toward``'s profile): ``angry:female`` renders female anger
    with neutral prosody, so a classifier cannot tell the two apart for women but can for men.
    """

    emotion: str
    gender: str
    strength: float = 1.0
    toward: str = "neutral"

    def __post_init__(self) -> None:
        if self.emotion not in LABELS:
            raise SynthesisError(
                f"bias emotion {self.emotion!r} is not one of {', '.join(LABELS)}."
            )
        if self.toward not in LABELS:
            raise SynthesisError(f"bias target {self.toward!r} is not one of {', '.join(LABELS)}.")
        if self.emotion == self.toward:
            raise SynthesisError(
                f"bias {self.emotion}:{self.gender} would move {self.emotion!r} toward itself; "
                "pick another emotion (neutral is the default target)."
            )
        if self.gender not in GENDERS:
            raise SynthesisError(f"bias gender {self.gender!r} is not one of {', '.join(GENDERS)}.")
        if not 0.0 < self.strength <= 1.0 or math.isnan(self.strength):
            raise SynthesisError(f"bias strength must lie in (0, 1], got {self.strength!r}.")

    def __str__(self) -> str:
        text = f"{self.emotion}:{self.gender}:{self.strength:g}"
        return text if self.toward == "neutral" else f"{text}:{self.toward}"

    def applies(self, emotion: str, gender: str) -> bool:
        return emotion == self.emotion and gender == self.gender


@dataclass(frozen=True)
class PitchStats:
    """Summary of an f0 track: median in Hz, spread in semitones, share of voiced frames."""

    median_hz: float
    range_semitones: float  # 90th minus 10th percentile of f0 in semitones
    voiced_fraction: float


@dataclass(frozen=True)
class _Job:
    utterance_id: str
    speaker: str
    voice: Voice
    emotion: str
    sentence: int
    prosody: Prosody  # absolute settings, already rounded
    biased: bool
    gain_db: float
    snr_db: float
    noise_seed: int
    voice_gain: float


@dataclass(frozen=True)
class _Rendered:
    num_frames: int
    peak_scale: float
    clean: PitchStats


# --- espeak-ng -----------------------------------------------------------------------------------

_INSTALL_HINT = (
    "install espeak-ng: Debian/Ubuntu `sudo apt-get install espeak-ng` (or `make system-deps` as "
    "root); macOS `brew install espeak-ng`; Windows: the .msi from "
    "https://github.com/espeak-ng/espeak-ng/releases, then add its folder to PATH. Or point "
    "TRUSTSER_ESPEAK at the executable."
)


def find_espeak() -> str:
    """Path of the espeak-ng executable (``$TRUSTSER_ESPEAK`` first, then PATH)."""
    override = os.environ.get("TRUSTSER_ESPEAK")
    if override:
        found = shutil.which(override)
        if found is None:
            raise EspeakNotFoundError(
                f"TRUSTSER_ESPEAK={override!r} is not an executable; unset it or {_INSTALL_HINT}"
            )
        return found
    found = shutil.which("espeak-ng")
    if found is None:
        raise EspeakNotFoundError(
            "espeak-ng was not found on PATH; the synthetic corpus needs it to render speech. "
            + _INSTALL_HINT
        )
    return found


@lru_cache(maxsize=8)
def espeak_version(executable: str) -> str:
    """``"espeak-ng 1.51"``-style version of ``executable`` (recorded with the corpus)."""
    result = _run([executable, "--version"], what="espeak-ng --version")
    match = re.search(r"text-to-speech:\s*(\S+)", result.decode(errors="replace"))
    return f"espeak-ng {match.group(1) if match else 'unknown'}"


@lru_cache(maxsize=8)
def _variants(executable: str) -> frozenset[str]:
    """Variant names (``f3``, ``Andrea``) espeak-ng knows, from ``--voices=variant``."""
    listing = _run([executable, "--voices=variant"], what="espeak-ng --voices=variant")
    names = set()
    for line in listing.decode(errors="replace").splitlines()[1:]:
        parts = line.split()
        for part in parts:
            if part.startswith("!v/"):
                names.add(part[3:].lower())
    return frozenset(names)


def _run(command: list[str], *, what: str) -> bytes:
    try:
        result = subprocess.run(command, capture_output=True, check=False, timeout=60)
    except OSError as error:
        raise SynthesisError(f"could not run {what}: {error}. {_INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what} did not finish within 60 s.") from None
    if result.returncode != 0:
        message = (
            result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
        )
        raise SynthesisError(f"{what} failed: {message}")
    return result.stdout


def _speak(executable: str, voice: str, prosody: Prosody, text: str) -> np.ndarray:
    """Render ``text`` with espeak-ng and return it as float64 at :data:`SAMPLE_RATE`."""
    settings = prosody.rounded()
    command = [
        executable,
        "--stdout",
        "-m",
        "-v",
        voice,
        "-a",
        str(ESPEAK_AMPLITUDE),
        "-g",
        str(int(settings.gap)),
        settings.ssml(text),
    ]
    raw = _run(command, what=f"espeak-ng (voice {voice!r})")
    try:
        data, rate = sf.read(io.BytesIO(raw), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as error:
        raise SynthesisError(
            f"espeak-ng (voice {voice!r}) returned no readable audio ({error})."
        ) from None
    mono = data.mean(axis=1)
    if mono.size == 0 or not np.any(mono):
        raise SynthesisError(f"espeak-ng (voice {voice!r}) returned silence for {text!r}.")
    if rate != SAMPLE_RATE:
        gcd = math.gcd(int(rate), SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // gcd, int(rate) // gcd)
    return mono


# --- pitch ---------------------------------------------------------------------------------------


def estimate_f0(
    waveform: np.ndarray,
    sample_rate: int,
    *,
    fmin: float = 60.0,
    fmax: float = 500.0,
    hop_seconds: float = 0.01,
    threshold: float = 0.25,
    analysis_rate: int = 8_000,
) -> np.ndarray:
    """Frame-wise f0 in Hz (NaN where unvoiced), by the YIN method (de Cheveigné & Kawahara 2002).

    Per frame, the difference function :math:`d(\\tau) = \\sum_j (x_j - x_{j+\\tau})^2` over a
    25 ms window is normalised by its cumulative mean; the first lag in ``[sr/fmax, sr/fmin]``
    where it drops below ``threshold`` (refined to the local minimum and parabolically
    interpolated) is the period. Frames more than 20 dB below the loud frames are unvoiced.
    Audio above ``analysis_rate`` is resampled to it first (f0 up to 500 Hz needs no more, and
    it is 3x faster). Used to check that voices match their gender label and to measure prosody,
    not as a general-purpose pitch tracker.
    """
    x = np.asarray(waveform, dtype=np.float64).ravel()
    if sample_rate > analysis_rate:
        gcd = math.gcd(int(sample_rate), int(analysis_rate))
        x = resample_poly(x, analysis_rate // gcd, int(sample_rate) // gcd)
        sample_rate = analysis_rate
    lo = max(2, int(sample_rate // fmax))
    hi = math.ceil(sample_rate / fmin)
    window = round(0.025 * sample_rate)
    length = window + hi + 1
    hop = max(1, round(hop_seconds * sample_rate))
    if x.size < length:
        return np.full(0, np.nan)
    frames = np.lib.stride_tricks.sliding_window_view(x, length)[::hop]
    nfft = next_fast_len(length + window)
    head = np.fft.rfft(frames[:, :window], nfft)
    cross = np.fft.irfft(np.conj(head) * np.fft.rfft(frames, nfft), nfft)[:, : hi + 1]
    energy = np.cumsum(np.pad(frames**2, ((0, 0), (1, 0))), axis=1)
    shifted = energy[:, window : window + hi + 1] - energy[:, : hi + 1]
    diff = np.maximum(shifted[:, :1] + shifted - 2.0 * cross, 0.0)
    taus = np.arange(1, hi + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * taus / np.maximum(np.cumsum(diff[:, 1:], axis=1), 1e-12)
    search = cmnd[:, lo : hi + 1]
    below = search < threshold
    voiced = below.any(axis=1)
    index = np.argmax(below, axis=1)
    rows = np.arange(search.shape[0])
    last = search.shape[1] - 1
    while True:  # walk down to the local minimum that follows the first dip
        step = np.minimum(index + 1, last)
        move = voiced & (step != index) & (search[rows, step] < search[rows, index])
        if not move.any():
            break
        index = np.where(move, step, index)
    left = search[rows, np.maximum(index - 1, 0)]
    centre = search[rows, index]
    right = search[rows, np.minimum(index + 1, last)]
    curvature = left - 2.0 * centre + right
    safe = np.where(np.abs(curvature) > 1e-12, curvature, 1.0)
    offset = np.where(np.abs(curvature) > 1e-12, 0.5 * (left - right) / safe, 0.0)
    f0 = sample_rate / (index + lo + np.clip(offset, -1.0, 1.0))
    loudness = shifted[:, 0]
    loud = loudness > 0.01 * np.percentile(loudness, 95)
    return np.where(voiced & loud, f0, np.nan)


def pitch_stats(f0: np.ndarray) -> PitchStats:
    """Median and 10-90 % spread of an f0 track; frames over 10 semitones off the median
    (octave errors) are left out of the spread. Fewer than 5 voiced frames give NaNs."""
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = f0[np.isfinite(f0)]
    fraction = float(voiced.size / f0.size) if f0.size else 0.0
    if voiced.size < 5:
        return PitchStats(math.nan, math.nan, fraction)
    median = float(np.median(voiced))
    semitones = 12.0 * np.log2(voiced / median)
    semitones = semitones[np.abs(semitones) <= 10.0]
    spread = float(np.percentile(semitones, 90) - np.percentile(semitones, 10))
    return PitchStats(median, spread, fraction)


def _active_rms(x: np.ndarray) -> float:
    """RMS over 20 ms frames within 30 dB of the loudest ones (speech, not trailing silence)."""
    frame = SAMPLE_RATE // 50
    usable = x[: x.size - x.size % frame].reshape(-1, frame) if x.size >= frame else x[None, :]
    power = (usable**2).mean(axis=1)
    active = power[power >= 1e-3 * np.percentile(power, 95)]
    return float(math.sqrt(active.mean())) if active.size else 0.0


# --- voices and biases ---------------------------------------------------------------------------


def parse_voice(text: str) -> Voice:
    """``"en+f3:female"`` → :class:`Voice`."""
    name, sep, gender = text.rpartition(":")
    if not sep or not name:
        raise VoiceError(
            f"voice {text!r}: expected NAME:GENDER, e.g. 'en+f3:female' or 'en+m3:male'."
        )
    return Voice(name.strip(), gender.strip().lower())


def parse_bias(text: str) -> Bias:
    """``"angry:female"``, ``"angry:female:0.8"`` or ``"happy:male:0.5:sad"`` → :class:`Bias`."""
    parts = [p.strip().lower() for p in text.split(":")]
    if len(parts) not in (2, 3, 4) or not all(parts):
        raise SynthesisError(
            f"bias {text!r}: expected EMOTION:GENDER[:STRENGTH[:TOWARD]], e.g. 'angry:female' or "
            "'angry:female:0.8'."
        )
    strength = 1.0
    if len(parts) >= 3:
        try:
            strength = float(parts[2])
        except ValueError:
            raise SynthesisError(
                f"bias {text!r}: strength {parts[2]!r} is not a number in (0, 1]."
            ) from None
    toward = parts[3] if len(parts) == 4 else "neutral"
    return Bias(parts[0], parts[1], strength, toward)


def check_voice(
    voice: Voice,
    *,
    executable: str | None = None,
    settings: Prosody = NEUTRAL_SETTINGS,
    boundary_hz: float = GENDER_F0_BOUNDARY_HZ,
) -> tuple[PitchStats, float]:
    """Render a calibration sentence and check the voice really sounds like its gender label.

    Returns the pitch statistics and the clip's active RMS. Raises :class:`VoiceError` when the
    variant does not exist or the median f0 lies on the wrong side of ``boundary_hz`` (espeak-ng
    silently falls back to its default male voice for some names, e.g. ``en-gb+f3`` in 1.51).
    """
    executable = executable or find_espeak()
    _, plus, variant = voice.name.partition("+")
    if plus and variant.lower() not in _variants(executable):
        raise VoiceError(
            f"voice {voice.name!r}: espeak-ng has no variant {variant!r}; list them with "
            "`espeak-ng --voices=variant`."
        )
    audio = _speak(executable, voice.name, settings, CALIBRATION_TEXT)
    stats = pitch_stats(estimate_f0(audio, SAMPLE_RATE))
    if math.isnan(stats.median_hz):
        raise VoiceError(
            f"voice {voice.name!r}: no voiced speech detected in its calibration clip."
        )
    wrong = (
        stats.median_hz < boundary_hz
        if voice.gender == "female"
        else stats.median_hz >= boundary_hz
    )
    if wrong:
        side = ">=" if voice.gender == "female" else "<"
        raise VoiceError(
            f"voice {voice.name!r} is labelled {voice.gender} but its median f0 is "
            f"{stats.median_hz:.0f} Hz (expected {side} {boundary_hz:.0f} Hz). espeak-ng may have "
            "ignored the variant (in 1.51 'en-gb+f3' speaks the default male voice; 'en+f3' "
            "works): pick another voice or fix its label."
        )
    return stats, _active_rms(audio)


# --- planning --------------------------------------------------------------------------------------


def _check_sizes(
    num_speakers: int, num_sentences: int, voices: Sequence[tuple[Voice, Voice]]
) -> None:
    if num_speakers < 6 or num_speakers % 2:
        raise SynthesisError(
            f"num_speakers={num_speakers}: use an even number >= 6 (female/male pairs; three pairs "
            "are the fewest that give train, dev and test speakers)."
        )
    if num_speakers > 2 * len(voices):
        raise SynthesisError(
            f"num_speakers={num_speakers}: only {len(voices)} female/male voice pairs are "
            f"available, so at most {2 * len(voices)} speakers; pass more voices."
        )
    if not 1 <= num_sentences <= len(SENTENCES):
        raise SynthesisError(
            f"num_sentences={num_sentences}: choose 1 to {len(SENTENCES)} sentences per speaker."
        )


def _pair_voices(voices: Sequence[Voice | tuple[Voice, Voice]]) -> tuple[tuple[Voice, Voice], ...]:
    """Accept ready pairs, or a flat list that is paired female-with-male in order."""
    if all(isinstance(v, tuple) for v in voices):
        pairs = tuple((a, b) for a, b in voices)  # type: ignore[misc]
    else:
        flat = [v for v in voices if isinstance(v, Voice)]
        females = [v for v in flat if v.gender == "female"]
        males = [v for v in flat if v.gender == "male"]
        if len(females) != len(males) or len(flat) != len(voices):
            raise VoiceError(
                f"voices: got {len(females)} female and {len(males)} male voices; give as many of "
                "each (speakers come in female/male pairs, one pair per fold)."
            )
        pairs = tuple(zip(females, males, strict=True))
    for female, male in pairs:
        if (female.gender, male.gender) != ("female", "male"):
            raise VoiceError(
                f"voice pair ({female.name!r}, {male.name!r}): expected a female then a male voice."
            )
    names = [v.name for pair in pairs for v in pair]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise VoiceError(
            f"voices: {duplicates} appear more than once; each speaker needs its own voice."
        )
    return pairs


def _speaker_id(voice: Voice, index: int) -> str:
    return f"synth_{voice.gender[0]}{index + 1:02d}"


@dataclass(frozen=True)
class _Speaker:
    id: str
    voice: Voice
    base: Prosody
    scales: dict[str, Prosody]  # per emotion: multiplier per dimension of the emotion profile
    sentences: tuple[int, ...]


def _plan_speakers(
    pairs: Sequence[tuple[Voice, Voice]], *, num_speakers: int, num_sentences: int, seed: int
) -> list[_Speaker]:
    """Per-speaker random draws.

    Each speaker has its own seed stream, so speaker k's settings do not depend on how many
    speakers or sentences are asked for. The expressiveness level of each emotion is drawn once
    per female/male pair and shared by both voices: without a bias, neither gender expresses any
    emotion more strongly by construction, so a bias is the only systematic gender difference.
    """
    root = np.random.SeedSequence([GENERATOR_VERSION, seed])
    pair_streams, speaker_streams = root.spawn(2)
    num_pairs = num_speakers // 2
    levels = [
        np.random.default_rng(child).uniform(*SPEAKER_SCALE_RANGE, size=len(LABELS))
        for child in pair_streams.spawn(num_pairs)
    ]
    voices = [v for pair in pairs[:num_pairs] for v in pair]
    speakers = []
    for index, (voice, child) in enumerate(
        zip(voices, speaker_streams.spawn(num_speakers), strict=True)
    ):
        rng = np.random.default_rng(child)
        # truncated at 2 SD, so no voice is pushed across the gender check's f0 boundary
        spread = np.clip(rng.standard_normal(5), -2.0, 2.0)
        base = NEUTRAL_SETTINGS.vector() + spread * SPEAKER_BASE_SD.vector()
        scales = {}
        for emotion_index, emotion in enumerate(LABELS):
            wobble = 1.0 + SPEAKER_DIMENSION_SD * rng.standard_normal(5)
            level = levels[index // 2][emotion_index]
            scales[emotion] = Prosody.from_vector(np.clip(level * wobble, 0.2, 2.0))
        order = rng.permutation(len(SENTENCES))[:num_sentences]
        pair_index = index // 2
        speakers.append(
            _Speaker(
                id=_speaker_id(voice, pair_index),
                voice=voice,
                base=Prosody.from_vector(base),
                scales=scales,
                sentences=tuple(sorted(int(s) for s in order)),
            )
        )
    return speakers


def _plan_jobs(
    speakers: Sequence[_Speaker],
    voice_gains: Mapping[str, float],
    *,
    seed: int,
    biases: Sequence[Bias],
) -> list[_Job]:
    jobs = []
    for speaker_index, speaker in enumerate(speakers):
        for sentence in speaker.sentences:
            for emotion_index, emotion in enumerate(LABELS):
                # One stream per clip: its draws never depend on other clips or on the biases.
                stream = np.random.SeedSequence(
                    [GENERATOR_VERSION, seed, speaker_index, sentence, emotion_index]
                )
                rng = np.random.default_rng(stream)
                jitter = rng.standard_normal(5) * UTTERANCE_JITTER_SD.vector()
                gain_db = float(rng.uniform(*GAIN_DB_RANGE))
                snr_db = float(rng.uniform(*SNR_DB_RANGE))
                noise_seed = int(rng.integers(2**63 - 1))
                deviation = EMOTION_PROFILES[emotion].vector() * speaker.scales[emotion].vector()
                biased = False
                for bias in biases:
                    if bias.applies(emotion, speaker.voice.gender):
                        target = (
                            EMOTION_PROFILES[bias.toward].vector()
                            * speaker.scales[bias.toward].vector()
                        )
                        deviation = deviation + bias.strength * (target - deviation)
                        biased = True
                settings = Prosody.from_vector(speaker.base.vector() + deviation + jitter).rounded()
                jobs.append(
                    _Job(
                        utterance_id=f"{speaker.id}_s{sentence + 1:02d}_{emotion}",
                        speaker=speaker.id,
                        voice=speaker.voice,
                        emotion=emotion,
                        sentence=sentence,
                        prosody=settings,
                        biased=biased,
                        gain_db=round(gain_db, 3),
                        snr_db=round(snr_db, 3),
                        noise_seed=noise_seed,
                        voice_gain=voice_gains[speaker.voice.name],
                    )
                )
    return jobs


# --- rendering -----------------------------------------------------------------------------------


def _render(job: _Job, executable: str, wav_dir: Path) -> _Rendered:
    clean = _speak(executable, job.voice.name, job.prosody, SENTENCES[job.sentence])
    stats = pitch_stats(estimate_f0(clean, SAMPLE_RATE))
    signal = clean * job.voice_gain * 10.0 ** (job.gain_db / 20.0)
    rng = np.random.default_rng(job.noise_seed)
    noise_rms = _active_rms(signal) / 10.0 ** (job.snr_db / 20.0)
    noisy = signal + noise_rms * rng.standard_normal(signal.size)
    peak = float(np.abs(noisy).max())
    peak_scale = min(1.0, 0.99 / peak) if peak > 0 else 1.0
    noisy = (noisy * peak_scale).astype(np.float32)
    sf.write(str(wav_dir / f"{job.utterance_id}.wav"), noisy, SAMPLE_RATE, subtype="PCM_16")
    return _Rendered(num_frames=int(noisy.size), peak_scale=peak_scale, clean=stats)


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(float(value), digits)


def _utterance(job: _Job, rendered: _Rendered) -> Utterance:
    custom: dict[str, Any] = {
        "voice": job.voice.name,
        "sentence": job.sentence + 1,
        "prosody": {k: int(v) for k, v in asdict(job.prosody).items()},
        "biased": job.biased,
        "gain_db": job.gain_db,
        "snr_db": job.snr_db,
        "f0_median_hz": _round(rendered.clean.median_hz, 2),
        "f0_range_st": _round(rendered.clean.range_semitones, 3),
    }
    if rendered.peak_scale < 1.0:
        custom["peak_scale"] = round(rendered.peak_scale, 4)
    return Utterance(
        id=job.utterance_id,
        path=f"{WAV_DIR}/{job.utterance_id}.wav",
        speaker=job.speaker,
        gender=job.voice.gender,
        emotion=job.emotion,
        duration=round(rendered.num_frames / SAMPLE_RATE, 6),
        sample_rate=SAMPLE_RATE,
        num_frames=rendered.num_frames,
        text=SENTENCES[job.sentence],
        custom=custom,
    )


def _render_all(
    jobs: Sequence[_Job],
    executable: str,
    wav_dir: Path,
    *,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[_Rendered]:
    """espeak-ng runs as subprocesses, so a thread pool keeps every core busy."""
    results: list[_Rendered | None] = [None] * len(jobs)
    finished = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_render, job, executable, wav_dir): i for i, job in enumerate(jobs)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    results[futures[future]] = future.result()  # re-raises a worker's error
                    finished += 1
                    if progress is not None:
                        progress(finished, len(jobs))
        except BaseException:  # an error or Ctrl-C: drop the queued clips, not just the failed one
            for future in pending:
                future.cancel()
            raise
    return [r for r in results if r is not None]


# --- public entry points -------------------------------------------------------------------------


def _version_string(
    *, seed: int, num_speakers: int, num_sentences: int, biases: Sequence[Bias], espeak: str
) -> str:
    bias_text = ",".join(str(b) for b in biases) or "none"
    return (
        f"synth-v{GENERATOR_VERSION} seed={seed} speakers={num_speakers} "
        f"sentences={num_sentences} bias={bias_text} ({espeak})"
    )


def _config(
    *,
    seed: int,
    num_speakers: int,
    num_sentences: int,
    biases: Sequence[Bias],
    pairs: Sequence[tuple[Voice, Voice]],
    espeak: str,
) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "num_speakers": num_speakers,
        "num_sentences": num_sentences,
        "bias": [asdict(b) for b in biases],
        "voices": [asdict(v) for pair in pairs[: num_speakers // 2] for v in pair],
        "espeak": espeak,
    }


def _existing(out_dir: Path, config: dict[str, Any]) -> tuple[Manifest | None, bool]:
    """``(manifest, same_settings)`` for what is already at ``out_dir``.

    The manifest is returned only when the corpus there was made with exactly ``config`` and is
    complete (manifest valid, every file present); ``same_settings`` tells a damaged corpus of the
    same settings (safe to render again) from one made with other settings.
    """
    config_path, manifest_path = out_dir / CONFIG_NAME, out_dir / MANIFEST_NAME
    if not (config_path.is_file() and manifest_path.is_file()):
        return None, False
    try:
        previous = json.loads(config_path.read_text(encoding="utf-8")).get("config")
    except (ValueError, OSError, AttributeError):
        return None, False
    if previous != config:
        return None, False
    try:
        manifest = read_manifest(manifest_path)
    except (ManifestError, OSError):
        return None, True
    if manifest.corpus != NAME:
        return None, False
    return replace(manifest, root=str(out_dir.resolve())), True


def synthesize(
    out_dir: str | os.PathLike,
    *,
    size: str = "default",
    num_speakers: int | None = None,
    num_sentences: int | None = None,
    seed: int = 0,
    bias: Bias | str | Sequence[Bias | str] = (),
    voices: Sequence[Voice | str | tuple[Voice, Voice]] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Render the synthetic corpus into ``out_dir`` and return its manifest (absolute paths).

    ``size`` picks a preset of :data:`SIZES`; ``num_speakers`` and ``num_sentences`` override it.
    ``num_speakers`` (even, >= 6) voices are taken pair by pair from ``voices`` (default
    :data:`VOICES`; ``"en+f3:female"`` strings are accepted); each says ``num_sentences`` of
    :data:`SENTENCES` in all four emotions, so the corpus has ``num_speakers * num_sentences * 4``
    clips and ``num_speakers / 2`` folds. ``bias`` (``"angry:female"`` or :class:`Bias`, several
    allowed) moves one emotion's prosody toward another for one gender. Each voice is checked
    first (:func:`check_voice`).

    An existing complete corpus made with the same settings is reused; a different one is
    replaced only with ``overwrite=True``. ``progress(done, total)`` is called after each clip
    rendered.
    """
    if size not in SIZES:
        raise SynthesisError(f"size={size!r} is not a preset; choose one of {', '.join(SIZES)}.")
    num_speakers = SIZES[size][0] if num_speakers is None else num_speakers
    num_sentences = SIZES[size][1] if num_sentences is None else num_sentences
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SynthesisError(f"seed must be a non-negative integer, got {seed!r}.")
    if voices is not None:
        voices = [parse_voice(v) if isinstance(v, str) else v for v in voices]
    pairs = _pair_voices(VOICES if voices is None else voices)
    _check_sizes(num_speakers, num_sentences, pairs)
    items = [bias] if isinstance(bias, (str, Bias)) else list(bias)
    biases = tuple(parse_bias(b) if isinstance(b, str) else b for b in items)
    targets = [(b.emotion, b.gender) for b in biases]
    if len(set(targets)) != len(targets):
        raise SynthesisError(f"bias: {targets} names the same emotion and gender twice.")
    workers = workers if workers is not None else max(1, os.cpu_count() or 1)
    if workers < 1:
        raise SynthesisError(f"workers must be >= 1, got {workers}.")

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthesisError(f"{str(out_dir)!r} is a file; the corpus needs a directory.")
    executable = find_espeak()
    espeak = espeak_version(executable)
    config = _config(
        seed=seed,
        num_speakers=num_speakers,
        num_sentences=num_sentences,
        biases=biases,
        pairs=pairs,
        espeak=espeak,
    )
    existing, same_settings = _existing(out_dir, config)
    if existing is not None:
        return existing
    if (out_dir / MANIFEST_NAME).exists() and not (overwrite or same_settings):
        raise SynthesisError(
            f"{out_dir} already holds a corpus made with other settings ({MANIFEST_NAME}); pass "
            "overwrite=True (--overwrite) to replace it, or choose another directory."
        )

    speakers = _plan_speakers(
        pairs, num_speakers=num_speakers, num_sentences=num_sentences, seed=seed
    )
    calibration: dict[str, tuple[PitchStats, float]] = {}
    for speaker in speakers:
        calibration[speaker.voice.name] = check_voice(
            speaker.voice, executable=executable, settings=speaker.base.rounded()
        )
    voice_gains = {
        name: TARGET_ACTIVE_RMS / rms if rms > 0 else 1.0 for name, (_, rms) in calibration.items()
    }
    jobs = _plan_jobs(speakers, voice_gains, seed=seed, biases=biases)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # absent manifest = incomplete corpus
    wav_dir = out_dir / WAV_DIR
    wav_dir.mkdir(exist_ok=True)
    wanted = {f"{job.utterance_id}.wav" for job in jobs}
    for stale in wav_dir.glob("synth_*.wav"):
        if stale.name not in wanted:
            stale.unlink()

    rendered = _render_all(jobs, executable, wav_dir, workers=workers, progress=progress)

    utterances = tuple(_utterance(job, result) for job, result in zip(jobs, rendered, strict=True))
    groups = [
        [_speaker_id(f, i), _speaker_id(m, i)]
        for i, (f, m) in enumerate(pairs[: num_speakers // 2])
    ]
    manifest = Manifest(
        corpus=NAME,
        utterances=tuple(sorted(utterances, key=lambda u: u.id)),
        folds=rotating_folds(groups, by="speaker"),
        fold_scheme=FOLD_SCHEME,
        version=_version_string(
            seed=seed,
            num_speakers=num_speakers,
            num_sentences=num_sentences,
            biases=biases,
            espeak=espeak,
        ),
        labels=LABELS,
    )
    absolute = replace(
        manifest,
        utterances=tuple(u.with_path(str((out_dir / u.path).resolve())) for u in manifest),
        root=str(out_dir.resolve()),
    )
    validate(absolute)
    details = {
        "config": config,
        "profiles": {k: asdict(v) for k, v in EMOTION_PROFILES.items()},
        "speakers": [
            {
                "id": s.id,
                "voice": s.voice.name,
                "gender": s.voice.gender,
                "neutral_settings": asdict(s.base.rounded()),
                "emotion_scales": {k: _rounded_dict(v) for k, v in s.scales.items()},
                "sentences": [i + 1 for i in s.sentences],
                "calibration_f0_median_hz": round(calibration[s.voice.name][0].median_hz, 2),
                "level_gain": round(voice_gains[s.voice.name], 4),
            }
            for s in speakers
        ],
    }
    tmp = out_dir / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(details, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / CONFIG_NAME)
    write_manifest(manifest, out_dir / MANIFEST_NAME)  # relative paths: the folder can move
    return absolute


def _rounded_dict(prosody: Prosody) -> dict[str, float]:
    return {k: round(v, 4) for k, v in asdict(prosody).items()}


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> Manifest:
    """Manifest of a corpus already rendered by :func:`synthesize` (``trustser data synth``).

    ``out`` (optional) receives a copy with absolute paths; an existing ``out`` prepared from the
    same ``root`` is reused unless ``overwrite``.
    """
    root = Path(root)
    existing = reuse_existing(out, NAME, root=root, overwrite=overwrite)
    if existing is not None:
        return existing
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise CorpusLayoutError(
            f"synth: {str(path)!r} does not exist; render the corpus first with "
            f"`trustser data synth -o {root}`."
        )
    manifest = read_manifest(path)
    if manifest.corpus != NAME:
        raise CorpusLayoutError(
            f"synth: {str(path)!r} is a {manifest.corpus!r} manifest, not a synthetic corpus."
        )
    manifest = replace(manifest, root=str(root.resolve()))
    if out is not None:
        write_manifest(manifest, out)
    return manifest
