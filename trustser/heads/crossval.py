"""Cross-validation of one configured head estimator over a task's folds, resumable at the fold.

:func:`cross_validate` is to the heads what scikit-learn's ``cross_validate(estimator, ...)`` is
to an estimator: it takes one configured estimator (a :class:`~.estimator.HeadClassifier` or a
subclass), clones it per fold, fits it on the fold's training clips with dev-UAR epoch
selection, predicts dev and test, and writes the task's run in the shared layout
(:class:`trustser.runs.RunLayout`): ``<fold>/head.safetensors`` (+ ``head.json``), then
``config.json``, ``metrics.json`` and ``predictions.csv``.

A model *variant* adds to this through one object, a :class:`FoldVariant`: the features each
fold reads, extra ``fit`` arguments, files written beside each fold's head, and what the run
records about the variant. The heads know nothing of particular variants (:mod:`trustser.variants`).

**Resume.** As each fold finishes, ``<fold>/fold.json`` records its results and a key of
everything that determined them (the estimator's parameters, the split, the store's
provenance, the variant). A later run whose fold key matches, with the head still beside it,
takes the fold from disk instead of training it again: a killed ``trustser heads fit`` or
``trustser run`` resumes at the first unfinished fold, and the written run equals an
uninterrupted one (each fold's training depends on its own seed only). ``resume=False``
retrains every fold.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustser._version import __version__
from trustser.heads.data import FeatureSet, FeatureSource
from trustser.heads.estimator import HeadClassifier
from trustser.heads.model import save_head
from trustser.heads.precision import keyed_settings
from trustser.heads.tasks import DEFAULT_MIN_STEPS, DEFAULT_PATIENCE, Split, Task
from trustser.manifest import Manifest
from trustser.metrics.performance import performance_summary
from trustser.runs import RunLayout, read_json, task_metrics, write_json, write_predictions

__all__ = [
    "FOLD_STATE",
    "FoldResult",
    "FoldVariant",
    "TaskResult",
    "TrainingEvent",
    "cross_validate",
    "task_estimator",
]

FOLD_STATE = "fold.json"  # beside each fold's head: its results and the key that made them
_FOLD_STATE_VERSION = 2  # 2: epochs trained and why training stopped


@dataclass(frozen=True)
class TrainingEvent:
    """Progress of a cross-validation, for progress bars. ``kind`` is ``"fold_start"``,
    ``"epoch"`` or ``"fold_end"``; ``fold_index`` is 0-based; ``resumed`` marks a fold taken
    from a finished earlier run."""

    kind: str
    task: str
    fold: str
    fold_index: int
    num_folds: int
    epoch: int = 0
    epochs: int = 0
    dev_uar: float | None = None
    test_uar: float | None = None
    resumed: bool = False


@dataclass(frozen=True)
class FoldResult:
    fold: str
    best_epoch: int
    layer_weights: list[float]
    test: dict[str, Any]  # performance_summary on the test part
    dev: dict[str, Any]  # performance_summary on the dev part (best epoch)
    history: list[dict[str, Any]]
    sizes: dict[str, int]
    ids_sha256: str
    seconds: float
    head_path: Path
    epochs_trained: int = 0
    stop_reason: str | None = None  # "budget", "patience" or "cap" (EpochSelection)
    precision: dict[str, Any] | None = None  # what it trained with (trustser.heads.precision)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fold": self.fold,
            "best_epoch": self.best_epoch,
            "epochs_trained": self.epochs_trained,
            "stop_reason": self.stop_reason,
            "hit_cap": self.stop_reason == "cap",
            "layer_weights": self.layer_weights,
            "n_train": self.sizes["train"],
            "n_dev": self.sizes["dev"],
            "n_test": self.sizes["test"],
            "ids_sha256": self.ids_sha256,
            "fit_seconds": self.seconds,
            "precision": self.precision,
            "history": self.history,
        }
        for role, summary in (("test", self.test), ("dev", self.dev)):
            out[f"{role}_uar"] = summary["uar"]
            out[f"{role}_accuracy"] = summary["weighted_accuracy"]
            out[f"{role}_macro_f1"] = summary["macro_f1"]
            out[f"{role}_per_class_recall"] = summary["per_class_recall"]
            out[f"{role}_confusion"] = summary["confusion"]
        return out

    def state(self) -> dict[str, Any]:
        """What :meth:`from_state` needs to rebuild this result exactly."""
        return {
            "fold": self.fold,
            "best_epoch": self.best_epoch,
            "layer_weights": self.layer_weights,
            "test": self.test,
            "dev": self.dev,
            "history": self.history,
            "sizes": self.sizes,
            "ids_sha256": self.ids_sha256,
            "seconds": self.seconds,
            "epochs_trained": self.epochs_trained,
            "stop_reason": self.stop_reason,
            "precision": self.precision,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], head_path: Path) -> FoldResult:
        return cls(**{**state, "head_path": head_path})


@dataclass(frozen=True)
class TaskResult:
    """One task's heads over its folds; ``metrics`` is what ``metrics.json`` holds."""

    task: str
    backbone: str
    labels: tuple[str, ...]
    directory: Path
    folds: list[FoldResult]
    metrics: dict[str, Any]
    data_mode: str
    seconds: float
    resumed: tuple[str, ...] = field(default=())  # folds taken from an earlier run


class FoldVariant:
    """What a model variant adds to the cross-validation of a task (the plain heads: nothing).

    Override what the variant changes; :mod:`trustser.variants` builds these.
    """

    #: recorded as ``variant`` in the task's config.json and metrics.json (None: not a variant)
    description: Mapping[str, Any] | None = None

    def features(self, split: Split, source: FeatureSource) -> FeatureSource:
        """The features fold ``split`` trains and is tested on (default: the store's)."""
        return source

    def fit_options(self) -> Mapping[str, Any]:
        """Extra keyword arguments of every fold's ``fit`` (e.g. each clip's gender)."""
        return {}

    def after_fold(self, split: Split, model: Any, fold_dir: Path) -> Mapping[str, Any]:
        """Write what the variant keeps beside fold ``split``'s head (fine-tuned blocks, say);
        return what the head's ``head.json`` records about it."""
        return {}

    def fold_identity(self, split: Split) -> Any:
        """What, besides the estimator and the split, fold ``split``'s result depends on (the
        files its features are computed from, say): part of the fold's resume key."""
        return None


def cross_validate(
    estimator: HeadClassifier,
    task: Task,
    splits: Sequence[Split],
    source: FeatureSource,
    *,
    manifest: Manifest,
    layout: RunLayout,
    model: str,
    store_info: Mapping[str, Any],
    data_mode: str = "memory",
    variant: FoldVariant | None = None,
    callback: Callable[[TrainingEvent], None] | None = None,
    resume: bool = True,
) -> TaskResult:
    """Fit a clone of ``estimator`` on each split of ``task`` and write the run of ``model``
    (a backbone or a variant name) under ``layout``; folds finished earlier with the same key
    are taken from disk when ``resume`` (module docstring)."""
    start = time.perf_counter()
    variant = variant or FoldVariant()
    estimator = task_estimator(estimator, task)
    params = estimator.get_params()
    key_params = keyed_settings(params, estimator.training_path())
    fold_results: list[FoldResult] = []
    rows: list[dict[str, Any]] = []
    resumed: list[str] = []
    trainable = None
    for index, split in enumerate(splits):
        notify = _notifier(callback, task.name, split.name, index, len(splits))
        head_path = layout.head_path(model, task.name, split.name)
        key = _fold_key(type(estimator).__name__, key_params, task, split, store_info, variant)
        state = _finished_fold(head_path, key) if resume else None
        if state is None:
            state = _fit_fold(
                type(estimator)(**params),
                task,
                split,
                variant.features(split, source),
                manifest=manifest,
                head_path=head_path,
                store_info=store_info,
                variant=variant,
                notify=notify,
                key=key,
            )
        else:
            resumed.append(split.name)
            epochs = (
                int(state["result"]["history"][-1]["epoch"]) if state["result"]["history"] else 0
            )
            notify("fold_start", epochs=epochs, resumed=True)
            notify("epoch", epoch=epochs, epochs=epochs, resumed=True)
        result = FoldResult.from_state(state["result"], head_path)
        trainable = state.get("trainable_parameters", trainable)
        rows += state["rows"]
        fold_results.append(result)
        notify(
            "fold_end",
            dev_uar=result.dev["uar"],
            test_uar=result.test["uar"],
            resumed=split.name in resumed,
        )
    seconds = time.perf_counter() - start
    metrics = _task_metrics(task, model, fold_results, seconds)
    metrics["trainable_parameters"] = trainable
    metrics["precision"] = _common_precision(fold_results)
    config = {
        "task": task.name,
        "backbone": model,
        "store": dict(store_info),
        "labels": list(task.labels),
        "split_scheme": task.scheme,
        "folds": [s.name for s in splits],
        "excluded": dict(task.excluded),
        "hyperparameters": params,
        "precision": metrics["precision"],
        "data_mode": data_mode,
        "trustser_version": __version__,
    }
    if variant.description is not None:
        config["variant"] = metrics["variant"] = dict(variant.description)
    directory = layout.head_dir(model, task.name)
    write_json(directory / "config.json", config)
    write_json(directory / "metrics.json", metrics)
    write_predictions(directory / "predictions.csv", rows, task.labels)
    return TaskResult(
        task=task.name,
        backbone=model,
        labels=task.labels,
        directory=directory,
        folds=fold_results,
        metrics=metrics,
        data_mode=data_mode,
        seconds=time.perf_counter() - start,
        resumed=tuple(resumed),
    )


def task_estimator(estimator: HeadClassifier, task: Task) -> HeadClassifier:
    """``estimator`` with the task's defaults filled in: ``epochs=None`` is the task's own
    epoch count (emotion 30, gender 10, speaker 30) and then ``min_steps=None`` a floor of
    :data:`~trustser.heads.tasks.DEFAULT_MIN_STEPS` optimiser steps; with explicit ``epochs``,
    ``min_steps=None`` is no floor, so ``epochs=30`` trains exactly 30 epochs, as the paper.
    ``patience=None`` is the task's :data:`~trustser.heads.tasks.DEFAULT_PATIENCE` (the privacy
    attackers train on until dev stops improving; the emotion head trains its budget)."""
    params = estimator.get_params()
    if all(params[k] is not None for k in ("epochs", "min_steps", "patience")):
        return estimator
    epochs = params["epochs"] if params["epochs"] is not None else task.default_epochs
    floor = params["min_steps"]
    if floor is None:
        floor = DEFAULT_MIN_STEPS if params["epochs"] is None else 0
    patience = params["patience"]
    if patience is None:
        patience = DEFAULT_PATIENCE[task.name]
    return type(estimator)(**{**params, "epochs": epochs, "min_steps": floor, "patience": patience})


def _fit_fold(
    model: HeadClassifier,
    task: Task,
    split: Split,
    features: FeatureSource,
    *,
    manifest: Manifest,
    head_path: Path,
    store_info: Mapping[str, Any],
    variant: FoldVariant,
    notify: Callable[..., None],
    key: str,
) -> dict[str, Any]:
    """Train, evaluate and save one fold; returns (and writes) its resumable state."""
    fold_start = time.perf_counter()
    notify("fold_start", epochs=model.epochs_for(len(split.train)))
    model.fit(
        _feature_set(features, task, split.train),
        _feature_set(features, task, split.dev),
        classes=task.labels,
        callback=lambda e: notify("epoch", epoch=e.epoch, epochs=e.epochs, dev_uar=e.dev_uar),
        **dict(variant.fit_options()),
    )
    summaries, test_rows = _evaluate(model, task, split, features, manifest)
    layer_weights = [float(w) for w in model.layer_weights_]
    extras = dict(variant.after_fold(split, model, head_path.parent))
    save_head(
        model.head_,
        head_path,
        metadata={
            "store": dict(store_info),
            "task": task.name,
            "labels": list(task.labels),
            "fold": split.name,
            "split_scheme": task.scheme,
            "ids_sha256": split.checksum(),
            "train_ids": list(split.train),
            "dev_ids": list(split.dev),
            "test_ids": list(split.test),
            "epochs_trained": model.epochs_,
            "stop_reason": model.stop_reason_,
            "hit_cap": model.hit_cap_,
            "best_epoch": model.best_epoch_,
            "layer_weights": layer_weights,
            "dev_uar": summaries["dev"]["uar"],
            "test_uar": summaries["test"]["uar"],
            "hyperparameters": model.get_params(),
            "precision": model.precision_,
            "trustser_version": __version__,
            **extras,
        },
    )
    result = FoldResult(
        fold=split.name,
        best_epoch=model.best_epoch_,
        layer_weights=layer_weights,
        test=summaries["test"],
        dev=summaries["dev"],
        history=model.history_,
        sizes={"train": len(split.train), "dev": len(split.dev), "test": len(split.test)},
        ids_sha256=split.checksum(),
        seconds=time.perf_counter() - fold_start,
        head_path=head_path,
        epochs_trained=model.epochs_,
        stop_reason=model.stop_reason_,
        precision=model.precision_,
    )
    state = {
        "format_version": _FOLD_STATE_VERSION,
        "key": key,
        "result": result.state(),
        "rows": test_rows,
        "trainable_parameters": getattr(model, "trainable_parameters_", None),
    }
    # written last: a fold counts as finished only once its head and every file beside it are
    write_json(head_path.parent / FOLD_STATE, state)
    # the state as a later run reads it back, so a resumed run and this one write the same
    return read_json(head_path.parent / FOLD_STATE)


def _evaluate(
    model: HeadClassifier, task: Task, split: Split, features: FeatureSource, manifest: Manifest
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Dev and test summaries of a fitted fold, and its per-clip test prediction rows."""
    summaries: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for role in ("dev", "test"):
        part = _feature_set(features, task, getattr(split, role))
        proba = model.predict_proba(part)
        predicted = [task.labels[k] for k in proba.argmax(axis=1)]
        summaries[role] = performance_summary(
            list(part.labels), predicted, labels=list(task.labels)
        )
        if role != "test":
            continue
        for utterance_id, truth, pred, p in zip(
            part.ids, part.labels, predicted, proba, strict=True
        ):
            utterance = manifest[utterance_id]
            rows.append(
                {
                    "id": utterance_id,
                    "fold": split.name,
                    "speaker": utterance.speaker,
                    "gender": utterance.gender,
                    "true": truth,
                    "pred": pred,
                    **{f"prob_{label}": float(v) for label, v in zip(task.labels, p, strict=True)},
                }
            )
    return summaries, rows


def _common_precision(folds: Sequence[FoldResult]) -> dict[str, Any] | list[Any] | None:
    """What the folds trained with: one record when they agree (None for folds from runs that
    did not record it), else every fold's."""
    records = [f.precision for f in folds]
    return records[0] if all(r == records[0] for r in records) else records


def _fold_key(
    estimator: str,
    params: Mapping[str, Any],
    task: Task,
    split: Split,
    store_info: Mapping[str, Any],
    variant: FoldVariant,
) -> str:
    """A digest of everything a fold's result depends on (timestamps left out)."""
    provenance = {
        k: v
        for k, v in dict(store_info.get("provenance") or {}).items()
        if k not in ("created", "versions")
    }
    inputs = {
        "estimator": estimator,
        "params": params,
        "task": task.name,
        "labels": list(task.labels),
        "split": split.checksum(),
        "provenance": provenance,
        "group": store_info.get("group"),
        "variant": variant.description,
        "variant_inputs": variant.fold_identity(split),
        "trustser_version": __version__,
    }
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _finished_fold(head_path: Path, key: str) -> dict[str, Any] | None:
    """The state of a fold finished earlier with the same key, else None (train it)."""
    path = head_path.parent / FOLD_STATE
    if not (path.is_file() and head_path.is_file() and head_path.with_suffix(".json").is_file()):
        return None
    try:
        state = read_json(path)
    except (OSError, ValueError):
        return None
    if state.get("format_version") != _FOLD_STATE_VERSION or state.get("key") != key:
        return None
    return state


def _feature_set(source: FeatureSource, task: Task, ids: Sequence[str]) -> FeatureSet:
    return FeatureSet(source, tuple(ids), tuple(task.label_of[i] for i in ids))


def _notifier(
    callback: Callable[[TrainingEvent], None] | None, task: str, fold: str, index: int, total: int
) -> Callable[..., None]:
    def notify(kind: str, **info: Any) -> None:
        if callback is not None:
            callback(TrainingEvent(kind, task, fold, index, total, **info))

    return notify


def _task_metrics(
    task: Task, backbone: str, folds: Sequence[FoldResult], seconds: float
) -> dict[str, Any]:
    """metrics.json: plain ``<role>_<metric>_mean/_std`` keys over folds, then per-fold details."""
    records = [f.to_dict() for f in folds]
    metrics = task_metrics(task.name, backbone, task.labels, records, roles=("test", "dev"))
    for role in ("test", "dev"):
        recalls: dict[str, float | None] = {}
        for label in task.labels:
            values = [getattr(f, role)["per_class_recall"].get(label) for f in folds]
            defined = [v for v in values if v is not None]
            recalls[label] = float(np.mean(defined)) if defined else None
        metrics[f"{role}_per_class_recall_mean"] = recalls
        metrics[f"{role}_confusion_sum"] = np.sum(
            [getattr(f, role)["confusion"] for f in folds], axis=0
        ).tolist()
    weights = np.array([f.layer_weights for f in folds])
    metrics["layer_weights_mean"] = weights.mean(axis=0).tolist()
    metrics["layer_weights_std"] = weights.std(axis=0).tolist()
    metrics["best_epoch_mean"] = float(np.mean([f.best_epoch for f in folds]))
    # folds whose epoch cap ended a fit still improving on dev: not shown to have converged
    metrics["folds_at_cap"] = [f.fold for f in folds if f.stop_reason == "cap"]
    metrics["fit_seconds_total"] = seconds
    return metrics
