"""Randomized smoothing as a variant: clean evaluation, plain and adaptive attacks, and cost.

``run_smoothing(store, backbone, noise_snr=30, samples=8)`` works on the variant
``<backbone>@smooth-s<s>-n<N>`` (the base's trained emotion heads behind
:class:`~trustser.mitigate.smoothing.SmoothedClassifier`):

* its clean predictions on every fold's test clips (through the backbone, N noisy copies each)
  → ``emotion/predictions.csv`` and ``metrics.json``, read by the performance and fairness axes;
* FGSM and PGD at each attack SNR, adaptive (EOT) and plain (:func:`~.runner.run_attack`);
* its cost: N times the base's MACs and latency (:func:`trustser.cost.run_cost`);
* the base's gender, speaker and probe runs, inherited (noise at inference leaves the cached
  representation an adversary trains on unchanged).

Nothing here trains: smoothing needs no cache pass, only the backbone at inference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._version import __version__
from trustser.attacks.batched import predict_clips
from trustser.attacks.loading import (
    available_heads,
    load_waveforms,
    open_attack_group,
    plan_folds,
    reload_backbone,
    select_folds,
    smoothed_plan,
)
from trustser.attacks.methods import AttackError
from trustser.attacks.runner import AttackProgress, AttackRun, run_attack, smoothing_seed
from trustser.devices import resolve_device
from trustser.metrics._common import mean_std
from trustser.metrics.performance import performance_summary
from trustser.mitigate.fairness import _write_predictions, inherit_privacy_runs
from trustser.runs import ModelName, RunLayout, smoothing_variant, write_json

__all__ = [
    "DEFAULT_NOISE_SNR",
    "DEFAULT_SAMPLES",
    "SmoothingRun",
    "evaluate_smoothed",
    "run_smoothing",
]

DEFAULT_NOISE_SNR = 30.0
DEFAULT_SAMPLES = 8


@dataclass(frozen=True)
class SmoothingRun:
    variant: str
    metrics: dict[str, Any]
    attacks: tuple[AttackRun, ...]
    cost: Any
    inherited: tuple[str, ...]


def evaluate_smoothed(
    store: str | os.PathLike,
    variant: str,
    *,
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Classify every fold's test clips with the smoothed model; write the variant's emotion
    ``predictions.csv`` and ``metrics.json`` (the heads' format)."""
    name, group, provenance = open_attack_group(store, variant)
    smoothing = ModelName.parse(name).smoothing
    if smoothing is None:
        raise AttackError(f"{variant!r} is not a smoothing variant (<backbone>@smooth-s<s>-n<N>).")
    layout = RunLayout(Path(runs))
    base = ModelName.parse(name).base
    heads = available_heads(layout, base)
    manifest = group.manifest()
    chosen = select_folds(manifest, heads, folds)
    torch_device = resolve_device(device) if isinstance(device, str) else device
    encoder = reload_backbone(provenance, torch_device)
    plans = plan_folds(chosen, heads, manifest, provenance, encoder, torch_device)
    rows, fold_metrics, labels = [], [], []
    for plan in plans:
        plan = smoothed_plan(plan, smoothing, smoothing_seed(seed, plan.fold))
        labels = list(plan.labels)
        logits = predict_clips(
            plan.model,
            load_waveforms(plan.utterances, provenance),
            batch_size=batch_size,
            identical_only=not bool(encoder.masks_padding),
            device=torch_device,
        )
        predicted = [labels[k] for k in logits.argmax(1)]
        summary = performance_summary(
            [u.emotion for u in plan.utterances], predicted, labels=labels
        )
        proba = np.exp(logits - logits.max(1, keepdims=True))
        proba /= proba.sum(1, keepdims=True)
        for u, pred, p in zip(plan.utterances, predicted, proba, strict=True):
            rows.append(
                {
                    "id": u.id,
                    "fold": plan.fold,
                    "speaker": u.speaker,
                    "gender": u.gender,
                    "true": u.emotion,
                    "pred": pred,
                    **{f"prob_{c}": float(v) for c, v in zip(labels, p, strict=True)},
                }
            )
        fold_metrics.append(
            {
                "fold": plan.fold,
                "test_uar": summary["uar"],
                "test_accuracy": summary["weighted_accuracy"],
                "test_macro_f1": summary["macro_f1"],
                "test_per_class_recall": summary["per_class_recall"],
                "n_test": len(plan.utterances),
            }
        )
    metrics: dict[str, Any] = {
        "task": "emotion",
        "backbone": name,
        "labels": labels,
        "num_folds": len(fold_metrics),
        "std": "population standard deviation over folds (ddof=0)",
        "variant": {
            "name": name,
            "base_backbone": base,
            "kind": "smoothing",
            "noise_snr_db": smoothing[0],
            "samples": smoothing[1],
            "trained": "nothing: the base's emotion heads behind randomized smoothing",
            "seed": seed,
        },
        "folds": fold_metrics,
        "trustser_version": __version__,
    }
    for key in ("uar", "accuracy", "macro_f1"):
        mean, std = mean_std([f[f"test_{key}"] for f in fold_metrics])
        metrics[f"test_{key}_mean"], metrics[f"test_{key}_std"] = mean, std
    directory = layout.head_dir(name, "emotion")
    write_json(directory / "metrics.json", metrics)
    write_json(
        directory / "config.json", {"task": "emotion", "backbone": name, **metrics["variant"]}
    )
    _write_predictions(directory / "predictions.csv", rows, labels)
    return metrics


def run_smoothing(
    store: str | os.PathLike,
    backbone: str,
    *,
    noise_snr: float = DEFAULT_NOISE_SNR,
    samples: int = DEFAULT_SAMPLES,
    runs: str | os.PathLike = "runs",
    attack_snr: Sequence[float] = (45.0,),
    methods: Sequence[str] = ("fgsm", "pgd"),
    eot_samples: int | None = None,
    steps: int = 10,
    folds: str | Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    cost: bool = True,
    callback: Callable[[AttackProgress], None] | None = None,
) -> SmoothingRun:
    """Evaluate, attack (adaptive and plain) and cost ``backbone@smooth-s<s>-n<N>``."""
    from trustser.cost import run_cost

    variant = smoothing_variant(backbone, float(noise_snr), int(samples))
    metrics = evaluate_smoothed(
        store, variant, runs=runs, folds=folds, device=device, batch_size=batch_size, seed=seed
    )
    attacks = tuple(
        run_attack(
            store,
            variant,
            runs=runs,
            method=method,
            snr_db=list(attack_snr),
            folds=folds,
            device=device,
            batch_size=batch_size,
            seed=seed,
            steps=steps,
            eot_samples=eot_samples,
            callback=callback,
        )
        for method in methods
    )
    report = run_cost(variant, runs=runs, device=device)[0] if cost else None
    layout = RunLayout(Path(runs))
    inherited = inherit_privacy_runs(layout, ModelName.parse(variant).base, variant)
    return SmoothingRun(variant, metrics, attacks, report, tuple(inherited))
