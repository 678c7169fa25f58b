"""Planning a part before any compute: every clip's frame rows, from facts known up front.

The caller (extraction) tells the planner, per clip, how many samples its audio decodes to and
how many frames the backbone makes of them, or why the clip is skipped (:class:`ClipFacts`).
Both counts are exact functions of the audio header and the backbone, so the whole layout —
clip order, units, offsets — is fixed up front, identically on every rank, and work can be
split into whole units (docs/store-format.md §6). Which clips to skip, and why, is decided by
extraction: the store lays out what it is told.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_SHARD_MB",
    "MAX_CLIPS_PER_UNIT",
    "TARGET_CHUNK_BYTES",
    "ClipFacts",
    "PartPlan",
    "layout",
    "plan_part",
]

DEFAULT_SHARD_MB = 64.0
TARGET_CHUNK_BYTES = 1 << 20  # inner chunks of about 1 MiB
MAX_CLIPS_PER_UNIT = 4096
MIN_CHUNK_FRAMES, MAX_CHUNK_FRAMES = 16, 4096


@dataclass(frozen=True)
class ClipFacts:
    """What the planner is told about one clip.

    ``samples`` is what the clip's audio decodes to (0 when the file is unusable). A clip with a
    ``skip_reason`` is planned with no samples and no frames, the reason kept in the part's
    ``plan_skipped``; any other clip gets ``frames`` rows (> 0).
    """

    samples: int
    frames: int = 0
    skip_reason: str | None = None

    @property
    def planned_samples(self) -> int:
        """Samples the part records for the clip: 0 when it is skipped."""
        return 0 if self.skip_reason is not None else int(self.samples)

    @property
    def planned_frames(self) -> int:
        """Frame rows the part reserves for the clip: 0 when it is skipped."""
        return 0 if self.skip_reason is not None else int(self.frames)


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


def plan_part(
    clips: Mapping[str, ClipFacts],
    *,
    bytes_per_frame: int,
    shard_mb: float = DEFAULT_SHARD_MB,
) -> PartPlan:
    """Order the clips (id → facts) by length, split them into units and place every clip's rows."""
    if not clips:
        raise ValueError("plan_part needs at least one clip")
    rows = []
    skipped: dict[str, str] = {}
    for utt_id, facts in clips.items():
        if facts.skip_reason is not None:
            skipped[utt_id] = facts.skip_reason
        elif facts.frames <= 0:
            raise ValueError(
                f"clip {utt_id!r} is planned with {facts.frames} frames and no skip reason"
            )
        rows.append((facts.planned_samples, utt_id, facts.planned_frames))
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
