"""What an attack run produced, and the files it is written to.

:class:`ClipOutcome` is a row of ``clips.csv``, :class:`FoldOutcome` a fold's counts,
:class:`AttackResult` one method at one SNR (``summary.json``) and :class:`AttackRun` everything
one ``trustser attack`` call did. :func:`write_result` writes a result's directory:
``clips.csv``, ``summary.json`` and, when asked, clean/adversarial WAV pairs under ``audio/``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._version import __version__
from trustser.attacks.sweep import SweepFiles
from trustser.metrics._common import mean_std
from trustser.runs import write_json

__all__ = [
    "CLIP_COLUMNS",
    "AttackResult",
    "AttackRun",
    "AudioPair",
    "ClipOutcome",
    "FoldOutcome",
    "write_result",
]

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
    write_json(out_dir / "summary.json", result.summary())
    return result


def _write_clips(path: Path, clips: Sequence[ClipOutcome]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CLIP_COLUMNS)
        for clip in clips:
            writer.writerow(clip.row())
    os.replace(tmp, path)


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
