"""The corpus on disk: :func:`synthesize` renders it into a directory, :func:`prepare` reads it.

The layout::

    DIR/manifest.jsonl   the manifest (relative paths), written last: its presence marks completion
    DIR/synth.json       the full generator configuration, per-speaker draws and measured f0
    DIR/wav/<id>.wav     16 kHz mono PCM-16 clips

An existing complete corpus made with the same settings is reused; the settings that define the
audio are recorded in ``synth.json`` and in the manifest's version string.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from trustser.corpora._common import CorpusLayoutError, reuse_existing
from trustser.corpora.synth.calibrate import check_voice
from trustser.corpora.synth.design import (
    CONFIG_NAME,
    EMOTION_PROFILES,
    FOLD_SCHEME,
    GENERATOR_VERSION,
    LABELS,
    MANIFEST_NAME,
    NAME,
    SIZES,
    VOICES,
    WAV_DIR,
    Bias,
    Prosody,
    Voice,
    parse_bias,
    parse_voice,
)
from trustser.corpora.synth.errors import SynthesisError
from trustser.corpora.synth.espeak import espeak_version, find_espeak
from trustser.corpora.synth.levels import level_gain
from trustser.corpora.synth.pitch import PitchStats
from trustser.corpora.synth.plan import (
    Job,
    Speaker,
    check_sizes,
    pair_voices,
    plan_jobs,
    plan_speakers,
    speaker_id,
)
from trustser.corpora.synth.render import Rendered, clip_utterance, render_all
from trustser.folds import rotating_folds
from trustser.manifest import (
    Manifest,
    ManifestError,
    read_manifest,
    validate,
    write_manifest,
)

__all__ = ["prepare", "synthesize"]


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of :func:`synthesize`."""

    num_speakers: int
    num_sentences: int
    seed: int
    pairs: tuple[tuple[Voice, Voice], ...]
    biases: tuple[Bias, ...]
    workers: int


def _settings(
    *,
    size: str,
    num_speakers: int | None,
    num_sentences: int | None,
    seed: int,
    bias: Bias | str | Sequence[Bias | str],
    voices: Sequence[Voice | str | tuple[Voice, Voice]] | None,
    workers: int | None,
) -> _Settings:
    if size not in SIZES:
        raise SynthesisError(f"size={size!r} is not a preset; choose one of {', '.join(SIZES)}.")
    num_speakers = SIZES[size][0] if num_speakers is None else num_speakers
    num_sentences = SIZES[size][1] if num_sentences is None else num_sentences
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SynthesisError(f"seed must be a non-negative integer, got {seed!r}.")
    if voices is not None:
        voices = [parse_voice(v) if isinstance(v, str) else v for v in voices]
    pairs = pair_voices(VOICES if voices is None else voices)
    check_sizes(num_speakers, num_sentences, pairs)
    items = [bias] if isinstance(bias, (str, Bias)) else list(bias)
    biases = tuple(parse_bias(b) if isinstance(b, str) else b for b in items)
    targets = [(b.emotion, b.gender) for b in biases]
    if len(set(targets)) != len(targets):
        raise SynthesisError(f"bias: {targets} names the same emotion and gender twice.")
    workers = workers if workers is not None else max(1, os.cpu_count() or 1)
    if workers < 1:
        raise SynthesisError(f"workers must be >= 1, got {workers}.")
    return _Settings(num_speakers, num_sentences, seed, pairs, biases, workers)


def _version_string(settings: _Settings, espeak: str) -> str:
    bias_text = ",".join(str(b) for b in settings.biases) or "none"
    return (
        f"synth-v{GENERATOR_VERSION} seed={settings.seed} speakers={settings.num_speakers} "
        f"sentences={settings.num_sentences} bias={bias_text} ({espeak})"
    )


def _config(settings: _Settings, espeak: str) -> dict[str, Any]:
    """Everything that defines the audio, as recorded under ``config`` in ``synth.json``."""
    num_pairs = settings.num_speakers // 2
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": settings.seed,
        "num_speakers": settings.num_speakers,
        "num_sentences": settings.num_sentences,
        "bias": [asdict(b) for b in settings.biases],
        "voices": [asdict(v) for pair in settings.pairs[:num_pairs] for v in pair],
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
    settings = _settings(
        size=size,
        num_speakers=num_speakers,
        num_sentences=num_sentences,
        seed=seed,
        bias=bias,
        voices=voices,
        workers=workers,
    )
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthesisError(f"{str(out_dir)!r} is a file; the corpus needs a directory.")
    executable = find_espeak()
    espeak = espeak_version(executable)
    config = _config(settings, espeak)
    existing, same_settings = _existing(out_dir, config)
    if existing is not None:
        return existing
    if (out_dir / MANIFEST_NAME).exists() and not (overwrite or same_settings):
        raise SynthesisError(
            f"{out_dir} already holds a corpus made with other settings ({MANIFEST_NAME}); pass "
            "overwrite=True (--overwrite) to replace it, or choose another directory."
        )

    speakers = plan_speakers(
        settings.pairs,
        num_speakers=settings.num_speakers,
        num_sentences=settings.num_sentences,
        seed=settings.seed,
    )
    calibration = {
        speaker.voice.name: check_voice(
            speaker.voice, executable=executable, settings=speaker.base.rounded()
        )
        for speaker in speakers
    }
    voice_gains = {name: level_gain(rms) for name, (_, rms) in calibration.items()}
    jobs = plan_jobs(speakers, voice_gains, seed=settings.seed, biases=settings.biases)
    wav_dir = _clear_for(out_dir, jobs)
    rendered = render_all(jobs, executable, wav_dir, workers=settings.workers, progress=progress)

    manifest = _manifest(settings, jobs, rendered, espeak)
    absolute = replace(
        manifest,
        utterances=tuple(u.with_path(str((out_dir / u.path).resolve())) for u in manifest),
        root=str(out_dir.resolve()),
    )
    validate(absolute)
    _write_details(out_dir, config, speakers, calibration, voice_gains)
    write_manifest(manifest, out_dir / MANIFEST_NAME)  # relative paths: the folder can move
    return absolute


def _clear_for(out_dir: Path, jobs: Sequence[Job]) -> Path:
    """Mark the corpus incomplete and drop WAVs no job will write; returns the WAV directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # absent manifest = incomplete corpus
    wav_dir = out_dir / WAV_DIR
    wav_dir.mkdir(exist_ok=True)
    wanted = {f"{job.utterance_id}.wav" for job in jobs}
    for stale in wav_dir.glob("synth_*.wav"):
        if stale.name not in wanted:
            stale.unlink()
    return wav_dir


def _manifest(
    settings: _Settings, jobs: Sequence[Job], rendered: Sequence[Rendered], espeak: str
) -> Manifest:
    """The corpus manifest, paths relative to its directory; one fold per female/male pair."""
    utterances = tuple(
        clip_utterance(job, result) for job, result in zip(jobs, rendered, strict=True)
    )
    groups = [
        [speaker_id(f, i), speaker_id(m, i)]
        for i, (f, m) in enumerate(settings.pairs[: settings.num_speakers // 2])
    ]
    return Manifest(
        corpus=NAME,
        utterances=tuple(sorted(utterances, key=lambda u: u.id)),
        folds=rotating_folds(groups, by="speaker"),
        fold_scheme=FOLD_SCHEME,
        version=_version_string(settings, espeak),
        labels=LABELS,
    )


def _write_details(
    out_dir: Path,
    config: dict[str, Any],
    speakers: Sequence[Speaker],
    calibration: dict[str, tuple[PitchStats, float]],
    voice_gains: dict[str, float],
) -> None:
    """``synth.json``: the configuration, the emotion profiles and every speaker's draws."""
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
