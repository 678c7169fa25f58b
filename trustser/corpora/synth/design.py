"""What the synthetic corpus is made of: sentences, voices, prosody, emotion profiles and biases.

Also the corpus constants (name, labels, sizes, folds, file names). Everything here is fixed
data and its parsing; the random draws that combine it into clips live in
:mod:`trustser.corpora.synth.plan`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trustser.corpora.synth.errors import SynthesisError, VoiceError
from trustser.manifest import EMOTIONS, GENDERS

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_NUM_SENTENCES",
    "DEFAULT_NUM_SPEAKERS",
    "EMOTION_PROFILES",
    "FOLD_SCHEME",
    "GAIN_DB_RANGE",
    "GENERATOR_VERSION",
    "LABELS",
    "MANIFEST_NAME",
    "NAME",
    "NEUTRAL_SETTINGS",
    "NUM_FOLDS",
    "SAMPLE_RATE",
    "SENTENCES",
    "SIZES",
    "SNR_DB_RANGE",
    "SOURCE",
    "SPEAKER_BASE_SD",
    "SPEAKER_DIMENSION_SD",
    "SPEAKER_SCALE_RANGE",
    "UTTERANCE_JITTER_SD",
    "VOICES",
    "WAV_DIR",
    "Bias",
    "Prosody",
    "Voice",
    "parse_bias",
    "parse_voice",
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
