"""What an attack run produced, and the files it is written to.

:class:`ClipOutcome` is a row of ``clips.csv``, :class:`FoldOutcome` a fold's counts,
:class:`AttackResult` one method at one SNR (``summary.json``) and :class:`AttackRun` everything
one ``trustser attack`` call did. :func:`write_result` writes a result's directory:
``clips.csv``, ``summary.json`` and, when asked, clean/adversarial WAV pairs under ``audio/``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._version import __version__
from trustser.attacks.sweep import SweepFiles
from trustser.metrics._common import mean_std
from trustser.runs import jsonable

__all__ = [
    "CLIP_COLUMNS",
    "AttackResult",
    "AttackRun",
    "AudioPair",
    "ClipOutcome",
    "FoldOutcome",
    "RankShare",
    "merge_rank_files",
    "write_rank_file",
    "write_result",
]

RANKS_DIR = "ranks"
RANK_FORMAT = "trustser-attack-rank"

CLIP_COLUMNS = (
    "id",
    "fold",
    "speaker",
    "gender",
    "true",
    "clean_pred",
    "adv_pred",
    "snr_db",
    "success",
)


@dataclass(frozen=True)
class ClipOutcome:
    """One attacked clip: a row of ``clips.csv``."""

    id: str
    fold: str
    speaker: str
    gender: str
    true: str
    clean_pred: str
    adv_pred: str
    snr_db: float
    success: bool

    def row(self) -> list[Any]:
        return [
            self.id,
            self.fold,
            self.speaker,
            self.gender,
            self.true,
            self.clean_pred,
            self.adv_pred,
            f"{self.snr_db:.4f}",
            int(self.success),
        ]


# A clip to be written as audio: its outcome, the clean and the adversarial waveform (1-D, CPU).
AudioPair = tuple[ClipOutcome, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class FoldOutcome:
    """A fold's counts; ``asr`` is None when the clean model got no test clip right."""

    fold: str
    num_test: int
    num_attacked: int
    num_flipped: int
    snr_db: tuple[float, ...]  # measured, one per attacked clip

    @property
    def asr(self) -> float | None:
        return self.num_flipped / self.num_attacked if self.num_attacked else None

    @property
    def clean_accuracy(self) -> float:
        return self.num_attacked / self.num_test if self.num_test else float("nan")

    def to_dict(self) -> dict[str, Any]:
        stats = _snr_stats(self.snr_db)
        return {
            "fold": self.fold,
            "num_test": self.num_test,
            "num_attacked": self.num_attacked,
            "num_flipped": self.num_flipped,
            "asr": self.asr,
            "clean_accuracy": self.clean_accuracy,
            "measured_snr_db": stats,
        }


def _snr_stats(values: Sequence[float]) -> dict[str, float | None]:
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return {"mean": None, "min": None, "max": None}
    return {"mean": float(finite.mean()), "min": float(finite.min()), "max": float(finite.max())}


@dataclass(frozen=True)
class AttackResult:
    """One method at one SNR over the attacked folds."""

    backbone: str
    method: str
    snr_db: float
    settings: dict[str, Any]
    folds: tuple[FoldOutcome, ...]
    clips: tuple[ClipOutcome, ...]
    seconds: float
    out_dir: Path | None = None
    audio_files: tuple[Path, ...] = ()

    @property
    def num_attacked(self) -> int:
        return sum(f.num_attacked for f in self.folds)

    @property
    def num_flipped(self) -> int:
        return sum(f.num_flipped for f in self.folds)

    @property
    def num_test(self) -> int:
        return sum(f.num_test for f in self.folds)

    @property
    def fold_asrs(self) -> list[float]:
        return [f.asr for f in self.folds if f.asr is not None]

    @property
    def asr_mean(self) -> float | None:
        """Mean over folds with at least one attacked clip (folds without are left out)."""
        values = self.fold_asrs
        return mean_std(values)[0] if values else None

    @property
    def asr_std(self) -> float | None:
        """Population sd (ddof 0) over the same folds, as the heads report UAR."""
        values = self.fold_asrs
        return mean_std(values)[1] if values else None

    @property
    def measured_snr(self) -> dict[str, float | None]:
        stats = _snr_stats([c.snr_db for c in self.clips])
        finite = [abs(c.snr_db - self.snr_db) for c in self.clips if math.isfinite(c.snr_db)]
        stats["max_abs_error"] = max(finite) if finite else None
        return stats

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` holds."""
        return {
            "backbone": self.backbone,
            "method": self.method,
            "snr_db": self.snr_db,
            "asr_mean": self.asr_mean,
            "asr_std": self.asr_std,
            "asr_pooled": self.num_flipped / self.num_attacked if self.num_attacked else None,
            "num_test": self.num_test,
            "num_attacked": self.num_attacked,
            "num_flipped": self.num_flipped,
            "clean_accuracy": self.num_attacked / self.num_test if self.num_test else None,
            "measured_snr_db": self.measured_snr,
            "undefined_folds": [f.fold for f in self.folds if f.asr is None],
            "folds": [f.to_dict() for f in self.folds],
            "settings": self.settings,
            "seconds": self.seconds,
            "clips_per_second": self.num_attacked / self.seconds if self.seconds > 0 else None,
            "trustser_version": __version__,
        }


@dataclass(frozen=True)
class AttackRun:
    """Everything one ``trustser attack`` call did: one result per SNR, plus the sweep files."""

    backbone: str
    results: tuple[AttackResult, ...]
    sweep: SweepFiles | None = None
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- writers


def write_result(
    result: AttackResult,
    out_dir: Path,
    *,
    audio: Sequence[AudioPair] | None = None,
    sample_rate: int = 16_000,
) -> AttackResult:
    """Write ``clips.csv``, the ``audio/`` pairs (when ``audio`` is given) and ``summary.json``.

    Returns ``result`` with ``out_dir`` and the written audio files set.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_clips(out_dir / "clips.csv", result.clips)
    files = _write_audio(out_dir / "audio", audio, sample_rate) if audio is not None else []
    result = dataclasses.replace(result, out_dir=out_dir, audio_files=tuple(files))
    _write_json(out_dir / "summary.json", result.summary())
    return result


def _temp(path: Path) -> Path:
    """A temporary name of this writer's own: ranks merging at once never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _write_json(path: Path, data: Any) -> None:
    tmp = _temp(path)
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=jsonable) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_clips(path: Path, clips: Sequence[ClipOutcome]) -> None:
    tmp = _temp(path)
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CLIP_COLUMNS)
            for clip in clips:
                writer.writerow(clip.row())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- ranks


@dataclass(frozen=True)
class RankShare:
    """What a rank of a scaled-out attack adds to its clips: where each goes in the merged
    order (``(fold index, position)``), every fold's test-clip count, and the run's
    fingerprint (rank files of other runs never merge in)."""

    rank: int
    world_size: int
    order: tuple[tuple[int, int], ...]
    num_test: tuple[tuple[str, int], ...]
    fingerprint: str


def _rank_path(out_dir: Path, rank: int, world_size: int) -> Path:
    return out_dir / RANKS_DIR / f"rank-{rank}-of-{world_size}.json"


def write_rank_file(
    result: AttackResult,
    share: RankShare,
    out_dir: Path,
    *,
    audio: Sequence[AudioPair] | None = None,
    sample_rate: int = 16_000,
) -> Path:
    """Write one rank's clips (and its audio pairs) under ``out_dir/ranks/``; returns the file."""
    if len(share.order) != len(result.clips):
        raise ValueError(f"{len(result.clips)} clips but {len(share.order)} order keys")
    files = _write_audio(out_dir / "audio", audio, sample_rate) if audio else []
    path = _rank_path(out_dir, share.rank, share.world_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(
        path,
        {
            "format": RANK_FORMAT,
            "rank": share.rank,
            "world_size": share.world_size,
            "fingerprint": share.fingerprint,
            "backbone": result.backbone,
            "method": result.method,
            "snr_db": result.snr_db,
            "settings": result.settings,
            "num_test": [list(pair) for pair in share.num_test],
            "clips": [
                {**dataclasses.asdict(clip), "order": list(key)}
                for clip, key in zip(result.clips, share.order, strict=True)
            ],
            "seconds": result.seconds,
            "audio_files": [str(f) for f in files],
        },
    )
    return path


def _read_rank_files(out_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted((out_dir / RANKS_DIR).glob("rank-*-of-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being replaced, or damaged: it is not a finished rank
        if isinstance(data, dict) and data.get("format") == RANK_FORMAT:
            data["path"] = path
            found.append(data)
    return found


def merge_rank_files(
    out_dir: Path, *, fingerprint: str | None = None, required: bool = False
) -> AttackResult | None:
    """Merge a complete set of rank files into ``clips.csv`` and ``summary.json``.

    With ``fingerprint``, only that run's files count; without, the newest complete set. Returns
    the merged result, or None while ranks are missing (``required``: an error naming them).
    """
    from trustser.attacks.methods import AttackError

    files = _read_rank_files(out_dir)
    sets: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for data in files:
        if fingerprint is None or data["fingerprint"] == fingerprint:
            sets.setdefault((data["fingerprint"], int(data["world_size"])), {})[
                int(data["rank"])
            ] = data
    complete = [
        (max(p["path"].stat().st_mtime for p in members.values()), key)
        for key, members in sets.items()
        if set(members) == set(range(key[1]))
    ]
    if not complete:
        if not required:
            return None
        if not sets:
            raise AttackError(
                f"no rank files under {str(out_dir / RANKS_DIR)!r}; run the attack with ranks "
                "first (torchrun, SLURM or --rank/--world-size)."
            )
        lines = [
            f"world size {size}: missing rank(s) "
            f"{', '.join(str(r) for r in sorted(set(range(size)) - set(members)))}"
            for (_, size), members in sets.items()
        ]
        raise AttackError(
            f"the rank files under {str(out_dir / RANKS_DIR)!r} are incomplete ("
            + "; ".join(lines)
            + "); rerun the missing ranks with the same command."
        )
    members = sets[max(complete)[1]]
    ordered = [members[r] for r in sorted(members)]
    first = ordered[0]
    rows = sorted(
        ((tuple(c["order"]), c) for data in ordered for c in data["clips"]), key=lambda x: x[0]
    )
    clips = tuple(ClipOutcome(**{k: v for k, v in c.items() if k != "order"}) for _, c in rows)
    folds = []
    for fold, num_test in first["num_test"]:
        mine = [c for c in clips if c.fold == fold]
        folds.append(
            FoldOutcome(
                fold=fold,
                num_test=int(num_test),
                num_attacked=len(mine),
                num_flipped=sum(c.success for c in mine),
                snr_db=tuple(c.snr_db for c in mine),
            )
        )
    settings = dict(first["settings"])
    devices = sorted({str(d["settings"].get("device")) for d in ordered})
    settings["device"] = devices[0] if len(devices) == 1 else ", ".join(devices)
    audio = sorted({Path(f) for d in ordered for f in d["audio_files"]})
    result = AttackResult(
        backbone=str(first["backbone"]),
        method=str(first["method"]),
        snr_db=float(first["snr_db"]),
        settings=settings,
        folds=tuple(folds),
        clips=clips,
        seconds=float(sum(d["seconds"] for d in ordered)),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_clips(out_dir / "clips.csv", result.clips)
    result = dataclasses.replace(result, out_dir=out_dir, audio_files=tuple(audio))
    _write_json(out_dir / "summary.json", result.summary())
    return result


def _safe_file_stem(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def _write_audio(directory: Path, pairs: Sequence[AudioPair], sample_rate: int) -> list[Path]:
    """Clean/adversarial pairs as 32-bit float WAV: no clipping, no requantisation of δ."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for clip, clean, adversarial in pairs:
        stem = _safe_file_stem(clip.id)
        for kind, audio in (("clean", clean), ("adv", adversarial)):
            path = directory / f"{stem}.{kind}.wav"
            sf.write(str(path), audio.numpy().astype(np.float32), sample_rate, subtype="FLOAT")
            written.append(path)
    return written
