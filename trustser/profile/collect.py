"""Reading the results layout into a profile: what each stage wrote under ``runs/``.

``collect_profile`` reads what the other stages wrote under ``runs/`` (see :mod:`trustser.runs`):
the emotion head's ``metrics.json`` and ``predictions.csv`` (performance, fairness), the gender and
speaker heads (privacy), ``attack-*/summary.json`` (safety) and ``cost.json`` (sustainability),
then scores the result (:mod:`trustser.profile.scales`). An axis that was not run is ``None`` and
names the command that would fill it.
"""

from __future__ import annotations

import contextlib
import csv
import math
import shlex
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import check_choice
from trustser.metrics._common import MetricError, MetricWarning, mean_std
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.metrics.bootstrap import interval as bootstrap_interval
from trustser.metrics.fairness import fairness_report
from trustser.metrics.performance import performance_summary
from trustser.metrics.privacy import inference_report
from trustser.metrics.safety import adversarial_excess
from trustser.profile.intervals import DEFAULT_SEED, bootstrap_profile, comparison_table
from trustser.profile.model import (
    AXES,
    DEFAULT_ATTACK,
    MEAN_CORPUS,
    BackboneProfile,
    Profile,
    ProfileError,
    paper_reference,
)
from trustser.profile.scales import SCALE_MODES, score_profile
from trustser.runs import DEFAULT_RUNS, TASKS, ModelName, RunLayout, read_json, safe_name

__all__ = [
    "ATTACKERS",
    "collect_backbone",
    "collect_corpora",
    "collect_profile",
    "corpus_runs",
    "discover_backbones",
    "holds_results",
    "strongest_attacker",
    "with_variants",
]


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
        # Undefined on every fold: no fold figure at all (shown as n/a), never pooled ± 0.
        mean, std = mean_std([f[key] for f in per_fold.values()]) if per_fold else (None, None)
        result[f"{key}_fold_mean"], result[f"{key}_fold_std"] = mean, std
    if not per_fold:
        notes.append(
            "fold-level fairness is undefined on every fold (n/a); the fairness axis uses the "
            "value pooled over all test predictions."
        )
    result["eo_basis"] = "mean over folds" if per_fold else "pooled over all test predictions"
    result["axis_value"] = (
        result["multiclass_equalized_odds_fold_mean"]
        if per_fold
        else pooled.multiclass_equalized_odds
    )
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


def _attacks(base: Path) -> list[dict[str, Any]]:
    attacks = []
    for directory in sorted(base.glob("attack-*")) if base.is_dir() else []:
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


def _backbone_dir(runs: Path, name: str) -> Path:
    """``runs/<name>`` when that directory exists (any name), else the layout's directory."""
    given = runs / name
    if name and "/" not in name and given.is_dir():
        return given
    return RunLayout(runs).backbone_dir(name)


def _display_name(base: Path, name: str) -> str:
    """The backbone spec recorded by the stages (``tiny:whisper``), else the name as given."""
    for path in (
        base / "emotion" / "metrics.json",
        base / "cost.json",
        base / "gender" / "metrics.json",
    ):
        data = _maybe_json(path) if path.is_file() else None
        if (
            data
            and isinstance(data.get("backbone"), str)
            and RunLayout(base.parent).backbone_dir(data["backbone"]).name == base.name
        ):
            return data["backbone"]
    return name


def _store_of(base: Path) -> str | None:
    config = _maybe_json(base / "emotion" / "config.json")
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

    root = Path(runs)
    base = _backbone_dir(root, name)
    display = _display_name(base, name)
    model_name = ModelName.parse(display)
    entry = BackboneProfile(name=display, directory=base.name)
    if model_name.is_variant:
        entry.base = _display_name(_backbone_dir(root, model_name.base), model_name.base)
        entry.variant = model_name.tag
    runs_text = str(runs)
    store = store or _store_of(base)
    commands = _commands(display, runs_text, store, attack)

    emotion_dir = base / "emotion"
    metrics = _maybe_json(emotion_dir / "metrics.json")
    rows = (
        _read_rows(emotion_dir / "predictions.csv")
        if (emotion_dir / "predictions.csv").is_file()
        else None
    )
    entry.training = _training(metrics)
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
            entry.raw["fairness"] = entry.fairness["axis_value"]

    probe = _maybe_json(base / "probe" / "metrics.json")
    if probe is not None:
        keys = (
            "emotion_test_uar_mean",
            "gender_test_accuracy_mean",
            "speaker_test_accuracy_mean",
            "emotion_dev_chosen_layer_test_uar_mean",
            "gender_dev_chosen_layer_test_accuracy_mean",
            "speaker_dev_chosen_layer_test_accuracy_mean",
        )
        found = {k: float(probe[k]) for k in keys if isinstance(probe.get(k), (int, float))}
        entry.probe = found or None

    privacy: dict[str, Any] = {}
    for task in ("gender", "speaker"):
        task_dir = base / task
        task_metrics = _maybe_json(task_dir / "metrics.json")
        path = task_dir / "predictions.csv"
        task_rows = _read_rows(path) if path.is_file() else None
        if task_metrics is not None or task_rows is not None:
            with _noting(entry, f"privacy ({task})"):
                privacy[task] = _inference(task_metrics, task_rows)
    gender = privacy.get("gender") or {}
    axis = strongest_attacker(gender.get("accuracy"), entry.probe)
    if axis is not None:
        privacy["axis"] = axis
        entry.raw["privacy"] = axis["accuracy"]
        if gender.get("chance_majority") is not None:
            entry.context["gender_chance"] = gender["chance_majority"]
    if privacy:
        entry.privacy = privacy

    attacks = _attacks(base)
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

    cost_path = base / "cost.json"
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
            "latency_ms_runs",
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


ATTACKERS = {
    "gender head": None,  # the paper's attack: the trained head, fold mean
    "linear probe (all layers)": "gender_test_accuracy_mean",
    "linear probe (layer chosen on dev)": "gender_dev_chosen_layer_test_accuracy_mean",
}


def strongest_attacker(
    head_accuracy: float | None, probe: dict[str, float] | None
) -> dict[str, Any] | None:
    """The privacy axis's figure: the highest gender-inference test accuracy (fold mean) among
    the attackers that were run — the gender head and the linear probes (all layers; the layer
    chosen on dev). ``None`` when none was run.

    The embeddings leak at least what the strongest attacker finds; the maximum over this fixed,
    short list errs towards less privacy, never more. The head's figure (the paper's attack) is
    kept beside it as ``head_accuracy``.
    """
    found = {"gender head": head_accuracy} if head_accuracy is not None else {}
    for name, key in ATTACKERS.items():
        if key is not None and probe and probe.get(key) is not None:
            found[name] = float(probe[key])
    if not found:
        return None
    attacker = max(found, key=lambda name: (found[name], name == "gender head"))
    return {
        "attacker": attacker,
        "accuracy": found[attacker],
        "attackers": found,
        "head_accuracy": head_accuracy,
        "rule": "highest gender-inference test accuracy (fold mean) among the attackers run",
    }


def holds_results(directory: str | Path) -> bool:
    """Whether ``directory`` is a backbone's results directory, whatever its name: it holds a
    head's or probe's ``metrics.json``, an attack's ``summary.json`` or a ``cost.json``.

    Other folders under a results root — a ``trustser run`` folder's ``cache.zarr`` and
    ``report/``, say — are not backbones.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return False
    if (directory / "cost.json").is_file():
        return True
    for part, files in [
        *((t, ("metrics.json", "predictions.csv")) for t in TASKS),
        ("probe", ("metrics.json",)),
    ]:
        if any((directory / part / f).is_file() for f in files):
            return True
    return any(directory.glob("attack-*/summary.json"))


def discover_backbones(runs: str | Path, store: str | None = None) -> list[str]:
    """The backbones to profile: every directory under ``runs`` holding results
    (:func:`holds_results`), then the groups of ``store`` (when given) that have none yet, so a
    freshly extracted backbone shows which commands would fill its axes."""
    root = Path(runs)
    names = [d for d in RunLayout(root).backbones() if holds_results(root / d)]
    if store is not None:
        from trustser.store import open_store

        have = {safe_name(name) for name in names}
        names += [g for g in open_store(store).backbones if safe_name(g) not in have]
    return _variants_after_bases(RunLayout(root), names)


def _variants_after_bases(layout: RunLayout, names: Sequence[str]) -> list[str]:
    """``names`` reordered so that each base's variants (``<base>@top1`` …) follow it; a variant
    whose base is not among ``names`` keeps its place."""

    def directory(name: str) -> str:
        return layout.backbone_dir(name).name

    variants: dict[str, list[str]] = {}
    for name in names:
        parsed = ModelName.parse(name)
        if parsed.is_variant and any(directory(parsed.base) == directory(n) for n in names):
            variants.setdefault(directory(parsed.base), []).append(name)
    placed = {v for group in variants.values() for v in group}
    out: list[str] = []
    for name in names:
        if name in placed:
            continue
        out.append(name)
        out += variants.get(directory(name), []) if not ModelName.parse(name).is_variant else []
    return out


def with_variants(layout: RunLayout, names: Sequence[str]) -> list[str]:
    """``names`` with the variant directories of each (``<backbone>@top1`` …) right after it."""
    out: list[str] = []
    for name in names:
        out.append(name)
        out += [v for v in layout.variants(name) if v not in out and v not in names]
    return out


def _training(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """What training the emotion model cost: trainable parameters and seconds (all folds), and
    for a fine-tuned variant K, the blocks' parameters and learning rate."""
    if metrics is None:
        return None
    variant = metrics.get("variant") if isinstance(metrics.get("variant"), dict) else {}
    training = {
        "trainable_parameters": metrics.get("trainable_parameters"),
        "fit_seconds": metrics.get("fit_seconds_total"),
        "num_folds": metrics.get("num_folds"),
        "trained": variant.get("trained", "head only (backbone frozen)"),
    }
    for key in ("k", "block_parameters", "block_lr"):
        if key in variant:
            training[key] = variant[key]
    return training


def collect_profile(
    runs: str | Path = DEFAULT_RUNS,
    *,
    store: str | None = None,
    backbones: Sequence[str] | None = None,
    scale: str = "paper",
    attack: tuple[str, float] = DEFAULT_ATTACK,
    paper: Sequence[str] | None = None,
    bootstrap: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> Profile:
    """Collect and score the profile of ``backbones`` (default: :func:`discover_backbones` —
    every results directory under ``runs``, and the store's groups without results yet),
    optionally beside the paper's rows named in ``paper``.

    ``bootstrap`` speaker-level replicates (seeded by ``seed``; 0 = none) give every figure its
    95 % interval and, with several measured rows, the paired comparisons of every pair
    (:mod:`trustser.profile.intervals`)."""
    check_choice("scale", scale, SCALE_MODES)
    check_choice("attack method", attack[0], ("fgsm", "pgd", "noise"))
    names = list(backbones) if backbones else discover_backbones(runs, store)
    if not names and not paper:
        raise ProfileError(
            f"nothing to profile: no backbone results under {str(runs)!r}"
            + (f" and no backbone in store {store!r}" if store else "")
            + "; run `trustser heads fit --store <cache.zarr> --backbone NAME` first, or pass "
            "--runs pointing at your results."
        )
    seen: set[str] = set()
    chosen = []  # one row per results directory
    for name in names:
        if safe_name(name) not in seen:
            seen.add(safe_name(name))
            chosen.append(name)
    entries = [collect_backbone(runs, n, store=store, attack=attack) for n in chosen]
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
    profile = score_profile(
        bootstrap_profile(profile, runs, replicates=bootstrap, seed=seed), scale
    )
    profile.comparisons = comparison_table(profile)
    return profile


# --------------------------------------------------------------------------- across corpora


def corpus_runs(paths: Sequence[str | Path]) -> dict[str, Path]:
    """The results directory of each corpus: every path that holds backbone results is one
    corpus (named after its directory); a path that holds none but has subdirectories that do —
    the output of a multi-corpus ``trustser run --config`` (``out/<corpus>/<backbone>/``) —
    gives one corpus per such subdirectory."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        if discover_backbones(path):
            candidates = [path]
        elif path.is_dir():
            candidates = [d for d in sorted(path.iterdir()) if d.is_dir() and discover_backbones(d)]
        else:
            candidates = []
        if not candidates:
            raise ProfileError(
                f"no backbone results under {str(path)!r} nor under its subdirectories; pass a "
                "results directory (runs/) or the output directory of `trustser run`."
            )
        for directory in candidates:
            name = directory.resolve().name
            if name in found:
                raise ProfileError(
                    f"two results directories are both named {name!r} ({str(found[name])!r}, "
                    f"{str(directory)!r}); a corpus is named after its directory."
                )
            found[name] = directory
    return found


def _mean_row(name: str, rows: dict[str, BackboneProfile], replicates: int) -> BackboneProfile:
    """One backbone's mean over corpora (the paper's Table 4 averages its four corpora): each
    axis's figure is the mean of the corpora's figures, each bootstrap replicate the mean of the
    corpora's replicates (independent draws per corpus: the bootstrap of the mean)."""
    first = next(iter(rows.values()))
    entry = BackboneProfile(
        name=name,
        base=first.base,
        variant=first.variant,
        corpus=MEAN_CORPUS,
        sustainability=first.sustainability,
        training=None,
    )
    corpora = ", ".join(rows)
    for axis in AXES:
        values = [r.raw.get(axis) for r in rows.values()]
        if any(v is None for v in values):
            lacking = [c for c, r in rows.items() if r.raw.get(axis) is None]
            entry.notes.append(f"{axis}: not measured on {', '.join(lacking)}; no mean.")
            entry.missing[axis] = next(
                (r.missing[axis] for r in rows.values() if axis in r.missing), "not measured"
            )
            continue
        entry.raw[axis] = float(np.mean(values))
        samples = [r.replicates.get(axis) for r in rows.values()]
        if axis == "sustainability":
            entry.intervals[axis] = {
                "value": entry.raw[axis],
                "low": float(min(values)),
                "high": float(max(values)),
                "method": "exact per corpus (the range over corpora)",
            }
        elif replicates and all(s and len(s) == replicates for s in samples):
            matrix = np.array([[np.nan if v is None else v for v in s] for s in samples])
            mean = matrix.mean(axis=0)
            result = bootstrap_interval(entry.raw[axis], mean)
            result.method = f"mean over corpora ({corpora}) of their speaker bootstraps"
            entry.intervals[axis] = result.to_dict()
            entry.replicates[axis] = [None if np.isnan(x) else round(float(x), 6) for x in mean]
        elif replicates:
            entry.notes.append(f"{axis}: some corpus has no interval, so the mean has none.")
    attackers = {r.privacy_attacker for r in rows.values()}
    if len(attackers) == 1 and None not in attackers:
        entry.privacy = {"axis": {"attacker": attackers.pop()}}
    emotion_chance = {r.context.get("emotion_chance") for r in rows.values()}
    if len(emotion_chance) == 1 and None not in emotion_chance:
        entry.context["emotion_chance"] = emotion_chance.pop()
    gender_chance = [r.context.get("gender_chance") for r in rows.values()]
    if all(g is not None for g in gender_chance):
        entry.context["gender_chance"] = float(np.mean(gender_chance))
    entry.notes.append(f"mean over {len(rows)} corpora: {corpora}")
    return entry


def collect_corpora(
    runs: Sequence[str | Path],
    *,
    backbones: Sequence[str] | None = None,
    scale: str = "paper",
    attack: tuple[str, float] = DEFAULT_ATTACK,
    paper: Sequence[str] | None = None,
    bootstrap: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> Profile:
    """A profile across corpora: per backbone measured on every corpus, the mean over corpora
    with the interval of the mean (``name (mean)``), then per corpus a row per backbone
    (``name (corpus)``).

    ``runs`` are results directories (one corpus each) or the output of a multi-corpus
    ``trustser run`` (:func:`corpus_runs`). Each corpus is bootstrapped over its own speakers
    with its own seed (``seed + index``), so corpora are independent draws."""
    directories = corpus_runs(runs)
    per_corpus: dict[str, Profile] = {}
    for index, (corpus, directory) in enumerate(directories.items()):
        per_corpus[corpus] = collect_profile(
            directory,
            backbones=backbones,
            scale=scale,
            attack=attack,
            bootstrap=bootstrap,
            seed=seed + index,
        )
    rows: list[BackboneProfile] = []
    by_name: dict[str, dict[str, BackboneProfile]] = {}
    for corpus, profile in per_corpus.items():
        for entry in profile.backbones:
            by_name.setdefault(entry.name, {})[corpus] = entry
    notes = []
    for name, found in by_name.items():
        if len(found) == len(per_corpus):
            rows.append(_mean_row(f"{name} ({MEAN_CORPUS})", found, bootstrap))
        else:
            notes.append(f"{name}: measured on {', '.join(found)} only; no mean over all corpora.")
    for corpus, profile in per_corpus.items():
        for entry in profile.backbones:
            entry.corpus = corpus
            entry.name = f"{entry.name} ({corpus})"
            rows.append(entry)
    if paper:
        rows += paper_reference(paper)
    method, snr = attack
    design = next((p.bootstrap for p in per_corpus.values() if p.bootstrap), None)
    combined = Profile(
        backbones=rows,
        scale=scale,
        scales={},
        attack={"method": method, "snr_db": float(snr)},
        runs=", ".join(str(d) for d in directories.values()),
        notes=notes,
        bootstrap=None
        if design is None
        else {
            **design,
            "num_speakers": sum(
                (p.bootstrap or {}).get("num_speakers", 0) for p in per_corpus.values()
            ),
            "seed": seed,
            "per_corpus": {c: p.bootstrap for c, p in per_corpus.items()},
            "strata": f"{design['strata']}; each corpus bootstrapped on its own (seed + index)",
        },
        corpora=[
            {"name": c, "runs": str(d), "backbones": [b.name for b in per_corpus[c].backbones]}
            for c, d in directories.items()
        ],
    )
    combined = score_profile(combined, scale)
    combined.comparisons = comparison_table(combined)
    return combined


# --------------------------------------------------------------------------- rendering
