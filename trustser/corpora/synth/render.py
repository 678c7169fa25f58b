"""Rendering: each planned clip spoken by espeak-ng, measured, levelled, noised and written.

espeak-ng runs as subprocesses, so a thread pool keeps every core busy; each clip's result
depends only on its job, never on the order in which the workers finish.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from trustser.corpora.synth.design import SAMPLE_RATE, SENTENCES, WAV_DIR
from trustser.corpora.synth.espeak import speak
from trustser.corpora.synth.levels import apply_gain_and_noise
from trustser.corpora.synth.pitch import PitchStats, estimate_f0, pitch_stats
from trustser.corpora.synth.plan import Job
from trustser.manifest import Utterance

__all__ = ["Rendered", "clip_utterance", "render_all", "render_clip"]


@dataclass(frozen=True)
class Rendered:
    """What rendering a clip measured: its length, any peak scaling, the clean clip's pitch."""

    num_frames: int
    peak_scale: float
    clean: PitchStats


def render_clip(job: Job, executable: str, wav_dir: Path) -> Rendered:
    """Speak ``job``, measure the clean clip's pitch, write the levelled, noisy clip as WAV."""
    clean = speak(executable, job.voice.name, job.prosody, SENTENCES[job.sentence])
    stats = pitch_stats(estimate_f0(clean, SAMPLE_RATE))
    noisy, peak_scale = apply_gain_and_noise(
        clean,
        voice_gain=job.voice_gain,
        gain_db=job.gain_db,
        snr_db=job.snr_db,
        noise_seed=job.noise_seed,
    )
    sf.write(str(wav_dir / f"{job.utterance_id}.wav"), noisy, SAMPLE_RATE, subtype="PCM_16")
    return Rendered(num_frames=int(noisy.size), peak_scale=peak_scale, clean=stats)


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(float(value), digits)


def clip_utterance(job: Job, rendered: Rendered) -> Utterance:
    """The manifest record of a rendered clip (its path relative to the corpus directory)."""
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


def render_all(
    jobs: Sequence[Job],
    executable: str,
    wav_dir: Path,
    *,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[Rendered]:
    """Render every job on ``workers`` threads; results in job order.

    ``progress(done, total)`` is called after each clip. On an error or Ctrl-C the clips still
    queued are dropped and the error is raised.
    """
    results: list[Rendered | None] = [None] * len(jobs)
    finished = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(render_clip, job, executable, wav_dir): i for i, job in enumerate(jobs)
        }
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
