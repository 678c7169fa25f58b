"""Planning a part before any compute: every clip's frame rows, from header facts alone.

Frame counts are an exact function of the sample count for each backbone family, and the sample
count an exact function of the audio header (``trustser.audio.expected_num_samples``). So the
whole layout — clip order, units, offsets — is fixed up front, identically on every rank, and
work can be split into whole units (docs/store-format.md §6).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from trustser.audio import MIN_SECONDS, AudioError, audio_info, expected_num_samples
from trustser.manifest import Utterance

__all__ = [
    "DEFAULT_SHARD_MB",
    "MAX_CLIPS_PER_UNIT",
    "TARGET_CHUNK_BYTES",
    "PartPlan",
    "layout",
    "plan_part",
    "planned_samples",
]

DEFAULT_SHARD_MB = 64.0
TARGET_CHUNK_BYTES = 1 << 20  # inner chunks of about 1 MiB
MAX_CLIPS_PER_UNIT = 4096
MIN_CHUNK_FRAMES, MAX_CHUNK_FRAMES = 16, 4096


@dataclass(frozen=True)
class PartPlan:
    """The complete layout of one part; see docs/store-format.md §6 for every field."""

    ids: tuple[str, ...]  # plan order: by (num_samples, id)
    num_samples: np.ndarray  # int64 [N]
    num_frames: np.ndarray  # int32 [N]
    offsets: np.ndarray  # int64 [N+1]
    clips_per_unit: int  # S
    unit_frames: int  # F
    chunk_frames: int  # C
    plan_skipped: dict[str, str] = field(default_factory=dict)

    @property
    def num_clips(self) -> int:
        return len(self.ids)

    @property
    def num_units(self) -> int:
        return math.ceil(self.num_clips / self.clips_per_unit)

    def unit_clips(self, unit: int) -> range:
        """Clip indices of ``unit``."""
        start = unit * self.clips_per_unit
        return range(start, min(start + self.clips_per_unit, self.num_clips))

    def digest(self, *, manifest_checksum: str, settings: dict) -> str:
        """Name of the part: equal plans from concurrent writers get equal names."""
        payload = {
            "manifest": manifest_checksum,
            "ids": list(self.ids),
            "num_samples": self.num_samples.tolist(),
            "S": self.clips_per_unit,
            "F": self.unit_frames,
            "C": self.chunk_frames,
            "settings": settings,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def layout(
    num_frames: Sequence[int], *, bytes_per_frame: int, shard_bytes: float
) -> tuple[int, int, int, np.ndarray]:
    """``(S, C, F, offsets)`` for clips already in plan order (formulas of §6.3)."""
    frames = np.asarray(num_frames, dtype=np.int64)
    if frames.ndim != 1 or frames.size == 0:
        raise ValueError("layout needs at least one clip")
    positive = frames[frames > 0]
    mean_frames = float(positive.mean()) if positive.size else 1.0
    by_size = math.floor(shard_bytes / (mean_frames * bytes_per_frame))
    clips_per_unit = int(max(1, min(MAX_CLIPS_PER_UNIT, frames.size, by_size)))
    exponent = round(math.log2(TARGET_CHUNK_BYTES / bytes_per_frame)) if bytes_per_frame > 0 else 0
    chunk_frames = int(min(MAX_CHUNK_FRAMES, max(MIN_CHUNK_FRAMES, 2 ** max(exponent, 0))))
    # At most an eighth of a typical unit, so the partly filled last chunk of a shard wastes little.
    eighth = clips_per_unit * mean_frames / 8
    cap = 2 ** math.floor(math.log2(eighth)) if eighth >= 1 else 1
    chunk_frames = int(min(chunk_frames, max(MIN_CHUNK_FRAMES, cap)))
    num_units = math.ceil(frames.size / clips_per_unit)
    unit_totals = [
        int(frames[k * clips_per_unit : (k + 1) * clips_per_unit].sum()) for k in range(num_units)
    ]
    unit_frames = chunk_frames * max(1, math.ceil(max(unit_totals) / chunk_frames))
    offsets = np.zeros(frames.size + 1, dtype=np.int64)
    for k in range(num_units):
        start = k * clips_per_unit
        stop = min(start + clips_per_unit, frames.size)
        offsets[start] = k * unit_frames
        offsets[start + 1 : stop + 1] = k * unit_frames + np.cumsum(frames[start:stop])
        if stop < frames.size:  # the slack of unit k ends where unit k+1 starts
            offsets[stop] = (k + 1) * unit_frames
    offsets[-1] = num_units * unit_frames
    return clips_per_unit, chunk_frames, unit_frames, offsets


def planned_samples(
    utterance: Utterance, *, max_seconds: float | None, sample_rate: int
) -> tuple[int, str | None]:
    """16 kHz samples ``load_audio`` will return, from the manifest's header facts (or the file's).

    Returns ``(samples, None)``, or ``(0, reason)`` when the clip is certain to be unusable.
    """
    if utterance.num_frames is not None and utterance.sample_rate is not None:
        frames, rate = int(utterance.num_frames), int(utterance.sample_rate)
    else:
        try:
            info = audio_info(utterance.path)
        except AudioError as error:
            return 0, str(error)
        frames, rate = info.num_frames, info.sample_rate
    if frames <= 0 or rate <= 0:
        return 0, str(
            AudioError(utterance.path, "the header reports no samples", "re-export or remove it")
        )
    samples = expected_num_samples(frames, rate, sample_rate=sample_rate, max_seconds=max_seconds)
    if samples / sample_rate < MIN_SECONDS:
        reason = f"too short: {samples / sample_rate * 1000:.1f} ms < {MIN_SECONDS * 1000:.0f} ms"
        return 0, str(AudioError(utterance.path, reason, "drop the clip from the manifest"))
    return samples, None


def plan_part(
    utterances: Sequence[Utterance],
    *,
    frame_count: Callable[[int], int],
    bytes_per_frame: int,
    max_seconds: float | None,
    sample_rate: int = 16_000,
    shard_mb: float = DEFAULT_SHARD_MB,
    max_samples: int | None = None,
) -> PartPlan:
    """Order the clips by length, split them into units and place every clip's frame rows.

    ``max_samples`` is the longest input the backbone accepts (Whisper: 30 s); longer clips
    are planned as skipped, with a reason that says how to keep them.
    """
    if not utterances:
        raise ValueError("plan_part needs at least one utterance")
    rows = []
    skipped: dict[str, str] = {}
    for utterance in utterances:
        samples, reason = planned_samples(
            utterance, max_seconds=max_seconds, sample_rate=sample_rate
        )
        frames = 0
        if reason is None and max_samples is not None and samples > max_samples:
            reason = str(
                AudioError(
                    utterance.path,
                    f"{samples / sample_rate:.1f} s is longer than the backbone accepts "
                    f"({max_samples / sample_rate:.1f} s)",
                    f"extract with --max-seconds {max_samples / sample_rate:g} to keep its start",
                )
            )
            samples = 0
        if reason is None:
            frames = int(frame_count(samples))
            if frames <= 0:
                reason = str(
                    AudioError(
                        utterance.path,
                        f"too short for this backbone: {samples} samples give no frame",
                    )
                )
                samples = 0
        if reason is not None:
            skipped[utterance.id] = reason
            frames = 0
        rows.append((samples, utterance.id, frames))
    rows.sort(key=lambda row: (row[0], row[1]))
    num_frames = np.array([r[2] for r in rows], dtype=np.int32)
    clips_per_unit, chunk_frames, unit_frames, offsets = layout(
        num_frames, bytes_per_frame=bytes_per_frame, shard_bytes=shard_mb * (1 << 20)
    )
    return PartPlan(
        ids=tuple(r[1] for r in rows),
        num_samples=np.array([r[0] for r in rows], dtype=np.int64),
        num_frames=num_frames,
        offsets=offsets,
        clips_per_unit=clips_per_unit,
        unit_frames=unit_frames,
        chunk_frames=chunk_frames,
        plan_skipped=skipped,
    )
