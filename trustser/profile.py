"""The trust profile: five axes per backbone, collected from the results layout and normalised.

``collect_profile`` reads what the other stages wrote under ``runs/`` (see :mod:`trustser.runs`):
the emotion head's ``metrics.json`` and ``predictions.csv`` (performance, fairness), the gender and
speaker heads (privacy), ``attack-*/summary.json`` (safety) and ``cost.json`` (sustainability).
Each axis has one *raw* metric and a *score* in [0, 1] where **higher is more trustworthy**:

==============  ==============================  =====================  =====================
axis            raw metric                      ``paper`` scale        ``absolute`` scale
                                                (worst → best)         (worst → best)
==============  ==============================  =====================  =====================
performance     emotion UAR (fold mean)         0.50 → 0.75            chance 1/C → 1
privacy         gender accuracy (fold mean)     1.00 → 0.85            1 → majority chance
safety          ASR of FGSM at 45 dB            1.00 → 0.40            1 → 0
fairness        multiclass EO (fold mean)       0.25 → 0.10            1 → 0
sustainability  GMACs per 6 s clip (log10)      100 → 1                1000 → 0.1
==============  ==============================  =====================  =====================

``score = (f(v) − f(worst)) / (f(best) − f(worst))`` with ``f = log10`` for sustainability and
the identity otherwise, clipped to [0, 1] (clipping is flagged). The ``paper`` bounds bracket the
ranges of the paper's Table 4 (UAR 58–67 %, EO 16–21 %, ASR 54–88 %, gender accuracy 92–98 %,
2.4–42 GMAC) with margin; ``relative`` is min–max over the compared backbones. docs/metrics.md
gives the full definitions.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import shlex
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import TrustSERError, check_choice
from trustser._version import __version__
from trustser.metrics._common import MetricError, MetricWarning, mean_std
from trustser.metrics.fairness import fairness_report
from trustser.metrics.performance import performance_summary
from trustser.metrics.privacy import inference_report
from trustser.metrics.safety import adversarial_excess
from trustser.runs import DEFAULT_RUNS, RunLayout, read_json, safe_name, write_json

__all__ = [
    "AXES",
    "AXIS_TITLES",
    "PAPER_TABLE4",
    "PROFILE_FORMAT_VERSION",
    "SCALE_MODES",
    "AxisScale",
    "BackboneProfile",
    "Profile",
    "ProfileError",
    "axis_score",
    "collect_backbone",
    "collect_profile",
    "paper_reference",
    "profile_to_csv",
    "profile_to_markdown",
    "read_profile",
    "run_profile",
    "scale_bounds",
    "score_profile",
    "write_profile",
]

AXES: tuple[str, ...] = ("performance", "privacy", "safety", "fairness", "sustainability")
AXIS_TITLES = {
    "performance": "Performance",
    "privacy": "Privacy",
    "safety": "Safety",
    "fairness": "Fairness",
    "sustainability": "Sustainability",
}
SCALE_MODES: tuple[str, ...] = ("paper", "absolute", "relative")
PROFILE_FORMAT_VERSION = 1
DEFAULT_ATTACK = ("fgsm", 45.0)

# The paper's Table 4 (NOTES §1; read off the reference repo's profile images, ±0.4). GMAC are
# thop MACs (the paper calls them GFLOPs); WavLM's is undercounted there (thop misses attention).
PAPER_TABLE4: dict[str, dict[str, float]] = {
    "APC": {"uar": 0.588, "eo": 0.209, "gmacs": 2.5, "asr": 0.881, "gender_accuracy": 0.957},
    "TERA": {"uar": 0.580, "eo": 0.205, "gmacs": 12.7, "asr": 0.706, "gender_accuracy": 0.960},
    "wav2vec2": {"uar": 0.646, "eo": 0.171, "gmacs": 41.6, "asr": 0.539, "gender_accuracy": 0.972},
    "WavLM Base+": {
        "uar": 0.671,
        "eo": 0.164,
        "gmacs": 33.1,
        "asr": 0.579,
        "gender_accuracy": 0.983,
    },
    "Whisper tiny": {
        "uar": 0.637,
        "eo": 0.164,
        "gmacs": 2.4,
        "asr": 0.788,
        "gender_accuracy": 0.922,
    },
    "Whisper base": {
        "uar": 0.662,
        "eo": 0.169,
        "gmacs": 5.9,
        "asr": 0.731,
        "gender_accuracy": 0.976,
    },
    "Whisper small": {
        "uar": 0.670,
        "eo": 0.166,
        "gmacs": 26.4,
        "asr": 0.627,
        "gender_accuracy": 0.974,
    },
}


class ProfileError(TrustSERError, ValueError):
    """A profile that cannot be built or read as asked (nothing run, bad profile.json)."""


@dataclass(frozen=True)
class AxisScale:
    """How one axis's raw metric maps to a [0, 1] score (1 = most trustworthy)."""

    axis: str
    metric: str
    unit: str  # "fraction" or "GMAC"
    worst: float | None  # None: depends on the data (chance) or the compared set (relative)
    best: float | None
    log: bool
    description: str


_SCALES: dict[str, dict[str, AxisScale]] = {
    "paper": {
        "performance": AxisScale(
            "performance", "emotion UAR", "fraction", 0.50, 0.75, False, "UAR 50 % → 75 %"
        ),
        "privacy": AxisScale(
            "privacy",
            "gender accuracy",
            "fraction",
            1.00,
            0.85,
            False,
            "gender-inference accuracy 100 % → 85 %",
        ),
        "safety": AxisScale(
            "safety", "attack success rate", "fraction", 1.00, 0.40, False, "ASR 100 % → 40 %"
        ),
        "fairness": AxisScale(
            "fairness",
            "multiclass equalized odds",
            "fraction",
            0.25,
            0.10,
            False,
            "EO 25 % → 10 %",
        ),
        "sustainability": AxisScale(
            "sustainability",
            "GMACs per clip",
            "GMAC",
            100.0,
            1.0,
            True,
            "log10 GMAC 100 → 1",
        ),
    },
    "absolute": {
        "performance": AxisScale(
            "performance", "emotion UAR", "fraction", None, 1.0, False, "UAR chance (1/C) → 100 %"
        ),
        "privacy": AxisScale(
            "privacy",
            "gender accuracy",
            "fraction",
            1.0,
            None,
            False,
            "gender-inference accuracy 100 % → majority-class chance",
        ),
        "safety": AxisScale(
            "safety", "attack success rate", "fraction", 1.0, 0.0, False, "ASR 100 % → 0 %"
        ),
        "fairness": AxisScale(
            "fairness", "multiclass equalized odds", "fraction", 1.0, 0.0, False, "EO 100 % → 0 %"
        ),
        "sustainability": AxisScale(
            "sustainability",
            "GMACs per clip",
            "GMAC",
            1000.0,
            0.1,
            True,
            "log10 GMAC 1000 → 0.1",
        ),
    },
}
_HIGHER_IS_BETTER = {
    "performance": True,
    "privacy": False,
    "safety": False,
    "fairness": False,
    "sustainability": False,
}


@dataclass
class BackboneProfile:
    """One backbone's measurements (per axis, ``None`` when not run) and, once scored, scores."""

    name: str
    directory: str | None = None
    performance: dict[str, Any] | None = None
    fairness: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None
    safety: dict[str, Any] | None = None
    sustainability: dict[str, Any] | None = None
    probe: dict[str, float] | None = None  # linear probes on time-means: a reference attacker
    raw: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(AXES))
    scores: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(AXES))
    clipped: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(AXES, False))
    missing: dict[str, str] = field(default_factory=dict)  # axis -> the command that fills it
    context: dict[str, float] = field(default_factory=dict)  # chance levels for absolute scales
    notes: list[str] = field(default_factory=list)
    reference: bool = False  # a row from the paper, not measured here

    @property
    def complete(self) -> bool:
        return all(self.scores.get(axis) is not None for axis in AXES)


@dataclass
class Profile:
    """Several backbones side by side, scored on one scale."""

    backbones: list[BackboneProfile]
    scale: str
    scales: dict[str, dict[str, Any]]
    attack: dict[str, Any]
    runs: str | None = None
    store: str | None = None
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> BackboneProfile:
        for entry in self.backbones:
            if entry.name == name or entry.directory == name:
                return entry
        names = ", ".join(b.name for b in self.backbones) or "none"
        raise ProfileError(f"backbone {name!r} is not in this profile (it has: {names}).")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "trustser-profile",
            "format_version": PROFILE_FORMAT_VERSION,
            "trustser_version": __version__,
            "axes": list(AXES),
            "direction": "higher is more trustworthy on every axis (scores in [0, 1])",
            "scale": self.scale,
            "scales": self.scales,
            "attack": self.attack,
            "runs": self.runs,
            "store": self.store,
            "notes": list(self.notes),
            "backbones": [asdict(b) for b in self.backbones],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("format") != "trustser-profile":
            raise ProfileError("not a trustser profile.json (missing format 'trustser-profile').")
        if data.get("format_version") != PROFILE_FORMAT_VERSION:
            raise ProfileError(
                f"profile format version {data.get('format_version')!r} is not supported (this "
                f"trustser reads {PROFILE_FORMAT_VERSION}); rerun `trustser profile`."
            )
        known = {f for f in BackboneProfile.__dataclass_fields__}
        backbones = [
            BackboneProfile(**{k: v for k, v in b.items() if k in known}) for b in data["backbones"]
        ]
        return cls(
            backbones=backbones,
            scale=data["scale"],
            scales=data["scales"],
            attack=data["attack"],
            runs=data.get("runs"),
            store=data.get("store"),
            notes=list(data.get("notes", [])),
        )


# --------------------------------------------------------------------------- normalisation


def axis_score(value: float, worst: float, best: float, *, log: bool = False) -> tuple[float, bool]:
    """``(score, clipped)``: ``value`` mapped linearly (or in log10) so ``worst`` → 0, ``best`` → 1."""
    if log:
        if value <= 0 or worst <= 0 or best <= 0:
            raise ProfileError(
                f"a log scale needs positive values, got {value!r} on [{worst}, {best}]."
            )
        value, worst, best = math.log10(value), math.log10(worst), math.log10(best)
    if best == worst:
        raise ProfileError(f"a scale needs distinct ends, got worst = best = {worst!r}.")
    score = (value - worst) / (best - worst)
    clipped = score < -1e-12 or score > 1 + 1e-12
    return float(min(1.0, max(0.0, score))), clipped


def scale_bounds(
    mode: str, axis: str, entry: BackboneProfile, compared: Sequence[BackboneProfile]
) -> tuple[float, float, bool]:
    """``(worst, best, log)`` of ``axis`` for ``entry`` under scale ``mode``."""
    check_choice("scale", mode, SCALE_MODES)
    if mode == "relative":
        values = [b.raw[axis] for b in compared if b.raw.get(axis) is not None]
        higher = _HIGHER_IS_BETTER[axis]
        best, worst = (max(values), min(values)) if higher else (min(values), max(values))
        return worst, best, axis == "sustainability"
    scale = _SCALES[mode][axis]
    worst, best = scale.worst, scale.best
    if worst is None:  # absolute performance: chance = 1 / number of emotion classes
        worst = entry.context.get("emotion_chance", 0.25)
    if best is None:  # absolute privacy: chance = majority gender share
        best = entry.context.get("gender_chance", 0.5)
    return worst, best, scale.log


def _scales_description(mode: str) -> dict[str, dict[str, Any]]:
    if mode == "relative":
        return {
            axis: {
                "metric": _SCALES["paper"][axis].metric,
                "worst": "worst of the compared backbones",
                "best": "best of the compared backbones",
                "log": axis == "sustainability",
                "description": "min–max over the compared backbones"
                + (" (log10 GMAC)" if axis == "sustainability" else ""),
            }
            for axis in AXES
        }
    return {
        axis: {
            "metric": s.metric,
            "worst": s.worst if s.worst is not None else "chance (1/C)",
            "best": s.best if s.best is not None else "majority-class chance",
            "log": s.log,
            "description": s.description,
        }
        for axis, s in _SCALES[mode].items()
    }


def score_profile(profile: Profile, scale: str) -> Profile:
    """Score every backbone of ``profile`` on ``scale`` (``paper``, ``absolute``, ``relative``)."""
    check_choice("scale", scale, SCALE_MODES)
    notes = [n for n in profile.notes if not n.startswith("relative scale:")]
    backbones = []
    for entry in profile.backbones:
        entry = replace(entry, scores=dict.fromkeys(AXES), clipped=dict.fromkeys(AXES, False))
        backbones.append(entry)
    for axis in AXES:
        measured = [b for b in backbones if b.raw.get(axis) is not None]
        if scale == "relative" and measured:
            values = {b.raw[axis] for b in measured}
            if len(values) == 1:
                notes.append(
                    f"relative scale: every compared backbone has the same {axis} value (or only one "
                    "was measured), so each scores 1 on it; compare more backbones or use --scale paper."
                )
                for b in measured:
                    b.scores[axis] = 1.0
                continue
        for b in measured:
            worst, best, log = scale_bounds(scale, axis, b, backbones)
            b.scores[axis], b.clipped[axis] = axis_score(b.raw[axis], worst, best, log=log)
    return Profile(
        backbones=backbones,
        scale=scale,
        scales=_scales_description(scale),
        attack=profile.attack,
        runs=profile.runs,
        store=profile.store,
        notes=notes,
    )


# --------------------------------------------------------------------------- collecting


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ProfileError(f"{str(path)!r} has no rows; rerun the stage that wrote it.")
    required = {"fold", "speaker", "gender", "true", "pred"}
    missing = required - set(rows[0])
    if missing:
        raise ProfileError(
            f"{str(path)!r} lacks column(s) {sorted(missing)}; expected id, fold, speaker, gender, "
            "true, pred, prob_<label>... (rerun `trustser heads fit`)."
        )
    return rows


def _column(rows: list[dict[str, str]], key: str) -> np.ndarray:
    return np.array([row[key] for row in rows])


def _labels_of(rows: list[dict[str, str]], metrics: dict[str, Any] | None) -> list[str]:
    if metrics and isinstance(metrics.get("labels"), list):
        return [str(x) for x in metrics["labels"]]
    probs = [k[len("prob_") :] for k in rows[0] if k.startswith("prob_")]
    if probs:
        return probs
    return sorted(set(_column(rows, "true").tolist()) | set(_column(rows, "pred").tolist()))


def _maybe_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ProfileError(f"{str(path)!r} is not a JSON object; rerun the stage that wrote it.")
    return data


def _performance(
    metrics: dict[str, Any] | None, rows: list[dict[str, str]] | None
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if rows is not None:
        y_true, y_pred = _column(rows, "true"), _column(rows, "pred")
        labels = _labels_of(rows, metrics)
        pooled = performance_summary(y_true, y_pred, labels=labels)
        folds = _column(rows, "fold")
        per_fold = {}
        for fold in dict.fromkeys(folds.tolist()):
            keep = folds == fold
            per_fold[fold] = performance_summary(y_true[keep], y_pred[keep], labels=labels)
        result.update(
            labels=labels,
            pooled=pooled,
            per_fold_uar={f: s["uar"] for f, s in per_fold.items()},
            num_utterances=len(rows),
        )
        uar = mean_std([s["uar"] for s in per_fold.values()])
        acc = mean_std([s["weighted_accuracy"] for s in per_fold.values()])
        f1 = mean_std([s["macro_f1"] for s in per_fold.values()])
        result.update(
            uar_mean=uar[0],
            uar_std=uar[1],
            accuracy_mean=acc[0],
            accuracy_std=acc[1],
            macro_f1_mean=f1[0],
            macro_f1_std=f1[1],
            num_folds=len(per_fold),
            source="predictions.csv",
        )
    if metrics is not None:  # the heads' own numbers are authoritative when present
        for ours, theirs in (
            ("uar_mean", "test_uar_mean"),
            ("uar_std", "test_uar_std"),
            ("accuracy_mean", "test_accuracy_mean"),
            ("accuracy_std", "test_accuracy_std"),
            ("macro_f1_mean", "test_macro_f1_mean"),
            ("macro_f1_std", "test_macro_f1_std"),
        ):
            if isinstance(metrics.get(theirs), (int, float)):
                result[ours] = float(metrics[theirs])
        if isinstance(metrics.get("test_per_class_recall_mean"), dict):
            result["per_class_recall_mean"] = metrics["test_per_class_recall_mean"]
        if isinstance(metrics.get("folds"), list):
            result["num_folds"] = len(metrics["folds"])
        result["source"] = "metrics.json"
    return result


def _fairness(rows: list[dict[str, str]], labels: list[str]) -> tuple[dict[str, Any], list[str]]:
    y_true, y_pred = _column(rows, "true"), _column(rows, "pred")
    genders, speakers, folds = (
        _column(rows, "gender"),
        _column(rows, "speaker"),
        _column(rows, "fold"),
    )
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        pooled = fairness_report(y_true, y_pred, genders, speakers=speakers, labels=labels)
        per_fold: dict[str, dict[str, float]] = {}
        for fold in dict.fromkeys(folds.tolist()):
            keep = folds == fold
            if len(set(genders[keep].tolist())) < 2:
                notes.append(
                    f"fold {fold}: only one gender among its test speakers; no fold-level fairness."
                )
                continue
            report = fairness_report(y_true[keep], y_pred[keep], genders[keep], labels=labels)
            per_fold[fold] = {
                "multiclass_equalized_odds": report.multiclass_equalized_odds,
                "multiclass_statistical_parity": report.multiclass_statistical_parity,
                "equalized_odds_max": report.equalized_odds_max,
                "equalized_odds_mean": report.equalized_odds_mean,
                "statistical_parity_max": report.statistical_parity_max,
                "statistical_parity_mean": report.statistical_parity_mean,
            }
    for w in caught:
        if issubclass(w.category, MetricWarning) and str(w.message) not in notes:
            notes.append(str(w.message))
    result: dict[str, Any] = {"pooled": pooled.to_dict(), "per_fold": per_fold}
    for key in (
        "multiclass_equalized_odds",
        "multiclass_statistical_parity",
        "equalized_odds_max",
        "equalized_odds_mean",
        "statistical_parity_max",
        "statistical_parity_mean",
    ):
        if per_fold:
            mean, std = mean_std([f[key] for f in per_fold.values()])
        else:
            mean, std = getattr(pooled, key), 0.0
        result[f"{key}_fold_mean"], result[f"{key}_fold_std"] = mean, std
    if not per_fold:
        notes.append("fold-level fairness was undefined everywhere; the pooled values are used.")
    result["eo_basis"] = "mean over folds" if per_fold else "pooled over all test predictions"
    return result, notes


def _inference(metrics: dict[str, Any] | None, rows: list[dict[str, str]] | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if rows is not None:
        labels = _labels_of(rows, metrics)
        pooled = inference_report(_column(rows, "true"), _column(rows, "pred"), labels=labels)
        result.update(
            accuracy=pooled.accuracy,
            uar=pooled.uar,
            leakage=pooled.leakage,
            chance_majority=pooled.chance.majority,
            chance_uniform=pooled.chance.uniform,
            majority_label=pooled.chance.majority_label,
            num_classes=pooled.chance.num_classes,
            num_utterances=pooled.num_utterances,
            source="predictions.csv (pooled)",
        )
    if metrics is not None:
        for ours, theirs in (
            ("accuracy", "test_accuracy_mean"),
            ("accuracy_std", "test_accuracy_std"),
            ("uar", "test_uar_mean"),
            ("uar_std", "test_uar_std"),
        ):
            if isinstance(metrics.get(theirs), (int, float)):
                result[ours] = float(metrics[theirs])
        if "chance_uniform" not in result and isinstance(metrics.get("labels"), list):
            result["chance_uniform"] = 1.0 / len(metrics["labels"])
            result["num_classes"] = len(metrics["labels"])
        result["source"] = "metrics.json (fold mean)"
    return result


def _attacks(layout: RunLayout, backbone: str) -> list[dict[str, Any]]:
    attacks = []
    for directory in layout.attack_dirs(backbone):
        summary = _maybe_json(directory / "summary.json")
        if summary is None:
            continue
        if summary.get("asr_mean") is None or "method" not in summary or "snr_db" not in summary:
            continue
        attacks.append(
            {
                "method": str(summary["method"]),
                "snr_db": float(summary["snr_db"]),
                "asr_mean": float(summary["asr_mean"]),
                "asr_std": float(summary.get("asr_std") or 0.0),
                "asr_pooled": summary.get("asr_pooled"),
                "num_attacked": summary.get("num_attacked"),
                "clean_accuracy": summary.get("clean_accuracy"),
                "directory": directory.name,
            }
        )
    return sorted(attacks, key=lambda a: (a["method"], -a["snr_db"]))


def _display_name(layout: RunLayout, name: str) -> str:
    """The backbone spec recorded by the stages (``tiny:whisper``), else the name as given."""
    base = layout.backbone_dir(name)
    for path in (
        base / "emotion" / "metrics.json",
        base / "cost.json",
        base / "gender" / "metrics.json",
    ):
        data = _maybe_json(path) if path.is_file() else None
        if (
            data
            and isinstance(data.get("backbone"), str)
            and safe_name(data["backbone"]) == base.name
        ):
            return data["backbone"]
    return name


def _store_of(layout: RunLayout, backbone: str) -> str | None:
    config = _maybe_json(layout.head_dir(backbone, "emotion") / "config.json")
    store = (config or {}).get("store")
    if isinstance(store, dict) and isinstance(store.get("path"), str):
        return store["path"]
    return None


def _commands(
    name: str, runs: str | None, store: str | None, attack: tuple[str, float]
) -> dict[str, str]:
    q = shlex.quote
    store_arg = q(store) if store else "<cache.zarr>"
    runs_arg = f" --runs {q(runs)}" if runs and runs != DEFAULT_RUNS else ""
    method, snr = attack
    heads = f"trustser heads fit --store {store_arg} --backbone {q(name)}"
    return {
        "performance": f"{heads} --task emotion{runs_arg}",
        "fairness": f"{heads} --task emotion{runs_arg}",
        "privacy": f"{heads} --task gender{runs_arg}",
        "safety": f"trustser attack --store {store_arg} --backbone {q(name)} --method {method} "
        f"--snr {snr:g}{runs_arg}",
        "sustainability": f"trustser cost --backbone {q(name)}{runs_arg}",
    }


@contextlib.contextmanager
def _noting(entry: BackboneProfile, what: str) -> Iterator[None]:
    """Keep metric warnings (undefined classes) as notes of the profile instead of stderr noise."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        yield
    for w in caught:
        if issubclass(w.category, MetricWarning):
            note = f"{what}: {w.message}"
            if note not in entry.notes:
                entry.notes.append(note)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def collect_backbone(
    runs: str | Path,
    name: str,
    *,
    store: str | None = None,
    attack: tuple[str, float] = DEFAULT_ATTACK,
) -> BackboneProfile:
    """Everything measured for backbone ``name`` under ``runs``; missing axes name their command."""
    from trustser.cost import read_cost

    layout = RunLayout(runs)
    display = _display_name(layout, name)
    entry = BackboneProfile(name=display, directory=safe_name(display))
    runs_text = str(runs)
    store = store or _store_of(layout, display)
    commands = _commands(display, runs_text, store, attack)

    emotion_dir = layout.head_dir(display, "emotion")
    metrics = _maybe_json(emotion_dir / "metrics.json")
    rows = (
        _read_rows(emotion_dir / "predictions.csv")
        if (emotion_dir / "predictions.csv").is_file()
        else None
    )
    if metrics is not None or rows is not None:
        with _noting(entry, "performance"):
            entry.performance = _performance(metrics, rows)
        entry.raw["performance"] = entry.performance.get("uar_mean")
        labels = entry.performance.get("labels") or (metrics or {}).get("labels")
        if labels:
            entry.context["emotion_chance"] = 1.0 / len(labels)
    if rows is not None:
        labels = _labels_of(rows, metrics)
        try:
            entry.fairness, notes = _fairness(rows, labels)
        except MetricError as error:
            entry.notes.append(f"fairness: {error}")
        else:
            entry.notes.extend(f"fairness: {n}" for n in notes)
            entry.raw["fairness"] = entry.fairness["multiclass_equalized_odds_fold_mean"]

    privacy: dict[str, Any] = {}
    for task in ("gender", "speaker"):
        task_dir = layout.head_dir(display, task)
        task_metrics = _maybe_json(task_dir / "metrics.json")
        path = task_dir / "predictions.csv"
        task_rows = _read_rows(path) if path.is_file() else None
        if task_metrics is not None or task_rows is not None:
            with _noting(entry, f"privacy ({task})"):
                privacy[task] = _inference(task_metrics, task_rows)
    if privacy:
        entry.privacy = privacy
        gender = privacy.get("gender")
        if gender is not None and gender.get("accuracy") is not None:
            entry.raw["privacy"] = gender["accuracy"]
            if gender.get("chance_majority") is not None:
                entry.context["gender_chance"] = gender["chance_majority"]

    attacks = _attacks(layout, display)
    if attacks:
        method, snr = attack
        chosen = next(
            (a for a in attacks if a["method"] == method and math.isclose(a["snr_db"], snr)), None
        )
        noise = next(
            (a for a in attacks if a["method"] == "noise" and math.isclose(a["snr_db"], snr)), None
        )
        entry.safety = {"attacks": attacks, "axis_attack": {"method": method, "snr_db": snr}}
        if chosen is not None:
            entry.raw["safety"] = chosen["asr_mean"]
            if noise is not None:
                entry.safety["noise_asr"] = noise["asr_mean"]
                entry.safety["adversarial_excess"] = adversarial_excess(
                    chosen["asr_mean"], noise["asr_mean"]
                )
        else:
            done = ", ".join(f"{a['method']} at {a['snr_db']:g} dB" for a in attacks)
            entry.notes.append(f"safety: attacks found ({done}) but not {method} at {snr:g} dB.")

    probe = _maybe_json(layout.probe_dir(display) / "metrics.json")
    if probe is not None:
        keys = ("emotion_test_uar_mean", "gender_test_accuracy_mean", "speaker_test_accuracy_mean")
        found = {k: float(probe[k]) for k in keys if isinstance(probe.get(k), (int, float))}
        entry.probe = found or None

    cost_path = layout.cost_path(display)
    if cost_path.is_file():
        cost = read_cost(cost_path)
        keys = (
            "gmacs",
            "total_macs",
            "backbone_macs",
            "head_macs",
            "attention_macs",
            "torch_flops",
            "backbone_params",
            "head_params",
            "total_params",
            "latency_ms",
            "latency_ms_p90",
            "throughput_clips_per_s",
            "throughput_batch_size",
            "real_time_factor",
            "device",
            "seconds",
            "window",
            "torch_threads",
        )
        entry.sustainability = {k: cost.get(k) for k in keys}
        if cost.get("seconds") not in (None, 6.0):
            entry.notes.append(
                f"sustainability: cost.json was measured for a {cost['seconds']} s clip, not 6 s."
            )
        entry.raw["sustainability"] = float(cost["gmacs"])

    for axis in AXES:
        if entry.raw[axis] is None:
            entry.missing[axis] = commands[axis]
    return entry


def paper_reference(names: Sequence[str] | None = None) -> list[BackboneProfile]:
    """The paper's Table 4 rows as unscored profiles (``reference=True``), for side-by-side views."""
    chosen = list(PAPER_TABLE4) if names is None else list(names)
    entries = []
    for name in chosen:
        if name not in PAPER_TABLE4:
            raise ProfileError(f"no paper row {name!r}; choose from {', '.join(PAPER_TABLE4)}.")
        row = PAPER_TABLE4[name]
        entries.append(
            BackboneProfile(
                name=f"paper: {name}",
                raw={
                    "performance": row["uar"],
                    "privacy": row["gender_accuracy"],
                    "safety": row["asr"],
                    "fairness": row["eo"],
                    "sustainability": row["gmacs"],
                },
                context={"emotion_chance": 0.25, "gender_chance": 0.5},
                notes=["the paper's Table 4 (read off its figures, ±0.4 points)"],
                reference=True,
            )
        )
    return entries


def _discover(runs: str | Path, store: str | None) -> list[str]:
    if store is not None:
        from trustser.store import open_store

        names = list(open_store(store).backbones)
        if names:
            return names
    return RunLayout(runs).backbones()


def collect_profile(
    runs: str | Path = DEFAULT_RUNS,
    *,
    store: str | None = None,
    backbones: Sequence[str] | None = None,
    scale: str = "paper",
    attack: tuple[str, float] = DEFAULT_ATTACK,
    paper: Sequence[str] | None = None,
) -> Profile:
    """Collect and score the profile of ``backbones`` (default: the store's groups, else every
    backbone directory under ``runs``), optionally beside the paper's rows named in ``paper``."""
    check_choice("scale", scale, SCALE_MODES)
    check_choice("attack method", attack[0], ("fgsm", "pgd", "noise"))
    names = list(backbones) if backbones else _discover(runs, store)
    if not names and not paper:
        raise ProfileError(
            f"nothing to profile: no backbone results under {str(runs)!r}"
            + (f" and no backbone in store {store!r}" if store else "")
            + "; run `trustser heads fit --store <cache.zarr> --backbone NAME` first, or pass "
            "--runs pointing at your results."
        )
    entries = [collect_backbone(runs, n, store=store, attack=attack) for n in dict.fromkeys(names)]
    if paper:
        entries += paper_reference(paper)
    method, snr = attack
    profile = Profile(
        backbones=entries,
        scale=scale,
        scales={},
        attack={"method": method, "snr_db": float(snr)},
        runs=str(runs),
        store=store,
    )
    return score_profile(profile, scale)


# --------------------------------------------------------------------------- rendering


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    text = f"{100 * value:.1f}"
    return f"{text} ± {100 * std:.1f}" if std is not None else text


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def raw_label(axis: str, entry: BackboneProfile, attack: dict[str, Any]) -> str:
    """A short human label of the raw metric behind one axis (for charts and tables)."""
    value = entry.raw.get(axis)
    if value is None:
        return "not measured"
    if axis == "performance":
        return f"UAR {100 * value:.1f} %"
    if axis == "privacy":
        return f"gender acc. {100 * value:.1f} %"
    if axis == "safety":
        return f"{attack['method'].upper()} {attack['snr_db']:g} dB ASR {100 * value:.1f} %"
    if axis == "fairness":
        return f"EO {100 * value:.1f} %"
    return f"{value:.2f} GMAC"


def _rows(profile: Profile) -> list[dict[str, Any]]:
    rows = []
    for b in profile.backbones:
        perf, fair, priv = b.performance or {}, b.fairness or {}, b.privacy or {}
        gender, speaker = priv.get("gender") or {}, priv.get("speaker") or {}
        cost, safety = b.sustainability or {}, b.safety or {}
        spread = (fair.get("pooled") or {}).get("speakers") or {}
        row: dict[str, Any] = {"backbone": b.name, "reference": b.reference}
        row.update({f"score_{a}": b.scores.get(a) for a in AXES})
        row.update(
            {
                "uar_mean": b.raw.get("performance"),
                "uar_std": perf.get("uar_std"),
                "accuracy_mean": perf.get("accuracy_mean"),
                "macro_f1_mean": perf.get("macro_f1_mean"),
                "eo_multiclass": b.raw.get("fairness"),
                "eo_multiclass_std": fair.get("multiclass_equalized_odds_fold_std"),
                "eo_max_fold_mean": fair.get("equalized_odds_max_fold_mean"),
                "eo_mean_fold_mean": fair.get("equalized_odds_mean_fold_mean"),
                "sp_multiclass": fair.get("multiclass_statistical_parity_fold_mean"),
                "sp_max_fold_mean": fair.get("statistical_parity_max_fold_mean"),
                "speaker_uar_min": spread.get("min"),
                "speaker_uar_max": spread.get("max"),
                "speaker_uar_sd": spread.get("sd"),
                "gender_accuracy": b.raw.get("privacy"),
                "gender_uar": gender.get("uar"),
                "gender_chance_majority": gender.get("chance_majority"),
                "gender_accuracy_probe": (b.probe or {}).get("gender_test_accuracy_mean"),
                "speaker_id_accuracy": speaker.get("accuracy"),
                "speaker_id_chance_uniform": speaker.get("chance_uniform"),
                "asr": b.raw.get("safety"),
                "noise_asr": safety.get("noise_asr"),
                "gmacs": b.raw.get("sustainability"),
                "backbone_params": cost.get("backbone_params"),
                "head_params": cost.get("head_params"),
                "latency_ms": cost.get("latency_ms"),
                "throughput_clips_per_s": cost.get("throughput_clips_per_s"),
                "missing": "; ".join(f"{a}: {c}" for a, c in b.missing.items()),
            }
        )
        for attack in safety.get("attacks", []):
            row[f"asr_{attack['method']}_{attack['snr_db']:g}db"] = attack["asr_mean"]
        rows.append(row)
    return rows


def profile_to_csv(profile: Profile) -> str:
    """One row per backbone: the five scores, then the raw metrics (fractions, not percent)."""
    rows = _rows(profile)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return [*lines, ""]


def profile_to_markdown(profile: Profile) -> str:
    """The profile as Markdown: scores, raw metrics per axis, scales, and what is missing."""
    attack = profile.attack
    out = [
        "# Trust profile",
        "",
        f"Scale: **{profile.scale}** — every score is in [0, 1] and higher is more trustworthy.",
        "",
        "## Scores",
        "",
    ]
    out += _md_table(
        ["backbone", *(AXIS_TITLES[a] for a in AXES)],
        [
            [
                b.name,
                *(_num(b.scores[a]) + (" (clipped)" if b.clipped.get(a) else "") for a in AXES),
            ]
            for b in profile.backbones
        ],
    )
    out += ["## Raw metrics", ""]
    out += _md_table(
        [
            "backbone",
            "UAR %",
            "WA %",
            "macro-F1 %",
            "EO (multiclass) %",
            "EO max-class %",
            "SP (multiclass) %",
            "speaker UAR min–max %",
            "gender acc. %",
            "gender chance %",
            "gender acc. (linear probe) %",
            "speaker-ID acc. %",
            "speaker chance %",
            f"{attack['method'].upper()} {attack['snr_db']:g} dB ASR %",
            "noise ASR %",
            "other attacks: ASR %",
            "GMAC",
            "params (backbone + head)",
            "latency ms",
        ],
        [_md_raw_row(b, profile.attack) for b in profile.backbones],
    )
    out += ["## Scales", ""]
    out += _md_table(
        ["axis", "raw metric", "worst → best"],
        [
            [
                AXIS_TITLES[a],
                str(profile.scales[a]["metric"]),
                str(profile.scales[a]["description"]),
            ]
            for a in AXES
        ],
    )
    missing = [(b.name, a, c) for b in profile.backbones for a, c in b.missing.items()]
    if missing:
        out += ["## Missing axes", ""]
        out += [f"- **{name}** — {axis}: run `{command}`" for name, axis, command in missing]
        out.append("")
    notes = list(profile.notes) + [f"{b.name}: {n}" for b in profile.backbones for n in b.notes]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def _md_raw_row(b: BackboneProfile, axis: dict[str, Any]) -> list[str]:
    perf, fair, priv = b.performance or {}, b.fairness or {}, b.privacy or {}
    gender, speaker = priv.get("gender") or {}, priv.get("speaker") or {}
    cost, safety = b.sustainability or {}, b.safety or {}
    spread = (fair.get("pooled") or {}).get("speakers")
    params = "–"
    if cost.get("backbone_params") is not None:
        params = f"{cost['backbone_params'] / 1e6:.2f} M + {cost['head_params'] / 1e3:.0f} k"
    return [
        b.name,
        _pct(b.raw.get("performance"), perf.get("uar_std")),
        _pct(perf.get("accuracy_mean")),
        _pct(perf.get("macro_f1_mean")),
        _pct(b.raw.get("fairness"), fair.get("multiclass_equalized_odds_fold_std")),
        _pct(fair.get("equalized_odds_max_fold_mean")),
        _pct(fair.get("multiclass_statistical_parity_fold_mean")),
        f"{_pct(spread['min'])}–{_pct(spread['max'])}" if spread else "–",
        _pct(b.raw.get("privacy"), gender.get("accuracy_std")),
        _pct(gender.get("chance_majority")),
        _pct((b.probe or {}).get("gender_test_accuracy_mean")),
        _pct(speaker.get("accuracy")),
        _pct(speaker.get("chance_uniform")),
        _pct(b.raw.get("safety")),
        _pct(safety.get("noise_asr")),
        ", ".join(
            f"{a['method'].upper()} {a['snr_db']:g} dB {_pct(a['asr_mean'])}"
            for a in safety.get("attacks", [])
            if a["method"] != "noise"
            and (a["method"], a["snr_db"]) != (axis["method"], axis["snr_db"])
        )
        or "–",
        _num(b.raw.get("sustainability")),
        params,
        _num(cost.get("latency_ms"), 1),
    ]


def read_profile(path: str | Path) -> Profile:
    """A ``profile.json`` (or a directory holding one) written by :func:`write_profile`."""
    path = Path(path)
    if path.is_dir():
        path = path / "profile.json"
    if not path.is_file():
        raise ProfileError(
            f"no profile at {str(path)!r}; create one with `trustser profile -o DIR`."
        )
    return Profile.from_dict(read_json(path))


def write_profile(
    profile: Profile,
    out: str | Path,
    *,
    charts: bool = True,
    report: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write profile.json, profile.csv, profile.md, radar charts (PNG + SVG) and report.html."""
    say = progress or (lambda _message: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"json": write_json(out / "profile.json", profile.to_dict())}
    files["csv"] = out / "profile.csv"
    files["csv"].write_text(profile_to_csv(profile), encoding="utf-8")
    files["markdown"] = out / "profile.md"
    files["markdown"].write_text(profile_to_markdown(profile), encoding="utf-8")
    if charts:
        from trustser.radar import write_radar_charts

        say("drawing radar charts")
        files.update(write_radar_charts(profile, out))
    if report:
        from trustser.report import write_report

        say("writing report.html")
        files["report"] = write_report(profile, out / "report.html")
    return files


def run_profile(
    runs: str | Path = DEFAULT_RUNS,
    out: str | Path = "report",
    *,
    store: str | None = None,
    backbones: Sequence[str] | None = None,
    scale: str = "paper",
    attack: tuple[str, float] = DEFAULT_ATTACK,
    paper: Sequence[str] | None = None,
    charts: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[Profile, dict[str, Path]]:
    """``trustser profile``: collect, score and write everything to ``out``."""
    profile = collect_profile(
        runs, store=store, backbones=backbones, scale=scale, attack=attack, paper=paper
    )
    return profile, write_profile(profile, out, charts=charts, progress=progress)
