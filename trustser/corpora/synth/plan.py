"""The random draws that turn the design into clips: speakers, then one job per clip.

Every draw comes from a NumPy generator seeded from ``SeedSequence([GENERATOR_VERSION, seed,
...])``: one stream per voice pair, one per speaker and one per clip, so a clip does not depend
on how many others are asked for, and a bias changes exactly the clips it targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trustser.corpora.synth.design import (
    EMOTION_PROFILES,
    GAIN_DB_RANGE,
    GENERATOR_VERSION,
    LABELS,
    NEUTRAL_SETTINGS,
    SENTENCES,
    SNR_DB_RANGE,
    SPEAKER_BASE_SD,
    SPEAKER_DIMENSION_SD,
    SPEAKER_SCALE_RANGE,
    UTTERANCE_JITTER_SD,
    Bias,
    Prosody,
    Voice,
)
from trustser.corpora.synth.errors import SynthesisError, VoiceError

__all__ = [
    "Job",
    "Speaker",
    "check_sizes",
    "pair_voices",
    "plan_jobs",
    "plan_speakers",
    "speaker_id",
]


@dataclass(frozen=True)
class Speaker:
    """One voice and its own draws: neutral settings, expressiveness per emotion, sentences."""

    id: str
    voice: Voice
    base: Prosody
    scales: dict[str, Prosody]  # per emotion: multiplier per dimension of the emotion profile
    sentences: tuple[int, ...]


@dataclass(frozen=True)
class Job:
    """Everything that defines one clip, decided before any audio is rendered."""

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


def check_sizes(
    num_speakers: int, num_sentences: int, voices: Sequence[tuple[Voice, Voice]]
) -> None:
    """Refuse speaker and sentence counts the voices and sentences cannot supply."""
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


def pair_voices(voices: Sequence[Voice | tuple[Voice, Voice]]) -> tuple[tuple[Voice, Voice], ...]:
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


def speaker_id(voice: Voice, index: int) -> str:
    """``synth_f03``: gender initial and 1-based pair number (also the fold's group)."""
    return f"synth_{voice.gender[0]}{index + 1:02d}"


def plan_speakers(
    pairs: Sequence[tuple[Voice, Voice]], *, num_speakers: int, num_sentences: int, seed: int
) -> list[Speaker]:
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
            Speaker(
                id=speaker_id(voice, pair_index),
                voice=voice,
                base=Prosody.from_vector(base),
                scales=scales,
                sentences=tuple(sorted(int(s) for s in order)),
            )
        )
    return speakers


def plan_jobs(
    speakers: Sequence[Speaker],
    voice_gains: Mapping[str, float],
    *,
    seed: int,
    biases: Sequence[Bias],
) -> list[Job]:
    """One job per speaker, sentence and emotion, in that order; ``voice_gains`` by voice name."""
    return [
        _plan_clip(
            speaker,
            speaker_index,
            sentence,
            emotion_index,
            seed=seed,
            biases=biases,
            voice_gain=voice_gains[speaker.voice.name],
        )
        for speaker_index, speaker in enumerate(speakers)
        for sentence in speaker.sentences
        for emotion_index in range(len(LABELS))
    ]


def _plan_clip(
    speaker: Speaker,
    speaker_index: int,
    sentence: int,
    emotion_index: int,
    *,
    seed: int,
    biases: Sequence[Bias],
    voice_gain: float,
) -> Job:
    emotion = LABELS[emotion_index]
    # One stream per clip: its draws never depend on other clips or on the biases.
    stream = np.random.SeedSequence(
        [GENERATOR_VERSION, seed, speaker_index, sentence, emotion_index]
    )
    rng = np.random.default_rng(stream)
    jitter = rng.standard_normal(5) * UTTERANCE_JITTER_SD.vector()
    gain_db = float(rng.uniform(*GAIN_DB_RANGE))
    snr_db = float(rng.uniform(*SNR_DB_RANGE))
    noise_seed = int(rng.integers(2**63 - 1))
    deviation, biased = _emotion_deviation(speaker, emotion, biases)
    settings = Prosody.from_vector(speaker.base.vector() + deviation + jitter).rounded()
    return Job(
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
        voice_gain=voice_gain,
    )


def _emotion_deviation(
    speaker: Speaker, emotion: str, biases: Sequence[Bias]
) -> tuple[np.ndarray, bool]:
    """The speaker's deviation from neutral for ``emotion``, moved by any bias that applies;
    and whether one did."""
    deviation = EMOTION_PROFILES[emotion].vector() * speaker.scales[emotion].vector()
    biased = False
    for bias in biases:
        if bias.applies(emotion, speaker.voice.gender):
            target = EMOTION_PROFILES[bias.toward].vector() * speaker.scales[bias.toward].vector()
            deviation = deviation + bias.strength * (target - deviation)
            biased = True
    return deviation, biased
