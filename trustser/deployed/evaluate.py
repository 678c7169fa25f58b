"""Clean predictions of a deployed model on every fold's test clips, run end to end.

A variant that changes only how its base classifies at inference (a randomized defence, say)
trains nothing: its emotion predictions come from running the deployed model over the test
clips, written in the heads' format (``emotion/predictions.csv``, ``metrics.json``,
``config.json``) so the performance and fairness axes read it like any other model's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._version import __version__
from trustser.deployed.batches import predict_clips
from trustser.deployed.loading import (
    Deployment,
    deploy_plan,
    load_waveforms,
    open_deployed_group,
    plan_deployment,
)
from trustser.devices import resolve_device
from trustser.metrics.performance import performance_summary
from trustser.runs import RunLayout, task_metrics, write_json, write_predictions

__all__ = ["evaluate_end_to_end"]


def evaluate_end_to_end(
    store: str | os.PathLike,
    model: str,
    deployment: Deployment,
    *,
    description: Mapping[str, Any],
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Classify every fold's test clips with ``model`` as ``deployment`` runs it; write its
    emotion ``predictions.csv``, ``metrics.json`` (``variant``: ``description``) and
    ``config.json``; return the metrics."""
    name, group, provenance = open_deployed_group(store, model)
    layout = RunLayout(Path(runs))
    torch_device = resolve_device(device) if isinstance(device, str) else device
    plans, encoder = plan_deployment(
        layout, name, group, provenance, deployment, folds, torch_device
    )
    rows: list[dict[str, Any]] = []
    fold_metrics: list[dict[str, Any]] = []
    labels: list[str] = []
    for plan in plans:
        plan = deploy_plan(plan, deployment, seed)
        labels = list(plan.labels)
        logits = predict_clips(
            plan.model,
            load_waveforms(plan.utterances, provenance),
            batch_size=batch_size,
            identical_only=not bool(encoder.masks_padding),
            device=torch_device,
            clip_seeds=plan.clip_seeds(seed),  # a randomized model: the draws its attack judges by
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
    metrics = task_metrics("emotion", name, labels, fold_metrics)
    metrics.update(variant=dict(description), trustser_version=__version__)
    directory = layout.head_dir(name, "emotion")
    write_json(directory / "metrics.json", metrics)
    write_json(directory / "config.json", {"task": "emotion", "backbone": name, **description})
    write_predictions(directory / "predictions.csv", rows, labels)
    return metrics
