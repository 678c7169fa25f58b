"""95 % intervals for every figure of a profile, and paired comparisons between its rows.

The test clips a profile's figures were measured on are re-read (``predictions.csv`` of the
heads, ``clips.csv`` of the attacks) into per-speaker count tables and bootstrapped at the
speaker level (:mod:`trustser.metrics.bootstrap`). One set of speaker draws serves every row and
every axis, so replicate ``b`` of two models is the same resampled test set: comparisons between
rows are paired, and a ranking can be recomputed replicate by replicate.

What each figure's interval means (docs/metrics.md, "Uncertainty"):

========================  =======================================================
figure                    bootstrap
========================  =======================================================
UAR, accuracy, macro-F1   per fold, then the fold mean (the heads' figures)
multiclass EO and SP      per fold, then the mean over folds with both genders
gender / speaker attacks  the head's accuracy per fold, then the fold mean
ASR (each attack)         attacked clips per fold (clustered by speaker), then the mean
GMACs, parameters         exact: counted, no sampling error
latency                   the spread of the repeated timings (2.5th–97.5th percentile)
========================  =======================================================
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trustser.metrics import bootstrap as bs
from trustser.profile.model import AXES, BackboneProfile, Profile, ProfileError

__all__ = [
    "AXIS_HIGHER_IS_BETTER",
    "COMPARED_AXES",
    "DEFAULT_SEED",
    "bootstrap_profile",
    "compare_rows",
    "comparison_table",
]

DEFAULT_SEED = 0
FEW_SPEAKERS = 10  # fewer test speakers per stratum than this: the intervals are optimistic
AXIS_HIGHER_IS_BETTER = {
    "performance": True,
    "privacy": False,
    "safety": False,
    "fairness": False,
    "sustainability": False,
}
COMPARED_AXES = AXES
_METHOD_FOLD = "speaker bootstrap, per fold then the fold mean"
_METHOD_FAIR = "speaker bootstrap, per fold then the mean over folds with both genders"
_METHOD_ASR = "speaker bootstrap of the attacked clips, per fold then the fold mean"
_ROUND = 6  # digits of the replicate values kept in profile.json


def _rows(path: Path) -> list[dict[str, str]] | None:
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows or None


def _labels(rows: list[dict[str, str]], true: str, pred: str) -> list[str]:
    probs = [k[len("prob_") :] for k in rows[0] if k.startswith("prob_")]
    seen = {r[true] for r in rows} | {r[pred] for r in rows}
    return probs if probs and seen <= set(probs) else sorted(seen)


class _Sources:
    """The per-clip files of one results directory, read once."""

    def __init__(self, directory: Path, attack: tuple[str, float]) -> None:
        self.emotion = _rows(directory / "emotion" / "predictions.csv")
        self.gender = _rows(directory / "gender" / "predictions.csv")
        self.speaker = _rows(directory / "speaker" / "predictions.csv")
        self.probe_gender = _rows(directory / "probe" / "predictions-gender.csv")
        self.attacks: dict[str, list[dict[str, str]]] = {}
        for folder in sorted(directory.glob("attack-*")) if directory.is_dir() else []:
            rows = _rows(folder / "clips.csv")
            if rows and {"speaker", "fold", "true", "clean_pred", "success"} <= set(rows[0]):
                self.attacks[folder.name] = rows

    def all_rows(self) -> list[dict[str, str]]:
        out = []
        for rows in (
            self.emotion,
            self.gender,
            self.speaker,
            self.probe_gender,
            *self.attacks.values(),
        ):
            out += rows or []
        return out


def _speakers_of(sources: Sequence[_Sources]) -> tuple[list[str], list[str]]:
    """Every test speaker of the profile (sorted) and its gender (``""`` when unknown)."""
    gender: dict[str, str] = {}
    for source in sources:
        for row in source.all_rows():
            if "speaker" in row:
                gender.setdefault(row["speaker"], row.get("gender", "") or "")
    speakers = sorted(gender)
    return speakers, [gender[s] for s in speakers]


class _Estimator:
    """Observed value and replicate values of count-table metrics on one profile's draws."""

    def __init__(self, speakers: list[str], weights: np.ndarray, level: float) -> None:
        self.speakers, self.weights, self.level = speakers, weights, level

    def confusion(
        self, rows: list[dict[str, str]], true: str, pred: str, *, grouped: bool
    ) -> tuple[np.ndarray, np.ndarray]:
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
        observed = bs.resample(counts, np.ones((1, counts.shape[0])))[0]
        return observed, bs.resample(counts, self.weights)

    def attack(self, rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        return self.rates(
            rows,
            [r["success"].strip() in ("1", "True", "true") for r in rows],
            tried=[r["true"] == r["clean_pred"] for r in rows],
        )

    def rates(
        self, rows: list[dict[str, str]], hits: list[bool], *, tried: list[bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(tried, hit) tables of a rate: an attack's flips among attacked clips, or a head's
        correct answers among all clips."""
        counts = bs.attack_counts(
            [r["speaker"] for r in rows],
            [r["fold"] for r in rows],
            [True] * len(rows) if tried is None else tried,
            hits,
            speaker_list=self.speakers,
            fold_list=sorted({r["fold"] for r in rows}),
        )
        observed = bs.resample(counts, np.ones((1, counts.shape[0])))[0]
        return observed, bs.resample(counts, self.weights)

    def interval(
        self,
        metric: Callable[[np.ndarray], np.ndarray],
        tables: tuple[np.ndarray, np.ndarray],
        method: str,
        *,
        cell_dims: int = 3,
        pooled: bool = False,
    ) -> bs.Interval:
        observed, resampled = tables
        value = float(bs.fold_values(metric, observed, cell_dims=cell_dims, pooled=pooled))
        samples = bs.fold_values(metric, resampled, cell_dims=cell_dims, pooled=pooled)
        return bs.interval(
            None if math.isnan(value) else value, samples, level=self.level, method=method
        )


def _exact(value: float | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"value": value, "low": value, "high": value, "method": f"exact ({what})"}


def _latency(cost: dict[str, Any], level: float) -> dict[str, Any] | None:
    """The spread of the repeated timings: their central ``level`` range (all timings recorded)
    or, from an older cost.json, the median with the 90th percentile as the upper end."""
    median = cost.get("latency_ms")
    if median is None:
        return None
    runs = cost.get("latency_ms_runs")
    if isinstance(runs, list) and len(runs) >= 2:
        tail = 100.0 * (1.0 - level) / 2.0
        low, high = (float(x) for x in np.percentile(runs, [tail, 100.0 - tail]))
        return {
            "value": median,
            "low": min(low, median),
            "high": max(high, median),
            "method": f"spread of {len(runs)} repeated timings (central {level:.0%})",
        }
    return {
        "value": median,
        "low": None,
        "high": cost.get("latency_ms_p90"),
        "method": "median to 90th percentile of the repeated timings (rerun `trustser cost` to "
        "record every timing)",
    }


def _store(
    entry: BackboneProfile, key: str, result: bs.Interval, *, axis: str | None = None
) -> None:
    entry.intervals[key] = result.to_dict()
    if axis is not None:
        entry.intervals[axis] = result.to_dict()
        entry.replicates[axis] = [
            None if math.isnan(x) else round(float(x), _ROUND) for x in result.samples
        ]


# The probe attackers of the privacy axis (trustser.heads.probe.PROBE_ATTACKERS) -> interval key.
_PROBE_KEYS = {
    "linear probe (all layers)": "gender_accuracy_probe",
    "linear probe (layer chosen on dev)": "gender_accuracy_probe_dev_layer",
}


def _bootstrap_entry(
    entry: BackboneProfile,
    source: _Sources,
    estimator: _Estimator,
    attack: tuple[str, float],
) -> None:
    entry.intervals, entry.replicates = {}, {}
    level = estimator.level
    if source.emotion is not None:
        tables = estimator.confusion(source.emotion, "true", "pred", grouped=True)
        _store(
            entry,
            "uar",
            estimator.interval(bs.uar_from_counts, tables, _METHOD_FOLD),
            axis="performance",
        )
        for key, metric in (
            ("accuracy", bs.accuracy_from_counts),
            ("macro_f1", bs.macro_f1_from_counts),
        ):
            _store(entry, key, estimator.interval(metric, tables, _METHOD_FOLD))
        eo = estimator.interval(bs.multiclass_eo_from_counts, tables, _METHOD_FAIR)
        if entry.fairness and entry.fairness.get("eo_basis", "").startswith("pooled"):
            eo = estimator.interval(
                bs.multiclass_eo_from_counts,
                tables,
                "speaker bootstrap, pooled over all test clips",
                pooled=True,
            )
        _store(
            entry,
            "eo_multiclass",
            eo,
            axis="fairness" if entry.raw.get("fairness") is not None else None,
        )
        _store(
            entry,
            "eo_multiclass_pooled",
            estimator.interval(
                bs.multiclass_eo_from_counts,
                tables,
                "speaker bootstrap, pooled over all test clips",
                pooled=True,
            ),
        )
        _store(
            entry,
            "sp_multiclass",
            estimator.interval(bs.multiclass_sp_from_counts, tables, _METHOD_FAIR),
        )
        _store(
            entry,
            "eo_max_class",
            estimator.interval(
                lambda t: bs.class_gaps_from_counts(t)["equalized_odds_max"], tables, _METHOD_FAIR
            ),
        )
    if source.gender is not None:
        tables = estimator.confusion(source.gender, "true", "pred", grouped=False)
        head = estimator.interval(bs.accuracy_from_counts, tables, _METHOD_FOLD)
        attacker = entry.privacy_attacker
        _store(
            entry,
            "gender_accuracy_head",
            head,
            axis="privacy" if attacker == "gender head" else None,
        )
        _store(
            entry, "gender_uar_head", estimator.interval(bs.uar_from_counts, tables, _METHOD_FOLD)
        )
    attacker = entry.privacy_attacker
    probes = {row["attacker"] for row in source.probe_gender or []}
    for name, key in _PROBE_KEYS.items():
        if name not in probes:
            continue
        rows = [row for row in source.probe_gender if row["attacker"] == name]
        tables = estimator.confusion(rows, "true", "pred", grouped=False)
        _store(
            entry,
            key,
            estimator.interval(bs.accuracy_from_counts, tables, _METHOD_FOLD),
            axis="privacy" if attacker == name else None,
        )
    if attacker not in (None, "gender head") and attacker not in probes:
        entry.notes.append(
            f"privacy: the axis holds the {attacker}, whose per-clip predictions were not found "
            "(probes written by an earlier version), so its figure has no interval; rerun "
            "`trustser heads probe` to get one."
        )
    if source.speaker is not None:
        # Speaker ID has one class per speaker: count (clips, hits) instead of a [C, C] table.
        rows = source.speaker
        hits = estimator.rates(rows, [r["true"] == r["pred"] for r in rows])
        _store(
            entry,
            "speaker_accuracy",
            estimator.interval(bs.asr_from_counts, hits, _METHOD_FOLD, cell_dims=1),
        )
    method, snr = attack
    asr_samples: dict[str, bs.Interval] = {}
    for folder, rows in source.attacks.items():
        result = estimator.interval(
            bs.asr_from_counts, estimator.attack(rows), _METHOD_ASR, cell_dims=1
        )
        asr_samples[folder] = result
    for item in (entry.safety or {}).get("attacks", []):
        result = asr_samples.get(item["directory"])
        if result is None:
            continue
        key = f"asr_{item['method']}_{item['snr_db']:g}db"
        chosen = item["method"] == method and math.isclose(item["snr_db"], snr)
        _store(
            entry,
            key,
            result,
            axis="safety" if chosen and entry.raw.get("safety") is not None else None,
        )
    noise = next(
        (
            asr_samples.get(a["directory"])
            for a in (entry.safety or {}).get("attacks", [])
            if a["method"] == "noise" and math.isclose(a["snr_db"], snr)
        ),
        None,
    )
    chosen_interval = entry.intervals.get("safety")
    if noise is not None and chosen_interval is not None and "safety" in entry.replicates:
        attack_samples = np.array(
            [np.nan if x is None else x for x in entry.replicates["safety"]], dtype=float
        )
        excess = attack_samples - noise.samples
        value = chosen_interval["value"] - noise.value if noise.value is not None else None
        _store(
            entry,
            "adversarial_excess",
            bs.interval(
                value, excess, level=level, method="paired speaker bootstrap of attack − noise ASR"
            ),
        )
    cost = entry.sustainability or {}
    if entry.raw.get("sustainability") is not None:
        entry.intervals["sustainability"] = _exact(entry.raw["sustainability"], "counted MACs")
        entry.intervals["gmacs"] = entry.intervals["sustainability"]
    for key in ("backbone_params", "head_params"):
        if cost.get(key) is not None:
            entry.intervals[key] = _exact(cost[key], "counted parameters")
    latency = _latency(cost, level)
    if latency is not None:
        entry.intervals["latency_ms"] = latency


def bootstrap_profile(
    profile: Profile,
    runs: str | Path,
    *,
    replicates: int = bs.DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    level: float = bs.DEFAULT_LEVEL,
) -> Profile:
    """Attach intervals (``entry.intervals``) and the axes' replicate values
    (``entry.replicates``) to every measured row of ``profile``, from the per-clip files under
    ``runs``; records the design in ``profile.bootstrap``. ``replicates = 0`` leaves it as is."""
    if replicates < 0:
        raise ProfileError(
            f"--bootstrap must be 0 (off) or a number of replicates, got {replicates}."
        )
    if replicates == 0:
        return profile
    attack = (profile.attack["method"], float(profile.attack["snr_db"]))
    root = Path(runs)
    measured = [b for b in profile.backbones if not b.reference and b.directory]
    sources = [_Sources(root / b.directory, attack) for b in measured]
    speakers, genders = _speakers_of(sources)
    if not speakers:
        profile.notes.append(
            "no per-clip predictions (predictions.csv, clips.csv) were found, so the figures have "
            "no intervals."
        )
        return profile
    strata = genders if all(genders) else None
    weights = bs.speaker_weights(len(speakers), replicates, seed, strata=strata)
    estimator = _Estimator(speakers, weights, level)
    for entry, source in zip(measured, sources, strict=True):
        _bootstrap_entry(entry, source, estimator, attack)
    smallest = min(genders.count(g) for g in set(genders)) if strata is not None else len(speakers)
    if smallest < FEW_SPEAKERS:
        profile.notes.append(
            f"intervals: only {smallest} test speaker(s) in the smallest "
            f"{'gender' if strata is not None else 'test set'}; a bootstrap over so few speakers "
            "is optimistic (in a simulation of 5 × 2 test speakers the paired test's false-positive "
            "rate was about 16 %, not 5 %): read p-values near 0.05 as inconclusive."
        )
    profile.bootstrap = {
        "replicates": replicates,
        "seed": seed,
        "level": level,
        "unit": "test speaker",
        "num_speakers": len(speakers),
        "strata": "gender (each replicate keeps the number of test speakers of each gender)"
        if strata is not None
        else "none (some speakers have no gender)",
        "interval": "percentile",
    }
    return profile


def _samples(entry: BackboneProfile, axis: str) -> np.ndarray | None:
    values = entry.replicates.get(axis) if entry.replicates else None
    if values is None:
        return None
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def compare_rows(
    a: BackboneProfile, b: BackboneProfile, *, level: float = bs.DEFAULT_LEVEL
) -> list[bs.Comparison]:
    """Per axis, the paired difference ``A − B`` of the raw figures, its interval, p-value and
    verdict (``A better``, ``B better``, ``no significant difference``). Sustainability (counted
    MACs) is exact; an axis without replicates on either side is compared only when exact."""
    out = []
    for axis in COMPARED_AXES:
        av, bv = a.raw.get(axis), b.raw.get(axis)
        higher = AXIS_HIGHER_IS_BETTER[axis]
        if axis == "sustainability":
            out.append(bs.compare_replicates(axis, av, bv, None, None, higher_is_better=higher))
            continue
        sa, sb = _samples(a, axis), _samples(b, axis)
        if sa is None or sb is None or sa.size != sb.size:
            result = bs.compare_replicates(axis, av, bv, None, None, higher_is_better=higher)
            result.exact = False
            result.low = result.high = None
            if result.difference is not None:
                result.verdict = "no interval (no per-clip predictions)"
            out.append(result)
            continue
        out.append(
            bs.compare_replicates(axis, av, bv, sa, sb, higher_is_better=higher, level=level)
        )
    return out


def comparison_table(profile: Profile) -> list[dict[str, Any]]:
    """Paired comparisons of every pair of measured rows of ``profile`` (in profile order) that
    were tested on the same speakers (the same corpus, or both means over the same corpora)."""
    rows = [b for b in profile.backbones if not b.reference and b.replicates]
    level = (profile.bootstrap or {}).get("level", bs.DEFAULT_LEVEL)
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if a.corpus != b.corpus:  # different test speakers: not a paired comparison
                continue
            out.append(
                {
                    "a": a.name,
                    "b": b.name,
                    "axes": {c.metric: c.to_dict() for c in compare_rows(a, b, level=level)},
                }
            )
    return out
