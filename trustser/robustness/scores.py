"""The figures of one model on the corruption suite, each with its speaker-bootstrap interval.

Per case (a corruption at one severity): UAR on the corrupted copies, its drop from the clean
UAR of the same clips, and the share of clips whose prediction is unchanged — each per fold
then the fold mean, over all clips and per gender. The intervals come from the project's
speaker bootstrap (:mod:`trustser.metrics.bootstrap`, as the profile's): count tables per test
speaker and fold, one set of speaker draws (stratified by gender) for every figure, so a drop
is a *paired* difference and a suite mean is computed replicate by replicate. The suite mean
(:func:`trustser.metrics.robustness.suite_mean`) averages each corruption's severities, then the
corruptions. Formulas: docs/metrics.md, "Robustness".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trustser.corruptions import CorruptionCase
from trustser.metrics import bootstrap as bs
from trustser.metrics.robustness import suite_mean

__all__ = ["FIGURES", "GENDERS", "METHOD", "ClipRow", "score_suite"]

GENDERS = ("female", "male")
FIGURES = ("uar", "uar_drop", "unchanged")  # per case, per gender and in the suite mean
METHOD = "speaker bootstrap, per fold then the fold mean"
METHOD_DROP = "paired speaker bootstrap of clean − corrupted UAR, per fold then the fold mean"
METHOD_SUITE = (
    "speaker bootstrap of the suite mean (each corruption's severities, then the corruptions)"
)


@dataclass(frozen=True)
class ClipRow:
    """One test clip under one case: its clean and corrupted predictions."""

    id: str
    fold: str
    speaker: str
    gender: str
    true: str
    case: str
    clean_pred: str
    pred: str

    @property
    def unchanged(self) -> bool:
        return self.pred == self.clean_pred


Estimate = tuple[float | None, np.ndarray | None]  # (value, replicate values or None)


class _Draws:
    """The speaker draws shared by every figure of one model, and its count tables."""

    def __init__(
        self, rows: Sequence[ClipRow], labels: Sequence[str], replicates: int, seed: int
    ) -> None:
        gender: dict[str, str] = {}
        for row in rows:
            gender.setdefault(row.speaker, row.gender)
        self.speakers = sorted(gender)
        self.folds = sorted({r.fold for r in rows})
        self.labels = list(labels)
        genders = [gender[s] for s in self.speakers]
        self.strata = genders if all(g in GENDERS for g in genders) else None
        self.weights = (
            bs.speaker_weights(len(self.speakers), replicates, seed, strata=self.strata)
            if replicates > 0
            else None
        )

    def _tables(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        observed = bs.resample(counts, np.ones((1, counts.shape[0])))[0]
        return observed, None if self.weights is None else bs.resample(counts, self.weights)

    def confusion(self, rows: Sequence[ClipRow], corrupted: bool):
        counts = bs.confusion_counts(
            [r.speaker for r in rows],
            [r.fold for r in rows],
            [r.true for r in rows],
            [r.pred if corrupted else r.clean_pred for r in rows],
            labels=self.labels,
            groups=[r.gender for r in rows],
            speaker_list=self.speakers,
            fold_list=self.folds,
            group_list=list(GENDERS),
        )
        return self._tables(counts)

    def unchanged(self, rows: Sequence[ClipRow]):
        counts = bs.attack_counts(
            [r.speaker for r in rows],
            [r.fold for r in rows],
            [True] * len(rows),
            [r.unchanged for r in rows],
            speaker_list=self.speakers,
            fold_list=self.folds,
        )
        return self._tables(counts)


def _estimate(metric: Callable[[np.ndarray], np.ndarray], tables, cell_dims: int) -> Estimate:
    observed, resampled = tables
    value = float(bs.fold_values(metric, observed, cell_dims=cell_dims))
    samples = None if resampled is None else bs.fold_values(metric, resampled, cell_dims=cell_dims)
    return (None if np.isnan(value) else value), samples


def _uar_of(group: int | None) -> Callable[[np.ndarray], np.ndarray]:
    if group is None:
        return bs.uar_from_counts
    return lambda tables: bs.uar_from_counts(tables[..., group : group + 1, :, :])


def _difference(a: Estimate, b: Estimate) -> Estimate:
    value = None if a[0] is None or b[0] is None else a[0] - b[0]
    samples = None if a[1] is None or b[1] is None else a[1] - b[1]
    return value, samples


def _present(rows: Sequence[ClipRow]) -> list[str | None]:
    """``None`` (all clips) and each gender with clips among ``rows``."""
    return [None, *(g for g in GENDERS if any(r.gender == g for r in rows))]


def _uars(draws: _Draws, rows: Sequence[ClipRow], *, corrupted: bool) -> dict[str | None, Estimate]:
    """UAR of the clean or corrupted predictions: over all clips and per gender."""
    tables = draws.confusion(rows, corrupted)
    return {
        gender: _estimate(_uar_of(None if gender is None else GENDERS.index(gender)), tables, 3)
        for gender in _present(rows)
    }


def _figures(draws: _Draws, rows: Sequence[ClipRow]) -> dict[str | None, dict[str, Estimate]]:
    """``{None: all clips, "female": ..., "male": ...}`` → ``{figure: estimate}``."""
    clean, corrupted = _uars(draws, rows, corrupted=False), _uars(draws, rows, corrupted=True)
    out: dict[str | None, dict[str, Estimate]] = {}
    for gender in clean:
        mine = rows if gender is None else [r for r in rows if r.gender == gender]
        out[gender] = {
            "uar": corrupted[gender],
            "uar_clean": clean[gender],
            "uar_drop": _difference(clean[gender], corrupted[gender]),
            "unchanged": _estimate(bs.asr_from_counts, draws.unchanged(mine), 1),
        }
    return out


def _interval(estimate: Estimate, level: float, method: str) -> dict[str, Any] | None:
    value, samples = estimate
    if samples is None:
        return None
    return bs.interval(value, samples, level=level, method=method).to_dict()


_METHODS = {"uar": METHOD, "uar_clean": METHOD, "uar_drop": METHOD_DROP, "unchanged": METHOD}


def _block(figures: Mapping[str | None, Mapping[str, Estimate]], level: float) -> dict[str, Any]:
    """Values, per-gender values and intervals of one case (or the clean set)."""
    overall = figures[None]
    block: dict[str, Any] = {key: value for key, (value, _) in overall.items()}
    block["per_gender"] = {
        g: {key: value for key, (value, _) in figures[g].items()} for g in GENDERS if g in figures
    }
    intervals = {}
    for gender, estimates in figures.items():
        for key, estimate in estimates.items():
            found = _interval(estimate, level, _METHODS[key])
            if found is not None:
                intervals[key if gender is None else f"{gender}_{key}"] = found
    block["intervals"] = intervals
    return block


def _per_fold(rows: Sequence[ClipRow], labels: Sequence[str]) -> list[dict[str, Any]]:
    from trustser.metrics.performance import uar_score

    out = []
    for fold in sorted({r.fold for r in rows}):
        mine = [r for r in rows if r.fold == fold]
        out.append(
            {
                "fold": fold,
                "num_clips": len(mine),
                "uar": uar_score([r.true for r in mine], [r.pred for r in mine]),
                "uar_clean": uar_score([r.true for r in mine], [r.clean_pred for r in mine]),
                "unchanged": float(np.mean([r.unchanged for r in mine])),
            }
        )
    return out


def score_suite(
    rows: Sequence[ClipRow],
    labels: Sequence[str],
    cases: Sequence[CorruptionCase],
    *,
    replicates: int = bs.DEFAULT_REPLICATES,
    seed: int = 0,
    level: float = bs.DEFAULT_LEVEL,
) -> dict[str, Any]:
    """Every figure of one model: ``clean`` (the clean UAR of its test clips), ``cases`` (one
    block per case: ``uar``, ``uar_clean``, ``uar_drop``, ``unchanged``, ``per_gender``,
    ``per_fold``, ``intervals``), ``suite_mean`` (their suite means) and ``bootstrap`` (the
    design).
    ``replicates = 0``: values only."""
    draws = _Draws(rows, labels, replicates, seed)
    by_case: dict[str, list[ClipRow]] = {}
    for row in rows:
        by_case.setdefault(row.case, []).append(row)
    clips = list({r.id: r for r in rows}.values())
    clean = _uars(draws, clips, corrupted=False)
    clean_block: dict[str, Any] = {
        "uar": clean[None][0],
        "per_gender": {g: {"uar": clean[g][0]} for g in GENDERS if g in clean},
        "intervals": {},
        "num_clips": len(clips),
    }
    for gender, estimate in clean.items():
        found = _interval(estimate, level, METHOD)
        if found is not None:
            clean_block["intervals"]["uar" if gender is None else f"{gender}_uar"] = found
    blocks, estimates = [], {}
    for case in cases:
        mine = by_case.get(case.name, [])
        if not mine:
            continue
        figures = _figures(draws, mine)
        estimates[case.name] = figures
        blocks.append(
            {
                "name": case.name,
                "corruption": case.corruption.name,
                "severity": case.severity.level,
                "label": case.severity.label,
                "num_clips": len(mine),
                **_block(figures, level),
                "per_fold": _per_fold(mine, labels),
            }
        )
    corruption_of = {c.name: c.corruption.name for c in cases}
    suite: dict[str, Any] = {"per_gender": {}, "intervals": {}}
    for gender in (None, *GENDERS):
        for key in FIGURES:
            found = {
                name: figures[gender][key]
                for name, figures in estimates.items()
                if gender in figures
            }
            if not found:
                continue
            value = suite_mean({n: v for n, (v, _) in found.items()}, corruption_of)
            value = None if np.isnan(value) else float(value)
            samples = None
            if all(s is not None for _, s in found.values()):
                samples = suite_mean({n: s for n, (_, s) in found.items()}, corruption_of)
            target = suite if gender is None else suite["per_gender"].setdefault(gender, {})
            target[key] = value
            interval = _interval((value, samples), level, METHOD_SUITE)
            if interval is not None:
                suite["intervals"][key if gender is None else f"{gender}_{key}"] = interval
    design = None
    if draws.weights is not None:
        design = {
            "replicates": int(replicates),
            "seed": int(seed),
            "level": level,
            "unit": "test speaker",
            "num_speakers": len(draws.speakers),
            "strata": "gender"
            if draws.strata is not None
            else "none (some speakers have no gender)",
            "interval": "percentile",
        }
    return {"clean": clean_block, "cases": blocks, "suite_mean": suite, "bootstrap": design}
