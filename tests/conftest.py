"""Shared fixtures. Tests never download anything: the model hubs are switched off here."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def _emodb_root() -> Path:
    env = os.environ.get("EMODB_ROOT")
    return Path(env) if env else REPO.parent / "shared" / "data" / "emodb"


@pytest.fixture(scope="session")
def emodb_root() -> Path:
    """The real EmoDB corpus; tests that need it skip cleanly when it is absent."""
    root = _emodb_root()
    if not (root / "wav").is_dir():
        pytest.skip(f"EmoDB not found at {root} (set EMODB_ROOT)")
    return root


def write_tone(
    path: Path,
    seconds: float = 1.0,
    sample_rate: int = 16_000,
    *,
    channels: int = 1,
    frequency: float = 220.0,
    amplitude: float = 0.3,
    subtype: str = "PCM_16",
    format: str | None = None,
    seed: int = 0,
) -> Path:
    """A deterministic tone-plus-noise clip, so tests need no corpus files."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    mono = amplitude * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.size)
    data = (
        np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1) if channels > 1 else mono
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data.astype(np.float32), sample_rate, subtype=subtype, format=format)
    return path


@pytest.fixture
def tone(tmp_path: Path):
    """Factory fixture: ``tone(name, seconds=..., sample_rate=...)`` writes a clip under tmp_path."""

    def make(name: str = "clip.wav", **kwargs) -> Path:
        return write_tone(tmp_path / name, **kwargs)

    return make


TOY_SPEAKERS = (
    ("s1", "female"),
    ("s2", "male"),
    ("s3", "female"),
    ("s4", "male"),
    ("s5", "female"),
    ("s6", "male"),
)


def pitch_clip(rng: np.random.Generator, index: int, emotion: str) -> np.ndarray:
    """0.3-0.5 s of a tone at 150 Hz × (emotion index + 1), plus a little noise (16 kHz)."""
    del emotion  # the index alone sets the pitch
    n = int(16_000 * (0.3 + 0.2 * rng.random()))
    t = np.arange(n) / 16_000
    return 0.2 * np.sin(2 * np.pi * 150 * (index + 1) * t) + 0.01 * rng.standard_normal(n)


def make_toy_manifest(
    root: Path,
    *,
    takes: int = 2,
    corpus: str = "toy",
    speakers: Sequence[tuple[str, str]] = TOY_SPEAKERS,
    groups: Sequence[Sequence[str]] | None = None,
    clip: Callable[[np.random.Generator, int, str], np.ndarray] = pitch_clip,
):
    """``speakers`` (id, gender) × 4 emotions × ``takes`` clips whose pitch encodes the emotion.

    ``clip(rng, emotion index, emotion)`` makes each 16 kHz signal (one seeded generator for the
    whole corpus), written as ``root/wav/<speaker>_<emotion>_<take>.wav``. Speaker folds rotate
    over ``groups``; by default fold k tests one woman and one man. Small enough for end-to-end
    pipeline tests.
    """
    from trustser.folds import rotating_folds
    from trustser.manifest import EMOTIONS, Manifest, Utterance

    rng = np.random.default_rng(0)
    utterances = []
    for speaker, gender in speakers:
        for k, emotion in enumerate(EMOTIONS):
            for take in range(takes):
                x = clip(rng, k, emotion)
                path = root / "wav" / f"{speaker}_{emotion}_{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), x.astype(np.float32), 16_000, subtype="PCM_16")
                utterances.append(
                    Utterance(
                        id=path.stem,
                        path=str(path),
                        speaker=speaker,
                        gender=gender,
                        emotion=emotion,
                        duration=len(x) / 16_000,
                        sample_rate=16_000,
                        num_frames=len(x),
                    )
                )
    if groups is None:
        groups = [[f[0], m[0]] for f, m in zip(speakers[::2], speakers[1::2], strict=True)]
    folds = rotating_folds(groups, by="speaker")
    return Manifest(corpus=corpus, utterances=tuple(utterances), folds=folds)


@pytest.fixture(scope="session")
def toy_manifest_factory():
    """:func:`make_toy_manifest` itself, for tests that need another shape of toy corpus."""
    return make_toy_manifest


@pytest.fixture
def toy_manifest(tmp_path: Path):
    """A tiny tone corpus (see :func:`make_toy_manifest`) under ``tmp_path/toy``."""
    return make_toy_manifest(tmp_path / "toy")
