"""The speaker bootstrap of one profile, as the axes use it: per-clip files, count tables, intervals.

The test clips a profile's figures were measured on are re-read (``predictions.csv`` of the
heads, ``clips.csv`` of the attacks) into per-speaker count tables and resampled with one set of
speaker draws (:mod:`trustser.metrics.bootstrap`) for every row and every axis, so replicate
``b`` of two models is the same resampled test set. :class:`RowBootstrap` is what an axis's
``bootstrap`` receives: its row, the row's per-clip files, the tables and where to store what
it estimates. :mod:`trustser.profile.intervals` draws the speakers and runs the axes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from trustser.metrics import bootstrap as bs
from trustser.profile.model import BackboneProfile

__all__ = [
    "METHOD_ASR",
    "METHOD_FAIR",
    "METHOD_FOLD",
    "METHOD_POOLED",
    "ClipFiles",
    "Estimator",
    "RowBootstrap",
    "Tables",
]

METHOD_FOLD = "speaker bootstrap, per fold then the fold mean"
METHOD_FAIR = "speaker bootstrap, per fold then the mean over folds with both genders"
METHOD_POOLED = "speaker bootstrap, pooled over all test clips"
METHOD_ASR = "speaker bootstrap of the attacked clips, per fold then the fold mean"
_ROUND = 6  # digits of the replicate values kept in profile.json

Rows = list[dict[str, str]]


class Tables(NamedTuple):
    """Count tables of one per-clip file: as observed, in every replicate, and their folds."""

    observed: np.ndarray  # [F, ...]
    resampled: np.ndarray  # [B, F, ...]
    folds: list[str]
    labels: list[str] | None = None  # the classes of a confusion table's last two axes
    # False for a closed-set split (one speaker tested in several folds): its folds are not the
    # design's units, the speakers' weights alone carry the draw
    folds_drawn: bool = True


def _rows(path: Path) -> Rows | None:
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows or None


def _labels(rows: Rows, true: str, pred: str) -> list[str]:
    probs = [k[len("prob_") :] for k in rows[0] if k.startswith("prob_")]
    seen = {r[true] for r in rows} | {r[pred] for r in rows}
    return probs if probs and seen <= set(probs) else sorted(seen)


class ClipFiles:
    """The per-clip files of one results directory, each read once."""

    _ATTACK_COLUMNS = frozenset({"speaker", "fold", "true", "clean_pred", "success"})

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._read: dict[str, Rows | None] = {}
        self._attacks: dict[str, Rows] | None = None
        self.tables: dict[Any, Tables] = {}  # count tables, shared by the axes of this row

    def rows(self, relative: str) -> Rows | None:
        """The rows of the CSV file ``directory/relative`` (None: absent or empty)."""
        if relative not in self._read:
            self._read[relative] = _rows(self.directory / relative)
        return self._read[relative]

    def predictions(self, task: str) -> Rows | None:
        """The head of ``task``'s per-clip test predictions."""
        return self.rows(f"{task}/predictions.csv")

    def heads(self, *tasks: str) -> list[Rows]:
        """The per-clip test predictions of the heads of ``tasks`` that have them."""
        return [rows for rows in map(self.predictions, tasks) if rows]

    def attacks(self) -> dict[str, Rows]:
        """Each attack directory's ``clips.csv`` (by directory name) that has per-clip results."""
        if self._attacks is None:
            self._attacks = {}
            folders = sorted(self.directory.glob("attack-*")) if self.directory.is_dir() else []
            for folder in folders:
                rows = self.rows(f"{folder.name}/clips.csv")
                if rows and set(rows[0]) >= self._ATTACK_COLUMNS:
                    self._attacks[folder.name] = rows
        return self._attacks


class Estimator:
    """Observed value and replicate values of count-table metrics on one profile's draws
    (:func:`~trustser.metrics.bootstrap.draw_speakers`)."""

    def __init__(self, draws: bs.SpeakerDraws, level: float) -> None:
        self.draws, self.level = draws, level
        self.speakers = draws.speakers

    def _tables(
        self, counts: np.ndarray, rows: Rows, folds: list[str], labels: list[str] | None = None
    ) -> Tables:
        observed = bs.resample(counts, np.ones((1, counts.shape[0])))[0]
        tested_in: dict[str, set[str]] = {}
        for row in rows:
            tested_in.setdefault(row["speaker"], set()).add(row["fold"])
        independent = all(len(found) == 1 for found in tested_in.values())
        resampled = bs.resample(counts, self.draws.weights)
        return Tables(observed, resampled, folds, labels, independent)

    def fold_weights(self, tables: Tables) -> np.ndarray | None:
        """Each fold's weight in the replicates' fold means of ``tables`` (None: each counts
        once, as in a closed-set split, whose speakers' weights carry the draw)."""
        return self.draws.fold_weights(tables.folds) if tables.folds_drawn else None

    def confusion(self, rows: Rows, true: str, pred: str, *, grouped: bool) -> Tables:
        labels = _labels(rows, true, pred)
        folds = sorted({r["fold"] for r in rows})
        counts = bs.confusion_counts(
            [r["speaker"] for r in rows],
            [r["fold"] for r in rows],
            [r[true] for r in rows],
            [r[pred] for r in rows],
            labels=labels,
            groups=[r.get("gender", "") for r in rows] if grouped else None,
            speaker_list=self.speakers,
            fold_list=folds,
        )
        return self._tables(counts, rows, folds, labels)

    def attack(self, rows: Rows) -> Tables:
        return self.rates(
            rows,
            [r["success"].strip() in ("1", "True", "true") for r in rows],
            tried=[r["true"] == r["clean_pred"] for r in rows],
        )

    def rates(self, rows: Rows, hits: list[bool], *, tried: list[bool] | None = None) -> Tables:
        """(tried, hit) tables of a rate: an attack's flips among attacked clips, or a head's
        correct answers among all clips."""
        folds = sorted({r["fold"] for r in rows})
        counts = bs.attack_counts(
            [r["speaker"] for r in rows],
            [r["fold"] for r in rows],
            [True] * len(rows) if tried is None else tried,
            hits,
            speaker_list=self.speakers,
            fold_list=folds,
        )
        return self._tables(counts, rows, folds)

    def interval(
        self,
        metric: Callable[[np.ndarray], np.ndarray],
        tables: Tables,
        method: str,
        *,
        cell_dims: int = 3,
        pooled: bool = False,
    ) -> bs.Interval:
        value = float(bs.fold_values(metric, tables.observed, cell_dims=cell_dims, pooled=pooled))
        samples = bs.fold_values(
            metric,
            tables.resampled,
            cell_dims=cell_dims,
            pooled=pooled,
            fold_weights=self.fold_weights(tables),
        )
        return bs.interval(
            None if math.isnan(value) else value, samples, level=self.level, method=method
        )


class RowBootstrap:
    """What an axis's ``bootstrap`` works with: one row, its per-clip files, the profile's
    draws (``estimator``) and the safety axis's attack; it stores into the row."""

    def __init__(
        self,
        entry: BackboneProfile,
        axis: str,
        clips: ClipFiles,
        estimator: Estimator,
        attack: tuple[str, float],
    ) -> None:
        self.entry, self.axis, self.clips = entry, axis, clips
        self.estimator, self.attack = estimator, attack

    @property
    def level(self) -> float:
        return self.estimator.level

    def head_tables(self, task: str, *, grouped: bool) -> Tables | None:
        """Confusion tables of the head of ``task`` (per gender when ``grouped``), computed once
        per row for every axis that reads them; None without per-clip predictions."""
        rows = self.clips.predictions(task)
        if rows is None:
            return None
        key = ("head", task, grouped)
        if key not in self.clips.tables:
            self.clips.tables[key] = self.estimator.confusion(rows, "true", "pred", grouped=grouped)
        return self.clips.tables[key]

    def store(
        self, key: str, result: bs.Interval, *, axis: bool = False, replicates: bool = False
    ) -> None:
        """The interval of figure ``key``; with ``axis`` also as the axis's interval and
        replicates (what scores and comparisons use), with ``replicates`` the figure's own."""
        self.entry.intervals[key] = result.to_dict()
        if axis:
            self.entry.intervals[self.axis] = result.to_dict()
        for name, wanted in ((self.axis, axis), (key, replicates)):
            if wanted:
                self.entry.replicates[name] = [
                    None if math.isnan(x) else round(float(x), _ROUND) for x in result.samples
                ]

    def exact(self, key: str, value: float | None, what: str) -> None:
        """A counted figure: its interval is the value itself."""
        if value is not None:
            self.entry.intervals[key] = {
                "value": value,
                "low": value,
                "high": value,
                "method": f"exact ({what})",
            }
