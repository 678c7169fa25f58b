"""The voice check: every voice says a calibration sentence before it may render the corpus.

espeak-ng silently falls back to its default male voice for some names, so a voice is refused
unless its variant exists and its measured median f0 matches its gender label.
"""

from __future__ import annotations

import math

from trustser.corpora.synth.design import NEUTRAL_SETTINGS, SAMPLE_RATE, Prosody, Voice
from trustser.corpora.synth.errors import VoiceError
from trustser.corpora.synth.espeak import espeak_variants, find_espeak, speak
from trustser.corpora.synth.levels import active_rms
from trustser.corpora.synth.pitch import PitchStats, estimate_f0, pitch_stats

__all__ = ["CALIBRATION_TEXT", "GENDER_F0_BOUNDARY_HZ", "check_voice"]

CALIBRATION_TEXT = (
    "The meeting has been moved to Thursday afternoon. She bought two loaves of bread this morning."
)

# A median f0 on the wrong side of this boundary contradicts the voice's gender label. Every
# built-in voice stays at least 15 Hz away from it, even at the extremes of the per-speaker
# pitch draw (measured: female 160-240 Hz, male 95-120 Hz).
GENDER_F0_BOUNDARY_HZ = 145.0


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
    if plus and variant.lower() not in espeak_variants(executable):
        raise VoiceError(
            f"voice {voice.name!r}: espeak-ng has no variant {variant!r}; list them with "
            "`espeak-ng --voices=variant`."
        )
    audio = speak(executable, voice.name, settings, CALIBRATION_TEXT)
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
    return stats, active_rms(audio)
