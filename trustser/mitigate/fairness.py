"""Fairness mitigations: closing the gender gap in emotion errors (docs/mitigations.md).

(a) ``fit_fair_post`` — post-processing, ``<backbone>@fair-post``: the base's emotion heads,
with per-gender class offsets added to their log-probabilities,
:math:`\\hat y = \\arg\\max_c\\, \\log p_c(x) + \\delta_{g(x), c}`, fitted on each fold's **dev**
speakers to minimise the worst-class equalized-odds gap
:math:`\\max_c \\max(|\\Delta\\mathrm{TPR}_c|, |\\Delta\\mathrm{FPR}_c|)` subject to a UAR floor
(dev UAR at least the unadjusted dev UAR minus ``uar_floor``), by coordinate search over a grid
(:class:`PostProcessing`). The multiclass case fairlearn's ``ThresholdOptimizer`` does not
cover. It needs each clip's gender **at inference**.

(b) ``fit_fair_reweight`` — training-time reweighting, ``<backbone>@fair-reweight``: the emotion
head trained with every (gender, class) cell weighing the same in the loss
(:func:`~trustser.mitigate.estimator.cell_weights`); no gender at inference.

Neither changes the representation an adversary reads (the backbone's hidden states), so both
variants inherit the base's gender, speaker and probe runs, marked ``inherited_from``.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._validation import TrustSERError, select_names
from trustser._version import __version__
from trustser.heads.data import PackedFeatures, StoreGroupError
from trustser.heads.model import LayerWeightedHead, load_head
from trustser.heads.tasks import DEFAULT_MIN_STEPS, build_task, select_splits
from trustser.heads.training import TaskResult, TrainingEvent, fit_task
from trustser.metrics._common import mean_std
from trustser.metrics.performance import performance_summary, uar_score
from trustser.mitigate.estimator import MitigatedHeadClassifier
from trustser.runs import RunLayout, fairness_variant, read_json, write_json

__all__ = [
    "DEFAULT_UAR_FLOOR",
    "FairnessError",
    "PostProcessing",
    "PostResult",
    "fit_fair_post",
    "fit_fair_reweight",
    "inherit_privacy_runs",
    "worst_class_eo_gap",
]

DEFAULT_UAR_FLOOR = 0.02  # dev UAR may drop by at most 2 points
GENDERS = ("female", "male")


class FairnessError(TrustSERError, ValueError):
    """A fairness mitigation that cannot be fitted from the runs and store at hand."""


def _rates(true: np.ndarray, pred: np.ndarray, c: int) -> tuple[float | None, float | None]:
    positive, negative = true == c, true != c
    tpr = float(np.mean(pred[positive] == c)) if positive.any() else None
    fpr = float(np.mean(pred[negative] == c)) if negative.any() else None
    return tpr, fpr


def worst_class_eo_gap(
    true: np.ndarray, pred: np.ndarray, groups: np.ndarray, num_classes: int
) -> float:
    """:math:`\\max_c \\max(|\\Delta\\mathrm{TPR}_c|, |\\Delta\\mathrm{FPR}_c|)` between the two
    genders (class indices; undefined rates left out; 0 when nothing is defined)."""
    worst = 0.0
    female, male = groups == GENDERS[0], groups == GENDERS[1]
    for c in range(num_classes):
        a = _rates(true[female], pred[female], c)
        b = _rates(true[male], pred[male], c)
        for x, y in zip(a, b, strict=True):
            if x is not None and y is not None:
                worst = max(worst, abs(x - y))
    return worst


@dataclass
class PostProcessing:
    """Per-gender additive offsets on log-probabilities, ``offsets[g, c]`` (class 0 fixed at 0).

    :meth:`fit` runs coordinate search: ``sweeps`` passes over every free offset, each trying
    every value of ``grid`` and keeping the one of lowest worst-class EO gap among those whose
    UAR stays at least ``base UAR − uar_floor`` (ties: higher UAR, then the smaller offset).
    """

    uar_floor: float = DEFAULT_UAR_FLOOR
    grid: tuple[float, ...] = tuple(np.round(np.linspace(-3.0, 3.0, 61), 3))
    sweeps: int = 4
    offsets: np.ndarray | None = None
    fit_info: dict[str, Any] = field(default_factory=dict)

    def predict(self, log_proba: np.ndarray, genders: Sequence[str]) -> np.ndarray:
        return self.adjusted(log_proba, genders).argmax(axis=1)

    def adjusted(self, log_proba: np.ndarray, genders: Sequence[str]) -> np.ndarray:
        if self.offsets is None:
            raise FairnessError("PostProcessing is not fitted; call fit(...) first.")
        rows = np.array([GENDERS.index(g) if g in GENDERS else -1 for g in genders])
        shift = np.where(rows[:, None] >= 0, self.offsets[np.clip(rows, 0, 1)], 0.0)
        return log_proba + shift

    def fit(
        self, log_proba: np.ndarray, true: np.ndarray, genders: Sequence[str]
    ) -> PostProcessing:
        log_proba = np.asarray(log_proba, dtype=np.float64)
        true = np.asarray(true)
        groups = np.asarray(list(genders), dtype=object)
        num_classes = log_proba.shape[1]
        self.offsets = np.zeros((2, num_classes))
        present = {g for g in groups if g in GENDERS}
        base_pred = log_proba.argmax(1)
        base_uar = float(uar_score(true, base_pred))
        base_gap = worst_class_eo_gap(true, base_pred, groups, num_classes)
        self.fit_info = {"dev_uar_before": base_uar, "dev_worst_eo_gap_before": base_gap}
        if len(present) < 2:
            self.fit_info["note"] = "the dev speakers are of one gender: no offsets fitted"
            self.fit_info.update(dev_uar_after=base_uar, dev_worst_eo_gap_after=base_gap)
            return self
        floor = base_uar - self.uar_floor
        rows = np.array([GENDERS.index(g) if g in GENDERS else -1 for g in groups])

        def evaluate(offsets: np.ndarray) -> tuple[float, float]:
            shift = np.where(rows[:, None] >= 0, offsets[np.clip(rows, 0, 1)], 0.0)
            pred = (log_proba + shift).argmax(1)
            return worst_class_eo_gap(true, pred, groups, num_classes), float(uar_score(true, pred))

        best_gap, best_uar = base_gap, base_uar
        for _ in range(self.sweeps):
            improved = False
            for g in range(2):
                for c in range(1, num_classes):
                    current = self.offsets[g, c]
                    for value in self.grid:
                        trial = self.offsets.copy()
                        trial[g, c] = value
                        gap, uar = evaluate(trial)
                        if uar < floor - 1e-12:
                            continue
                        key = (round(gap, 12), -round(uar, 12), abs(value))
                        if key < (round(best_gap, 12), -round(best_uar, 12), abs(current)):
                            best_gap, best_uar, current = gap, uar, value
                            self.offsets[g, c] = value
                            improved = True
            if not improved:
                break
        self.fit_info.update(dev_uar_after=best_uar, dev_worst_eo_gap_after=best_gap)
        return self


@torch.no_grad()
def head_log_proba(
    head: LayerWeightedHead, source: PackedFeatures, ids: Sequence[str], *, batch_size: int = 64
) -> np.ndarray:
    """Log-probabilities ``[N, C]`` of a trained head on cached features, rows in ``ids`` order."""
    head = head.eval()
    device = head.layer_logits.device
    rows: dict[str, np.ndarray] = {}
    for batch in source.packed_batches(list(ids), batch_size=batch_size, shuffle=False):
        logits = head.forward_packed(
            batch.frames.to(device), batch.segments.to(device), len(batch.ids)
        )
        rows.update(
            zip(batch.ids, torch.log_softmax(logits.double(), 1).cpu().numpy(), strict=True)
        )
    return np.stack([rows[i] for i in ids])


def inherit_privacy_runs(layout: RunLayout, base: str, variant: str) -> list[str]:
    """Copy the base's gender, speaker and probe runs into ``variant`` (the same representation
    is exposed), each ``metrics.json`` marked ``inherited_from``; returns what was copied."""
    copied = []
    for part in ("gender", "speaker", "probe"):
        source = layout.backbone_dir(base) / part
        if not (source / "metrics.json").is_file():
            continue
        target = layout.backbone_dir(variant) / part
        target.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.json", "predictions.csv", "config.json"):
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
        metrics = read_json(target / "metrics.json")
        metrics["inherited_from"] = base
        metrics["inherited_why"] = "the variant exposes the same representation as its base"
        write_json(target / "metrics.json", metrics)
        copied.append(part)
    return copied


@dataclass(frozen=True)
class PostResult:
    variant: str
    directory: Path
    metrics: dict[str, Any]
    inherited: list[str]
    seconds: float


def fit_fair_post(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    uar_floor: float = DEFAULT_UAR_FLOOR,
    device: str = "cpu",
) -> PostResult:
    """Fit per-gender logit offsets on each fold's dev clips over the base's emotion heads
    (``trustser heads fit`` first) and write ``<runs>/<backbone>@fair-post/emotion/``."""
    from trustser.store import open_group

    start = time.perf_counter()
    group, name = open_group(store, backbone, error=StoreGroupError)
    layout = RunLayout(Path(runs))
    head_dir = layout.head_dir(name, "emotion")
    available = sorted(p.name for p in head_dir.glob("*") if (p / "head.safetensors").is_file())
    if not available:
        raise FairnessError(
            f"no emotion heads of {name!r} under {str(head_dir)!r}; train them first with "
            f"`trustser heads fit --backbone {name}`."
        )
    chosen = select_names(folds, available, error=FairnessError) or available
    manifest = group.manifest()
    heads = {f: load_head(layout.head_path(name, "emotion", f), device=device) for f in chosen}
    ids = list(dict.fromkeys(i for _, s in heads.values() for i in (*s["dev_ids"], *s["test_ids"])))
    source = PackedFeatures.from_source(group, [i for i in ids if i in manifest.by_id])
    variant = fairness_variant(name, "post")
    rows, fold_metrics = [], []
    labels: list[str] = []
    for fold in chosen:
        head, sidecar = heads[fold]
        labels = list(sidecar["labels"])
        index = {c: k for k, c in enumerate(labels)}
        parts = {
            r: [i for i in sidecar[f"{r}_ids"] if i in manifest.by_id] for r in ("dev", "test")
        }
        genders = {r: [manifest[i].gender for i in parts[r]] for r in parts}
        truth = {r: np.array([index[manifest[i].emotion] for i in parts[r]]) for r in parts}
        logp = {r: head_log_proba(head, source, parts[r]) for r in parts}
        post = PostProcessing(uar_floor=uar_floor).fit(logp["dev"], truth["dev"], genders["dev"])
        record: dict[str, Any] = {"fold": fold, **post.fit_info}
        for role in ("dev", "test"):
            adjusted = post.adjusted(logp[role], genders[role])
            predicted = [labels[k] for k in adjusted.argmax(1)]
            summary = performance_summary(
                [labels[k] for k in truth[role]], predicted, labels=labels
            )
            record[f"{role}_uar"] = summary["uar"]
            record[f"{role}_accuracy"] = summary["weighted_accuracy"]
            record[f"{role}_macro_f1"] = summary["macro_f1"]
            record[f"{role}_per_class_recall"] = summary["per_class_recall"]
            if role == "test":
                proba = np.exp(adjusted - adjusted.max(1, keepdims=True))
                proba /= proba.sum(1, keepdims=True)
                for utterance_id, pred, p in zip(parts["test"], predicted, proba, strict=True):
                    u = manifest[utterance_id]
                    rows.append(
                        {
                            "id": u.id,
                            "fold": fold,
                            "speaker": u.speaker,
                            "gender": u.gender,
                            "true": u.emotion,
                            "pred": pred,
                            **{f"prob_{c}": float(v) for c, v in zip(labels, p, strict=True)},
                        }
                    )
        offsets = {
            g: dict(zip(labels, post.offsets[k].tolist(), strict=True))
            for k, g in enumerate(GENDERS)
        }
        record["offsets"] = offsets
        write_json(
            layout.head_dir(variant, "emotion") / fold / "offsets.json",
            {
                "fold": fold,
                "offsets": offsets,
                "labels": labels,
                "base_head": str(layout.head_path(name, "emotion", fold)),
            },
        )
        fold_metrics.append(record)
    description = {
        "name": variant,
        "base_backbone": name,
        "kind": "fairness",
        "method": "post-processing: per-gender class offsets on the emotion log-probabilities",
        "needs_gender_at_inference": True,
        "uar_floor": uar_floor,
        "fitted_on": "each fold's dev speakers",
        "trained": "no training: offsets over the base's emotion heads",
    }
    metrics: dict[str, Any] = {
        "task": "emotion",
        "backbone": variant,
        "labels": labels,
        "num_folds": len(fold_metrics),
        "std": "population standard deviation over folds (ddof=0)",
        "variant": description,
        "folds": fold_metrics,
        "trustser_version": __version__,
        "fit_seconds_total": time.perf_counter() - start,
    }
    for role in ("test", "dev"):
        for key in ("uar", "accuracy", "macro_f1"):
            mean, std = mean_std([f[f"{role}_{key}"] for f in fold_metrics])
            metrics[f"{role}_{key}_mean"], metrics[f"{role}_{key}_std"] = mean, std
    directory = layout.head_dir(variant, "emotion")
    write_json(directory / "metrics.json", metrics)
    write_json(
        directory / "config.json",
        {"task": "emotion", "backbone": variant, "variant": description, "folds": chosen},
    )
    _write_predictions(directory / "predictions.csv", rows, labels)
    inherited = inherit_privacy_runs(layout, name, variant)
    return PostResult(variant, directory, metrics, inherited, time.perf_counter() - start)


def fit_fair_reweight(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    epochs: int | None = None,
    hidden: int = 128,
    lr: float = 5e-4,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    callback: Callable[[TrainingEvent], None] | None = None,
) -> tuple[TaskResult, list[str]]:
    """Train ``<backbone>@fair-reweight``'s emotion heads with gender × class cell weights; the
    base's privacy runs are inherited. Returns the emotion run and the inherited parts."""
    from trustser.store import open_group

    group, name = open_group(store, backbone, error=StoreGroupError)
    manifest = group.manifest()
    task = build_task("emotion", manifest, seed=seed)
    splits = select_splits(task, folds)
    source = PackedFeatures.from_source(
        group, list(dict.fromkeys(i for s in splits for i in s.ids))
    )
    variant = fairness_variant(name, "reweight")
    layout = RunLayout(Path(runs))
    estimator = MitigatedHeadClassifier(
        cell_weight=True,
        hidden=hidden,
        lr=lr,
        batch_size=batch_size,
        epochs=epochs or task.default_epochs,
        min_steps=DEFAULT_MIN_STEPS if epochs is None else 0,
        device=device,
        seed=seed,
    )

    def record(split: Any, model: Any, fold_dir: Path) -> Mapping[str, Any]:
        return {"mitigation": {"kind": "fairness", "cell_weights": model.cell_weights_}}

    run = fit_task(
        source,
        task,
        estimator,
        splits=splits,
        manifest=manifest,
        layout=layout,
        backbone=variant,
        store_info={
            "path": str(Path(store).resolve()),
            "group": name,
            "provenance": dict(group.provenance),
        },
        callback=callback,
        fit_options={"genders": {u.id: u.gender for u in manifest.utterances}},
        fold_extras=record,
        variant={
            "name": variant,
            "base_backbone": name,
            "kind": "fairness",
            "method": "training-time reweighting: every gender × class cell weighs the same",
            "needs_gender_at_inference": False,
            "trained": "emotion head with gender × class cell weights",
        },
    )
    return run, inherit_privacy_runs(layout, name, variant)


def _write_predictions(path: Path, rows: list[dict[str, Any]], labels: Sequence[str]) -> None:
    """predictions.csv in the heads' format (id, fold, speaker, gender, true, pred, prob_*)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["id", "fold", "speaker", "gender", "true", "pred", *(f"prob_{c}" for c in labels)]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    os.replace(tmp, path)
