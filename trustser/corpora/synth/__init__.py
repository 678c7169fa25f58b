"""A small synthetic emotional corpus rendered locally with espeak-ng: the offline demo default.

Four emotions are prosody profiles (pitch level, pitch range, speaking rate, loudness via SSML
``<prosody>``, word gap via ``-g``) applied to several male and female espeak-ng voices. Every
speaker gets its own random scaling of each profile, every utterance its own jitter, gain and white
noise, so the classes overlap the way real speakers do: a frozen Whisper tiny.en with a linear
probe separates the emotions well above chance but far from perfectly (see
``docs/synthetic-corpus.md``). It is a smoke-test corpus and a controlled test bed (``bias``), not a
benchmark.

Everything is a pure function of the arguments and ``seed``: the same call gives byte-identical
WAVs and manifest on the same espeak-ng version. :func:`synthesize` renders the corpus into a
directory (layout in :mod:`~trustser.corpora.synth.corpus`), :func:`prepare` reads it back.

One module per concept, each importing only modules listed before it:

- ``errors``: the error classes;
- ``design``: the corpus constants, sentences, voices, prosody, emotion profiles and biases;
- ``espeak``: the espeak-ng driver (find it, its version and voices, text to audio);
- ``pitch``: the YIN pitch tracker;
- ``levels``: active-speech level, per-voice normalisation, gain and noise;
- ``calibrate``: the voice check (the variant exists, the f0 matches the gender label);
- ``plan``: the seeded per-speaker and per-clip draws;
- ``render``: rendering the planned clips in parallel;
- ``corpus``: :func:`synthesize` and :func:`prepare`, the directory layout.
"""

from trustser.corpora.synth.calibrate import GENDER_F0_BOUNDARY_HZ, check_voice
from trustser.corpora.synth.corpus import prepare, synthesize
from trustser.corpora.synth.design import (
    LABELS,
    MANIFEST_NAME,
    SAMPLE_RATE,
    Bias,
    Voice,
    parse_bias,
    parse_voice,
)
from trustser.corpora.synth.errors import EspeakNotFoundError, SynthesisError, VoiceError
from trustser.corpora.synth.espeak import find_espeak
from trustser.corpora.synth.pitch import estimate_f0, pitch_stats

# The corpus's constants (sizes, voices, prosody profiles) live in ``design``: import them there.
__all__ = [
    "GENDER_F0_BOUNDARY_HZ",
    "LABELS",
    "MANIFEST_NAME",
    "SAMPLE_RATE",
    "Bias",
    "EspeakNotFoundError",
    "SynthesisError",
    "Voice",
    "VoiceError",
    "check_voice",
    "estimate_f0",
    "find_espeak",
    "parse_bias",
    "parse_voice",
    "pitch_stats",
    "prepare",
    "synthesize",
]
